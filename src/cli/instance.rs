//! `intercom-sspm instance ...`: onboard and manage workspaces. Never prints a token.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::output::{self, opt};
use super::{Context, ListFormat};
use crate::audit::Actor;
use crate::checks::overrides::{self, Edit};
use crate::db::instances::{self, Instance};
use crate::manage;
use crate::onboard::{self, OnboardRequest, TokenInput};
use crate::region::Region;
use crate::schedule::Schedule;
use crate::token::normalize_token;

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Onboard a workspace: validates the token (or reference) with GET /me on the region, then
    /// stores it (a token sealed, a reference as is). --dry-run validates and stores nothing.
    #[command(
        after_help = "Examples:\n  pass show intercom/acme | intercom-sspm instance add --name acme --region eu --token-stdin --allowed-domains acme.com\n  intercom-sspm instance add --name acme --region eu --token-ref file:/run/secrets/intercom/acme --schedule \"0 3 * * *\" --timezone Europe/Berlin\n  intercom-sspm instance add --name acme --region eu --token-ref env:ACME_TOKEN --dry-run"
    )]
    Add(AddArgs),
    /// List onboarded instances.
    #[command(
        after_help = "Examples:\n  intercom-sspm instance list\n  intercom-sspm instance list --format json | jq -r '.[] | select(.status != \"ok\") | .name'"
    )]
    List {
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Show one instance.
    #[command(after_help = "Example:\n  intercom-sspm instance show acme")]
    Show {
        /// Instance name or id.
        instance: String,
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Resume scheduled scans of an instance (it becomes due at once).
    #[command(after_help = "Example:\n  intercom-sspm instance enable acme")]
    Enable { instance: String },
    /// Stop scheduled scans of an instance; its findings are kept.
    #[command(after_help = "Example:\n  intercom-sspm instance disable acme")]
    Disable { instance: String },
    /// Delete an instance with all its scans, findings and history.
    #[command(after_help = "Example:\n  intercom-sspm instance remove acme --yes")]
    Remove {
        instance: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
    /// Replace the token (validated with GET /me first, like `add`).
    #[command(
        after_help = "Example:\n  pass show intercom/acme | intercom-sspm instance set-token acme --token-stdin"
    )]
    SetToken {
        instance: String,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Change the scan schedule: an interval (30m, 6h, 1d) or a cron expression.
    #[command(
        after_help = "Examples:\n  intercom-sspm instance set-schedule acme 12h\n  intercom-sspm instance set-schedule acme \"0 3 * * *\" --timezone Europe/Berlin\n  intercom-sspm instance set-schedule acme default"
    )]
    SetSchedule {
        instance: String,
        /// Interval or cron ("0 3 * * *", optionally "CRON_TZ=Europe/Berlin 0 3 * * *"); "default" uses scheduler.default_schedule.
        schedule: String,
        /// IANA time zone for a cron schedule (same as the CRON_TZ= prefix).
        #[arg(long)]
        timezone: Option<String>,
    },
    /// Set the email domains that belong to the organisation (comma-separated).
    #[command(
        after_help = "Example:\n  intercom-sspm instance set-domains acme acme.com,acme.co.uk"
    )]
    SetDomains { instance: String, domains: String },
    /// Override check thresholds and lists for one instance (the keys of `[checks]`;
    /// numbers, or comma-separated lists). The next scan uses them.
    #[command(
        after_help = "Examples:\n  intercom-sspm instance set-overrides acme dormant_days=45 failed_login_threshold=3\n  intercom-sspm instance set-overrides acme shared_account_local_parts=support,ops --clear dormant_days\n\nKeys: activity_backfill_days, event_window_days, activity_overlap_minutes, dormant_days,\nlong_away_days, inbox_inactive_days, failed_login_threshold, failed_login_window_minutes,\nfailed_login_success_window_minutes, impersonation_max_hours, personal_email_domains,\npersonal_email_domains_ignore, shared_account_local_parts, disabled (check ids).\nKEY= (empty) is the same as --clear KEY."
    )]
    SetOverrides {
        instance: String,
        /// KEY=VALUE: a whole number, or a comma-separated list.
        #[arg(value_name = "KEY=VALUE", required_unless_present = "clear")]
        set: Vec<Edit>,
        /// Back to the configured default (repeatable).
        #[arg(long, value_name = "KEY")]
        clear: Vec<String>,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct TokenArgs {
    /// Read the access token from standard input (e.g. `pass show intercom | intercom-sspm ...`).
    #[arg(long)]
    token_stdin: bool,
    /// Resolve the token at scan time from `file:/path` or `env:VAR` instead of storing it.
    #[arg(long, value_name = "REF")]
    token_ref: Option<String>,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// A unique name for the instance (letters, digits, '.', '_', '-').
    #[arg(long)]
    name: String,
    /// Where Intercom hosts the workspace: us (app.intercom.com), eu (app.eu.intercom.com), au (app.au.intercom.com).
    #[arg(long)]
    region: String,
    #[command(flatten)]
    token: TokenArgs,
    /// Scan schedule: an interval (30m, 6h, 1d) or a cron expression; default scheduler.default_schedule.
    #[arg(long)]
    schedule: Option<String>,
    /// IANA time zone for a cron schedule.
    #[arg(long)]
    timezone: Option<String>,
    /// Email domains of the organisation (comma-separated); default: the registrable domain of the token owner's address (eu.acme.co.uk allows acme.co.uk).
    #[arg(long, value_delimiter = ',')]
    allowed_domains: Vec<String>,
    /// Validate everything (name, region, schedule, domains, key, and the token or
    /// reference with GET /me) but store nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long, value_enum, default_value_t)]
    format: ListFormat,
}

pub async fn run(ctx: &Context, cmd: InstanceCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        InstanceCommand::Add(args) => add(ctx, args).await,
        InstanceCommand::List { format } => {
            let pool = ctx.db().await?;
            let all = instances::list(&pool).await?;
            print_list(&all, format)?;
            Ok(ExitCode::SUCCESS)
        }
        InstanceCommand::Show { instance, format } => {
            let pool = ctx.db().await?;
            let mut found = instances::get(&pool, &instance).await?;
            found.token_ref = match instances::token_reference(&pool, found.id).await {
                Ok(r) => r,
                // sspm_reader may not see where a token lives; the rest is still useful.
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42501") => None,
                Err(e) => return Err(e.into()),
            };
            print_one(&found, format, &ctx.settings.scheduler.default_schedule)?;
            Ok(ExitCode::SUCCESS)
        }
        InstanceCommand::Enable { instance } => set_enabled(ctx, &instance, true).await,
        InstanceCommand::Disable { instance } => set_enabled(ctx, &instance, false).await,
        InstanceCommand::Remove { instance, yes } => {
            if !yes {
                bail!("removing {instance:?} deletes its scans, findings and history: add --yes to confirm");
            }
            let pool = ctx.db().await?;
            let found = instances::get(&pool, &instance).await?;
            if !manage::remove(&pool, &found, &Actor::cli()).await? {
                bail!("instance {:?} was removed meanwhile", found.name);
            }
            outln!("removed instance {} ({})", found.name, found.id);
            Ok(ExitCode::SUCCESS)
        }
        InstanceCommand::SetToken { instance, token } => set_token(ctx, &instance, token).await,
        InstanceCommand::SetSchedule {
            instance,
            schedule,
            timezone,
        } => set_schedule(ctx, &instance, &schedule, timezone.as_deref()).await,
        InstanceCommand::SetOverrides {
            instance,
            set,
            clear,
        } => set_overrides(ctx, &instance, set, clear).await,
        InstanceCommand::SetDomains { instance, domains } => {
            let domains = [domains];
            for w in onboard::allowed_domain_warnings(&domains) {
                eprintln!("warning: {w}");
            }
            let pool = ctx.db().await?;
            let found = instances::get(&pool, &instance).await?;
            let domains = manage::set_domains(&pool, &found, &domains, &Actor::cli()).await?;
            outln!(
                "allowed domains of {}: {}",
                found.name,
                display_domains(&domains)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_token_stdin() -> anyhow::Result<SecretString> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        // A person at a terminal: a hidden prompt, so the token never appears on screen
        // (or in a terminal recording). One line, Enter ends it.
        let raw = Zeroizing::new(
            rpassword::prompt_password("Access token (input hidden): ")
                .context("reading the token from the terminal")?,
        );
        return Ok(normalize_token(&raw)?);
    }
    let mut raw = Zeroizing::new(String::new());
    stdin
        .read_to_string(&mut raw)
        .context("reading the token from standard input")?;
    Ok(normalize_token(&raw)?)
}

/// The token to validate. A reference to the scanner's own key file is refused before
/// it is read: validating it would send the key to Intercom as a bearer token.
fn token_input(
    args: &TokenArgs,
    own_key_file: Option<&std::path::Path>,
) -> anyhow::Result<TokenInput> {
    match (&args.token_ref, args.token_stdin) {
        (Some(r), _) => Ok(TokenInput::Reference(onboard::token_reference(
            r,
            own_key_file,
        )?)),
        (None, true) => Ok(TokenInput::Plain(read_token_stdin()?)),
        (None, false) => bail!("give the token with --token-stdin or --token-ref"),
    }
}

async fn add(ctx: &Context, args: AddArgs) -> anyhow::Result<ExitCode> {
    let region: Region = args.region.parse()?;
    let schedule = onboard::compose_schedule(args.schedule.as_deref(), args.timezone.as_deref())?;
    onboard::validate_name(&args.name)?;
    onboard::validate_schedule(schedule.as_deref())?;
    let domains = onboard::normalize_domains(&args.allowed_domains)?;
    for w in onboard::allowed_domain_warnings(&args.allowed_domains) {
        eprintln!("warning: {w}");
    }
    // The key is checked before the token is read so a missing key costs no paste.
    let keyring = if args.token.token_stdin {
        Some(ctx.keyring()?)
    } else {
        ctx.keyring_optional()?
    };
    let token = token_input(&args.token, ctx.settings.security.token_key_file.as_deref())?;
    let pool = ctx.db().await?;
    let client = ctx.intercom_with_progress()?;
    if args.dry_run {
        if instances::name_taken(&pool, &args.name).await? {
            bail!(
                "an instance named {:?} already exists: choose another --name",
                args.name
            );
        }
        let plaintext = match &token {
            TokenInput::Plain(t) => t.clone(),
            TokenInput::Reference(r) => r.resolve()?,
        };
        let (workspace_id, workspace_name) =
            onboard::verify_token(&client, region, &plaintext).await?;
        if let Some(existing) = instances::find_by_workspace(&pool, region, &workspace_id).await? {
            bail!(
                "workspace {workspace_id} ({region}) is already onboarded as instance {:?}",
                existing.name
            );
        }
        match args.format {
            ListFormat::Json => outln!(
                "{}",
                output::json(&serde_json::json!({
                    "dry_run": true,
                    "name": args.name,
                    "region": region.as_str(),
                    "workspace_id": workspace_id,
                    "workspace_name": workspace_name,
                    "schedule": schedule,
                    "allowed_domains": domains,
                }))?
            ),
            ListFormat::Table => outln!(
                "dry run: {} would onboard workspace {workspace_id} \"{}\" in region {region}; the token is valid. Nothing was stored.",
                args.name,
                workspace_name.as_deref().unwrap_or("-")
            ),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let instance = onboard::onboard(
        &pool,
        &client,
        keyring.as_ref(),
        OnboardRequest {
            name: args.name,
            region,
            token,
            schedule,
            allowed_domains: domains,
        },
        &Actor::cli(),
    )
    .await?;
    match args.format {
        ListFormat::Json => outln!("{}", output::json(&instance)?),
        ListFormat::Table => {
            outln!(
                "onboarded instance {} ({}): workspace {} \"{}\" in region {}",
                instance.name,
                instance.id,
                opt(&instance.workspace_id),
                opt(&instance.workspace_name),
                instance.region
            );
            outln!(
                "schedule: {}; first scan is due now",
                instance.schedule.clone().unwrap_or_else(|| format!(
                    "{} (default)",
                    ctx.settings.scheduler.default_schedule
                ))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_overrides(
    ctx: &Context,
    name: &str,
    set: Vec<Edit>,
    clear: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let mut edits = set;
    edits.extend(clear.into_iter().map(|key| Edit { key, value: None }));
    let pool = ctx.db().await?;
    let found = instances::get(&pool, name).await?;
    let change =
        manage::set_check_overrides(&pool, &found, &ctx.settings.checks, &edits, &Actor::cli())
            .await?;
    let shown = match change.overrides.as_object() {
        Some(o) if !o.is_empty() => o
            .iter()
            .map(|(k, v)| format!("{k}={}", overrides::display(v)))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "none (the configured [checks] apply)".into(),
    };
    if change.changed {
        outln!(
            "check overrides of {}: {shown}; the next scan uses them",
            found.name
        );
    } else {
        outln!("check overrides of {} unchanged: {shown}", found.name);
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_enabled(ctx: &Context, name: &str, enabled: bool) -> anyhow::Result<ExitCode> {
    let pool = ctx.db().await?;
    let found = instances::get(&pool, name).await?;
    manage::set_enabled(&pool, &found, enabled, &Actor::cli()).await?;
    outln!(
        "{} {}",
        if enabled { "enabled" } else { "disabled" },
        found.name
    );
    Ok(ExitCode::SUCCESS)
}

async fn set_token(ctx: &Context, name: &str, args: TokenArgs) -> anyhow::Result<ExitCode> {
    let keyring = if args.token_stdin {
        Some(ctx.keyring()?)
    } else {
        ctx.keyring_optional()?
    };
    let token = token_input(&args, ctx.settings.security.token_key_file.as_deref())?;
    let pool = ctx.db().await?;
    let found = instances::get(&pool, name).await?;
    let client = ctx.intercom_with_progress()?;
    let workspace_id = manage::replace_token(
        &pool,
        &client,
        keyring.as_ref(),
        &found,
        token,
        &Actor::cli(),
    )
    .await?;
    outln!(
        "token of {} replaced and verified against workspace {workspace_id}",
        found.name
    );
    Ok(ExitCode::SUCCESS)
}

async fn set_schedule(
    ctx: &Context,
    name: &str,
    schedule: &str,
    timezone: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let stored = onboard::schedule_change(schedule, timezone)?;
    // The default schedule is checked too, before anything is looked up or stored.
    let effective = stored
        .clone()
        .unwrap_or_else(|| ctx.settings.scheduler.default_schedule.clone());
    Schedule::parse(&effective)?;
    let pool = ctx.db().await?;
    let found = instances::get(&pool, name).await?;
    let change = manage::set_schedule(
        &pool,
        &found,
        stored,
        &ctx.settings.scheduler.default_schedule,
        ctx.settings.scheduler.jitter_policy(),
        &Actor::cli(),
    )
    .await?;
    outln!(
        "schedule of {} set to {effective}; next scan {}",
        found.name,
        next_run(change.next_scan_at, &change.effective, Utc::now())
    );
    Ok(ExitCode::SUCCESS)
}

/// "at <time in the schedule's zone> (<UTC>)", or "due now" once it has passed.
fn next_run(at: DateTime<Utc>, schedule: &Schedule, now: DateTime<Utc>) -> String {
    if at <= now {
        return format!("due now ({})", output::utc(at));
    }
    let tz = schedule.time_zone();
    if tz == chrono_tz::Tz::UTC {
        format!("at {}", output::utc(at))
    } else {
        format!(
            "at {} {} ({})",
            at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z"),
            tz.name(),
            output::utc(at)
        )
    }
}

fn display_domains(d: &[String]) -> String {
    if d.is_empty() {
        "(token owner's domain)".into()
    } else {
        d.join(",")
    }
}

fn print_list(all: &[Instance], format: ListFormat) -> anyhow::Result<()> {
    match format {
        ListFormat::Json => outln!("{}", output::json(all)?),
        ListFormat::Table => {
            if all.is_empty() {
                outln!("no instances yet: onboard one with `intercom-sspm instance add --name N --region us|eu|au --token-stdin`");
                return Ok(());
            }
            let rows = all
                .iter()
                .map(|i| {
                    vec![
                        i.name.clone(),
                        i.region.to_string(),
                        opt(&i.workspace_id),
                        opt(&i.workspace_name),
                        if i.enabled { "yes".into() } else { "no".into() },
                        i.status.to_string(),
                        i.schedule.clone().unwrap_or_else(|| "default".into()),
                        opt(&i
                            .last_scan_at
                            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())),
                        i.next_scan_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                    ]
                })
                .collect();
            outln!(
                "{}",
                output::table(
                    &[
                        "name",
                        "region",
                        "workspace",
                        "workspace name",
                        "enabled",
                        "status",
                        "schedule",
                        "last scan",
                        "next scan"
                    ],
                    rows
                )
            );
        }
    }
    Ok(())
}

fn print_one(i: &Instance, format: ListFormat, default_schedule: &str) -> anyhow::Result<()> {
    match format {
        ListFormat::Json => outln!("{}", output::json(i)?),
        ListFormat::Table => {
            let token = match (&i.token_ref, &i.token_key_id) {
                (Some(r), _) => format!("reference {r}"),
                (None, Some(k)) => format!("sealed (key id {k})"),
                (None, None) if i.token_kind == "reference" => "reference".into(),
                _ => "-".into(),
            };
            let rows = vec![
                vec!["id".into(), i.id.to_string()],
                vec!["name".into(), i.name.clone()],
                vec!["region".into(), i.region.to_string()],
                vec!["workspace id".into(), opt(&i.workspace_id)],
                vec!["workspace name".into(), opt(&i.workspace_name)],
                vec!["enabled".into(), i.enabled.to_string()],
                vec!["status".into(), i.status.to_string()],
                vec!["status detail".into(), opt(&i.status_detail)],
                vec![
                    "schedule".into(),
                    i.schedule.clone().unwrap_or_else(|| "default".into()),
                ],
                vec!["next scan".into(), {
                    let schedule =
                        Schedule::parse(i.schedule.as_deref().unwrap_or(default_schedule));
                    match schedule {
                        Ok(s) if i.enabled => next_run(i.next_scan_at, &s, Utc::now()),
                        Ok(_) => format!("disabled (was {})", output::utc(i.next_scan_at)),
                        Err(e) => {
                            format!("{} (invalid schedule: {e})", output::utc(i.next_scan_at))
                        }
                    }
                }],
                vec!["last scan".into(), opt(&i.last_scan_at.map(output::utc))],
                vec![
                    "allowed domains".into(),
                    display_domains(&i.allowed_domains),
                ],
                vec!["token".into(), token],
                vec!["created".into(), output::utc(i.created_at)],
            ];
            outln!("{}", output::record(rows));
        }
    }
    Ok(())
}
