//! Builders for check tests: a clean workspace that passes every API check, to be bent
//! one field at a time.

use chrono::{DateTime, Duration, Utc};

use super::snapshot::{
    ActivityData, ActivityEvent, AdminHistory, PreviousState, Probe, ProbeOutcome, Snapshot,
};
use super::{evaluate, CheckOutcome, CheckSettings};
use crate::intercom::models::{Admin, App, Me, Role};
use crate::intercom::IntercomError;
use crate::Region;

pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap() // 2026-01-01T00:00:00Z
}

pub fn me() -> Me {
    Me {
        id: Some("1".into()),
        name: Some("Owner".into()),
        email: Some("owner@acme.com".into()),
        email_verified: Some(true),
        app: Some(App {
            id_code: Some("abc123".into()),
            region: Some("US".into()),
            identity_verification: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn admin(id: &str, email: &str) -> Admin {
    Admin {
        kind: Some("admin".into()),
        id: Some(id.into()),
        name: Some(format!("Teammate {id}")),
        email: Some(email.into()),
        away_mode_enabled: Some(false),
        has_inbox_seat: Some(true),
        role: Some(Role {
            id: Some("r1".into()),
            name: Some("Support".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Owner (1) and a colleague (2), both recently active, 90 days of history, nothing wrong.
pub fn snapshot() -> Snapshot {
    let now = now();
    Snapshot {
        now,
        onboarded_region: Region::Us,
        api_version: "2.16".into(),
        me: Ok(me()),
        admins: Ok(vec![
            admin("1", "owner@acme.com"),
            admin("2", "bo@acme.com"),
        ]),
        activity: ActivityData::Available {
            events: vec![
                login("l1", "1", now - Duration::days(1)),
                login("l2", "2", now - Duration::days(2)),
            ],
            covered_from: now - Duration::days(90),
        },
        probes: vec![
            probe("Read tags", "/tags", ProbeOutcome::Refused),
            probe(
                "Manage IP allowlist",
                "/ip_allowlist",
                ProbeOutcome::Refused,
            ),
        ],
        probes_enabled: true,
        allowed_domains: Vec::new(),
        attestations: Vec::new(),
    }
}

/// A second scan: both teammates known since long ago.
pub fn previous() -> PreviousState {
    let since = now() - Duration::days(200);
    let mut prev = PreviousState {
        has_completed_scan: true,
        ..Default::default()
    };
    for id in ["1", "2"] {
        prev.previous_admin_ids.insert(id.into());
        prev.admins.insert(id.into(), history(since));
    }
    prev
}

pub fn history(first_seen_at: DateTime<Utc>) -> AdminHistory {
    AdminHistory {
        first_seen_at,
        away_since: None,
        last_active_at: None,
    }
}

pub fn probe(capability: &str, endpoint: &str, outcome: ProbeOutcome) -> Probe {
    Probe {
        capability: capability.into(),
        endpoint: endpoint.into(),
        outcome,
    }
}

pub fn event(id: &str, kind: &str, by: &str, at: DateTime<Utc>) -> ActivityEvent {
    ActivityEvent {
        id: id.into(),
        activity_type: kind.into(),
        performed_by_id: Some(by.into()),
        performed_by_email: None,
        ip: None,
        created_at: at,
        description: None,
        metadata: Default::default(),
    }
}

/// A Google sign-in: activity that trips no login check.
pub fn login(id: &str, by: &str, at: DateTime<Utc>) -> ActivityEvent {
    let mut ev = event(id, "admin_login_success", by, at);
    ev.metadata = serde_json::json!({"sign_in_method": "google"}).into();
    ev
}

pub fn set_events(snap: &mut Snapshot, events: Vec<ActivityEvent>) {
    let covered_from = match &snap.activity {
        ActivityData::Available { covered_from, .. } => *covered_from,
        _ => now() - Duration::days(90),
    };
    snap.activity = ActivityData::Available {
        events,
        covered_from,
    };
}

pub fn push_events(snap: &mut Snapshot, more: Vec<ActivityEvent>) {
    if let ActivityData::Available { events, .. } = &mut snap.activity {
        events.extend(more);
    } else {
        set_events(snap, more);
    }
}

pub fn not_permitted(endpoint: &str) -> IntercomError {
    IntercomError::NotPermitted {
        endpoint: endpoint.into(),
        status: 403,
        code: "forbidden".into(),
        message: "You do not have the required scope".into(),
    }
}

/// The outcome of one check, through `evaluate` so that the gates apply.
pub fn run_with(
    id: &str,
    snap: &Snapshot,
    prev: &PreviousState,
    settings: &CheckSettings,
) -> CheckOutcome {
    evaluate(snap, prev, settings)
        .into_iter()
        .find(|o| o.check_id == id)
        .unwrap_or_else(|| panic!("{id} not in the catalog"))
}

pub fn run(id: &str, snap: &Snapshot) -> CheckOutcome {
    run_with(id, snap, &previous(), &CheckSettings::default())
}

pub fn resources(o: &CheckOutcome) -> Vec<&str> {
    o.findings.iter().map(|f| f.resource.as_str()).collect()
}
