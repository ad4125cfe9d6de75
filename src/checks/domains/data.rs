//! The vendored consumer and disposable mail-domain datasets (data/README.md). They are
//! compiled in and turned into hash sets once per process, on first use: every scan after
//! that does O(1) lookups per teammate and builds nothing.

use foldhash::HashSet;
use std::sync::LazyLock;

use super::names::self_and_parents;

const FREE_EMAIL_DOMAINS: &str = include_str!("../../../data/free_email_domains.txt");
const DISPOSABLE_EMAIL_DOMAINS: &str = include_str!("../../../data/disposable_email_domains.txt");

fn parse(text: &'static str) -> HashSet<&'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

static CONSUMER: LazyLock<HashSet<&'static str>> = LazyLock::new(|| parse(FREE_EMAIL_DOMAINS));
static DISPOSABLE: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| parse(DISPOSABLE_EMAIL_DOMAINS));

/// Builds both sets now if not built yet and returns their sizes (for a caller that wants
/// the first scan not to pay the one-off parse, and for tests).
pub fn preload() -> (usize, usize) {
    (CONSUMER.len(), DISPOSABLE.len())
}

/// Which dataset lists a normalized domain, or one of its parents down to its registrable
/// domain (`mail.yahoo.fr` is Yahoo's), and under which entry.
pub fn consumer_entry(domain: &str) -> Option<&'static str> {
    lookup(&CONSUMER, domain)
}

pub fn disposable_entry(domain: &str) -> Option<&'static str> {
    lookup(&DISPOSABLE, domain)
}

fn lookup(set: &HashSet<&'static str>, domain: &str) -> Option<&'static str> {
    self_and_parents(domain).find_map(|d| set.get(d).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_load_with_thousands_of_well_formed_entries() {
        let (consumer, disposable) = preload();
        assert!(consumer > 10_000, "consumer list has {consumer} entries");
        assert!(
            disposable > 5_000,
            "disposable list has {disposable} entries"
        );
        for d in CONSUMER.iter().chain(DISPOSABLE.iter()) {
            assert_eq!(
                super::super::names::normalize_domain(d).as_deref(),
                Some(*d),
                "{d:?} is not a normalized domain"
            );
        }
    }

    #[test]
    fn the_issue_16_domains_are_consumer_domains() {
        for d in [
            "yahoo.fr",
            "outlook.de",
            "hotmail.fr",
            "live.co.uk",
            "web.de",
            "t-online.de",
            "orange.fr",
            "libero.it",
            "mail.com",
            "gmail.com",
        ] {
            assert_eq!(consumer_entry(d), Some(d), "{d}");
        }
        assert_eq!(consumer_entry("mail.yahoo.fr"), Some("yahoo.fr"));
        assert_eq!(consumer_entry("acme.com"), None);
        assert_eq!(consumer_entry("notgmail.com"), None);
    }

    #[test]
    fn throwaway_providers_are_disposable_and_big_providers_are_not() {
        for d in [
            "mailinator.com",
            "guerrillamail.com",
            "yopmail.com",
            "10minutemail.com",
        ] {
            assert_eq!(disposable_entry(d), Some(d), "{d}");
        }
        for d in ["gmail.com", "yahoo.fr", "outlook.de", "acme.com"] {
            assert_eq!(disposable_entry(d), None, "{d}");
        }
    }
}
