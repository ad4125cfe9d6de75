//! Digests: for channels with `--digest CRON`, a summary (open findings by instance and
//! severity, what opened and resolved since the previous digest) enqueued once per cron
//! slot across the whole fleet. The slot is claimed in `sspm.housekeeping_runs` (job
//! `digest:<channel id>`), the same once-per-slot table housekeeping uses, in the same
//! transaction as the outbox row, so a slot is either claimed and enqueued or neither.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::channels::{self, Channel, ChannelKind};
use super::outbox;
use super::render::{AlertEvent, Digest, EventKind, FindingChange, OpenCount};
use super::rules::{Event, Rules};
use crate::checks::Severity;
use crate::db::Checked;
use crate::schedule::Schedule;
use crate::status::FindingStatus;

/// Parses a digest (`--digest`, the console's digest field): a cron expression (5 fields, or 6 with seconds), optionally
/// `CRON_TZ=Zone ...`. Intervals are refused: a digest belongs to a time of day.
pub fn parse(digest: &str) -> Result<Schedule, String> {
    match Schedule::parse(digest) {
        Ok(s @ Schedule::Cron { .. }) => Ok(s),
        Ok(Schedule::Interval(_)) => Err(format!(
            "the digest {digest:?} is an interval: use a cron expression such as \"CRON_TZ=Europe/Berlin 0 8 * * 1-5\", not an interval"
        )),
        Err(e) => Err(format!("the digest schedule: {e}")),
    }
}

/// The latest firing of `schedule` in (now - grace, now], if any.
pub fn latest_slot(
    schedule: &Schedule,
    now: DateTime<Utc>,
    grace: Duration,
) -> Option<DateTime<Utc>> {
    let grace = chrono::Duration::from_std(grace).ok()?;
    let mut slot = schedule.next_after(now - grace);
    if slot > now {
        return None;
    }
    loop {
        let next = schedule.next_after(slot);
        if next > now || next <= slot {
            return Some(slot);
        }
        slot = next;
    }
}

/// Remembers which slot each channel last handled here, so an idle replica does not
/// write to the database every poll.
#[derive(Default)]
pub struct Digests {
    handled: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

impl Digests {
    /// Enqueues the digests due now; returns how many this replica enqueued.
    pub async fn tick(
        &self,
        pool: &PgPool,
        replica: &str,
        grace: Duration,
        now: DateTime<Utc>,
    ) -> Result<u64, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        let list = channels::list_enabled(&mut conn).await?;
        drop(conn);
        let mut enqueued = 0;
        for channel in list {
            // PagerDuty incidents follow findings; a digest is not an incident.
            if channel.kind == ChannelKind::Pagerduty {
                continue;
            }
            let Some(text) = &channel.rules.digest else {
                continue;
            };
            let Ok(schedule) = parse(text) else {
                continue;
            };
            let Some(slot) = latest_slot(&schedule, now, grace) else {
                continue;
            };
            if slot < channel.created_at {
                continue;
            }
            if self
                .handled
                .lock()
                .map(|m| m.get(&channel.id) == Some(&slot))
                .unwrap_or(false)
            {
                continue;
            }
            enqueued += enqueue(pool, &channel, slot, replica).await?;
            if let Ok(mut m) = self.handled.lock() {
                m.insert(channel.id, slot);
            }
        }
        Ok(enqueued)
    }
}

/// Claims (digest:<channel>, slot) and inserts the digest row, in one transaction.
pub async fn enqueue(
    pool: &PgPool,
    channel: &Channel,
    slot: DateTime<Utc>,
    replica: &str,
) -> Result<u64, sqlx::Error> {
    let job = format!("digest:{}", channel.id);
    let mut tx = pool.begin().await?;
    let claimed = sqlx::query!(
        "INSERT INTO sspm.housekeeping_runs (job, slot, replica) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        job,
        slot,
        replica
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(0);
    }
    let since = sqlx::query_scalar!(
        "SELECT max(digest_slot) FROM sspm.notification_outbox WHERE channel_id = $1 AND digest_slot < $2",
        channel.id,
        slot
    )
    .fetch_one(&mut *tx)
    .await?
    .unwrap_or(channel.created_at);

    let open_rows = sqlx::query!(
        r#"SELECT i.name AS instance, f.check_id, f.severity, count(*) AS "n!"
           FROM sspm.finding_rows f JOIN sspm.instances i ON i.id = f.instance_id
           WHERE f.status = 'open'
           GROUP BY i.name, f.check_id, f.severity"#
    )
    .fetch_all(&mut *tx)
    .await?;
    let rules = &channel.rules;
    let mut open: BTreeMap<String, OpenCount> = BTreeMap::new();
    for r in open_rows {
        if !rules.wants_instance(&r.instance) || !wants_check(rules, &r.check_id) {
            continue;
        }
        let e = open.entry(r.instance.clone()).or_insert_with(|| OpenCount {
            instance: r.instance.clone(),
            critical: 0,
            high: 0,
            medium: 0,
            low: 0,
            info: 0,
        });
        match r.severity.as_str() {
            "critical" => e.critical += r.n,
            "high" => e.high += r.n,
            "medium" => e.medium += r.n,
            "low" => e.low += r.n,
            _ => e.info += r.n,
        }
    }

    let changes = sqlx::query!(
        r#"SELECT e.id, e.finding_id, e.from_status AS "from_status: Checked<FindingStatus>",
                  e.to_status AS "to_status: Checked<FindingStatus>", i.name AS instance,
                  f.check_id AS "check_id!", f.resource AS "resource!",
                  f.status AS "status!: Checked<FindingStatus>", f.severity AS "severity!",
                  f.title AS "title!", f.remediation AS "remediation!",
                  f.first_seen_at AS "first_seen_at!", f.last_seen_at AS "last_seen_at!", f.resolved_at
           FROM sspm.finding_events e
           JOIN sspm.findings f ON f.id = e.finding_id
           JOIN sspm.instances i ON i.id = e.instance_id
           WHERE e.at > $1 AND e.at <= $2
           ORDER BY e.id
           LIMIT 10000"#,
        since,
        slot
    )
    .fetch_all(&mut *tx)
    .await?;
    let all_events = Rules {
        events: vec![Event::Opened, Event::Reopened, Event::Resolved],
        ..rules.clone()
    };
    let mut event = AlertEvent::new(EventKind::Digest, slot);
    for r in changes {
        const EVENTS: &str = "sspm.finding_events";
        let from = r
            .from_status
            .map(|s| s.column(EVENTS, "from_status", r.id))
            .transpose()?;
        let to = r.to_status.column(EVENTS, "to_status", r.id)?;
        let Some(ev) = Event::of_transition(from, to) else {
            continue;
        };
        let severity = r.severity.parse().unwrap_or(Severity::Info);
        if !all_events.wants_instance(&r.instance)
            || !all_events.wants_finding(ev, &r.check_id, severity)
        {
            continue;
        }
        event.findings.push(FindingChange {
            event: ev,
            finding_id: r.finding_id,
            instance: Some(r.instance),
            check_id: r.check_id,
            resource: r.resource,
            status: r.status.of("sspm.findings", r.finding_id)?,
            severity: r.severity,
            title: r.title,
            remediation: r.remediation,
            evidence: serde_json::Value::Null,
            compliance: serde_json::Value::Null,
            first_seen_at: r.first_seen_at,
            last_seen_at: r.last_seen_at,
            resolved_at: r.resolved_at,
        });
    }
    event.digest = Some(Digest {
        since,
        until: slot,
        open: open.into_values().collect(),
    });
    event.bound();
    let n = outbox::insert(
        &mut tx,
        channel.id,
        None,
        None,
        EventKind::Digest,
        &event,
        Some(slot),
    )
    .await?;
    sqlx::query!(
        "UPDATE sspm.housekeeping_runs SET finished_at = now(), detail = $3 WHERE job = $1 AND slot = $2",
        job,
        slot,
        serde_json::json!({ "enqueued": n })
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(n)
}

fn wants_check(rules: &Rules, check_id: &str) -> bool {
    (rules.checks.is_empty() || rules.checks.iter().any(|c| c == check_id))
        && !rules.exclude_checks.iter().any(|c| c == check_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_slot_within_grace() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let s = parse("0 8 * * *").unwrap();
        let grace = Duration::from_secs(600);
        assert_eq!(
            latest_slot(&s, at("2026-12-01T08:03:00Z"), grace),
            Some(at("2026-12-01T08:00:00Z"))
        );
        assert_eq!(latest_slot(&s, at("2026-12-01T08:30:00Z"), grace), None);
        assert_eq!(latest_slot(&s, at("2026-12-01T07:59:00Z"), grace), None);
        let berlin = parse("CRON_TZ=Europe/Berlin 0 8 * * 1-5").unwrap();
        // 08:00 in Berlin is 07:00 UTC in winter; 2026-12-01 is a Tuesday.
        assert_eq!(
            latest_slot(&berlin, at("2026-12-01T07:01:00Z"), grace),
            Some(at("2026-12-01T07:00:00Z"))
        );
    }

    #[test]
    fn intervals_are_refused() {
        assert!(parse("1d").unwrap_err().contains("cron"));
        assert!(parse("not a cron").is_err());
    }
}
