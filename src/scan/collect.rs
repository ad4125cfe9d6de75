//! Collect: read the workspace from the Intercom API into a `Snapshot`. Activity events
//! are fetched incrementally from the stored cursor (with overlap; duplicates are dropped
//! by id when stored) and merged with the stored events the A checks read one by one.

use std::collections::HashSet;

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
    /// Stored events the checks read one by one (see `db::activity::for_scan`).
    pub stored_events: Vec<ActivityEvent>,
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
                // One copy of each event: fetched events first (de-duplicated by id, in
                // place), then the stored ones not fetched again. `new_event_count` marks
                // the fetched prefix, which persist stores.
                let mut events = events;
                let (keep_new, keep_stored) = {
                    let mut seen: HashSet<&str> =
                        HashSet::with_capacity(input.stored_events.len() + events.len());
                    let keep_new: Vec<bool> =
                        events.iter().map(|e| seen.insert(e.id.as_str())).collect();
                    let keep_stored: Vec<bool> = input
                        .stored_events
                        .iter()
                        .map(|e| seen.insert(e.id.as_str()))
                        .collect();
                    (keep_new, keep_stored)
                };
                let mut keep = keep_new.into_iter();
                events.retain(|_| keep.next().unwrap_or(false));
                new_event_count = events.len();
                events.reserve_exact(keep_stored.iter().filter(|k| **k).count());
                events.extend(
                    input
                        .stored_events
                        .into_iter()
                        .zip(keep_stored)
                        .filter_map(|(e, k)| k.then_some(e)),
                );
                // Growth by doubling leaves up to half the capacity unused; held for the
                // whole scan, it is worth one reallocation.
                events.shrink_to_fit();
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
