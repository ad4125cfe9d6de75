//! Domain names as the checks compare them: IDNA (punycode) ASCII, lower case, registrable
//! domains per the Public Suffix List (the `psl` crate compiles the list into the binary;
//! nothing is downloaded), and label-based subdomain matching.

/// The ASCII (punycode) lower-case form of a host name, or `None` when it is not a domain
/// of at least two labels made of letters, digits and hyphens. `Acme.COM.`, `münchen.de`
/// (→ `xn--mnchen-3ya.de`) and `xn--mnchen-3ya.de` are accepted; `a b.com`, `localhost`,
/// `.com`, `a..com` and `-x.com` are not.
pub fn normalize_domain(raw: &str) -> Option<String> {
    let raw = raw.trim().trim_end_matches('.');
    if raw.is_empty() || raw.len() > 253 {
        return None;
    }
    let ascii = idna::domain_to_ascii_cow(raw.as_bytes(), idna::AsciiDenyList::URL)
        .ok()?
        .into_owned();
    let labels: Vec<&str> = ascii.split('.').collect();
    let well_formed = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    well_formed.then_some(ascii)
}

/// The registrable domain ("eTLD+1") of a normalized domain: `eu.acme.co.uk` → `acme.co.uk`.
/// `None` for a bare public suffix (`co.uk`, `com`, `github.io`).
pub fn registrable(domain: &str) -> Option<&str> {
    psl::domain_str(domain)
}

/// True when a lower-case name is itself a listed public suffix (`com`, `co.uk`,
/// `github.io`), so nobody owns it as a whole. Unlisted names (`localhost`) are not.
pub fn is_public_suffix(name: &str) -> bool {
    psl::suffix(name.as_bytes()).is_some_and(|s| s.is_known() && s.as_bytes() == name.as_bytes())
}

/// `domain` equals `parent` or is one of its subdomains, label by label: `eu.acme.com` is
/// within `acme.com`; `notacme.com` and `acme.com.evil.io` are not.
pub fn is_within(domain: &str, parent: &str) -> bool {
    domain == parent
        || domain
            .strip_suffix(parent)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// The domain and each parent down to (and including) its registrable domain, most specific
/// first: `a.b.acme.co.uk` → `a.b.acme.co.uk`, `b.acme.co.uk`, `acme.co.uk`. A domain without
/// a registrable part yields itself only. At most one lookup per label: O(1) per address.
pub fn self_and_parents(domain: &str) -> impl Iterator<Item = &str> {
    let stop = registrable(domain).map_or(domain.len(), str::len);
    let mut next = Some(domain);
    std::iter::from_fn(move || {
        let current = next?;
        next = (current.len() > stop)
            .then(|| current.split_once('.').map(|(_, rest)| rest))
            .flatten()
            .filter(|rest| rest.len() >= stop);
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_trailing_dots_and_idn() {
        assert_eq!(normalize_domain(" Acme.COM. ").as_deref(), Some("acme.com"));
        assert_eq!(
            normalize_domain("münchen.de").as_deref(),
            Some("xn--mnchen-3ya.de")
        );
        assert_eq!(
            normalize_domain("XN--MNCHEN-3YA.de").as_deref(),
            Some("xn--mnchen-3ya.de")
        );
        assert_eq!(
            normalize_domain("例え.jp").as_deref(),
            Some("xn--r8jz45g.jp")
        );
        for bad in [
            "",
            "localhost",
            ".com",
            "a..com",
            "a b.com",
            "-x.com",
            "x-.com",
            "a_b.com",
            "@x.com",
        ] {
            assert_eq!(normalize_domain(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn registrable_domains_follow_the_public_suffix_list() {
        assert_eq!(registrable("eu.acme.co.uk"), Some("acme.co.uk"));
        assert_eq!(registrable("acme.com"), Some("acme.com"));
        assert_eq!(registrable("a.b.acme.com.au"), Some("acme.com.au"));
        assert_eq!(registrable("team.github.io"), Some("team.github.io"));
        assert_eq!(registrable("co.uk"), None);
        assert_eq!(registrable("com"), None);
        for suffix in ["co.uk", "com", "com.au", "github.io"] {
            assert!(is_public_suffix(suffix), "{suffix}");
        }
        assert!(!is_public_suffix("acme.co.uk"));
        assert!(!is_public_suffix("localhost"));
    }

    #[test]
    fn subdomains_match_by_label() {
        assert!(is_within("acme.com", "acme.com"));
        assert!(is_within("eu.support.acme.com", "acme.com"));
        assert!(!is_within("notacme.com", "acme.com"));
        assert!(!is_within("acme.com.evil.io", "acme.com"));
        assert!(!is_within("acme.co", "acme.com"));
    }

    #[test]
    fn parents_stop_at_the_registrable_domain() {
        let v: Vec<&str> = self_and_parents("a.b.acme.co.uk").collect();
        assert_eq!(v, ["a.b.acme.co.uk", "b.acme.co.uk", "acme.co.uk"]);
        let v: Vec<&str> = self_and_parents("gmail.com").collect();
        assert_eq!(v, ["gmail.com"]);
        let v: Vec<&str> = self_and_parents("co.uk").collect();
        assert_eq!(v, ["co.uk"]);
    }
}
