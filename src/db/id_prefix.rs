//! Ids given by their first characters, as git takes commits: `exception remove 3f2a`
//! works when exactly one exception id starts with 3f2a. The lookups that use this live
//! beside their tables (`exceptions::resolve_id`, `attestations::resolve_id`).

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Fewer characters than this would match too much to be worth typing.
pub const MIN_LEN: usize = 4;

/// How many candidates an ambiguous prefix lists (the lookups fetch one more).
pub const MAX_CANDIDATES: i64 = 10;

/// A validated id prefix: lowercase hex digits, hyphens dropped (a full id is a prefix too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPrefix(String);

impl IdPrefix {
    /// The hex digits, for `replace(id::text, '-', '') LIKE prefix || '%'`.
    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for IdPrefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let hex: String = s.trim().chars().filter(|c| *c != '-').collect();
        if hex.len() < MIN_LEN || hex.len() > 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "an id is hexadecimal: give the whole id or its first {MIN_LEN} or more characters (see the list command)"
            ));
        }
        Ok(IdPrefix(hex.to_ascii_lowercase()))
    }
}

/// What a prefix names: the noun for messages and the CLI command that lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub noun: &'static str,
    pub command: &'static str,
}

pub const EXCEPTION: Kind = Kind {
    noun: "exception",
    command: "exception",
};
pub const ATTESTATION: Kind = Kind {
    noun: "attestation",
    command: "attest",
};

/// One row a prefix matched: the id and what it is (for listing ambiguous matches).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: Uuid,
    pub label: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdPrefixError {
    #[error("no {} with an id starting {prefix}: see `intercom-sspm {} list`", .kind.noun, .kind.command)]
    NotFound { kind: Kind, prefix: IdPrefix },
    #[error("{prefix} is the start of more than one {} id; give more characters of one of:\n{}", .kind.noun, list(.candidates))]
    Ambiguous {
        kind: Kind,
        prefix: IdPrefix,
        candidates: Vec<Candidate>,
    },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn list(candidates: &[Candidate]) -> String {
    let mut lines: Vec<String> = candidates
        .iter()
        .take(MAX_CANDIDATES as usize)
        .map(|c| format!("  {}  {}", c.id, c.label))
        .collect();
    if candidates.len() > MAX_CANDIDATES as usize {
        lines.push("  ...".into());
    }
    lines.join("\n")
}

/// The one id among `candidates` (all the rows `prefix` matched), or why there is none.
pub fn pick(
    kind: Kind,
    prefix: &IdPrefix,
    mut candidates: Vec<Candidate>,
) -> Result<Uuid, IdPrefixError> {
    match candidates.len() {
        0 => Err(IdPrefixError::NotFound {
            kind,
            prefix: prefix.clone(),
        }),
        1 => Ok(candidates.remove(0).id),
        _ => Err(IdPrefixError::Ambiguous {
            kind,
            prefix: prefix.clone(),
            candidates,
        }),
    }
}

/// The shortest prefix length (at least 8) that tells every id in `ids` apart, so a
/// table can show short ids that `remove` accepts.
pub fn short_len(ids: &[Uuid]) -> usize {
    let mut hex: Vec<String> = ids.iter().map(|id| id.simple().to_string()).collect();
    hex.sort();
    hex.dedup();
    let mut len = 8;
    for pair in hex.windows(2) {
        let common = pair[0]
            .bytes()
            .zip(pair[1].bytes())
            .take_while(|(a, b)| a == b)
            .count();
        len = len.max(common + 1);
    }
    len.min(32)
}

/// `id` cut to `len` hex digits (the hyphenated form when that is the whole id).
pub fn short(id: Uuid, len: usize) -> String {
    if len >= 32 {
        id.to_string()
    } else {
        id.simple().to_string()[..len].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_hex_of_a_useful_length() {
        assert_eq!("3F2A".parse::<IdPrefix>().unwrap().hex(), "3f2a");
        let full = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
        assert_eq!(
            full.parse::<IdPrefix>().unwrap().hex(),
            "1b4e28ba2fa111d2883f0016d3cca427"
        );
        assert_eq!(
            "1b4e28ba-2f".parse::<IdPrefix>().unwrap().hex(),
            "1b4e28ba2f"
        );
        for bad in ["", "3f2", "not-a-uuid", "3f2a%", "3f2a_", &"a".repeat(33)] {
            assert!(bad.parse::<IdPrefix>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pick_needs_exactly_one() {
        let p: IdPrefix = "abcd".parse().unwrap();
        let c = |n: u128| Candidate {
            id: Uuid::from_u128(n),
            label: format!("row {n}"),
        };
        assert_eq!(pick(EXCEPTION, &p, vec![c(1)]).unwrap(), Uuid::from_u128(1));
        let none = pick(EXCEPTION, &p, vec![]).unwrap_err().to_string();
        assert!(none.contains("exception list"), "{none}");
        let two = pick(EXCEPTION, &p, vec![c(1), c(2)])
            .unwrap_err()
            .to_string();
        assert!(
            two.contains(&Uuid::from_u128(1).to_string())
                && two.contains("row 2")
                && two.contains("more characters"),
            "{two}"
        );
    }

    #[test]
    fn short_ids_tell_rows_apart() {
        let a: Uuid = "3f2a1b4e-0000-0000-0000-000000000001".parse().unwrap();
        let b: Uuid = "3f2a1b4e-9000-0000-0000-000000000001".parse().unwrap();
        let c: Uuid = "77777777-0000-0000-0000-000000000001".parse().unwrap();
        assert_eq!(short_len(&[a, c]), 8);
        assert_eq!(short_len(&[a, b, c]), 9);
        assert_eq!(short(b, 9), "3f2a1b4e9");
        assert_eq!(short_len(&[]), 8);
        assert_eq!(short(a, 32), a.to_string());
    }
}
