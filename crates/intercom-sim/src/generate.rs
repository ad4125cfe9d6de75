//! Large, deterministic scenarios for tests and benchmarks: N workspaces × M teammates ×
//! K events, the same for the same parameters on every machine and crate version (a local
//! SplitMix64, not `rand`'s unspecified algorithms).
//!
//! Each workspace is generated from its own seed, so `generate_workspace` can build any one
//! of them on demand without generating the others.

use std::time::Duration;

use serde_json::json;

use super::scenario::{
    scopes, AdminSpec, EventSpec, NextStyle, PaginationSpec, RawJson, RoleSpec, Scenario,
    TokenSpec, Workspace,
};
use crate::Region;

#[derive(Debug, Clone)]
pub struct GenerateParams {
    pub workspaces: usize,
    pub admins_per_workspace: usize,
    pub events_per_workspace: usize,
    pub seed: u64,
    /// Relative weights of US, EU and AU workspaces.
    pub region_weights: [u32; 3],
    /// Share of tokens that may read the activity log (`read_admin_activity_logs`).
    pub activity_scope_share: f64,
    /// Share of tokens that also hold a scope they do not need (`read_tags`).
    pub extra_scope_share: f64,
    /// Share of workspaces with risky teammates (personal or shared mailboxes, outsiders,
    /// no role) and risky events (login bursts, 2FA off, exports, impersonation).
    pub risky_share: f64,
    /// Share of workspaces whose activity log pages with the spec's cursor object.
    pub cursor_share: f64,
    /// Events are spread over this much history before the simulator starts.
    pub history: Duration,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            workspaces: 10,
            admins_per_workspace: 5,
            events_per_workspace: 20,
            seed: 1,
            region_weights: [6, 3, 1],
            activity_scope_share: 0.7,
            extra_scope_share: 0.2,
            risky_share: 0.3,
            cursor_share: 0.2,
            history: Duration::from_secs(90 * 86_400),
        }
    }
}

/// The whole scenario.
pub fn generate(p: &GenerateParams) -> Scenario {
    Scenario {
        description: Some(format!(
            "generated: {} workspaces x {} admins x {} events, seed {}",
            p.workspaces, p.admins_per_workspace, p.events_per_workspace, p.seed
        )),
        workspaces: (0..p.workspaces)
            .map(|i| generate_workspace(p, i))
            .collect(),
    }
}

/// Workspace number `index` of the scenario `generate(p)` would produce.
pub fn generate_workspace(p: &GenerateParams, index: usize) -> Workspace {
    let mut rng = SplitMix64::new(p.seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let region = pick_region(&mut rng, p.region_weights);
    let id_code = format!("gen{index:07x}");
    let domain = format!("ws{index}.example");
    let risky = rng.chance(p.risky_share);

    let mut token_scopes = vec![scopes::READ_ADMINS.to_string()];
    if rng.chance(p.activity_scope_share) {
        token_scopes.push(scopes::READ_ADMIN_ACTIVITY_LOGS.into());
    }
    if rng.chance(p.extra_scope_share) {
        token_scopes.push(scopes::READ_TAGS.into());
    }
    let token = TokenSpec {
        token: format!("sim_{id_code}_{region}_{:016x}", rng.next()),
        scopes: token_scopes,
        owner_admin_id: None,
        owner: None,
        refusal: None,
        revoked: false,
        faults: None,
    };

    let admins: Vec<AdminSpec> = (0..p.admins_per_workspace)
        .map(|j| make_admin(&mut rng, index, j, &domain, risky))
        .collect();
    let events = make_events(&mut rng, p, &admins, risky);

    Workspace {
        id_code,
        name: format!("{} {}", pick(&mut rng, COMPANY_WORDS), index),
        region,
        timezone: pick(&mut rng, TIMEZONES).to_string(),
        created_at: 1_500_000_000 + (rng.below(200_000_000) as i64),
        identity_verification: !risky || rng.chance(0.5),
        tokens: vec![token],
        admins,
        events,
        teams: Vec::new(),
        tags: Vec::new(),
        ip_allowlist: Default::default(),
        pagination: PaginationSpec {
            next_style: if rng.chance(p.cursor_share) {
                NextStyle::Cursor
            } else {
                NextStyle::Url
            },
            ..Default::default()
        },
        refusal: Default::default(),
        rate_limit: Default::default(),
        faults: None,
    }
}

fn make_admin(rng: &mut SplitMix64, ws: usize, j: usize, domain: &str, risky: bool) -> AdminSpec {
    let first = pick(rng, FIRST_NAMES);
    let last = pick(rng, LAST_NAMES);
    let mut email = format!(
        "{}.{}{j}@{domain}",
        first.to_ascii_lowercase(),
        last.to_ascii_lowercase()
    );
    let mut name = format!("{first} {last}");
    let mut role = Some(pick(rng, ROLES));
    // The first teammate owns the token and is always a clean account; risky workspaces get
    // one of each risky kind after it.
    if risky {
        match j {
            1 => {
                email = format!(
                    "{}.{}{ws}@gmail.com",
                    first.to_ascii_lowercase(),
                    last.to_ascii_lowercase()
                )
            }
            2 => {
                email = format!("support@{domain}");
                name = "Support Team".into();
            }
            3 => email = format!("{}@contractor{ws}.example", first.to_ascii_lowercase()),
            4 => role = None,
            _ => {}
        }
    }
    let away = j > 0 && rng.chance(0.1);
    AdminSpec {
        id: (991_000_000u64 + (ws as u64 % 1_000_000) * 1000 + j as u64).to_string(),
        name,
        email,
        job_title: rng.chance(0.6).then(|| pick(rng, JOB_TITLES).to_string()),
        away_mode_enabled: away,
        away_mode_reassign: away && rng.chance(0.5),
        away_status_reason_id: None,
        has_inbox_seat: rng.chance(0.8),
        team_ids: Vec::new(),
        avatar_url: rng.chance(0.5).then(|| {
            "https://static.intercomassets.com/assets/default-avatars/admins/128.png".to_string()
        }),
        role: role.map(|(id, name)| RoleSpec {
            id: id.to_string(),
            name: name.to_string(),
        }),
        email_verified: (j == 0).then_some(true),
        team_priority_level: None,
    }
}

fn make_events(
    rng: &mut SplitMix64,
    p: &GenerateParams,
    admins: &[AdminSpec],
    risky: bool,
) -> Vec<EventSpec> {
    if admins.is_empty() {
        return Vec::new();
    }
    let history = p.history.as_secs().max(1);
    let mut events = Vec::with_capacity(p.events_per_workspace);
    while events.len() < p.events_per_workspace {
        let admin = &admins[rng.below(admins.len() as u64) as usize];
        let ago = rng.below(history);
        let ip = format!("198.51.100.{}", rng.below(254) + 1);
        // A login burst: failures from one address, then a success from it.
        if risky && events.len() + 7 <= p.events_per_workspace && rng.chance(0.05) {
            let attacker = format!("203.0.113.{}", rng.below(254) + 1);
            for k in 0..6u64 {
                events.push(event(
                    rng,
                    "admin_login_failure",
                    admin,
                    ago + 600 - k * 60,
                    &attacker,
                    Some(RawJson::from(json!({"sign_in_method": "email_password"}))),
                ));
            }
            events.push(event(
                rng,
                "admin_login_success",
                admin,
                ago + 60,
                &attacker,
                Some(RawJson::from(json!({"sign_in_method": "email_password"}))),
            ));
            continue;
        }
        let table = if risky { RISKY_EVENTS } else { BENIGN_EVENTS };
        let kind = pick_weighted(rng, table);
        let metadata = metadata_for(rng, kind, admin);
        events.push(event(rng, kind, admin, ago, &ip, metadata));
    }
    events
}

fn event(
    rng: &mut SplitMix64,
    kind: &str,
    admin: &AdminSpec,
    ago_secs: u64,
    ip: &str,
    metadata: Option<RawJson>,
) -> EventSpec {
    let (a, b) = (rng.next(), rng.next());
    EventSpec {
        id: format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        ),
        activity_type: kind.to_string(),
        created_at: None,
        ago: Some(Duration::from_secs(ago_secs)),
        performed_by: admin.id.clone(),
        performed_by_email: None,
        ip: Some(ip.to_string()),
        metadata,
        description: None,
    }
}

fn metadata_for(rng: &mut SplitMix64, kind: &str, admin: &AdminSpec) -> Option<RawJson> {
    Some(RawJson::from(match kind {
        "admin_login_success" => {
            json!({"sign_in_method": pick(rng, &["email_password", "google", "saml"])})
        }
        "admin_login_failure" => json!({"sign_in_method": "email_password"}),
        "admin_away_mode_change" => json!({
            "away_mode": true,
            "away_status_reason": "😌 On a break",
            "reassign_conversations": false,
            "source": format!("admin update from web - Admin id: {}", admin.id),
            "auto_changed": false,
            "update_by": admin.id.parse::<i64>().unwrap_or(0),
            "update_by_name": admin.name,
        }),
        "admin_occupancy_state_change" => json!({
            "previous_state": "idle", "new_state": "occupied",
            "threshold_minutes": 15, "auto": true,
        }),
        "admin_two_factor_auth_change" => json!({"enabled": rng.chance(0.3)}),
        "admin_impersonation_consent_approved" => json!({
            "consent_id": rng.below(1_000_000),
            "expired_at": "2025-12-04T09:31:57.000Z",
        }),
        "message_state_change" => json!({
            "message": {"id": rng.below(100_000), "title": "Welcome"},
            "before": "draft", "after": "live",
        }),
        "app_name_change" => json!({"before": "Old name", "after": "New name"}),
        _ => return None,
    }))
}

const BENIGN_EVENTS: &[(&str, u32)] = &[
    ("admin_login_success", 30),
    ("admin_logout", 10),
    ("admin_away_mode_change", 8),
    ("admin_occupancy_state_change", 6),
    ("message_state_change", 5),
    ("conversation_topic_change", 3),
    ("app_team_membership_modification", 3),
    ("admin_login_failure", 2),
    ("app_name_change", 1),
];

const RISKY_EVENTS: &[(&str, u32)] = &[
    ("admin_login_success", 25),
    ("admin_logout", 8),
    ("admin_login_failure", 6),
    ("admin_away_mode_change", 5),
    ("message_state_change", 4),
    ("admin_two_factor_auth_change", 2),
    ("admin_permission_change", 2),
    ("role_change", 2),
    ("admin_invite_creation", 2),
    ("app_data_export", 1),
    ("bulk_export", 1),
    ("app_package_installation", 1),
    ("app_webhook_creation", 1),
    ("admin_impersonation_start", 1),
    ("admin_impersonation_end", 1),
    ("admin_impersonation_consent_approved", 1),
    ("security_settings_change", 1),
    ("app_authentication_method_change", 1),
    ("app_identity_verification_change", 1),
    ("admin_unauthorized_sign_in_method", 1),
    ("inbox_bulk_action", 1),
];

const FIRST_NAMES: &[&str] = &[
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi",
    "Liam", "Mara", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Viktor",
    "Wen", "Yara", "Zoe",
];
const LAST_NAMES: &[&str] = &[
    "Adams", "Brennan", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
    "Jensen", "Kowalski", "Lopez", "Murphy", "Nakamura", "Okafor", "Patel", "Rossi", "Schmidt",
    "Tanaka", "Virtanen", "Weber", "Young",
];
const JOB_TITLES: &[&str] = &[
    "Support Lead",
    "Support Engineer",
    "Customer Success",
    "Head of Support",
    "Sales",
    "Engineer",
    "Operations",
];
const ROLES: &[(&str, &str)] = &[
    ("1", "Workspace Admin"),
    ("2", "Support Agent"),
    ("2", "Support Agent"),
    ("2", "Support Agent"),
    ("3", "Viewer"),
];
const COMPANY_WORDS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Wonka",
];
const TIMEZONES: &[&str] = &[
    "America/Los_Angeles",
    "America/New_York",
    "Europe/Dublin",
    "Europe/Berlin",
    "Australia/Sydney",
    "Asia/Tokyo",
];

fn pick<T: Copy>(rng: &mut SplitMix64, items: &[T]) -> T {
    items[rng.below(items.len() as u64) as usize]
}

fn pick_weighted(rng: &mut SplitMix64, table: &[(&'static str, u32)]) -> &'static str {
    let total: u64 = table.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut x = rng.below(total);
    for (kind, w) in table {
        if x < u64::from(*w) {
            return kind;
        }
        x -= u64::from(*w);
    }
    table[0].0
}

fn pick_region(rng: &mut SplitMix64, weights: [u32; 3]) -> Region {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return Region::Us;
    }
    let x = rng.below(total);
    if x < u64::from(weights[0]) {
        Region::Us
    } else if x < u64::from(weights[0]) + u64::from(weights[1]) {
        Region::Eu
    } else {
        Region::Au
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fixed forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is irrelevant at these sizes.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_valid() {
        let p = GenerateParams {
            workspaces: 50,
            ..Default::default()
        };
        let a = generate(&p);
        assert_eq!(a, generate(&p));
        a.validate().unwrap();
        assert_eq!(a.workspaces[17], generate_workspace(&p, 17));
        let other = generate(&GenerateParams {
            seed: 2,
            ..p.clone()
        });
        assert_ne!(a, other);
    }

    #[test]
    fn sizes_and_mix() {
        let p = GenerateParams {
            workspaces: 400,
            admins_per_workspace: 6,
            events_per_workspace: 30,
            ..Default::default()
        };
        let s = generate(&p);
        assert_eq!(s.workspaces.len(), 400);
        assert!(s
            .workspaces
            .iter()
            .all(|w| w.admins.len() == 6 && w.events.len() == 30));
        let regions = |r| s.workspaces.iter().filter(|w| w.region == r).count();
        assert!(
            regions(Region::Us) > regions(Region::Eu) && regions(Region::Eu) > regions(Region::Au)
        );
        assert!(regions(Region::Au) > 0);
        let all_events = || s.workspaces.iter().flat_map(|w| &w.events);
        assert!(all_events().any(|e| e.activity_type == "admin_two_factor_auth_change"));
        assert!(all_events().any(|e| e
            .metadata
            .as_ref()
            .is_some_and(|m| m.get().contains("sign_in_method"))));
        assert!(s
            .workspaces
            .iter()
            .any(|w| w.admins.iter().any(|a| a.email.ends_with("@gmail.com"))));
        assert!(s
            .workspaces
            .iter()
            .any(|w| w.pagination.next_style == NextStyle::Cursor));
        let with_logs = s
            .workspaces
            .iter()
            .filter(|w| w.tokens[0].has_scope(scopes::READ_ADMIN_ACTIVITY_LOGS))
            .count();
        assert!((200..360).contains(&with_logs), "{with_logs}");
    }
}
