//! The in-process Intercom simulator: starting it, scenarios (as JSON or typed specs),
//! client settings and sessions against it, and its region type mapped to the product's.

use std::net::SocketAddr;
use std::time::Duration;

use intercom_sim::{
    scopes, AdminSpec, EventSpec, FaultSpec, RoleSpec, Scenario, Simulator, TokenSpec, Workspace,
};
use intercom_sspm::config::{BaseUrls, IntercomSettings};
use intercom_sspm::intercom::{IntercomClient, IntercomError, Session};
use intercom_sspm::Region;
use secrecy::SecretString;

/// The simulator keeps its own region type (it knows nothing of the scanner): these map
/// between the two.
pub fn sim_region(region: Region) -> intercom_sim::Region {
    match region {
        Region::Us => intercom_sim::Region::Us,
        Region::Eu => intercom_sim::Region::Eu,
        Region::Au => intercom_sim::Region::Au,
    }
}

pub fn product_region(region: intercom_sim::Region) -> Region {
    match region {
        intercom_sim::Region::Us => Region::Us,
        intercom_sim::Region::Eu => Region::Eu,
        intercom_sim::Region::Au => Region::Au,
    }
}

/// Environment that points every region at the simulator (or at `base` when given).
pub fn sim_env(sim: Option<&Simulator>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for region in Region::ALL {
        let url = match sim {
            Some(s) => s.base_url(sim_region(region)),
            // A port nothing listens on: connection refused at once.
            None => format!("http://127.0.0.1:9/{region}"),
        };
        env.push((
            format!(
                "SSPM__INTERCOM__BASE_URL__{}",
                region.as_str().to_uppercase()
            ),
            url,
        ));
    }
    env.push(("SSPM__INTERCOM__REQUEST_TIMEOUT".into(), "5s".into()));
    env.push(("SSPM__INTERCOM__RETRY_BASE_DELAY".into(), "10ms".into()));
    env.push(("SSPM__INTERCOM__MAX_RETRIES".into(), "1".into()));
    env
}

pub const TOKEN: &str = "sim_test_us_0123456789abcdef";

pub fn listen() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub async fn start(scenario: Scenario) -> Simulator {
    Simulator::start(scenario, listen())
        .await
        .expect("simulator starts")
}

/// Starts a simulator from scenario JSON (`{"workspaces": [...]}`).
pub async fn start_json(scenario: serde_json::Value) -> Simulator {
    let scenario: Scenario = serde_json::from_value(scenario).expect("test scenario is valid");
    start(scenario).await
}

/// A FaultSpec from JSON, e.g. `{"server_error": {"status": 503}}`.
pub fn faults(json: serde_json::Value) -> FaultSpec {
    serde_json::from_value(json).expect("test fault spec is valid")
}

/// Client settings against `sim`: short timeouts and tiny backoffs so failure paths
/// finish in milliseconds.
pub fn client_settings(sim: &Simulator) -> IntercomSettings {
    IntercomSettings {
        base_url: BaseUrls {
            us: sim.base_url(intercom_sim::Region::Us),
            eu: sim.base_url(intercom_sim::Region::Eu),
            au: sim.base_url(intercom_sim::Region::Au),
        },
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        scan_timeout: Duration::from_secs(20),
        max_retries: 2,
        retry_base_delay: Duration::from_millis(5),
        max_rate_limit_wait: Duration::from_secs(3),
        max_pages: 50,
        max_body_bytes: 64 * 1024,
        activity_page_size: 5,
        ..IntercomSettings::default()
    }
}

pub fn session(settings: &IntercomSettings, region: Region, token: &str) -> Session {
    IntercomClient::new(settings)
        .expect("client builds")
        .session(region, SecretString::from(token.to_string()))
}

pub fn admin(id: &str, name: &str, email: &str) -> AdminSpec {
    AdminSpec {
        id: id.into(),
        name: name.into(),
        email: email.into(),
        job_title: None,
        away_mode_enabled: false,
        away_mode_reassign: false,
        away_status_reason_id: None,
        has_inbox_seat: true,
        team_ids: vec![],
        avatar_url: None,
        role: Some(RoleSpec {
            id: "2".into(),
            name: "Support Agent".into(),
        }),
        email_verified: Some(true),
        team_priority_level: None,
    }
}

/// `n` login events, one a minute, the newest `created_at = newest`.
pub fn events(n: usize, newest: i64) -> Vec<EventSpec> {
    (0..n)
        .map(|i| EventSpec {
            id: format!("ev-{i:04}"),
            activity_type: "admin_login_success".into(),
            created_at: Some(newest - 60 * i as i64),
            ago: None,
            performed_by: "101".into(),
            performed_by_email: None,
            ip: Some("198.51.100.1".into()),
            metadata: Some(serde_json::json!({"sign_in_method": "email_password"}).into()),
            description: None,
        })
        .collect()
}

pub fn token(value: &str, scope_list: &[&str]) -> TokenSpec {
    TokenSpec {
        token: value.into(),
        scopes: scope_list.iter().map(|s| s.to_string()).collect(),
        owner_admin_id: None,
        owner: None,
        refusal: None,
        revoked: false,
        faults: None,
    }
}

/// A US workspace "w1" with two admins and the given token, no events.
pub fn workspace(id: &str, region: Region, tokens: Vec<TokenSpec>) -> Workspace {
    serde_json::from_value::<Workspace>(serde_json::json!({
        "id_code": id, "name": format!("Workspace {id}"), "region": region,
    }))
    .map(|mut w| {
        w.tokens = tokens;
        w.admins = vec![
            admin("101", "Ann Owner", "ann@w.example"),
            admin("102", "Ben Agent", "ben@w.example"),
        ];
        w
    })
    .unwrap()
}

/// One workspace whose token has every scope the simulator knows.
pub fn full_scope_scenario() -> Scenario {
    Scenario {
        description: None,
        workspaces: vec![workspace(
            "w1",
            Region::Us,
            vec![token(
                TOKEN,
                &[
                    scopes::READ_ADMINS,
                    scopes::READ_ADMIN_ACTIVITY_LOGS,
                    scopes::READ_TAGS,
                    scopes::MANAGE_IP_ALLOWLIST,
                    scopes::READ_TEAMS,
                ],
            )],
        )],
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The token must never appear in an error's message or debug form.
#[track_caller]
pub fn assert_token_free(e: &IntercomError, token: &str) {
    let shown = format!("{e} | {e:?}");
    assert!(!shown.contains(token), "token leaked into error: {shown}");
}

/// A two-admin healthy workspace with one token, as scenario JSON.
pub fn workspace_json(
    id_code: &str,
    region: &str,
    token: &str,
    scopes: &[&str],
) -> serde_json::Value {
    serde_json::json!({
        "id_code": id_code,
        "name": format!("{id_code} Inc"),
        "region": region,
        "identity_verification": true,
        "tokens": [{ "token": token, "scopes": scopes }],
        "admins": [
            { "id": "1", "name": "Owner", "email": format!("owner@{id_code}.example"), "email_verified": true,
              "role": { "id": "r1", "name": "Admin" } },
            { "id": "2", "name": "Agent", "email": format!("agent@{id_code}.example"),
              "role": { "id": "r2", "name": "Agent" } }
        ],
        "events": [
            { "id": format!("{id_code}-login-1"), "activity_type": "admin_login_success", "ago": "2d",
              "performed_by": "1", "ip": "192.0.2.10", "metadata": { "sign_in_method": "google" } },
            { "id": format!("{id_code}-login-2"), "activity_type": "admin_login_success", "ago": "3d",
              "performed_by": "2", "ip": "192.0.2.11", "metadata": { "sign_in_method": "saml" } }
        ]
    })
}

/// The token of the workspace [`named_workspace`]`(name, ..)` makes.
pub fn token_of(name: &str) -> String {
    format!("tok_{name}_5f1e0c9a2b7d")
}

/// A healthy workspace `name` whose token [`token_of`]`(name)` reads admins and activity
/// logs: what the daemon tests onboard with [`crate::support::World::onboard_named`].
pub fn named_workspace(name: &str, region: &str) -> serde_json::Value {
    workspace_json(
        name,
        region,
        &token_of(name),
        &["read_admins", "read_admin_activity_logs"],
    )
}
