//! Findings as CSV, one row per finding (the CLI's `findings --format csv` and the
//! console's export share this).

use std::io::Write;

use crate::db::findings::FindingListRow;

pub const HEADER: [&str; 14] = [
    "id",
    "instance",
    "region",
    "workspace_id",
    "check_id",
    "resource",
    "status",
    "severity",
    "title",
    "remediation",
    "first_seen_at",
    "last_seen_at",
    "resolved_at",
    "evidence",
];

pub fn write<W: Write>(out: W, rows: &[FindingListRow]) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    for f in rows {
        w.write_record([
            f.id.to_string(),
            f.instance_name.clone(),
            f.region.clone(),
            f.workspace_id.clone().unwrap_or_default(),
            f.check_id.clone(),
            f.resource.clone(),
            f.status.to_string(),
            f.severity.clone(),
            f.title.clone(),
            f.remediation.clone(),
            f.first_seen_at.to_rfc3339(),
            f.last_seen_at.to_rfc3339(),
            f.resolved_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            f.evidence.to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}
