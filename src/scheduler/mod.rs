//! The daemon's scheduler: Postgres-leased claims for any number of instances and
//! replicas. Every replica wakes every `scheduler.poll_interval` (and on `NOTIFY
//! sspm_wakeup`), claims due instances up to its free permits with `FOR UPDATE SKIP
//! LOCKED`, heartbeats its leases, and finishes each scan fenced by its lease token.
//! tokio-cron-scheduler runs only process-level housekeeping (see `housekeeping`).

pub mod housekeeping;
pub mod lease;
pub mod timing;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use sqlx::postgres::PgListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn, Instrument};
use uuid::Uuid;

use crate::db::instances;
use crate::db::scans::Trigger;
use crate::region::Region;
use crate::scan::{Fence, ScanError, ScanStatus, Scanner};
use crate::schedule::Schedule;

/// Longest pause between claim attempts while the database is unreachable.
const MAX_DB_BACKOFF: Duration = Duration::from_secs(30);

/// Observable state for probes and metrics.
#[derive(Debug, Default)]
pub struct SchedulerState {
    pub running: AtomicBool,
    pub draining: AtomicBool,
    pub db_ok: AtomicBool,
    pub scans_started: AtomicU64,
    pub scans_succeeded: AtomicU64,
    pub scans_failed: AtomicU64,
    pub scans_rate_limited: AtomicU64,
    pub leases_lost: AtomicU64,
    pub leases_reclaimed: AtomicU64,
    pub claim_errors: AtomicU64,
}

struct InFlight {
    lease_token: Uuid,
    cancel: CancellationToken,
}

pub struct Scheduler {
    scanner: Scanner,
    state: Arc<SchedulerState>,
    global: Arc<Semaphore>,
    regions: HashMap<Region, Arc<Semaphore>>,
    in_flight: Arc<Mutex<HashMap<Uuid, InFlight>>>,
    tracker: TaskTracker,
    /// Cancels scans still running when the drain timeout ends.
    hard_stop: CancellationToken,
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
            state,
            scanner,
        }
    }

    /// Runs until `shutdown` fires, then drains: in-flight scans get
    /// `shutdown.drain_timeout` to finish; the rest are cancelled, their leases released
    /// (due at once for other replicas) and their scan rows marked abandoned.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        this.state.running.store(true, Ordering::Relaxed);
        let heartbeat = tokio::spawn(Arc::clone(&this).heartbeat_loop(shutdown.clone()));
        Arc::clone(&this).claim_loop(shutdown.clone()).await;

        this.state.draining.store(true, Ordering::Relaxed);
        let drain = this.scanner.settings.shutdown.drain_timeout;
        let in_flight = this.in_flight.lock().map(|m| m.len()).unwrap_or(0);
        info!(in_flight, ?drain, "draining in-flight scans");
        this.tracker.close();
        if tokio::time::timeout(drain, this.tracker.wait())
            .await
            .is_err()
        {
            warn!("drain timeout reached: cancelling remaining scans and releasing their leases");
            this.hard_stop.cancel();
            // Releasing is a couple of quick statements per scan.
            let _ = tokio::time::timeout(Duration::from_secs(10), this.tracker.wait()).await;
        }
        heartbeat.abort();
        this.state.running.store(false, Ordering::Relaxed);
        info!("scheduler stopped");
    }

    fn free_permits(&self, region: Region) -> usize {
        self.global
            .available_permits()
            .min(self.regions[&region].available_permits())
    }

    async fn claim_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let settings = &self.scanner.settings.scheduler;
        let mut listener = self.listen().await;
        let mut db_backoff = Duration::from_secs(1);
        loop {
            match self.claim_once().await {
                Ok(_) => {
                    self.state.db_ok.store(true, Ordering::Relaxed);
                    db_backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    self.state.db_ok.store(false, Ordering::Relaxed);
                    self.state.claim_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, retry_in = ?db_backoff, "claiming due instances failed; will retry");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(db_backoff) => {}
                    }
                    db_backoff = (db_backoff * 2).min(MAX_DB_BACKOFF);
                    if listener.is_none() {
                        listener = self.listen().await;
                    }
                    continue;
                }
            }
            let wake = async {
                match listener.as_mut() {
                    Some(l) => match l.recv().await {
                        Ok(_) => {}
                        // sqlx reconnects on the next recv; avoid a hot loop meanwhile.
                        Err(_) => tokio::time::sleep(settings.poll_interval).await,
                    },
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(settings.poll_interval) => {}
                _ = wake => debug!("woken by sspm_wakeup"),
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        match PgListener::connect_with(&self.scanner.pool).await {
            Ok(mut l) => match l.listen("sspm_wakeup").await {
                Ok(()) => Some(l),
                Err(e) => {
                    warn!(error = %e, "cannot LISTEN sspm_wakeup; relying on polling");
                    None
                }
            },
            Err(e) => {
                warn!(error = %e, "cannot open a LISTEN connection; relying on polling");
                None
            }
        }
    }

    /// One round of claims across regions; returns how many scans started.
    async fn claim_once(self: &Arc<Self>) -> Result<usize, sqlx::Error> {
        let settings = &self.scanner.settings.scheduler;
        let mut started = 0;
        for region in Region::ALL {
            let free = self.free_permits(region);
            if free == 0 {
                continue;
            }
            let claimed = lease::claim(
                &self.scanner.pool,
                region,
                free as i64,
                &self.scanner.replica,
                settings.lease,
            )
            .await?;
            for c in claimed {
                if c.reclaimed_scan.is_some() {
                    self.state.leases_reclaimed.fetch_add(1, Ordering::Relaxed);
                }
                // Permits are free: we never claim more than available and only this loop takes them.
                let global = Arc::clone(&self.global).try_acquire_owned();
                let regional = Arc::clone(&self.regions[&region]).try_acquire_owned();
                match (global, regional) {
                    (Ok(g), Ok(r)) => {
                        self.spawn_scan(c, [g, r]);
                        started += 1;
                    }
                    _ => {
                        let _ = lease::release(
                            &self.scanner.pool,
                            c.instance_id,
                            c.lease_token,
                            c.scan_id,
                            Utc::now(),
                            "no free permit",
                        )
                        .await;
                    }
                }
            }
        }
        Ok(started)
    }

    fn spawn_scan(self: &Arc<Self>, claimed: Claimed, permits: [OwnedSemaphorePermit; 2]) {
        let cancel = self.hard_stop.child_token();
        if let Ok(mut m) = self.in_flight.lock() {
            m.insert(
                claimed.instance_id,
                InFlight {
                    lease_token: claimed.lease_token,
                    cancel: cancel.clone(),
                },
            );
        }
        self.state.scans_started.fetch_add(1, Ordering::Relaxed);
        let this = Arc::clone(self);
        let span = tracing::info_span!("scheduled_scan", instance_id = %claimed.instance_id, scan_id = %claimed.scan_id);
        self.tracker.spawn(
            async move {
                let _permits = permits;
                this.run_claimed(&claimed, cancel).await;
                if let Ok(mut m) = this.in_flight.lock() {
                    m.remove(&claimed.instance_id);
                }
            }
            .instrument(span),
        );
    }

    async fn run_claimed(&self, c: &Claimed, cancel: CancellationToken) {
        let settings = &self.scanner.settings;
        let now = Utc::now();
        let schedule_text = c
            .schedule
            .clone()
            .unwrap_or_else(|| settings.scheduler.default_schedule.clone());
        let schedule = Schedule::parse(&schedule_text).unwrap_or_else(|e| {
            warn!(schedule = %schedule_text, error = %e, "invalid schedule in the database; using the default");
            Schedule::parse(&settings.scheduler.default_schedule).expect("default schedule validated at startup")
        });
        let failures = c.consecutive_failures.max(0) as u32;
        let fence = Fence {
            lease_token: c.lease_token,
            scan_id: Some(c.scan_id),
            next_on_success: timing::next_on_success(&schedule, now, settings.scheduler.jitter),
            next_on_failure: timing::next_on_failure(
                &schedule,
                now,
                failures,
                settings.scheduler.max_backoff,
                settings.scheduler.jitter,
            ),
        };
        let instance = match instances::find(&self.scanner.pool, &c.instance_id.to_string()).await {
            Ok(Some(i)) => i,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "cannot load the claimed instance; its lease will lapse");
                return;
            }
        };
        let result = tokio::select! {
            r = self.scanner.scan(&instance, Trigger::Schedule, Some(fence.clone())) => Some(r),
            _ = cancel.cancelled() => None,
        };
        match result {
            Some(Ok(report)) => {
                match (report.status, report.rate_limited_reset) {
                    (_, Some(_)) => self
                        .state
                        .scans_rate_limited
                        .fetch_add(1, Ordering::Relaxed),
                    (ScanStatus::Succeeded, _) => {
                        self.state.scans_succeeded.fetch_add(1, Ordering::Relaxed)
                    }
                    (ScanStatus::Failed, _) => {
                        self.state.scans_failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            Some(Err(ScanError::LeaseLost(_))) => {
                self.state.leases_lost.fetch_add(1, Ordering::Relaxed);
                warn!("lease lost during the scan; its writes were rolled back");
            }
            Some(Err(ScanError::InstanceGone(_))) => info!("instance removed during its scan"),
            Some(Err(e)) => {
                self.state.scans_failed.fetch_add(1, Ordering::Relaxed);
                error!(error = %e, "scan could not be recorded");
                let _ = lease::release(
                    &self.scanner.pool,
                    c.instance_id,
                    c.lease_token,
                    c.scan_id,
                    fence.next_on_failure,
                    &e.to_string(),
                )
                .await;
            }
            None => {
                info!("scan cancelled by shutdown; releasing its lease for another replica");
                if let Err(e) = lease::release(
                    &self.scanner.pool,
                    c.instance_id,
                    c.lease_token,
                    c.scan_id,
                    Utc::now(),
                    "cancelled: the replica shut down before the scan finished",
                )
                .await
                {
                    warn!(error = %e, "could not release the lease; it will lapse");
                }
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let settings = &self.scanner.settings.scheduler;
        let mut tick = tokio::time::interval(settings.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                // Keep heartbeating while draining: leases must outlive the drain.
                _ = self.hard_stop.cancelled() => return,
            }
            let _ = &shutdown;
            let held: Vec<(Uuid, Uuid)> = match self.in_flight.lock() {
                Ok(m) => m.iter().map(|(id, f)| (*id, f.lease_token)).collect(),
                Err(_) => continue,
            };
            match lease::heartbeat(&self.scanner.pool, &held, settings.lease).await {
                Ok(lost) => {
                    for id in lost {
                        warn!(instance_id = %id, "lease lost; cancelling the scan");
                        self.state.leases_lost.fetch_add(1, Ordering::Relaxed);
                        if let Ok(m) = self.in_flight.lock() {
                            if let Some(f) = m.get(&id) {
                                f.cancel.cancel();
                            }
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "heartbeat failed; leases may lapse if the database stays away")
                }
            }
        }
    }
}

use lease::Claimed;
