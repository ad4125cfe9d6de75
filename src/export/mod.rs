//! Finding exports for other systems (SIEMs, spreadsheets).
pub mod ocsf;
