//! A real headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, with `fantoccini` as the client), plus axe-core for accessibility.
//!
//! [`Chromium::start`] runs chromedriver on a free port and opens ONE browser session;
//! tests walk their whole journey in it. Nothing is skipped when a piece is missing: the
//! test fails and says how to install it (`scripts/install-e2e`).
//!
//! Overrides: `SSPM_E2E_CHROMEDRIVER`, `SSPM_E2E_CHROMIUM` (paths), `SSPM_E2E_AXE` (path of
//! axe.min.js; default target/e2e/axe-core/node_modules/axe-core/axe.min.js).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

const INSTALL: &str = "run scripts/install-e2e (as root it installs Debian's chromium and \
                       chromium-driver with apt and axe-core with npm under target/e2e/)";

/// The cargo target directory (CARGO_TARGET_DIR, else ./target of this workspace).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn find_program(var: &str, names: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{var}={} is not a file; {INSTALL}",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the browser test needs {} on PATH (or {var}); {INSTALL}",
        names.join(" or ")
    );
}

/// axe.min.js as text.
pub fn axe_source() -> String {
    let path = std::env::var_os("SSPM_E2E_AXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("e2e/axe-core/node_modules/axe-core/axe.min.js"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("axe-core is missing at {} ({e}); {INSTALL}", path.display()))
}

/// chromedriver (its process) and one Chromium session through it.
pub struct Chromium {
    pub client: Client,
    _driver: Driver,
    /// Where Chromium saves downloads.
    pub downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

/// The chromedriver process, killed when dropped (it ends the browsers it started).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Chromium {
    pub async fn start() -> Chromium {
        let driver_bin = find_program("SSPM_E2E_CHROMEDRIVER", &["chromedriver"]);
        let chromium = find_program("SSPM_E2E_CHROMIUM", &["chromium", "chromium-browser"]);
        let port = super::free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL}", driver_bin.display()));
        let driver = Driver(driver);
        let downloads = tempfile::tempdir().unwrap();
        let profile = tempfile::tempdir().unwrap();
        let client = connect_when_ready(port, &chromium, downloads.path(), profile.path()).await;
        Chromium {
            client,
            _driver: driver,
            downloads,
            _profile: profile,
        }
    }

    /// Saves a PNG of the viewport as target/e2e-screenshots/`name`.png.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = target_dir().join("e2e-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Runs axe-core in the current page; returns the serious and critical violations as
    /// "rule: help (selectors)" lines.
    pub async fn axe_serious(&self, axe: &str) -> Vec<String> {
        // WebDriver scripts are not subject to the page's CSP, so the console's strict
        // policy (no inline script) stays as it is in production.
        self.client
            .execute(&format!("{axe}\nreturn typeof window.axe;"), vec![])
            .await
            .expect("axe-core loads");
        let out = self
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                   axe.run(document, { resultTypes: ['violations'] })
                     .then(r => done(r.violations
                        .filter(v => v.impact === 'serious' || v.impact === 'critical')
                        .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' +
                             v.nodes.slice(0, 5).map(n => n.target.join(' ')).join(', '))))
                     .catch(e => done(['axe failed: ' + e]));"#,
                vec![],
            )
            .await
            .expect("axe.run answers");
        serde_json::from_value(out).expect("a list of strings")
    }

    /// Waits for a finished download whose name ends with `ext` and returns its content.
    pub async fn download(&self, ext: &str) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for e in std::fs::read_dir(self.downloads.path()).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().to_string();
                if name.ends_with(ext) {
                    let body = std::fs::read_to_string(e.path()).unwrap();
                    std::fs::remove_file(e.path()).unwrap();
                    return (name, body);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no *{ext} download within 20 s in {}",
                self.downloads.path().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn connect_when_ready(
    port: u16,
    chromium: &Path,
    downloads: &Path,
    profile: &Path,
) -> Client {
    let mut args = vec![
        "--headless=new".to_string(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--no-first-run".into(),
        "--window-size=1366,1400".into(),
        "--lang=en-US".into(),
    ];
    // Chromium's sandbox cannot start as root (CI runs as root).
    if is_root() {
        args.push("--no-sandbox".into());
    }
    args.push(format!("--user-data-dir={}", profile.display()));
    let caps = json!({
        "browserName": "chrome",
        // An alert left open by a payload must stay open for the test to see it.
        "unhandledPromptBehavior": "ignore",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": args,
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
            },
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await;
        match attempt {
            Ok(client) => return client,
            // chromedriver is still starting.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no Chromium session from chromedriver within 30 s: {e}; {INSTALL}"),
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
