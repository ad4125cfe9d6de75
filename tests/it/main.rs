//! Integration tests, compiled as one binary so the suite links once.
//! Each module covers one area; storage tests use real Postgres (DATABASE_URL).

mod fuzz_parsers;
mod intercom_client;
mod sim_support;
mod simulator;
