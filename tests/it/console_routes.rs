//! The console over real HTTP against real Postgres: every route for every role and for
//! anonymous requests, CSRF, session rotation and expiry, sign-in throttling, proxy mode,
//! security headers, and escaping of hostile Intercom data.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use intercom_sspm::console::role::Role;
use intercom_sspm::console::settings::{AuthMode, ConsoleSettings};
use intercom_sspm::console::state::ConsoleState;
use intercom_sspm::console::users;
use reqwest::StatusCode;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub const PASSWORD: &str = "correct horse battery staple";
const INSTANCE: &str = "11111111-1111-1111-1111-111111111111";
const FINDING: &str = "33333333-3333-3333-3333-333333333333";
pub const HOSTILE_NAME: &str = "<script>alert('name')</script>\u{202E}gpj.exe";
pub const HOSTILE_TITLE: &str = "\"><img src=x onerror=alert(1)>";

/// One instance with a scan, check results, an open finding with evidence, history, an
/// exception-free lifecycle and teammates whose fields carry HTML, script and RTL payloads.
pub async fn seed(pool: &PgPool) {
    let long = "A".repeat(10_000);
    sqlx::query(&format!(
        r#"INSERT INTO sspm.instances (id, name, region, workspace_id, workspace_name, token_ref, status, status_detail, last_scan_at)
           VALUES ('{INSTANCE}', 'acme', 'us', 'ws1', $1, 'env:TOKEN', 'ip_not_allowed', $2, now());
           "#
    ))
    .bind(HOSTILE_NAME)
    .bind(HOSTILE_TITLE)
    .execute(pool)
    .await
    .unwrap();
    let scan: uuid::Uuid = sqlx::query_scalar(&format!(
        "INSERT INTO sspm.scans (instance_id, status, trigger, finished_at, score, coverage, api_calls)
         VALUES ('{INSTANCE}', 'succeeded', 'schedule', now(), 72, 0.8, 12) RETURNING id"
    ))
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sspm.check_results (scan_id, instance_id, check_id, status, severity, reason, failed_count)
         VALUES ($1, $2, 'admin_personal_email_domain', 'fail', 'high', $3, 1),
                ($1, $2, 'manual_2fa_enforced', 'not_evaluated', 'high', 'needs an attestation', 0)",
    )
    .bind(scan)
    .bind(uuid::Uuid::parse_str(INSTANCE).unwrap())
    .bind(HOSTILE_TITLE)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sspm.finding_rows (id, instance_id, check_id, resource, status, severity, title, evidence, remediation, compliance, first_seen_at, last_seen_at, first_scan_id, last_scan_id)
         VALUES ($1, $2, 'admin_personal_email_domain', $3, 'open', 'high', $4, $5, 'Use a company address', '{\"CIS v8\": [\"5.1\"]}', now(), now(), $6, $6)",
    )
    .bind(uuid::Uuid::parse_str(FINDING).unwrap())
    .bind(uuid::Uuid::parse_str(INSTANCE).unwrap())
    .bind(format!("admin:{HOSTILE_NAME}"))
    .bind(format!("Personal email for {HOSTILE_TITLE}"))
    .bind(serde_json::json!({ "email": "<b>x</b>@gmail.com", "name": HOSTILE_NAME, "long": long }))
    .bind(scan)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sspm.finding_events (finding_id, instance_id, scan_id, from_status, to_status, reason)
         VALUES ($1, $2, $3, NULL, 'open', $4)",
    )
    .bind(uuid::Uuid::parse_str(FINDING).unwrap())
    .bind(uuid::Uuid::parse_str(INSTANCE).unwrap())
    .bind(scan)
    .bind(HOSTILE_NAME)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sspm.admin_rows (instance_id, admin_id, name, email, job_title, role, has_inbox_seat, first_seen_at, last_seen_at)
         VALUES ($1, '1', $2, $3, $4, 'Admin', true, now(), now())",
    )
    .bind(uuid::Uuid::parse_str(INSTANCE).unwrap())
    .bind(HOSTILE_NAME)
    .bind("\"onmouseover=alert(2)\"@evil.example")
    .bind(format!("{HOSTILE_TITLE}{}", "x".repeat(5000)))
    .execute(pool)
    .await
    .unwrap();
}

pub async fn add_user(pool: &PgPool, name: &str, role: Role) {
    let hash = users::hash_password(&SecretString::from(PASSWORD.to_string())).unwrap();
    let mut conn = pool.acquire().await.unwrap();
    users::add(&mut conn, name, role, &hash).await.unwrap();
}

pub struct Console {
    pub base: String,
    stop: CancellationToken,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn start(pool: &PgPool, settings: ConsoleSettings) -> Console {
    start_state(ConsoleState::new(pool.clone(), settings).unwrap()).await
}

/// Serves `state` (e.g. `ConsoleState::from_settings`, with the actions wired) on a free port.
pub async fn start_state(state: ConsoleState) -> Console {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let state = Arc::new(state);
    let stop = CancellationToken::new();
    tokio::spawn(intercom_sspm::console::serve::serve(
        listener,
        state,
        stop.clone(),
    ));
    Console {
        base: format!("http://{addr}"),
        stop,
    }
}

pub fn local_settings() -> ConsoleSettings {
    ConsoleSettings {
        listen: Some("127.0.0.1:0".into()),
        auth: Some(AuthMode::Local),
        insecure_cookies: true,
        ..Default::default()
    }
}

/// A minimal browser: keeps cookies, never follows redirects.
pub struct Browser {
    base: String,
    client: reqwest::Client,
    pub cookies: HashMap<String, String>,
    extra: Vec<(String, String)>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The first form's CSRF token on the page.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a csrf field") + marker.len();
        let end = self.body[start..].find('"').unwrap();
        self.body[start..start + end].to_string()
    }
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_string(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
            extra: Vec::new(),
        }
    }

    pub fn with_header(mut self, k: &str, v: &str) -> Self {
        self.extra.push((k.into(), v.into()));
        self
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, req: reqwest::RequestBuilder) -> Page {
        let mut req = req.header("cookie", self.cookie_header());
        for (k, v) in &self.extra {
            req = req.header(k.as_str(), v.as_str());
        }
        let res = req.send().await.unwrap();
        for sc in res.headers().get_all("set-cookie") {
            let sc = sc.to_str().unwrap();
            let pair = sc.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if sc.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        Page {
            status: res.status(),
            headers: res.headers().clone(),
            body: res.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.client.get(format!("{}{path}", self.base));
        self.finish(req).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self.client.post(format!("{}{path}", self.base)).form(form);
        self.finish(req).await
    }

    pub async fn login(&mut self, user: &str, password: &str) -> Page {
        let csrf = self.get("/login").await.csrf();
        self.post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", user),
                ("password", password),
                ("next", "/"),
            ],
        )
        .await
    }
}

fn routes() -> Vec<(String, Role)> {
    vec![
        ("/".into(), Role::Viewer),
        (
            "/?region=us&status=ip_not_allowed&severity=high&sort=score".into(),
            Role::Viewer,
        ),
        (format!("/instances/{INSTANCE}"), Role::Viewer),
        ("/findings".into(), Role::Viewer),
        (
            "/findings?severity=high&status=any&q=email&instance=acme".into(),
            Role::Viewer,
        ),
        ("/findings/export?format=csv".into(), Role::Viewer),
        ("/findings/export?format=json".into(), Role::Viewer),
        ("/findings/export?format=ocsf".into(), Role::Viewer),
        (format!("/findings/{FINDING}"), Role::Viewer),
        ("/checks".into(), Role::Viewer),
        ("/compliance".into(), Role::Viewer),
        ("/compliance/cis-v8".into(), Role::Viewer),
        ("/compliance/nist-800-53".into(), Role::Viewer),
        ("/audit".into(), Role::Viewer),
        ("/users".into(), Role::Admin),
        // The wizard and the settings page need the scanner's settings (this console is
        // built without them): console_actions sweeps those with a console that has them.
        ("/exceptions".into(), Role::Viewer),
        (format!("/instances/{INSTANCE}/attestations"), Role::Viewer),
        (format!("/instances/{INSTANCE}/remove"), Role::Admin),
        ("/channels".into(), Role::Admin),
        ("/channels/new?kind=webhook".into(), Role::Admin),
    ]
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn every_route_answers_each_role_and_anonymous_as_expected(pool: PgPool) {
    seed(&pool).await;
    for (name, role) in [
        ("vera", Role::Viewer),
        ("otto", Role::Operator),
        ("ada", Role::Admin),
    ] {
        add_user(&pool, name, role).await;
    }
    let console = start(&pool, local_settings()).await;
    let mut anon = Browser::new(&console.base);
    for (path, _) in routes() {
        let p = anon.get(&path).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "anonymous {path}");
        assert!(
            p.location().starts_with("/login?next=%2F"),
            "{path}: {}",
            p.location()
        );
    }
    for (name, role) in [
        ("vera", Role::Viewer),
        ("otto", Role::Operator),
        ("ada", Role::Admin),
    ] {
        let mut b = Browser::new(&console.base);
        let signed = b.login(name, PASSWORD).await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER, "{name} signs in");
        assert_eq!(signed.location(), "/");
        for (path, needed) in routes() {
            let p = b.get(&path).await;
            let expected = if role >= needed {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(p.status, expected, "{name} ({role}) GET {path}");
            if expected == StatusCode::FORBIDDEN {
                assert!(p.body.contains("Not permitted"), "{path}");
            }
            // Security headers on every response.
            let csp = p.headers["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
            assert_eq!(p.headers["x-content-type-options"], "nosniff");
            assert_eq!(p.headers["referrer-policy"], "same-origin");
            assert!(
                p.headers.get("strict-transport-security").is_none(),
                "no HSTS without TLS"
            );
        }
    }
    // Unknown ids are 404, not 500.
    let mut b = Browser::new(&console.base);
    b.login("vera", PASSWORD).await;
    let p = b
        .get("/instances/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    // Assets: hashed name, long cache; any other name is 404.
    let login = Browser::new(&console.base).get("/login").await;
    let href_start = login.body.find("/assets/console.").unwrap();
    let href_end = login.body[href_start..].find('"').unwrap();
    let href = &login.body[href_start..href_start + href_end];
    let css = anon.get(href).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(
        anon.get("/assets/console.000000.css").await.status,
        StatusCode::NOT_FOUND
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn hostile_intercom_data_is_escaped_on_every_page(pool: PgPool) {
    seed(&pool).await;
    add_user(&pool, "vera", Role::Viewer).await;
    let console = start(&pool, local_settings()).await;
    let mut b = Browser::new(&console.base);
    b.login("vera", PASSWORD).await;
    for path in [
        "/".to_string(),
        format!("/instances/{INSTANCE}"),
        "/findings".into(),
        format!("/findings/{FINDING}"),
        "/compliance/cis-v8".into(),
    ] {
        let p = b.get(&path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
        for raw in ["<script>alert", "<img src=x", "<b>x</b>", "\"onmouseover="] {
            assert!(!p.body.contains(raw), "{path} contains raw {raw:?}");
        }
        assert!(!p.body.contains("style="), "{path}: no inline style (CSP)");
        assert!(
            !crate::support::without_own_script(&p.body).contains("<script"),
            "{path}: no script but the console's own poller"
        );
    }
    let instance = b.get(&format!("/instances/{INSTANCE}")).await.body;
    assert!(
        instance.contains("&#60;script&#62;alert(") && instance.contains("&#60;/script&#62;"),
        "escaped, still readable"
    );
    assert!(
        instance.contains("IP address not allowed"),
        "status in words"
    );
    assert!(instance.contains("<svg"), "trend chart");
    let finding = b.get(&format!("/findings/{FINDING}")).await.body;
    assert!(finding.contains("(cut)"), "overlong evidence is cut");
    assert!(finding.contains("CIS v8"));
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn posts_without_the_csrf_token_are_refused(pool: PgPool) {
    add_user(&pool, "vera", Role::Viewer).await;
    let console = start(&pool, local_settings()).await;
    let mut b = Browser::new(&console.base);
    // Sign-in without the token: refused even with the right password.
    b.get("/login").await;
    let p = b
        .post("/login", &[("username", "vera"), ("password", PASSWORD)])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = b
        .post(
            "/login",
            &[
                ("csrf", "forged"),
                ("username", "vera"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(b.login("vera", PASSWORD).await.status == StatusCode::SEE_OTHER);
    // Logout without the token: refused, and the session survives.
    assert_eq!(b.post("/logout", &[]).await.status, StatusCode::FORBIDDEN);
    let fleet = b.get("/").await;
    assert_eq!(fleet.status, StatusCode::OK);
    // A token from another browser does not work either.
    let mut other = Browser::new(&console.base);
    let foreign = other.get("/login").await.csrf();
    assert_eq!(
        b.post("/logout", &[("csrf", &foreign)]).await.status,
        StatusCode::FORBIDDEN
    );
    // With its own token, logout works and ends the session.
    let p = b.post("/logout", &[("csrf", &fleet.csrf())]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        crate::support::db::count(&pool, "SELECT count(*) FROM sspm.console_sessions").await,
        0
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn sessions_rotate_at_sign_in_expire_and_are_stored_hashed(pool: PgPool) {
    add_user(&pool, "vera", Role::Viewer).await;
    let console = start(&pool, local_settings()).await;
    let mut b = Browser::new(&console.base);
    b.login("vera", PASSWORD).await;
    let first = b.cookies["sspm_session"].clone();
    // Stored only as a hash.
    let stored = crate::support::db::all_table_text(&pool).await;
    assert!(!stored.contains(&first), "the session id is never stored");
    // Signing in again rotates the id and ends the old session.
    b.login("vera", PASSWORD).await;
    let second = b.cookies["sspm_session"].clone();
    assert_ne!(first, second);
    let mut replay = Browser::new(&console.base);
    replay.cookies.insert("sspm_session".into(), first);
    assert_eq!(
        replay.get("/").await.status,
        StatusCode::SEE_OTHER,
        "old id is dead"
    );
    assert_eq!(b.get("/").await.status, StatusCode::OK);
    // Idle timeout (30 minutes by default).
    sqlx::query("UPDATE sspm.console_sessions SET last_seen_at = now() - interval '31 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        b.get("/").await.status,
        StatusCode::SEE_OTHER,
        "idle session expired"
    );
    // Absolute timeout, even while active.
    b.login("vera", PASSWORD).await;
    assert_eq!(b.get("/").await.status, StatusCode::OK);
    sqlx::query("UPDATE sspm.console_sessions SET expires_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        b.get("/").await.status,
        StatusCode::SEE_OTHER,
        "absolute end reached"
    );
    // Disabling a user ends their sessions at once.
    b.login("vera", PASSWORD).await;
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM sspm.console_users")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    users::set_disabled(&mut conn, id, true).await.unwrap();
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER);
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn secure_cookies_by_default(pool: PgPool) {
    add_user(&pool, "vera", Role::Viewer).await;
    let mut settings = local_settings();
    settings.insecure_cookies = false;
    let console = start(&pool, settings).await;
    let mut b = Browser::new(&console.base);
    let csrf = b.get("/login").await.csrf();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client
        .post(format!("{}/login", console.base))
        .header(
            "cookie",
            format!("__Host-sspm_csrf={}", b.cookies["__Host-sspm_csrf"]),
        )
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "vera"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-sspm_session="))
        .expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(session.contains(flag), "{session} lacks {flag}");
    }
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn sign_in_is_throttled_per_user_and_per_address_with_one_answer(pool: PgPool) {
    add_user(&pool, "vera", Role::Viewer).await;
    add_user(&pool, "walt", Role::Viewer).await;
    let console = start(&pool, local_settings()).await;
    let mut b = Browser::new(&console.base);
    let wrong = b.login("vera", "wrong password!!").await;
    let unknown = b.login("nobody", "wrong password!!").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, wrong.status);
    let msg = |p: &Page| {
        let s = p.body.find("role=\"alert\">").unwrap();
        p.body[s..s + 80].to_string()
    };
    assert_eq!(
        msg(&wrong),
        msg(&unknown),
        "same answer for unknown user and wrong password"
    );
    for _ in 0..3 {
        b.login("vera", "wrong password!!").await;
    }
    // Five failures from this address (4 for vera, 1 unknown): both are locked now.
    let locked = b.login("vera", PASSWORD).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "right password refused while locked"
    );
    assert_eq!(msg(&locked), msg(&wrong), "a lockout gives the same answer");
    let other_user = b.login("walt", PASSWORD).await;
    assert_eq!(
        other_user.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the address is locked too"
    );
    // After the lockout the user can sign in again (simulated by ageing the rows).
    sqlx::query("UPDATE sspm.console_login_throttle SET locked_until = now() - interval '1 second', first_failure_at = now() - interval '16 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        b.login("vera", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    // The throttle never stores a password.
    assert!(!crate::support::db::all_table_text(&pool)
        .await
        .contains("wrong password"));
}

pub fn proxy_settings(trusted: &str) -> ConsoleSettings {
    ConsoleSettings {
        listen: Some("127.0.0.1:0".into()),
        auth: Some(AuthMode::Proxy),
        insecure_cookies: true,
        trusted_proxies: vec![trusted.into()],
        proxy_role_header: Some("X-Forwarded-Role".into()),
        ..Default::default()
    }
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn proxy_identity_is_accepted_only_from_trusted_addresses(pool: PgPool) {
    seed(&pool).await;
    // Untrusted: the test's own address (127.0.0.1) is not in 10.0.0.0/8.
    let untrusted = start(&pool, proxy_settings("10.0.0.0/8")).await;
    let mut b = Browser::new(&untrusted.base)
        .with_header("X-Forwarded-Email", "mallory@example.com")
        .with_header("X-Forwarded-Role", "admin");
    for (path, _) in routes() {
        assert_eq!(b.get(&path).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    let trusted = start(&pool, proxy_settings("127.0.0.1/32")).await;
    let mut viewer =
        Browser::new(&trusted.base).with_header("X-Forwarded-Email", "val@example.com");
    let fleet = viewer.get("/").await;
    assert_eq!(fleet.status, StatusCode::OK);
    assert!(fleet.body.contains("val@example.com"));
    assert_eq!(
        viewer.get("/users").await.status,
        StatusCode::FORBIDDEN,
        "default role is viewer"
    );
    let mut admin = Browser::new(&trusted.base)
        .with_header("X-Forwarded-Email", "ada@example.com")
        .with_header("X-Forwarded-Role", "admin");
    assert_eq!(admin.get("/users").await.status, StatusCode::OK);
    let mut bogus = Browser::new(&trusted.base)
        .with_header("X-Forwarded-Email", "eve@example.com")
        .with_header("X-Forwarded-Role", "root");
    assert_eq!(
        bogus.get("/users").await.status,
        StatusCode::FORBIDDEN,
        "unknown role = least"
    );
    let mut nobody = Browser::new(&trusted.base);
    assert_eq!(
        nobody.get("/").await.status,
        StatusCode::FORBIDDEN,
        "no identity header"
    );
}

#[test]
fn the_console_refuses_to_start_without_an_auth_mode() {
    let settings = ConsoleSettings {
        listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let err = ConsoleState::new(pool, settings).err().expect("refused");
        assert!(err.to_string().contains("console.auth"), "{err}");
    });
}

/// Ids of the instances (or findings) linked from a page's table rows, in order.
fn linked_ids(body: &str, prefix: &str) -> Vec<String> {
    let tbody = body.split("<tbody>").nth(1).unwrap_or("");
    tbody
        .split(&format!("href=\"{prefix}"))
        .skip(1)
        .map(|s| s[..36].to_string())
        .collect()
}

/// The "Next page" link, HTML entities undone.
fn next_link(body: &str) -> Option<String> {
    let end = body.find("\">Next page</a>")?;
    let start = body[..end].rfind("href=\"")? + 6;
    Some(body[start..end].replace("&amp;", "&").replace("&#38;", "&"))
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn fleet_and_findings_pages_walk_every_row_once_in_order(pool: PgPool) {
    // 230 instances (three fleet pages), mixed-case names, scores with ties, 140 findings
    // whose text matches across severities (three findings pages).
    sqlx::query(
        "INSERT INTO sspm.instances (name, region, token_ref, status)
         SELECT CASE WHEN g % 2 = 0 THEN 'Inst-' ELSE 'inst-' END || lpad(g::text, 3, '0'),
                'us', 'env:T', 'ok'
         FROM generate_series(1, 230) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sspm.scans (instance_id, status, trigger, finished_at, score, coverage)
         SELECT id, 'succeeded', 'schedule', now(), (abs(hashtext(name)) % 5) * 20, 1
         FROM sspm.instances WHERE name NOT LIKE '%7'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sspm.finding_rows (instance_id, check_id, resource, status, severity, title, remediation, first_seen_at, last_seen_at)
         SELECT i.id, 'admin_personal_email_domain', 'admin:' || k,  'open',
                (ARRAY['critical','high','medium','low','info'])[1 + k % 5],
                CASE WHEN k % 3 = 0 THEN 'Other' ELSE 'Personal NeedleX email' END, 'r', now(), now()
         FROM (SELECT id FROM sspm.instances ORDER BY name LIMIT 1) i, generate_series(1, 210) k",
    )
    .execute(&pool)
    .await
    .unwrap();
    add_user(&pool, "vera", Role::Viewer).await;
    let console = start(&pool, local_settings()).await;
    let mut b = Browser::new(&console.base);
    b.login("vera", PASSWORD).await;

    let expected_by_name: Vec<String> =
        sqlx::query_scalar("SELECT id::text FROM sspm.instances ORDER BY lower(name)")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected_by_score: Vec<String> = sqlx::query_scalar(
        "SELECT p.id::text FROM sspm.instance_posture p
         ORDER BY coalesce(p.latest_score, -1), lower(p.name)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (start_at, expected) in [
        ("/", &expected_by_name),
        ("/?sort=score", &expected_by_score),
    ] {
        let mut seen = Vec::new();
        let mut next = Some(start_at.to_string());
        let mut pages = 0;
        while let Some(path) = next {
            let p = b.get(&path).await;
            assert_eq!(p.status, StatusCode::OK, "{path}");
            seen.extend(linked_ids(&p.body, "/instances/"));
            next = next_link(&p.body);
            pages += 1;
            assert!(pages < 10, "{start_at}: the walk ends");
        }
        assert_eq!(pages, 3, "{start_at}");
        assert_eq!(&seen, expected, "{start_at}: every instance once, in order");
    }

    let expected: Vec<String> = sqlx::query_scalar(
        "SELECT id::text FROM sspm.findings WHERE title ILIKE '%needlex%'
         ORDER BY array_position(ARRAY['critical','high','medium','low','info'], severity), id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(expected.len(), 140);
    let mut seen = Vec::new();
    let mut next = Some("/findings?q=needleX".to_string());
    while let Some(path) = next {
        let p = b.get(&path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
        seen.extend(linked_ids(&p.body, "/findings/"));
        next = next_link(&p.body);
    }
    assert_eq!(
        seen, expected,
        "text search pages: every match once, in order"
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn fleet_severity_filter_follows_exceptions_at_once(pool: PgPool) {
    // alpha: one open critical; bravo: a muted critical and an open high; charlie: none.
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO sspm.instances (name, region, token_ref, status)
         VALUES ('alpha', 'us', 'env:T', 'ok'), ('bravo', 'us', 'env:T', 'ok'), ('charlie', 'us', 'env:T', 'ok')
         RETURNING id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sspm.finding_rows (instance_id, check_id, resource, status, severity, title, remediation, first_seen_at, last_seen_at)
         VALUES ($1, 'failed_login_burst', 'ip:203.0.113.9', 'open', 'critical', 't', 'r', now(), now()),
                ($2, 'failed_login_burst', 'ip:203.0.113.9', 'muted', 'critical', 't', 'r', now(), now()),
                ($2, 'admin_personal_email_domain', 'admin:1', 'open', 'high', 't', 'r', now(), now())",
    )
    .bind(ids[0])
    .bind(ids[1])
    .execute(&pool)
    .await
    .unwrap();
    add_user(&pool, "vera", Role::Viewer).await;
    let console = start(&pool, local_settings()).await;
    let mut b = Browser::new(&console.base);
    b.login("vera", PASSWORD).await;
    let shown = |body: &str| linked_ids(body, "/instances/");
    let id = |n: usize| ids[n].to_string();

    assert_eq!(shown(&b.get("/?severity=critical").await.body), [id(0)]);
    assert_eq!(shown(&b.get("/?severity=high").await.body), [id(1)]);
    assert_eq!(
        shown(&b.get("/?severity=low").await.body),
        Vec::<String>::new()
    );

    // Muting alpha's critical finding takes it off the filtered fleet without a scan;
    // removing the exception brings it back.
    let (exception, muted) = intercom_sspm::db::exceptions::add(
        &pool,
        &intercom_sspm::db::exceptions::NewException {
            instance_id: ids[0],
            check_id: "failed_login_burst",
            resource: None,
            reason: "pen test",
            author: "test",
            expires_at: None,
            force: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(muted, 1);
    assert_eq!(
        shown(&b.get("/?severity=critical").await.body),
        Vec::<String>::new()
    );
    intercom_sspm::db::exceptions::remove(&pool, exception)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shown(&b.get("/?severity=critical").await.body), [id(0)]);
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn text_search_pages_rare_and_common_terms_past_the_sample(pool: PgPool) {
    // 15,000 findings over three severities (5,000 each, ids in k order, so each
    // severity's first 200 rows are k <= 600). NeedleZ (every 100th past k = 900): no
    // match in any severity's sample, so it is rare and the trigram indexes answer, one
    // scan for the severity and one for all later ones. NeedleY (every 40th): 5 in each
    // sample, and the walk fills the page. NeedleX (every 150th, all in one severity):
    // 4 in its sample, but the bounded walk stays short of a page, so the trigram indexes
    // answer after it. Each way every match is paged once, in page order (severity, then
    // id), the cursor crossing severities.
    sqlx::query(
        "INSERT INTO sspm.instances (name, region, token_ref, status) VALUES ('acme', 'us', 'env:T', 'ok')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sspm.finding_rows (id, instance_id, check_id, resource, status, severity, title, remediation, first_seen_at, last_seen_at)
         SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(k), 12, '0'))::uuid, i.id,
                'admin_personal_email_domain', 'admin:' || k, 'open',
                (ARRAY['critical', 'medium', 'low'])[1 + k % 3],
                CASE WHEN k % 100 = 0 AND k > 900 THEN 'Sparse NeedleZ ' || k
                     WHEN k % 150 = 0 THEN 'Scattered NeedleX ' || k
                     WHEN k % 40 = 0 THEN 'Dense NeedleY ' || k
                     ELSE 'Other ' || k END, 'r', now(), now()
         FROM sspm.instances i, generate_series(1, 15000) k",
    )
    .execute(&pool)
    .await
    .unwrap();
    add_user(&pool, "vera", Role::Viewer).await;
    let console = start(&pool, local_settings()).await;
    let mut b = Browser::new(&console.base);
    b.login("vera", PASSWORD).await;
    for (q, prefix, matches) in [
        ("needlez", "Sparse", 141),
        ("needley", "Dense", 303),
        ("needlex", "Scattered", 53),
    ] {
        let expected: Vec<String> = sqlx::query_scalar(
            "SELECT id::text FROM sspm.findings WHERE title LIKE $1 || '%'
             ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low', 'info'], severity), id",
        )
        .bind(prefix)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(expected.len(), matches);
        let mut seen = Vec::new();
        let mut pages = 0;
        let mut next = Some(format!("/findings?q={q}"));
        while let Some(path) = next {
            let p = b.get(&path).await;
            assert_eq!(p.status, StatusCode::OK, "{path}");
            seen.extend(linked_ids(&p.body, "/findings/"));
            next = next_link(&p.body);
            pages += 1;
            assert!(pages < 10, "the walk ends");
        }
        assert_eq!(pages, matches.div_ceil(50), "{q}");
        assert_eq!(seen, expected, "{q}: every match once, in order");
    }
}
