//! Teammates with no activity for a period: `inbox_seat_inactive` (O, needs activity
//! data) and `admin_dormant` (A). Resource: `admin:<id>`.
//!
//! "Activity by a teammate" is any event whose `performed_by` id equals the admin id or
//! whose email equals the admin email (case-insensitive), plus the inventory's
//! `last_active_at` from earlier scans. Failed logins do not count: anyone can fail to
//! log into a dormant account, and that is no sign its owner still uses it. Both checks wait until the fetched history covers
//! their period, and neither judges a teammate who joined within it (an invitee who has
//! not logged in for three days is not dormant).

use foldhash::{HashMap, HashMapExt};

use chrono::{DateTime, Duration, Utc};

use super::activity::available;
use super::catalog::CheckMeta;
use super::context::{admin_label, admin_resource, unnamed, Ctx, PerAdmin};
use super::snapshot::{ActivityEvent, EarlierActivity, PreviousState};
use super::types::{Evidence, FindingDraft, Verdict};
use crate::intercom::models::Admin;

/// Teammates first seen within this long after the earliest inventory entry were there
/// at the baseline scan (one scan writes all of its rows within its time budget).
const BASELINE_TOLERANCE: Duration = Duration::minutes(10);
const NOT_ACTIVITY: &str = "admin_login_failure";

pub(super) fn inbox_seat_inactive(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    inactive(ctx, m, ctx.settings.inbox_inactive_days, true)
}

pub(super) fn dormant(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    inactive(ctx, m, ctx.settings.dormant_days, false)
}

fn inactive(ctx: &Ctx<'_>, m: &CheckMeta, days: u32, seat_only: bool) -> Verdict {
    let (events, _) = match available(ctx) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let now = ctx.now();
    if !ctx.snap.activity.covers_days(now, days) {
        return Verdict::not_evaluated(format!(
            "activity history covers {} days; this check needs {days}",
            ctx.snap.activity.covered_days(now)
        ));
    }
    let admins = match ctx.admins() {
        Ok(a) => a,
        Err(v) => return v,
    };
    let cutoff = now - Duration::days(i64::from(days));
    let last_seen = LastSeen::index(events);
    let joiners = Joiners::of(ctx.prev);
    let mut agg = PerAdmin::default();
    let mut recent_joiners = 0;
    for admin in admins {
        let (Some(resource), Some(id)) = (admin_resource(admin), admin.id.as_deref()) else {
            agg.unknown(unnamed(admin));
            continue;
        };
        let id = id.trim();
        if seat_only {
            match admin.has_inbox_seat {
                None => {
                    agg.unknown(format!("{resource} has no has_inbox_seat"));
                    continue;
                }
                Some(false) => continue,
                Some(true) => {}
            }
        }
        if joiners.joined_after(id, cutoff) {
            recent_joiners += 1;
            continue;
        }
        // Loaded events, and the aggregate of the stored ones not loaded (same matching).
        let email = email_key(admin);
        let seen_in_events = last_seen.of(admin, email.as_deref()).max(earlier_of(
            &ctx.prev.earlier_activity,
            admin,
            email.as_deref(),
        ));
        let remembered = ctx.prev.admins.get(id).and_then(|h| h.last_active_at);
        let last_active = seen_in_events.max(remembered);
        if last_active.is_some_and(|t| t >= cutoff) {
            continue;
        }
        let evidence = InactiveEvidence::of(admin, last_active, days);
        let title = if seat_only {
            format!(
                "Inbox seat of {} unused for over {days} days",
                admin_label(admin)
            )
        } else {
            format!(
                "Teammate {} has had no activity for over {days} days",
                admin_label(admin)
            )
        };
        agg.fail(FindingDraft {
            resource,
            severity: m.severity,
            title,
            evidence: Evidence::of_sorted_fields(&evidence),
        });
    }
    if recent_joiners > 0 {
        agg.note(format!(
            "{recent_joiners} teammate(s) joined within the last {days} days and are not judged yet"
        ));
    }
    agg.finish()
}

/// A finding's evidence: `admin_evidence` and the inactivity facts, fields in key order
/// (see [`Evidence::of_sorted_fields`]).
#[derive(serde::Serialize)]
struct InactiveEvidence<'a> {
    admin_id: &'a Option<String>,
    email: &'a Option<String>,
    has_inbox_seat: Option<bool>,
    inactive_days_threshold: u32,
    last_activity_at: Option<DateTime<Utc>>,
    name: &'a Option<String>,
}

impl<'a> InactiveEvidence<'a> {
    fn of(admin: &'a Admin, last_activity_at: Option<DateTime<Utc>>, days: u32) -> Self {
        Self {
            admin_id: &admin.id,
            email: &admin.email,
            has_inbox_seat: admin.has_inbox_seat,
            inactive_days_threshold: days,
            last_activity_at,
            name: &admin.name,
        }
    }
}

/// Latest activity per performer id and per lower-cased performer email, built once so
/// that large workspaces cost one pass over the events, not one per teammate.
struct LastSeen<'a> {
    by_id: HashMap<&'a str, DateTime<Utc>>,
    by_email: HashMap<String, DateTime<Utc>>,
}

impl<'a> LastSeen<'a> {
    fn index(events: &'a [ActivityEvent]) -> Self {
        let mut by_id: HashMap<&str, DateTime<Utc>> = HashMap::new();
        let mut by_email: HashMap<String, DateTime<Utc>> = HashMap::new();
        for e in events.iter().filter(|e| e.activity_type != NOT_ACTIVITY) {
            if let Some(id) = e.performed_by_id.as_deref() {
                let t = by_id.entry(id).or_insert(e.created_at);
                *t = (*t).max(e.created_at);
            }
            if let Some(email) = e.performed_by_email.as_deref() {
                let t = by_email
                    .entry(email.trim().to_ascii_lowercase())
                    .or_insert(e.created_at);
                *t = (*t).max(e.created_at);
            }
        }
        Self { by_id, by_email }
    }

    /// Same matching as [`ActivityEvent::performed_by`]; `email` is [`email_key`]'s.
    fn of(&self, admin: &Admin, email: Option<&str>) -> Option<DateTime<Utc>> {
        let by_id = admin
            .id
            .as_deref()
            .and_then(|id| self.by_id.get(id))
            .copied();
        let by_email = email.and_then(|e| self.by_email.get(e)).copied();
        by_id.max(by_email)
    }
}

/// The teammate's email as the indexes key it (trimmed, lower-cased), made once per
/// teammate for both lookups.
fn email_key(admin: &Admin) -> Option<String> {
    admin
        .email
        .as_deref()
        .map(|e| e.trim().to_ascii_lowercase())
}

/// [`LastSeen::of`] over the aggregate of stored events a scan did not load.
fn earlier_of(
    earlier: &EarlierActivity,
    admin: &Admin,
    email: Option<&str>,
) -> Option<DateTime<Utc>> {
    let by_id = admin
        .id
        .as_deref()
        .and_then(|id| earlier.by_id.get(id))
        .copied();
    let by_email = email.and_then(|e| earlier.by_email.get(e)).copied();
    by_id.max(by_email)
}

/// Who joined after the baseline scan. The baseline (the earliest inventory entry) is
/// worked out once per check: per teammate it made the check quadratic, 20,000 teammates
/// cost 400 million comparisons (two thirds of a large workspace's re-scan CPU).
struct Joiners<'a> {
    prev: &'a PreviousState,
    /// False on a first scan, or with an empty inventory (missing data): nobody counts as
    /// a recent joiner then.
    judged: bool,
    /// The earliest `first_seen_at` of the inventory.
    baseline: Option<DateTime<Utc>>,
}

impl<'a> Joiners<'a> {
    fn of(prev: &'a PreviousState) -> Self {
        Self {
            prev,
            judged: prev.has_completed_scan
                && !(prev.admins.is_empty() && prev.previous_admin_ids.is_empty()),
            baseline: prev.admins.values().map(|h| h.first_seen_at).min(),
        }
    }

    /// Whether the teammate appeared after the baseline scan and after `cutoff`.
    fn joined_after(&self, id: &str, cutoff: DateTime<Utc>) -> bool {
        if !self.judged {
            return false;
        }
        match self.prev.admins.get(id) {
            None => !self.prev.previous_admin_ids.contains(id),
            Some(h) => {
                let after_baseline = self
                    .baseline
                    .is_some_and(|b| h.first_seen_at > b + BASELINE_TOLERANCE);
                after_baseline && h.first_seen_at > cutoff
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::super::testutil::*;
    use super::super::types::{CheckStatus, Severity};
    use super::super::{ActivityData, CheckSettings, PreviousState};

    /// The evidence text is what the `json!` form it replaced wrote (the content digests
    /// stored by earlier builds are compared with it), for teammates with and without the
    /// optional fields and with text that JSON escapes.
    #[test]
    fn inactive_evidence_is_the_json_value_form_byte_for_byte() {
        use serde_json::json;
        let mut full = admin("7", "z\u{2028}@example.com");
        full.name = Some("Zoë \"Q\" <x>\n".into());
        let mut bare = full.clone();
        bare.id = None;
        bare.name = None;
        bare.email = None;
        bare.has_inbox_seat = None;
        let at = chrono::Utc::now();
        for (a, last) in [(&full, Some(at)), (&bare, None)] {
            let mut value = super::super::context::admin_evidence(a);
            value["last_activity_at"] = json!(last);
            value["inactive_days_threshold"] = json!(30);
            value["has_inbox_seat"] = json!(a.has_inbox_seat);
            let expected: super::super::types::Evidence = value.into();
            let written = super::super::types::Evidence::of_sorted_fields(
                &super::InactiveEvidence::of(a, last, 30),
            );
            assert_eq!(written.json(), expected.json());
        }
    }

    /// Teammate 2 last logged in 45 days ago: dormant (30) but not inbox-inactive (60).
    fn quiet_colleague() -> super::super::Snapshot {
        let mut snap = snapshot();
        let now = snap.now;
        set_events(
            &mut snap,
            vec![
                login("l1", "1", now - Duration::days(1)),
                login("l2", "2", now - Duration::days(45)),
            ],
        );
        snap
    }

    #[test]
    fn dormant_and_inbox_inactive_use_their_own_windows() {
        let snap = quiet_colleague();
        let o = run("admin_dormant", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["admin:2"]);
        assert_eq!(o.findings[0].severity, Severity::Medium);
        assert_eq!(run("inbox_seat_inactive", &snap).status, CheckStatus::Pass);

        let mut snap = snap;
        set_events(&mut snap, vec![login("l1", "1", now())]);
        let o = run("inbox_seat_inactive", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["admin:2"]);
        assert_eq!(o.findings[0].severity, Severity::Low);
    }

    #[test]
    fn inbox_check_only_looks_at_seat_holders() {
        let mut snap = snapshot();
        set_events(&mut snap, vec![login("l1", "1", now())]);
        let mut seatless = admin("2", "bo@acme.com");
        seatless.has_inbox_seat = Some(false);
        snap.admins = Ok(vec![admin("1", "owner@acme.com"), seatless]);
        assert_eq!(run("inbox_seat_inactive", &snap).status, CheckStatus::Pass);
        assert_eq!(run("admin_dormant", &snap).status, CheckStatus::Fail);
    }

    #[test]
    fn any_event_by_id_or_email_counts_as_activity() {
        let mut snap = quiet_colleague();
        let mut ev = event("x", "admin_away_mode_change", "other-id", snap.now);
        ev.performed_by_id = None;
        ev.performed_by_email = Some("BO@acme.com".into());
        push_events(&mut snap, vec![ev]);
        assert_eq!(run("admin_dormant", &snap).status, CheckStatus::Pass);
    }

    #[test]
    fn failed_logins_are_not_activity() {
        let mut snap = quiet_colleague();
        push_events(
            &mut snap,
            vec![event("f", "admin_login_failure", "2", now())],
        );
        assert_eq!(run("admin_dormant", &snap).status, CheckStatus::Fail);
    }

    #[test]
    fn remembered_activity_counts_too() {
        let snap = quiet_colleague();
        let mut prev = previous();
        prev.admins.get_mut("2").unwrap().last_active_at = Some(snap.now - Duration::days(3));
        let o = run_with("admin_dormant", &snap, &prev, &CheckSettings::default());
        assert_eq!(o.status, CheckStatus::Pass);
    }

    #[test]
    fn stored_activity_not_loaded_as_events_counts_by_id_or_email() {
        // A re-scan loads older stored events as an aggregate only: the same matching.
        let snap = quiet_colleague();
        let recent = snap.now - Duration::days(10);
        let mut prev = previous();
        prev.earlier_activity.add(Some("2".into()), None, recent);
        let o = run_with("admin_dormant", &snap, &prev, &CheckSettings::default());
        assert_eq!(o.status, CheckStatus::Pass);

        let mut prev = previous();
        prev.earlier_activity
            .add(None, Some(" Bo@ACME.com "), recent);
        let o = run_with("admin_dormant", &snap, &prev, &CheckSettings::default());
        assert_eq!(o.status, CheckStatus::Pass);

        // Too old, it still shows as the last activity in the evidence.
        let old = snap.now - Duration::days(40);
        let mut prev = previous();
        prev.earlier_activity.add(Some("2".into()), None, old);
        let o = run_with("admin_dormant", &snap, &prev, &CheckSettings::default());
        assert_eq!(resources(&o), ["admin:2"]);
        assert_eq!(
            o.findings[0].evidence.value()["last_activity_at"],
            serde_json::json!(snap.now - Duration::days(40))
        );
    }

    #[test]
    fn short_history_is_not_evaluated_with_the_covered_days() {
        let mut snap = quiet_colleague();
        if let ActivityData::Available { covered_from, .. } = &mut snap.activity {
            *covered_from = snap.now - Duration::days(20);
        }
        let o = run("admin_dormant", &snap);
        assert_eq!(o.status, CheckStatus::NotEvaluated);
        assert_eq!(
            o.reason.as_deref(),
            Some("activity history covers 20 days; this check needs 30")
        );
        let o = run("inbox_seat_inactive", &snap);
        assert_eq!(o.status, CheckStatus::NotEvaluated);
        assert!(o.reason.unwrap().contains("needs 60"));
    }

    #[test]
    fn recent_joiners_are_not_dormant_but_baseline_admins_are() {
        let mut snap = quiet_colleague();
        snap.admins
            .as_mut()
            .unwrap()
            .push(admin("3", "new@acme.com"));
        // 3 is not in the previous scan: it joined now.
        let o = run("admin_dormant", &snap);
        assert_eq!(resources(&o), ["admin:2"]);
        assert!(o.reason.unwrap().contains("1 teammate(s) joined"));

        // 3 first seen 5 days ago, well after the baseline: still too new.
        let mut prev = previous();
        prev.previous_admin_ids.insert("3".into());
        prev.admins
            .insert("3".into(), history(snap.now - Duration::days(5)));
        let o = run_with("admin_dormant", &snap, &prev, &CheckSettings::default());
        assert_eq!(resources(&o), ["admin:2"]);

        // First scan: everybody is judged, the inventory knows nothing yet.
        let o = run_with(
            "admin_dormant",
            &snap,
            &PreviousState::default(),
            &CheckSettings::default(),
        );
        assert_eq!(resources(&o), ["admin:2", "admin:3"]);
    }
}
