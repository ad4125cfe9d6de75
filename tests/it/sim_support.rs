//! Shared helpers for tests that run the client against the simulator.

use std::net::SocketAddr;
use std::time::Duration;

use intercom_sim::{
    scopes, AdminSpec, EventSpec, RoleSpec, Scenario, Simulator, TokenSpec, Workspace,
};
use intercom_sspm::config::{BaseUrls, IntercomSettings};
use intercom_sspm::intercom::{IntercomClient, IntercomError, Session};
use intercom_sspm::Region;
use secrecy::SecretString;

pub const TOKEN: &str = "sim_test_us_0123456789abcdef";

pub fn listen() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub async fn start(scenario: Scenario) -> Simulator {
    Simulator::start(scenario, listen())
        .await
        .expect("simulator starts")
}

/// Short timeouts and tiny backoffs so failure paths finish in milliseconds.
pub fn settings(sim: &Simulator) -> IntercomSettings {
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
