//! OCSF 1.1 Detection Finding (class 2004) for SIEMs. One event per finding; the
//! activity is Create for open, Update for muted (suppressed), Close for resolved.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::db::findings::FindingListRow;
use crate::status::FindingStatus;

const OCSF_VERSION: &str = "1.1.0";
const CLASS_UID: u32 = 2004;
const CATEGORY_UID: u32 = 2;

fn severity_id(severity: &str) -> u8 {
    match severity {
        "info" => 1,
        "low" => 2,
        "medium" => 3,
        "high" => 4,
        "critical" => 5,
        _ => 0,
    }
}

/// (activity_id, status_id, status name)
fn activity_and_status(status: FindingStatus) -> (u8, u8, &'static str) {
    match status {
        FindingStatus::Open => (1, 1, "New"),
        FindingStatus::Muted => (2, 3, "Suppressed"),
        FindingStatus::Resolved => (3, 4, "Resolved"),
    }
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The resource a finding is about, in OCSF terms.
fn resource(f: &FindingListRow) -> Value {
    let (kind, uid) = match f.resource.split_once(':') {
        Some(("admin", id)) => ("Intercom Admin", id),
        Some(("event", id)) => ("Intercom Activity Log Event", id),
        _ => (
            "Intercom Workspace",
            f.workspace_id.as_deref().unwrap_or(f.resource.as_str()),
        ),
    };
    json!({
        "type": kind,
        "uid": uid,
        "name": f.resource,
        "region": f.region,
        "labels": [format!("instance:{}", f.instance_name)],
    })
}

pub fn detection_finding(f: &FindingListRow) -> Value {
    let (activity_id, status_id, status_name) = activity_and_status(f.status);
    let time = f.resolved_at.unwrap_or(f.last_seen_at);
    json!({
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "type_uid": CLASS_UID * 100 + u32::from(activity_id),
        "activity_id": activity_id,
        "severity_id": severity_id(&f.severity),
        "severity": capitalize(&f.severity),
        "status_id": status_id,
        "status": status_name,
        "time": millis(time),
        "message": f.title,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {
                "name": "intercom-sspm",
                "vendor_name": "intercom-sspm",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "uid": f.id,
        },
        "finding_info": {
            "uid": f.id,
            "title": f.title,
            "analytic": { "uid": f.check_id, "name": f.check_id, "type_id": 1, "type": "Rule" },
            "types": [f.check_id],
            "created_time": millis(f.first_seen_at),
            "first_seen_time": millis(f.first_seen_at),
            "last_seen_time": millis(f.last_seen_at),
            "modified_time": millis(time),
        },
        "resources": [resource(f)],
        "remediation": { "desc": f.remediation },
        "evidences": [{ "data": f.evidence }],
        "unmapped": {
            "instance_id": f.instance_id,
            "instance": f.instance_name,
            "workspace_id": f.workspace_id,
            "compliance": f.compliance,
        },
    })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::TextEnum as _;
    use uuid::Uuid;

    fn row(status: &str, severity: &str, resource: &str) -> FindingListRow {
        let t = DateTime::parse_from_rfc3339("2026-11-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        FindingListRow {
            id: Uuid::nil(),
            instance_id: Uuid::nil(),
            instance_name: "acme".into(),
            region: "us".into(),
            workspace_id: Some("abc123".into()),
            check_id: "admin_personal_email_domain".into(),
            resource: resource.into(),
            status: FindingStatus::from_stored(status).unwrap(),
            severity: severity.into(),
            title: "Teammate uses gmail.com".into(),
            evidence: json!({"email": "x@gmail.com"}),
            remediation: "Remove".into(),
            compliance: json!({}),
            first_seen_at: t,
            last_seen_at: t,
            resolved_at: if status == "resolved" { Some(t) } else { None },
        }
    }

    #[test]
    fn maps_status_severity_and_class() {
        let open = detection_finding(&row("open", "high", "admin:42"));
        assert_eq!(open["class_uid"], 2004);
        assert_eq!(open["type_uid"], 200401);
        assert_eq!(open["severity_id"], 4);
        assert_eq!(open["status_id"], 1);
        assert_eq!(open["resources"][0]["uid"], "42");
        assert_eq!(open["resources"][0]["type"], "Intercom Admin");
        let closed = detection_finding(&row("resolved", "critical", "workspace"));
        assert_eq!(closed["activity_id"], 3);
        assert_eq!(closed["status_id"], 4);
        assert_eq!(closed["severity_id"], 5);
        assert_eq!(closed["resources"][0]["uid"], "abc123");
        let muted = detection_finding(&row("muted", "low", "event:e1"));
        assert_eq!(muted["status"], "Suppressed");
    }
}
