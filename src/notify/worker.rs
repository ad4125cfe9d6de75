//! The delivery worker, one per daemon replica: claim due outbox rows under a lease,
//! send them concurrently (Slack paced per channel), settle each while the lease holds.
//!
//! Retry policy (docs/ALERTS.md "Retries"): 5xx, 408, timeouts and connection errors
//! back off exponentially from `notify.retry_base_delay` (doubling, "equal jitter": half
//! fixed, half random) up to `notify.max_backoff`; 429 waits for its `Retry-After`; other
//! 4xx and redirects are `failed` at once; after `notify.max_attempts` attempts or
//! `notify.max_age` the message is `dead`. Delivery is at least once: a replica that dies
//! after sending but before settling leaves the row to be sent again when the lease ends,
//! with the same `webhook-id`.
//!
//! Shutdown: no new claims; sends in flight get `shutdown.drain_timeout`; rows not sent
//! by then are handed back, due at once for other replicas.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use rand::Rng;
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::channels::{self, Channel, ChannelKind};
use super::digest::Digests;
use super::metrics;
use super::outbox::{self, Claimed};
use super::render::AlertEvent;
use super::send::{Outcome, Sender};
use crate::config::{NotifySettings, Settings};
use crate::crypto::Keyring;

/// What happens to a message after one attempt, pure.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub status: &'static str,
    pub next: DateTime<Utc>,
    pub code: Option<i32>,
    pub error: String,
    /// Label for `sspm_notifications_total{result}`.
    pub result: &'static str,
}

/// Exponential backoff with equal jitter: attempt 1 waits base/2..base, attempt 2
/// base..2*base, and so on, capped at `max`.
pub fn backoff(attempt: i32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = 2f64.powi((attempt.max(1) - 1).min(30));
    let full = (base.as_secs_f64() * exp).min(max.as_secs_f64());
    Duration::from_secs_f64(full / 2.0 + full / 2.0 * jitter.clamp(0.0, 1.0))
}

pub fn decide(
    outcome: &Outcome,
    attempts: i32,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    settings: &NotifySettings,
    jitter: f64,
) -> Decision {
    let code = outcome.code().map(i32::from);
    match outcome {
        Outcome::Delivered { .. } => Decision {
            status: "delivered",
            next: now,
            code,
            error: String::new(),
            result: "delivered",
        },
        Outcome::Permanent { error, .. } => Decision {
            status: "failed",
            next: now,
            code,
            error: error.clone(),
            result: "failed",
        },
        Outcome::Retry { after, error, .. } => {
            let wait = after.unwrap_or_else(|| {
                backoff(
                    attempts,
                    settings.retry_base_delay,
                    settings.max_backoff,
                    jitter,
                )
            });
            let next = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
            let max_age =
                chrono::Duration::from_std(settings.max_age).unwrap_or(chrono::Duration::days(1));
            if attempts >= settings.max_attempts as i32 {
                Decision {
                    status: "dead",
                    next: now,
                    code,
                    error: format!(
                        "{error}; gave up after {attempts} attempts (notify.max_attempts)"
                    ),
                    result: "dead",
                }
            } else if next - created_at > max_age {
                Decision {
                    status: "dead",
                    next: now,
                    code,
                    error: format!("{error}; the next attempt would be later than notify.max_age"),
                    result: "dead",
                }
            } else {
                Decision {
                    status: "pending",
                    next,
                    code,
                    error: error.clone(),
                    result: "retry",
                }
            }
        }
    }
}

/// One message's decision and its channel kind (the metric label).
type Settled = (Uuid, Decision, &'static str);

pub struct Worker {
    pool: PgPool,
    keyring: Option<Arc<Keyring>>,
    settings: NotifySettings,
    drain: Duration,
    replica: String,
    sender: Sender,
    /// Earliest next send per paced channel (Slack), reserved before sleeping.
    pace: Mutex<HashMap<Uuid, Instant>>,
    digests: Digests,
}

/// The delivery worker as one of the daemon's background tasks
/// ([`crate::daemon::Daemon::with_worker`]): it starts once the database is ready and
/// ends after the daemon's stop token and its own drain. With `notify.enabled = false`
/// it ends at once (scans still enqueue). The sender is built here so a bad `[notify]`
/// setting stops the daemon at start-up instead of in the background.
pub fn daemon_worker(settings: &Settings) -> anyhow::Result<crate::daemon::Worker> {
    // Slack messages link each finding to its console page when the console's public
    // address is known.
    let sender =
        Sender::new(&settings.notify)?.with_console_url(settings.console.public_url.clone());
    Ok(Box::new(move |ctx: crate::daemon::WorkerContext| {
        Box::pin(async move {
            if !ctx.settings.notify.enabled {
                return;
            }
            let worker = Arc::new(Worker {
                pool: ctx.pool,
                keyring: ctx.keyring,
                settings: ctx.settings.notify.clone(),
                drain: ctx.settings.shutdown.drain_timeout,
                replica: ctx.replica,
                sender,
                pace: Mutex::new(HashMap::new()),
                digests: Digests::default(),
            });
            worker.run(ctx.stop).await;
        })
    }))
}

impl Worker {
    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        metrics::describe();
        info!("alert delivery worker started");
        let mut last_housekeeping: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            if last_housekeeping.is_none_or(|t| t.elapsed() >= self.settings.poll_interval) {
                last_housekeeping = Some(Instant::now());
                if let Err(e) = self
                    .digests
                    .tick(
                        &self.pool,
                        &self.replica,
                        self.settings.digest_grace,
                        Utc::now(),
                    )
                    .await
                {
                    warn!(error = %e, "digest check failed");
                }
                match outbox::backlog(&self.pool).await {
                    Ok((n, age)) => metrics::backlog(n, age),
                    Err(e) => debug!(error = %e, "outbox backlog query failed"),
                }
            }
            let sent = match self.round(&shutdown).await {
                Ok(n) => n,
                Err(e) => {
                    warn!(error = %e, "alert delivery round failed");
                    0
                }
            };
            if sent == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
        info!("alert delivery worker stopped");
    }

    /// One claim and its sends; returns how many messages were claimed.
    async fn round(self: &Arc<Self>, shutdown: &CancellationToken) -> Result<usize, sqlx::Error> {
        let token = Uuid::new_v4();
        let claimed = outbox::claim(
            &self.pool,
            token,
            &self.replica,
            crate::db::leases::LeaseTerms(self.settings.lease),
            self.settings.concurrency as i64,
        )
        .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let n = claimed.len();
        let mut conn = self.pool.acquire().await?;
        let by_id: HashMap<Uuid, Channel> = channels::list(&mut conn)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        drop(conn);
        let by_id = Arc::new(by_id);
        let done: Arc<Mutex<Vec<Settled>>> = Arc::default();
        let work = futures_util::stream::iter(claimed).for_each_concurrent(
            self.settings.concurrency,
            |msg| {
                let (this, by_id, done) = (Arc::clone(self), Arc::clone(&by_id), Arc::clone(&done));
                async move {
                    let (decision, kind) = this.process(&msg, by_id.get(&msg.channel_id)).await;
                    if let Ok(mut d) = done.lock() {
                        d.push((msg.id, decision, kind));
                    }
                }
            },
        );
        let drain = async {
            shutdown.cancelled().await;
            tokio::time::sleep(self.drain).await;
        };
        tokio::select! {
            _ = work => {}
            _ = drain => warn!("drain timeout: unsent alerts are handed back to other replicas"),
        }
        let results = std::mem::take(&mut *done.lock().unwrap_or_else(|p| p.into_inner()));
        let (mut ids, mut codes) = (Vec::new(), Vec::new());
        for (id, d, kind) in results {
            metrics::attempt(kind, d.result);
            if d.status == "delivered" {
                ids.push(id);
                codes.push(d.code);
                continue;
            }
            if d.status != "pending" {
                warn!(message = %id, status = d.status, error = %d.error, "alert not delivered");
            } else {
                debug!(message = %id, error = %d.error, next = %d.next, "alert will be retried");
            }
            outbox::mark(&self.pool, token, id, d.status, d.next, d.code, &d.error).await?;
        }
        outbox::mark_delivered(&self.pool, token, &ids, &codes).await?;
        let released = outbox::release(&self.pool, token).await?;
        if released > 0 {
            info!(released, "handed back unsent alerts");
        }
        Ok(n)
    }

    async fn process(&self, msg: &Claimed, channel: Option<&Channel>) -> (Decision, &'static str) {
        let now = Utc::now();
        let Some(channel) = channel else {
            // Removed meanwhile: its rows go with it by cascade; nothing to do.
            let o = Outcome::Permanent {
                code: None,
                error: "channel removed".into(),
            };
            return (
                decide(&o, msg.attempts, msg.created_at, now, &self.settings, 0.0),
                "unknown",
            );
        };
        let kind = channel.kind.as_str();
        if !channel.enabled {
            let o = Outcome::Retry {
                code: None,
                after: Some(Duration::from_secs(300)),
                error: "channel disabled: waiting for `channel enable`".into(),
            };
            return (
                decide(&o, msg.attempts, msg.created_at, now, &self.settings, 0.0),
                kind,
            );
        }
        let event: AlertEvent = match serde_json::from_value(msg.event.clone()) {
            Ok(e) => e,
            Err(e) => {
                let o = Outcome::Permanent {
                    code: None,
                    error: format!("the stored event is unreadable: {e}"),
                };
                return (
                    decide(&o, msg.attempts, msg.created_at, now, &self.settings, 0.0),
                    kind,
                );
            }
        };
        let outcome = match channel.secrets(self.keyring.as_deref()) {
            // Key or reference may be fixed by an operator: retry rather than fail.
            Err(e) => Outcome::Retry {
                code: None,
                after: None,
                error: e.to_string(),
            },
            Ok(secrets) => {
                if channel.kind == ChannelKind::Slack {
                    self.wait_for_pace(channel.id).await;
                }
                // Half the lease: a send that outlives it could be sent again elsewhere.
                match tokio::time::timeout(
                    self.settings.lease / 2,
                    self.sender.send(channel, &secrets, &event, msg.id),
                )
                .await
                {
                    Ok(o) => o,
                    Err(_) => Outcome::Retry {
                        code: None,
                        after: None,
                        error: "sending took longer than half the lease".into(),
                    },
                }
            }
        };
        let jitter = rand::thread_rng().gen::<f64>();
        (
            decide(
                &outcome,
                msg.attempts,
                msg.created_at,
                Utc::now(),
                &self.settings,
                jitter,
            ),
            kind,
        )
    }

    async fn wait_for_pace(&self, channel: Uuid) {
        let at = {
            let mut pace = self.pace.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = pace.get(&channel).copied().unwrap_or(now).max(now);
            pace.insert(channel, slot + self.settings.slack_pace);
            slot
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> NotifySettings {
        NotifySettings {
            retry_base_delay: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600),
            max_attempts: 5,
            ..NotifySettings::default()
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let b = Duration::from_secs(10);
        let m = Duration::from_secs(60);
        assert_eq!(backoff(1, b, m, 0.0), Duration::from_secs(5));
        assert_eq!(backoff(1, b, m, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(2, b, m, 1.0), Duration::from_secs(20));
        assert_eq!(backoff(9, b, m, 1.0), Duration::from_secs(60));
        assert_eq!(backoff(1000, b, m, 0.5), Duration::from_secs(45));
    }

    #[test]
    fn decisions() {
        let s = settings();
        let now = Utc::now();
        let retry = Outcome::Retry {
            code: Some(500),
            after: None,
            error: "HTTP 500".into(),
        };
        let d = decide(&retry, 1, now, now, &s, 1.0);
        assert_eq!((d.status, d.result), ("pending", "retry"));
        assert_eq!(d.next, now + chrono::Duration::seconds(10));
        let d = decide(&retry, 5, now, now, &s, 1.0);
        assert_eq!(d.status, "dead");
        let old = now - chrono::Duration::hours(25);
        assert_eq!(decide(&retry, 2, old, now, &s, 1.0).status, "dead");
        let limited = Outcome::Retry {
            code: Some(429),
            after: Some(Duration::from_secs(3)),
            error: "HTTP 429".into(),
        };
        assert_eq!(
            decide(&limited, 1, now, now, &s, 1.0).next,
            now + chrono::Duration::seconds(3)
        );
        let perm = Outcome::Permanent {
            code: Some(404),
            error: "404".into(),
        };
        assert_eq!(decide(&perm, 1, now, now, &s, 1.0).status, "failed");
        let ok = Outcome::Delivered { code: Some(200) };
        assert_eq!(decide(&ok, 3, now, now, &s, 1.0).status, "delivered");
    }
}
