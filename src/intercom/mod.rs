//! The Intercom REST API as the scanner sees it: models, errors, the client.
//!
//! `client` (sessions and the request policy), `pagination` (the activity-log pager and the
//! same-origin rule), `retry` (backoff and the time budget), `pacing` (rate-limit headers),
//! `response` (body caps, decoding, error classification), `probe` (scope probes).
pub mod client;
pub mod error;
pub mod models;
mod pacing;
mod pagination;
mod probe;
mod response;
mod retry;

pub use client::{IntercomClient, RetryNotice, RetryObserver, Session};
pub use error::IntercomError;
pub use pagination::{check_same_origin, ActivityLogPager};
pub use probe::ProbeOutcome;
pub use response::{classify, decode};
