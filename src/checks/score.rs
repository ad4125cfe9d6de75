//! The posture score (CHECKS.md "Posture score").

use super::catalog::meta;
use super::types::{CheckOutcome, CheckStatus};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Posture {
    /// 0..=100; `None` when no weighted check was evaluated.
    pub score: Option<f64>,
    /// Evaluated outcomes / all outcomes, 0..=1.
    pub coverage: f64,
}

/// Passed weight / evaluated weight × 100, weights by severity (critical 10, high 5,
/// medium 3, low 1, info 0).
///
/// - Only `pass` and `fail` are evaluated. `not_evaluated` and `error` are excluded from
///   both weights and count as not covered: missing data is never a pass nor a fail.
/// - A `fail` whose findings are all muted (`is_muted(check_id, resource)`) counts as
///   passed weight; a `fail` without findings does not.
/// - The weight is the check's catalog severity, not a finding's raised severity, so a
///   critical burst does not outweigh the check itself. Unknown check ids weigh 0.
/// - Info checks (weight 0) count for coverage only.
/// - `score` is `None` when the evaluated weight is 0 (nothing weighted was evaluated);
///   `coverage` is 0 for an empty slice.
pub fn posture(outcomes: &[CheckOutcome], is_muted: impl Fn(&str, &str) -> bool) -> Posture {
    let (mut passed, mut evaluated, mut covered) = (0u32, 0u32, 0usize);
    for o in outcomes {
        let weight = meta(o.check_id).map_or(0, |m| m.severity.weight());
        let ok = match o.status {
            CheckStatus::Pass => true,
            CheckStatus::Fail => {
                !o.findings.is_empty()
                    && o.findings.iter().all(|f| is_muted(o.check_id, &f.resource))
            }
            CheckStatus::Error | CheckStatus::NotEvaluated => continue,
        };
        covered += 1;
        evaluated += weight;
        if ok {
            passed += weight;
        }
    }
    Posture {
        score: (evaluated > 0).then(|| f64::from(passed) * 100.0 / f64::from(evaluated)),
        coverage: if outcomes.is_empty() {
            0.0
        } else {
            covered as f64 / outcomes.len() as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::types::{FindingDraft, Severity};

    fn outcome(id: &'static str, status: CheckStatus, resources: &[&str]) -> CheckOutcome {
        CheckOutcome {
            check_id: id,
            status,
            reason: None,
            findings: resources
                .iter()
                .map(|r| FindingDraft {
                    resource: r.to_string(),
                    severity: Severity::High,
                    title: "t".into(),
                    evidence: serde_json::Value::Null.into(),
                })
                .collect(),
        }
    }

    #[test]
    fn weights_passes_against_evaluated_and_reports_coverage() {
        let outcomes = [
            outcome("token_valid", CheckStatus::Pass, &[]), // high 5
            outcome("admin_dormant", CheckStatus::Fail, &["admin:1"]), // medium 3
            outcome("region_matches", CheckStatus::Pass, &[]), // low 1
            outcome("admin_new", CheckStatus::Fail, &["admin:2"]), // info 0
            outcome("data_deleted", CheckStatus::Error, &[]), // excluded
            outcome("manual_2fa_enforced", CheckStatus::NotEvaluated, &[]), // excluded
        ];
        let p = posture(&outcomes, |_, _| false);
        assert_eq!(p.score, Some(600.0 / 9.0));
        assert!((p.coverage - 4.0 / 6.0).abs() < 1e-9);
    }

    #[test]
    fn fully_muted_failures_count_as_passed() {
        let outcomes = [
            outcome("admin_dormant", CheckStatus::Fail, &["admin:1", "admin:2"]),
            outcome("token_valid", CheckStatus::Pass, &[]),
        ];
        let partly = posture(&outcomes, |_, r| r == "admin:1");
        assert_eq!(partly.score, Some(500.0 / 8.0));
        let all = posture(&outcomes, |c, _| c == "admin_dormant");
        assert_eq!(all.score, Some(100.0));
        let empty_fail = [outcome("admin_dormant", CheckStatus::Fail, &[])];
        assert_eq!(posture(&empty_fail, |_, _| true).score, Some(0.0));
    }

    #[test]
    fn nothing_evaluated_has_no_score() {
        let p = posture(
            &[outcome("token_valid", CheckStatus::Error, &[])],
            |_, _| false,
        );
        assert_eq!(
            p,
            Posture {
                score: None,
                coverage: 0.0
            }
        );
        let info_only = posture(&[outcome("admin_new", CheckStatus::Pass, &[])], |_, _| {
            false
        });
        assert_eq!(info_only.score, None);
        assert_eq!(info_only.coverage, 1.0);
        assert_eq!(posture(&[], |_, _| false).coverage, 0.0);
    }
}
