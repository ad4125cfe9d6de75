//! The admin pages for notification channels and console users, over real HTTP against
//! real Postgres: operators and viewers get 403 and change nothing, no POST passes
//! without its CSRF token, bad input names the field and keeps what was typed (never a
//! secret), "send test" reaches a local receiver through `channel test`'s code, each action
//! leaves exactly one audit row, and the channel secrets and passwords are in no response
//! body (other than the one page showing a new one once), audit row or log line. The CLI
//! equivalents leave one audit row each too.

use std::time::Duration;

use intercom_sspm::console::role::Role;
use intercom_sspm::console::state::ConsoleState;
use reqwest::StatusCode;
use sqlx::PgPool;

use crate::console_routes::{
    add_user, local_settings, proxy_settings, start, start_state, Browser, Console, Page, PASSWORD,
};
use crate::support::alerts::Receiver;
use crate::support::cli::{run_cli, text};
use crate::support::daemon::READY;
use crate::support::{count, db, settings, World};

/// In the webhook URL's query: a secret like a Slack or SIEM token.
const URL_SECRET: &str = "urltok-5ecret-9f3a";
const PD_KEY: &str = "pdkey-R0UT1NG-77c1";

async fn audit_rows(pool: &PgPool) -> Vec<(String, String, String, String)> {
    sqlx::query_as("SELECT action, target, actor, via FROM sspm.audit_log ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn audit_count(pool: &PgPool) -> i64 {
    count(pool, "SELECT count(*) FROM sspm.audit_log").await
}

async fn audit_text(pool: &PgPool) -> String {
    sqlx::query_scalar::<_, String>("SELECT string_agg(audit_log::text, '\n') FROM sspm.audit_log")
        .fetch_one(pool)
        .await
        .unwrap_or_default()
}

async fn channel_id(pool: &PgPool, name: &str) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM sspm.notification_channels WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn user_id(pool: &PgPool, name: &str) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM sspm.console_users WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn console(w: &World) -> Console {
    let mut s = settings(Some(&w.sim), &[("SSPM__SECURITY__TOKEN_KEY", &w.key.b64)]);
    s.console = local_settings();
    start_state(ConsoleState::from_settings(w.pool.clone(), &s).unwrap()).await
}

async fn signed_in(base: &str, pool: &PgPool, name: &str, role: Role) -> Browser {
    add_user(pool, name, role).await;
    let mut b = Browser::new(base);
    let p = b.login(name, PASSWORD).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{name} signs in");
    b
}

fn webhook_form<'a>(csrf: &'a str, name: &'a str, url: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("kind", "webhook"),
        ("name", name),
        ("format", "ocsf"),
        ("url", url),
        ("url_ref", ""),
        ("min_severity", "high"),
        ("on_opened", "on"),
        ("on_reopened", "on"),
        ("on_health", "on"),
        ("checks", ""),
        ("exclude_checks", ""),
        ("instances", ""),
        ("digest", ""),
    ]
}

/// The value of the signing secret shown once on the page answering the change.
fn shown_secret(p: &Page) -> String {
    let marker = "<code id=\"signing-secret\">";
    let start = p.body.find(marker).expect("the signing secret is shown") + marker.len();
    let end = p.body[start..].find('<').unwrap();
    p.body[start..start + end].to_string()
}

fn shown_password(p: &Page) -> String {
    let marker = "<code id=\"generated-password\">";
    let start = p.body.find(marker).expect("the password is shown") + marker.len();
    let end = p.body[start..].find('<').unwrap();
    p.body[start..start + end].to_string()
}

/// The whole channel journey against a real daemon serving the console, whose log is
/// searched for the secrets at the end.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn channels_are_added_edited_tested_disabled_and_removed_with_secrets_write_only(
    pool: PgPool,
) {
    let w = World::builder(&pool).build().await;
    let recv = Receiver::start().await;
    add_user(&pool, "ada", Role::Admin).await;
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let mut d = w.daemon(
        "console-channels",
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
    assert_eq!(b.login("ada", PASSWORD).await.status, StatusCode::SEE_OTHER);
    let mut seen: Vec<Page> = Vec::new();

    let empty = b.get("/channels").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.body.contains("No channels yet"));
    let new = b.get("/channels/new?kind=webhook").await;
    assert!(new.body.contains("name=\"format\""), "the webhook fields");
    let csrf = new.csrf();
    let url = recv.url(&format!("/hook?token={URL_SECRET}"));

    // Bad input: every wrong field named, the typed fields kept, the typed URL not.
    let bad_url = format!("ftp://x/?token={URL_SECRET}");
    let mut bad = webhook_form(&csrf, "bad name", &bad_url);
    bad[6] = ("min_severity", "urgent");
    bad[10] = ("checks", "no_such_check");
    bad[13] = ("digest", "6h");
    let p = b.post("/channels/new", &bad).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    for id in ["e-name", "e-url", "e-sev", "e-checks", "e-digest"] {
        assert!(
            p.body.contains(&format!("id=\"{id}\"")),
            "{id} named: {}",
            p.body
        );
    }
    assert!(p.body.contains("value=\"bad name\""), "the name is kept");
    assert!(
        p.body.contains("value=\"no_such_check\""),
        "the checks are kept"
    );
    assert!(
        p.body.contains("is not shown again"),
        "says the URL must be re-entered"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.notification_channels").await,
        0
    );
    assert_eq!(audit_count(&pool).await, 0);
    seen.push(p);

    // Added: the signing secret shown once, on the answer to the POST only.
    let added = b
        .post("/channels/new", &webhook_form(&csrf, "siem", &url))
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    let signing = shown_secret(&added);
    assert!(signing.starts_with("whsec_"), "{signing}");
    assert!(!added.body.contains(URL_SECRET));
    let id = channel_id(&pool, "siem").await;
    let (format, sealed): (Option<String>, bool) = sqlx::query_as(
        "SELECT format, secret_ciphertext IS NOT NULL AND url_ref IS NULL FROM sspm.notification_channels WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(format.as_deref(), Some("ocsf"));
    assert!(sealed, "the URL is sealed");
    // A second one with the same name: named, not stored.
    let dup = b
        .post("/channels/new", &webhook_form(&csrf, "SIEM", &url))
        .await;
    assert_eq!(dup.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(dup.body.contains("id=\"e-name\"") && dup.body.contains("already exists"));
    seen.push(dup);

    // The list: kind, state, rules, where the URL lives; never the URL.
    let list = b.get("/channels").await;
    for want in [
        "siem",
        "webhook (ocsf)",
        "enabled",
        "<code>sealed</code>",
        "high and above",
        "no message yet",
    ] {
        assert!(
            list.body.contains(want),
            "{want} in the list: {}",
            list.body
        );
    }
    seen.push(list);

    // Edit: empty secret fields keep the stored URL and signing secret.
    let edit = b.get(&format!("/channels/{id}")).await;
    assert_eq!(edit.status, StatusCode::OK);
    assert!(edit.body.contains("name=\"url\" type=\"password\""));
    let mut change = webhook_form(&csrf, "", "");
    change[6] = ("min_severity", "medium");
    change.push(("on_resolved", "on"));
    seen.push(edit);
    let saved = b.post(&format!("/channels/{id}"), &change).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(saved.location(), "/channels?done=saved");
    let (sev, events): (String, Vec<String>) =
        sqlx::query_as("SELECT min_severity, events FROM sspm.notification_channels WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(sev, "medium");
    assert_eq!(events, ["opened", "reopened", "resolved", "health"]);
    // A bad edit names the field and changes nothing.
    let mut bad_edit = change.clone();
    bad_edit[13] = ("digest", "every morning");
    let p = b.post(&format!("/channels/{id}"), &bad_edit).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("id=\"e-digest\"") && p.body.contains("value=\"every morning\""));
    seen.push(p);

    // Send test: delivered to the receiver with the kept URL and secret, said in words.
    let tested = b
        .post(&format!("/channels/{id}/test"), &[("csrf", &csrf)])
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.body);
    assert!(
        tested
            .body
            .contains("the receiver accepted the test message"),
        "{}",
        tested.body
    );
    let hits = recv.wait_hits("/hook", 1, Duration::from_secs(10)).await;
    assert!(hits[0].header("webhook-signature").starts_with("v1,"));
    let verified =
        crate::support::alerts::verify_with_standardwebhooks(&signing, &hits[0], &hits[0].body);
    assert_eq!(verified, "verified", "signed with the kept secret");
    seen.push(tested);
    // A refusing receiver: said so, with the code.
    recv.script(&[crate::support::alerts::Reply::Status(410)]);
    let refused = b
        .post(&format!("/channels/{id}/test"), &[("csrf", &csrf)])
        .await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY);
    assert!(
        refused.body.contains("not accepted") && refused.body.contains("410"),
        "{}",
        refused.body
    );
    seen.push(refused);

    // Rotate the signing secret: the new one shown once.
    let mut rotate = change.clone();
    rotate.push(("rotate_secret", "on"));
    let rotated = b.post(&format!("/channels/{id}"), &rotate).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let signing2 = shown_secret(&rotated);
    assert_ne!(signing, signing2);

    // Disable, then enable.
    let p = b
        .post(
            &format!("/channels/{id}/enabled"),
            &[("csrf", &csrf), ("enabled", "false")],
        )
        .await;
    assert_eq!(p.location(), "/channels?done=disabled");
    let list = b.get("/channels?done=disabled").await;
    assert!(list.body.contains("<strong>disabled</strong>"));
    seen.push(list);
    let p = b
        .post(
            &format!("/channels/{id}/enabled"),
            &[("csrf", &csrf), ("enabled", "true")],
        )
        .await;
    assert_eq!(p.location(), "/channels?done=enabled");

    // A PagerDuty channel: the routing key is required, sealed and never echoed.
    let pd_url = recv.url("");
    let mut pd_form = vec![
        ("csrf", csrf.as_str()),
        ("kind", "pagerduty"),
        ("name", "oncall"),
        ("url", pd_url.as_str()),
        ("routing_key", ""),
        ("min_severity", "critical"),
        ("on_opened", "on"),
    ];
    let p = b.post("/channels/new", &pd_form).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("id=\"e-key\""), "the routing key is named");
    pd_form[4] = ("routing_key", PD_KEY);
    let p = b.post("/channels/new", &pd_form).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let pd_id = channel_id(&pool, "oncall").await;
    let p = b.get(&format!("/channels/{pd_id}")).await;
    assert!(!p.body.contains(PD_KEY));
    seen.push(p);

    // Remove: the confirmation page first; a POST without its confirmation removes nothing.
    let confirm = b.get(&format!("/channels/{id}/remove")).await;
    assert!(confirm.body.contains("queued and past messages"));
    let p = b
        .post(&format!("/channels/{id}/remove"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.notification_channels").await,
        2
    );
    let p = b
        .post(
            &format!("/channels/{id}/remove"),
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(p.location(), "/channels?done=removed");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.notification_channels").await,
        1
    );
    seen.push(confirm);

    // Exactly one audit row per action, by ada through the console.
    let actions: Vec<String> = audit_rows(&pool)
        .await
        .into_iter()
        .map(|(action, target, actor, via)| {
            assert_eq!((actor.as_str(), via.as_str()), ("ada", "console"));
            format!("{action} {target}")
        })
        .collect();
    assert_eq!(
        actions,
        [
            "channel.add siem",
            "channel.set siem",
            "channel.test siem",
            "channel.test siem",
            "channel.set siem",
            "channel.disable siem",
            "channel.enable siem",
            "channel.add oncall",
            "channel.remove siem",
        ]
    );

    // No secret in any page (but the two that showed a signing secret once), header,
    // audit row, table or log line.
    let secrets = [URL_SECRET, PD_KEY, signing.as_str(), signing2.as_str()];
    for p in &seen {
        for s in secrets {
            assert!(
                !p.body.contains(s),
                "a secret in a response body: {}",
                p.body
            );
            for (_, v) in p.headers.iter() {
                assert!(
                    !v.to_str().unwrap_or("").contains(s),
                    "a secret in a header"
                );
            }
        }
    }
    let audit = audit_text(&pool).await;
    let tables = db::all_table_text(&pool).await;
    let logs = d.logs();
    for s in secrets {
        assert!(!audit.contains(s), "a secret in the audit log");
        assert!(!tables.contains(s), "a secret in a table");
        assert!(!logs.contains(s), "a secret in the daemon's log");
    }
}

/// Operators and viewers get 403 on every admin page and action, with a valid CSRF
/// token, and nothing changes; no admin POST passes without this browser's CSRF token.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn operators_and_viewers_get_403_and_no_form_passes_without_csrf(pool: PgPool) {
    let w = World::builder(&pool).build().await;
    let c = console(&w).await;
    let out = run_cli(
        &[
            "channel",
            "add",
            "--name",
            "secops",
            "--kind",
            "slack",
            "--url-ref",
            "env:SLACK_URL",
        ],
        &w.cli_env(),
        None,
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let ch = channel_id(&pool, "secops").await;
    add_user(&pool, "bob", Role::Viewer).await;
    let bob = user_id(&pool, "bob").await;
    let before_audit = audit_count(&pool).await;
    // Every row the admin actions could touch: the channels, and bob's account.
    let snapshot = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT coalesce((SELECT string_agg(c::text, '|') FROM sspm.notification_channels c), '')
                 || coalesce((SELECT string_agg(u::text, '|') FROM sspm.console_users u WHERE name IN ('bob', 'eve', 'x')), '')",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let gets = [
        "/channels".to_string(),
        "/channels/new".into(),
        format!("/channels/{ch}"),
        format!("/channels/{ch}/remove"),
        "/users".into(),
        format!("/users/{bob}/remove"),
    ];
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/channels/new".into(),
            vec![
                ("kind", "slack"),
                ("name", "x"),
                ("url_ref", "env:X"),
                ("min_severity", "high"),
                ("on_opened", "on"),
            ],
        ),
        (
            format!("/channels/{ch}"),
            vec![("min_severity", "info"), ("on_opened", "on")],
        ),
        (format!("/channels/{ch}/test"), vec![]),
        (
            format!("/channels/{ch}/enabled"),
            vec![("enabled", "false")],
        ),
        (format!("/channels/{ch}/remove"), vec![("confirm", "yes")]),
        (
            "/users".into(),
            vec![("name", "eve"), ("role", "admin"), ("generate", "on")],
        ),
        (format!("/users/{bob}/role"), vec![("role", "admin")]),
        (format!("/users/{bob}/enabled"), vec![("enabled", "false")]),
        (format!("/users/{bob}/password"), vec![("generate", "on")]),
        (format!("/users/{bob}/remove"), vec![("confirm", "yes")]),
    ];
    let tables_before = snapshot().await;
    for (name, role) in [("oscar", Role::Operator), ("vera", Role::Viewer)] {
        let mut b = signed_in(&c.base, &pool, name, role).await;
        let csrf = b.get("/").await.csrf();
        for path in &gets {
            assert_eq!(
                b.get(path).await.status,
                StatusCode::FORBIDDEN,
                "{name} GET {path}"
            );
        }
        for (path, fields) in &posts {
            let mut form = vec![("csrf", csrf.as_str())];
            form.extend(fields.iter().copied());
            let p = b.post(path, &form).await;
            assert_eq!(p.status, StatusCode::FORBIDDEN, "{name} POST {path}");
            assert!(p.body.contains("needs the admin role"));
        }
    }
    // The admin without (or with a forged) CSRF token: refused before the handler.
    let mut ada = signed_in(&c.base, &pool, "ada", Role::Admin).await;
    for (path, fields) in &posts {
        for csrf in [None, Some("forged")] {
            let mut form: Vec<(&str, &str)> = fields.clone();
            if let Some(t) = csrf {
                form.push(("csrf", t));
            }
            let p = ada.post(path, &form).await;
            assert_eq!(
                p.status,
                StatusCode::FORBIDDEN,
                "POST {path} with csrf {csrf:?}"
            );
            assert!(p.body.contains("security token"));
        }
    }
    let tables_after = snapshot().await;
    assert_eq!(tables_before, tables_after, "nothing changed");
    assert_eq!(audit_count(&pool).await, before_audit);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.notification_channels WHERE enabled"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.console_users WHERE name = 'eve'"
        )
        .await,
        0
    );
}

/// Users: add (typed or generated, shown once), change role, disable (their sessions
/// end) and enable, reset the password, remove after confirming; an admin cannot demote,
/// disable or remove themselves; one audit row per action, never with a password.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn admins_manage_users_but_not_themselves_and_passwords_stay_out_of_pages_and_rows(
    pool: PgPool,
) {
    let c = start(&pool, local_settings()).await;
    let mut ada = signed_in(&c.base, &pool, "ada", Role::Admin).await;
    let page = ada.get("/users").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    let typed_pw = "bobs password is long";

    // Bad input: the field named, the name and role kept, the password not.
    let p = ada
        .post(
            "/users",
            &[
                ("csrf", &csrf),
                ("name", "bob"),
                ("role", "operator"),
                ("password", "short pw"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("id=\"e-password\"") && p.body.contains("at least 12"));
    assert!(p.body.contains("value=\"bob\"") && p.body.contains("value=\"operator\" selected"));
    assert!(!p.body.contains("short pw"));
    let p = ada
        .post(
            "/users",
            &[
                ("csrf", &csrf),
                ("name", "b b"),
                ("role", "root"),
                ("password", typed_pw),
            ],
        )
        .await;
    assert!(p.body.contains("id=\"e-name\"") && p.body.contains("id=\"e-role\""));
    assert!(!p.body.contains(typed_pw));
    assert_eq!(audit_count(&pool).await, 0);

    // Add with a typed password: bob signs in with it.
    let p = ada
        .post(
            "/users",
            &[
                ("csrf", &csrf),
                ("name", "bob"),
                ("role", "operator"),
                ("password", typed_pw),
            ],
        )
        .await;
    assert_eq!(p.location(), "/users?done=added");
    let mut bob = Browser::new(&c.base);
    assert_eq!(
        bob.login("bob", typed_pw).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(bob.get("/").await.status, StatusCode::OK);
    let dup = ada
        .post(
            "/users",
            &[
                ("csrf", &csrf),
                ("name", "BOB"),
                ("role", "viewer"),
                ("password", typed_pw),
            ],
        )
        .await;
    assert!(dup.body.contains("id=\"e-name\"") && dup.body.contains("already exists"));

    // Add with a generated password, shown once: carol signs in with it.
    let p = ada
        .post(
            "/users",
            &[
                ("csrf", &csrf),
                ("name", "carol"),
                ("role", "viewer"),
                ("password", ""),
                ("generate", "on"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    let carol_pw = shown_password(&p);
    assert!(carol_pw.len() >= 20);
    let mut carol = Browser::new(&c.base);
    assert_eq!(
        carol.login("carol", &carol_pw).await.status,
        StatusCode::SEE_OTHER
    );

    let bob_id = user_id(&pool, "bob").await;
    let ada_id = user_id(&pool, "ada").await;
    // Role: bob becomes a viewer, from his next request.
    let p = ada
        .post(
            &format!("/users/{bob_id}/role"),
            &[("csrf", &csrf), ("role", "viewer")],
        )
        .await;
    assert_eq!(p.location(), "/users?done=role");
    let bcsrf = bob.get("/").await.csrf();
    assert_eq!(
        bob.post(
            &format!("/instances/{}/scan", uuid::Uuid::new_v4()),
            &[("csrf", &bcsrf)]
        )
        .await
        .status,
        StatusCode::FORBIDDEN,
        "bob is a viewer now"
    );

    // Disable ends bob's session at once; enable lets him sign in again.
    let p = ada
        .post(
            &format!("/users/{bob_id}/enabled"),
            &[("csrf", &csrf), ("enabled", "false")],
        )
        .await;
    assert_eq!(p.location(), "/users?done=disabled");
    assert_eq!(
        bob.get("/").await.status,
        StatusCode::SEE_OTHER,
        "signed out"
    );
    assert_eq!(
        bob.login("bob", typed_pw).await.status,
        StatusCode::UNAUTHORIZED,
        "refused while disabled"
    );
    let p = ada
        .post(
            &format!("/users/{bob_id}/enabled"),
            &[("csrf", &csrf), ("enabled", "true")],
        )
        .await;
    assert_eq!(p.location(), "/users?done=enabled");

    // Reset: a typed one too short is named; a generated one is shown once and works,
    // the old one no longer does.
    let p = ada
        .post(
            &format!("/users/{bob_id}/password"),
            &[("csrf", &csrf), ("password", "tiny")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("at least 12") && !p.body.contains("tiny\""));
    let p = ada
        .post(
            &format!("/users/{bob_id}/password"),
            &[("csrf", &csrf), ("password", ""), ("generate", "on")],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    let bob_pw = shown_password(&p);
    let mut bob = Browser::new(&c.base);
    assert_eq!(
        bob.login("bob", typed_pw).await.status,
        StatusCode::UNAUTHORIZED,
        "old password refused"
    );
    assert_eq!(
        bob.login("bob", &bob_pw).await.status,
        StatusCode::SEE_OTHER
    );

    // Not themselves: each refusal said on ada's row, nothing changed, no audit row.
    let before = audit_count(&pool).await;
    for (path, fields, word) in [
        (
            format!("/users/{ada_id}/role"),
            vec![("role", "viewer")],
            "demote",
        ),
        (
            format!("/users/{ada_id}/enabled"),
            vec![("enabled", "false")],
            "disable",
        ),
        (
            format!("/users/{ada_id}/remove"),
            vec![("confirm", "yes")],
            "remove",
        ),
    ] {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields);
        let p = ada.post(&path, &form).await;
        assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert!(
            p.body.contains(&format!("you cannot {word} yourself")),
            "{}",
            p.body
        );
    }
    assert_eq!(audit_count(&pool).await, before);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.console_users WHERE name = 'ada' AND role = 'admin' AND NOT disabled").await,
        1
    );

    // Remove: the confirmation page first, then gone with its sessions.
    let confirm = ada.get(&format!("/users/{bob_id}/remove")).await;
    assert!(confirm.body.contains("Remove user bob?"));
    let p = ada
        .post(&format!("/users/{bob_id}/remove"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        p.status,
        StatusCode::OK,
        "no confirmation: the confirmation page"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM sspm.console_users WHERE name = 'bob'"
        )
        .await,
        1
    );
    let p = ada
        .post(
            &format!("/users/{bob_id}/remove"),
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(p.location(), "/users?done=removed");
    assert_eq!(bob.get("/").await.status, StatusCode::SEE_OTHER);

    let actions: Vec<String> = audit_rows(&pool)
        .await
        .into_iter()
        .map(|(action, target, actor, via)| {
            assert_eq!((actor.as_str(), via.as_str()), ("ada", "console"));
            format!("{action} {target}")
        })
        .collect();
    assert_eq!(
        actions,
        [
            "user.add bob",
            "user.add carol",
            "user.set_role bob",
            "user.disable bob",
            "user.enable bob",
            "user.set_password bob",
            "user.remove bob",
        ]
    );
    let audit = audit_text(&pool).await;
    let tables = db::all_table_text(&pool).await;
    for pw in [typed_pw, carol_pw.as_str(), bob_pw.as_str()] {
        assert!(!audit.contains(pw), "a password in the audit log");
        assert!(!tables.contains(pw), "a password in a table");
    }
    let list = ada.get("/users").await;
    for pw in [typed_pw, carol_pw.as_str(), bob_pw.as_str()] {
        assert!(!list.body.contains(pw));
    }
}

/// Behind an SSO proxy the acting admin is not a local user: the last local admin still
/// cannot be demoted, disabled or removed.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn the_last_active_admin_cannot_be_demoted_disabled_or_removed(pool: PgPool) {
    add_user(&pool, "ada", Role::Admin).await;
    let ada = user_id(&pool, "ada").await;
    let c = start(&pool, proxy_settings("127.0.0.1/32")).await;
    let mut sso = Browser::new(&c.base)
        .with_header("X-Forwarded-Email", "sso-admin@example.com")
        .with_header("X-Forwarded-Role", "admin");
    let csrf = sso.get("/users").await.csrf();
    for (path, fields) in [
        (format!("/users/{ada}/role"), vec![("role", "operator")]),
        (format!("/users/{ada}/enabled"), vec![("enabled", "false")]),
        (format!("/users/{ada}/remove"), vec![("confirm", "yes")]),
    ] {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields);
        let p = sso.post(&path, &form).await;
        assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert!(
            p.body.contains("ada is the last active admin"),
            "{}",
            p.body
        );
    }
    assert_eq!(audit_count(&pool).await, 0);
    // With a second admin, ada can be demoted.
    add_user(&pool, "grace", Role::Admin).await;
    let p = sso
        .post(
            &format!("/users/{ada}/role"),
            &[("csrf", &csrf), ("role", "operator")],
        )
        .await;
    assert_eq!(p.location(), "/users?done=role");
    assert_eq!(
        audit_rows(&pool).await,
        [(
            "user.set_role".into(),
            "ada".into(),
            "sso-admin@example.com".into(),
            "console".into()
        )]
    );
}

/// The CLI's channel commands leave one audit row each (and never a secret in it).
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn cli_channel_commands_leave_one_audit_row_each(pool: PgPool) {
    let w = World::builder(&pool).build().await;
    let recv = Receiver::start().await;
    let url = recv.url(&format!("/hook?token={URL_SECRET}"));
    let mut env = w.cli_env();
    env.push(("USER".into(), "ops-alice".into()));
    let steps: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "channel", "add", "--name", "siem", "--kind", "webhook", "--url", &url,
            ],
            "channel.add",
        ),
        (
            vec![
                "channel",
                "set",
                "siem",
                "--min-severity",
                "low",
                "--rotate-secret",
            ],
            "channel.set",
        ),
        (vec!["channel", "test", "siem"], "channel.test"),
        (vec!["channel", "disable", "siem"], "channel.disable"),
        (vec!["channel", "enable", "siem"], "channel.enable"),
        (vec!["channel", "remove", "siem", "--yes"], "channel.remove"),
    ];
    let mut printed = String::new();
    for (args, action) in steps {
        let before = audit_count(&pool).await;
        let out = run_cli(&args, &env, None).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
        printed.push_str(&stdout);
        assert!(!stdout.contains(URL_SECRET) && !stderr.contains(URL_SECRET));
        assert_eq!(
            audit_count(&pool).await,
            before + 1,
            "{args:?}: one audit row"
        );
        let last: (String, String, String, String) = sqlx::query_as(
            "SELECT action, target, actor, via FROM sspm.audit_log ORDER BY id DESC LIMIT 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            last,
            (
                action.into(),
                "siem".into(),
                "ops-alice".into(),
                "cli".into()
            )
        );
    }
    assert_eq!(recv.hits_on("/hook").len(), 1, "the test message arrived");
    // A bad flag names itself; nothing stored, no row.
    let out = run_cli(
        &[
            "channel",
            "add",
            "--name",
            "m",
            "--kind",
            "email",
            "--smtp-url",
            "smtp://127.0.0.1:25?tls=none",
            "--from",
            "nobody",
        ],
        &env,
        None,
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--from:") && stderr.contains("--to:"),
        "{stderr}"
    );
    let audit = audit_text(&pool).await;
    assert!(!audit.contains(URL_SECRET) && !audit.contains("whsec_"));
    for secret in printed.lines().filter(|l| l.starts_with("whsec_")) {
        assert!(!audit.contains(secret));
    }
}
