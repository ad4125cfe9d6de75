//! Finding exports for other systems (SIEMs, spreadsheets).
pub mod csv;
pub mod ocsf;
