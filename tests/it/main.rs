//! Integration tests, compiled as one binary so the suite links once.
//! Each module covers one area; storage tests use real Postgres (DATABASE_URL).

mod bad_input;
mod cli_scan;
mod console_hostile;
mod console_routes;
mod console_users_audit;
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
