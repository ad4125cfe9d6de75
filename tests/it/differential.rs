//! Differential test of what consumers read: ONE multi-scan story against the simulator
//! and real Postgres (onboard, scan, fix, regress, mute, expire, scope lost, revoke,
//! recover, with teammates and activity events changing between scans), after which every
//! consumer-visible column of `sspm.findings`, `finding_events`, `check_results`,
//! `admins`, `activity_events` and `scans` (plus the reader columns of `instances` and the
//! views `open_findings`, `instance_posture`, `finding_history`) is
//! dumped, normalised and compared row by row with the golden files in
//! `tests/fixtures/golden/differential/`, and so are the `sspm_findings` notification
//! payloads the scans sent.
//!
//! The golden files were captured from the implementation as it was before the persist
//! path was rewritten for speed (issue 17). A rewrite passes only if consumers cannot tell
//! the difference.
//!
//! Regenerate the golden files (only when a visible change is intended; say why in the
//! commit, and review the diff of the .jsonl files):
//!
//! ```text
//! SSPM_UPDATE_GOLDEN=1 cargo test --test it differential::
//! ```
//!
//! Normalisation, so that the dump is the same on every run:
//! - uuids become stable labels: `instance:<name>`, `scan:NN` (in start order),
//!   `finding:NNN` (in (instance, check, resource) order), `exception:NN` (in creation
//!   order); any other uuid (lease tokens, request ids in error texts) `uuid:NN` in order
//!   of first appearance in the dump. Uuids inside strings are replaced as well.
//! - Times written by the scanner become the name of the step during which they were
//!   written (`s03 fix`): the test records a boundary between steps, with a pause on
//!   both sides, so anything written by a step falls inside it. This keeps "which scan
//!   saw it last" while ignoring the clock. Times that come from Intercom (event
//!   `created_at`, `last_active_at`) are exact offsets before the anchor `A`, the whole
//!   second at which the test started (the scenario's events are placed relative to it):
//!   `A-2d4h` (texts such as titles show them to the minute: `A-5d (minute)`; the events
//!   are whole minutes before `A` so that this is exact). Times computed as "a step minus a window" (the backfill start in
//!   `activity_covered_from`) become `<step> -90d`.
//! - `finding_events.id` (a sequence; `event_id` in the view) is dropped: the rows are ordered by step, finding
//!   and then id, which keeps the order of a finding's transitions without depending on
//!   the order in which one scan inserts the events of different findings.
//! - The simulator's random port is replaced by `sim-host`; the sealed token's key id
//!   (a hash of a key generated per run) by `set`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use intercom_sim::{EventSpec, Simulator};
use intercom_sspm::db::instances;
use intercom_sspm::db::scans::Trigger;
use intercom_sspm::scan::{Fence, NextDue, ScanOutcome, ScanReport, Scanner};
use serde_json::{json, Value};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::cli::{self, run_cli, text};
use crate::support::{self, TestKey};

const ACME_TOKEN: &str = "tok_diff_acme_first_5b2c81";
const ACME_NEW_TOKEN: &str = "tok_diff_acme_second_9e47d0";
const GLOBEX_TOKEN: &str = "tok_diff_globex_admins_33fa6c";

const ACME_SCOPES: &[&str] = &["read_admins", "read_admin_activity_logs", "read_tags"];

const UPDATE_ENV: &str = "SSPM_UPDATE_GOLDEN";

const MIN: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------------------
// The story's clock: step boundaries and the anchor of the scenario's event times.

struct Clock {
    /// Whole second at (or just before) the test's start; event times are `anchor - n`.
    anchor: i64,
    /// Step start times, in order, with the step's name.
    steps: Vec<(DateTime<Utc>, String)>,
}

impl Clock {
    fn start() -> Self {
        let now = Utc::now();
        Self {
            anchor: now.timestamp(),
            steps: vec![(now, "s00 setup".into())],
        }
    }

    fn anchor_time(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.anchor, 0).unwrap()
    }

    /// Ends the current step and starts the next. The pauses on both sides of the
    /// boundary keep every time written by one step clear of the next one's.
    async fn step(&mut self, name: &str) {
        tokio::time::sleep(StdDuration::from_millis(20)).await;
        let n = self.steps.len();
        self.steps.push((Utc::now(), format!("s{n:02} {name}")));
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }

    /// A time shown to the minute in a text: Intercom event times are whole minutes
    /// before the anchor, so `A - t` rounded down to minutes is exact whatever second
    /// the test started at.
    fn label_minute(&self, t: DateTime<Utc>) -> String {
        let before = (self.anchor - t.timestamp()) / MIN * MIN;
        assert!(
            before >= MIN,
            "a time shown to the minute that is not an Intercom event's ({t}): normalise it"
        );
        format!("A-{} (minute)", human(before))
    }

    fn label(&self, t: DateTime<Utc>) -> String {
        let start = self.steps[0].0;
        if t >= start {
            let step = self
                .steps
                .iter()
                .rev()
                .find(|(at, _)| *at <= t)
                .expect("t is after the first step");
            return step.1.clone();
        }
        let before = self.anchor_time() - t;
        if t.timestamp_subsec_nanos() == 0 && before > Duration::zero() {
            return format!("A-{}", human(before.num_seconds()));
        }
        // A window start computed by the scanner ("now - N days"): name it by the step.
        for days in 1..=400 {
            let shifted = t + Duration::days(days);
            if shifted >= start && shifted <= Utc::now() {
                return format!("{} -{days}d", self.label(shifted));
            }
        }
        panic!(
            "time {t} is neither Intercom data (a whole second before the anchor) nor written \
             during a step: normalise it in tests/it/differential.rs"
        );
    }
}

/// Replaces every `YYYY-MM-DD HH:MM UTC` inside `s` (how titles show an event's time) by
/// `label(that minute)`.
fn replace_minute_times(s: &str, mut label: impl FnMut(DateTime<Utc>) -> String) -> String {
    const SHAPE: &[u8] = b"dddd-dd-dd dd:dd UTC";
    let bytes = s.as_bytes();
    let at = |i: usize| {
        bytes.len() >= i + SHAPE.len()
            && SHAPE.iter().zip(&bytes[i..]).all(|(want, got)| match want {
                b'd' => got.is_ascii_digit(),
                other => other == got,
            })
    };
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if at(i) {
            let text = &s[i..i + 16];
            let t = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
                .unwrap_or_else(|e| panic!("{text:?} looks like a time but is not: {e}"))
                .and_utc();
            out.push_str(&label(t));
            i += SHAPE.len();
        } else {
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// `2d4h`, `57m30s`: seconds as the largest units, zeros left out.
fn human(mut secs: i64) -> String {
    let mut out = String::new();
    for (unit, len) in [("d", DAY), ("h", HOUR), ("m", MIN), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The simulated world.

fn event(anchor: i64, id: &str, kind: &str, before: i64, by: &str, extra: Value) -> Value {
    let mut e = json!({
        "id": id, "activity_type": kind, "created_at": anchor - before, "performed_by": by,
    });
    if let Value::Object(fields) = extra {
        e.as_object_mut().unwrap().extend(fields);
    }
    e
}

fn login(anchor: i64, id: &str, by: &str, before: i64, method: &str) -> Value {
    event(
        anchor,
        id,
        "admin_login_success",
        before,
        by,
        json!({ "ip": "198.51.100.7", "metadata": { "sign_in_method": method } }),
    )
}

fn event_spec(value: Value) -> EventSpec {
    serde_json::from_value(value).expect("test event is valid")
}

fn admin_spec(value: Value) -> intercom_sim::AdminSpec {
    serde_json::from_value(value).expect("test admin is valid")
}

/// acme (us): one of most problems the catalog sees, a token with the activity-log scope
/// and one more than it needs (`read_tags`). Times are far from every check's threshold
/// and whole minutes before the anchor (titles show them to the minute). Events added
/// later are at most 6 minutes old, inside the 10-minute overlap the next scan re-reads
/// from its cursor.
fn acme(anchor: i64) -> Value {
    let mut events = vec![
        login(anchor, "l-owner", "1", DAY, "google"),
        login(anchor, "l-jane", "2", DAY, "email_password"),
        login(anchor, "l-support", "3", 2 * DAY, "google"),
        login(anchor, "l-bob", "4", 2 * DAY, "google"),
        login(anchor, "l-nora", "5", 3 * DAY, "google"),
        login(anchor, "l-alice", "6", 3 * DAY, "google"),
        // Dan logged in 45 days ago: dormant (30 d), not yet an inactive inbox seat (60 d).
        login(anchor, "l-dan-old", "7", 45 * DAY, "saml"),
    ];
    // Six failures from one IP within 15 minutes, then a success from it: a critical burst.
    for i in 0..6 {
        events.push(event(
            anchor,
            &format!("fail-{i}"),
            "admin_login_failure",
            5 * HOUR - i * 3 * MIN,
            "3",
            json!({ "ip": "203.0.113.9" }),
        ));
    }
    events.push(event(
        anchor,
        "fail-then-success",
        "admin_login_success",
        4 * HOUR,
        "3",
        json!({ "ip": "203.0.113.9", "metadata": { "sign_in_method": "google" } }),
    ));
    events.extend([
        event(
            anchor,
            "tfa-off",
            "admin_two_factor_auth_change",
            5 * DAY,
            "1",
            json!({ "metadata": { "before": "enabled", "after": "disabled" } }),
        ),
        event(anchor, "export-1", "app_data_export", 6 * DAY, "1", json!({})),
        event(
            anchor,
            "install-1",
            "app_package_installation",
            7 * DAY,
            "1",
            json!({}),
        ),
        event(
            anchor,
            "imp-1",
            "admin_impersonation_start",
            2 * DAY,
            "1",
            json!({}),
        ),
        // Inside the 90-day backfill but outside the 30-day event window: stored, no finding.
        event(anchor, "export-old", "app_data_export", 60 * DAY, "1", json!({})),
        // Outside the backfill: never fetched.
        event(
            anchor,
            "export-ancient",
            "app_data_export",
            120 * DAY,
            "1",
            json!({}),
        ),
        // A type no check knows: stored as it came.
        event(
            anchor,
            "novel-1",
            "brand_new_event_type_2027",
            DAY,
            "1",
            json!({ "description": "Owner did something new.", "metadata": { "k": [1, "two", null] } }),
        ),
    ]);
    json!({
        "id_code": "acme",
        "name": "Acme",
        "region": "us",
        "identity_verification": false,
        "tokens": [{ "token": ACME_TOKEN, "scopes": ACME_SCOPES }],
        "admins": [
            { "id": "1", "name": "Owner", "email": "owner@acme.example", "email_verified": true,
              "role": { "id": "r1", "name": "Admin" } },
            { "id": "2", "name": "Jane", "email": "jane.doe@gmail.com", "role": { "id": "r2", "name": "Agent" } },
            { "id": "3", "name": "Support", "email": "support@acme.example", "role": { "id": "r2", "name": "Agent" } },
            { "id": "4", "name": "Bob", "email": "bob@contractor.example", "role": { "id": "r2", "name": "Agent" } },
            { "id": "5", "name": "Nora", "email": "nora@acme.example" },
            { "id": "6", "name": "Alice", "email": "alice@acme.example", "away_mode_enabled": true,
              "away_mode_reassign": true, "role": { "id": "r2", "name": "Agent" } },
            { "id": "7", "name": "Dan", "email": "dan@acme.example", "job_title": "Night shift",
              "team_ids": [11, 12], "role": { "id": "r2", "name": "Agent" } },
            // No activity at all: dormant and an inactive inbox seat.
            { "id": "8", "name": "Eve", "email": "eve@acme.example", "role": { "id": "r2", "name": "Agent" } },
            { "id": "9", "name": "Viewer", "email": "viewer@acme.example", "has_inbox_seat": false,
              "role": { "id": "r3", "name": "Viewer" } }
        ],
        "events": events
    })
}

/// globex (au): a token limited to "Read admins": activity checks are not evaluated.
fn globex() -> Value {
    json!({
        "id_code": "globex",
        "name": "Globex",
        "region": "au",
        "identity_verification": true,
        "tokens": [{ "token": GLOBEX_TOKEN, "scopes": ["read_admins"] }],
        "admins": [
            { "id": "1", "name": "Hank", "email": "hank@globex.example", "email_verified": true,
              "role": { "id": "r1", "name": "Admin" } },
            { "id": "2", "name": "Gina", "email": "gina@globex.example", "role": { "id": "r2", "name": "Agent" } }
        ]
    })
}

// ---------------------------------------------------------------------------------------
// Driving the product: the CLI for what operators do, the scanner for scans.

struct Story {
    pool: PgPool,
    sim: Simulator,
    clock: Clock,
    env: Vec<(String, String)>,
    /// Scans the scheduler would run (its claim and fence).
    daemon: Scanner,
    /// Scans as `intercom-sspm scan` runs them (a manual lease as its fence).
    cli: Scanner,
    reports: Vec<(String, ScanReport)>,
}

fn scanner(pool: &PgPool, sim: &Simulator, key: &TestKey, replica: &str) -> Scanner {
    let mut s = support::scanner(pool, support::settings(Some(sim), &[]), key.ring());
    s.replica = replica.into();
    s
}

impl Story {
    async fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = run_cli(args, &self.env, stdin).await;
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "{args:?} failed\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    async fn instance(&self, name: &str) -> instances::Instance {
        instances::get(&self.pool, name).await.unwrap()
    }

    /// A scan as the daemon runs it: claim the due instance of the region, scan under the
    /// claim's fence, make it due again at once.
    async fn scheduled_scan(&mut self, name: &str) -> ScanReport {
        let instance = self.instance(name).await;
        let claimed = intercom_sspm::db::leases::claim(
            &self.pool,
            instance.region,
            10,
            &self.daemon.replica,
            intercom_sspm::db::leases::LeaseTerms(StdDuration::from_secs(300)),
        )
        .await
        .unwrap();
        assert_eq!(
            claimed.iter().map(|c| c.instance_id).collect::<Vec<_>>(),
            vec![instance.id],
            "exactly {name} is due in its region"
        );
        let c = &claimed[0];
        let fence = Fence {
            lease_token: c.lease_token,
            scan_id: Some(c.scan_id),
            next: NextDue::Keep(Utc::now()),
        };
        let report = self
            .daemon
            .scan(&instance, Trigger::Schedule, Some(fence))
            .await
            .unwrap();
        self.reports.push((name.into(), report.clone()));
        report
    }

    /// A scan as `intercom-sspm scan <name>` runs it: a manual lease as the fence.
    async fn manual_scan(&mut self, name: &str) -> ScanReport {
        let instance = self.instance(name).await;
        let lease = intercom_sspm::db::leases::claim_manual(
            &self.pool,
            instance.id,
            &self.cli.replica,
            intercom_sspm::db::leases::LeaseTerms(StdDuration::from_secs(300)),
        )
        .await
        .unwrap()
        .expect("nobody else holds the lease");
        let fence = Fence {
            lease_token: lease.lease_token,
            scan_id: Some(lease.scan_id),
            next: NextDue::Keep(lease.previous_next_scan_at),
        };
        let report = self
            .cli
            .scan(&instance, Trigger::Manual, Some(fence))
            .await
            .unwrap();
        self.reports.push((name.into(), report.clone()));
        report
    }

    fn acme_event(&self, value: Value) {
        self.sim
            .scenario_handle()
            .add_event("acme", event_spec(value))
            .unwrap();
    }
}

#[track_caller]
fn assert_succeeded(r: &ScanReport) {
    assert_eq!(r.status, ScanOutcome::Succeeded, "{:?}", r.error);
}

async fn finding_status(pool: &PgPool, check: &str, resource: &str) -> String {
    sqlx::query_scalar(
        "SELECT f.status FROM sspm.findings f JOIN sspm.instances i ON i.id = f.instance_id
         WHERE i.name = 'acme' AND f.check_id = $1 AND f.resource = $2",
    )
    .bind(check)
    .bind(resource)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn scan_story_matches_golden_rows(pool: PgPool) {
    let clock = Clock::start();
    let a = clock.anchor;
    let sim = support::sim::start_json(json!({ "workspaces": [acme(a), globex()] })).await;
    let key = TestKey::generate();
    let env = cli::env(&pool, Some(&sim), &key.b64);
    let mut story = Story {
        daemon: scanner(&pool, &sim, &key, "daemon-1"),
        cli: scanner(&pool, &sim, &key, "cli:diff"),
        pool: pool.clone(),
        sim,
        clock,
        env,
        reports: Vec::new(),
    };
    let handle = story.sim.scenario_handle();
    // What a consumer listening on sspm_findings is told, scan by scan.
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen("sspm_findings").await.unwrap();

    // Onboard both workspaces as an operator does.
    story.clock.step("onboard").await;
    story
        .cli(
            &[
                "instance",
                "add",
                "--name",
                "acme",
                "--region",
                "us",
                "--token-stdin",
            ],
            Some(&format!("{ACME_TOKEN}\n")),
        )
        .await;
    story
        .cli(
            &[
                "instance",
                "add",
                "--name",
                "globex",
                "--region",
                "au",
                "--token-stdin",
                "--allowed-domains",
                "globex.example",
            ],
            Some(&format!("{GLOBEX_TOKEN}\n")),
        )
        .await;

    // The first scans: every problem opens a finding.
    story.clock.step("first scans").await;
    assert_succeeded(&story.scheduled_scan("acme").await);
    assert_succeeded(&story.manual_scan("globex").await);

    // Fixed in Intercom: identity verification on, the contractor removed, Nora given a
    // role, Alice back from away; meanwhile Dan went away, Jane became an admin, a new
    // gmail teammate joined, Eve logged in and a role was changed.
    story.clock.step("fix").await;
    handle
        .update_workspace("acme", |w| {
            w.identity_verification = true;
            for admin in &mut w.admins {
                match admin.id.as_str() {
                    "5" => {
                        admin.role = Some(intercom_sim::RoleSpec {
                            id: "r2".into(),
                            name: "Agent".into(),
                        })
                    }
                    "6" => admin.away_mode_enabled = false,
                    "7" => admin.away_mode_enabled = true,
                    "2" => {
                        admin.role = Some(intercom_sim::RoleSpec {
                            id: "r1".into(),
                            name: "Admin".into(),
                        })
                    }
                    _ => {}
                }
            }
        })
        .unwrap();
    assert!(handle.remove_admin("acme", "4").unwrap());
    handle
        .add_admin(
            "acme",
            admin_spec(json!({ "id": "10", "name": "Kim", "email": "kim@gmail.com",
                                "role": { "id": "r2", "name": "Agent" } })),
        )
        .unwrap();
    story.acme_event(login(a, "l-eve", "8", 6 * MIN, "google"));
    story.acme_event(event(
        a,
        "role-change-1",
        "role_change",
        5 * MIN,
        "1",
        json!({ "metadata": { "role": "Admin", "admin": "2" } }),
    ));
    let fix = story.manual_scan("acme").await;
    assert_succeeded(&fix);
    assert!(fix.resolved_findings >= 4, "{fix:?}");
    assert_eq!(
        finding_status(&pool, "identity_verification_enabled", "workspace").await,
        "resolved"
    );
    assert_eq!(
        finding_status(&pool, "admin_external_domain", "admin:4").await,
        "resolved"
    );

    // Regression: identity verification off again, Nora's role gone again, the contractor
    // back; the viewer removed; a data deletion happens.
    story.clock.step("regress").await;
    handle
        .update_workspace("acme", |w| {
            w.identity_verification = false;
            if let Some(nora) = w.admins.iter_mut().find(|a| a.id == "5") {
                nora.role = None;
            }
        })
        .unwrap();
    handle
        .add_admin(
            "acme",
            admin_spec(
                json!({ "id": "4", "name": "Bob", "email": "bob@contractor.example",
                                "role": { "id": "r2", "name": "Agent" } }),
            ),
        )
        .unwrap();
    // The read-only viewer leaves for good (stays removed to the end).
    assert!(handle.remove_admin("acme", "9").unwrap());
    story.acme_event(event(
        a,
        "delete-1",
        "app_data_deletion",
        4 * MIN,
        "1",
        json!({ "ip": "198.51.100.8" }),
    ));
    let regress = story.scheduled_scan("acme").await;
    assert_succeeded(&regress);
    assert_eq!(
        finding_status(&pool, "identity_verification_enabled", "workspace").await,
        "open"
    );

    // Accepted risks, added with the CLI: one resource of one check (with an expiry), and
    // every resource of another (none). Globex changes meanwhile.
    story.clock.step("mute").await;
    let out = story
        .cli(
            &[
                "exception",
                "add",
                "--instance",
                "acme",
                "--check",
                "admin_personal_email_domain",
                "--resource",
                "admin:2",
                "--reason",
                "Jane's gmail is approved until her account moves",
                "--expires",
                "2099-12-31",
                "--author",
                "secops",
            ],
            None,
        )
        .await;
    assert!(out.contains("1 finding(s) muted"), "{out}");
    let out = story
        .cli(
            &[
                "exception",
                "add",
                "--instance",
                "acme",
                "--check",
                "data_exported",
                "--reason",
                "exports are reviewed monthly",
                "--permanent",
                "--author",
                "secops",
            ],
            None,
        )
        .await;
    assert!(out.contains("1 finding(s) muted"), "{out}");
    handle
        .update_workspace("globex", |w| {
            w.admins[1].role = Some(intercom_sim::RoleSpec {
                id: "r1".into(),
                name: "Admin".into(),
            });
            w.admins[1].away_mode_enabled = true;
        })
        .unwrap();
    handle
        .add_admin(
            "globex",
            admin_spec(json!({ "id": "3", "name": "Otto", "email": "otto@outlook.com" })),
        )
        .unwrap();
    assert_succeeded(&story.scheduled_scan("acme").await);
    assert_succeeded(&story.scheduled_scan("globex").await);
    assert_eq!(
        finding_status(&pool, "admin_personal_email_domain", "admin:2").await,
        "muted"
    );

    // Expiry: the 2099 date cannot be waited for, so its time is moved into the past
    // (as the passing of time would), then the housekeeping job the daemon runs every
    // five minutes reopens the finding; a rescan keeps it open.
    story.clock.step("expire").await;
    sqlx::query(
        "UPDATE sspm.exceptions SET expires_at = now() - interval '1 second'
         WHERE check_id = 'admin_personal_email_domain'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert!(
        intercom_sspm::scheduler::housekeeping::run_expire(&pool, "daemon-1", Duration::minutes(5))
            .await
    );
    assert_eq!(
        finding_status(&pool, "admin_personal_email_domain", "admin:2").await,
        "open"
    );
    story.acme_event(login(a, "l-jane-2", "2", 3 * MIN, "email_password"));
    assert_succeeded(&story.manual_scan("acme").await);

    // Scopes reduced to "Read admins": the activity checks become not_evaluated, which
    // resolves none of their findings; the extra `read_tags` is gone too.
    story.clock.step("scope lost").await;
    handle.set_scopes(ACME_TOKEN, &["read_admins"]).unwrap();
    let reduced = story.scheduled_scan("acme").await;
    assert_succeeded(&reduced);
    assert_eq!(
        finding_status(&pool, "failed_login_burst", "event:fail-0").await,
        "open"
    );
    assert_eq!(
        finding_status(&pool, "activity_log_access", "workspace").await,
        "open"
    );

    // Revoked: the scan fails, records token_valid, touches nothing else; the event that
    // happens meanwhile is not ingested.
    story.clock.step("revoke").await;
    handle.revoke_token(ACME_TOKEN).unwrap();
    story.acme_event(login(a, "l-support-2", "3", 2 * MIN, "google"));
    let revoked = story.scheduled_scan("acme").await;
    assert_eq!(revoked.status, ScanOutcome::Failed);
    assert_eq!(revoked.error_kind.as_deref(), Some("unauthorized"));

    // Recovered: a new token (with the activity-log scope again) through `instance
    // set-token`, and the next scan succeeds, resolves token_valid and activity_log_access
    // and catches up on the events from the stored cursor.
    story.clock.step("recover").await;
    handle
        .update_workspace("acme", |w| {
            w.tokens.push(
                serde_json::from_value(json!({ "token": ACME_NEW_TOKEN, "scopes": ACME_SCOPES }))
                    .unwrap(),
            )
        })
        .unwrap();
    let out = story
        .cli(
            &["instance", "set-token", "acme", "--token-stdin"],
            Some(&format!("{ACME_NEW_TOKEN}\n")),
        )
        .await;
    assert!(out.contains("replaced"), "{out}");
    story.acme_event(login(a, "l-owner-2", "1", MIN, "google"));
    let recovered = story.manual_scan("acme").await;
    assert_succeeded(&recovered);
    for check in ["token_valid", "activity_log_access"] {
        assert_eq!(finding_status(&pool, check, "workspace").await, "resolved");
    }

    let outcomes: Vec<(&str, ScanOutcome)> = story
        .reports
        .iter()
        .map(|(name, r)| (name.as_str(), r.status))
        .collect();
    use ScanOutcome::{Failed, Succeeded};
    assert_eq!(
        outcomes,
        [
            ("acme", Succeeded),
            ("globex", Succeeded),
            ("acme", Succeeded),
            ("acme", Succeeded),
            ("acme", Succeeded),
            ("globex", Succeeded),
            ("acme", Succeeded),
            ("acme", Succeeded),
            ("acme", Failed),
            ("acme", Succeeded),
        ],
        "the story's scans, in order"
    );

    story.clock.step("dump").await;
    let notifications = drain(&mut listener).await;
    let dump = dump(&pool, &story.clock, &story.sim, &notifications).await;
    story.sim.shutdown().await;
    compare_or_update(&dump);
}

// ---------------------------------------------------------------------------------------
// Dumping and normalising.

/// One table's dump: name, the query (one jsonb object per row, documented columns only)
/// and the columns that order the normalised rows.
struct TableSpec {
    name: &'static str,
    sql: &'static str,
    order_by: &'static [&'static str],
    /// Columns used for ordering only (sequences), left out of the dump.
    order_only: &'static [&'static str],
}

const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "instances",
        // The columns sspm_reader may read, without the scheduler's own clock
        // (next_scan_at, updated_at) which the test's fences set.
        sql: "SELECT jsonb_build_object(
                'id', id, 'name', name, 'region', region, 'workspace_id', workspace_id,
                'workspace_name', workspace_name, 'token_key_id', token_key_id,
                'allowed_domains', allowed_domains, 'check_overrides', check_overrides,
                'enabled', enabled, 'schedule', schedule, 'lease_owner', lease_owner,
                'lease_expires_at', lease_expires_at, 'lease_scan_id', lease_scan_id,
                'consecutive_failures', consecutive_failures, 'status', status,
                'status_detail', status_detail, 'last_scan_at', last_scan_at,
                'last_scan_id', last_scan_id, 'last_success_at', last_success_at,
                'activity_cursor_at', activity_cursor_at,
                'activity_covered_from', activity_covered_from, 'created_at', created_at)
              FROM sspm.instances",
        order_by: &["name"],
        order_only: &[],
    },
    TableSpec {
        name: "scans",
        sql: "SELECT jsonb_build_object(
                'id', id, 'instance_id', instance_id, 'status', status, 'trigger', trigger,
                'replica', replica, 'lease_token', lease_token, 'started_at', started_at,
                'finished_at', finished_at, 'error', error, 'error_kind', error_kind,
                'score', score, 'coverage', coverage, 'api_calls', api_calls,
                'admins_seen', admins_seen, 'events_ingested', events_ingested,
                'new_findings', new_findings, 'resolved_findings', resolved_findings,
                'open_findings', open_findings)
              FROM sspm.scans",
        order_by: &["id"],
        order_only: &[],
    },
    TableSpec {
        name: "check_results",
        sql: "SELECT jsonb_build_object(
                'scan_id', scan_id, 'instance_id', instance_id, 'check_id', check_id,
                'status', status, 'severity', severity, 'reason', reason,
                'failed_count', failed_count)
              FROM sspm.check_results",
        order_by: &["scan_id", "check_id"],
        order_only: &[],
    },
    TableSpec {
        name: "findings",
        sql: "SELECT jsonb_build_object(
                'id', id, 'instance_id', instance_id, 'check_id', check_id,
                'resource', resource, 'status', status, 'severity', severity, 'title', title,
                'evidence', evidence, 'remediation', remediation, 'compliance', compliance,
                'first_seen_at', first_seen_at, 'last_seen_at', last_seen_at,
                'resolved_at', resolved_at, 'first_scan_id', first_scan_id,
                'last_scan_id', last_scan_id, 'reopen_count', reopen_count,
                'exception_id', exception_id)
              FROM sspm.findings",
        order_by: &["id"],
        order_only: &[],
    },
    TableSpec {
        name: "finding_events",
        sql: "SELECT jsonb_build_object(
                'id', id, 'finding_id', finding_id, 'instance_id', instance_id,
                'scan_id', scan_id, 'from_status', from_status, 'to_status', to_status,
                'at', at, 'reason', reason)
              FROM sspm.finding_events",
        order_by: &["at", "finding_id", "id"],
        order_only: &["id"],
    },
    TableSpec {
        name: "admins",
        sql: "SELECT jsonb_build_object(
                'instance_id', instance_id, 'admin_id', admin_id, 'name', name,
                'email', email, 'job_title', job_title, 'role', role, 'role_id', role_id,
                'has_inbox_seat', has_inbox_seat, 'away_mode_enabled', away_mode_enabled,
                'away_since', away_since, 'team_ids', team_ids,
                'first_seen_at', first_seen_at, 'last_seen_at', last_seen_at,
                'removed_at', removed_at, 'last_active_at', last_active_at,
                'last_login_at', last_login_at)
              FROM sspm.admins",
        order_by: &["instance_id", "admin_id"],
        order_only: &[],
    },
    TableSpec {
        name: "activity_events",
        sql: "SELECT jsonb_build_object(
                'instance_id', instance_id, 'event_id', event_id,
                'activity_type', activity_type, 'performed_by_id', performed_by_id,
                'performed_by_email', performed_by_email, 'ip', ip, 'created_at', created_at,
                'description', description, 'metadata', metadata,
                'ingested_at', ingested_at, 'scan_id', scan_id)
              FROM sspm.activity_events",
        order_by: &["instance_id", "event_id"],
        order_only: &[],
    },
    // The views consumers are pointed at first (docs/DATABASE.md), in case a rewrite
    // moves a column's home but keeps the view's answer.
    TableSpec {
        name: "open_findings",
        sql: "SELECT jsonb_build_object(
                'finding_id', finding_id, 'instance_id', instance_id,
                'instance_name', instance_name, 'region', region, 'check_id', check_id,
                'severity', severity, 'severity_rank', severity_rank, 'title', title,
                'resource', resource, 'evidence', evidence, 'remediation', remediation,
                'compliance', compliance, 'first_seen_at', first_seen_at,
                'last_seen_at', last_seen_at, 'reopen_count', reopen_count,
                'last_scan_id', last_scan_id)
              FROM sspm.open_findings",
        order_by: &["finding_id"],
        order_only: &[],
    },
    TableSpec {
        name: "instance_posture",
        // Without next_scan_at, which the test's fences set.
        sql: "SELECT jsonb_build_object(
                'id', id, 'name', name, 'region', region, 'workspace_id', workspace_id,
                'workspace_name', workspace_name, 'enabled', enabled, 'status', status,
                'status_detail', status_detail, 'schedule', schedule,
                'last_scan_at', last_scan_at, 'last_success_at', last_success_at,
                'latest_scan_id', latest_scan_id, 'latest_score', latest_score,
                'latest_coverage', latest_coverage,
                'latest_scan_finished_at', latest_scan_finished_at,
                'open_critical', open_critical, 'open_high', open_high,
                'open_medium', open_medium, 'open_low', open_low, 'open_info', open_info,
                'open_total', open_total)
              FROM sspm.instance_posture",
        order_by: &["name"],
        order_only: &[],
    },
    TableSpec {
        name: "finding_history",
        sql: "SELECT jsonb_build_object(
                'event_id', event_id, 'at', at, 'finding_id', finding_id,
                'instance_id', instance_id, 'instance_name', instance_name,
                'check_id', check_id, 'resource', resource, 'severity', severity,
                'title', title, 'from_status', from_status, 'to_status', to_status,
                'reason', reason, 'scan_id', scan_id)
              FROM sspm.finding_history",
        order_by: &["at", "finding_id", "event_id"],
        order_only: &["event_id"],
    },
];

/// Maps raw values to their stable forms.
struct Normaliser<'a> {
    clock: &'a Clock,
    known: HashMap<Uuid, String>,
    others: HashMap<Uuid, String>,
    /// `127.0.0.1:<port>` of the simulator.
    sim_host: String,
}

impl Normaliser<'_> {
    fn uuid(&mut self, u: Uuid) -> String {
        if let Some(l) = self.known.get(&u) {
            return l.clone();
        }
        let n = self.others.len() + 1;
        self.others
            .entry(u)
            .or_insert_with(|| format!("uuid:{n:02}"))
            .clone()
    }

    fn string(&mut self, s: &str) -> String {
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return self.clock.label(t.with_timezone(&Utc));
        }
        let s = s.replace(&self.sim_host, "sim-host");
        let s = replace_minute_times(&s, |t| self.clock.label_minute(t));
        replace_uuids(&s, |u| self.uuid(u))
    }

    fn value(&mut self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.string(s)),
            Value::Array(items) => Value::Array(items.iter().map(|i| self.value(i)).collect()),
            Value::Object(map) => {
                // Rebuilt in key order, whatever serde_json's map preserves.
                let sorted: BTreeMap<&String, &Value> = map.iter().collect();
                let mut out = serde_json::Map::new();
                for (k, v) in sorted {
                    out.insert(k.clone(), self.value(v));
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }
}

/// Replaces every hyphenated uuid inside `s` by `label(uuid)`.
fn replace_uuids(s: &str, mut label: impl FnMut(Uuid) -> String) -> String {
    let bytes = s.as_bytes();
    let is_uuid_at = |i: usize| {
        bytes.len() >= i + 36
            && bytes[i..i + 36].iter().enumerate().all(|(j, b)| match j {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_hexdigit(),
            })
    };
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if is_uuid_at(i) {
            out.push_str(&label(Uuid::parse_str(&s[i..i + 36]).unwrap()));
            i += 36;
        } else {
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Every notification received so far, in commit order (the scans ran one at a time).
/// Each was delivered when its scan committed, long before this runs; the wait only ends
/// the loop.
async fn drain(listener: &mut PgListener) -> Vec<Value> {
    let mut payloads = Vec::new();
    while let Ok(received) = tokio::time::timeout(StdDuration::from_secs(1), listener.recv()).await
    {
        let note = received.expect("the listener's connection stays up");
        payloads.push(serde_json::from_str(note.payload()).expect("payload is JSON"));
    }
    payloads
}

async fn raw_rows(pool: &PgPool, sql: &str) -> Vec<Value> {
    sqlx::query_scalar::<_, Value>(sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("dump query failed: {e}\n{sql}"))
}

async fn ordered_ids(pool: &PgPool, sql: &str) -> Vec<Uuid> {
    sqlx::query_scalar::<_, Uuid>(sql)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Every table's normalised rows, in a stable order, one JSON text per row.
async fn dump(
    pool: &PgPool,
    clock: &Clock,
    sim: &Simulator,
    notifications: &[Value],
) -> BTreeMap<&'static str, Vec<String>> {
    let mut known = HashMap::new();
    let named: Vec<(Uuid, String)> = sqlx::query_as("SELECT id, name FROM sspm.instances")
        .fetch_all(pool)
        .await
        .unwrap();
    for (id, name) in named {
        known.insert(id, format!("instance:{name}"));
    }
    for (n, id) in ordered_ids(pool, "SELECT id FROM sspm.scans ORDER BY started_at, id")
        .await
        .into_iter()
        .enumerate()
    {
        known.insert(id, format!("scan:{:02}", n + 1));
    }
    let findings = ordered_ids(
        pool,
        "SELECT f.id FROM sspm.findings f JOIN sspm.instances i ON i.id = f.instance_id
         ORDER BY i.name, f.check_id, f.resource",
    )
    .await;
    for (n, id) in findings.into_iter().enumerate() {
        known.insert(id, format!("finding:{:03}", n + 1));
    }
    for (n, id) in ordered_ids(
        pool,
        "SELECT id FROM sspm.exceptions ORDER BY created_at, id",
    )
    .await
    .into_iter()
    .enumerate()
    {
        known.insert(id, format!("exception:{:02}", n + 1));
    }
    let base = sim.base_url(intercom_sim::Region::Us);
    let sim_host = url::Url::parse(&base)
        .map(|u| format!("{}:{}", u.host_str().unwrap(), u.port().unwrap()))
        .unwrap();
    let mut norm = Normaliser {
        clock,
        known,
        others: HashMap::new(),
        sim_host,
    };

    let mut out = BTreeMap::new();
    for table in TABLES {
        let raw = raw_rows(pool, table.sql).await;
        // Order by the key columns with known labels (times by their step), the raw
        // finding event id as the last tie-breaker; only then label the rest, so that
        // `uuid:NN` follow the dump's order.
        let mut keyed: Vec<(Vec<SortKey>, Value)> = raw
            .into_iter()
            .map(|row| {
                let key = table
                    .order_by
                    .iter()
                    .map(|c| sort_key(&norm, clock, &row[*c]))
                    .collect();
                (key, row)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let lines = keyed
            .into_iter()
            .map(|(_, mut row)| {
                for column in table.order_only {
                    row.as_object_mut().unwrap().remove(*column);
                }
                if table.name == "instances" && !row["token_key_id"].is_null() {
                    row["token_key_id"] = json!("set");
                }
                norm.value(&row).to_string()
            })
            .collect();
        out.insert(table.name, lines);
    }
    let payloads = notifications
        .iter()
        .map(|p| norm.value(p).to_string())
        .collect();
    out.insert(NOTIFICATIONS, payloads);
    out
}

/// The golden file of the `sspm_findings` payloads (not a table).
const NOTIFICATIONS: &str = "notifications";

fn describe(name: &str) -> String {
    if name == NOTIFICATIONS {
        "NOTIFY sspm_findings payloads".into()
    } else {
        format!("sspm.{name}")
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Null,
    /// Step index, for times written during the story.
    Step(usize),
    Int(i64),
    Text(String),
}

fn sort_key(norm: &Normaliser<'_>, clock: &Clock, v: &Value) -> SortKey {
    match v {
        Value::Null => SortKey::Null,
        Value::Number(n) => SortKey::Int(n.as_i64().expect("integer sort column")),
        Value::String(s) => {
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                let t = t.with_timezone(&Utc);
                return SortKey::Step(clock.steps.iter().filter(|(at, _)| *at <= t).count());
            }
            match Uuid::parse_str(s) {
                Ok(u) => SortKey::Text(
                    norm.known
                        .get(&u)
                        .cloned()
                        .unwrap_or_else(|| panic!("sort column holds an unlabelled uuid {s}")),
                ),
                Err(_) => SortKey::Text(s.clone()),
            }
        }
        other => panic!("unsupported sort column value {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// Golden files.

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/differential")
}

fn golden_path(table: &str) -> PathBuf {
    golden_dir().join(format!("{table}.jsonl"))
}

fn compare_or_update(dump: &BTreeMap<&'static str, Vec<String>>) {
    if std::env::var(UPDATE_ENV).is_ok_and(|v| v == "1") {
        write_dump(&golden_dir(), dump);
        eprintln!("golden files written to {}", golden_dir().display());
        return;
    }
    let mut failures = Vec::new();
    for (table, lines) in dump {
        let path = golden_path(table);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let expected: Vec<String> = text.lines().map(str::to_string).collect();
                failures.extend(first_difference(table, &expected, lines));
            }
            Err(e) => failures.push(format!(
                "{}: cannot read {}: {e} (generate it with {UPDATE_ENV}=1)",
                describe(table),
                path.display()
            )),
        }
    }
    if failures.is_empty() {
        return;
    }
    let actual_dir = std::env::temp_dir().join(format!("sspm-differential-{}", std::process::id()));
    write_dump(&actual_dir, dump);
    panic!(
        "consumer-visible rows differ from the golden files in {}\n\n{}\n\nThe actual dump is in {} \
         (diff it against the golden files). If the change is intended, regenerate with \
         {UPDATE_ENV}=1 cargo test --test it differential:: and explain it in the commit.",
        golden_dir().display(),
        failures.join("\n\n"),
        actual_dir.display()
    );
}

fn write_dump(dir: &Path, dump: &BTreeMap<&'static str, Vec<String>>) {
    std::fs::create_dir_all(dir).unwrap();
    for (table, lines) in dump {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(dir.join(format!("{table}.jsonl")), text).unwrap();
    }
}

/// The first differing row of a table, with the fields that differ.
fn first_difference(table: &str, expected: &[String], actual: &[String]) -> Option<String> {
    let what = describe(table);
    let counts = format!(
        "({} rows expected, {} actual)",
        expected.len(),
        actual.len()
    );
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if e == a => continue,
            (Some(e), Some(a)) => {
                let fields = differing_fields(e, a);
                return Some(format!(
                    "{what}, row {i} {counts}:\n  expected: {e}\n  actual:   {a}\n  fields:   {fields}"
                ));
            }
            (Some(e), None) => {
                return Some(format!(
                    "{what}, row {i} {counts}: missing\n  expected: {e}"
                ))
            }
            (None, Some(a)) => {
                return Some(format!(
                    "{what}, row {i} {counts}: unexpected extra row\n  actual:   {a}"
                ))
            }
            (None, None) => unreachable!(),
        }
    }
    None
}

fn differing_fields(expected: &str, actual: &str) -> String {
    let (Ok(Value::Object(e)), Ok(Value::Object(a))) = (
        serde_json::from_str::<Value>(expected),
        serde_json::from_str::<Value>(actual),
    ) else {
        return "(not both JSON objects)".into();
    };
    let mut keys: Vec<&String> = e.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| e.get(*k) != a.get(*k))
        .map(|k| {
            format!(
                "{k}: {} -> {}",
                e.get(k).map_or("(absent)".into(), Value::to_string),
                a.get(k).map_or("(absent)".into(), Value::to_string)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn first_difference_names_table_row_and_fields() {
    let expected = vec![r#"{"a":1,"b":"x"}"#.to_string(), r#"{"a":2}"#.to_string()];
    let same = expected.clone();
    assert_eq!(first_difference("t", &expected, &same), None);
    let changed = vec![expected[0].clone(), r#"{"a":3}"#.to_string()];
    let msg = first_difference("findings", &expected, &changed).unwrap();
    assert!(msg.contains("sspm.findings, row 1"), "{msg}");
    assert!(msg.contains("a: 2 -> 3"), "{msg}");
    let shorter = vec![expected[0].clone()];
    let msg = first_difference("scans", &expected, &shorter).unwrap();
    assert!(msg.contains("row 1") && msg.contains("missing"), "{msg}");
}

#[test]
fn uuids_inside_text_are_replaced() {
    let u = "0f8e5a3c-9b2d-4c1e-8a7f-6d5e4c3b2a19";
    let out = replace_uuids(&format!("scan {u} lost its lease"), |_| "scan:01".into());
    assert_eq!(out, "scan scan:01 lost its lease");
    assert_eq!(
        replace_uuids("no ids é here", |_| unreachable!()),
        "no ids é here"
    );
}

#[test]
fn minute_times_inside_text_are_replaced() {
    let clock = Clock {
        anchor: Utc
            .with_ymd_and_hms(2026, 12, 1, 20, 30, 37)
            .unwrap()
            .timestamp(),
        steps: vec![(Utc::now(), "s00 setup".into())],
    };
    // The event was 5 days before the anchor, at 20:30:37; the title shows 20:30.
    let out = replace_minute_times("turned off (2026-11-26 20:30 UTC), then", |t| {
        clock.label_minute(t)
    });
    assert_eq!(out, "turned off (A-5d (minute)), then");
    assert_eq!(
        replace_minute_times("2026-11-26 20:30", |_| unreachable!()),
        "2026-11-26 20:30"
    );
}

#[test]
fn human_durations() {
    assert_eq!(human(2 * DAY + 4 * HOUR), "2d4h");
    assert_eq!(human(57 * MIN + 30), "57m30s");
    assert_eq!(human(45), "45s");
}
