//! The Intercom REST API as the scanner sees it: models, errors, the client.
pub mod client;
pub mod error;
pub mod models;

pub use client::{IntercomClient, Session};
pub use error::IntercomError;
