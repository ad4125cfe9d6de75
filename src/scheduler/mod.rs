//! The daemon's scheduler: Postgres-leased claims for any number of instances and
//! replicas. Every replica wakes every `scheduler.poll_interval` (and on `NOTIFY
//! sspm_wakeup`, and when a scan frees a permit while more work is due), claims due
//! instances up to its free permits with `FOR UPDATE SKIP LOCKED`, heartbeats its
//! leases, and finishes each scan fenced by its lease token.
//! tokio-cron-scheduler runs only process-level housekeeping (see `housekeeping`).

pub mod housekeeping;
pub mod timing;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn, Instrument};
use uuid::Uuid;

use crate::db::leases::{self, Held, LeaseTerms};
use crate::db::scans::Trigger;
use crate::metrics::{self, Outcome};
use crate::region::Region;
use crate::scan::{Fence, NextDue, ScanError, ScanOutcome, Scanner};
use crate::schedule::Schedule;

pub use crate::db::leases::Claimed;

/// Longest pause between claim attempts while the database is unreachable. The health
/// monitor wakes the claim loop as soon as the database answers again, so this only
/// bounds the retry rate, not the recovery time.
const MAX_DB_BACKOFF: Duration = Duration::from_secs(30);

/// After the drain timeout, how long cancelled scans get to hand their leases back.
const RELEASE_GRACE: Duration = Duration::from_secs(10);

/// What the readiness probe reads (counts go to Prometheus, see `crate::metrics`).
#[derive(Debug, Default)]
pub struct SchedulerState {
    pub running: AtomicBool,
    pub draining: AtomicBool,
    /// Written only by the daemon's health monitor (its own connection), so that a claim
    /// failing on a busy pool does not flip readiness back and forth.
    pub db_ok: AtomicBool,
}

struct InFlight {
    lease_token: Uuid,
    cancel: CancellationToken,
    /// Set by the heartbeat when another replica owns the lease now.
    lost: Arc<AtomicBool>,
}

pub struct Scheduler {
    scanner: Scanner,
    state: Arc<SchedulerState>,
    global: Arc<Semaphore>,
    regions: HashMap<Region, Arc<Semaphore>>,
    in_flight: Arc<Mutex<HashMap<Uuid, InFlight>>>,
    tracker: TaskTracker,
    /// Cancels scans still running when the drain timeout ends (or on a second signal).
    hard_stop: CancellationToken,
    /// Wakes the claim loop: NOTIFY sspm_wakeup, the database coming back, a freed permit.
    wake: Arc<Notify>,
    /// The last claim round filled every permit it had: more may be due right now.
    saturated: AtomicBool,
}

impl Scheduler {
    pub fn new(scanner: Scanner, state: Arc<SchedulerState>) -> Self {
        let s = &scanner.settings.scheduler;
        let regions = Region::ALL
            .into_iter()
            .map(|r| {
                let n = s
                    .region_concurrency
                    .get(&r)
                    .copied()
                    .unwrap_or(s.max_concurrent_scans);
                (r, Arc::new(Semaphore::new(n.max(1))))
            })
            .collect();
        Self {
            global: Arc::new(Semaphore::new(s.max_concurrent_scans)),
            regions,
            in_flight: Arc::default(),
            tracker: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            wake: Arc::new(Notify::new()),
            saturated: AtomicBool::new(false),
            state,
            scanner,
        }
    }

    /// Cancelling this skips the rest of the drain: running scans are cancelled and their
    /// leases handed back at once (a second SIGTERM/SIGINT does this).
    pub fn hard_stop_token(&self) -> CancellationToken {
        self.hard_stop.clone()
    }

    /// Notifying this makes the claim loop claim now instead of at the next poll.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Runs until `shutdown` fires, then drains: in-flight scans get
    /// `shutdown.drain_timeout` to finish; the rest are cancelled, their leases released
    /// (due at once for other replicas) and their scan rows marked abandoned.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        this.state.running.store(true, Ordering::Relaxed);
        let heartbeat = tokio::spawn(Arc::clone(&this).heartbeat_loop());
        let listener = tokio::spawn(listen_loop(
            this.scanner.pool.clone(),
            Arc::clone(&this.wake),
            shutdown.clone(),
            this.scanner.settings.scheduler.poll_interval,
        ));
        Arc::clone(&this).claim_loop(shutdown.clone()).await;

        this.state.draining.store(true, Ordering::Relaxed);
        listener.abort();
        let drain = this.scanner.settings.shutdown.drain_timeout;
        info!(
            in_flight = this.in_flight_count(),
            ?drain,
            "draining in-flight scans"
        );
        this.tracker.close();
        let drained = tokio::select! {
            r = tokio::time::timeout(drain, this.tracker.wait()) => r.is_ok(),
            _ = this.hard_stop.cancelled() => false,
        };
        if !drained {
            warn!(
                in_flight = this.in_flight_count(),
                "drain ended before every scan finished: cancelling the rest and releasing their leases"
            );
            this.hard_stop.cancel();
            if tokio::time::timeout(RELEASE_GRACE, this.tracker.wait())
                .await
                .is_err()
            {
                warn!(
                    "some leases could not be released in time; they lapse after scheduler.lease"
                );
            }
        }
        this.hard_stop.cancel();
        let _ = heartbeat.await;
        this.state.running.store(false, Ordering::Relaxed);
        info!("scheduler stopped");
    }

    fn in_flight_count(&self) -> usize {
        self.in_flight.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn free_permits(&self, region: Region) -> usize {
        self.global
            .available_permits()
            .min(self.regions[&region].available_permits())
    }

    async fn claim_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let poll = self.scanner.settings.scheduler.poll_interval;
        let mut db_backoff = poll.min(Duration::from_secs(1));
        while !shutdown.is_cancelled() {
            match self.claim_once(&shutdown).await {
                Ok(_) => db_backoff = poll.min(Duration::from_secs(1)),
                Err(e) => {
                    metrics::claim_error();
                    warn!(error = %e, retry_in = ?db_backoff, "claiming due instances failed; will retry");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(db_backoff) => {}
                        _ = self.wake.notified() => {}
                    }
                    db_backoff = (db_backoff * 2).min(MAX_DB_BACKOFF.max(poll));
                    continue;
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => debug!("claim loop woken"),
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// One round of claims across regions; returns how many scans started.
    async fn claim_once(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
    ) -> Result<usize, sqlx::Error> {
        let settings = &self.scanner.settings.scheduler;
        let mut started = 0;
        let mut saturated = false;
        for region in Region::ALL {
            // A signal may arrive mid-round: claim nothing more once draining.
            if shutdown.is_cancelled() {
                break;
            }
            let free = self.free_permits(region);
            if free == 0 {
                saturated = true;
                continue;
            }
            let claimed = leases::claim(
                &self.scanner.pool,
                region,
                free as i64,
                &self.scanner.replica,
                LeaseTerms(settings.lease),
            )
            .await?;
            saturated |= claimed.len() == free;
            for c in claimed {
                if c.reclaimed_scan.is_some() {
                    metrics::lease_reclaimed();
                    info!(instance_id = %c.instance_id, "claimed an expired lease: the previous holder's scan is marked abandoned");
                }
                // Permits are free: we never claim more than available and only this loop takes them.
                let global = Arc::clone(&self.global).try_acquire_owned();
                let regional = Arc::clone(&self.regions[&region]).try_acquire_owned();
                match (global, regional) {
                    (Ok(g), Ok(r)) => {
                        self.spawn_scan(c, region, [g, r]);
                        started += 1;
                    }
                    _ => {
                        let _ = leases::release(
                            &self.scanner.pool,
                            c.held(),
                            c.scan_id,
                            leases::Due::Now,
                            "no free permit",
                        )
                        .await;
                    }
                }
            }
        }
        self.saturated.store(saturated, Ordering::Relaxed);
        Ok(started)
    }

    fn spawn_scan(
        self: &Arc<Self>,
        claimed: Claimed,
        region: Region,
        permits: [OwnedSemaphorePermit; 2],
    ) {
        let cancel = self.hard_stop.child_token();
        let lost = Arc::new(AtomicBool::new(false));
        if let Ok(mut m) = self.in_flight.lock() {
            m.insert(
                claimed.instance_id,
                InFlight {
                    lease_token: claimed.lease_token,
                    cancel: cancel.clone(),
                    lost: Arc::clone(&lost),
                },
            );
            metrics::scans_in_flight(m.len());
        }
        let this = Arc::clone(self);
        let span = crate::telemetry::scan_span(claimed.scan_id, claimed.instance_id, region);
        self.tracker.spawn(
            async move {
                let started = Instant::now();
                let outcome = this.run_claimed(&claimed, cancel, &lost).await;
                metrics::scan_finished(region, outcome, started.elapsed());
                if let Ok(mut m) = this.in_flight.lock() {
                    m.remove(&claimed.instance_id);
                    metrics::scans_in_flight(m.len());
                }
                drop(permits);
                // A permit is free again; if the last round used them all, more work is
                // probably due: claim now rather than at the next poll.
                if this.saturated.load(Ordering::Relaxed) {
                    this.wake.notify_one();
                }
            }
            .instrument(span),
        );
    }

    async fn run_claimed(
        &self,
        c: &Claimed,
        cancel: CancellationToken,
        lost: &AtomicBool,
    ) -> Outcome {
        let settings = &self.scanner.settings;
        let pool = &self.scanner.pool;
        let schedule_text = c
            .schedule()
            .map(str::to_string)
            .unwrap_or_else(|| settings.scheduler.default_schedule.clone());
        let schedule = Schedule::parse(&schedule_text).unwrap_or_else(|e| {
            warn!(schedule = %schedule_text, error = %e, "invalid schedule in the database; using the default");
            Schedule::parse(&settings.scheduler.default_schedule).expect("default schedule validated at startup")
        });
        // The next due time is chosen when the scan ends, from the database's clock then.
        let plan = timing::NextPlan {
            schedule,
            failures_so_far: c.consecutive_failures.max(0) as u32,
            max_backoff: settings.scheduler.max_backoff,
            jitter: settings.scheduler.jitter_policy(),
        };
        let fence = Fence {
            lease_token: c.lease_token,
            scan_id: Some(c.scan_id),
            next: NextDue::Plan(plan.clone()),
        };
        // As the claim read it (no second look-up): an instance removed since then ends
        // the scan as InstanceGone when it reads its inputs or locks the row to write.
        let instance = match c.instance() {
            Ok(i) => i,
            Err(e) => {
                warn!(error = %e, "cannot read the claimed instance; handing the lease back");
                let _ = leases::release(
                    pool,
                    c.held(),
                    c.scan_id,
                    leases::Due::Now,
                    "the database failed before the scan started",
                )
                .await;
                return Outcome::Error;
            }
        };
        let result = tokio::select! {
            // Prefer a finished scan over a cancellation that raced with it: its writes
            // are committed (or rolled back) already.
            biased;
            r = self.scanner.scan_with_target(&instance, Trigger::Schedule, Some(fence.clone()), Some(c.target())) => Some(r),
            _ = cancel.cancelled() => None,
        };
        match result {
            Some(Ok(report)) => match (report.status, report.rate_limited_reset) {
                (_, Some(reset)) => {
                    info!(?reset, "rate limited: snoozed until the window resets");
                    Outcome::RateLimited
                }
                (ScanOutcome::Succeeded, _) => Outcome::Succeeded,
                (ScanOutcome::Failed, _) => Outcome::Failed,
            },
            Some(Err(ScanError::LeaseLost(_))) => {
                metrics::lease_lost();
                warn!("lease lost during the scan; its writes were rolled back");
                Outcome::LeaseLost
            }
            Some(Err(ScanError::InstanceGone(_))) => {
                info!("instance removed during its scan");
                Outcome::Gone
            }
            Some(Err(e)) => {
                error!(error = %e, "scan could not be recorded; retrying after backoff");
                // Backoff from now, by the database's clock.
                let released = match crate::db::now(pool).await {
                    Ok(ended) => {
                        leases::release(
                            pool,
                            c.held(),
                            c.scan_id,
                            leases::Due::At(plan.after(ended, false)),
                            &e.to_string(),
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = released {
                    warn!(error = %e, "could not release the lease; it will lapse after scheduler.lease");
                }
                Outcome::Error
            }
            None if lost.load(Ordering::Relaxed) => {
                // The lease is another replica's now (or the instance is gone): touch only
                // our own scan row, never the instance.
                warn!("lease lost to another replica; scan cancelled");
                let _ = crate::db::scans::mark_abandoned(
                    pool,
                    c.scan_id,
                    "lease lost: another replica took over this instance",
                )
                .await;
                Outcome::LeaseLost
            }
            None => {
                info!("scan cancelled by shutdown; releasing its lease for another replica");
                if let Err(e) = leases::release(
                    pool,
                    c.held(),
                    c.scan_id,
                    leases::Due::Now,
                    "cancelled: the replica shut down before the scan finished",
                )
                .await
                {
                    warn!(error = %e, "could not release the lease; it will lapse after scheduler.lease");
                }
                Outcome::Abandoned
            }
        }
    }

    /// Extends the leases of running scans every `scheduler.heartbeat_interval`, until the
    /// hard stop: leases must outlive the drain, or another replica would start a second
    /// scan of an instance this one is still finishing.
    async fn heartbeat_loop(self: Arc<Self>) {
        let settings = &self.scanner.settings.scheduler;
        let mut tick = tokio::time::interval(settings.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.hard_stop.cancelled() => return,
            }
            let held: Vec<Held> = match self.in_flight.lock() {
                Ok(m) => m
                    .iter()
                    .map(|(id, f)| Held {
                        id: *id,
                        token: f.lease_token,
                    })
                    .collect(),
                Err(_) => continue,
            };
            match leases::heartbeat(&self.scanner.pool, &held, LeaseTerms(settings.lease)).await {
                Ok(lost) => {
                    for id in lost {
                        warn!(instance_id = %id, "lease lost; cancelling the scan");
                        metrics::lease_lost();
                        if let Ok(m) = self.in_flight.lock() {
                            if let Some(f) = m.get(&id) {
                                f.lost.store(true, Ordering::Relaxed);
                                f.cancel.cancel();
                            }
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "heartbeat failed; leases lapse if the database stays away longer than scheduler.lease")
                }
            }
        }
    }
}

/// Forwards `NOTIFY sspm_wakeup` to the claim loop. A task of its own so that `recv` is
/// never cancelled mid-message; it reconnects by itself after a connection loss (missed
/// notifications are covered by polling).
async fn listen_loop(
    pool: sqlx::PgPool,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    poll: Duration,
) {
    let retry = poll.max(Duration::from_secs(1));
    loop {
        let mut listener = loop {
            let attempt = async {
                let mut l = PgListener::connect_with(&pool).await?;
                l.listen("sspm_wakeup").await?;
                Ok::<_, sqlx::Error>(l)
            };
            match attempt.await {
                Ok(l) => break l,
                Err(e) => {
                    debug!(error = %e, "cannot LISTEN sspm_wakeup yet; relying on polling");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                }
            }
        };
        loop {
            match listener.recv().await {
                Ok(_) => wake.notify_one(),
                Err(e) => {
                    debug!(error = %e, "LISTEN connection lost; reconnecting");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                    // `recv` reconnects on the next call; if the pool itself is gone,
                    // build a new listener.
                    if pool.is_closed() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}
