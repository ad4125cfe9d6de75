//! Manual controls: no API evidence exists, so only an operator's unexpired attestation
//! (recorded with evidence and an expiry outside this module) makes them pass.

use super::catalog::CheckMeta;
use super::context::Ctx;
use super::types::Verdict;

pub(super) fn attested(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    if ctx.snap.attestations.iter().any(|a| a.trim() == m.id) {
        Verdict::Pass(Some("attested by an operator".into()))
    } else {
        Verdict::not_evaluated(
            "manual control: no valid attestation recorded (the API cannot show this setting)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::types::CheckStatus;

    #[test]
    fn manual_controls_pass_only_with_an_attestation() {
        let mut snap = snapshot();
        let o = run("manual_2fa_enforced", &snap);
        assert_eq!(o.status, CheckStatus::NotEvaluated);
        assert!(o.findings.is_empty());
        snap.attestations = vec!["manual_2fa_enforced".into()];
        assert_eq!(run("manual_2fa_enforced", &snap).status, CheckStatus::Pass);
        assert_eq!(
            run("manual_sso_required", &snap).status,
            CheckStatus::NotEvaluated
        );
    }
}
