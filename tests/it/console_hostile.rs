//! scenarios/hostile.json scanned for real (simulator, CLI), then rendered by the console:
//! every payload shows up as inert, escaped text.

use sqlx::PgPool;

use crate::console_routes::{local_settings, start, Browser};
use crate::support::cli::{run_cli, text};

const TOKEN: &str = "sim_hostile_us_4b7e1d0c9a";

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn the_hostile_scenario_renders_as_escaped_text(pool: PgPool) {
    let scenario: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios/hostile.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let sim = crate::support::sim::start_json(scenario).await;
    let key = crate::support::TestKey::generate().b64;
    let mut env = crate::support::sim::sim_env(Some(&sim));
    env.push((
        "DATABASE_URL".into(),
        crate::support::db::database_url(&pool),
    ));
    env.push(("SSPM__SECURITY__TOKEN_KEY".into(), key));
    let add = [
        "instance",
        "add",
        "--name",
        "hostile",
        "--region",
        "us",
        "--token-stdin",
    ];
    let out = run_cli(&add, &env, Some(TOKEN)).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = run_cli(&["scan", "hostile"], &env, None).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let hash = intercom_sspm::console::users::hash_password(&secrecy::SecretString::from(
        "a long enough password".to_string(),
    ))
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    intercom_sspm::console::users::add(
        &mut conn,
        "vera",
        intercom_sspm::console::role::Role::Viewer,
        &hash,
    )
    .await
    .unwrap();
    let console = start(&pool, local_settings()).await;
    let mut b = Browser::new(&console.base);
    b.login("vera", "a long enough password").await;
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM sspm.instances")
        .fetch_one(&pool)
        .await
        .unwrap();
    let finding_ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM sspm.findings")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        !finding_ids.is_empty(),
        "the hostile workspace has findings"
    );
    let mut pages = vec![
        "/".to_string(),
        format!("/instances/{id}"),
        "/findings?status=any".into(),
        "/audit".into(),
    ];
    pages.extend(finding_ids.iter().map(|f| format!("/findings/{f}")));
    for path in pages {
        let p = b.get(&path).await;
        assert_eq!(p.status, reqwest::StatusCode::OK, "{path}");
        let lower = crate::support::without_own_script(&p.body).to_lowercase();
        // Escaping turns `<` into `&#60;`, so no payload can open a tag; the words
        // themselves (onerror=...) may remain as inert text.
        for raw in ["<script", "<img", "<svg onload", "<iframe", "<b>agent"] {
            assert!(!lower.contains(raw), "{path}: raw {raw:?}");
        }
    }
    let instance = b.get(&format!("/instances/{id}")).await.body;
    assert!(
        instance.contains("&#60;script&#62;alert(&#39;name&#39;)"),
        "names are shown, escaped"
    );
    assert!(
        instance.contains("\u{202e}"),
        "RTL overrides are kept as text inside their cell"
    );
    assert!(
        instance.contains("&#60;/td&#62;&#60;/tr&#62;"),
        "markup in job titles stays text"
    );
}
