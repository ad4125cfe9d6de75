//! The vocabulary shared by the catalog, the checks and the code that persists results.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Declared most severe first; compare with [`Severity::weight`], not with the enum order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }

    /// Posture-score weight (CHECKS.md "Posture score").
    pub fn weight(self) -> u32 {
        match self {
            Severity::Critical => 10,
            Severity::High => 5,
            Severity::Medium => 3,
            Severity::Low => 1,
            Severity::Info => 0,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?}: use one of critical, high, medium, low, info")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str() == wanted)
            .ok_or_else(|| UnknownSeverity(s.to_string()))
    }
}

/// CHECKS.md categories, one spelling each. `Integration` covers every connection into the
/// workspace: the scanner's own token and the third-party apps, webhooks and tokens
/// installed there (there is no separate `integrations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Integration,
    Workspace,
    Identity,
    Authentication,
    Data,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Integration => "integration",
            Category::Workspace => "workspace",
            Category::Identity => "identity",
            Category::Authentication => "authentication",
            Category::Data => "data",
        }
    }
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::Integration,
        Category::Workspace,
        Category::Identity,
        Category::Authentication,
        Category::Data,
    ];
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a check's evidence comes from (CHECKS.md: H, O, A, manual).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// H: the scan's own health (token, reachability, scopes).
    Health,
    /// O: fields of `/me` and `/admins`.
    Object,
    /// A: `/admins/activity_logs` events.
    Activity,
    /// No API evidence; an operator attests.
    Manual,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Health => "health",
            Source::Object => "object",
            Source::Activity => "activity",
            Source::Manual => "manual",
        }
    }

    /// The short code CHECKS.md uses.
    pub fn code(self) -> &'static str {
        match self {
            Source::Health => "H",
            Source::Object => "O",
            Source::Activity => "A",
            Source::Manual => "manual",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub use crate::status::CheckStatus;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown check status {0:?}: use one of pass, fail, error, not_evaluated")]
pub struct UnknownCheckStatus(pub String);

impl FromStr for CheckStatus {
    type Err = UnknownCheckStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pass" => Ok(CheckStatus::Pass),
            "fail" => Ok(CheckStatus::Fail),
            "error" => Ok(CheckStatus::Error),
            "not_evaluated" => Ok(CheckStatus::NotEvaluated),
            _ => Err(UnknownCheckStatus(s.to_string())),
        }
    }
}

/// One failing resource of a check, before persistence gives it an identity and a lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingDraft {
    /// Stable across scans for the same underlying thing: `workspace`, `admin:<id>`,
    /// `event:<id>`, or a key the check documents.
    pub resource: String,
    /// Usually the check's; some checks raise it for one resource.
    pub severity: Severity,
    /// Specific to the resource, e.g. "Teammate j.doe@gmail.com uses a personal email domain".
    pub title: String,
    /// Data from the snapshot only.
    pub evidence: Evidence,
}

/// A finding's evidence, kept as compact JSON text from the moment a check builds it.
/// A parsed `serde_json::Value` costs a B-tree node (~640 bytes) per object: a large
/// workspace's re-scan holds ~22,000 drafts at once, ~7 MB as text, and keeping them as
/// values peaked 22 MiB higher (benches/README.md, `big_workspace_rescan`); persist only
/// ever needs the text (the content digest and the `jsonb` parameter). The text is what `Value`'s own serialiser writes (keys sorted,
/// no spaces), so digests stored before this type existed still match.
#[derive(Clone)]
pub struct Evidence(Box<serde_json::value::RawValue>);

impl Evidence {
    /// The compact JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// Evidence written straight from a struct, without a `Value` in between (a B-tree
    /// map and a heap string per key: ~2 % of a steady scan's CPU for the per-teammate
    /// checks). `Value` writes keys in sorted order, so the struct's fields must be
    /// declared sorted by name for the text, and the content digests stored from it, to
    /// stay the same; each caller's tests compare with the `json!` form.
    pub fn of_sorted_fields(fields: &impl Serialize) -> Self {
        // Serialising plain data (string keys) cannot fail; `null` is only a type-level
        // fallback.
        Evidence(serde_json::value::to_raw_value(fields).unwrap_or_else(|_| {
            serde_json::value::RawValue::from_string("null".to_string()).expect("valid JSON")
        }))
    }

    /// The evidence parsed again (for tests and the few readers that inspect it).
    pub fn value(&self) -> serde_json::Value {
        // The text was written by serde_json from a `Value`, so it parses.
        serde_json::from_str(self.0.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl From<serde_json::Value> for Evidence {
    fn from(v: serde_json::Value) -> Self {
        // A `Value`'s maps are sorted by key already.
        Evidence::of_sorted_fields(&v)
    }
}

impl PartialEq for Evidence {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.json())
    }
}

impl Serialize for Evidence {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckOutcome {
    pub check_id: &'static str,
    pub status: CheckStatus,
    pub reason: Option<String>,
    /// Non-empty only for `Fail`; one per resource.
    pub findings: Vec<FindingDraft>,
}

impl CheckOutcome {
    pub fn failed_count(&self) -> usize {
        self.findings.len()
    }
}

/// What a check function returns; [`Verdict::into_outcome`] attaches the check id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    Pass(Option<String>),
    Fail {
        findings: Vec<FindingDraft>,
        reason: Option<String>,
    },
    Error(String),
    NotEvaluated(String),
}

impl Verdict {
    pub(crate) fn pass() -> Self {
        Verdict::Pass(None)
    }

    pub(crate) fn error(reason: impl Into<String>) -> Self {
        Verdict::Error(reason.into())
    }

    pub(crate) fn not_evaluated(reason: impl Into<String>) -> Self {
        Verdict::NotEvaluated(reason.into())
    }

    /// Fail when there are findings, otherwise pass; `reason` is kept either way.
    pub(crate) fn from_findings(findings: Vec<FindingDraft>, reason: Option<String>) -> Self {
        if findings.is_empty() {
            Verdict::Pass(reason)
        } else {
            Verdict::Fail { findings, reason }
        }
    }

    pub(crate) fn into_outcome(self, check_id: &'static str) -> CheckOutcome {
        let (status, reason, findings) = match self {
            Verdict::Pass(reason) => (CheckStatus::Pass, reason, Vec::new()),
            Verdict::Fail { findings, reason } => (CheckStatus::Fail, reason, findings),
            Verdict::Error(reason) => (CheckStatus::Error, Some(reason), Vec::new()),
            Verdict::NotEvaluated(reason) => (CheckStatus::NotEvaluated, Some(reason), Vec::new()),
        };
        CheckOutcome {
            check_id,
            status,
            reason,
            findings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text is exactly what `Value`'s serialiser writes (the content digest of
    /// findings stored by earlier builds depends on it), it parses back to the value, and
    /// it serialises as JSON, not as a string holding JSON.
    #[test]
    fn evidence_keeps_the_compact_text_of_its_value() {
        let v = serde_json::json!({"z": [1, "two"], "a": {"nested": null}, "m": "é\"q"});
        let e = Evidence::from(v.clone());
        assert_eq!(e.json(), serde_json::to_string(&v).unwrap());
        assert_eq!(
            e.json(),
            r#"{"a":{"nested":null},"m":"é\"q","z":[1,"two"]}"#
        );
        assert_eq!(e.value(), v);
        assert_eq!(e, Evidence::from(v.clone()));
        assert_ne!(e, Evidence::from(serde_json::json!({"a": 1})));
        assert_eq!(
            serde_json::to_value(serde_json::json!({"evidence": &e})).unwrap(),
            serde_json::json!({"evidence": v})
        );
    }

    #[test]
    fn severity_strings_weights_and_serde_agree() {
        let weights: Vec<u32> = Severity::ALL.iter().map(|s| s.weight()).collect();
        assert_eq!(weights, [10, 5, 3, 1, 0]);
        for sev in Severity::ALL {
            assert_eq!(sev.as_str().parse::<Severity>().unwrap(), sev);
            assert_eq!(
                serde_json::to_value(sev).unwrap(),
                serde_json::json!(sev.as_str())
            );
        }
        assert_eq!(" HIGH ".parse::<Severity>().unwrap(), Severity::High);
        assert!("severe".parse::<Severity>().is_err());
    }

    #[test]
    fn categories_have_one_spelling_each() {
        let names: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "integration",
                "workspace",
                "identity",
                "authentication",
                "data"
            ]
        );
        for c in Category::ALL {
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::json!(c.as_str())
            );
        }
        let every_used: std::collections::HashSet<&str> = crate::checks::catalog()
            .iter()
            .map(|m| m.category.as_str())
            .collect();
        assert!(every_used.iter().all(|c| names.contains(c)));
    }

    #[test]
    fn status_strings_round_trip() {
        for st in [
            CheckStatus::Pass,
            CheckStatus::Fail,
            CheckStatus::Error,
            CheckStatus::NotEvaluated,
        ] {
            assert_eq!(st.as_str().parse::<CheckStatus>().unwrap(), st);
            assert_eq!(
                serde_json::to_value(st).unwrap(),
                serde_json::json!(st.as_str())
            );
        }
        assert_eq!(CheckStatus::NotEvaluated.as_str(), "not_evaluated");
    }

    #[test]
    fn verdict_without_findings_is_a_pass() {
        let o = Verdict::from_findings(Vec::new(), Some("note".into())).into_outcome("x");
        assert_eq!(o.status, CheckStatus::Pass);
        assert_eq!(o.reason.as_deref(), Some("note"));
        let o = Verdict::error("boom").into_outcome("x");
        assert_eq!(
            (o.status, o.reason.as_deref()),
            (CheckStatus::Error, Some("boom"))
        );
    }
}
