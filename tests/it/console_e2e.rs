//! The console in a real headless Chromium (one browser session for the whole journey):
//! sign in, fleet, instance, findings filter and export downloads, finding detail,
//! compliance, checks and audit pages; the hostile scenario's payloads show as text and
//! never run. Every page gets a screenshot (target/e2e-screenshots/) and an axe-core pass
//! with no serious or critical violation.
//!
//! Data: scenarios/demo.json and scenarios/hostile.json served by the simulator,
//! onboarded and scanned through the real CLI. Needs chromium, chromedriver and axe-core:
//! `scripts/install-e2e`.

use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::console_routes::{local_settings, start};
use crate::support::browser::{axe_source, Chromium};
use crate::support::cli::{run_cli, text};

const PASSWORD: &str = "a long enough password";

fn scenario(file: &str) -> Value {
    let path = format!("{}/scenarios/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// acme and globex (demo.json) plus hostile (hostile.json), onboarded and scanned by the CLI.
async fn onboard_and_scan(pool: &PgPool) -> intercom_sim::Simulator {
    let mut workspaces = scenario("demo.json")["workspaces"]
        .as_array()
        .unwrap()
        .clone();
    workspaces.extend(
        scenario("hostile.json")["workspaces"]
            .as_array()
            .unwrap()
            .clone(),
    );
    let sim = crate::support::sim::start_json(json!({ "workspaces": workspaces })).await;
    let key = crate::support::TestKey::generate();
    let env = crate::support::cli::env(pool, Some(&sim), &key.b64);
    for (name, region, token, extra) in [
        (
            "acme",
            "us",
            "sim_acme_us_7f3c9a1e5b2d4f60",
            &["--allowed-domains", "acme.example"][..],
        ),
        ("globex", "eu", "sim_globex_eu_2b8e61d04a9c7f35", &[][..]),
        ("hostile", "us", "sim_hostile_us_4b7e1d0c9a", &[][..]),
    ] {
        let mut args = vec![
            "instance",
            "add",
            "--name",
            name,
            "--region",
            region,
            "--token-stdin",
        ];
        args.extend(extra);
        let out = run_cli(&args, &env, Some(token)).await;
        assert!(out.status.success(), "add {name}: {:?}", text(&out));
        let out = run_cli(&["scan", name], &env, None).await;
        assert!(out.status.success(), "scan {name}: {:?}", text(&out));
    }
    sim
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect(script)
}

async fn h1(c: &Client) -> String {
    c.find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Loads `path` (or stays, when None), waits for its h1, screenshots it, runs axe, and
/// checks that no dialog is open and that the page carries no script of its own.
async fn visit(b: &Chromium, axe: &str, base: &str, path: Option<&str>, shot: &str) -> String {
    if let Some(path) = path {
        b.client.goto(&format!("{base}{path}")).await.unwrap();
    }
    b.client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("main h1"))
        .await
        .unwrap_or_else(|e| panic!("{shot}: no h1: {e}"));
    assert_no_dialog(&b.client, shot).await;
    let scripts = js(
        &b.client,
        // The one script the console serves is its own same-origin scan-status poller
        // (instance pages while a scan is queued or running); anything else, or any
        // inline script, would be injected.
        "return document.querySelectorAll('script:not([src^=\"/assets/scan-status.\"]), script:not([src]), iframe, object, embed').length;",
    )
    .await;
    assert_eq!(scripts, json!(0), "{shot}: the console serves no script");
    b.screenshot(shot).await;
    let serious = b.axe_serious(axe).await;
    assert!(
        serious.is_empty(),
        "{shot}: axe-core found serious/critical violations:\n{}",
        serious.join("\n")
    );
    h1(&b.client).await
}

async fn assert_no_dialog(c: &Client, at: &str) {
    match c.get_alert_text().await {
        Err(e) if e.is_no_such_alert() => {}
        Ok(text) => panic!("{at}: a dialog is open: {text:?} (a payload ran)"),
        Err(e) => panic!("{at}: cannot ask for dialogs: {e}"),
    }
}

/// Waits (10 s at most) until the browser's address satisfies `done`.
async fn wait_url(c: &Client, what: &str, done: impl Fn(&url::Url) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let u = c.current_url().await.unwrap();
        if done(&u) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: still at {u}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// Elements under `css` whose text is exactly `text` (the payload as plain text).
async fn count_text(c: &Client, css: &str, text: &str) -> u64 {
    c.execute(
        "return [...document.querySelectorAll(arguments[0])]
            .filter(e => e.textContent.trim() === arguments[1]).length;",
        vec![json!(css), json!(text)],
    )
    .await
    .unwrap()
    .as_u64()
    .unwrap()
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn the_console_journey_in_headless_chromium(pool: PgPool) {
    // Fail early, with how to install, before any setup.
    let axe = axe_source();
    let b = Chromium::start().await;
    let _sim = onboard_and_scan(&pool).await;
    let hash = intercom_sspm::console::users::hash_password(&secrecy::SecretString::from(
        PASSWORD.to_string(),
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
    drop(conn);
    let console = start(&pool, local_settings()).await;
    let base = console.base.as_str();
    let c = &b.client;

    // axe-core itself finds what it should: a page with an unlabelled image and no
    // language is reported (image-alt is critical), so an empty report below means
    // something.
    c.goto("data:text/html,<html><body><main><h1>x</h1><img src='data:,'></main></body></html>")
        .await
        .unwrap();
    let control = b.axe_serious(&axe).await;
    assert!(
        control.iter().any(|v| v.starts_with("image-alt")),
        "axe-core reports a known violation: {control:?}"
    );

    // Sign in: an anonymous visit lands on the sign-in form.
    c.goto(&format!("{base}/findings")).await.unwrap();
    assert_eq!(visit(&b, &axe, base, None, "01-sign-in").await, "Sign in");
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    c.find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys("vera")
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    click(c, "form.stack button[type=submit]").await;
    wait_url(c, "signed in", |u| u.path() == "/findings").await;

    // Fleet: the three instances, each with a status word and a link.
    assert_eq!(visit(&b, &axe, base, Some("/"), "02-fleet").await, "Fleet");
    for name in ["acme", "globex", "hostile"] {
        assert_eq!(
            count_text(c, "table tbody td a", name).await,
            1,
            "{name} in the fleet table"
        );
    }
    let statuses = js(
        c,
        "return [...document.querySelectorAll('tbody .status')].map(e => e.textContent.trim());",
    )
    .await;
    assert_eq!(statuses.as_array().unwrap().len(), 3, "{statuses}");
    assert!(
        statuses
            .as_array()
            .unwrap()
            .iter()
            .all(|s| !s.as_str().unwrap().is_empty()),
        "every status in words: {statuses}"
    );

    // Instance: acme, reached by its link.
    c.find(Locator::LinkText("acme"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_url(c, "acme's page", |u| u.path().starts_with("/instances/")).await;
    let title = visit(&b, &axe, base, None, "03-instance-acme").await;
    assert!(title.contains("acme"), "{title}");
    let tables = js(
        c,
        "return [...document.querySelectorAll('caption, h2')].map(e => e.textContent);",
    )
    .await;
    let tables = tables.to_string().to_lowercase();
    for section in ["teammates", "scan"] {
        assert!(
            tables.contains(section),
            "instance page has {section}: {tables}"
        );
    }
    assert!(
        c.find(Locator::Css("svg")).await.is_ok(),
        "the instance page draws its trend chart"
    );

    // Findings: filter by severity through the form, then download the exports.
    assert_eq!(
        visit(&b, &axe, base, Some("/findings"), "04-findings").await,
        "Findings"
    );
    let all_rows = js(c, "return document.querySelectorAll('tbody tr').length;")
        .await
        .as_u64()
        .unwrap();
    assert!(all_rows > 1, "open findings across the fleet: {all_rows}");
    let severities = js(
        c,
        "return [...document.querySelectorAll('tbody td:first-child')].map(e => e.textContent.trim());",
    )
    .await;
    let chosen = severities[0].as_str().unwrap().to_string();
    c.find(Locator::Css("#f-severity"))
        .await
        .unwrap()
        .select_by_value(&chosen)
        .await
        .unwrap();
    click(c, "form.filters button[type=submit]").await;
    wait_url(c, "the filtered findings", |u| {
        u.query().unwrap_or("").contains("severity=")
    })
    .await;
    let title = visit(&b, &axe, base, None, "05-findings-filtered").await;
    assert_eq!(title, "Findings");
    let url = c.current_url().await.unwrap();
    assert!(
        url.query()
            .unwrap_or("")
            .contains(&format!("severity={chosen}")),
        "{url}"
    );
    let shown = js(
        c,
        "return [...document.querySelectorAll('tbody td:first-child')].map(e => e.textContent.trim());",
    )
    .await;
    let shown: Vec<String> = serde_json::from_value(shown).unwrap();
    assert!(!shown.is_empty());
    assert!(shown.iter().all(|s| *s == chosen), "{chosen}: {shown:?}");
    let titles: Vec<String> = serde_json::from_value(
        js(
            c,
            "return [...document.querySelectorAll('tbody td:nth-child(3)')].map(e => e.textContent.trim());",
        )
        .await,
    )
    .unwrap();

    click(c, "p.exports a[href*='format=csv']").await;
    let (name, csv) = b.download(".csv").await;
    assert!(name.starts_with("findings-"), "{name}");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let sev = headers
        .iter()
        .position(|h| h == "severity")
        .expect("a severity column");
    let title_col = headers
        .iter()
        .position(|h| h == "title")
        .expect("a title column");
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(
        records.len(),
        shown.len(),
        "the CSV holds the filtered findings"
    );
    assert!(records.iter().all(|r| r[sev] == chosen), "{csv}");
    let mut csv_titles: Vec<String> = records.iter().map(|r| r[title_col].to_string()).collect();
    let mut page_titles = titles.clone();
    csv_titles.sort();
    page_titles.sort();
    assert_eq!(csv_titles, page_titles, "the same findings as on the page");

    click(c, "p.exports a[href*='format=json']").await;
    let (_, body) = b.download(".json").await;
    let rows: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(rows.len(), shown.len());
    assert!(
        rows.iter().all(|r| r["severity"] == json!(chosen)),
        "{body}"
    );

    // Finding detail, reached from the filtered list.
    click(c, "tbody td:nth-child(3) a").await;
    wait_url(c, "a finding", |u| {
        u.path().starts_with("/findings/") && u.path() != "/findings/export"
    })
    .await;
    let title = visit(&b, &axe, base, None, "06-finding").await;
    assert!(titles.contains(&title), "{title} among {titles:?}");
    let text = c
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .to_lowercase();
    for part in ["evidence", "remediation", "history"] {
        assert!(text.contains(part), "finding page shows {part}");
    }

    // Compliance: the index, then CIS v8 by its link.
    visit(&b, &axe, base, Some("/compliance"), "07-compliance-index").await;
    click(c, "main a[href='/compliance/cis-v8']").await;
    wait_url(c, "CIS v8", |u| u.path() == "/compliance/cis-v8").await;
    let title = visit(&b, &axe, base, None, "08-compliance-cis-v8").await;
    assert!(title.contains("CIS"), "{title}");
    let results: Vec<String> = serde_json::from_value(
        js(
            c,
            "return [...document.querySelectorAll('.result')].map(e => e.textContent.trim());",
        )
        .await,
    )
    .unwrap();
    assert!(!results.is_empty(), "controls with results per instance");

    visit(&b, &axe, base, Some("/checks"), "09-checks").await;
    visit(&b, &axe, base, Some("/audit"), "10-audit").await;

    // Hostile data: every payload is text in the DOM, nothing runs.
    let hostile: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM sspm.instances WHERE name = 'hostile'")
            .fetch_one(&pool)
            .await
            .unwrap();
    visit(
        &b,
        &axe,
        base,
        Some(&format!("/instances/{hostile}")),
        "11-instance-hostile",
    )
    .await;
    assert_eq!(
        count_text(c, "td", "<script>alert('name')</script>").await,
        1,
        "the teammate name shows as its literal text"
    );
    let injected = js(
        c,
        "return document.querySelectorAll('img, svg[onload], [onerror], [onload], [onmouseover]').length;",
    )
    .await;
    assert_eq!(injected, json!(0), "no element came from a payload");
    let body_text = c
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body_text.contains("<img src=x onerror=alert('job')>"),
        "job title as text"
    );
    assert!(body_text.contains('\u{202e}'), "RTL override kept as text");

    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM sspm.findings WHERE instance_id = $1 ORDER BY id")
            .bind(hostile)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(!ids.is_empty(), "the hostile workspace has findings");
    for (i, id) in ids.iter().enumerate() {
        visit(
            &b,
            &axe,
            base,
            Some(&format!("/findings/{id}")),
            &format!("12-finding-hostile-{i}"),
        )
        .await;
        let injected = js(
            c,
            "return document.querySelectorAll('img, [onerror], [onload], [onmouseover]').length;",
        )
        .await;
        assert_eq!(injected, json!(0), "finding {id}");
    }
    visit(
        &b,
        &axe,
        base,
        Some("/findings?status=any&q=%3Cscript%3E"),
        "13-findings-hostile-search",
    )
    .await;
    assert_no_dialog(c, "end of journey").await;
}
