//! Message bodies, pure: the stored alert event rendered for each channel kind.
//!
//! The event (schema `intercom-sspm/alert`, version 1, docs/ALERTS.md) is what the outbox
//! row holds; rendering happens at send time so a receiver always gets the body its
//! channel's current format asks for. Everything in it came from Intercom or from check
//! text and is attacker-controlled: the HTML part escapes it, Slack mrkdwn escapes it,
//! and every list is bounded when the event is built.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::channels::WebhookFormat;
use super::rules::Event;
use crate::db::findings::FindingListRow;
use crate::status::{FindingStatus, InstanceStatus};

pub const SCHEMA: &str = "intercom-sspm/alert";
pub const SCHEMA_VERSION: u32 = 1;
/// Most findings one message lists; the rest are counted in `omitted`.
pub const MAX_FINDINGS_PER_MESSAGE: usize = 100;
/// Longest title or remediation text carried into a message.
const MAX_TEXT: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Scan,
    Digest,
    Test,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRef {
    pub id: Uuid,
    pub name: String,
    pub region: String,
    pub workspace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub from: InstanceStatus,
    pub to: InstanceStatus,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingChange {
    pub event: Event,
    pub finding_id: Uuid,
    /// Set in digests, which span instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub check_id: String,
    pub resource: String,
    pub status: FindingStatus,
    pub severity: String,
    pub title: String,
    pub remediation: String,
    #[serde(default)]
    pub evidence: Value,
    #[serde(default)]
    pub compliance: Value,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenCount {
    pub instance: String,
    pub critical: i64,
    pub high: i64,
    pub medium: i64,
    pub low: i64,
    pub info: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub open: Vec<OpenCount>,
}

/// What one outbox row says. `findings` is ordered most severe first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub schema: String,
    pub version: u32,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    pub instance: Option<InstanceRef>,
    pub scan_id: Option<Uuid>,
    /// The instance's first completed scan: one summary instead of one alert per finding.
    #[serde(default)]
    pub first_scan: bool,
    pub health: Option<Health>,
    pub findings: Vec<FindingChange>,
    /// Findings left out beyond `MAX_FINDINGS_PER_MESSAGE`.
    #[serde(default)]
    pub omitted: usize,
    #[serde(default)]
    pub digest: Option<Digest>,
}

impl AlertEvent {
    pub fn new(kind: EventKind, at: DateTime<Utc>) -> Self {
        AlertEvent {
            schema: SCHEMA.into(),
            version: SCHEMA_VERSION,
            kind,
            at,
            instance: None,
            scan_id: None,
            first_scan: false,
            health: None,
            findings: Vec::new(),
            omitted: 0,
            digest: None,
        }
    }

    /// Sorts most severe first and bounds the list (and each text).
    pub fn bound(&mut self) {
        self.findings.sort_by_key(|f| {
            (
                severity_rank(&f.severity),
                f.check_id.clone(),
                f.resource.clone(),
            )
        });
        if self.findings.len() > MAX_FINDINGS_PER_MESSAGE {
            self.omitted += self.findings.len() - MAX_FINDINGS_PER_MESSAGE;
            self.findings.truncate(MAX_FINDINGS_PER_MESSAGE);
        }
        for f in &mut self.findings {
            truncate(&mut f.title);
            truncate(&mut f.remediation);
        }
    }

    pub fn count(&self, event: Event) -> usize {
        self.findings.iter().filter(|f| f.event == event).count()
    }

    /// One line saying what happened, for subjects, Slack fallbacks and PagerDuty.
    pub fn headline(&self) -> String {
        let instance = self
            .instance
            .as_ref()
            .map(|i| i.name.as_str())
            .unwrap_or("intercom-sspm");
        match self.kind {
            EventKind::Test => "intercom-sspm test message: this channel works".into(),
            EventKind::Digest => {
                let open: i64 = self
                    .digest
                    .iter()
                    .flat_map(|d| &d.open)
                    .map(|o| o.critical + o.high + o.medium + o.low + o.info)
                    .sum();
                format!(
                    "intercom-sspm digest: {open} open finding(s), {} opened and {} resolved since the last digest",
                    self.count(Event::Opened) + self.count(Event::Reopened),
                    self.count(Event::Resolved)
                )
            }
            EventKind::Scan => {
                let total = self.findings.len() + self.omitted;
                let mut parts = Vec::new();
                if let Some(h) = &self.health {
                    parts.push(format!("scan health {} -> {}", h.from, h.to));
                }
                if self.first_scan && total > 0 {
                    parts.push(format!("first scan: {total} finding(s)"));
                } else {
                    let opened = self.count(Event::Opened) + self.count(Event::Reopened);
                    let resolved = self.count(Event::Resolved);
                    if opened > 0 {
                        parts.push(format!("{opened} finding(s) opened"));
                    }
                    if resolved > 0 {
                        parts.push(format!("{resolved} resolved"));
                    }
                    if self.omitted > 0 {
                        parts.push(format!("{} more", self.omitted));
                    }
                }
                if parts.is_empty() {
                    parts.push("no changes".into());
                }
                format!("[{instance}] {}", parts.join(", "))
            }
        }
    }
}

fn truncate(s: &mut String) {
    if s.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

pub fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 0,
        "high" => 1,
        "medium" => 2,
        "low" => 3,
        _ => 4,
    }
}

/// The stable JSON body: the event plus the message id (the outbox row id).
pub fn json_body(event: &AlertEvent, message_id: Uuid) -> Value {
    let mut v = serde_json::to_value(event).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut v {
        map.insert("id".into(), json!(message_id));
    }
    v
}

fn ocsf_rows(event: &AlertEvent) -> Vec<FindingListRow> {
    let instance = event.instance.as_ref();
    event
        .findings
        .iter()
        .map(|f| FindingListRow {
            id: f.finding_id,
            instance_id: instance.map(|i| i.id).unwrap_or_default(),
            instance_name: f
                .instance
                .clone()
                .or_else(|| instance.map(|i| i.name.clone()))
                .unwrap_or_default(),
            region: instance.map(|i| i.region.clone()).unwrap_or_default(),
            workspace_id: instance.and_then(|i| i.workspace_id.clone()),
            check_id: f.check_id.clone(),
            resource: f.resource.clone(),
            status: f.status,
            severity: f.severity.clone(),
            title: f.title.clone(),
            evidence: f.evidence.clone(),
            remediation: f.remediation.clone(),
            compliance: f.compliance.clone(),
            first_seen_at: f.first_seen_at,
            last_seen_at: f.last_seen_at,
            resolved_at: f.resolved_at,
        })
        .collect()
}

/// A webhook body and its content type.
pub fn webhook_body(
    format: WebhookFormat,
    event: &AlertEvent,
    message_id: Uuid,
) -> (&'static str, Vec<u8>) {
    let body = match format {
        WebhookFormat::Json => json_body(event, message_id),
        // OCSF 1.1 Detection Findings, exactly as `findings --format ocsf` prints them.
        WebhookFormat::Ocsf => Value::Array(
            ocsf_rows(event)
                .iter()
                .map(crate::export::ocsf::detection_finding)
                .collect(),
        ),
        WebhookFormat::Cloudevents => json!({
            "specversion": "1.0",
            "id": message_id,
            "source": "intercom-sspm",
            "type": format!("io.intercom-sspm.alert.{}", match event.kind {
                EventKind::Scan => "scan",
                EventKind::Digest => "digest",
                EventKind::Test => "test",
            }),
            "subject": event.instance.as_ref().map(|i| i.name.clone()),
            "time": event.at,
            "datacontenttype": "application/json",
            "dataschema": "https://github.com/intercom-sspm/intercom-sspm/blob/main/docs/ALERTS.md#json-schema-version-1",
            "data": json_body(event, message_id),
        }),
    };
    let content_type = match format {
        WebhookFormat::Cloudevents => "application/cloudevents+json",
        _ => "application/json",
    };
    (content_type, serde_json::to_vec(&body).unwrap_or_default())
}

/// Slack mrkdwn escaping: `&`, `<`, `>` are the control characters.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack Block Kit: a header, one section per finding (severity, title, remediation,
/// console link when `console_url` is known), and a context line.
pub fn slack_body(event: &AlertEvent, message_id: Uuid, console_url: Option<&str>) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": clip(&event.headline(), 150) }
    })];
    if let Some(h) = &event.health {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": format!(
                "*Scan health* `{}` → `{}`{}",
                slack_escape(h.from.as_str()), slack_escape(h.to.as_str()),
                h.detail.as_deref().map(|d| format!("\n{}", slack_escape(&clip(d, 500)))).unwrap_or_default()
            ) }
        }));
    }
    if let Some(d) = &event.digest {
        let lines: Vec<String> = d
            .open
            .iter()
            .map(|o| {
                format!(
                    "*{}*: {} critical, {} high, {} medium, {} low",
                    slack_escape(&o.instance),
                    o.critical,
                    o.high,
                    o.medium,
                    o.low
                )
            })
            .collect();
        if !lines.is_empty() {
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&lines.join("\n"), 2900)}}));
        }
    }
    // Slack allows 50 blocks per message; keep room for the header and context.
    for f in event.findings.iter().take(40) {
        let link = match console_url {
            Some(base) => format!(
                "\n<{}/findings/{}|Open in the console>",
                base.trim_end_matches('/'),
                f.finding_id
            ),
            None => String::new(),
        };
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": clip(&format!(
                "*{}* · {} · `{}`\n*{}*\n{}{}",
                f.severity.to_uppercase(),
                f.event.as_str(),
                slack_escape(&f.check_id),
                slack_escape(&f.title),
                slack_escape(&f.remediation),
                link
            ), 2900) }
        }));
    }
    let more = event.omitted + event.findings.len().saturating_sub(40);
    let instance = event
        .instance
        .as_ref()
        .map(|i| format!("{} ({})", i.name, i.region))
        .unwrap_or_default();
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": slack_escape(&format!(
            "intercom-sspm · {instance}{} · message {message_id}",
            if more > 0 { format!(" · {more} more finding(s) not shown") } else { String::new() }
        )) }]
    }));
    json!({ "text": event.headline(), "blocks": blocks })
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// One email: a plain-text part and an HTML part saying the same.
pub fn email_body(event: &AlertEvent, message_id: Uuid) -> Email {
    let subject = clip(&event.headline().replace(['\r', '\n'], " "), 200);
    let mut text = format!("{subject}\n\n");
    let mut html = format!(
        "<!doctype html><html><body><h2>{}</h2>",
        html_escape(&subject)
    );
    if let Some(i) = &event.instance {
        text.push_str(&format!("Instance: {} ({})\n", i.name, i.region));
        html.push_str(&format!(
            "<p>Instance: <b>{}</b> ({})</p>",
            html_escape(&i.name),
            html_escape(&i.region)
        ));
    }
    if let Some(h) = &event.health {
        text.push_str(&format!(
            "Scan health: {} -> {}{}\n",
            h.from,
            h.to,
            h.detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
        html.push_str(&format!(
            "<p>Scan health: {} &rarr; <b>{}</b>{}</p>",
            html_escape(h.from.as_str()),
            html_escape(h.to.as_str()),
            h.detail
                .as_deref()
                .map(|d| format!(" ({})", html_escape(d)))
                .unwrap_or_default()
        ));
    }
    if let Some(d) = &event.digest {
        text.push_str(&format!("Open findings ({} to {}):\n", d.since, d.until));
        html.push_str("<table border=\"1\" cellpadding=\"4\"><tr><th>Instance</th><th>Critical</th><th>High</th><th>Medium</th><th>Low</th><th>Info</th></tr>");
        for o in &d.open {
            text.push_str(&format!(
                "  {}: {} critical, {} high, {} medium, {} low, {} info\n",
                o.instance, o.critical, o.high, o.medium, o.low, o.info
            ));
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&o.instance),
                o.critical,
                o.high,
                o.medium,
                o.low,
                o.info
            ));
        }
        html.push_str("</table>");
    }
    if !event.findings.is_empty() {
        html.push_str("<ul>");
    }
    for f in &event.findings {
        text.push_str(&format!(
            "\n[{}] {} ({}): {}\n  check {} on {}\n  Remediation: {}\n",
            f.severity.to_uppercase(),
            f.event.as_str(),
            f.instance.as_deref().unwrap_or(""),
            f.title,
            f.check_id,
            f.resource,
            f.remediation
        ));
        html.push_str(&format!(
            "<li><b>{}</b> {} &middot; <code>{}</code> on <code>{}</code><br>{}<br><i>{}</i></li>",
            html_escape(&f.severity.to_uppercase()),
            html_escape(f.event.as_str()),
            html_escape(&f.check_id),
            html_escape(&f.resource),
            html_escape(&f.title),
            html_escape(&f.remediation)
        ));
    }
    if !event.findings.is_empty() {
        html.push_str("</ul>");
    }
    if event.omitted > 0 {
        text.push_str(&format!(
            "\n{} more finding(s) not listed.\n",
            event.omitted
        ));
        html.push_str(&format!(
            "<p>{} more finding(s) not listed.</p>",
            event.omitted
        ));
    }
    text.push_str(&format!("\n-- intercom-sspm, message {message_id}\n"));
    html.push_str(&format!(
        "<p style=\"color:#666\">intercom-sspm &middot; message {message_id}</p></body></html>"
    ));
    Email {
        subject,
        text,
        html,
    }
}

/// PagerDuty Events API v2: one event per finding (trigger on opened/reopened, resolve on
/// resolved, `dedup_key` = finding id) and one for health (`dedup_key` =
/// `instance:<id>:health`, resolved when the health is `ok` again).
pub fn pagerduty_events(event: &AlertEvent, routing_key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let instance = event.instance.as_ref();
    let source = instance
        .map(|i| format!("intercom:{}:{}", i.region, i.name))
        .unwrap_or_else(|| "intercom-sspm".into());
    if let (Some(h), Some(i)) = (&event.health, instance) {
        let dedup_key = format!("instance:{}:health", i.id);
        if h.to == InstanceStatus::Ok {
            out.push(json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}));
        } else {
            out.push(json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": dedup_key,
                "payload": {
                    "summary": clip(&format!("[{}] scan health {} -> {}", i.name, h.from, h.to), 1024),
                    "source": source,
                    "severity": "critical",
                    "component": "intercom-sspm",
                    "class": "scan_health",
                    "custom_details": { "detail": h.detail, "instance_id": i.id },
                }
            }));
        }
    }
    if event.kind == EventKind::Test {
        out.push(json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": format!("intercom-sspm-test:{}", event.at.timestamp()),
            "payload": { "summary": event.headline(), "source": source, "severity": "info" }
        }));
    }
    for f in &event.findings {
        let dedup_key = f.finding_id.to_string();
        match f.event {
            Event::Resolved => out.push(json!({
                "routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key
            })),
            _ => out.push(json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": dedup_key,
                "payload": {
                    "summary": clip(&format!("[{}] {}", instance.map(|i| i.name.as_str()).unwrap_or(""), f.title), 1024),
                    "source": source,
                    "severity": match f.severity.as_str() {
                        "critical" => "critical",
                        "high" => "error",
                        "medium" => "warning",
                        _ => "info",
                    },
                    "component": f.resource,
                    "class": f.check_id,
                    "custom_details": {
                        "check_id": f.check_id, "resource": f.resource,
                        "remediation": f.remediation, "event": f.event.as_str(),
                    },
                }
            })),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(event: Event, severity: &str, title: &str) -> FindingChange {
        FindingChange {
            event,
            finding_id: Uuid::new_v4(),
            instance: None,
            check_id: "workspace_2fa_not_enforced".into(),
            resource: "workspace".into(),
            status: if event == Event::Resolved {
                FindingStatus::Resolved
            } else {
                FindingStatus::Open
            },
            severity: severity.into(),
            title: title.into(),
            remediation: "Turn it on".into(),
            evidence: json!({}),
            compliance: json!({}),
            first_seen_at: Utc::now(),
            last_seen_at: Utc::now(),
            resolved_at: None,
        }
    }

    fn scan_event(findings: Vec<FindingChange>) -> AlertEvent {
        let mut e = AlertEvent::new(EventKind::Scan, Utc::now());
        e.instance = Some(InstanceRef {
            id: Uuid::new_v4(),
            name: "acme".into(),
            region: "us".into(),
            workspace_id: Some("abc".into()),
        });
        e.findings = findings;
        e.bound();
        e
    }

    #[test]
    fn bound_sorts_by_severity_and_caps() {
        let mut list: Vec<_> = (0..150)
            .map(|_| change(Event::Opened, "low", "x"))
            .collect();
        list.push(change(Event::Opened, "critical", "first"));
        let e = scan_event(list);
        assert_eq!(e.findings.len(), MAX_FINDINGS_PER_MESSAGE);
        assert_eq!(e.omitted, 51);
        assert_eq!(e.findings[0].title, "first");
    }

    #[test]
    fn html_and_slack_escape_attacker_text() {
        let e = scan_event(vec![change(
            Event::Opened,
            "high",
            "<script>alert(1)</script> & <!channel>",
        )]);
        let mail = email_body(&e, Uuid::new_v4());
        assert!(!mail.html.contains("<script>"), "{}", mail.html);
        assert!(mail.html.contains("&lt;script&gt;"));
        assert!(mail.text.contains("<script>"), "plain text is literal");
        let slack = slack_body(&e, Uuid::new_v4(), None).to_string();
        assert!(!slack.contains("<!channel>"), "{slack}");
        assert!(!slack.contains("<script>"));
    }

    #[test]
    fn slack_links_each_finding_to_its_console_page_when_the_address_is_known() {
        let e = scan_event(vec![change(Event::Opened, "critical", "2FA off")]);
        let id = e.findings[0].finding_id;
        let with = slack_body(&e, Uuid::new_v4(), Some("https://sspm.example.com/")).to_string();
        assert!(
            with.contains(&format!(
                "<https://sspm.example.com/findings/{id}|Open in the console>"
            )),
            "{with}"
        );
        let without = slack_body(&e, Uuid::new_v4(), None).to_string();
        assert!(!without.contains("Open in the console"), "{without}");
    }

    #[test]
    fn webhook_formats() {
        let id = Uuid::new_v4();
        let e = scan_event(vec![change(Event::Opened, "critical", "2FA off")]);
        let (ct, body) = webhook_body(WebhookFormat::Json, &e, id);
        assert_eq!(ct, "application/json");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["version"], 1);
        assert_eq!(v["id"], json!(id));
        assert_eq!(v["findings"][0]["event"], "opened");
        let (ct, body) = webhook_body(WebhookFormat::Cloudevents, &e, id);
        assert_eq!(ct, "application/cloudevents+json");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], json!(id));
        assert_eq!(v["data"]["findings"][0]["title"], "2FA off");
        let (_, body) = webhook_body(WebhookFormat::Ocsf, &e, id);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v[0]["class_uid"], 2004);
    }

    #[test]
    fn pagerduty_follows_the_lifecycle() {
        let opened = change(Event::Opened, "critical", "t");
        let mut resolved = opened.clone();
        resolved.event = Event::Resolved;
        let e = scan_event(vec![opened.clone()]);
        let ev = pagerduty_events(&e, "rk");
        assert_eq!(ev[0]["event_action"], "trigger");
        assert_eq!(ev[0]["dedup_key"], opened.finding_id.to_string());
        assert_eq!(ev[0]["payload"]["severity"], "critical");
        let e = scan_event(vec![resolved]);
        let ev = pagerduty_events(&e, "rk");
        assert_eq!(ev[0]["event_action"], "resolve");
        assert_eq!(ev[0]["dedup_key"], opened.finding_id.to_string());
    }

    #[test]
    fn first_scan_headline_is_one_summary() {
        let mut e = scan_event(
            (0..40)
                .map(|_| change(Event::Opened, "high", "x"))
                .collect(),
        );
        e.first_scan = true;
        assert_eq!(e.headline(), "[acme] first scan: 40 finding(s)");
    }
}
