//! Integration tests, compiled as one binary so the suite links once.
//! Each module covers one area; storage tests use real Postgres (DATABASE_URL).

mod alerts_delivery;
mod alerts_faults;
mod alerts_leaks;
mod alerts_rotation;
mod alerts_support;
mod bad_input;
mod cli_scan;
mod consumer_read_path;
mod daemon;
mod daemon_housekeeping;
mod daemon_support;
mod deploy_artifacts;
mod fuzz_parsers;
mod harness;
mod intercom_client;
mod onboarding;
mod scans;
mod security_hostile;
mod security_leaks;
mod security_rotation;
mod security_supply_chain;
mod sim_support;
mod simulator;
