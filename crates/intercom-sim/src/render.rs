//! Response bodies, shaped exactly like the fixtures in tests/fixtures/intercom (key names,
//! `type` values, nesting). Rendered from borrowed views straight into bytes: no
//! intermediate `serde_json::Value`, so serving a page costs one pass over its entries.

use std::borrow::Cow;

use base64::Engine;
use serde::Serialize;
use serde_json::value::RawValue;

use super::scenario::{
    describe, AdminSpec, EventSpec, NextStyle, TeamPriorityLevelSpec, TokenSpec, Workspace,
};
use crate::Region;

fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("views serialize infallibly")
}

fn region_label(region: Region) -> &'static str {
    match region {
        Region::Us => "US",
        Region::Eu => "EU",
        Region::Au => "AU",
    }
}

// ---------------------------------------------------------------- errors

#[derive(Serialize)]
struct ErrorListView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    request_id: Option<&'a str>,
    errors: [ErrorItemView<'a>; 1],
}

#[derive(Serialize)]
struct ErrorItemView<'a> {
    code: &'a str,
    message: &'a str,
}

/// `{"type":"error.list","request_id":...,"errors":[{"code":...,"message":...}]}`.
pub(crate) fn error_body(request_id: Option<&str>, code: &str, message: &str) -> Vec<u8> {
    to_bytes(&ErrorListView {
        kind: "error.list",
        request_id,
        errors: [ErrorItemView { code, message }],
    })
}

// ---------------------------------------------------------------- /me

#[derive(Serialize)]
struct MeView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    email: &'a str,
    name: &'a str,
    email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_title: Option<&'a str>,
    away_mode_enabled: bool,
    away_mode_reassign: bool,
    has_inbox_seat: bool,
    team_ids: &'a [i64],
    app: AppView<'a>,
    avatar: MeAvatarView<'a>,
}

#[derive(Serialize)]
struct AppView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id_code: &'a str,
    name: &'a str,
    created_at: i64,
    secure: bool,
    identity_verification: bool,
    timezone: &'a str,
    region: &'static str,
}

#[derive(Serialize)]
struct MeAvatarView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    image_url: Option<&'a str>,
}

/// The teammate a token acts for: its inline `owner`, else `owner_admin_id`, else the
/// workspace's first admin.
pub(crate) fn token_owner<'a>(ws: &'a Workspace, token: &'a TokenSpec) -> Option<&'a AdminSpec> {
    if let Some(owner) = &token.owner {
        return Some(owner.as_ref());
    }
    match &token.owner_admin_id {
        Some(id) => ws.admins.iter().find(|a| &a.id == id),
        None => ws.admins.first(),
    }
}

pub(crate) fn me(ws: &Workspace, owner: Option<&AdminSpec>) -> Vec<u8> {
    // A workspace without teammates still answers /me, as a token always has an owner.
    let fallback;
    let owner = match owner {
        Some(o) => o,
        None => {
            fallback = AdminSpec {
                id: "0".into(),
                name: "Token Owner".into(),
                email: format!("owner@{}.example", ws.id_code),
                job_title: None,
                away_mode_enabled: false,
                away_mode_reassign: false,
                away_status_reason_id: None,
                has_inbox_seat: true,
                team_ids: Vec::new(),
                avatar_url: None,
                role: None,
                email_verified: Some(true),
                team_priority_level: None,
            };
            &fallback
        }
    };
    to_bytes(&MeView {
        kind: "admin",
        id: &owner.id,
        email: &owner.email,
        name: &owner.name,
        email_verified: owner.email_verified,
        job_title: owner.job_title.as_deref(),
        away_mode_enabled: owner.away_mode_enabled,
        away_mode_reassign: owner.away_mode_reassign,
        has_inbox_seat: owner.has_inbox_seat,
        team_ids: &owner.team_ids,
        app: AppView {
            kind: "app",
            id_code: &ws.id_code,
            name: &ws.name,
            created_at: ws.created_at,
            // "Secure mode" was the old name of identity verification (API.md §2.2).
            secure: ws.identity_verification,
            identity_verification: ws.identity_verification,
            timezone: &ws.timezone,
            region: region_label(ws.region),
        },
        avatar: MeAvatarView {
            kind: "avatar",
            image_url: owner.avatar_url.as_deref(),
        },
    })
}

// ---------------------------------------------------------------- /admins

#[derive(Serialize)]
struct AdminListView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    admins: Vec<AdminView<'a>>,
}

#[derive(Serialize)]
struct AdminView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    name: &'a str,
    email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_title: Option<&'a str>,
    away_mode_enabled: bool,
    away_mode_reassign: bool,
    away_status_reason_id: Option<i64>,
    has_inbox_seat: bool,
    team_ids: &'a [i64],
    /// Outer `None`: not requested (`display_avatar` unset); `Some(None)`: `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar: Option<Option<AvatarView<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<RoleView<'a>>,
    team_priority_level: Option<&'a TeamPriorityLevelSpec>,
}

#[derive(Serialize)]
struct AvatarView<'a> {
    image_url: &'a str,
}

#[derive(Serialize)]
struct RoleView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    name: &'a str,
}

fn admin_view(a: &AdminSpec, display_avatar: bool, roles: bool) -> AdminView<'_> {
    AdminView {
        kind: "admin",
        id: &a.id,
        name: &a.name,
        email: &a.email,
        job_title: a.job_title.as_deref(),
        away_mode_enabled: a.away_mode_enabled,
        away_mode_reassign: a.away_mode_reassign,
        away_status_reason_id: a.away_status_reason_id,
        has_inbox_seat: a.has_inbox_seat,
        team_ids: &a.team_ids,
        avatar: display_avatar.then(|| {
            a.avatar_url
                .as_deref()
                .map(|image_url| AvatarView { image_url })
        }),
        role: a.role.as_ref().filter(|_| roles).map(|r| RoleView {
            kind: "role",
            id: &r.id,
            name: &r.name,
        }),
        team_priority_level: a.team_priority_level.as_ref(),
    }
}

/// `roles`: whether the requested API version has `admin.role` (2.16+).
pub(crate) fn admins(ws: &Workspace, display_avatar: bool, roles: bool) -> Vec<u8> {
    let admins = ws
        .admins
        .iter()
        .map(|a| admin_view(a, display_avatar, roles))
        .collect();
    to_bytes(&AdminListView {
        kind: "admin.list",
        admins,
    })
}

/// `GET /admins/{admin_id}`: the same `admin` object as in the list (the spec's example has
/// no avatar, so none is rendered).
pub(crate) fn admin(a: &AdminSpec, roles: bool) -> Vec<u8> {
    to_bytes(&admin_view(a, false, roles))
}

// ---------------------------------------------------------------- /admins/activity_logs

/// A validated activity-log request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogQuery {
    pub after: i64,
    pub before: Option<i64>,
    pub per_page: u32,
    pub position: Position,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position {
    /// 1-based page number (URL-style pagination).
    Page(u32),
    /// Entries strictly after this `(created_at, id)` in serving order (cursor pagination).
    After(i64, String),
}

/// How `pages.next` is overridden by a fault.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NextOverride<'a> {
    None,
    Foreign(&'a str),
    Loop,
}

#[derive(Serialize)]
struct LogListView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    pages: PagesView<'a>,
    activity_logs: Vec<EventView<'a>>,
}

#[derive(Serialize)]
struct PagesView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    next: Option<NextView<'a>>,
    page: u32,
    per_page: u32,
    total_pages: u32,
}

#[derive(Serialize)]
#[serde(untagged)]
enum NextView<'a> {
    Url(String),
    Loop(&'a str),
    Cursor {
        per_page: u32,
        starting_after: String,
    },
}

#[derive(Serialize)]
struct EventView<'a> {
    id: &'a str,
    performed_by: PerformedByView<'a>,
    metadata: Option<&'a RawValue>,
    created_at: i64,
    activity_type: &'a str,
    activity_description: Cow<'a, str>,
}

#[derive(Serialize)]
struct PerformedByView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
}

/// The performer's current name, else their recorded email, else their id. A linear scan:
/// workspaces have tens of teammates, and it spares every stored event a description.
fn performer_name<'a>(ws: &'a Workspace, e: &'a EventSpec) -> &'a str {
    ws.admins
        .iter()
        .find(|a| a.id == e.performed_by)
        .map(|a| a.name.as_str())
        .or(e.performed_by_email.as_deref())
        .unwrap_or(&e.performed_by)
}

pub(crate) fn encode_cursor(created_at: i64, id: &str) -> String {
    // Shaped like the spec example: base64 of `[created_at_ms,"id"]`.
    let raw = serde_json::to_vec(&(created_at.saturating_mul(1000), id)).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

pub(crate) fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(cursor.trim())
        .ok()?;
    let (ms, id): (i64, String) = serde_json::from_slice(&raw).ok()?;
    Some((ms.div_euclid(1000), id))
}

/// One page of the workspace's events (already sorted newest first). `next_base` is the URL
/// of this endpoint on the host the client used, without a query.
pub(crate) fn activity_page(
    ws: &Workspace,
    q: &LogQuery,
    next_base: &str,
    self_url: &str,
    next_override: NextOverride<'_>,
) -> Vec<u8> {
    let events = &ws.events;
    let created = |e: &EventSpec| e.created_at.unwrap_or(0);
    // The window [after, before] is a contiguous run of the descending list.
    let lo = match q.before {
        Some(b) => events.partition_point(|e| created(e) > b),
        None => 0,
    };
    let hi = events.partition_point(|e| created(e) >= q.after).max(lo);
    let window = &events[lo..hi];
    let per = q.per_page as usize;
    let total_pages = window.len().div_ceil(per).max(1) as u32;
    let start = match &q.position {
        Position::Page(p) => (*p as usize - 1).saturating_mul(per).min(window.len()),
        Position::After(t, id) => {
            window.partition_point(|e| (created(e), e.id.as_str()) >= (*t, id.as_str()))
        }
    };
    let end = (start + per).min(window.len());
    let page_entries = &window[start..end];
    let page = (start / per) as u32 + 1;
    let more = end < window.len();

    let next = if !more {
        None
    } else {
        match next_override {
            NextOverride::Foreign(url) => Some(NextView::Url(url.to_string())),
            NextOverride::Loop => Some(NextView::Loop(self_url)),
            NextOverride::None => Some(match ws.pagination.next_style {
                NextStyle::Url => {
                    let mut url = format!("{next_base}?created_at_after={}", q.after);
                    if let Some(b) = q.before {
                        url.push_str(&format!("&created_at_before={b}"));
                    }
                    url.push_str(&format!("&per_page={}&page={}", q.per_page, page + 1));
                    NextView::Url(url)
                }
                NextStyle::Cursor => {
                    let last = &window[end - 1];
                    NextView::Cursor {
                        per_page: q.per_page,
                        starting_after: encode_cursor(created(last), &last.id),
                    }
                }
            }),
        }
    };
    let activity_logs = page_entries
        .iter()
        .map(|e| EventView {
            id: &e.id,
            performed_by: PerformedByView {
                kind: "admin",
                id: &e.performed_by,
                email: e.performed_by_email.as_deref(),
                ip: e.ip.as_deref(),
            },
            metadata: e.metadata.as_ref().map(|m| m.raw()),
            created_at: created(e),
            activity_type: &e.activity_type,
            activity_description: match &e.description {
                Some(d) => Cow::Borrowed(d.as_str()),
                None => Cow::Owned(describe(performer_name(ws, e), &e.activity_type)),
            },
        })
        .collect();
    to_bytes(&LogListView {
        kind: "activity_log.list",
        pages: PagesView {
            kind: "pages",
            next,
            page,
            per_page: q.per_page,
            total_pages,
        },
        activity_logs,
    })
}

// ---------------------------------------------------------------- probes

#[derive(Serialize)]
struct TagListView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    data: Vec<TagView<'a>>,
}

#[derive(Serialize)]
struct TagView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    name: &'a str,
}

pub(crate) fn tags(ws: &Workspace) -> Vec<u8> {
    to_bytes(&TagListView {
        kind: "list",
        data: ws
            .tags
            .iter()
            .enumerate()
            .map(|(i, name)| TagView {
                kind: "tag",
                id: (1000 + i).to_string(),
                name,
            })
            .collect(),
    })
}

#[derive(Serialize)]
struct IpAllowlistView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    enabled: bool,
    ip_allowlist: &'a [String],
}

pub(crate) fn ip_allowlist(ws: &Workspace) -> Vec<u8> {
    to_bytes(&IpAllowlistView {
        kind: "ip_allowlist",
        enabled: ws.ip_allowlist.enabled,
        ip_allowlist: &ws.ip_allowlist.ip_allowlist,
    })
}

#[derive(Serialize)]
struct TeamListView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    teams: Vec<TeamView<'a>>,
}

#[derive(Serialize)]
struct TeamView<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    name: &'a str,
    admin_ids: &'a [i64],
    admin_priority_level: Option<()>,
    assignment_limit: Option<i64>,
    distribution_method: Option<&'a str>,
}

pub(crate) fn teams(ws: &Workspace) -> Vec<u8> {
    to_bytes(&TeamListView {
        kind: "team.list",
        teams: ws
            .teams
            .iter()
            .map(|t| TeamView {
                kind: "team",
                id: &t.id,
                name: &t.name,
                admin_ids: &t.admin_ids,
                admin_priority_level: None,
                assignment_limit: t.assignment_limit,
                distribution_method: t.distribution_method.as_deref(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use serde_json::Value;

    fn workspace(n_events: usize) -> Workspace {
        let events: Vec<String> = (0..n_events)
            .map(|i| {
                format!(
                    r#"{{"id":"e{i:03}","activity_type":"admin_logout","created_at":{},"performed_by":"1"}}"#,
                    1000 + i
                )
            })
            .collect();
        let json = format!(
            r#"{{"workspaces":[{{"id_code":"w","name":"W","region":"us",
                "admins":[{{"id":"1","name":"A","email":"a@w.example"}}],
                "events":[{}]}}]}}"#,
            events.join(",")
        );
        let mut ws = Scenario::parse(&json, "t").unwrap().workspaces.remove(0);
        ws.resolve(std::time::SystemTime::now());
        ws
    }

    fn page(ws: &Workspace, q: &LogQuery) -> Value {
        serde_json::from_slice(&activity_page(
            ws,
            q,
            "http://h/us/x",
            "self",
            NextOverride::None,
        ))
        .unwrap()
    }

    #[test]
    fn url_pages_cover_the_window_newest_first() {
        let ws = workspace(25);
        let q = |p| LogQuery {
            after: 1003,
            before: Some(1022),
            per_page: 8,
            position: Position::Page(p),
        };
        let p1 = page(&ws, &q(1));
        assert_eq!(p1["pages"]["total_pages"], 3);
        assert_eq!(p1["activity_logs"][0]["created_at"], 1022);
        assert_eq!(
            p1["pages"]["next"],
            "http://h/us/x?created_at_after=1003&created_at_before=1022&per_page=8&page=2"
        );
        let p3 = page(&ws, &q(3));
        assert_eq!(p3["activity_logs"].as_array().unwrap().len(), 4);
        assert_eq!(p3["activity_logs"][3]["created_at"], 1003);
        assert!(p3["pages"]["next"].is_null());
    }

    #[test]
    fn cursor_pages_continue_after_the_last_entry() {
        let mut ws = workspace(5);
        ws.pagination.next_style = NextStyle::Cursor;
        let mut q = LogQuery {
            after: 0,
            before: None,
            per_page: 2,
            position: Position::Page(1),
        };
        let mut seen = Vec::new();
        loop {
            let p = page(&ws, &q);
            for e in p["activity_logs"].as_array().unwrap() {
                seen.push(e["id"].as_str().unwrap().to_string());
            }
            match p["pages"]["next"]["starting_after"].as_str() {
                Some(c) => {
                    let (t, id) = decode_cursor(c).unwrap();
                    q.position = Position::After(t, id);
                }
                None => break,
            }
        }
        assert_eq!(seen, ["e004", "e003", "e002", "e001", "e000"]);
    }

    #[test]
    fn cursor_round_trip() {
        let c = encode_cursor(1_734_537_253, "f48c653b");
        assert_eq!(c, "WzE3MzQ1MzcyNTMwMDAsImY0OGM2NTNiIl0=");
        assert_eq!(decode_cursor(&c), Some((1_734_537_253, "f48c653b".into())));
        assert_eq!(decode_cursor("%%%"), None);
    }
}
