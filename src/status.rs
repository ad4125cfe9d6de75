//! The status columns' values, as enums: `sspm.instances.status`, `sspm.scans.status`,
//! `sspm.check_results.status` and `sspm.findings.status` (with `finding_events`).
//!
//! Each is an `sqlx::Type` stored as text, so writes bind the enum itself; reads go
//! through `db::Checked` (`status AS "status: Checked<FindingStatus>"`) so a value this
//! build does not know is an error naming its row, never a default or a skipped row.
//! The tests below hold the string forms to the schema's CHECK constraints.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An enum stored as one of a fixed set of text values.
pub trait TextEnum: Copy + 'static {
    /// Every value, in the schema's order.
    const ALL: &'static [Self];
    /// The values as the error for an unknown one lists them: `open, resolved, muted`.
    const EXPECTED: &'static str;

    fn as_str(self) -> &'static str;

    /// Exactly a stored form (no trimming or case folding: the database holds these).
    fn from_stored(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
        #[serde(rename_all = "snake_case")]
        #[sqlx(type_name = "text", rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl TextEnum for $name {
            const ALL: &'static [Self] = &[$( $name::$variant, )+];
            const EXPECTED: &'static str = concat_comma!($( $text ),+);

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

macro_rules! concat_comma {
    ($first:literal $(, $rest:literal)*) => {
        concat!($first $(, ", ", $rest)*)
    };
}

text_enum! {
    /// `sspm.instances.status`: what the last scan said about the instance's access.
    pub enum InstanceStatus {
        /// Onboarded, not scanned yet.
        Pending = "pending",
        Ok = "ok",
        /// Intercom rejected the token (revoked or regenerated).
        Unauthorized = "unauthorized",
        /// The token lacks a permission, or the plan does not offer the API.
        NotPermitted = "not_permitted",
        /// The workspace's IP allowlist blocks the scanner.
        IpNotAllowed = "ip_not_allowed",
        /// The API could not be reached or kept failing.
        Unreachable = "unreachable",
        Error = "error",
    }
}

text_enum! {
    /// `sspm.scans.status`: inserted `running`, finished `succeeded` or `failed` in the
    /// scan's transaction, or `abandoned` when its lease was released or reclaimed.
    pub enum ScanStatus {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Abandoned = "abandoned",
    }
}

text_enum! {
    /// `sspm.check_results.status`: one check's outcome in one scan.
    pub enum CheckStatus {
        Pass = "pass",
        Fail = "fail",
        /// The data the check needs could not be fetched or read: neither pass nor fail.
        Error = "error",
        /// The check could not run by design (disabled, scope not granted, history too short, manual).
        NotEvaluated = "not_evaluated",
    }
}

impl CheckStatus {
    /// Pass or fail: the check saw the data it needs.
    pub fn is_evaluated(self) -> bool {
        matches!(self, CheckStatus::Pass | CheckStatus::Fail)
    }
}

text_enum! {
    /// `sspm.findings.status` (and `finding_events.from_status` / `to_status`).
    pub enum FindingStatus {
        Open = "open",
        Resolved = "resolved",
        /// Matched by an operator-approved exception: recorded, not alerted on.
        Muted = "muted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = include_str!("../migrations/20261124000001_schema.sql");

    /// The quoted values of the CHECK constraint `name`, in order.
    fn check_values(name: &str) -> Vec<String> {
        let start = SCHEMA
            .find(&format!("CONSTRAINT {name} CHECK"))
            .unwrap_or_else(|| panic!("constraint {name} is in the schema"));
        let rest = &SCHEMA[start..];
        let list = &rest[rest.find(" IN").unwrap()..];
        let list = &list[list.find('(').unwrap() + 1..list.find(')').unwrap()];
        list.split(',')
            .map(|v| v.trim().trim_matches('\'').to_string())
            .collect()
    }

    fn assert_matches_schema<T: TextEnum + Serialize + sqlx::Encode<'static, sqlx::Postgres>>(
        constraint: &str,
    ) {
        let ours: Vec<&str> = T::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(ours, check_values(constraint), "{constraint}");
        assert_eq!(T::EXPECTED, ours.join(", "));
        for v in T::ALL {
            // serde (JSON output) and sqlx (the bound value) say the same as as_str.
            assert_eq!(
                serde_json::to_value(v).unwrap(),
                serde_json::json!(v.as_str())
            );
            let mut buf = sqlx::postgres::PgArgumentBuffer::default();
            let _ = sqlx::Encode::<sqlx::Postgres>::encode_by_ref(v, &mut buf).unwrap();
            assert_eq!(&buf[..], v.as_str().as_bytes());
            assert_eq!(
                T::from_stored(v.as_str()).map(|p| p.as_str()),
                Some(v.as_str())
            );
        }
        assert!(T::from_stored("").is_none());
        assert!(T::from_stored(&ours[0].to_uppercase()).is_none());
    }

    #[test]
    fn string_forms_match_the_schema_check_constraints() {
        assert_matches_schema::<InstanceStatus>("instances_status_valid");
        assert_matches_schema::<ScanStatus>("scans_status_valid");
        assert_matches_schema::<CheckStatus>("check_results_status_valid");
        assert_matches_schema::<FindingStatus>("findings_status_valid");
        assert_matches_schema::<FindingStatus>("finding_events_status_valid");
    }
}
