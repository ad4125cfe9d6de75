//! Exceptions from the finding page over real HTTP: an operator mutes a finding (this
//! resource or the whole check) with the CLI's rules, each wrong field named and what was
//! typed kept; a duplicate is refused with its message; removal asks once more, then
//! reopens the finding; a viewer gets 403 and no form passes without its CSRF token;
//! each change leaves exactly one audit row by the signed-in user.

use intercom_sspm::console::role::Role;
use intercom_sspm::console::state::ConsoleState;
use reqwest::StatusCode;
use sqlx::PgPool;
use uuid::Uuid;

use crate::console_routes::{add_user, local_settings, start_state, Browser, Page, PASSWORD};
use crate::support::{count, settings, Onboard, World};

/// acme of scenarios/demo.json: teammates with personal addresses, among others.
const ACME_TOKEN: &str = "sim_acme_us_7f3c9a1e5b2d4f60";

fn demo_acme() -> serde_json::Value {
    let path = format!("{}/scenarios/demo.json", env!("CARGO_MANIFEST_DIR"));
    let demo: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    demo["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id_code"] == "acme0001")
        .expect("acme in demo.json")
        .clone()
}

async fn audit_rows(pool: &PgPool) -> Vec<(String, String, String, String)> {
    sqlx::query_as("SELECT action, target, actor, via FROM sspm.audit_log ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn status_of(pool: &PgPool, id: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM sspm.findings WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The error paragraph with `id` and what follows it.
fn error_at<'a>(p: &'a Page, id: &str) -> &'a str {
    let at = p
        .body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("{id} named: {}", p.body));
    &p.body[at..]
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn an_operator_mutes_a_finding_and_removes_the_exception_after_confirming(pool: PgPool) {
    let w = World::builder(&pool).workspace(demo_acme()).build().await;
    let acme = w
        .onboard(
            &Onboard::new("acme").workspace("acme0001").schedule("6h"),
            ACME_TOKEN,
        )
        .await;
    w.scanner(&[])
        .scan(&acme, intercom_sspm::db::scans::Trigger::Manual, None)
        .await
        .unwrap();
    // A check with two open findings or more, so a resource-scoped exception can be told
    // from a check-wide one.
    let check: String = sqlx::query_scalar(
        "SELECT check_id FROM sspm.findings WHERE status = 'open'
         GROUP BY check_id HAVING count(*) >= 2 ORDER BY check_id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .expect("a check with two open findings in demo acme");
    let findings: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, resource FROM sspm.findings WHERE check_id = $1 AND status = 'open' ORDER BY resource",
    )
    .bind(&check)
    .fetch_all(&pool)
    .await
    .unwrap();
    let (id, resource) = findings[0].clone();
    let mut s = settings(Some(&w.sim), &[("SSPM__SECURITY__TOKEN_KEY", &w.key.b64)]);
    s.console = local_settings();
    let c = start_state(ConsoleState::from_settings(pool.clone(), &s).unwrap()).await;
    add_user(&pool, "otto", Role::Operator).await;
    add_user(&pool, "vera", Role::Viewer).await;
    let mut otto = Browser::new(&c.base);
    assert_eq!(
        otto.login("otto", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let mut vera = Browser::new(&c.base);
    assert_eq!(
        vera.login("vera", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let path = format!("/findings/{id}");
    let action = format!("/findings/{id}/exception");

    // The form is there for an operator, not for a viewer, who is refused anyway.
    let page = otto.get(&path).await;
    assert!(
        page.body.contains(&format!("action=\"{action}\"")),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let vpage = vera.get(&path).await;
    assert!(!vpage.body.contains(&action), "no mute form for a viewer");
    let good = [
        ("reason", "contractor, approved by the CISO"),
        ("scope", "resource"),
        ("expires", "30d"),
    ];
    let vcsrf = vpage.csrf();
    let mut form = vec![("csrf", vcsrf.as_str())];
    form.extend(good);
    let p = vera.post(&action, &form).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("needs the operator role"), "{}", p.body);
    // No form passes without its token (or with a forged one).
    for token in [None, Some("forged")] {
        let mut form: Vec<(&str, &str)> = good.to_vec();
        if let Some(t) = token {
            form.push(("csrf", t));
        }
        assert_eq!(
            otto.post(&action, &form).await.status,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.exceptions").await,
        0
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 0);

    // Each wrong field is named, what was typed is kept, nothing is stored.
    let p = otto
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("reason", " "),
                ("scope", "resource"),
                ("expires", "30d"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_at(&p, "e-reason").contains("must say why"));
    let p = otto
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("reason", "kept text"),
                ("scope", "check"),
                ("expires", ""),
            ],
        )
        .await;
    assert!(error_at(&p, "e-expires").contains("required"), "{}", p.body);
    assert!(p.body.contains("value=\"kept text\""), "the reason is kept");
    assert!(
        p.body.contains("value=\"check\" checked"),
        "the scope is kept"
    );
    for (expires, says) in [
        ("soon", "a duration from now"),
        ("2001-01-01", "in the past"),
    ] {
        let p = otto
            .post(
                &action,
                &[
                    ("csrf", &csrf),
                    ("reason", "r"),
                    ("scope", "resource"),
                    ("expires", expires),
                ],
            )
            .await;
        let e = error_at(&p, "e-expires");
        assert!(
            e.contains(says) && !e[..200.min(e.len())].contains("--"),
            "{expires}: {e}"
        );
        assert!(p.body.contains(&format!("value=\"{expires}\"")));
    }
    let p = otto
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("reason", "r"),
                ("scope", "resource"),
                ("expires", "30d"),
                ("permanent", "true"),
            ],
        )
        .await;
    assert!(error_at(&p, "e-expires").contains("not both"));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.exceptions").await,
        0
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 0);

    // Muted: this resource only, by otto, one audit row.
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend(good);
    let p = otto.post(&action, &form).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location(), format!("{path}?done=muted"));
    assert_eq!(status_of(&pool, id).await, "muted");
    assert_eq!(
        status_of(&pool, findings[1].0).await,
        "open",
        "only this resource"
    );
    let (exc, author, stored_resource, expires_days): (Uuid, String, Option<String>, f64) =
        sqlx::query_as(
            "SELECT id, author, resource, extract(epoch FROM expires_at - now())::float8 / 86400 FROM sspm.exceptions",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(author, "otto");
    assert_eq!(stored_resource.as_deref(), Some(resource.as_str()));
    assert!((29.9..30.1).contains(&expires_days), "{expires_days}");
    let one = |action: &str| {
        (
            action.to_string(),
            "acme".to_string(),
            "otto".to_string(),
            "console".to_string(),
        )
    };
    assert_eq!(audit_rows(&pool).await, [one("exception.add")]);
    let page = otto.get(p.location()).await;
    assert!(page.body.contains("Exception added"), "the notice");
    assert!(page.body.contains("Muted by an exception"));
    assert!(page
        .body
        .contains("contractor, approved by the CISO — by otto"));
    assert!(page.body.contains(", until "), "the expiry is shown");
    assert!(page
        .body
        .contains(&format!("action=\"/exceptions/{exc}/remove\"")));
    assert!(!page.body.contains(&action), "no second mute form");

    // The same again: refused with the rule's message, nothing more stored.
    let p = otto.post(&action, &form).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("already covers"), "{}", p.body);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.exceptions").await,
        1
    );
    assert_eq!(audit_rows(&pool).await.len(), 1);

    // Removal: a viewer is refused; the first post only asks; the confirmed one reopens.
    let remove = format!("/exceptions/{exc}/remove");
    let id_text = id.to_string();
    let p = vera
        .post(&remove, &[("csrf", &vcsrf), ("confirm", "yes")])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(
        otto.post(&remove, &[("confirm", "yes"), ("back", &id_text)])
            .await
            .status,
        StatusCode::FORBIDDEN,
        "no CSRF token"
    );
    let ask = otto
        .post(&remove, &[("csrf", &csrf), ("back", &id_text)])
        .await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.body.contains("Remove the exception?"), "{}", ask.body);
    assert!(ask.body.contains("1 muted finding(s) open again"));
    assert!(ask.body.contains("name=\"confirm\" value=\"yes\""));
    assert!(
        ask.body.contains(&format!("href=\"{path}\"")),
        "cancel goes back"
    );
    assert_eq!(
        status_of(&pool, id).await,
        "muted",
        "asking changes nothing"
    );
    assert_eq!(audit_rows(&pool).await.len(), 1);
    let p = otto
        .post(
            &remove,
            &[("csrf", &csrf), ("confirm", "yes"), ("back", &id_text)],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location(), format!("{path}?done=unmuted"));
    assert_eq!(status_of(&pool, id).await, "open");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.exceptions").await,
        0
    );
    assert_eq!(
        audit_rows(&pool).await,
        [one("exception.add"), one("exception.remove")]
    );
    let page = otto.get(p.location()).await;
    assert!(page.body.contains("Exception removed") && page.body.contains(&action));
    // Removing it twice: nothing there, nothing recorded.
    let p = otto
        .post(&remove, &[("csrf", &csrf), ("confirm", "yes")])
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert_eq!(audit_rows(&pool).await.len(), 2);

    // Every resource of the check, permanently: all its open findings mute.
    let p = otto
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("reason", "personal addresses accepted"),
                ("scope", "check"),
                ("expires", ""),
                ("permanent", "true"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let (resource, expires): (Option<String>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT resource, expires_at FROM sspm.exceptions")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((resource, expires), (None, None));
    for (f, _) in &findings {
        assert_eq!(status_of(&pool, *f).await, "muted");
    }
    let page = otto.get(&path).await;
    assert!(page.body.contains("no expiry"));
    assert_eq!(audit_rows(&pool).await.len(), 3);

    // The list: everyone sees it, only an operator gets the removal, which comes back
    // to the list.
    let (exc,): (Uuid,) = sqlx::query_as("SELECT id FROM sspm.exceptions")
        .fetch_one(&pool)
        .await
        .unwrap();
    let remove = format!("action=\"/exceptions/{exc}/remove\"");
    let listed = vera.get("/exceptions").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert!(listed.body.contains("personal addresses accepted"));
    assert!(listed.body.contains("(every resource)") && listed.body.contains("never"));
    assert!(!listed.body.contains(&remove), "no removal for a viewer");
    let listed = otto.get("/exceptions").await;
    assert!(listed.body.contains(&remove));
    let ask = otto
        .post(&format!("/exceptions/{exc}/remove"), &[("csrf", &csrf)])
        .await;
    assert!(
        ask.body.contains("href=\"/exceptions\""),
        "cancel goes back to the list"
    );
    let p = otto
        .post(
            &format!("/exceptions/{exc}/remove"),
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(p.location(), "/exceptions?done=unmuted");
    let listed = otto.get(p.location()).await;
    assert!(listed.body.contains("Exception removed") && listed.body.contains("No exceptions."));
    assert_eq!(audit_rows(&pool).await.len(), 4);
}
