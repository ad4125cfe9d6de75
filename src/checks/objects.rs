//! O checks on workspace and teammate fields other than email. Per-teammate findings use
//! `admin:<id>`; `identity_verification_enabled` uses `workspace`.

use chrono::Duration;
use serde_json::json;

use super::catalog::CheckMeta;
use super::context::{admin_evidence, admin_label, admin_resource, unnamed, Ctx, PerAdmin};
use super::types::{FindingDraft, Verdict};

pub(super) fn identity_verification_enabled(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let Some(app) = ctx.me.app.as_ref() else {
        return Verdict::error("/me did not include the workspace (app)");
    };
    match app.identity_verification {
        None => Verdict::error("/me did not report app.identity_verification"),
        Some(true) => Verdict::pass(),
        Some(false) => Verdict::from_findings(
            vec![FindingDraft {
                resource: "workspace".into(),
                severity: m.severity,
                title: "Messenger identity verification is off".into(),
                evidence: json!({
                    "identity_verification": false,
                    "workspace_id": app.id_code,
                    "workspace_name": app.name,
                })
                .into(),
            }],
            None,
        ),
    }
}

/// `Some(true)` for versions that return `admin.role` (2.16 and later, and the rolling
/// "Unstable"/"Preview" version); `None` when the version string is not understood.
fn returns_roles(api_version: &str) -> Option<bool> {
    let v = api_version.trim();
    if v.eq_ignore_ascii_case("unstable") || v.eq_ignore_ascii_case("preview") {
        return Some(true);
    }
    let (major, minor) = v.split_once('.')?;
    let (major, minor): (u32, u32) = (major.parse().ok()?, minor.parse().ok()?);
    Some((major, minor) >= (2, 16))
}

pub(super) fn without_role(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let version = &ctx.snap.api_version;
    match returns_roles(version) {
        Some(true) => {}
        Some(false) => {
            return Verdict::not_evaluated(format!(
                "Intercom-Version {version} does not return roles (needs 2.16 or later)"
            ))
        }
        None => {
            return Verdict::not_evaluated(format!(
                "cannot tell whether Intercom-Version {version:?} returns roles"
            ))
        }
    }
    let admins = match ctx.admins() {
        Ok(a) => a,
        Err(v) => return v,
    };
    let mut agg = PerAdmin::default();
    for admin in admins {
        let Some(resource) = admin_resource(admin) else {
            agg.unknown(unnamed(admin));
            continue;
        };
        if admin.role.is_none() {
            agg.fail(FindingDraft {
                resource,
                severity: m.severity,
                title: format!("Teammate {} has no role", admin_label(admin)),
                evidence: admin_evidence(admin).into(),
            });
        }
    }
    agg.finish()
}

pub(super) fn long_away(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let admins = match ctx.admins() {
        Ok(a) => a,
        Err(v) => return v,
    };
    let limit = Duration::days(i64::from(ctx.settings.long_away_days));
    let mut agg = PerAdmin::default();
    let mut tracking = 0;
    for admin in admins {
        let (Some(resource), Some(id)) = (admin_resource(admin), admin.id.as_deref()) else {
            agg.unknown(unnamed(admin));
            continue;
        };
        match admin.away_mode_enabled {
            None => agg.unknown(format!("{resource} has no away_mode_enabled")),
            Some(false) => {}
            Some(true) => {
                // Away now but not when last seen: the inventory starts counting at this scan.
                let since = ctx.prev.admins.get(id.trim()).and_then(|h| h.away_since);
                let Some(since) = since else {
                    tracking += 1;
                    continue;
                };
                let away_for = ctx.now() - since;
                if away_for > limit {
                    let mut evidence = admin_evidence(admin);
                    evidence["away_since"] = json!(since);
                    evidence["days_away"] = json!(away_for.num_days());
                    evidence["limit_days"] = json!(ctx.settings.long_away_days);
                    agg.fail(FindingDraft {
                        resource,
                        severity: m.severity,
                        title: format!(
                            "Teammate {} has been away for {} days",
                            admin_label(admin),
                            away_for.num_days()
                        ),
                        evidence: evidence.into(),
                    });
                }
            }
        }
    }
    if tracking > 0 {
        agg.note(format!(
            "away-time tracking starts now for {tracking} teammate(s)"
        ));
    }
    agg.finish()
}

pub(super) fn new_admin(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    if !ctx.prev.has_completed_scan {
        return Verdict::not_evaluated("first scan establishes the baseline");
    }
    let admins = match ctx.admins() {
        Ok(a) => a,
        Err(v) => return v,
    };
    let mut agg = PerAdmin::default();
    for admin in admins {
        let (Some(resource), Some(id)) = (admin_resource(admin), admin.id.as_deref()) else {
            agg.unknown(unnamed(admin));
            continue;
        };
        if !ctx.prev.previous_admin_ids.contains(id.trim()) {
            agg.fail(FindingDraft {
                resource,
                severity: m.severity,
                title: format!(
                    "New teammate {} (not in the previous scan)",
                    admin_label(admin)
                ),
                evidence: admin_evidence(admin).into(),
            });
        }
    }
    agg.finish()
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::super::testutil::*;
    use super::super::types::{CheckStatus, Severity};
    use super::super::PreviousState;
    use super::*;
    use crate::checks::CheckSettings;

    #[test]
    fn identity_verification_missing_is_an_error_not_a_pass() {
        assert_eq!(
            run("identity_verification_enabled", &snapshot()).status,
            CheckStatus::Pass
        );
        let mut snap = snapshot();
        let mut me = me();
        me.app.as_mut().unwrap().identity_verification = Some(false);
        snap.me = Ok(me.clone());
        let o = run("identity_verification_enabled", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["workspace"]);
        assert_eq!(o.findings[0].severity, Severity::High);

        me.app.as_mut().unwrap().identity_verification = None;
        snap.me = Ok(me.clone());
        assert_eq!(
            run("identity_verification_enabled", &snap).status,
            CheckStatus::Error
        );
        me.app = None;
        snap.me = Ok(me);
        assert_eq!(
            run("identity_verification_enabled", &snap).status,
            CheckStatus::Error
        );
    }

    #[test]
    fn role_support_depends_on_the_api_version() {
        assert_eq!(returns_roles("2.16"), Some(true));
        assert_eq!(returns_roles("2.9"), Some(false));
        assert_eq!(returns_roles("2.15"), Some(false));
        assert_eq!(returns_roles("3.0"), Some(true));
        assert_eq!(returns_roles("Unstable"), Some(true));
        assert_eq!(returns_roles("latest"), None);
    }

    #[test]
    fn admins_without_role_fail_only_when_roles_are_returned() {
        let mut snap = snapshot();
        let mut roleless = admin("3", "c@acme.com");
        roleless.role = None;
        snap.admins = Ok(vec![admin("1", "owner@acme.com"), roleless]);
        let o = run("admin_without_role", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["admin:3"]);
        assert_eq!(o.findings[0].severity, Severity::Low);

        snap.api_version = "2.15".into();
        let o = run("admin_without_role", &snap);
        assert_eq!(o.status, CheckStatus::NotEvaluated);
        assert!(o.reason.unwrap().contains("2.15"));
        assert_eq!(
            run("admin_without_role", &snapshot()).status,
            CheckStatus::Pass
        );
    }

    #[test]
    fn long_away_uses_the_inventory_and_starts_tracking_otherwise() {
        let mut snap = snapshot();
        let mut away = admin("2", "bo@acme.com");
        away.away_mode_enabled = Some(true);
        snap.admins = Ok(vec![admin("1", "owner@acme.com"), away]);

        let o = run("admin_long_away", &snap);
        assert_eq!(o.status, CheckStatus::Pass, "no history: tracking starts");
        assert!(o.reason.unwrap().contains("tracking starts now"));

        let mut prev = previous();
        prev.admins.get_mut("2").unwrap().away_since = Some(snap.now - Duration::days(31));
        let o = run_with("admin_long_away", &snap, &prev, &CheckSettings::default());
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["admin:2"]);
        assert_eq!(o.findings[0].evidence.value()["days_away"], 31);

        prev.admins.get_mut("2").unwrap().away_since = Some(snap.now - Duration::days(29));
        let o = run_with("admin_long_away", &snap, &prev, &CheckSettings::default());
        assert_eq!(o.status, CheckStatus::Pass);

        let mut unknown = admin("2", "bo@acme.com");
        unknown.away_mode_enabled = None;
        snap.admins = Ok(vec![unknown]);
        assert_eq!(run("admin_long_away", &snap).status, CheckStatus::Error);
    }

    #[test]
    fn new_admins_are_reported_except_on_the_first_scan() {
        let mut snap = snapshot();
        snap.admins = Ok(vec![
            admin("1", "owner@acme.com"),
            admin("2", "bo@acme.com"),
            admin("3", "new@acme.com"),
        ]);
        let o = run("admin_new", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["admin:3"]);
        assert_eq!(o.findings[0].severity, Severity::Info);

        let first = PreviousState::default();
        let o = run_with("admin_new", &snap, &first, &CheckSettings::default());
        assert_eq!(o.status, CheckStatus::NotEvaluated);
        assert_eq!(
            o.reason.as_deref(),
            Some("first scan establishes the baseline")
        );
        assert_eq!(run("admin_new", &snapshot()).status, CheckStatus::Pass);
    }
}
