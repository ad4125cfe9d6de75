//! Attestations of manual controls and per-instance check overrides, in the console (real
//! HTTP, real Postgres, the simulator) and through the CLI binary: roles (a viewer may
//! not attest, an operator may not override), CSRF, bad input named by field with what
//! was typed kept, one audit row per change through either door, and the effect on the
//! next scan (an attestation makes its control pass, removing it makes it not_evaluated
//! again; a threshold override opens and then resolves a finding).

use intercom_sspm::console::role::Role;
use intercom_sspm::console::state::ConsoleState;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::console_routes::{add_user, local_settings, start_state, Browser, Console, PASSWORD};
use crate::support::cli::{run_cli, text};
use crate::support::{count, settings, sim, World};

async fn console(w: &World) -> Console {
    let mut s = settings(Some(&w.sim), &[("SSPM__SECURITY__TOKEN_KEY", &w.key.b64)]);
    s.console = local_settings();
    start_state(ConsoleState::from_settings(w.pool.clone(), &s).unwrap()).await
}

async fn signed_in(c: &Console, pool: &PgPool, name: &str, role: Role) -> Browser {
    add_user(pool, name, role).await;
    let mut b = Browser::new(&c.base);
    assert_eq!(
        b.login(name, PASSWORD).await.status,
        StatusCode::SEE_OTHER,
        "{name} signs in"
    );
    b
}

/// (action, target, actor, via) of every audit row, oldest first.
async fn audit_rows(pool: &PgPool) -> Vec<(String, String, String, String)> {
    sqlx::query_as("SELECT action, target, actor, via FROM sspm.audit_log ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

fn row(action: &str, actor: &str, via: &str) -> (String, String, String, String) {
    (action.into(), "acme".into(), actor.into(), via.into())
}

async fn scan(w: &World) {
    let i = intercom_sspm::db::instances::get(&w.pool, "acme")
        .await
        .unwrap();
    let report = w
        .scanner(&[])
        .scan(&i, intercom_sspm::db::scans::Trigger::Manual, None)
        .await
        .unwrap();
    assert_eq!(report.status, intercom_sspm::scan::ScanOutcome::Succeeded);
}

/// The status of `check` in the newest scan.
async fn last_result(pool: &PgPool, check: &str) -> String {
    sqlx::query_scalar(
        "SELECT r.status FROM sspm.check_results r JOIN sspm.scans s ON s.id = r.scan_id
         WHERE r.check_id = $1 ORDER BY s.started_at DESC, s.id DESC LIMIT 1",
    )
    .bind(check)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The error under field `id` (its `<p class="error" id=...>`), or None.
fn error_of<'a>(body: &'a str, id: &str) -> Option<&'a str> {
    let at = body.find(&format!("class=\"error\" id=\"{id}\""))?;
    let rest = &body[at..];
    let start = rest.find('>')? + 1;
    let end = rest.find("</p>")?;
    Some(&rest[start..end])
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn attestations_by_role_with_named_errors_one_audit_row_each_and_the_next_scan_follows(
    pool: PgPool,
) {
    let w = World::builder(&pool)
        .workspace(sim::named_workspace("acme", "us"))
        .build()
        .await;
    let id = w
        .onboard_named("acme", intercom_sspm::Region::Us, "6h")
        .await;
    scan(&w).await;
    assert_eq!(
        last_result(&pool, "manual_2fa_enforced").await,
        "not_evaluated"
    );
    let c = console(&w).await;
    let mut otto = signed_in(&c, &pool, "otto", Role::Operator).await;
    let mut vera = signed_in(&c, &pool, "vera", Role::Viewer).await;
    let list = format!("/instances/{id}/attestations");

    // The instance page links each manual check to its attestation page.
    let page = otto.get(&format!("/instances/{id}")).await;
    assert!(
        page.body.contains(&format!(
            "href=\"{list}?control=manual_2fa_enforced\">Attest…</a>"
        )),
        "{}",
        page.body
    );
    let form_page = otto
        .get(&format!("{list}?control=manual_2fa_enforced"))
        .await;
    assert_eq!(form_page.status, StatusCode::OK);
    assert!(form_page
        .body
        .contains("<option value=\"manual_2fa_enforced\" selected>"));
    assert!(
        form_page.body.contains("name=\"expires\" value=\"90d\""),
        "the CLI's default validity is offered"
    );
    let csrf = form_page.csrf();

    // A viewer sees the list but no form, and may not record.
    let seen = vera.get(&list).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(seen.body.contains("None recorded") && !seen.body.contains("Record attestation"));
    let vcsrf = seen.csrf();
    let valid = [
        ("control", "manual_2fa_enforced"),
        ("evidence", "SEC-42: screenshot of Security settings"),
        ("expires", "26w"),
    ];
    let mut form = vec![("csrf", vcsrf.as_str())];
    form.extend(valid);
    let p = vera.post(&list, &form).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("needs the operator role"), "{}", p.body);
    // Without (or with a forged) CSRF token nothing runs, for an operator too.
    for token in [None, Some("forged")] {
        let mut form: Vec<(&str, &str)> = valid.to_vec();
        if let Some(t) = token {
            form.push(("csrf", t));
        }
        let p = otto.post(&list, &form).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "csrf {token:?}");
        assert!(p.body.contains("security token"));
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.attestations").await,
        0
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 0);

    // Every bad field named at once, in the console's words, what was typed kept.
    let p = otto
        .post(
            &list,
            &[
                ("csrf", &csrf),
                ("control", "identity_verification_enabled"),
                ("evidence", "  "),
                ("expires", "2001-01-01"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&p.body, "e-control")
        .unwrap()
        .contains("choose one of the manual controls"));
    assert!(error_of(&p.body, "e-evidence")
        .unwrap()
        .contains("what proves the control"));
    let expires = error_of(&p.body, "e-expires").unwrap();
    assert!(
        expires.contains("in the past") && !expires.contains("--expires"),
        "{expires}"
    );
    assert!(p.body.contains("name=\"expires\" value=\"2001-01-01\""));
    let p = otto
        .post(
            &list,
            &[
                ("csrf", &csrf),
                ("control", "manual_2fa_enforced"),
                ("evidence", "SEC-42 <b>reviewed</b>"),
                ("expires", "soon"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&p.body, "e-expires")
        .unwrap()
        .contains("YYYY-MM-DD"));
    assert!(error_of(&p.body, "e-control").is_none());
    assert!(
        p.body
            .contains("SEC-42 &lt;b&gt;reviewed&lt;/b&gt;</textarea>")
            || p.body
                .contains("SEC-42 &#60;b&#62;reviewed&#60;/b&#62;</textarea>"),
        "the evidence is kept, escaped: {}",
        p.body
    );
    assert!(p
        .body
        .contains("<option value=\"manual_2fa_enforced\" selected>"));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.attestations").await,
        0
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 0);

    // Recorded: one audit row by otto through the console; the author is otto.
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend(valid);
    let p = otto.post(&list, &form).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location(), format!("{list}?done=recorded"));
    assert_eq!(
        audit_rows(&pool).await,
        [row("attest.add", "otto", "console")]
    );
    let (aid, author, days): (Uuid, String, f64) = sqlx::query_as(
        "SELECT id, author, extract(epoch FROM expires_at - now())::float8 / 86400 FROM sspm.attestations",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(author, "otto");
    assert!((days - 182.0).abs() < 0.1, "26 weeks, got {days} days");
    let listed = otto.get(&format!("{list}?done=recorded")).await;
    assert!(listed.body.contains("Attestation recorded"));
    assert!(listed
        .body
        .contains("SEC-42: screenshot of Security settings"));
    // A second one of the same control is refused, naming the control field.
    let p = otto.post(&list, &form).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&p.body, "e-control")
        .unwrap()
        .contains("already attested"));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.attestations").await,
        1
    );

    scan(&w).await;
    assert_eq!(last_result(&pool, "manual_2fa_enforced").await, "pass");
    assert_eq!(
        last_result(&pool, "manual_sso_required").await,
        "not_evaluated"
    );

    // Removal: a confirmation step (operator only), then one audit row.
    let confirm_path = format!("{list}/{aid}/remove");
    assert_eq!(vera.get(&confirm_path).await.status, StatusCode::FORBIDDEN);
    let p = vera
        .post(&confirm_path, &[("csrf", &vcsrf), ("confirm", "yes")])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let confirm = otto.get(&confirm_path).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Remove this attestation?"));
    assert!(confirm.body.contains("name=\"confirm\" value=\"yes\""));
    // A POST without the confirmation only shows the confirmation page.
    let p = otto.post(&confirm_path, &[("csrf", &csrf)]).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("Remove this attestation?"));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.attestations").await,
        1
    );
    // Another instance's address does not reach it.
    let other = format!("/instances/{}/attestations/{aid}/remove", Uuid::new_v4());
    assert_eq!(otto.get(&other).await.status, StatusCode::NOT_FOUND);
    let p = otto
        .post(&confirm_path, &[("csrf", &csrf), ("confirm", "yes")])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), format!("{list}?done=removed"));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.attestations").await,
        0
    );
    assert_eq!(
        audit_rows(&pool).await,
        [
            row("attest.add", "otto", "console"),
            row("attest.remove", "otto", "console")
        ]
    );
    scan(&w).await;
    assert_eq!(
        last_result(&pool, "manual_2fa_enforced").await,
        "not_evaluated"
    );

    // The CLI runs the same code: one audit row for add and one for remove, via cli.
    let env = w.cli_env();
    let out = run_cli(
        &[
            "attest",
            "add",
            "--instance",
            "acme",
            "--control",
            "manual_sso_required",
            "--evidence",
            "SEC-43",
        ],
        &env,
        None,
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let bad = run_cli(
        &[
            "attest",
            "add",
            "--instance",
            "acme",
            "--control",
            "manual_sso_required",
            "--evidence",
            " ",
        ],
        &env,
        None,
    )
    .await;
    assert!(!bad.status.success());
    assert!(text(&bad).1.contains("--evidence"), "{:?}", text(&bad));
    let cli_id: Uuid = sqlx::query_scalar("SELECT id FROM sspm.attestations")
        .fetch_one(&pool)
        .await
        .unwrap();
    let out = run_cli(&["attest", "remove", &cli_id.to_string()], &env, None).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let rows = audit_rows(&pool).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows[2].0, "attest.add");
    assert_eq!(rows[3].0, "attest.remove");
    assert!(rows[2..].iter().all(|r| r.3 == "cli" && r.1 == "acme"));
}

/// acme with three failed logins of the agent within minutes: under the default burst
/// threshold (5), over an override of 3.
fn workspace_with_failed_logins() -> serde_json::Value {
    let mut ws = sim::named_workspace("acme", "us");
    for (n, ago) in ["2h 3m", "2h 2m", "2h 1m"].iter().enumerate() {
        ws["events"].as_array_mut().unwrap().push(json!({
            "id": format!("fail-{n}"), "activity_type": "admin_login_failure", "ago": ago,
            "performed_by": "2", "ip": "198.51.100.7"
        }));
    }
    ws
}

async fn overrides_of(pool: &PgPool) -> serde_json::Value {
    sqlx::query_scalar("SELECT check_overrides FROM sspm.instances")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn open_bursts(pool: &PgPool) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM sspm.findings WHERE check_id = 'failed_login_burst' AND status = 'open'",
    )
    .await
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn check_overrides_by_admin_only_named_errors_one_audit_row_each_way_and_the_next_scan_follows(
    pool: PgPool,
) {
    let w = World::builder(&pool)
        .workspace(workspace_with_failed_logins())
        .build()
        .await;
    let id = w
        .onboard_named("acme", intercom_sspm::Region::Us, "6h")
        .await;
    scan(&w).await;
    assert_eq!(open_bursts(&pool).await, 0, "3 failures, threshold 5");
    let c = console(&w).await;
    let mut otto = signed_in(&c, &pool, "otto", Role::Operator).await;
    let mut ada = signed_in(&c, &pool, "ada", Role::Admin).await;
    let path = format!("/instances/{id}/overrides");
    let settings_path = format!("/instances/{id}/settings");

    let page = ada.get(&settings_path).await;
    assert_eq!(page.status, StatusCode::OK);
    let section = &page.body[page.body.find("id=\"h-overrides\"").expect("the section")..];
    for key in intercom_sspm::checks::overrides::tunables() {
        assert!(
            section.contains(&format!("name=\"ov_{}\" value=\"\"", key.key)),
            "{} listed, empty (default)",
            key.key
        );
    }
    assert!(
        section.contains("<code>failed_login_threshold</code></label></td><td>5</td>"),
        "the default beside it: {section}"
    );
    let csrf = page.csrf();

    // An operator may not see or submit them, with a valid CSRF token; nothing changes.
    assert_eq!(otto.get(&settings_path).await.status, StatusCode::FORBIDDEN);
    let ocsrf = otto.get(&format!("/instances/{id}")).await.csrf();
    let p = otto
        .post(
            &path,
            &[("csrf", &ocsrf), ("ov_failed_login_threshold", "3")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("needs the admin role"));
    // No form passes without the CSRF token, for an admin either.
    for token in [None, Some("forged")] {
        let mut form = vec![("ov_failed_login_threshold", "3")];
        if let Some(t) = token {
            form.push(("csrf", t));
        }
        assert_eq!(ada.post(&path, &form).await.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(overrides_of(&pool).await, json!({}));
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 0);

    // Bad values: the key named, what was typed kept, nothing stored.
    for (field, typed, text) in [
        ("failed_login_threshold", "three", "not a whole number"),
        ("failed_login_threshold", "0", "at least 1"),
        (
            "disabled",
            "admin_dormant, no_such_check",
            "no_such_check&#34; is not a check id",
        ),
    ] {
        let name = format!("ov_{field}");
        let p = ada
            .post(
                &path,
                &[("csrf", &csrf), (&name, typed), ("ov_dormant_days", "45")],
            )
            .await;
        assert_eq!(
            p.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}={typed}"
        );
        let e = error_of(&p.body, &format!("e-ov-{field}"))
            .unwrap_or_else(|| panic!("{field} named: {}", p.body));
        assert!(e.contains(text), "{field}: {e}");
        assert!(p
            .body
            .contains(&format!("name=\"{name}\" value=\"{typed}\"")));
        assert!(p.body.contains("name=\"ov_dormant_days\" value=\"45\""));
    }
    assert_eq!(overrides_of(&pool).await, json!({}));
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 0);

    // Saved: one audit row by ada; the same form again changes nothing and writes nothing.
    let mut form: Vec<(String, String)> = intercom_sspm::checks::overrides::tunables()
        .into_iter()
        .map(|t| (format!("ov_{}", t.key), String::new()))
        .collect();
    form.push(("csrf".into(), csrf.clone()));
    for f in form.iter_mut() {
        if f.0 == "ov_failed_login_threshold" {
            f.1 = " 3 ".into();
        }
    }
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let p = ada.post(&path, &form).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location(), format!("/instances/{id}?done=overrides"));
    assert_eq!(
        overrides_of(&pool).await,
        json!({"failed_login_threshold": 3})
    );
    assert_eq!(
        audit_rows(&pool).await,
        [row("instance.set_check_overrides", "ada", "console")]
    );
    let p = ada.post(&path, &form).await;
    assert_eq!(
        p.location(),
        format!("/instances/{id}?done=overrides_unchanged")
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 1);
    let page = ada.get(&settings_path).await;
    assert!(page
        .body
        .contains("name=\"ov_failed_login_threshold\" value=\"3\""));

    // The next scan uses it: the three failures are now a burst.
    scan(&w).await;
    assert_eq!(open_bursts(&pool).await, 1);

    // The CLI: bad input refused with the key named and nothing written; a change writes
    // one row via cli; --help names every key.
    let env = w.cli_env();
    let bad = run_cli(
        &["instance", "set-overrides", "acme", "dormant_days=0"],
        &env,
        None,
    )
    .await;
    assert!(!bad.status.success());
    let err = text(&bad).1;
    assert!(
        err.contains("dormant_days") && err.contains("at least 1"),
        "{err}"
    );
    let bad = run_cli(
        &["instance", "set-overrides", "acme", "dormant_days"],
        &env,
        None,
    )
    .await;
    assert!(text(&bad).1.contains("KEY=VALUE"), "{:?}", text(&bad));
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 1);
    let out = run_cli(
        &[
            "instance",
            "set-overrides",
            "acme",
            "dormant_days=45",
            "--clear",
            "failed_login_threshold",
        ],
        &env,
        None,
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("dormant_days=45"), "{:?}", text(&out));
    assert_eq!(overrides_of(&pool).await, json!({"dormant_days": 45}));
    let rows = audit_rows(&pool).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].0, "instance.set_check_overrides");
    assert_eq!(rows[1].3, "cli");
    let help = run_cli(&["instance", "set-overrides", "--help"], &env, None).await;
    let help = text(&help).0;
    for key in intercom_sspm::checks::overrides::tunables() {
        assert!(help.contains(&key.key), "--help names {}", key.key);
    }

    // Back to the default threshold: the next scan resolves the burst.
    scan(&w).await;
    assert_eq!(open_bursts(&pool).await, 0);
}
