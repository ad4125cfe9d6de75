//! Collect: read the workspace from the Intercom API into a `Snapshot`. Activity events
//! are fetched incrementally from the stored cursor (with overlap; duplicates are dropped
//! by id when stored) and merged with the stored events the A checks read one by one.

use foldhash::{HashSet, HashSetExt};

use chrono::{DateTime, Duration, Utc};

use crate::checks::{ActivityData, ActivityEvent, CheckSettings, Probe, ProbeOutcome, Snapshot};
use crate::intercom::{self, IntercomError, Session};
use crate::region::Region;

/// Low-sensitivity reads that a "Read admins"-only token must not be able to make.
/// Bodies are discarded by the client.
pub const EXTRA_SCOPE_PROBES: &[(&str, &str)] = &[
    ("Read tags", "/tags"),
    ("Manage IP allowlist", "/ip_allowlist"),
];

/// The instance facts collection needs.
pub struct CollectInput<'a> {
    pub region: Region,
    pub api_version: &'a str,
    pub allowed_domains: Vec<String>,
    pub attestations: Vec<String>,
    pub activity_cursor_at: Option<DateTime<Utc>>,
    pub activity_covered_from: Option<DateTime<Utc>>,
    pub probe_extra_scopes: bool,
    pub now: DateTime<Utc>,
}

/// The activity window fetched successfully in this scan; it moves the cursor.
#[derive(Debug, Clone, Copy)]
pub struct FetchedWindow {
    pub before: DateTime<Utc>,
    pub covered_from: DateTime<Utc>,
}

pub struct Collected {
    pub snapshot: Snapshot,
    /// How many of the snapshot's activity events, from the first, were fetched in this
    /// scan (to store); de-duplicated by id. Events are held once, in the snapshot.
    pub new_event_count: usize,
    pub fetched_window: Option<FetchedWindow>,
}

impl Collected {
    /// Events fetched in this scan (to store), de-duplicated by id.
    pub fn new_events(&self) -> &[ActivityEvent] {
        match &self.snapshot.activity {
            ActivityData::Available { events, .. } => {
                &events[..self.new_event_count.min(events.len())]
            }
            _ => &[],
        }
    }

    /// Adds the stored events the checks read one by one (see `db::activity::for_scan`)
    /// after the fetched ones, skipping those fetched again; one copy of each event. The
    /// merge happens in the stored vector, the large one (a re-scan fetches ~100 events
    /// and holds ~70,000 stored ones): building a new vector held both at once.
    pub fn merge_stored(&mut self, stored: Vec<ActivityEvent>) {
        let ActivityData::Available {
            events: fetched, ..
        } = &mut self.snapshot.activity
        else {
            return;
        };
        let mut events = stored;
        {
            let fetched_ids: HashSet<&str> = fetched.iter().map(|e| &*e.id).collect();
            events.retain(|e| !fetched_ids.contains(&*e.id));
        }
        events.splice(0..0, std::mem::take(fetched));
        // Growth by doubling leaves up to half the capacity unused; held through the
        // checks, it is worth one reallocation.
        events.shrink_to_fit();
        *fetched = events;
    }

    /// Drops the stored events once the checks have read them: persist needs only the
    /// fetched ones, and a large workspace's stored window (~70,000 events, ~25 MB) would
    /// otherwise stay allocated through the findings write, the scan's memory peak.
    pub fn keep_only_new_events(&mut self) {
        if let ActivityData::Available { events, .. } = &mut self.snapshot.activity {
            events.truncate(self.new_event_count);
            events.shrink_to_fit();
        }
    }
}

pub async fn collect(
    session: &Session,
    input: CollectInput<'_>,
    settings: &CheckSettings,
) -> Collected {
    let now = input.now;
    let me = session.me().await;
    let me_ok = me.is_ok();
    let admins = match &me {
        Ok(_) => session.admins().await,
        Err(e) => Err(e.clone()),
    };
    let mut new_event_count = 0;
    let mut fetched_window = None;
    let activity = if !(me_ok && admins.is_ok()) {
        ActivityData::NotFetched
    } else {
        let after = fetch_after(input.activity_cursor_at, settings, now);
        match fetch_activity(session, after, now).await {
            Ok(events) => {
                let covered_from = match (input.activity_cursor_at, input.activity_covered_from) {
                    (Some(_), Some(from)) => from.min(after),
                    _ => after,
                };
                fetched_window = Some(FetchedWindow {
                    before: now,
                    covered_from,
                });
                // Fetched events de-duplicated by id (pages overlap when the log moves
                // while it is read); `merge_stored` adds the stored ones after them.
                let mut events = events;
                let keep: Vec<bool> = {
                    let mut seen: HashSet<&str> = HashSet::with_capacity(events.len());
                    events.iter().map(|e| seen.insert(&*e.id)).collect()
                };
                let mut keep = keep.into_iter();
                events.retain(|_| keep.next().unwrap_or(false));
                new_event_count = events.len();
                ActivityData::Available {
                    events,
                    covered_from,
                }
            }
            Err(
                e @ (IntercomError::NotPermitted { .. } | IntercomError::PlanRestricted { .. }),
            ) => ActivityData::Refused(e),
            Err(e) => ActivityData::Failed(e),
        }
    };
    // Probes only matter for a scan that will complete; a failing one spends no calls on them.
    let probes = if input.probe_extra_scopes && me_ok && admins.is_ok() {
        run_probes(session).await
    } else {
        Vec::new()
    };
    Collected {
        snapshot: Snapshot {
            now,
            onboarded_region: input.region,
            api_version: input.api_version.to_string(),
            me,
            admins,
            activity,
            probes,
            probes_enabled: input.probe_extra_scopes,
            allowed_domains: input.allowed_domains,
            attestations: input.attestations,
        },
        new_event_count,
        fetched_window,
    }
}

/// Where this scan's activity fetch starts: the stored cursor minus the overlap, or the
/// backfill start on a first fetch (never earlier than the backfill start).
pub fn fetch_after(
    cursor: Option<DateTime<Utc>>,
    settings: &CheckSettings,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let fresh_start = now - Duration::days(i64::from(settings.activity_backfill_days));
    match cursor {
        Some(cursor) => (cursor - Duration::minutes(i64::from(settings.activity_overlap_minutes)))
            .max(fresh_start),
        None => fresh_start,
    }
}

async fn fetch_activity(
    session: &Session,
    after: DateTime<Utc>,
    before: DateTime<Utc>,
) -> Result<Vec<ActivityEvent>, IntercomError> {
    let mut pager = session.activity_logs(after.timestamp(), before.timestamp());
    let mut events = Vec::new();
    while let Some(page) = pager.next_page().await? {
        events.extend(page.iter().filter_map(ActivityEvent::from_log));
    }
    Ok(events)
}

async fn run_probes(session: &Session) -> Vec<Probe> {
    let mut probes = Vec::with_capacity(EXTRA_SCOPE_PROBES.len());
    for (capability, endpoint) in EXTRA_SCOPE_PROBES {
        let outcome = match session.probe(endpoint).await {
            Ok(intercom::ProbeOutcome::Allowed) => ProbeOutcome::Allowed,
            Ok(intercom::ProbeOutcome::Refused(_)) => ProbeOutcome::Refused,
            Err(e) => ProbeOutcome::Error(e.to_string()),
        };
        probes.push(Probe {
            capability: (*capability).to_string(),
            endpoint: (*endpoint).to_string(),
            outcome,
        });
    }
    probes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil;

    fn ids(events: &[ActivityEvent]) -> Vec<&str> {
        events.iter().map(|e| &*e.id).collect()
    }

    /// Fetched events come first and are the ones persist stores; a stored event fetched
    /// again is held once; dropping the stored ones leaves exactly the fetched.
    #[test]
    fn stored_events_merge_after_the_fetched_and_leave_again() {
        let now = testutil::now();
        let ev = |id: &str| testutil::event(id, "admin_login_success", "1", now);
        let mut snapshot = testutil::snapshot();
        testutil::set_events(&mut snapshot, vec![ev("n1"), ev("n2")]);
        let mut collected = Collected {
            snapshot,
            new_event_count: 2,
            fetched_window: None,
        };
        collected.merge_stored(vec![ev("s1"), ev("n2"), ev("s2")]);
        let ActivityData::Available { events, .. } = &collected.snapshot.activity else {
            panic!("activity stays available");
        };
        assert_eq!(ids(events), ["n1", "n2", "s1", "s2"]);
        assert_eq!(ids(collected.new_events()), ["n1", "n2"]);
        collected.keep_only_new_events();
        let ActivityData::Available { events, .. } = &collected.snapshot.activity else {
            panic!("activity stays available");
        };
        assert_eq!(ids(events), ["n1", "n2"]);
    }

    /// Without a fetched log there is nothing to merge into: stored events are not shown
    /// to the checks as if the log had been read.
    #[test]
    fn nothing_merges_into_an_activity_log_that_was_not_fetched() {
        let mut snapshot = testutil::snapshot();
        snapshot.activity = ActivityData::NotFetched;
        let mut collected = Collected {
            snapshot,
            new_event_count: 0,
            fetched_window: None,
        };
        collected.merge_stored(vec![testutil::event(
            "s1",
            "admin_login_success",
            "1",
            testutil::now(),
        )]);
        assert!(matches!(
            collected.snapshot.activity,
            ActivityData::NotFetched
        ));
    }
}
