//! Capability probes: a low-sensitivity GET that tells whether the token holds a scope.
//!
//! There is no token-introspection endpoint (API.md §5), so the only way to learn whether a
//! token can do more than it needs is to try a harmless read. The body of a successful
//! probe is read (within the size cap, so the connection can be reused) and dropped: it is
//! never parsed or stored.

use super::error::IntercomError;

/// What a probe found out.
#[derive(Debug, Clone)]
pub enum ProbeOutcome {
    /// 2xx: the token may call the endpoint.
    Allowed,
    /// The API refused for scope or plan (`NotPermitted` or `PlanRestricted`); the error says how.
    Refused(IntercomError),
}

impl ProbeOutcome {
    pub fn is_allowed(&self) -> bool {
        matches!(self, ProbeOutcome::Allowed)
    }

    /// A request's result as a probe outcome: refusals are answers, other failures are errors.
    pub(crate) fn from_result<T>(result: Result<T, IntercomError>) -> Result<Self, IntercomError> {
        match result {
            Ok(_) => Ok(ProbeOutcome::Allowed),
            Err(
                e @ (IntercomError::NotPermitted { .. } | IntercomError::PlanRestricted { .. }),
            ) => Ok(ProbeOutcome::Refused(e)),
            Err(e) => Err(e),
        }
    }
}

/// Probe targets are fixed API paths such as `/tags`; anything else (a query, a scheme, `..`)
/// is refused before a request is built, so a probe can never be steered elsewhere.
pub(crate) fn valid_probe_path(endpoint: &str) -> bool {
    endpoint.len() > 1
        && endpoint.starts_with('/')
        && !endpoint.contains("//")
        && !endpoint.split('/').any(|seg| seg == "." || seg == "..")
        && endpoint
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_paths_are_plain() {
        for ok in [
            "/tags",
            "/ip_allowlist",
            "/teams",
            "/admins/activity_log_event_types",
        ] {
            assert!(valid_probe_path(ok), "{ok}");
        }
        for bad in [
            "",
            "/",
            "tags",
            "//evil.example/x",
            "/tags?x=1",
            "/../x",
            "/a/./b",
            "/tags#f",
            "https://evil.example/tags",
            "/t ags",
        ] {
            assert!(!valid_probe_path(bad), "{bad}");
        }
    }

    #[test]
    fn refusals_are_outcomes_and_other_failures_errors() {
        let refused = |e| ProbeOutcome::from_result::<()>(Err(e));
        assert!(matches!(
            refused(IntercomError::NotPermitted {
                endpoint: "/tags".into(),
                status: 401,
                code: "token_unauthorized".into(),
                message: String::new()
            }),
            Ok(ProbeOutcome::Refused(_))
        ));
        assert!(matches!(
            refused(IntercomError::PlanRestricted {
                endpoint: "/tags".into(),
                message: String::new()
            }),
            Ok(ProbeOutcome::Refused(_))
        ));
        assert!(refused(IntercomError::Unauthorized {
            endpoint: "/tags".into(),
            code: "unauthorized".into()
        })
        .is_err());
        assert!(ProbeOutcome::from_result(Ok(())).unwrap().is_allowed());
    }
}
