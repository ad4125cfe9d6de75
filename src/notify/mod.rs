//! Alerts: findings that reach people (docs/ALERTS.md).
//!
//! One module per job: `channels` (the model, secret sealing, SQL), `channel_input`
//! (what the CLI and the console accept for a channel, validated once), `rules` (which
//! transitions a channel wants), `outbox` (enqueue inside the scan's transaction, claim,
//! settle), `render` (bodies per channel kind), `sign` (Standard Webhooks), `send` (HTTP
//! and SMTP), `worker` (the delivery loop in every replica), `digest` (scheduled
//! summaries, once per slot across the fleet), `metrics`.

pub mod channel_input;
pub mod channels;
pub mod digest;
pub mod metrics;
pub mod outbox;
pub mod render;
pub mod rules;
pub mod send;
pub mod sign;
pub mod worker;

pub use outbox::{enqueue_for_scan, ScanNotice};
