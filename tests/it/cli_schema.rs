//! Only `migrate` and `run` change the schema: other commands check it and say what to
//! do, and the consumer docs' read-only role (`sspm_reader`) can use the read commands.

use sqlx::PgPool;

use crate::support::cli::{run_cli, text};
use crate::support::db::{self, count};
use crate::support::sim;

fn env_for(url: String) -> Vec<(String, String)> {
    let mut env = sim::sim_env(None);
    env.push(("DATABASE_URL".into(), url));
    env
}

#[sqlx::test(migrations = false)]
async fn read_commands_on_a_fresh_database_ask_for_migrate_and_create_nothing(pool: PgPool) {
    let env = env_for(db::database_url(&pool));
    for args in [
        &["instance", "list"][..],
        &["findings", "--format", "csv"],
        &["instance", "show", "acme"],
        &["exception", "list"],
    ] {
        let out = run_cli(args, &env, None).await;
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains("run `intercom-sspm migrate`"),
            "{args:?}: {stderr}"
        );
    }
    let schemas = count(
        &pool,
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'sspm'",
    )
    .await;
    assert_eq!(schemas, 0, "no read command created the schema");
    let history = count(
        &pool,
        "SELECT count(*) FROM pg_tables WHERE tablename = '_sqlx_migrations'",
    )
    .await;
    assert_eq!(history, 0);

    let out = run_cli(&["migrate"], &env, None).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = run_cli(&["instance", "list"], &env, None).await;
    assert!(out.status.success(), "{:?}", text(&out));
}

#[sqlx::test(migrations = false)]
async fn a_partly_migrated_database_is_reported_as_out_of_date(pool: PgPool) {
    // Apply only the first migration, as an older build would have.
    let first = intercom_sspm::db::MIGRATOR.iter().next().unwrap();
    let mut partial = sqlx::migrate::Migrator::new(std::path::Path::new("migrations"))
        .await
        .unwrap();
    partial.migrations = std::borrow::Cow::Owned(vec![first.clone()]);
    partial.run(&pool).await.unwrap();
    let env = env_for(db::database_url(&pool));
    let out = run_cli(&["instance", "list"], &env, None).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("out of date") && stderr.contains("run `intercom-sspm migrate`"),
        "{stderr}"
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn the_reader_role_can_list_findings_and_instances(pool: PgPool) {
    sqlx::query(
        "INSERT INTO sspm.instances (name, region, token_ref, workspace_id) \
         VALUES ('acme', 'us', 'env:ACME_TOKEN', 'ws-acme')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let db = pool.connect_options().get_database().unwrap().to_string();
    let login = format!(
        "reader_{}",
        db.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    sqlx::query(&format!("DROP ROLE IF EXISTS \"{login}\""))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE ROLE \"{login}\" LOGIN"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!("GRANT sspm_reader TO \"{login}\""))
        .execute(&pool)
        .await
        .unwrap();
    let mut url = url::Url::parse(&db::database_url(&pool)).unwrap();
    url.set_username(&login).unwrap();
    url.set_password(None).unwrap();
    let env = env_for(url.to_string());

    let run = |args: &'static [&'static str]| {
        let env = env.clone();
        async move {
            let out = run_cli(args, &env, None).await;
            let (stdout, stderr) = text(&out);
            assert!(out.status.success(), "{args:?}: {stderr}");
            assert!(!stderr.contains("permission denied"), "{args:?}: {stderr}");
            stdout
        }
    };
    let csv = run(&["findings", "--format", "csv"]).await;
    assert!(csv.starts_with("id,instance,region"), "{csv}");
    let list = run(&["instance", "list", "--format", "json"]).await;
    assert!(list.contains("\"acme\""), "{list}");
    let show = run(&["instance", "show", "acme"]).await;
    assert!(show.contains("ws-acme"), "{show}");
    assert!(
        !show.contains("ACME_TOKEN"),
        "the reader never sees where the token lives: {show}"
    );
    run(&["checks"]).await;

    // And the operator still sees the reference.
    let out = run_cli(
        &["instance", "show", "acme"],
        &env_for(db::database_url(&pool)),
        None,
    )
    .await;
    assert!(text(&out).0.contains("env:ACME_TOKEN"), "{:?}", text(&out));

    let _ = sqlx::query(&format!("DROP OWNED BY \"{login}\""))
        .execute(&pool)
        .await;
    let _ = sqlx::query(&format!("DROP ROLE \"{login}\""))
        .execute(&pool)
        .await;
}
