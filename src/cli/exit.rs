//! Exit codes, distinct so scripts can tell failures apart (documented in `--help` and
//! the README).

use std::process::ExitCode;

/// A scan failed, or any other error. (0 is success; 2, a usage error, is clap's.)
pub const FAILURE: u8 = 1;
/// The named instance (or exception, attestation) does not exist.
pub const NOT_FOUND: u8 = 3;
/// Postgres could not be reached (retrying later may help).
pub const DATABASE_UNAVAILABLE: u8 = 4;

/// An error that means "no such thing" (exit 3) where no typed error says so already.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct NotFound {
    pub message: String,
}

pub fn code_for(e: &anyhow::Error) -> ExitCode {
    let code = e
        .chain()
        .find_map(|cause| {
            if matches!(
                cause.downcast_ref::<crate::db::instances::InstanceError>(),
                Some(crate::db::instances::InstanceError::NotFound(_))
            ) || matches!(
                cause.downcast_ref::<crate::db::id_prefix::IdPrefixError>(),
                Some(crate::db::id_prefix::IdPrefixError::NotFound { .. })
            ) || cause.downcast_ref::<NotFound>().is_some()
            {
                Some(NOT_FOUND)
            } else if matches!(
                cause.downcast_ref::<crate::db::DbError>(),
                Some(crate::db::DbError::Connect { .. })
            ) {
                Some(DATABASE_UNAVAILABLE)
            } else {
                None
            }
        })
        .unwrap_or(FAILURE);
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_their_codes() {
        let nf: anyhow::Error = crate::db::instances::InstanceError::NotFound("acme".into()).into();
        assert_eq!(code_for(&nf), ExitCode::from(NOT_FOUND));
        let db: anyhow::Error = crate::db::DbError::Connect {
            target: "x".into(),
            reason: "refused".into(),
        }
        .into();
        assert_eq!(
            code_for(&db.context("listing instances")),
            ExitCode::from(DATABASE_UNAVAILABLE)
        );
        assert_eq!(code_for(&anyhow::anyhow!("boom")), ExitCode::from(FAILURE));
        let prefix = "3f2a".parse().unwrap();
        let unknown: anyhow::Error =
            crate::db::id_prefix::pick(crate::db::id_prefix::EXCEPTION, &prefix, Vec::new())
                .unwrap_err()
                .into();
        assert_eq!(code_for(&unknown), ExitCode::from(NOT_FOUND));
    }

    #[test]
    fn help_documents_every_code() {
        use clap::CommandFactory;
        let help = super::super::Cli::command().render_long_help().to_string();
        for (code, words) in [
            (FAILURE, "a scan failed"),
            (2, "usage error"),
            (NOT_FOUND, "not found"),
            (DATABASE_UNAVAILABLE, "database unavailable"),
        ] {
            assert!(help.contains(&format!("{code}  {words}")), "{help}");
        }
    }
}
