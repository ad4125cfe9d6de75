//! Intercom hosting regions. A workspace lives in exactly one; its token only works there.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Stored as text (`us`, `eu`, `au`); read with `region AS "region: Region"`, so a value
/// outside the three is a decode error naming the column, never a silent default.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, sqlx::Type,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Region {
    Us,
    Eu,
    Au,
}

impl Region {
    pub const ALL: [Region; 3] = [Region::Us, Region::Eu, Region::Au];

    pub fn as_str(self) -> &'static str {
        match self {
            Region::Us => "us",
            Region::Eu => "eu",
            Region::Au => "au",
        }
    }

    /// The official API host, used when config does not override it.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Region::Us => "https://api.intercom.io",
            Region::Eu => "https://api.eu.intercom.io",
            Region::Au => "https://api.au.intercom.io",
        }
    }

    /// The web app host an operator logs into; how they tell which region they are in.
    pub fn web_app_host(self) -> &'static str {
        match self {
            Region::Us => "app.intercom.com",
            Region::Eu => "app.eu.intercom.com",
            Region::Au => "app.au.intercom.com",
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown region {0:?}: use one of us, eu, au (the region your workspace is hosted in; see the host you log into: app.intercom.com = us, app.eu.intercom.com = eu, app.au.intercom.com = au)")]
pub struct UnknownRegion(pub String);

impl FromStr for Region {
    type Err = UnknownRegion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "us" => Ok(Region::Us),
            "eu" => Ok(Region::Eu),
            "au" => Ok(Region::Au),
            _ => Err(UnknownRegion(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_rejects_unknown() {
        assert_eq!("EU".parse::<Region>().unwrap(), Region::Eu);
        assert_eq!(" au ".parse::<Region>().unwrap(), Region::Au);
        let err = "ca".parse::<Region>().unwrap_err();
        assert!(err.to_string().contains("us, eu, au"));
    }
}
