//! One module per console page.

pub mod attestations;
pub mod audit;
pub mod channels;
pub mod checks;
pub mod compliance;
pub mod exception;
pub mod finding;
pub mod findings;
pub mod fleet;
pub mod instance;
pub mod login;
pub mod manage;
pub mod onboard;
pub mod users;
