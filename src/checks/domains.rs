//! Email address parsing and domain classification shared by the teammate and invite checks.

/// The lower-cased domain of an address, or `None` when it is not `local@domain`.
pub(crate) fn email_domain(email: &str) -> Option<String> {
    let (local, domain) = email.trim().rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!local.is_empty() && domain.contains('.') && !domain.contains(char::is_whitespace))
        .then_some(domain)
}

/// The lower-cased local part without a `+tag`: `Support+eu@x.com` is the shared `support`.
pub(crate) fn local_part(email: &str) -> Option<String> {
    let (local, _) = email.trim().rsplit_once('@')?;
    let base = local.split('+').next().unwrap_or(local);
    (!base.is_empty()).then(|| base.to_ascii_lowercase())
}

/// `*` stands for exactly one label, so `gmx.*` matches `gmx.de` but not `gmx.co.uk` or
/// `mail.gmx.de`; other patterns match exactly. Both sides are compared case-insensitively.
pub(crate) fn matches_pattern(domain: &str, pattern: &str) -> bool {
    let pattern = pattern.trim().trim_start_matches('@').to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    if !pattern.contains('*') {
        return domain == pattern;
    }
    let (d, p): (Vec<&str>, Vec<&str>) =
        (domain.split('.').collect(), pattern.split('.').collect());
    d.len() == p.len()
        && d.iter()
            .zip(&p)
            .all(|(dl, pl)| (*pl == "*" && !dl.is_empty()) || dl == pl)
}

pub(crate) fn is_personal(domain: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| matches_pattern(domain, p))
}

/// A domain is allowed when it equals an allowed domain or is one of its subdomains
/// (`eu.example.com` belongs to whoever owns `example.com`).
pub(crate) fn is_allowed(domain: &str, allowed: &[String]) -> bool {
    let domain = domain.to_ascii_lowercase();
    allowed.iter().any(|a| {
        let a = a.trim().trim_start_matches('@').to_ascii_lowercase();
        !a.is_empty()
            && (domain == a
                || domain
                    .strip_suffix(a.as_str())
                    .is_some_and(|rest| rest.ends_with('.')))
    })
}

/// Email addresses found in free text (an activity description), lower-cased, in order,
/// without duplicates.
pub(crate) fn emails_in_text(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let is_edge = |c: char| !(c.is_ascii_alphanumeric() || "@._%+-".contains(c));
    for token in text.split(is_edge) {
        let token = token.trim_matches(|c: char| c == '.' || c == '-');
        if token.matches('@').count() == 1 && email_domain(token).is_some() {
            let lower = token.to_ascii_lowercase();
            if !found.contains(&lower) {
                found.push(lower);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_domains_and_local_parts() {
        assert_eq!(
            email_domain(" J.Doe@GMail.com ").as_deref(),
            Some("gmail.com")
        );
        assert_eq!(
            email_domain("x@example.com.").as_deref(),
            Some("example.com")
        );
        assert_eq!(email_domain("no-at-sign"), None);
        assert_eq!(email_domain("@example.com"), None);
        assert_eq!(email_domain("a@localhost"), None);
        assert_eq!(local_part("Support+EU@x.com").as_deref(), Some("support"));
        assert_eq!(local_part("+x@x.com"), None);
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        assert!(matches_pattern("gmx.de", "gmx.*"));
        assert!(matches_pattern("GMX.net", "gmx.*"));
        assert!(!matches_pattern("gmx.co.uk", "gmx.*"));
        assert!(!matches_pattern("mail.gmx.de", "gmx.*"));
        assert!(!matches_pattern("gmxx.de", "gmx.*"));
        assert!(matches_pattern("gmail.com", "Gmail.com"));
        assert!(!matches_pattern("notgmail.com", "gmail.com"));
        assert!(is_personal("yandex.ru", &list(&["yandex.*"])));
    }

    #[test]
    fn allowed_domains_include_subdomains_only() {
        let allowed = list(&["example.com", "@Corp.io"]);
        assert!(is_allowed("example.com", &allowed));
        assert!(is_allowed("eu.example.com", &allowed));
        assert!(is_allowed("corp.io", &allowed));
        assert!(!is_allowed("badexample.com", &allowed));
        assert!(!is_allowed("example.com.evil.io", &allowed));
        assert!(!is_allowed("example.com", &list(&[""])));
    }

    #[test]
    fn finds_emails_in_descriptions() {
        let text = "Ciaran (admin5@email.com) invited J.Doe@Gmail.com, and j.doe@gmail.com.";
        assert_eq!(
            emails_in_text(text),
            ["admin5@email.com", "j.doe@gmail.com"]
        );
        assert!(emails_in_text("no address here @ all").is_empty());
    }
}
