//! A hostile or compromised Intercom API (or a proxy in front of it): redirects to another
//! host, `pages.next` off the configured origin, endless pagination, deeply nested JSON,
//! invalid UTF-8, multi-megabyte strings, and servers that echo the token back. Every case
//! must end as a clear error naming the endpoint: no panic, no unbounded allocation, the
//! token never sent to another host nor planted in our errors, and no findings written.
//!
//! The simulator is faithful to the real API, so the truly hostile answers come from a
//! tiny axum server here whose handler the test writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use intercom_sspm::config::IntercomSettings;
use intercom_sspm::crypto::Keyring;
use intercom_sspm::db::instances::Instance;
use intercom_sspm::db::scans::Trigger;
use intercom_sspm::intercom::IntercomError;
use intercom_sspm::region::Region;
use intercom_sspm::scan::ScanOutcome;
use sqlx::PgPool;

use crate::support::cli::{run_cli, text};
use crate::support::{self, count, db, sim, Onboard, TestKey};

pub const HOSTILE_TOKEN: &str = "tok_hostile_victim_9c1d2e3f4a5b";

/// What the handler sees of a request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
}

type Handler = dyn Fn(&Seen) -> Response + Send + Sync;

/// A scripted HTTP server: counts requests, remembers them, answers with `handler`.
pub struct Hostile {
    pub addr: std::net::SocketAddr,
    requests: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    pub async fn start(handler: impl Fn(&Seen) -> Response + Send + Sync + 'static) -> Hostile {
        let handler: Arc<Handler> = Arc::new(handler);
        let requests = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (r, s) = (requests.clone(), seen.clone());
        let app = axum::Router::new().fallback(move |req: Request| {
            let (handler, r, s) = (handler.clone(), r.clone(), s.clone());
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                let info = Seen {
                    path: req.uri().path().to_string(),
                    query: req.uri().query().unwrap_or("").to_string(),
                    authorization: req
                        .headers()
                        .get("authorization")
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string()),
                };
                s.lock().unwrap().push(info.clone());
                handler(&info)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hostile {
            addr,
            requests,
            seen,
            task,
        }
    }

    /// The base URL to configure for a region (same `/us` style as the simulator).
    pub fn base_url(&self, region: Region) -> String {
        format!("http://{}/{region}", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

pub fn respond(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut r = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(body.into()).unwrap()
}

pub fn json(body: impl Into<Body>) -> Response {
    respond(200, &[("content-type", "application/json")], body)
}

/// A valid `/me` for workspace `hostile`.
pub fn me_body() -> String {
    serde_json::json!({
        "type": "admin", "id": "1", "name": "Owner", "email": "owner@hostile.example",
        "email_verified": true, "has_inbox_seat": true,
        "app": { "type": "app", "id_code": "hostile", "name": "Hostile Inc", "region": "US",
                 "identity_verification": true, "secure": true }
    })
    .to_string()
}

pub fn admins_body() -> String {
    serde_json::json!({
        "type": "admin.list",
        "admins": [{ "type": "admin", "id": "1", "name": "Owner", "email": "owner@hostile.example",
                     "has_inbox_seat": true, "role": { "id": "r1", "name": "Admin" } }]
    })
    .to_string()
}

/// Client settings pointing every region at `base` with short timeouts.
fn client_settings(h: &Hostile) -> IntercomSettings {
    IntercomSettings {
        base_url: intercom_sspm::config::BaseUrls {
            us: h.base_url(Region::Us),
            eu: h.base_url(Region::Eu),
            au: h.base_url(Region::Au),
        },
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        scan_timeout: Duration::from_secs(20),
        max_retries: 0,
        retry_base_delay: Duration::from_millis(5),
        max_pages: 20,
        ..IntercomSettings::default()
    }
}

/// Env for the CLI and library settings: every region at the hostile server.
fn env_for(h: &Hostile, pool: &PgPool, key: &str) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for region in Region::ALL {
        env.push((
            format!(
                "SSPM__INTERCOM__BASE_URL__{}",
                region.as_str().to_uppercase()
            ),
            h.base_url(region),
        ));
    }
    env.push(("SSPM__INTERCOM__MAX_RETRIES".into(), "0".into()));
    env.push(("SSPM__INTERCOM__REQUEST_TIMEOUT".into(), "5s".into()));
    env.push(("SSPM__INTERCOM__MAX_PAGES".into(), "20".into()));
    env.push(("DATABASE_URL".into(), db::database_url(pool)));
    env.push(("SSPM__SECURITY__TOKEN_KEY".into(), key.into()));
    env
}

/// An instance of workspace `hostile` whose token is sealed under `ring`.
async fn onboard(pool: &PgPool, ring: &Keyring, name: &str) -> Instance {
    db::onboard(
        pool,
        ring,
        &Onboard::new(name).workspace("hostile"),
        HOSTILE_TOKEN,
    )
    .await
}

/// A fresh key: its keyring, and its base64 for the CLI's environment.
fn ring_and_key() -> (Keyring, String) {
    let key = TestKey::generate();
    (key.ring(), key.b64)
}

#[track_caller]
fn assert_clean(e: &IntercomError) {
    let shown = format!("{e} | {e:?}");
    assert!(!shown.contains(HOSTILE_TOKEN), "token in error: {shown}");
    assert!(
        shown.len() < 2_000,
        "error text is bounded: {} bytes",
        shown.len()
    );
}

#[tokio::test]
async fn redirects_to_another_host_are_not_followed_and_get_no_token() {
    let second = Hostile::start(|_| json(me_body())).await;
    let target = format!("http://{}/us/me", second.addr);
    let statuses = [301u16, 302, 303, 307, 308];
    let status_now = Arc::new(AtomicU64::new(302));
    let s2 = status_now.clone();
    let first = Hostile::start(move |_| {
        respond(
            s2.load(Ordering::SeqCst) as u16,
            &[("location", target.as_str())],
            "",
        )
    })
    .await;
    let settings = client_settings(&first);
    for status in statuses {
        status_now.store(status as u64, Ordering::SeqCst);
        let s = sim::session(&settings, Region::Us, HOSTILE_TOKEN);
        let e = s.me().await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("/me")
                && text.contains("redirect")
                && text.contains(&second.addr.to_string()),
            "HTTP {status}: the error names the endpoint and where it was sent: {text}"
        );
        assert!(!text.contains("HTTP 302 :"), "not a bare status: {text}");
        assert_clean(&e);
        assert_eq!(s.api_calls(), 1, "a redirect is not retried");
    }
    assert_eq!(first.requests(), statuses.len() as u64);
    assert_eq!(
        second.requests(),
        0,
        "the redirect target never saw a request"
    );
    first.stop();
    second.stop();
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn redirecting_api_fails_onboarding_and_scans_cleanly(pool: PgPool) {
    let second = Hostile::start(|_| json(me_body())).await;
    let target = format!("http://{}/us/me", second.addr);
    let first = Hostile::start(move |_| respond(302, &[("location", target.as_str())], "")).await;
    let (ring, key) = ring_and_key();
    let env = env_for(&first, &pool, &key);

    let out = run_cli(
        &[
            "instance",
            "add",
            "--name",
            "victim",
            "--region",
            "us",
            "--token-stdin",
        ],
        &env,
        Some(HOSTILE_TOKEN),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("redirect"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stdout.contains(HOSTILE_TOKEN) && !stderr.contains(HOSTILE_TOKEN));
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.instances").await, 0);

    let instance = onboard(&pool, &ring, "victim").await;
    let out = run_cli(&["scan", "victim"], &env, None).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("/me") && stderr.contains("redirect"),
        "names the endpoint: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (status, error): (String, String) =
        sqlx::query_as("SELECT status, error FROM sspm.scans WHERE instance_id = $1")
            .bind(instance.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert!(
        error.contains("/me") && error.contains("redirect"),
        "{error}"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.findings").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.admins").await, 0);
    assert_eq!(second.requests(), 0, "nothing reached the redirect target");
    assert!(!db::all_table_text(&pool).await.contains(HOSTILE_TOKEN));
    first.stop();
    second.stop();
}

/// The bodies a hostile server can send, and the endpoint that sends each.
fn hostile_bodies() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let deep_array = "[".repeat(100_000).into_bytes();
    let deep_in_unknown_field = format!(
        r#"{{"type":"admin.list","admins":[{{"id":"1","x":{}}}]}}"#,
        "[".repeat(100_000)
    )
    .into_bytes();
    let deep_object =
        format!(r#"{{"type":"admin","app":{}}}"#, r#"{"a":"#.repeat(50_000)).into_bytes();
    let mut invalid_utf8 = br#"{"type":"admin.list","admins":[{"id":"1","name":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    invalid_utf8.extend_from_slice(br#""}]}"#);
    let big_string = format!(
        r#"{{"type":"admin.list","admins":[{{"id":"1","name":"{}"}}]}}"#,
        "A".repeat(5 * 1024 * 1024)
    )
    .into_bytes();
    let big_wrong_type = format!(
        r#"{{"type":"admin","id":"1","has_inbox_seat":"{}"}}"#,
        "B".repeat(3 * 1024 * 1024)
    )
    .into_bytes();
    vec![
        ("/me", "100k nested arrays", deep_array.clone()),
        ("/admins", "100k nested arrays", deep_array),
        (
            "/admins",
            "deep nesting in an unknown field",
            deep_in_unknown_field,
        ),
        ("/me", "50k nested objects", deep_object),
        ("/admins", "invalid UTF-8 in a name", invalid_utf8),
        ("/admins", "a 5 MiB name", big_string),
        ("/me", "a 3 MiB string where a bool belongs", big_wrong_type),
    ]
}

/// Serves a valid `/me` and `/admins` except for `(endpoint, body)`.
async fn serving(endpoint: &'static str, body: Vec<u8>) -> Hostile {
    let body = Arc::new(body);
    Hostile::start(move |seen| {
        let path = seen.path.trim_start_matches("/us");
        if path == endpoint {
            json(body.as_ref().clone())
        } else if path == "/me" {
            json(me_body())
        } else if path == "/admins" {
            json(admins_body())
        } else {
            respond(404, &[], "")
        }
    })
    .await
}

#[tokio::test]
async fn hostile_json_is_a_bounded_decode_error_not_a_panic() {
    for (endpoint, what, body) in hostile_bodies() {
        let h = serving(endpoint, body).await;
        let mut settings = client_settings(&h);
        // The default cap: the 5 MiB string must be refused on its own merits.
        settings.max_body_bytes = IntercomSettings::default().max_body_bytes;
        let s = sim::session(&settings, Region::Us, HOSTILE_TOKEN);
        let result = match endpoint {
            "/me" => s.me().await.map(|_| ()),
            _ => s.admins().await.map(|_| ()),
        };
        let e = result.expect_err(what);
        assert!(
            matches!(
                e,
                IntercomError::Decode { .. } | IntercomError::TooLarge { .. }
            ),
            "{what}: {e:?}"
        );
        assert_eq!(e.endpoint(), Some(endpoint), "{what}: names the endpoint");
        assert_clean(&e);
        h.stop();
    }
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn scans_meeting_hostile_json_fail_cleanly_and_write_no_findings(pool: PgPool) {
    for (i, (endpoint, what, body)) in hostile_bodies().into_iter().enumerate() {
        let h = serving(endpoint, body).await;
        let (ring, key) = ring_and_key();
        let instance = onboard(&pool, &ring, &format!("victim{i}")).await;
        let settings = support::settings(None, &[]);
        let mut settings = settings;
        settings.intercom = client_settings(&h);
        settings.intercom.max_body_bytes = IntercomSettings::default().max_body_bytes;
        let _ = key;
        let scanner = support::scanner(&pool, settings, ring);
        let report = scanner
            .scan(&instance, Trigger::Manual, None)
            .await
            .unwrap();
        assert_eq!(report.status, ScanOutcome::Failed, "{what}");
        let error = report.error.clone().unwrap_or_default();
        assert!(error.contains(endpoint), "{what}: {error}");
        assert!(
            error.len() < 2_000,
            "{what}: bounded error, {} bytes",
            error.len()
        );
        let stored: String = sqlx::query_scalar("SELECT error FROM sspm.scans WHERE id = $1")
            .bind(report.scan_id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(stored, error);
        assert_eq!(
            count(&pool, "SELECT count(*) FROM sspm.findings").await,
            0,
            "{what}: no findings"
        );
        assert_eq!(
            count(&pool, "SELECT count(*) FROM sspm.admins").await,
            0,
            "{what}"
        );
        // Workspace ids are unique per region: make room for the next case's instance.
        sqlx::query("DELETE FROM sspm.instances")
            .execute(&pool)
            .await
            .unwrap();
        h.stop();
    }
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn cli_scan_survives_deep_nesting_on_a_worker_thread(pool: PgPool) {
    // The CLI scans on tokio worker threads (2 MiB stacks, unlike the test's main thread):
    // nesting must be refused by depth, never by overflowing the stack. The activity log's
    // `metadata` is kept as raw JSON, the most permissive place to nest.
    let deep = format!(
        r#"{{"type":"activity_log.list","pages":{{"page":1,"total_pages":1}},"activity_logs":[{{"id":"e1","created_at":1,"activity_type":"admin_login_success","metadata":{}}}]}}"#,
        "[".repeat(100_000)
    );
    let h = Hostile::start(move |seen| match seen.path.trim_start_matches("/us") {
        "/me" => json(me_body()),
        // A field decoded as raw JSON: unknown keys are skipped without building a value
        // (serde_json skips them iteratively), so they cannot reach the limit.
        "/admins" => json(format!(
            r#"{{"type":"admin.list","admins":[{{"id":"1","team_priority_level":{}}}]}}"#,
            "[".repeat(100_000)
        )),
        "/admins/activity_logs" => json(deep.clone()),
        _ => respond(404, &[], ""),
    })
    .await;
    let (ring, key) = ring_and_key();
    onboard(&pool, &ring, "victim").await;
    let out = run_cli(&["scan", "victim"], &env_for(&h, &pool, &key), None).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "a clean failure exit: {stderr}");
    assert!(
        stderr.contains("/admins") && stderr.contains("recursion limit"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("overflow"),
        "{stderr}"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM sspm.findings").await, 0);
    h.stop();
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn endless_pagination_stops_at_the_page_cap(pool: PgPool) {
    // Every page claims a billion pages and points at the next one, always new: only the
    // page cap stops it. The history is then incomplete, so nothing of it is stored.
    let addr = Arc::new(Mutex::new(String::new()));
    let a2 = addr.clone();
    let h = Hostile::start(move |seen| match seen.path.trim_start_matches("/us") {
        "/me" => json(me_body()),
        "/admins" => json(admins_body()),
        "/admins/activity_logs" => {
            let page: u64 = seen
                .query
                .split('&')
                .find_map(|kv| kv.strip_prefix("page="))
                .and_then(|p| p.parse().ok())
                .unwrap_or(1);
            let now = chrono::Utc::now().timestamp();
            json(
                serde_json::json!({
                    "type": "activity_log.list",
                    "pages": { "page": page, "total_pages": 1_000_000_000u64,
                               "next": format!("{}/us/admins/activity_logs?page={}", a2.lock().unwrap(), page + 1) },
                    "activity_logs": [{ "id": format!("ev{page}"), "created_at": now - 60,
                                        "activity_type": "admin_login_success",
                                        "performed_by": { "id": "1", "email": "owner@hostile.example" } }]
                })
                .to_string(),
            )
        }
        _ => respond(404, &[], ""),
    })
    .await;
    *addr.lock().unwrap() = format!("http://{}", h.addr);
    let (ring, _) = ring_and_key();
    let instance = onboard(&pool, &ring, "victim").await;
    let mut settings = support::settings(None, &[]);
    settings.intercom = client_settings(&h);
    let report = support::scanner(&pool, settings, ring)
        .scan(&instance, Trigger::Manual, None)
        .await
        .unwrap();
    let activity_calls = h
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/admins/activity_logs"))
        .count();
    assert_eq!(
        activity_calls, 20,
        "exactly intercom.max_pages pages were requested"
    );
    let reason: String = sqlx::query_scalar(
        "SELECT reason FROM sspm.check_results WHERE scan_id = $1 AND check_id = 'activity_log_access'",
    )
    .bind(report.scan_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        reason.contains("/admins/activity_logs") && reason.contains("max_pages"),
        "{reason}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.activity_events").await,
        0,
        "a truncated history is not stored as if complete"
    );
    h.stop();
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn foreign_pages_next_in_a_scan_never_receives_the_token(pool: PgPool) {
    // The client-level test (intercom_client::foreign_next_is_refused_and_never_contacted)
    // proves the pager refuses; this proves it through a whole scan.
    let other = Hostile::start(|_| json("{}")).await;
    let foreign = format!("http://{}/us/admins/activity_logs?page=2", other.addr);
    let h = Hostile::start(move |seen| match seen.path.trim_start_matches("/us") {
        "/me" => json(me_body()),
        "/admins" => json(admins_body()),
        "/admins/activity_logs" => json(
            serde_json::json!({
                "type": "activity_log.list",
                "pages": { "page": 1, "total_pages": 2, "next": foreign },
                "activity_logs": [{ "id": "e1", "created_at": chrono::Utc::now().timestamp() - 60,
                                    "activity_type": "admin_login_success" }]
            })
            .to_string(),
        ),
        _ => respond(404, &[], ""),
    })
    .await;
    let (ring, _) = ring_and_key();
    let instance = onboard(&pool, &ring, "victim").await;
    let mut settings = support::settings(None, &[]);
    settings.intercom = client_settings(&h);
    let report = support::scanner(&pool, settings, ring)
        .scan(&instance, Trigger::Manual, None)
        .await
        .unwrap();
    assert_eq!(
        other.requests(),
        0,
        "the foreign origin was never contacted"
    );
    assert!(h
        .seen()
        .iter()
        .all(|s| s.authorization.as_deref() == Some(&format!("Bearer {HOSTILE_TOKEN}"))));
    let reason: String = sqlx::query_scalar(
        "SELECT reason FROM sspm.check_results WHERE scan_id = $1 AND check_id = 'activity_log_access'",
    )
    .bind(report.scan_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(reason.contains("refused to follow"), "{reason}");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM sspm.activity_events").await,
        0
    );
    other.stop();
    h.stop();
}

/// A compromised API or proxy that reflects the Authorization header into every place
/// our errors quote from: error codes and messages, mistyped fields, redirect targets and
/// `pages.next`.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn a_server_echoing_the_token_cannot_plant_it_in_our_errors_or_rows(pool: PgPool) {
    fn reflect(s: &Seen) -> String {
        s.authorization.clone().unwrap_or_default()
    }
    fn error_list(status: u16, code: &str, message: &str) -> Response {
        let body = serde_json::json!({"type": "error.list",
            "errors": [{"code": code, "message": message}]});
        respond(status, &[], body.to_string())
    }
    type Case = Box<dyn Fn(&Seen) -> Response + Send + Sync>;
    // (what, fails /me, handler)
    let cases: Vec<(&str, bool, Case)> = vec![
        (
            "403 message",
            true,
            Box::new(|s: &Seen| {
                error_list(403, "forbidden", &format!("header {} refused", reflect(s)))
            }),
        ),
        (
            "401 code",
            true,
            Box::new(|s: &Seen| error_list(401, &reflect(s), "")),
        ),
        (
            "404 message",
            true,
            Box::new(|s: &Seen| error_list(404, "x", &reflect(s))),
        ),
        (
            "mistyped field",
            true,
            Box::new(|s: &Seen| {
                json(format!(
                    r#"{{"type":"admin","has_inbox_seat":"{}"}}"#,
                    reflect(s)
                ))
            }),
        ),
        (
            "redirect location",
            true,
            Box::new(|s: &Seen| {
                let location = format!(
                    "http://evil.example/{}?t={}",
                    reflect(s).replace(' ', "/"),
                    reflect(s).replace(' ', "+")
                );
                respond(302, &[("location", location.as_str())], "")
            }),
        ),
        (
            "pages.next path",
            false,
            Box::new(|s: &Seen| {
                match s.path.trim_start_matches("/us") {
                "/me" => json(me_body()),
                "/admins" => json(admins_body()),
                _ => json(
                    serde_json::json!({
                        "type": "activity_log.list",
                        "pages": { "page": 1, "total_pages": 2,
                                   "next": format!("http://evil.example/{}", reflect(s).replace(' ', "/")) },
                        "activity_logs": [{ "id": "e1", "created_at": chrono::Utc::now().timestamp() - 60,
                                            "activity_type": "admin_login_success" }]
                    })
                    .to_string(),
                ),
            }
            }),
        ),
    ];
    for (i, (what, fails_me, handler)) in cases.into_iter().enumerate() {
        let h = Hostile::start(handler).await;
        if fails_me {
            let s = sim::session(&client_settings(&h), Region::Us, HOSTILE_TOKEN);
            let e = s.me().await.unwrap_err();
            let shown = format!("{e} | {e:?}");
            assert!(!shown.contains(HOSTILE_TOKEN), "{what}: {shown}");
        }
        let (ring, _) = ring_and_key();
        let instance = onboard(&pool, &ring, &format!("victim{i}")).await;
        let mut settings = support::settings(None, &[]);
        settings.intercom = client_settings(&h);
        let report = support::scanner(&pool, settings, ring)
            .scan(&instance, Trigger::Manual, None)
            .await
            .unwrap();
        assert_eq!(report.status == ScanOutcome::Failed, fails_me, "{what}");
        let shown = serde_json::to_string(&report).unwrap();
        assert!(!shown.contains(HOSTILE_TOKEN), "{what}: {shown}");
        // scans.error, instances.status_detail, check_results.reason, findings evidence.
        let all = db::all_table_text(&pool).await;
        assert!(all.contains(&format!("victim{i}")), "the tables were read");
        assert!(
            !all.contains(HOSTILE_TOKEN),
            "{what}: token planted in a row"
        );
        // Workspace ids are unique per region: make room for the next case's instance.
        sqlx::query("DELETE FROM sspm.instances")
            .execute(&pool)
            .await
            .unwrap();
        h.stop();
    }
}
