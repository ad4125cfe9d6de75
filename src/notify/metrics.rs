//! Alert delivery metrics (Prometheus through the `metrics` facade; no-ops without a
//! recorder). Labels are bounded: channel kind and result, never a channel name.

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

pub const NOTIFICATIONS_TOTAL: &str = "sspm_notifications_total";
pub const OUTBOX_PENDING: &str = "sspm_notification_outbox_pending";
pub const OLDEST_PENDING_AGE: &str = "sspm_notification_oldest_pending_age_seconds";

/// Called once by the worker after the daemon installed the recorder.
pub fn describe() {
    describe_counter!(
        NOTIFICATIONS_TOTAL,
        "Alert send attempts by channel kind and result (delivered, retry, failed, dead)."
    );
    describe_gauge!(
        OUTBOX_PENDING,
        "Alert messages waiting in the outbox (fleet-wide)."
    );
    describe_gauge!(
        OLDEST_PENDING_AGE,
        Unit::Seconds,
        "Age of the oldest pending alert message (0 when none is pending)."
    );
}

pub fn attempt(kind: &'static str, result: &'static str) {
    counter!(NOTIFICATIONS_TOTAL, "kind" => kind, "result" => result).increment(1);
}

pub fn backlog(pending: i64, oldest_age_seconds: f64) {
    gauge!(OUTBOX_PENDING).set(pending as f64);
    gauge!(OLDEST_PENDING_AGE).set(oldest_age_seconds.max(0.0));
}
