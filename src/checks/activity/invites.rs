//! `external_invite`: one finding per `admin_invite_creation` event in the window whose
//! invitee has a personal domain or one outside the allowed domains; resource
//! `event:<id>`. The invitee's address is undocumented metadata, so it is taken from any
//! email-looking string in the metadata, else from the description, never counting the
//! inviter's own address.

use serde_json::{json, Value};

use super::super::catalog::CheckMeta;
use super::super::context::Ctx;
use super::super::domains::{
    affiliation, email_domain, emails_in_text, provider, Affiliation, Provider,
};
use super::super::snapshot::ActivityEvent;
use super::super::types::Verdict;
use super::{actor, available, coverage_note, event_evidence, event_finding_with, recent_of, when};

const INVITE: &str = "admin_invite_creation";

fn collect_emails(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            for e in emails_in_text(s) {
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_emails(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_emails(i, out)),
        _ => {}
    }
}

fn invitees(ev: &ActivityEvent) -> Vec<String> {
    let mut found = Vec::new();
    collect_emails(&ev.metadata.value(), &mut found);
    if found.is_empty() {
        if let Some(d) = &ev.description {
            found = emails_in_text(d);
        }
    }
    let inviter = ev
        .performed_by_email
        .as_deref()
        .map(str::to_ascii_lowercase);
    found.retain(|e| Some(e) != inviter.as_ref());
    found
}

pub(in crate::checks) fn external_invite(ctx: &Ctx<'_>, m: &CheckMeta) -> Verdict {
    let (events, covered_from) = match available(ctx) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let settings = ctx.settings;
    // Without allowed domains only personal domains can be judged; say so.
    let allowed = ctx.allowed_domains();
    let mut notes: Vec<String> = coverage_note(ctx, covered_from).into_iter().collect();
    if allowed.is_none() {
        notes.push("no allowed domains known: only personal domains are checked".into());
    }
    let mut unreadable = 0;
    let mut findings = Vec::new();
    for ev in recent_of(ctx, events, &[INVITE]) {
        let emails = invitees(ev);
        if emails.is_empty() {
            unreadable += 1;
            continue;
        }
        let flagged: Vec<Value> = emails
            .iter()
            .filter_map(|e| {
                let domain = email_domain(e)?;
                let why = match provider(
                    &domain,
                    &settings.personal_email_domains,
                    &settings.personal_email_domains_ignore,
                ) {
                    Some(Provider::Disposable { .. }) => "disposable domain".to_string(),
                    Some(Provider::Consumer { .. }) => "personal domain".to_string(),
                    None => match allowed.as_deref().map(|a| affiliation(&domain, a)) {
                        Some(Affiliation::Lookalike { imitates, .. }) => {
                            format!("lookalike of {imitates}")
                        }
                        Some(Affiliation::External) => "outside the allowed domains".to_string(),
                        Some(Affiliation::Allowed) | None => return None,
                    },
                };
                Some(json!({"email": e, "domain": domain, "reason": why}))
            })
            .collect();
        let Some(first) = flagged.first() else {
            continue;
        };
        let title = format!(
            "Invitation to {} ({}) sent by {} ({})",
            first["email"].as_str().unwrap_or_default(),
            first["reason"].as_str().unwrap_or_default(),
            actor(ev),
            when(ev.created_at)
        );
        let mut evidence = event_evidence(ev);
        evidence["invitees"] = Value::Array(flagged);
        evidence["allowed_domains"] = json!(allowed);
        findings.push(event_finding_with(ev, m.severity, title, evidence));
    }
    if unreadable > 0 {
        notes.push(format!(
            "{unreadable} invitation(s) name no readable invitee email"
        ));
    }
    Verdict::from_findings(findings, (!notes.is_empty()).then(|| notes.join(". ")))
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use serde_json::json;

    use super::super::super::testutil::*;
    use super::super::super::types::CheckStatus;
    use super::*;

    fn invite(id: &str, metadata: Value, description: Option<&str>) -> ActivityEvent {
        let mut ev = event(id, INVITE, "1", now() - Duration::hours(1));
        ev.performed_by_email = Some("owner@acme.com".into());
        ev.metadata = metadata.into();
        ev.description = description.map(Into::into);
        ev
    }

    #[test]
    fn flags_personal_and_outside_invitees_from_metadata_or_description() {
        let mut snap = snapshot();
        set_events(
            &mut snap,
            vec![
                invite("a", json!({"email": "Pal@Gmail.com"}), None),
                invite("b", json!({"invitees": [{"email": "x@partner.io"}]}), None),
                invite("c", json!({"email": "new@acme.com"}), None),
                invite(
                    "d",
                    Value::Null,
                    Some("Owner (owner@acme.com) invited z@yandex.ru to the workspace"),
                ),
                invite("e", json!({}), Some("Owner invited a teammate")),
            ],
        );
        let o = run("external_invite", &snap);
        assert_eq!(o.status, CheckStatus::Fail);
        assert_eq!(resources(&o), ["event:a", "event:b", "event:d"]);
        assert_eq!(
            o.findings[0].evidence.value()["invitees"][0]["reason"],
            "personal domain"
        );
        assert_eq!(
            o.findings[0].evidence.value()["invitees"][0]["email"],
            "pal@gmail.com"
        );
        assert_eq!(
            o.findings[1].evidence.value()["invitees"][0]["reason"],
            "outside the allowed domains"
        );
        assert!(o
            .reason
            .unwrap()
            .contains("1 invitation(s) name no readable"));
    }

    #[test]
    fn allowed_domains_from_configuration_are_respected() {
        let mut snap = snapshot();
        snap.allowed_domains = vec!["partner.io".into(), "acme.com".into()];
        set_events(
            &mut snap,
            vec![invite("b", json!({"email": "x@partner.io"}), None)],
        );
        assert_eq!(run("external_invite", &snap).status, CheckStatus::Pass);
    }
}
