//! The console in a real headless Chromium (one browser session for the whole journey),
//! served by a real daemon (`intercom-sspm run` with the console on) that also scans.
//!
//! The viewer: sign in, fleet, instance, findings filter and export downloads, finding
//! detail, compliance, checks and audit pages; the hostile scenario's payloads show as
//! text and never run. Then the admin, in the same session: onboarding initech (AU) with a
//! wrong region first (named, one click retries, nothing stored), "Check token" prefilling
//! the allowed domains, Connect, the first scan's results appearing by themselves (the
//! poller), a finding muted with an exception and still muted after "scan now", a token of
//! another workspace refused and a valid one taken, disable, and removal after typing the
//! name; one audit row per action. Finally the tokens typed are grepped for in every page
//! and address the browser saw, the daemon's log, audit and session rows and every table.
//!
//! Every page gets a numbered screenshot (target/e2e-screenshots/) and an axe-core pass
//! with no serious or critical violation. Data: scenarios/demo.json and
//! scenarios/hostile.json served by the simulator, acme, globex and hostile onboarded and
//! scanned through the real CLI. Needs chromium, chromedriver and axe-core:
//! `scripts/install-e2e`.

use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use sqlx::PgPool;

use intercom_sspm::console::role::Role;

use crate::support::browser::{axe_source, Chromium};
use crate::support::cli::{run_cli, text};
use crate::support::count;
use crate::support::daemon::{Daemon, READY};

const PASSWORD: &str = "a long enough password";

fn scenario(file: &str) -> Value {
    let path = format!("{}/scenarios/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// acme and globex (demo.json) plus hostile (hostile.json), onboarded and scanned by the CLI;
/// initech (demo.json, AU) is served too, for the browser's own onboarding.
async fn onboard_and_scan(pool: &PgPool) -> (intercom_sim::Simulator, crate::support::TestKey) {
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
    (sim, key)
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

/// The one browser session, and everything it was shown (for the token grep at the end).
struct Tour {
    b: Chromium,
    axe: String,
    base: String,
    /// (address, page source) of every page visited.
    seen: std::sync::Mutex<Vec<(String, String)>>,
}

impl Tour {
    /// Loads `path` (or stays, when None), waits for its h1, screenshots it, runs axe,
    /// checks that no dialog is open and that the page carries no script of its own, and
    /// keeps its address and source.
    async fn visit(&self, path: Option<&str>, shot: &str) -> String {
        let b = &self.b;
        if let Some(path) = path {
            b.client
                .goto(&format!("{}{path}", self.base))
                .await
                .unwrap();
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
        let serious = b.axe_serious(&self.axe).await;
        assert!(
            serious.is_empty(),
            "{shot}: axe-core found serious/critical violations:\n{}",
            serious.join("\n")
        );
        self.keep().await;
        h1(&b.client).await
    }

    /// Keeps the current page's address and source.
    async fn keep(&self) {
        let url = self.b.client.current_url().await.unwrap().to_string();
        let source = self.b.client.source().await.unwrap();
        self.seen.lock().unwrap().push((url, source));
    }
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
    let (sim, key) = onboard_and_scan(&pool).await;
    // The CLI's scans are in: nothing is due, so the daemon scans only what the browser
    // asks for (the new instance, "scan now").
    sqlx::query("UPDATE sspm.instances SET next_scan_at = now() + interval '6 hours'")
        .execute(&pool)
        .await
        .unwrap();
    let hash = intercom_sspm::console::users::hash_password(&secrecy::SecretString::from(
        PASSWORD.to_string(),
    ))
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    for (name, role) in [("vera", Role::Viewer), ("ada", Role::Admin)] {
        intercom_sspm::console::users::add(&mut conn, name, role, &hash)
            .await
            .unwrap();
    }
    drop(conn);
    // A real daemon serving the console (scans and all), its log kept for the token grep.
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let mut d = Daemon::spawn(
        "e2e",
        &crate::support::db::database_url(&pool),
        &sim,
        &key.b64,
        &[
            ("SSPM__CONSOLE__LISTEN", &listen),
            ("SSPM__CONSOLE__AUTH", "local"),
            ("SSPM__CONSOLE__INSECURE_COOKIES", "true"),
            (
                "SSPM__LOG__LEVEL",
                "debug,sqlx=warn,hyper=info,reqwest=info,h2=info,rustls=info",
            ),
        ],
    );
    d.wait_ready(READY).await;
    let t = Tour {
        b,
        axe,
        base: format!("http://{listen}"),
        seen: std::sync::Mutex::new(Vec::new()),
    };
    let (b, axe, base) = (&t.b, t.axe.as_str(), t.base.as_str());
    let c = &b.client;

    // axe-core itself finds what it should: a page with an unlabelled image and no
    // language is reported (image-alt is critical), so an empty report below means
    // something.
    c.goto("data:text/html,<html><body><main><h1>x</h1><img src='data:,'></main></body></html>")
        .await
        .unwrap();
    let control = b.axe_serious(axe).await;
    assert!(
        control.iter().any(|v| v.starts_with("image-alt")),
        "axe-core reports a known violation: {control:?}"
    );

    // Sign in: an anonymous visit lands on the sign-in form.
    c.goto(&format!("{base}/findings")).await.unwrap();
    assert_eq!(t.visit(None, "01-sign-in").await, "Sign in");
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
    assert_eq!(t.visit(Some("/"), "02-fleet").await, "Fleet");
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
    let title = t.visit(None, "03-instance-acme").await;
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
    assert_eq!(t.visit(Some("/findings"), "04-findings").await, "Findings");
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
    let title = t.visit(None, "05-findings-filtered").await;
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
    let title = t.visit(None, "06-finding").await;
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
    t.visit(Some("/compliance"), "07-compliance-index").await;
    click(c, "main a[href='/compliance/cis-v8']").await;
    wait_url(c, "CIS v8", |u| u.path() == "/compliance/cis-v8").await;
    let title = t.visit(None, "08-compliance-cis-v8").await;
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

    t.visit(Some("/checks"), "09-checks").await;
    t.visit(Some("/audit"), "10-audit").await;

    // Hostile data: every payload is text in the DOM, nothing runs.
    let hostile: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM sspm.instances WHERE name = 'hostile'")
            .fetch_one(&pool)
            .await
            .unwrap();
    t.visit(
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
        t.visit(
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
    t.visit(
        Some("/findings?status=any&q=%3Cscript%3E"),
        "13-findings-hostile-search",
    )
    .await;
    assert_no_dialog(c, "end of the viewer's journey").await;

    admin_journey(&t, &pool).await;
    token_nowhere(&t, &pool, &d).await;
}

const INITECH: &str = "sim_initech_au_5d1f0c7b3e9a2468";
const GLOBEX: &str = "sim_globex_eu_2b8e61d04a9c7f35";

async fn sign_in(c: &Client, user: &str) {
    c.find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    click(c, "form.stack button[type=submit]").await;
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let e = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

async fn value_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn main_text(c: &Client) -> String {
    c.find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn scans_of(pool: &PgPool, name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM sspm.scans s JOIN sspm.instances i ON i.id = s.instance_id
         WHERE i.name = $1 AND s.status = 'succeeded'",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Waits (`secs` at most) until the page, left alone, shows no scan in progress and
/// `scans` succeeded scans of initech are in: the poller reloaded it, nobody else did.
async fn wait_scan_shown(c: &Client, pool: &PgPool, scans: i64, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let busy = js(
            c,
            "return document.querySelector('[data-scan-state]') !== null;",
        )
        .await;
        if busy == json!(false) && scans_of(pool, "initech").await >= scans {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "scan {scans} of initech not shown within {secs} s (busy: {busy})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The admin's journey in the same browser: onboarding initech (AU) with a wrong region
/// first, the first scan's results appearing by themselves, a finding muted with an
/// exception that stays muted after "scan now", a token of another workspace refused
/// then a valid one, disable, and removal after typing the name.
async fn admin_journey(t: &Tour, pool: &PgPool) {
    let c = &t.b.client;
    click(c, "form[action='/logout'] button").await;
    wait_url(c, "signed out", |u| u.path() == "/login").await;
    sign_in(c, "ada").await;
    wait_url(c, "ada signed in", |u| u.path() == "/").await;
    let instances_before = count(pool, "SELECT count(*) FROM sspm.instances").await;
    let audit_before = count(pool, "SELECT count(*) FROM sspm.audit_log").await;
    let audit_max_before = count(pool, "SELECT coalesce(max(id), 0) FROM sspm.audit_log").await;

    // The fleet's "Add an instance" opens the wizard: the guide, then the form.
    click(c, "main a[href='/instances/new']").await;
    wait_url(c, "the wizard", |u| u.path() == "/instances/new").await;
    assert_eq!(
        t.visit(None, "14-onboard-guide").await,
        "Add an Intercom instance"
    );
    type_into(c, "#i-name", "initech").await;
    c.find(Locator::Css("#i-region"))
        .await
        .unwrap()
        .select_by_value("eu")
        .await
        .unwrap();
    type_into(c, "#i-token", INITECH).await;
    type_into(c, "#i-schedule", "12h").await;
    click(c, "button[name=step][value=check]").await;

    // Wrong region: AU is named, with a one-click retry; nothing is stored.
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(".callout"))
        .await
        .expect("the wrong-region callout");
    t.visit(None, "15-onboard-wrong-region").await;
    let text = main_text(c).await;
    assert!(text.contains("accepted by region au"), "{text}");
    assert_eq!(value_of(c, "#i-name").await, "initech", "the form is kept");
    assert_eq!(value_of(c, "#i-schedule").await, "12h", "the form is kept");
    assert_eq!(
        value_of(c, "#i-token").await,
        "",
        "the token is not sent back"
    );
    assert_eq!(
        count(pool, "SELECT count(*) FROM sspm.instances").await,
        instances_before
    );
    assert_eq!(
        count(pool, "SELECT count(*) FROM sspm.audit_log").await,
        audit_before
    );

    // "Use AU instead": checked again in AU, allowed domains prefilled from /me.
    type_into(c, "#o-token", INITECH).await;
    click(c, ".callout button[type=submit]").await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("p.notice"))
        .await
        .expect("the token-checked notice");
    t.visit(None, "16-onboard-token-checked").await;
    assert!(main_text(c).await.contains("Token checked"));
    assert_eq!(value_of(c, "#i-region").await, "au");
    assert_eq!(value_of(c, "#i-domains").await, "initech.example");
    assert_eq!(value_of(c, "#i-name").await, "initech");
    assert_eq!(
        count(pool, "SELECT count(*) FROM sspm.instances").await,
        instances_before
    );

    // Connect: stored sealed, first scan queued, the instance page shows it running and
    // then its results, reloading itself (the test never reloads it).
    type_into(c, "#i-token", INITECH).await;
    click(c, "button[name=step][value=connect]").await;
    wait_url(c, "initech's page", |u| {
        u.path().starts_with("/instances/") && u.query() == Some("done=onboarded")
    })
    .await;
    t.visit(None, "17-instance-first-scan-queued").await;
    let (id, sealed, domains): (uuid::Uuid, bool, Vec<String>) = sqlx::query_as(
        "SELECT id, token_ciphertext IS NOT NULL, allowed_domains FROM sspm.instances WHERE name = 'initech' AND region = 'au'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(sealed, "stored sealed");
    assert_eq!(domains, ["initech.example"]);
    wait_scan_shown(c, pool, 1, 45).await;
    assert_eq!(
        c.current_url().await.unwrap().query(),
        Some("done=onboarded"),
        "the same address: the poller reloaded it"
    );
    t.visit(None, "18-instance-first-scan-results").await;
    let text = main_text(c).await;
    assert!(!text.contains("No completed scan yet"), "{text}");

    // Mute a finding from the instance page's open findings.
    let finding_href: String = serde_json::from_value(
        js(c, "return document.querySelector('section[aria-labelledby=h-findings] tbody a').getAttribute('href');").await,
    )
    .unwrap();
    let finding: uuid::Uuid = finding_href
        .trim_start_matches("/findings/")
        .parse()
        .unwrap();
    click(
        c,
        &format!("section[aria-labelledby=h-findings] a[href='{finding_href}']"),
    )
    .await;
    wait_url(c, "the finding", |u| u.path() == finding_href).await;
    t.visit(None, "19-finding-mute-form").await;
    type_into(c, "#x-reason", "accepted until the SSO migration").await;
    type_into(c, "#x-expires", "30d").await;
    click(c, "form[action$='/exception'] button[type=submit]").await;
    wait_url(c, "muted", |u| u.query() == Some("done=muted")).await;
    t.visit(None, "20-finding-muted").await;
    let text = main_text(c).await;
    assert!(text.contains("Muted by an exception"), "{text}");
    assert!(
        text.contains("accepted until the SSO migration — by ada"),
        "{text}"
    );
    assert!(text.contains(" · muted · "), "{text}");

    // Scan now, from the instance page: queued, run, and the finding is still muted.
    c.goto(&format!("{}/instances/{id}", t.base)).await.unwrap();
    click(c, "form[action$='/scan'] button").await;
    wait_url(c, "scan queued", |u| u.query() == Some("done=scan")).await;
    t.visit(None, "21-instance-scan-now").await;
    assert!(main_text(c).await.contains("Scan queued"));
    wait_scan_shown(c, pool, 2, 45).await;
    t.visit(None, "22-instance-after-scan-now").await;
    let listed = js(
        c,
        &format!("return document.querySelectorAll(\"section[aria-labelledby=h-findings] a[href='{finding_href}']\").length;"),
    )
    .await;
    assert_eq!(
        listed,
        json!(0),
        "the muted finding is not among the open ones"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM sspm.findings WHERE id = $1")
        .bind(finding)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(status, "muted", "still muted after the next scan");
    t.visit(Some(&finding_href), "23-finding-muted-after-scan")
        .await;
    assert!(main_text(c).await.contains(" · muted · "));
    t.visit(Some("/exceptions"), "24-exceptions").await;
    assert!(main_text(c)
        .await
        .contains("accepted until the SSO migration"));

    // Settings: a token of another workspace (globex) is refused, initech's accepted.
    t.visit(Some(&format!("/instances/{id}/settings")), "25-settings")
        .await;
    type_into(c, "form[action$='/token'] input[name=token]", GLOBEX).await;
    click(c, "form[action$='/token'] button[type=submit]").await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("form[action$='/token'] .error"))
        .await
        .expect("the refusal at the token field");
    t.visit(None, "26-settings-token-of-another-workspace")
        .await;
    let text = main_text(c).await;
    assert!(
        text.contains("belongs to workspace glbx0001") || text.contains("not valid for"),
        "{text}"
    );
    let ciphertext = |pool: &PgPool| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Vec<u8>>(
                "SELECT token_ciphertext FROM sspm.instances WHERE name = 'initech'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let sealed_before = ciphertext(pool).await;
    type_into(c, "form[action$='/token'] input[name=token]", INITECH).await;
    click(c, "form[action$='/token'] button[type=submit]").await;
    wait_url(c, "token replaced", |u| u.query() == Some("done=token")).await;
    t.visit(None, "27-instance-token-replaced").await;
    assert!(main_text(c).await.contains("Token replaced"));
    assert_ne!(ciphertext(pool).await, sealed_before, "sealed anew");

    // Disable.
    c.goto(&format!("{}/instances/{id}/settings", t.base))
        .await
        .unwrap();
    click(c, "form[action$='/enabled'] button[value=false]").await;
    wait_url(c, "disabled", |u| u.query() == Some("done=disabled")).await;
    t.visit(None, "28-instance-disabled").await;
    let enabled: bool = sqlx::query_scalar("SELECT enabled FROM sspm.instances WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(!enabled);

    // Remove: the page says what goes; a wrong name is refused; the name removes it.
    t.visit(
        Some(&format!("/instances/{id}/remove")),
        "29-remove-confirm",
    )
    .await;
    assert!(main_text(c).await.contains("cannot be undone"));
    type_into(c, "#r-confirm", "initec").await;
    click(c, "form[action$='/remove'] button[type=submit]").await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#e-confirm"))
        .await
        .expect("the wrong name is refused");
    t.visit(None, "30-remove-wrong-name").await;
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM sspm.instances WHERE name = 'initech'"
        )
        .await,
        1
    );
    type_into(c, "#r-confirm", "initech").await;
    click(c, "form[action$='/remove'] button[type=submit]").await;
    wait_url(c, "removed", |u| {
        u.path() == "/" && u.query() == Some("done=removed")
    })
    .await;
    t.visit(None, "31-fleet-after-remove").await;
    assert!(main_text(c).await.contains("The instance was removed"));
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM sspm.instances WHERE name = 'initech'"
        )
        .await,
        0
    );
    // Each action left exactly one audit row, by ada through the console.
    let trail: Vec<(String, String, String)> =
        sqlx::query_as("SELECT action, actor, via FROM sspm.audit_log WHERE id > $1 ORDER BY id")
            .bind(audit_max_before)
            .fetch_all(pool)
            .await
            .unwrap();
    let actions: Vec<&str> = trail.iter().map(|(a, _, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "instance.add",
            "exception.add",
            "instance.scan_now",
            "instance.set_token",
            "instance.disable",
            "instance.remove"
        ]
    );
    assert!(
        trail
            .iter()
            .all(|(_, who, via)| who == "ada" && via == "console"),
        "{trail:?}"
    );
}

/// The tokens typed in the browser are in no page it was shown, no address it visited,
/// no line of the daemon's log, no audit or session row, and no text of any table.
async fn token_nowhere(t: &Tour, pool: &PgPool, d: &Daemon) {
    let seen = t.seen.lock().unwrap().clone();
    assert!(seen.len() > 30, "pages kept: {}", seen.len());
    let logs = d.logs();
    assert!(
        logs.contains("onboarded an instance in the console"),
        "the log is captured"
    );
    let audit: Vec<String> =
        sqlx::query_scalar("SELECT row_to_json(a)::text FROM sspm.audit_log a")
            .fetch_all(pool)
            .await
            .unwrap();
    let sessions: Vec<String> =
        sqlx::query_scalar("SELECT row_to_json(s)::text FROM sspm.console_sessions s")
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(!audit.is_empty() && !sessions.is_empty());
    let tables = crate::support::db::all_table_text(pool).await;
    for token in [INITECH, GLOBEX] {
        for (url, source) in &seen {
            assert!(!url.contains(token), "token in the address {url}");
            assert!(!source.contains(token), "token in the page at {url}");
        }
        assert!(!logs.contains(token), "token in the daemon's log");
        assert!(
            !audit.iter().any(|r| r.contains(token)),
            "token in an audit row"
        );
        assert!(
            !sessions.iter().any(|r| r.contains(token)),
            "token in a session row"
        );
        assert!(!tables.contains(token), "token in a table");
    }
}
