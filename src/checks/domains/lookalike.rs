//! Lookalike domains: a teammate domain whose registrable domain imitates an allowed one.
//!
//! Compared on the registrable domains (`label.suffix`, Public Suffix List), after the
//! teammate's domain is known not to be an allowed domain or a subdomain of one:
//!
//! | rule | example for `acme.com` |
//! |---|---|
//! | `embedded`: the allowed domain's labels appear in order inside the name, split at dots and hyphens | `acme.com.evil.io`, `acme-com.io`, `login-acme.com` |
//! | `hyphen_or_digit`: the label with hyphens and digits removed is the allowed label, or a hyphen-separated part of it is | `acme-corp.com`, `ac-me.com`, `acme2.com` |
//! | `suffix_swapped`: same label, other public suffix | `acme.co`, `acme.net`, `acme.co.uk` |
//! | `edit_distance`: the labels differ by at most 2 edits (insert, delete, substitute, swap two neighbours), also after mapping look-alike characters (`rn`→`m`, `vv`→`w`, `0`→`o`, Cyrillic `а`→`a`, …) | `acrne.com`, `acmee.com`, `amce.com`, `аcme.com` (Cyrillic а) |
//!
//! Short labels would make the edit-distance rule flag unrelated companies (`ibm.com` is
//! two edits from every three-letter name), so the allowed distance scales with the label:
//! 2 from 6 characters, 1 for 4-5 characters, and below that only a look-alike character
//! mapping that makes the labels identical.
//!
//! Decided: `acmeinc.org` is **not** a lookalike of `acme.com`. The allowed label glued to
//! other letters without a hyphen or dot (`acmeinc`, `dropbox` for `box.com`, `slacker`
//! for `slack.com`) is too common among unrelated companies to report as high severity; such
//! a teammate is still reported by `admin_external_domain` (medium) unless allowed.

use super::names::registrable;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookalikeRule {
    Embedded,
    HyphenOrDigit,
    SuffixSwapped,
    EditDistance,
}

impl LookalikeRule {
    pub fn as_str(self) -> &'static str {
        match self {
            LookalikeRule::Embedded => "embedded",
            LookalikeRule::HyphenOrDigit => "hyphen_or_digit",
            LookalikeRule::SuffixSwapped => "suffix_swapped",
            LookalikeRule::EditDistance => "edit_distance",
        }
    }
}

/// The allowed domain a normalized teammate domain imitates, and how; `None` when it
/// imitates none. The caller has checked that `domain` is not within an allowed domain.
pub fn imitated<'a>(domain: &str, allowed: &'a [String]) -> Option<(&'a str, LookalikeRule)> {
    let own = registrable(domain)?;
    // A teammate at another subdomain of an allowed organisation is that organisation.
    if allowed.iter().any(|a| registrable(a).unwrap_or(a) == own) {
        return None;
    }
    allowed.iter().find_map(|a| {
        let target = registrable(a).unwrap_or(a);
        rule(domain, own, target).map(|r| (a.as_str(), r))
    })
}

fn split_label(registrable: &str) -> (&str, &str) {
    registrable.split_once('.').unwrap_or((registrable, ""))
}

fn tokens(s: &str) -> Vec<&str> {
    s.split(['.', '-']).filter(|t| !t.is_empty()).collect()
}

fn rule(domain: &str, own: &str, target: &str) -> Option<LookalikeRule> {
    let (label, suffix) = split_label(own);
    let (t_label, t_suffix) = split_label(target);
    let target_tokens = tokens(target);
    if tokens(domain)
        .windows(target_tokens.len())
        .any(|w| w == target_tokens.as_slice())
    {
        return Some(LookalikeRule::Embedded);
    }
    if label == t_label {
        return (suffix != t_suffix).then_some(LookalikeRule::SuffixSwapped);
    }
    let bare = |l: &str| -> String {
        l.chars()
            .filter(|c| *c != '-' && !c.is_ascii_digit())
            .collect()
    };
    if bare(label) == bare(t_label) || label.split('-').any(|part| part == t_label) {
        return Some(LookalikeRule::HyphenOrDigit);
    }
    let limit = match t_label.chars().count() {
        0..=3 => 0,
        4..=5 => 1,
        _ => 2,
    };
    let raw = osa_distance(label, t_label);
    let skeleton = osa_distance(&skeleton(label), &skeleton(t_label));
    (raw.min(skeleton) <= limit).then_some(LookalikeRule::EditDistance)
}

/// The label with common look-alike characters mapped to the ASCII letters they imitate.
/// Punycode labels (`xn--`) are decoded first so Cyrillic and Greek homoglyphs map too.
fn skeleton(label: &str) -> String {
    let unicode = if label.starts_with("xn--") {
        idna::domain_to_unicode(label).0
    } else {
        label.to_string()
    };
    let mapped: String = unicode
        .chars()
        .map(|c| match c {
            'а' | 'α' => 'a',
            'с' | 'ϲ' => 'c',
            'е' | 'ε' => 'e',
            'һ' => 'h',
            'і' | 'ι' | '1' | 'l' | '|' => 'l',
            'ј' => 'j',
            'к' | 'κ' => 'k',
            'м' => 'm',
            'о' | 'ο' | '0' => 'o',
            'р' | 'ρ' => 'p',
            'ԛ' => 'q',
            'ѕ' | '5' => 's',
            'т' | 'τ' => 't',
            'υ' | 'ս' => 'u',
            'ν' | 'ѵ' => 'v',
            'х' | 'χ' => 'x',
            'у' => 'y',
            '3' => 'e',
            other => other,
        })
        .collect();
    // Two-character imitations last, on the mapped text: `rn` looks like `m` in most fonts.
    mapped
        .replace("rn", "m")
        .replace("vv", "w")
        .replace("cl", "d")
}

/// Optimal string alignment distance (Damerau-Levenshtein without repeated edits of one
/// substring): insertions, deletions, substitutions and swaps of neighbours cost 1.
fn osa_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::super::names::normalize_domain;
    use super::*;

    fn check(domain: &str, allowed: &[&str]) -> Option<(String, &'static str)> {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        let domain = normalize_domain(domain).unwrap();
        imitated(&domain, &allowed).map(|(a, r)| (a.to_string(), r.as_str()))
    }

    #[test]
    fn lookalike_table() {
        use LookalikeRule::*;
        let acme = ["acme.com"];
        let cases: &[(&str, &[&str], Option<LookalikeRule>)] = &[
            ("acme-corp.com", &acme, Some(HyphenOrDigit)),
            ("corp-acme.com", &acme, Some(Embedded)),
            ("acme-corp.io", &acme, Some(HyphenOrDigit)),
            ("ac-me.com", &acme, Some(HyphenOrDigit)),
            ("acme2024.com", &acme, Some(HyphenOrDigit)),
            ("acrne.com", &acme, Some(EditDistance)),
            ("acmee.com", &acme, Some(EditDistance)),
            ("amce.com", &acme, Some(EditDistance)),
            ("acne.io", &acme, Some(EditDistance)),
            ("аcme.com", &acme, Some(EditDistance)), // Cyrillic а
            ("acme.co", &acme, Some(SuffixSwapped)),
            ("acme.net", &acme, Some(SuffixSwapped)),
            ("mail.acme.co.uk", &acme, Some(SuffixSwapped)),
            ("acme.com.evil.io", &acme, Some(Embedded)),
            ("acme-com.io", &acme, Some(Embedded)),
            ("login-acme.com", &acme, Some(Embedded)),
            ("sso.acme.com.attacker.net", &acme, Some(Embedded)),
            // Decided: glued without a separator is external, not a lookalike.
            ("acmeinc.org", &acme, None),
            ("notacme.com", &acme, None),
            ("zenith.com", &acme, None),
            ("contractor.io", &acme, None),
            ("apex.com", &acme, None),
            ("globex.com", &acme, None),
            // Other subdomains of an allowed organisation are that organisation.
            ("acme.com", &["eu.acme.com"], None),
            ("globex.co.uk", &["eu.globex.co.uk"], None),
            // Longer labels tolerate two edits, short ones only homoglyphs.
            ("glbex.com", &["globex.com"], Some(EditDistance)),
            ("initech.com", &["initech.io"], Some(SuffixSwapped)),
            ("intiech.com", &["initech.com"], Some(EditDistance)),
            ("inittech-hq.com", &["initech.com"], None),
            ("ibn.com", &["ibm.com"], None),
            ("ibrn.com", &["ibm.com"], Some(EditDistance)),
            ("box.com", &["dropbox.com"], None),
            ("dropbox.com", &["box.com"], None),
            (
                "acme-corp.com",
                &["globex.com", "acme.com"],
                Some(HyphenOrDigit),
            ),
        ];
        for (domain, allowed, want) in cases {
            let got = check(domain, allowed).map(|(_, r)| r);
            assert_eq!(
                got,
                want.map(LookalikeRule::as_str),
                "{domain} vs {allowed:?}"
            );
        }
    }

    #[test]
    fn evidence_names_the_imitated_domain() {
        assert_eq!(
            check("acme-corp.com", &["globex.com", "acme.com"]),
            Some(("acme.com".into(), "hyphen_or_digit"))
        );
    }

    #[test]
    fn osa_distance_counts_swaps_once() {
        assert_eq!(osa_distance("acme", "amce"), 1);
        assert_eq!(osa_distance("acme", "acrne"), 2);
        assert_eq!(osa_distance("", "abc"), 3);
        assert_eq!(osa_distance("kitten", "sitting"), 3);
        assert_eq!(skeleton("acrne"), "acme");
        let cyrillic = normalize_domain("аcme.com").unwrap();
        assert!(cyrillic.starts_with("xn--"), "{cyrillic}");
        assert_eq!(skeleton(cyrillic.split('.').next().unwrap()), "acme");
    }
}
