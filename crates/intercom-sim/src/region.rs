//! The three regional path prefixes the simulator serves (`/us`, `/eu`, `/au`).
//!
//! The simulator is a stand-in for Intercom and knows nothing of the scanner, so it keeps
//! its own small region type instead of depending on the product crate.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Us,
    Eu,
    Au,
}

impl Region {
    pub const ALL: [Region; 3] = [Region::Us, Region::Eu, Region::Au];

    /// The path prefix, as in `http://127.0.0.1:PORT/eu`.
    pub fn as_str(self) -> &'static str {
        match self {
            Region::Us => "us",
            Region::Eu => "eu",
            Region::Au => "au",
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
