//! Integration tests, compiled as one binary so the suite links once.
//! Each module covers one area; storage tests use real Postgres (DATABASE_URL).
//! Shared helpers live in `support` (see its module docs and README "Adding a test").

mod support;

mod activity_history;
mod alerts_delivery;
mod alerts_faults;
mod alerts_leaks;
mod alerts_rotation;
mod bad_input;
mod claim_target;
mod cli_conventions;
mod cli_scan;
mod cli_schedule;
mod cli_schema;
mod config_errors;
mod console_actions;
mod console_admin_pages;
mod console_attest_overrides;
mod console_e2e;
mod console_exceptions;
mod console_hostile;
mod console_onboard_check;
mod console_routes;
mod console_tls;
mod console_users_audit;
mod consumer_read_path;
mod daemon_claims;
mod daemon_clocks;
mod daemon_faults;
mod daemon_housekeeping;
mod daemon_probes;
mod daemon_scheduling;
mod daemon_shutdown;
mod daemon_wiring;
mod deploy_artifacts;
mod differential;
mod domain_findings;
mod fuzz_parsers;
mod instance_summary;
mod intercom_client;
mod onboarding;
mod prometheus_rules;
mod scan_lock;
mod scans;
mod security_hostile;
mod security_leaks;
mod security_rotation;
mod security_supply_chain;
mod sim_openapi;
mod simulator;
mod unknown_values;
