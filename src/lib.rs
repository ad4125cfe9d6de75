//! intercom-sspm: a self-hosted security posture scanner for Intercom workspaces.
//!
//! Layout: `config` (settings), `crypto` (token sealing), `db` (Postgres access),
//! `intercom` (API client and models), `checks` (pure check logic), `scan`
//! (collect → evaluate → persist), `cli` (command handlers). The Intercom simulator lives in
//! its own crate, `intercom-sim` (crates/intercom-sim).
#![forbid(unsafe_code)]

pub mod attest;
pub mod audit;
pub mod checks;
pub mod cli;
pub mod config;
pub mod console;
pub mod crypto;
pub mod daemon;
pub mod db;
pub mod exceptions;
pub mod expiry;
pub mod export;
pub mod intercom;
pub mod lifecycle;
pub mod manage;
pub mod metrics;
pub mod notify;
pub mod onboard;
pub mod region;
pub mod scan;
pub mod schedule;
pub mod scheduler;
pub mod server;
pub mod status;
pub mod telemetry;
pub mod token;

pub use region::Region;

/// Sent as `User-Agent` so Intercom (and proxies) can tell who is calling.
pub const USER_AGENT: &str = concat!("intercom-sspm/", env!("CARGO_PKG_VERSION"));
