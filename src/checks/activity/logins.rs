//! Login checks.
//!
//! `password_login_used`: one finding per teammate with an email/password login in the
//! event window. Resource `admin:<id>`; when the event carries no id and no teammate has
//! its email, `email:<lower-cased email>`.
//!
//! `failed_login_burst`: one finding per burst, resource `event:<id of the burst's first
//! failure>`. Bursts are found over every fetched event (not only the window) so that the
//! first failure, and hence the resource, does not move as the window slides; a burst is
//! reported while its last failure is inside the window.

use std::collections::BTreeMap;

use chrono::Duration;
use serde_json::json;

use super::super::catalog::CheckMeta;
use super::super::context::Ctx;
use super::super::snapshot::ActivityEvent;
use super::super::types::{FindingDraft, Severity, Verdict};
use super::{available, coverage_note, recent_of, sort_events, when, window_start};

const SUCCESS: &str = "admin_login_success";
const FAILURE: &str = "admin_login_failure";
const PASSWORD: &str = "email_password";
/// Evidence lists are capped; counts stay exact.
const MAX_LISTED: usize = 50;

fn lower(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
}

/// The stable key of the teammate behind an event, and the email to show; the teammate
/// list fills in whichever of id and email the event lacks.
fn teammate_key(ctx: &Ctx<'_>, ev: &ActivityEvent) -> Option<(String, Option<String>)> {
    let admins = ctx.snap.admins.as_deref().unwrap_or_default();
    let email = lower(ev.performed_by_email.as_deref());
    if let Some(id) = ev.performed_by_id.as_deref() {
        let email = email.or_else(|| {
            admins
                .iter()
                .find(|a| a.id.as_deref() == Some(id))
                .and_then(|a| lower(a.email.as_deref()))
        });
        return Some((format!("admin:{id}"), email));
    }
    let email = email?;
    let known = admins
        .iter()
        .find(|a| lower(a.email.as_deref()).as_deref() == Some(email.as_str()))
        .and_then(|a| a.id.clone());
    Some(match known {
        Some(id) => (format!("admin:{id}"), Some(email)),
        None => (format!("email:{email}"), Some(email)),
    })
}

pub(in crate::checks) fn password_login_used(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let (events, covered_from) = match available(ctx) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let mut by_teammate: BTreeMap<String, (Option<String>, Vec<&ActivityEvent>)> = BTreeMap::new();
    for ev in recent_of(ctx, events, &[SUCCESS]) {
        let metadata = ev.metadata.value();
        let method = metadata.get("sign_in_method").and_then(|v| v.as_str());
        if !method.is_some_and(|s| s.trim().eq_ignore_ascii_case(PASSWORD)) {
            continue;
        }
        let Some((key, email)) = teammate_key(ctx, ev) else {
            continue;
        };
        let entry = by_teammate.entry(key).or_insert((None, Vec::new()));
        entry.0 = entry.0.take().or(email);
        entry.1.push(ev);
    }
    let findings = by_teammate
        .into_iter()
        .map(|(resource, (email, logins))| {
            let who = email
                .clone()
                .unwrap_or_else(|| resource.replace("admin:", "admin "));
            let mut ips: Vec<&str> = logins.iter().filter_map(|e| e.ip.as_deref()).collect();
            ips.sort_unstable();
            ips.dedup();
            let last = logins.last().map(|e| e.created_at);
            FindingDraft {
                title: format!("Teammate {who} signs in with email and password"),
                severity: m.severity,
                evidence: json!({
                    "admin_id": resource.strip_prefix("admin:"),
                    "email": email,
                    "login_count": logins.len(),
                    "first_login_at": logins.first().map(|e| e.created_at),
                    "last_login_at": last,
                    "ips": ips.iter().take(MAX_LISTED).collect::<Vec<_>>(),
                    "event_ids": logins.iter().rev().take(MAX_LISTED).map(|e| &e.id).collect::<Vec<_>>(),
                }).into(),
                resource,
            }
        })
        .collect();
    Verdict::from_findings(findings, coverage_note(ctx, covered_from))
}

struct Burst<'a> {
    /// Sorted, oldest first.
    failures: Vec<&'a ActivityEvent>,
    grouped_by: Vec<&'static str>,
}

/// Maximal runs of failures in which `threshold` fall within `window` of the run's first
/// one; a run then extends while each next failure follows the previous within `window`,
/// so one long attack is one finding.
fn bursts<'a>(
    failures: &[&'a ActivityEvent],
    threshold: usize,
    window: Duration,
) -> Vec<Vec<&'a ActivityEvent>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < failures.len() {
        let start = failures[i].created_at;
        let in_window = failures[i..]
            .iter()
            .take_while(|e| e.created_at <= start + window)
            .count();
        if in_window < threshold.max(1) {
            i += 1;
            continue;
        }
        let mut end = i + in_window;
        while end < failures.len()
            && failures[end].created_at <= failures[end - 1].created_at + window
        {
            end += 1;
        }
        out.push(failures[i..end].to_vec());
        i = end;
    }
    out
}

pub(in crate::checks) fn failed_login_burst(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let (events, covered_from) = match available(ctx) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let s = ctx.settings;
    let window = Duration::minutes(i64::from(s.failed_login_window_minutes));
    let success_window = Duration::minutes(i64::from(s.failed_login_success_window_minutes));
    let threshold = s.failed_login_threshold as usize;

    let mut by_admin: BTreeMap<String, Vec<&ActivityEvent>> = BTreeMap::new();
    let mut by_ip: BTreeMap<String, Vec<&ActivityEvent>> = BTreeMap::new();
    for ev in events.iter().filter(|e| e.activity_type == FAILURE) {
        let admin = ev
            .performed_by_id
            .as_ref()
            .map(|id| id.to_string())
            .or_else(|| lower(ev.performed_by_email.as_deref()));
        if let Some(key) = admin {
            by_admin.entry(key).or_default().push(ev);
        }
        if let Some(ip) = ev.ip.as_deref().map(str::trim).filter(|ip| !ip.is_empty()) {
            by_ip.entry(ip.to_string()).or_default().push(ev);
        }
    }
    // The same failures found by admin and by IP are one finding.
    let mut merged: BTreeMap<String, Burst<'_>> = BTreeMap::new();
    for (dimension, groups) in [("admin", by_admin), ("ip", by_ip)] {
        for (_, mut group) in groups {
            sort_events(&mut group);
            for failures in bursts(&group, threshold, window) {
                let first = failures[0].id.to_string();
                let burst = merged.entry(first).or_insert_with(|| Burst {
                    failures: Vec::new(),
                    grouped_by: Vec::new(),
                });
                burst.failures.extend(failures);
                burst.grouped_by.push(dimension);
            }
        }
    }
    for burst in merged.values_mut() {
        sort_events(&mut burst.failures);
        burst.failures.dedup_by(|a, b| a.id == b.id);
    }

    let start = window_start(ctx);
    let mut successes: Vec<&ActivityEvent> = events
        .iter()
        .filter(|e| e.activity_type == SUCCESS)
        .collect();
    sort_events(&mut successes);
    let mut reported: Vec<(String, Burst<'_>)> = merged
        .into_iter()
        .filter(|(_, b)| b.failures.last().is_some_and(|l| l.created_at >= start))
        .collect();
    reported.sort_by(|(a_id, a), (b_id, b)| {
        a.failures[0]
            .created_at
            .cmp(&b.failures[0].created_at)
            .then_with(|| a_id.cmp(b_id))
    });
    let findings = reported
        .into_iter()
        .map(|(first_id, b)| burst_finding(m, first_id, b, &successes, success_window))
        .collect();
    Verdict::from_findings(findings, coverage_note(ctx, covered_from))
}

fn burst_finding(
    m: &CheckMeta,
    first_id: String,
    b: Burst<'_>,
    successes: &[&ActivityEvent],
    success_window: Duration,
) -> FindingDraft {
    let first = b.failures[0];
    let last = b.failures[b.failures.len() - 1];
    let mut ips: Vec<&str> = b.failures.iter().filter_map(|e| e.ip.as_deref()).collect();
    ips.sort_unstable();
    ips.dedup();
    let mut admins: Vec<String> = b
        .failures
        .iter()
        .filter_map(|e| {
            lower(e.performed_by_email.as_deref())
                .or_else(|| e.performed_by_id.as_ref().map(|id| format!("admin {id}")))
        })
        .collect();
    admins.sort_unstable();
    admins.dedup();
    // A success from one of the burst's IPs during or soon after it: the guess may have worked.
    let success = successes.iter().find(|s| {
        s.ip.as_deref().is_some_and(|ip| ips.contains(&ip))
            && s.created_at >= first.created_at
            && s.created_at <= last.created_at + success_window
    });
    let target = match (admins.as_slice(), ips.as_slice()) {
        ([one], _) => format!("for {one}"),
        (_, [ip]) => format!("from IP {ip}"),
        _ => format!("for {} teammates from {} IPs", admins.len(), ips.len()),
    };
    let mut title = format!(
        "{} failed logins {target} starting {}",
        b.failures.len(),
        when(first.created_at)
    );
    let severity = match success {
        Some(s) => {
            title.push_str(&format!(
                ", followed by a successful login from {}",
                s.ip.as_deref().unwrap_or("the same IP")
            ));
            Severity::Critical
        }
        None => m.severity,
    };
    FindingDraft {
        resource: format!("event:{first_id}"),
        severity,
        title,
        evidence: json!({
            "grouped_by": b.grouped_by,
            "failure_count": b.failures.len(),
            "first_failure_at": first.created_at,
            "last_failure_at": last.created_at,
            "teammates": admins,
            "admin_ids": b.failures.iter().filter_map(|e| e.performed_by_id.as_deref()).collect::<std::collections::BTreeSet<_>>(),
            "ips": ips,
            "failure_event_ids": b.failures.iter().take(MAX_LISTED).map(|e| &e.id).collect::<Vec<_>>(),
            "followed_by_success": success.map(|s| json!({
                "event_id": s.id,
                "at": s.created_at,
                "ip": s.ip,
                "admin_id": s.performed_by_id,
                "email": s.performed_by_email,
            })),
        }).into(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::super::super::testutil::*;
    use super::super::super::types::CheckStatus;
    use super::super::super::CheckSettings;
    use super::*;

    fn failure(id: &str, by: &str, ip: &str, at: DateTime<Utc>) -> ActivityEvent {
        let mut ev = event(id, FAILURE, by, at);
        ev.ip = Some(ip.into());
        ev
    }

    fn password_login(id: &str, by: &str, at: DateTime<Utc>) -> ActivityEvent {
        let mut ev = event(id, SUCCESS, by, at);
        ev.metadata = json!({"sign_in_method": "email_password"}).into();
        ev.ip = Some("198.51.100.1".into());
        ev
    }

    #[test]
    fn password_logins_are_one_finding_per_teammate() {
        let mut snap = snapshot();
        let now = snap.now;
        let mut by_email = password_login("p3", "ignored", now - Duration::days(3));
        by_email.performed_by_id = None;
        by_email.performed_by_email = Some("Bo@Acme.com".into());
        let mut stranger = password_login("p4", "ignored", now - Duration::days(3));
        stranger.performed_by_id = None;
        stranger.performed_by_email = Some("ex@acme.com".into());
        set_events(
            &mut snap,
            vec![
                password_login("p1", "2", now - Duration::days(1)),
                password_login("p2", "2", now - Duration::days(2)),
                by_email,
                stranger,
                password_login("old", "1", now - Duration::days(40)),
                login("sso", "1", now),
            ],
        );
        let o = run("password_login_used", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["admin:2", "email:ex@acme.com"]);
        assert_eq!(o.findings[0].evidence.value()["login_count"], 3);
        assert_eq!(o.findings[0].severity, Severity::Medium);
        assert_eq!(
            o.findings[0].title,
            "Teammate bo@acme.com signs in with email and password"
        );
        assert_eq!(
            run("password_login_used", &snapshot()).status,
            CheckStatus::Pass
        );
    }

    #[test]
    fn five_failures_in_thirty_minutes_are_a_burst_keyed_by_the_first() {
        let mut snap = snapshot();
        let t0 = snap.now - Duration::hours(5);
        let mut events: Vec<_> = (0..5)
            .map(|i| {
                failure(
                    &format!("f{i}"),
                    "2",
                    "203.0.113.7",
                    t0 + Duration::minutes(i * 7),
                )
            })
            .collect();
        set_events(&mut snap, events.clone());
        let o = run("failed_login_burst", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["event:f0"], "admin and IP bursts merge");
        assert_eq!(o.findings[0].severity, Severity::High);
        assert_eq!(
            o.findings[0].evidence.value()["grouped_by"],
            json!(["admin", "ip"])
        );

        // Four failures are not a burst; nor are five spread over more than 30 minutes.
        set_events(&mut snap, events[..4].to_vec());
        assert_eq!(run("failed_login_burst", &snap).status, CheckStatus::Pass);
        events[4].created_at = t0 + Duration::minutes(31);
        set_events(&mut snap, events);
        assert_eq!(run("failed_login_burst", &snap).status, CheckStatus::Pass);
    }

    #[test]
    fn burst_by_ip_across_teammates_then_success_is_critical() {
        let mut snap = snapshot();
        let t0 = snap.now - Duration::hours(5);
        let mut events: Vec<_> = (0..6)
            .map(|i| {
                failure(
                    &format!("f{i}"),
                    &format!("victim{i}"),
                    "203.0.113.7",
                    t0 + Duration::minutes(i),
                )
            })
            .collect();
        let mut success = event("win", SUCCESS, "victim3", t0 + Duration::minutes(50));
        success.ip = Some("203.0.113.7".into());
        events.push(success);
        set_events(&mut snap, events);
        let o = run("failed_login_burst", &snap);
        assert_eq!(resources(&o), ["event:f0"]);
        assert_eq!(o.findings[0].severity, Severity::Critical);
        assert_eq!(
            o.findings[0].evidence.value()["followed_by_success"]["event_id"],
            "win"
        );
        assert!(o.findings[0].title.contains("from IP 203.0.113.7"));

        let settings = CheckSettings {
            failed_login_success_window_minutes: 30,
            ..Default::default()
        };
        let o = run_with("failed_login_burst", &snap, &previous(), &settings);
        assert_eq!(o.findings[0].severity, Severity::High);
    }

    #[test]
    fn resource_stays_put_when_the_window_slides() {
        let mut snap = snapshot();
        // A long burst whose first failure is just outside the window, last just inside.
        let t0 = snap.now - Duration::days(30) - Duration::minutes(10);
        let events: Vec<_> = (0..8)
            .map(|i| {
                failure(
                    &format!("f{i}"),
                    "2",
                    "203.0.113.9",
                    t0 + Duration::minutes(i * 3),
                )
            })
            .collect();
        set_events(&mut snap, events);
        let o = run("failed_login_burst", &snap);
        assert_eq!(resources(&o), ["event:f0"]);
        snap.now += Duration::hours(1);
        assert_eq!(run("failed_login_burst", &snap).status, CheckStatus::Pass);
    }

    #[test]
    fn long_attacks_are_one_burst_and_separate_attacks_two() {
        let t0 = now();
        let evs: Vec<_> = (0..12)
            .map(|i| {
                let gap = if i < 6 { i * 5 } else { 200 + i * 5 };
                failure(
                    &format!("f{i:02}"),
                    "2",
                    "1.2.3.4",
                    t0 + Duration::minutes(gap),
                )
            })
            .collect();
        let refs: Vec<&ActivityEvent> = evs.iter().collect();
        let found = bursts(&refs, 5, Duration::minutes(30));
        let ids: Vec<Vec<&str>> = found
            .iter()
            .map(|b| b.iter().map(|e| &*e.id).collect())
            .collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0].len(), 6);
        assert_eq!(ids[1][0], "f06");
    }
}
