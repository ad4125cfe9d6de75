//! The console's actions over real HTTP against real Postgres and the simulator: the
//! onboarding wizard (wrong region first, then the right one, the first scan's results on
//! the instance page after the daemon runs it), connection and field errors that store
//! nothing, scan now, the admin actions, roles, CSRF, one audit row per action, and the
//! token in no response body, Location header, log line, audit row or session row.

use std::time::Duration;

use intercom_sspm::console::role::Role;
use intercom_sspm::console::state::ConsoleState;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::console_routes::{
    add_user, local_settings, start_state, Browser, Console, Page, PASSWORD,
};
use crate::support::daemon::READY;
use crate::support::{count, db, settings, sim, World};

const GLOBEX: &str = "globex";

/// A console with its actions wired to the simulator and the world's key.
async fn console(w: &World) -> Console {
    console_with(w, Some(&w.sim)).await
}

/// `sim = None` points every region at a closed port (unreachable).
async fn console_with(w: &World, sim: Option<&intercom_sim::Simulator>) -> Console {
    let mut s = settings(sim, &[("SSPM__SECURITY__TOKEN_KEY", &w.key.b64)]);
    s.console = local_settings();
    start_state(ConsoleState::from_settings(w.pool.clone(), &s).unwrap()).await
}

async fn signed_in(c: &Console, pool: &PgPool, name: &str, role: Role) -> Browser {
    add_user(pool, name, role).await;
    let mut b = Browser::new(&c.base);
    let p = b.login(name, PASSWORD).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{name} signs in");
    b
}

async fn audit_rows(pool: &PgPool) -> Vec<(String, String, String, String)> {
    sqlx::query_as("SELECT action, target, actor, via FROM sspm.audit_log ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The value of input `name` in the page's first form that has it.
fn input_value(p: &Page, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = p.body.find(&marker)? + marker.len();
    let end = p.body[start..].find('"')?;
    Some(p.body[start..start + end].to_string())
}

fn onboard_form<'a>(
    csrf: &'a str,
    name: &'a str,
    region: &'a str,
    token: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("name", name),
        ("region", region),
        ("token", token),
        ("token_ref", ""),
        ("allowed_domains", ""),
        ("schedule", ""),
        ("timezone", ""),
        ("step", "connect"),
    ]
}

/// The whole journey against a real daemon serving the console: its log is searched too.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn onboarding_wrong_region_first_then_right_and_first_scan_results_appear(pool: PgPool) {
    let token = sim::token_of(GLOBEX);
    let w = World::builder(&pool)
        .workspace(sim::named_workspace(GLOBEX, "eu"))
        .build()
        .await;
    add_user(&pool, "ada", Role::Admin).await;
    let port = crate::support::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut d = w.daemon(
        "console-1",
        &[
            ("SSPM__CONSOLE__LISTEN", &listen),
            ("SSPM__CONSOLE__AUTH", "local"),
            ("SSPM__CONSOLE__INSECURE_COOKIES", "true"),
            (
                "SSPM__LOG__LEVEL",
                "debug,sqlx=warn,hyper=info,reqwest=info",
            ),
        ],
    );
    d.wait_ready(READY).await;
    let mut b = Browser::new(&format!("http://{listen}"));
    let mut seen: Vec<Page> = Vec::new();
    let signed = b.login("ada", PASSWORD).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", d.logs());

    let guide = b.get("/instances/new").await;
    assert_eq!(guide.status, StatusCode::OK);
    for hint in [
        "Read admins",
        "Read admin activity logs",
        "regenerate",
        "app.eu.intercom.com",
    ] {
        assert!(guide.body.contains(hint), "the guide mentions {hint}");
    }
    let csrf = guide.csrf();
    seen.push(guide);

    // Wrong region: named, one-click retry in EU keeping the form, nothing stored.
    let mut form = onboard_form(&csrf, "globex-prod", "us", &token);
    form[5] = ("allowed_domains", "globex.example");
    form[6] = ("schedule", "0 3 * * *");
    form[7] = ("timezone", "Europe/Berlin");
    let wrong = b.post("/instances/new", &form).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        wrong.body.contains("accepted by region eu") && wrong.body.contains("Use EU instead"),
        "{}",
        wrong.body
    );
    assert!(
        wrong.body.contains("enter it again"),
        "says the token must be re-entered"
    );
    assert_eq!(input_value(&wrong, "name").as_deref(), Some("globex-prod"));
    assert_eq!(
        input_value(&wrong, "allowed_domains").as_deref(),
        Some("globex.example")
    );
    assert!(
        wrong.body.contains("name=\"region\" value=\"eu\""),
        "the retry is in EU"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 0);
    seen.push(wrong);

    // "Use EU instead": the same fields, region eu, the token typed again.
    let mut retry = onboard_form(&csrf, "globex-prod", "eu", &token);
    retry[5] = ("allowed_domains", "globex.example");
    retry[6] = ("schedule", "0 3 * * *");
    retry[7] = ("timezone", "Europe/Berlin");
    retry.pop();
    let ok = b.post("/instances/new", &retry).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let location = ok.location().to_string();
    assert!(location.starts_with("/instances/") && location.ends_with("?done=onboarded"));
    seen.push(ok);
    let (id, sealed, schedule): (uuid::Uuid, bool, Option<String>) = sqlx::query_as(
        "SELECT id, token_ciphertext IS NOT NULL AND token_key_id IS NOT NULL AND token_ref IS NULL, schedule FROM sspm.instances WHERE name = 'globex-prod' AND region = 'eu'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(sealed, "stored sealed");
    assert_eq!(schedule.as_deref(), Some("CRON_TZ=Europe/Berlin 0 3 * * *"));

    // The instance page says the scan is queued or running and reloads itself, until
    // the daemon's first scan is in; then it shows the results and stops reloading.
    let first = b.get(&location).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.body.contains("Connected"), "the success notice");
    let scanned = count(
        &pool,
        "SELECT count(*) FROM sspm.scans WHERE status = 'succeeded'",
    )
    .await;
    if scanned == 0 {
        assert!(
            first.body.contains("data-scan-state=")
                && (first.body.contains("A scan is queued")
                    || first.body.contains("A scan is running"))
                && first.body.contains("refresh now"),
            "{}",
            first.body
        );
    }
    seen.push(first);
    db::wait_count(
        &pool,
        &format!(
            "SELECT count(*) FROM sspm.scans WHERE instance_id = '{id}' AND status = 'succeeded'"
        ),
        1,
        Duration::from_secs(30),
    )
    .await;
    let done = b.get(&format!("/instances/{id}")).await;
    assert!(
        done.body.contains("admin_personal_email_domain")
            && !done.body.contains("No completed scan yet"),
        "the first scan's check results are on the page"
    );
    assert!(
        !done.body.contains("data-scan-state="),
        "no reload once idle"
    );
    seen.push(done);

    // One audit row, by the signed-in user through the console.
    assert_eq!(
        audit_rows(&pool).await,
        [(
            "instance.add".to_string(),
            "globex-prod".to_string(),
            "ada".to_string(),
            "console".to_string()
        )]
    );
    // The token in no body, no Location, no log line, no row (audit and sessions included).
    for p in &seen {
        assert!(!p.body.contains(&token), "token in a response body");
        for (_, v) in p.headers.iter() {
            assert!(
                !v.to_str().unwrap_or("").contains(&token),
                "token in a header"
            );
        }
    }
    let logs = d.logs();
    assert!(
        logs.contains("onboarded an instance in the console"),
        "{logs}"
    );
    assert!(!logs.contains(&token), "token in the daemon's log");
    let tables = db::all_table_text(&pool).await;
    assert!(!tables.contains(&token), "token in a table");
    assert!(count(&pool, "SELECT count(*) FROM sspm.console_sessions").await >= 1);
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn connect_errors_and_bad_fields_are_named_keep_the_form_and_store_nothing(pool: PgPool) {
    let token = sim::token_of("acme");
    let w = World::builder(&pool)
        .workspace(sim::named_workspace("acme", "us"))
        .build()
        .await;
    let c = console(&w).await;
    let mut b = signed_in(&c, &pool, "ada", Role::Admin).await;
    let csrf = b.get("/instances/new").await.csrf();
    let before = db::all_table_text(&pool).await;
    let mut bodies = Vec::new();

    // Every bad field at once, each named, what was typed kept (never the token).
    let mut form = onboard_form(&csrf, "acme prod", "us", &token);
    form[5] = ("allowed_domains", "co.uk");
    form[6] = ("schedule", "10s");
    let p = b.post("/instances/new", &form).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    for (field, text) in [
        ("e-name", "invalid instance name"),
        ("e-domains", "public suffix"),
        ("e-schedule", "shorter than the minimum"),
    ] {
        let at = p
            .body
            .find(&format!("id=\"{field}\""))
            .unwrap_or_else(|| panic!("{field} named: {}", p.body));
        assert!(p.body[at..].contains(text), "{field}: {text}");
    }
    assert_eq!(input_value(&p, "name").as_deref(), Some("acme prod"));
    assert_eq!(input_value(&p, "schedule").as_deref(), Some("10s"));
    assert!(
        p.body.contains("not shown again"),
        "asks for the token again"
    );
    bodies.push(p.body);

    // A time zone on an interval names the time-zone field.
    let mut form = onboard_form(&csrf, "acme", "us", &token);
    form[6] = ("schedule", "6h");
    form[7] = ("timezone", "Europe/Berlin");
    let p = b.post("/instances/new", &form).await;
    assert!(p.body.contains("id=\"e-tz\""), "{}", p.body);
    bodies.push(p.body);

    // The preview: three next runs in the schedule's zone, nothing stored.
    let mut form = onboard_form(&csrf, "acme", "us", &token);
    form[6] = ("schedule", "0 3 * * *");
    form[7] = ("timezone", "Europe/Berlin");
    form[8] = ("step", "preview");
    let p = b.post("/instances/new", &form).await;
    assert_eq!(p.status, StatusCode::OK);
    let preview = &p.body[p.body.find("Next three runs").expect("a preview")..];
    assert_eq!(preview.matches("Europe/Berlin (").count(), 3, "{preview}");
    bodies.push(p.body);

    // Rejected token.
    let p = b
        .post(
            "/instances/new",
            &onboard_form(&csrf, "acme", "us", "tok_not_a_real_token_123"),
        )
        .await;
    assert!(
        p.body.contains("id=\"e-token\"") && p.body.contains("rejected"),
        "{}",
        p.body
    );
    // Token and reference together.
    let mut both = onboard_form(&csrf, "acme", "us", &token);
    both[4] = ("token_ref", "env:ACME_TOKEN");
    let p = b.post("/instances/new", &both).await;
    assert!(p.body.contains("not both"), "{}", p.body);
    bodies.push(p.body);
    // A bad reference names the reference field.
    let mut bad_ref = onboard_form(&csrf, "acme", "us", "");
    bad_ref[4] = ("token_ref", "vault:acme");
    let p = b.post("/instances/new", &bad_ref).await;
    assert!(p.body.contains("id=\"e-ref\""), "{}", p.body);

    // IP allowlist block.
    w.set_faults("acme", json!({ "ip_not_allowed": true }));
    let p = b
        .post("/instances/new", &onboard_form(&csrf, "acme", "us", &token))
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("IP allowlist blocks this host"),
        "{}",
        p.body
    );
    bodies.push(p.body);
    w.heal("acme");

    // Unreachable host: a console whose regions point at a closed port.
    let down = console_with(&w, None).await;
    let mut b2 = Browser::new(&down.base);
    assert_eq!(
        b2.login("ada", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let csrf2 = b2.get("/instances/new").await.csrf();
    let p = b2
        .post(
            "/instances/new",
            &onboard_form(&csrf2, "acme", "us", &token),
        )
        .await;
    assert!(
        p.body
            .contains("cannot validate the token against region us"),
        "{}",
        p.body
    );
    bodies.push(p.body);

    for body in &bodies {
        assert!(!body.contains(&token), "token echoed back");
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 0);
    let after = db::all_table_text(&pool).await;
    assert!(!after.contains(&token));
    // Only sessions and sign-in bookkeeping changed.
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.scans").await,
        0,
        "{before}"
    );

    // A token reference works as the alternative to pasting.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme-token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let reference = format!("file:{}", file.display());
    let mut by_ref = onboard_form(&csrf, "acme", "us", "");
    by_ref[4] = ("token_ref", &reference);
    let p = b.post("/instances/new", &by_ref).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let stored: Option<String> =
        sqlx::query_scalar("SELECT token_ref FROM sspm.instances WHERE name = 'acme'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored.as_deref(), Some(reference.as_str()));
    let (token_detail,): (serde_json::Value,) =
        sqlx::query_as("SELECT details FROM sspm.audit_log WHERE action = 'instance.add'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(token_detail["token"], "reference");
}

/// The admin actions' forms, as (path, fields) with a valid change each.
fn admin_actions(id: uuid::Uuid, name: &str) -> Vec<(String, Vec<(&'static str, String)>)> {
    vec![
        (
            format!("/instances/{id}/schedule"),
            vec![
                ("schedule", "12h".into()),
                ("timezone", String::new()),
                ("step", "save".into()),
            ],
        ),
        (
            format!("/instances/{id}/domains"),
            vec![("allowed_domains", "acme.com".into())],
        ),
        (
            format!("/instances/{id}/enabled"),
            vec![("enabled", "false".into())],
        ),
        (
            format!("/instances/{id}/token"),
            vec![
                ("token", sim::token_of("acme")),
                ("token_ref", String::new()),
            ],
        ),
        (
            format!("/instances/{id}/remove"),
            vec![("confirm", name.to_string())],
        ),
    ]
}

/// A form post and what to expect: (path, fields, field or audit action, text or done word).
type Step = (
    String,
    Vec<(&'static str, String)>,
    &'static str,
    &'static str,
);

async fn send(
    b: &mut Browser,
    path: &str,
    csrf: &str,
    fields: Vec<(&'static str, String)>,
) -> Page {
    let mut form: Vec<(&str, &str)> = vec![("csrf", csrf)];
    form.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
    b.post(path, &form).await
}

async fn instance_row(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT row_to_json(i)::text FROM sspm.instances i")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn operator_scans_now_but_gets_403_on_admin_actions_and_no_form_passes_without_csrf(
    pool: PgPool,
) {
    let w = World::builder(&pool)
        .workspace(sim::named_workspace("acme", "us"))
        .build()
        .await;
    let acme = w
        .onboard_named("acme", intercom_sspm::Region::Us, "6h")
        .await;
    sqlx::query("UPDATE sspm.instances SET next_scan_at = now() + interval '5 hours'")
        .execute(&pool)
        .await
        .unwrap();
    let c = console(&w).await;
    let mut otto = signed_in(&c, &pool, "otto", Role::Operator).await;
    let page = otto.get(&format!("/instances/{acme}")).await;
    assert!(page.body.contains("Scan now") && !page.body.contains("/settings\""));
    let csrf = page.csrf();
    let row = instance_row(&pool).await;

    // Admin actions: 403 for an operator, with a valid CSRF token, and nothing changes.
    assert_eq!(
        otto.get(&format!("/instances/{acme}/settings"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        otto.get(&format!("/instances/{acme}/remove")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        otto.get("/instances/new").await.status,
        StatusCode::FORBIDDEN
    );
    let new = onboard_form(&csrf, "other", "us", "tok_whatever_1234567");
    assert_eq!(
        otto.post("/instances/new", &new).await.status,
        StatusCode::FORBIDDEN
    );
    for (path, fields) in admin_actions(acme, "acme") {
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        form.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
        let p = otto.post(&path, &form).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "operator POST {path}");
        assert!(p.body.contains("needs the admin role"), "{path}");
    }
    assert_eq!(instance_row(&pool).await, row, "nothing changed");
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 0);

    // A viewer may not scan.
    let mut vera = signed_in(&c, &pool, "vera", Role::Viewer).await;
    let vcsrf = vera.get("/").await.csrf();
    let p = vera
        .post(&format!("/instances/{acme}/scan"), &[("csrf", &vcsrf)])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);

    // Without (or with a wrong) CSRF token, every action is refused before it runs,
    // even for an admin.
    let mut ada = signed_in(&c, &pool, "ada", Role::Admin).await;
    let mut all = admin_actions(acme, "acme");
    all.push((format!("/instances/{acme}/scan"), vec![]));
    all.push((
        "/instances/new".into(),
        vec![
            ("name", "x".into()),
            ("region", "us".into()),
            ("token", sim::token_of("acme")),
        ],
    ));
    for (path, fields) in &all {
        for csrf in [None, Some("forged")] {
            let mut form: Vec<(&str, &str)> =
                fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if let Some(t) = csrf {
                form.push(("csrf", t));
            }
            let p = ada.post(path, &form).await;
            assert_eq!(
                p.status,
                StatusCode::FORBIDDEN,
                "POST {path} with csrf {csrf:?}"
            );
            assert!(p.body.contains("security token"), "{path}");
        }
    }
    assert_eq!(instance_row(&pool).await, row, "nothing changed");
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 0);

    // Scan now: queued (due now), one audit row by the operator, and the page says so.
    let p = otto
        .post(&format!("/instances/{acme}/scan"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), format!("/instances/{acme}?done=scan"));
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.instances WHERE next_scan_at <= now()"
        )
        .await,
        1
    );
    assert_eq!(
        audit_rows(&pool).await,
        [(
            "instance.scan_now".to_string(),
            "acme".to_string(),
            "otto".to_string(),
            "console".to_string()
        )]
    );
    let page = otto.get(p.location()).await;
    assert!(page.body.contains("Scan queued") && page.body.contains("A scan is queued"));
    assert!(page.body.contains("data-scan-state=\"queued\""));
    assert!(
        page.body.contains("/assets/scan-status."),
        "the poller is loaded while a scan is queued"
    );
    // The scanner runs it; the page then shows the results.
    w.scanner(&[])
        .scan(
            &intercom_sspm::db::instances::get(&pool, "acme")
                .await
                .unwrap(),
            intercom_sspm::db::scans::Trigger::Manual,
            None,
        )
        .await
        .unwrap();
    let page = otto.get(&format!("/instances/{acme}")).await;
    // (The library scan leaves the due time to the daemon's scheduler, so the page
    // still counts it as queued; the daemon journey test sees the reloading stop.)
    assert!(
        page.body.contains("admin_personal_email_domain"),
        "{}",
        page.body
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn admin_actions_validate_like_the_cli_and_each_leaves_one_audit_row(pool: PgPool) {
    let acme_token = sim::token_of("acme");
    let acme_new = "tok_acme_rotated_9d8c7b6a5f4e";
    let mut acme = sim::named_workspace("acme", "us");
    acme["tokens"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "token": acme_new, "scopes": ["read_admins"] }));
    let w = World::builder(&pool)
        .workspaces(vec![
            acme,
            sim::named_workspace("initech", "us"),
            sim::named_workspace("globex", "eu"),
        ])
        .build()
        .await;
    let id = w
        .onboard_named("acme", intercom_sspm::Region::Us, "6h")
        .await;
    let c = console(&w).await;
    let mut b = signed_in(&c, &pool, "ada", Role::Admin).await;
    let settings_page = b.get(&format!("/instances/{id}/settings")).await;
    assert_eq!(settings_page.status, StatusCode::OK);
    assert_eq!(
        input_value(&settings_page, "schedule").as_deref(),
        Some("6h")
    );
    let csrf = settings_page.csrf();
    let mut bodies = vec![settings_page.body.clone()];
    // Refused changes: each names its field, keeps the typed value, writes nothing.
    let refused: Vec<Step> = vec![
        (
            format!("/instances/{id}/token"),
            vec![
                ("token", sim::token_of("initech")),
                ("token_ref", String::new()),
            ],
            "e-token",
            "belongs to workspace initech",
        ),
        (
            format!("/instances/{id}/token"),
            vec![
                ("token", sim::token_of("globex")),
                ("token_ref", String::new()),
            ],
            "e-token",
            "accepted by region eu",
        ),
        (
            format!("/instances/{id}/token"),
            vec![
                ("token", "tok_revoked_or_never_issued".into()),
                ("token_ref", String::new()),
            ],
            "e-token",
            "rejected",
        ),
        (
            format!("/instances/{id}/schedule"),
            vec![
                ("schedule", "every tuesday".into()),
                ("timezone", String::new()),
                ("step", "save".into()),
            ],
            "e-schedule",
            "neither an interval",
        ),
        (
            format!("/instances/{id}/schedule"),
            vec![
                ("schedule", "0 3 * * *".into()),
                ("timezone", "Mars/Base".into()),
                ("step", "save".into()),
            ],
            "e-tz",
            "unknown time zone",
        ),
        (
            format!("/instances/{id}/domains"),
            vec![("allowed_domains", "acme.com, not a domain".into())],
            "e-domains",
            "not a domain",
        ),
    ];
    let row = instance_row(&pool).await;
    for (path, fields, field, text) in refused {
        let p = send(&mut b, &path, &csrf, fields).await;
        assert_eq!(
            p.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {}",
            p.body
        );
        let at = p
            .body
            .find(&format!("id=\"{field}\""))
            .unwrap_or_else(|| panic!("{path} names {field}: {}", p.body));
        assert!(p.body[at..].contains(text), "{path}: {text}");
        bodies.push(p.body);
    }
    let last = bodies.last().unwrap();
    assert!(
        last.contains("value=\"acme.com, not a domain\""),
        "keeps the typed domains"
    );
    assert_eq!(instance_row(&pool).await, row, "nothing changed");
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 0);

    // A schedule preview changes nothing either.
    let p = send(
        &mut b,
        &format!("/instances/{id}/schedule"),
        &csrf,
        vec![
            ("schedule", "30m".into()),
            ("timezone", String::new()),
            ("step", "preview".into()),
        ],
    )
    .await;
    assert!(p.body.contains("Next three runs"), "{}", p.body);
    assert_eq!(instance_row(&pool).await, row);

    // Each valid change: one audit row by ada through the console.
    let valid: Vec<Step> = vec![
        (
            format!("/instances/{id}/token"),
            vec![("token", acme_new.into()), ("token_ref", String::new())],
            "instance.set_token",
            "token",
        ),
        (
            format!("/instances/{id}/schedule"),
            vec![
                ("schedule", "0 3 * * *".into()),
                ("timezone", "Europe/Berlin".into()),
                ("step", "save".into()),
            ],
            "instance.set_schedule",
            "schedule",
        ),
        (
            format!("/instances/{id}/domains"),
            vec![("allowed_domains", "Acme.com, @acme.co.uk".into())],
            "instance.set_domains",
            "domains",
        ),
        (
            format!("/instances/{id}/enabled"),
            vec![("enabled", "false".into())],
            "instance.disable",
            "disabled",
        ),
        (
            format!("/instances/{id}/enabled"),
            vec![("enabled", "true".into())],
            "instance.enable",
            "enabled",
        ),
    ];
    for (path, fields, action, done) in valid {
        let before = count(&pool, "SELECT count(*) FROM sspm.audit_log").await;
        let p = send(&mut b, &path, &csrf, fields).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{path}: {}", p.body);
        assert_eq!(p.location(), format!("/instances/{id}?done={done}"));
        assert_eq!(
            count(&pool, "SELECT count(*) FROM sspm.audit_log").await,
            before + 1,
            "{path}: one audit row"
        );
        let last: (String, String, String, String) = sqlx::query_as(
            "SELECT action, target, actor, via FROM sspm.audit_log ORDER BY id DESC LIMIT 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            last,
            (action.into(), "acme".into(), "ada".into(), "console".into())
        );
        bodies.push(b.get(p.location()).await.body);
    }
    let (schedule, domains, enabled): (Option<String>, Vec<String>, bool) = sqlx::query_as(
        "SELECT schedule, allowed_domains, enabled FROM sspm.instances WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(schedule.as_deref(), Some("CRON_TZ=Europe/Berlin 0 3 * * *"));
    assert_eq!(domains, ["acme.com", "acme.co.uk"]);
    assert!(enabled);
    // The replaced token works: a scan with it succeeds.
    let report = w
        .scanner(&[])
        .scan(
            &intercom_sspm::db::instances::get(&pool, "acme")
                .await
                .unwrap(),
            intercom_sspm::db::scans::Trigger::Manual,
            None,
        )
        .await
        .unwrap();
    assert_eq!(report.status, intercom_sspm::scan::ScanOutcome::Succeeded);

    // Remove: the confirmation says what goes, a wrong name deletes nothing.
    let confirm = b.get(&format!("/instances/{id}/remove")).await;
    assert!(
        confirm.body.contains("1 scans") && confirm.body.contains("findings"),
        "{}",
        confirm.body
    );
    let before = count(&pool, "SELECT count(*) FROM sspm.audit_log").await;
    let p = send(
        &mut b,
        &format!("/instances/{id}/remove"),
        &csrf,
        vec![("confirm", "acm".into())],
    )
    .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("name exactly (acme) to confirm"),
        "{}",
        p.body
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 1);
    let p = send(
        &mut b,
        &format!("/instances/{id}/remove"),
        &csrf,
        vec![("confirm", "acme".into())],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), "/?done=removed");
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.scans").await, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.audit_log").await,
        before + 1
    );
    assert!(b.get("/?done=removed").await.body.contains("was removed"));

    for body in &bodies {
        for t in [
            acme_token.as_str(),
            acme_new,
            &sim::token_of("initech"),
            &sim::token_of("globex"),
        ] {
            assert!(!body.contains(t), "a token in a response body");
        }
    }
    let tables = db::all_table_text(&pool).await;
    assert!(!tables.contains(acme_new) && !tables.contains(&acme_token));
}
