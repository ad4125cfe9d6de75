//! Form handling the action pages share: which field an error belongs to (the rules
//! themselves live in `crate::onboard` and `crate::manage`, used by the CLI too), the
//! errors of one form, and the schedule preview.

use chrono::{DateTime, Utc};

use crate::crypto::CryptoError;
use crate::manage::ManageError;
use crate::onboard::{self, OnboardError};
use crate::schedule::{Schedule, ScheduleError};
use crate::token::TokenError;

/// Errors of one submitted form, by field name (`general` for the form as a whole).
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(pub Vec<(&'static str, String)>);

impl FieldErrors {
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The message for `field`, for templates (empty when the field is fine).
    pub fn get(&self, field: &str) -> &str {
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
            .unwrap_or("")
    }

    pub fn has(&self, field: &str) -> bool {
        self.0.iter().any(|(f, _)| *f == field)
    }
}

/// The token fields of a form (a pasted token or a `file:`/`env:` reference, exactly one),
/// validated with the CLI's rules; None with the reason added to `errors` otherwise.
/// `missing` is what to say when both are empty.
pub fn token_input(
    token: Option<secrecy::SecretString>,
    token_ref: &str,
    token_key_file: Option<&std::path::Path>,
    missing: &str,
    errors: &mut FieldErrors,
) -> Option<onboard::TokenInput> {
    use secrecy::ExposeSecret;
    let token = token.filter(|t| !t.expose_secret().trim().is_empty());
    let result = match (token, token_ref.is_empty()) {
        (Some(_), false) => {
            errors.add(
                "token",
                "give either the access token or a token reference, not both",
            );
            return None;
        }
        (Some(t), true) => crate::token::normalize_token(t.expose_secret())
            .map(onboard::TokenInput::Plain)
            .map_err(OnboardError::from),
        (None, false) => {
            onboard::token_reference(token_ref, token_key_file).map(onboard::TokenInput::Reference)
        }
        (None, true) => {
            errors.add("token", missing);
            return None;
        }
    };
    match result {
        Ok(input) => Some(input),
        Err(e) => {
            match field_of(&e) {
                Ok((field, msg)) => errors.add(field, msg),
                Err(_) => errors.add("general", "the database could not be reached: try again"),
            }
            None
        }
    }
}

/// Where a validation or connection error is shown on a form. `Err` is a storage
/// failure, answered with the 500 page.
pub fn field_of(e: &OnboardError) -> Result<(&'static str, String), String> {
    let msg = e.to_string();
    let field = match e {
        OnboardError::InvalidName(_) => "name",
        OnboardError::InvalidDomain(_) => "allowed_domains",
        OnboardError::Schedule(ScheduleError::UnknownTimeZone(_)) => "timezone",
        OnboardError::Schedule(s) => return Ok(("schedule", s.to_string())),
        OnboardError::TimezoneWithoutCron
        | OnboardError::TimezoneTwice
        | OnboardError::TimezoneOnInterval(_)
        | OnboardError::TimezoneWithDefault => "timezone",
        OnboardError::Token(TokenError::BadReference(_) | TokenError::Unresolvable { .. }) => {
            "token_ref"
        }
        OnboardError::Token(_) => "token",
        OnboardError::Crypto(CryptoError::MissingKey) => {
            return Ok(("token", "this console has no token key (security.token_key), so a pasted token cannot be stored sealed: give a token reference (file: or env:) instead, or configure the key and restart".into()))
        }
        OnboardError::Crypto(_) => "token",
        OnboardError::WrongRegion { .. } => "region",
        OnboardError::TokenRejected { .. } | OnboardError::MissingReadAdmins { .. } => "token",
        OnboardError::IpNotAllowed
        | OnboardError::Unreachable { .. }
        | OnboardError::NoWorkspace { .. } => "general",
        OnboardError::Instance(crate::db::instances::InstanceError::DuplicateName(n)) => {
            return Ok((
                "name",
                format!("an instance named {n:?} already exists: choose another name"),
            ))
        }
        OnboardError::Instance(crate::db::instances::InstanceError::DuplicateWorkspace {
            ..
        }) => "token",
        OnboardError::Instance(crate::db::instances::InstanceError::NotFound(_)) => "general",
        OnboardError::Instance(crate::db::instances::InstanceError::Db(e))
        | OnboardError::Db(e) => return Err(e.to_string()),
    };
    Ok((field, msg))
}

/// [`field_of`] for the day-2 actions.
pub fn manage_field_of(e: &ManageError) -> Result<(&'static str, String), String> {
    match e {
        ManageError::Onboard(o) => field_of(o),
        ManageError::TokenOfOtherRegion { .. } | ManageError::OtherWorkspace { .. } => {
            Ok(("token", e.to_string()))
        }
        ManageError::Db(d) => Err(d.to_string()),
    }
}

/// The next three runs of the schedule the fields describe (empty = `default`), as text
/// in the schedule's own time zone and UTC; empty when the fields are invalid.
pub fn preview(schedule: &str, timezone: &str, default: &str) -> Vec<String> {
    let stored = if schedule.trim().is_empty() {
        if !timezone.trim().is_empty() {
            return Vec::new();
        }
        Some(default.to_string())
    } else {
        match onboard::compose_schedule(Some(schedule), Some(timezone)) {
            Ok(s) => s,
            Err(_) => return Vec::new(),
        }
    };
    let Some(Ok(parsed)) = stored.as_deref().map(Schedule::parse) else {
        return Vec::new();
    };
    onboard::next_runs(&parsed, Utc::now(), 3)
        .into_iter()
        .map(|t| run_time(t, &parsed))
        .collect()
}

fn run_time(t: DateTime<Utc>, schedule: &Schedule) -> String {
    let utc = t.format("%Y-%m-%d %H:%M UTC").to_string();
    let tz = schedule.time_zone();
    if tz == chrono_tz::Tz::UTC {
        utc
    } else {
        format!(
            "{} {} ({utc})",
            t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
            tz.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_names_its_field() {
        let e = onboard::validate_name("bad name").unwrap_err();
        assert_eq!(field_of(&e).unwrap().0, "name");
        let e = onboard::compose_schedule(Some("6h"), Some("UTC")).unwrap_err();
        assert_eq!(field_of(&e).unwrap().0, "timezone");
        let e = onboard::validate_schedule(Some("10s")).unwrap_err();
        let (f, m) = field_of(&e).unwrap();
        assert_eq!(f, "schedule");
        assert!(m.contains("shorter than the minimum"), "{m}");
        let e = onboard::normalize_domains(&["co.uk".into()]).unwrap_err();
        assert_eq!(field_of(&e).unwrap().0, "allowed_domains");
        let e = onboard::token_reference("vault:x", None).unwrap_err();
        assert_eq!(field_of(&e).unwrap().0, "token_ref");
    }

    #[test]
    fn previews_three_runs_or_none() {
        assert_eq!(preview("6h", "", "6h").len(), 3);
        assert_eq!(preview("", "", "1d").len(), 3);
        let berlin = preview("0 3 * * *", "Europe/Berlin", "6h");
        assert_eq!(berlin.len(), 3);
        assert!(berlin[0].contains("Europe/Berlin") && berlin[0].contains("UTC"));
        assert!(preview("10s", "", "6h").is_empty());
        assert!(preview("6h", "Europe/Berlin", "6h").is_empty());
    }
}

/// The body of every enable/disable button (`enabled=true|false`), for instances,
/// channels and users alike.
#[derive(Debug, serde::Deserialize)]
pub struct EnabledForm {
    #[serde(default)]
    enabled: String,
}

impl EnabledForm {
    /// The state asked for; None when the form asked neither (our pages never send that).
    pub fn wanted(&self) -> Option<bool> {
        match self.enabled.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
}
