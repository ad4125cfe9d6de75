//! What a scan reports to its caller (the CLI summary, the scheduler, metrics).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use crate::status::{CheckStatus, InstanceStatus, ScanStatus};

/// How a scan that ran to its end went (a report is made for no other): the
/// `sspm.scans.status` it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanOutcome {
    Succeeded,
    Failed,
}

impl ScanOutcome {
    pub fn stored(self) -> ScanStatus {
        match self {
            ScanOutcome::Succeeded => ScanStatus::Succeeded,
            ScanOutcome::Failed => ScanStatus::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.stored().as_str()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckLine {
    pub check_id: String,
    pub status: CheckStatus,
    pub reason: Option<String>,
    pub failed_count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub scan_id: Uuid,
    pub instance_id: Uuid,
    pub instance: String,
    pub region: String,
    pub status: ScanOutcome,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    /// The instance status after the scan.
    pub instance_status: InstanceStatus,
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
