//! The console terminating TLS itself (`console.tls_cert_file`/`tls_key_file`): a real
//! rustls handshake against a certificate generated for the test, HSTS on every response,
//! `__Host-` session cookies marked Secure, and no plain-HTTP answer on the TLS port.

use std::net::SocketAddr;
use std::sync::Arc;

use intercom_sspm::console::role::Role;
use intercom_sspm::console::settings::{AuthMode, ConsoleSettings};
use intercom_sspm::console::state::ConsoleState;
use intercom_sspm::console::users;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse battery staple";

fn csrf_of(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("a csrf field") + marker.len();
    let end = body[start..].find('"').unwrap();
    body[start..start + end].to_string()
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn console_over_tls_sends_hsts_and_secure_host_cookies(pool: PgPool) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("console.crt");
    let key_path = dir.path().join("console.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();

    let hash = users::hash_password(&SecretString::from(PASSWORD.to_string())).unwrap();
    let mut conn = pool.acquire().await.unwrap();
    users::add(&mut conn, "ada", Role::Viewer, &hash)
        .await
        .unwrap();
    drop(conn);

    let settings = ConsoleSettings {
        listen: Some("127.0.0.1:0".into()),
        auth: Some(AuthMode::Local),
        insecure_cookies: false,
        tls_cert_file: Some(cert_path),
        tls_key_file: Some(key_path),
        ..Default::default()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let state = Arc::new(ConsoleState::new(pool.clone(), settings).unwrap());
    let stop = CancellationToken::new();
    let server = tokio::spawn(intercom_sspm::console::serve::serve(
        listener,
        state,
        stop.clone(),
    ));

    // A client that trusts only the generated certificate, for the name it was made for.
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", addr.port());

    let mut login = None;
    for _ in 0..50 {
        match client.get(format!("{base}/login")).send().await {
            Ok(res) => {
                login = Some(res);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let login = login.expect("the console answers over TLS");
    assert_eq!(login.status(), 200);
    let hsts = login
        .headers()
        .get("strict-transport-security")
        .expect("HSTS when the console terminates TLS")
        .to_str()
        .unwrap()
        .to_string();
    assert!(hsts.contains("max-age=31536000"), "{hsts}");
    let pre_cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>();
    let body = login.text().await.unwrap();
    let csrf = csrf_of(&body);
    let cookie_pairs: Vec<String> = pre_cookie
        .iter()
        .map(|c| c.split(';').next().unwrap().to_string())
        .collect();

    let signed_in = client
        .post(format!("{base}/login"))
        .header("cookie", cookie_pairs.join("; "))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "ada"),
            ("password", PASSWORD),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303, "sign-in over TLS redirects");
    let session = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("__Host-sspm_session="))
        .expect("a __Host- session cookie over TLS");
    assert!(session.contains("; Secure"), "{session}");
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Strict"), "{session}");

    // The TLS port does not serve plain HTTP.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/login"))
        .send()
        .await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain HTTP must not get a console page from the TLS listener"
    );

    stop.cancel();
    server.await.unwrap().unwrap();
}
