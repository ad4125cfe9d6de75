//! The check catalog (../../CHECKS.md): metadata as data plus pure functions over a scan
//! snapshot and the previous state. No I/O here.
mod settings;

pub use settings::CheckSettings;
