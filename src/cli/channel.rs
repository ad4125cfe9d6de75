//! `intercom-sspm channel ...`: where alerts go, and which ones. Never prints a channel
//! secret, except the webhook signing secret once, when it is created.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::output::{self, opt};
use super::{Context, ListFormat};
use crate::audit::{self, Actor};
use crate::notify::channel_input::{self, InputError, RuleFields, TargetFields};
use crate::notify::channels::{self, Channel, ChannelKind, ChannelView, WebhookFormat};
use crate::notify::send::{Outcome, Sender};

const ADD_EXAMPLES: &str = "Examples:
  intercom-sspm channel add --name siem --kind webhook --url https://siem.example.com/hooks/sspm --format ocsf
  intercom-sspm channel add --name secops --kind slack --url-ref env:SLACK_WEBHOOK_URL --min-severity critical
  intercom-sspm channel add --name mail --kind email --smtp-url smtps://alerts:PASSWORD@smtp.example.com \\
      --from sspm@example.com --to secops@example.com,ciso@example.com --digest 'CRON_TZ=Europe/Berlin 0 8 * * 1-5'
  printf %s \"$PD_ROUTING_KEY\" | intercom-sspm channel add --name oncall --kind pagerduty --routing-key-stdin --on opened,reopened,resolved";

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Add a channel (webhook, slack, email, pagerduty) with its rules.
    #[command(after_help = ADD_EXAMPLES)]
    Add(AddArgs),
    /// List channels (secrets masked).
    #[command(after_help = "Example:\n  intercom-sspm channel list --format json")]
    List {
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Show one channel (secrets masked).
    #[command(after_help = "Example:\n  intercom-sspm channel show secops")]
    Show {
        /// Channel name or id.
        channel: String,
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Change a channel's target, rules or signing secret.
    #[command(
        after_help = "Examples:\n  intercom-sspm channel set secops --min-severity medium --on opened,reopened,resolved,health\n  intercom-sspm channel set siem --rotate-secret"
    )]
    Set(SetArgs),
    /// Send a test message now; exits non-zero unless the receiver accepted it.
    #[command(after_help = "Example:\n  intercom-sspm channel test secops")]
    Test { channel: String },
    /// Resume sending to a channel (messages waiting for it are sent).
    #[command(after_help = "Example:\n  intercom-sspm channel enable secops")]
    Enable { channel: String },
    /// Stop sending to a channel; scans stop enqueuing for it, queued messages wait.
    #[command(after_help = "Example:\n  intercom-sspm channel disable secops")]
    Disable { channel: String },
    /// Delete a channel and its queued and past messages.
    #[command(after_help = "Example:\n  intercom-sspm channel remove secops --yes")]
    Remove {
        channel: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args, Default)]
pub struct RuleArgs {
    /// Lowest severity sent: critical, high (default), medium, low, info.
    #[arg(long, value_name = "S")]
    min_severity: Option<String>,
    /// Transitions sent, comma-separated: opened, reopened, resolved, health (default opened,reopened,health).
    #[arg(long, value_name = "EVENTS")]
    on: Option<String>,
    /// Only these check ids (comma-separated; "" = all).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    checks: Option<Vec<String>>,
    /// Never these check ids (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    exclude_checks: Option<Vec<String>>,
    /// Only these instance names (comma-separated; "" = all).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    instances: Option<Vec<String>>,
    /// A digest on this cron ("CRON_TZ=Europe/Berlin 0 8 * * 1-5"); "off" removes it.
    #[arg(long, value_name = "CRON")]
    digest: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct TargetArgs {
    /// Webhook or Slack incoming-webhook URL, or PagerDuty Events API base URL; stored sealed.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Read the URL (or SMTP URL) from standard input instead of the command line; stored sealed.
    #[arg(long)]
    url_stdin: bool,
    /// Resolve the URL (or SMTP URL) at send time from file:/path or env:VAR instead of storing it.
    #[arg(long, value_name = "REF")]
    url_ref: Option<String>,
    /// Webhook body: json (default), ocsf or cloudevents.
    #[arg(long, value_enum)]
    format: Option<WebhookFormat>,
    /// Email: smtp://[user:pass@]host:port (STARTTLS), smtps://... (implicit TLS); ?tls=none for a local relay.
    #[arg(long, value_name = "URL")]
    smtp_url: Option<String>,
    /// Email sender address.
    #[arg(long, value_name = "ADDR")]
    from: Option<String>,
    /// Email recipients, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "ADDR")]
    to: Option<Vec<String>>,
    /// PagerDuty: read the integration (routing) key from standard input; stored sealed.
    #[arg(long)]
    routing_key_stdin: bool,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// A unique name (letters, digits, '.', '_', '-').
    #[arg(long)]
    name: String,
    #[arg(long, value_enum)]
    kind: ChannelKind,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    rules: RuleArgs,
    #[arg(long, value_enum, default_value_t)]
    output: ListFormat,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    channel: String,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    rules: RuleArgs,
    /// Webhook: generate a new signing secret and print it once.
    #[arg(long)]
    rotate_secret: bool,
}

pub async fn run(ctx: &Context, cmd: ChannelCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ChannelCommand::Add(args) => add(ctx, args).await,
        ChannelCommand::List { format } => {
            let pool = ctx.db().await?;
            let mut conn = pool.acquire().await?;
            let all = channels::list(&mut conn).await?;
            print_list(&all, format)?;
            Ok(ExitCode::SUCCESS)
        }
        ChannelCommand::Show { channel, format } => {
            let pool = ctx.db().await?;
            let c = channels::get(&pool, &channel).await?;
            print_one(&c, format)?;
            Ok(ExitCode::SUCCESS)
        }
        ChannelCommand::Set(args) => set(ctx, args).await,
        ChannelCommand::Test { channel } => test(ctx, &channel).await,
        ChannelCommand::Enable { channel } => set_enabled(ctx, &channel, true).await,
        ChannelCommand::Disable { channel } => set_enabled(ctx, &channel, false).await,
        ChannelCommand::Remove { channel, yes } => {
            if !yes {
                bail!("removing channel {channel:?} deletes its queued and past messages: add --yes to confirm");
            }
            remove(ctx, &channel).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_stdin(what: &str) -> anyhow::Result<SecretString> {
    let mut buf = Zeroizing::new(String::new());
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut buf)
        .with_context(|| format!("reading the {what} from standard input"))?;
    let trimmed = buf.trim();
    if trimmed.is_empty() {
        bail!("the {what} read from standard input is empty");
    }
    Ok(SecretString::from(trimmed.to_string()))
}

/// The rule flags as the shared channel input (`None` = flag not given).
fn rule_fields(args: &RuleArgs) -> RuleFields {
    RuleFields {
        min_severity: args.min_severity.clone(),
        on: args.on.clone(),
        checks: args.checks.clone(),
        exclude_checks: args.exclude_checks.clone(),
        instances: args.instances.clone(),
        digest: args.digest.clone(),
    }
}

/// The flag a shared-input field comes from, to name it in errors.
fn flag(field: &str) -> &'static str {
    match field {
        "name" => "--name",
        "format" => "--format",
        "url" => "--url",
        "url_ref" => "--url-ref",
        "email_from" => "--from",
        "email_to" => "--to",
        "routing_key" => "--routing-key-stdin",
        "rotate_secret" => "--rotate-secret",
        "min_severity" => "--min-severity",
        "on" => "--on",
        "checks" => "--checks",
        "digest" => "--digest",
        _ => "input",
    }
}

fn input_errors(errors: Vec<InputError>) -> anyhow::Error {
    let text: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {e}", flag(e.field())))
        .collect();
    anyhow::anyhow!(text.join("\n"))
}

/// The target flags as the shared channel input. The flag-only rules (the target given
/// once; `--smtp-url` for email, `--url` otherwise) stay here, the field rules are shared.
fn target_fields(kind: ChannelKind, t: &TargetArgs, rotate: bool) -> anyhow::Result<TargetFields> {
    let given = [
        t.url.is_some(),
        t.url_stdin,
        t.url_ref.is_some(),
        t.smtp_url.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given > 1 {
        bail!("give the target once: --url, --url-stdin, --url-ref or --smtp-url");
    }
    if kind == ChannelKind::Email && t.url.is_some() {
        bail!("an email channel takes --smtp-url, not --url");
    }
    if kind != ChannelKind::Email && t.smtp_url.is_some() {
        bail!("--smtp-url is for email channels; use --url");
    }
    if t.routing_key_stdin && kind != ChannelKind::Pagerduty {
        return Err(input_errors(vec![InputError::NotForKind(
            "routing_key",
            "PagerDuty",
        )]));
    }
    let url = match (&t.url, &t.smtp_url) {
        (Some(u), _) | (_, Some(u)) => Some(SecretString::from(u.trim().to_string())),
        _ if t.url_stdin => Some(read_stdin("URL")?),
        _ => None,
    };
    let routing_key = if t.routing_key_stdin {
        Some(read_stdin("routing key")?)
    } else {
        None
    };
    Ok(TargetFields {
        format: t.format.map(|f| f.as_str().to_string()),
        url,
        url_ref: t.url_ref.clone(),
        email_from: t.from.clone(),
        email_to: t.to.clone(),
        routing_key,
        rotate_secret: rotate,
    })
}

async fn add(ctx: &Context, args: AddArgs) -> anyhow::Result<ExitCode> {
    let kind = args.kind;
    let fields = target_fields(kind, &args.target, false)?;
    let ring = ctx.keyring_optional()?;
    let valid = channel_input::validate_new(
        &args.name,
        kind,
        &fields,
        &rule_fields(&args.rules),
        ring.as_ref(),
    )
    .map_err(input_errors)?;
    drop(fields);
    let pool = ctx.db().await?;
    let mut tx = pool.begin().await?;
    channels::insert(&mut tx, &valid.as_new()).await?;
    let stored = channels::get(&mut *tx, &valid.id.to_string()).await?;
    audit::record(
        &mut tx,
        &Actor::cli(),
        "channel.add",
        &stored.name,
        channel_input::audit_details(&stored),
    )
    .await?;
    tx.commit().await?;
    let (id, signing_secret) = (valid.id, valid.signing_secret);
    match args.output {
        ListFormat::Json => outln!(
            "{}",
            output::json(&serde_json::json!({
                "id": id,
                "name": stored.name,
                "kind": kind.as_str(),
                "signing_secret": signing_secret.as_ref().map(|s| s.expose_secret().to_string()),
            }))?
        ),
        ListFormat::Table => {
            outln!("channel {} added ({kind}, id {id})", stored.name);
            if let Some(s) = &signing_secret {
                outln!("signing secret (shown once; verify webhook-signature with it):");
                outln!("{}", s.expose_secret());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set(ctx: &Context, args: SetArgs) -> anyhow::Result<ExitCode> {
    let pool = ctx.db().await?;
    let mut c = channels::get(&pool, &args.channel).await?;
    let fields = target_fields(c.kind, &args.target, args.rotate_secret)?;
    let ring = ctx.keyring_optional()?;
    let changed =
        channel_input::apply_change(&mut c, &fields, &rule_fields(&args.rules), ring.as_ref())
            .map_err(input_errors)?;
    drop(fields);
    let mut tx = pool.begin().await?;
    channels::update(&mut tx, &c).await?;
    let mut details = channel_input::audit_details(&c);
    details["changed"] = serde_json::json!(changed.fields);
    audit::record(&mut tx, &Actor::cli(), "channel.set", &c.name, details).await?;
    tx.commit().await?;
    outln!("channel {} updated", c.name);
    if let Some(s) = changed.signing_secret {
        outln!("new signing secret (shown once):");
        outln!("{}", s.expose_secret());
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_enabled(ctx: &Context, name: &str, enabled: bool) -> anyhow::Result<ExitCode> {
    let pool = ctx.db().await?;
    let mut tx = pool.begin().await?;
    let c = channels::set_enabled(&mut tx, name, enabled).await?;
    let action = if enabled {
        "channel.enable"
    } else {
        "channel.disable"
    };
    let details = channel_input::audit_details(&c);
    audit::record(&mut tx, &Actor::cli(), action, &c.name, details).await?;
    tx.commit().await?;
    outln!(
        "channel {} {}",
        c.name,
        if enabled { "enabled" } else { "disabled" }
    );
    Ok(ExitCode::SUCCESS)
}

async fn remove(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let pool = ctx.db().await?;
    let mut tx = pool.begin().await?;
    let c = channels::get(&mut *tx, name).await?;
    channels::remove(&mut tx, c.id).await?;
    let details = channel_input::audit_details(&c);
    audit::record(&mut tx, &Actor::cli(), "channel.remove", &c.name, details).await?;
    tx.commit().await?;
    outln!("channel {} removed", c.name);
    Ok(())
}

async fn test(ctx: &Context, name: &str) -> anyhow::Result<ExitCode> {
    let pool = ctx.db().await?;
    let c = channels::get(&pool, name).await?;
    let ring = ctx.keyring_optional()?;
    let sender = Sender::new(&ctx.settings.notify)
        .context("building the HTTP client")?
        .with_console_url(ctx.settings.console.public_url.clone());
    let (id, outcome) = sender.send_test(&c, ring.as_ref()).await?;
    let mut conn = pool.acquire().await?;
    audit::record(
        &mut conn,
        &Actor::cli(),
        "channel.test",
        &c.name,
        channel_input::test_details(&c, id, &outcome),
    )
    .await?;
    match outcome {
        Outcome::Delivered { code } => {
            outln!(
                "test message {id} accepted by channel {} ({})",
                c.name,
                opt(&code)
            );
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Retry { error, .. } | Outcome::Permanent { error, .. } => {
            eprintln!(
                "error: channel {}: test message not accepted: {error}",
                c.name
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_list(all: &[Channel], format: ListFormat) -> anyhow::Result<()> {
    match format {
        ListFormat::Json => {
            let views: Vec<ChannelView> = all.iter().map(ChannelView::from).collect();
            outln!("{}", output::json(&views)?);
        }
        ListFormat::Table => {
            let rows = all
                .iter()
                .map(|c| {
                    let v = ChannelView::from(c);
                    vec![
                        v.name,
                        v.kind.to_string(),
                        if v.enabled { "yes" } else { "no" }.to_string(),
                        v.url,
                        v.min_severity.to_string(),
                        v.on.join(","),
                        opt(&v.digest),
                    ]
                })
                .collect();
            outln!(
                "{}",
                output::table(
                    &[
                        "NAME",
                        "KIND",
                        "ENABLED",
                        "TARGET",
                        "MIN SEVERITY",
                        "ON",
                        "DIGEST"
                    ],
                    rows
                )
            );
        }
    }
    Ok(())
}

fn print_one(c: &Channel, format: ListFormat) -> anyhow::Result<()> {
    let v = ChannelView::from(c);
    match format {
        ListFormat::Json => outln!("{}", output::json(&v)?),
        ListFormat::Table => {
            let join = |l: &[String]| {
                if l.is_empty() {
                    "(all)".to_string()
                } else {
                    l.join(",")
                }
            };
            let rows = vec![
                vec!["id".into(), v.id.to_string()],
                vec!["name".into(), v.name.clone()],
                vec!["kind".into(), v.kind.into()],
                vec!["enabled".into(), v.enabled.to_string()],
                vec!["format".into(), opt(&v.format)],
                vec!["target".into(), v.url.clone()],
                vec!["secrets".into(), v.secrets.clone()],
                vec!["from".into(), opt(&v.email_from)],
                vec!["to".into(), v.email_to.join(",")],
                vec!["min severity".into(), v.min_severity.into()],
                vec!["on".into(), v.on.join(",")],
                vec!["checks".into(), join(&v.checks)],
                vec!["exclude checks".into(), v.exclude_checks.join(",")],
                vec!["instances".into(), join(&v.instances)],
                vec!["digest".into(), opt(&v.digest)],
                vec!["created".into(), v.created_at.to_rfc3339()],
            ];
            outln!("{}", output::table_in_full(&["FIELD", "VALUE"], rows));
        }
    }
    Ok(())
}
