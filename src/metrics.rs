//! Prometheus metrics through the `metrics` facade. The daemon installs the recorder once
//! (`install`); everywhere else calls the small functions below, which are no-ops when no
//! recorder is installed (CLI commands, unit tests).
//!
//! Conventions: prefix `sspm_`, base units (seconds), and never a per-instance label:
//! labels are bounded sets (region, outcome, HTTP status, severity).

use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgConnection;

use crate::region::Region;
use crate::status::{InstanceStatus, TextEnum as _};

pub const SCANS_TOTAL: &str = "sspm_scans_total";
pub const SCAN_DURATION: &str = "sspm_scan_duration_seconds";
pub const SCANS_IN_FLIGHT: &str = "sspm_scans_in_flight";
pub const INTERCOM_REQUESTS: &str = "sspm_intercom_requests_total";
pub const INTERCOM_RATE_LIMITED: &str = "sspm_intercom_rate_limited_total";
pub const DUE_BACKLOG: &str = "sspm_due_backlog";
pub const OLDEST_DUE_AGE: &str = "sspm_oldest_due_age_seconds";
pub const LEASES_LOST: &str = "sspm_leases_lost_total";
pub const LEASES_RECLAIMED: &str = "sspm_leases_reclaimed_total";
pub const CLAIM_ERRORS: &str = "sspm_claim_errors_total";
pub const FINDINGS_OPEN: &str = "sspm_findings_open";
pub const BUILD_INFO: &str = "sspm_build_info";
pub const HOUSEKEEPING_RUNS: &str = "sspm_housekeeping_runs_total";
pub const INSTANCES: &str = "sspm_instances";
pub const READY: &str = "sspm_ready";

/// Scan durations: a healthy small workspace takes well under a second against a nearby
/// API; big activity logs and rate-limit waits push scans to minutes.
const SCAN_DURATION_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

pub const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

/// Installs the global Prometheus recorder and describes every metric, so `/metrics`
/// shows HELP and TYPE lines from the first scrape on.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(SCAN_DURATION.into()), SCAN_DURATION_BUCKETS)?
        .install_recorder()?;
    describe();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

fn describe() {
    describe_counter!(SCANS_TOTAL, "Scheduled scans by region and outcome (succeeded, failed, rate_limited, lease_lost, abandoned, error, gone).");
    describe_histogram!(
        SCAN_DURATION,
        Unit::Seconds,
        "Wall time of scheduled scans, from claim to recorded outcome."
    );
    describe_gauge!(SCANS_IN_FLIGHT, "Scans this replica is running now.");
    describe_counter!(
        INTERCOM_REQUESTS,
        "HTTP responses from the Intercom API by region, status code and kind (api: the scan's reads; probe: scope probes, whose 401/403 are expected)."
    );
    describe_counter!(
        INTERCOM_RATE_LIMITED,
        "HTTP 429 responses from the Intercom API by region."
    );
    describe_gauge!(
        DUE_BACKLOG,
        "Enabled instances due for a scan and not leased (fleet-wide)."
    );
    describe_gauge!(
        OLDEST_DUE_AGE,
        Unit::Seconds,
        "How long the longest-waiting due instance has been due (0 when none is)."
    );
    describe_counter!(
        LEASES_LOST,
        "Scans cancelled because another replica took over their lease."
    );
    describe_counter!(
        LEASES_RECLAIMED,
        "Expired leases of another (dead) holder claimed by this replica."
    );
    describe_counter!(
        CLAIM_ERRORS,
        "Claim rounds that failed (database unreachable or erroring)."
    );
    describe_gauge!(FINDINGS_OPEN, "Open findings by severity (fleet-wide).");
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which build runs."
    );
    describe_counter!(
        HOUSEKEEPING_RUNS,
        "Housekeeping jobs this replica ran, by job and result."
    );
    describe_gauge!(
        INSTANCES,
        "Enabled instances by status (fleet-wide): ok, unauthorized, ip_not_allowed, ..."
    );
    describe_gauge!(
        READY,
        "1 when this replica is ready (what /readyz says), else 0; set at every scrape."
    );
}

/// How a scheduled scan ended, as a bounded label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    RateLimited,
    LeaseLost,
    /// Cancelled by shutdown (or a lost lease) and handed back.
    Abandoned,
    /// The outcome could not be recorded (database error).
    Error,
    /// The instance was removed while it was being scanned.
    Gone,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::RateLimited => "rate_limited",
            Outcome::LeaseLost => "lease_lost",
            Outcome::Abandoned => "abandoned",
            Outcome::Error => "error",
            Outcome::Gone => "gone",
        }
    }
}

pub fn scan_finished(region: Region, outcome: Outcome, elapsed: Duration) {
    counter!(SCANS_TOTAL, "region" => region.as_str(), "outcome" => outcome.as_str()).increment(1);
    histogram!(SCAN_DURATION, "region" => region.as_str()).record(elapsed.as_secs_f64());
}

pub fn scans_in_flight(n: usize) {
    gauge!(SCANS_IN_FLIGHT).set(n as f64);
}

/// What a request to Intercom was for: a 401 from a scope probe means "scope absent, as it
/// should be", not "token revoked", so alerts must be able to tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Api,
    Probe,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Api => "api",
            RequestKind::Probe => "probe",
        }
    }
}

/// One HTTP response from Intercom (called by the client where the status is known).
pub fn intercom_response(region: Region, status: u16, kind: RequestKind) {
    counter!(
        INTERCOM_REQUESTS,
        "region" => region.as_str(),
        "status" => status.to_string(),
        "kind" => kind.as_str()
    )
    .increment(1);
    if status == 429 {
        counter!(INTERCOM_RATE_LIMITED, "region" => region.as_str()).increment(1);
    }
}

pub fn ready(ready: bool) {
    gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}

pub fn lease_lost() {
    counter!(LEASES_LOST).increment(1);
}

pub fn lease_reclaimed() {
    counter!(LEASES_RECLAIMED).increment(1);
}

pub fn claim_error() {
    counter!(CLAIM_ERRORS).increment(1);
}

pub fn housekeeping_run(job: &'static str, ok: bool) {
    counter!(HOUSEKEEPING_RUNS, "job" => job, "result" => if ok { "ok" } else { "error" })
        .increment(1);
}

/// Fleet-wide gauges, read with three cheap queries over `sspm.instances` alone (the due
/// one uses the partial index `instances_due_idx`). Every replica refreshes them; they
/// agree, and Prometheus aggregates with max() or picks one. Doubles as the database
/// health probe.
pub async fn refresh_gauges(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let due = crate::db::leases::due_backlog(&mut *conn, std::time::Duration::ZERO).await?;
    // From the per-instance open counts the database keeps (20261202000010), not a count
    // over sspm.findings: that one read every open finding at every refresh (~0.5 s of
    // Postgres CPU per refresh at 160,000 findings, a quarter of this 2-core machine in
    // throughput_steady at one refresh a second).
    let open = sqlx::query!(
        r#"SELECT COALESCE(sum(open_critical), 0)::int8 AS "critical!",
                  COALESCE(sum(open_high), 0)::int8 AS "high!",
                  COALESCE(sum(open_medium), 0)::int8 AS "medium!",
                  COALESCE(sum(open_low), 0)::int8 AS "low!",
                  COALESCE(sum(open_info), 0)::int8 AS "info!"
           FROM sspm.instances"#
    )
    .fetch_one(&mut *conn)
    .await?;
    let by_status = sqlx::query!(
        r#"SELECT status AS "status!", count(*) AS "n!"
           FROM sspm.instances WHERE enabled GROUP BY status"#
    )
    .fetch_all(&mut *conn)
    .await?;
    // Every status every refresh, so a status nobody has any more drops to 0. (A value
    // this build does not know has no series; the console and CLI name its row.)
    for status in InstanceStatus::ALL {
        let n = by_status
            .iter()
            .find(|r| r.status == status.as_str())
            .map(|r| r.n)
            .unwrap_or(0);
        gauge!(INSTANCES, "status" => status.as_str()).set(n as f64);
    }
    gauge!(DUE_BACKLOG).set(due.count as f64);
    gauge!(OLDEST_DUE_AGE).set(due.oldest_age_secs.max(0.0));
    // Every severity every time, so a severity whose last finding closed drops to 0
    // instead of keeping its stale value.
    for (severity, n) in [
        ("critical", open.critical),
        ("high", open.high),
        ("medium", open.medium),
        ("low", open.low),
        ("info", open.info),
    ] {
        gauge!(FINDINGS_OPEN, "severity" => severity).set(n as f64);
    }
    Ok(())
}
