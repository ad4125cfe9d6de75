//! The web console: server-rendered pages over the same database the daemon writes,
//! behind mandatory authentication (local users or a trusted reverse proxy).

pub mod role;
pub mod settings;
pub mod users;
