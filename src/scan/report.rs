//! What a scan reports to its caller (the CLI summary, the scheduler, metrics).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanStatus {
    Succeeded,
    Failed,
}

impl ScanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Succeeded => "succeeded",
            ScanStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckLine {
    pub check_id: String,
    pub status: String,
    pub reason: Option<String>,
    pub failed_count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub scan_id: Uuid,
    pub instance_id: Uuid,
    pub instance: String,
    pub region: String,
    pub status: ScanStatus,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    /// The instance status after the scan.
    pub instance_status: String,
    pub score: Option<f64>,
    pub coverage: Option<f64>,
    pub api_calls: u32,
    pub new_findings: usize,
    pub resolved_findings: usize,
    pub new_by_severity: BTreeMap<String, usize>,
    pub open_by_severity: BTreeMap<String, i64>,
    pub checks: Vec<CheckLine>,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Set when the scan stopped on a 429: the scheduler snoozes this long.
    #[serde(skip)]
    pub rate_limited_reset: Option<Duration>,
    /// Whether the failure counts toward backoff (429 and success do not).
    #[serde(skip)]
    pub counts_as_failure: bool,
}
