//! Real-world addresses through the four teammate-domain checks at once: each address must
//! be reported by exactly the check in the table (or by none), never twice.

use super::testutil::*;
use super::types::CheckStatus;
use super::CheckSettings;

const DOMAIN_CHECKS: [&str; 4] = [
    "admin_disposable_email",
    "admin_personal_email_domain",
    "admin_lookalike_domain",
    "admin_external_domain",
];

const D: Option<&str> = Some("admin_disposable_email");
const P: Option<&str> = Some("admin_personal_email_domain");
const L: Option<&str> = Some("admin_lookalike_domain");
const E: Option<&str> = Some("admin_external_domain");
const OK: Option<&str> = None;

/// Allowed domains: `acme.com` and `acme-eu.co.uk` (an organisation with two domains).
const TABLE: &[(&str, Option<&str>)] = &[
    // Consumer mailboxes, including the ones a 28-entry list missed.
    ("jim@yahoo.fr", P),
    ("max@outlook.de", P),
    ("anne@hotmail.fr", P),
    ("sam@live.co.uk", P),
    ("jan@web.de", P),
    ("uwe@t-online.de", P),
    ("luc@orange.fr", P),
    ("gio@libero.it", P),
    ("kim@mail.com", P),
    ("j.doe@gmail.com", P),
    ("J.Doe+intercom@GMail.COM", P),
    ("ana@googlemail.com", P),
    ("li@qq.com", P),
    ("wang@163.com", P),
    ("ivan@mail.ru", P),
    ("olga@yandex.ru", P),
    ("olga@yandex.kz", P),
    ("kai@gmx.de", P),
    ("kai@gmx.net", P),
    ("kai@gmx.at", P), // the `gmx.*` pattern
    ("joe@icloud.com", P),
    ("joe@me.com", P),
    ("amy@aol.com", P),
    ("ann@proton.me", P),
    ("ann@protonmail.com", P),
    ("raj@rediffmail.com", P),
    ("min@naver.com", P),
    ("pat@comcast.net", P),
    ("bob@btinternet.com", P),
    ("eva@seznam.cz", P),
    ("ola@wp.pl", P),
    ("tom@bigpond.com", P),
    ("li@yahoo.co.jp", P),
    ("dan@hey.com", P),       // config pattern
    ("ida@mailbox.org", P),   // config pattern
    ("sue@mail.yahoo.fr", P), // a subdomain of a consumer provider
    ("  Jim@Yahoo.FR  ", P),  // whitespace and case
    ("ops+eu@outlook.de", P), // plus-addressing
    // Throwaway mailboxes: disposable wins over personal (the consumer list has them too).
    ("x@mailinator.com", D),
    ("x@guerrillamail.com", D),
    ("x@sharklasers.com", D),
    ("x@yopmail.com", D),
    ("x@10minutemail.com", D),
    ("x@trashmail.com", D),
    ("x@maildrop.cc", D),
    ("x@dispostable.com", D),
    ("X@MAILINATOR.COM", D),
    // The organisation: allowed domains and subdomains by label, IDN normalized.
    ("owner@acme.com", OK),
    ("eu@support.acme.com", OK),
    ("ACME@ACME.COM", OK),
    ("k@acme-eu.co.uk", OK),
    ("k@mail.acme-eu.co.uk", OK),
    // Lookalikes of acme.com / acme-eu.co.uk.
    ("eve@acme-corp.com", L),
    ("eve@acme.com.evil.io", L),
    ("eve@acme-com.io", L),
    ("eve@acrne.com", L),
    ("eve@acme.co", L),
    ("eve@acme2.com", L),
    ("eve@аcme.com", L), // Cyrillic а
    ("eve@acme-eu.com", L),
    ("eve@sso.acme.com.attacker.net", L),
    // Everyone else.
    ("c@contractor.io", E),
    ("c@notacme.com", E),
    ("c@zenith.com", E),
    ("c@acmeinc.org", E), // decided: not a lookalike (lookalike.rs)
    ("c@globex.com", E),
    ("c@münchen.de", E),
    ("c@xn--mnchen-3ya.de", E),
    ("c@agency.co.uk", E),
    ("c@microsoft.com", E),
    ("c@intercom.io", E),
];

#[test]
fn every_address_is_reported_by_exactly_its_check() {
    assert!(TABLE.len() >= 60, "{} addresses", TABLE.len());
    let mut snap = snapshot();
    snap.allowed_domains = vec!["acme.com".into(), "acme-eu.co.uk".into()];
    snap.admins = Ok(TABLE
        .iter()
        .enumerate()
        .map(|(i, (email, _))| admin(&i.to_string(), email))
        .collect());
    let outcomes: Vec<_> = DOMAIN_CHECKS
        .iter()
        .map(|id| {
            (
                *id,
                run_with(id, &snap, &previous(), &CheckSettings::default()),
            )
        })
        .collect();
    for (id, o) in &outcomes {
        assert_ne!(o.status, CheckStatus::Error, "{id}: {:?}", o.reason);
    }
    let mut wrong = Vec::new();
    for (i, (email, want)) in TABLE.iter().enumerate() {
        let resource = format!("admin:{i}");
        let got: Vec<&str> = outcomes
            .iter()
            .filter(|(_, o)| o.findings.iter().any(|f| f.resource == resource))
            .map(|(id, _)| *id)
            .collect();
        if got != want.iter().copied().collect::<Vec<_>>() {
            wrong.push(format!("{email}: want {want:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn lookalike_evidence_names_the_imitated_domain_and_the_ignore_list_applies() {
    let mut snap = snapshot();
    snap.admins = Ok(vec![
        admin("1", "owner@acme.com"),
        admin("2", "eve@acme-corp.com"),
        admin("3", "pat@comcast.net"),
        admin("4", "x@mailinator.com"),
    ]);
    let o = run("admin_lookalike_domain", &snap);
    assert_eq!(resources(&o), ["admin:2"]);
    assert_eq!(o.findings[0].evidence.value()["imitates"], "acme.com");
    assert_eq!(o.findings[0].evidence.value()["rule"], "hyphen_or_digit");
    assert_eq!(
        o.findings[0].title,
        "Teammate eve@acme-corp.com uses acme-corp.com, a lookalike of acme.com"
    );
    // An ISP domain the organisation really uses: no longer personal, so external.
    let settings = CheckSettings {
        personal_email_domains_ignore: vec!["comcast.net".into(), "mailinator.com".into()],
        ..Default::default()
    };
    let p = run_with("admin_personal_email_domain", &snap, &previous(), &settings);
    assert_eq!(p.status, CheckStatus::Pass);
    let e = run_with("admin_external_domain", &snap, &previous(), &settings);
    assert_eq!(resources(&e), ["admin:3", "admin:4"]);
}

#[test]
fn the_default_allowed_domain_is_the_owners_registrable_domain() {
    let mut snap = snapshot();
    let mut me = me();
    me.email = Some("alice@eu.acme.co.uk".into());
    snap.me = Ok(me);
    snap.admins = Ok(vec![
        admin("1", "alice@eu.acme.co.uk"),
        admin("2", "bob@acme.co.uk"),
        admin("3", "carol@uk.acme.co.uk"),
        admin("4", "dave@other.co.uk"),
    ]);
    let o = run("admin_external_domain", &snap);
    assert_eq!(resources(&o), ["admin:4"], "co.uk must never be allowed");
    assert_eq!(
        o.findings[0].evidence.value()["allowed_domains"][0],
        "acme.co.uk"
    );
}
