//! The wizard's "Check token" over real HTTP: `GET /me` through Connect's code, the
//! allowed domains prefilled with the owner's registrable domain, the token never sent
//! back, nothing stored; a wrong region's retry checks again instead of connecting.

use intercom_sspm::console::role::Role;
use intercom_sspm::console::state::ConsoleState;
use reqwest::StatusCode;
use sqlx::PgPool;

use crate::console_routes::{add_user, local_settings, start_state, Browser, PASSWORD};
use crate::support::{count, db, settings, sim, World};

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn check_token_prefills_the_owners_domain_and_stores_nothing(pool: PgPool) {
    let token = sim::token_of("globex");
    let w = World::builder(&pool)
        .workspace(sim::named_workspace("globex", "eu"))
        .build()
        .await;
    let mut s = settings(Some(&w.sim), &[("SSPM__SECURITY__TOKEN_KEY", &w.key.b64)]);
    s.console = local_settings();
    let c = start_state(ConsoleState::from_settings(pool.clone(), &s).unwrap()).await;
    add_user(&pool, "ada", Role::Admin).await;
    let mut b = Browser::new(&c.base);
    assert_eq!(b.login("ada", PASSWORD).await.status, StatusCode::SEE_OTHER);
    let guide = b.get("/instances/new").await;
    assert!(
        guide.body.contains("value=\"check\""),
        "a Check token button"
    );
    let csrf = guide.csrf();
    let before = db::all_table_text(&pool).await;
    let form = |region: &'static str, domains: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "globex-prod".to_string()),
            ("region", region.to_string()),
            ("token", token.clone()),
            ("token_ref", String::new()),
            ("allowed_domains", domains.to_string()),
            ("schedule", "12h".to_string()),
            ("timezone", String::new()),
            ("step", "check".to_string()),
        ]
    };

    // The wrong region: named, and its one-click retry checks again (step kept).
    let f = form("us", "");
    let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = b.post("/instances/new", &refs).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("accepted by region eu")
            && p.body.contains("Use EU instead and check again"),
        "{}",
        p.body
    );
    assert!(p.body.contains("name=\"step\" value=\"check\""));
    assert!(!p.body.contains(&token));

    // The right region: workspace named, domains filled with the owner's, token not back.
    let f = form("eu", "");
    let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = b.post("/instances/new", &refs).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("Token checked"), "{}", p.body);
    assert!(p.body.contains("globex Inc (globex)"), "the workspace");
    assert!(
        p.body
            .contains("name=\"allowed_domains\" value=\"globex.example\""),
        "prefilled with the owner's registrable domain: {}",
        p.body
    );
    assert!(p.body.contains("Paste the token again to connect"));
    assert!(
        p.body.contains("name=\"name\" value=\"globex-prod\""),
        "form kept"
    );
    assert!(
        p.body.contains("name=\"schedule\" value=\"12h\""),
        "form kept"
    );
    assert!(!p.body.contains(&token), "the token is not sent back");

    // Domains already typed are kept, the owner's domain only mentioned.
    let f = form("eu", "globex.com");
    let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = b.post("/instances/new", &refs).await;
    assert!(p
        .body
        .contains("name=\"allowed_domains\" value=\"globex.com\""));
    assert!(p.body.contains("domain is globex.example"));

    // A rejected token is named at its field, like Connect does.
    let mut f = form("eu", "");
    f[3].1 = "tok_not_a_real_token_123".into();
    let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = b.post("/instances/new", &refs).await;
    assert!(p.body.contains("id=\"e-token\"") && p.body.contains("rejected"));

    // Checking stored nothing: no instance, no audit row, no token anywhere.
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.audit_log").await, 0);
    let after = db::all_table_text(&pool).await;
    assert!(!after.contains(&token));
    assert!(!before.contains(&token));
}
