//! `intercom-sspm channel ...`: where alerts go, and which ones. Never prints a channel
//! secret, except the webhook signing secret once, when it is created.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use chrono::Utc;
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::output::{self, opt};
use super::{Context, ListFormat};
use crate::notify::channels::{
    self, generate_signing_secret, Channel, ChannelKind, ChannelView, NewChannel, Secrets,
    WebhookFormat,
};
use crate::notify::digest;
use crate::notify::render::{AlertEvent, EventKind};
use crate::notify::rules::{self, Rules};
use crate::notify::send::{self, Outcome, Sender};
use crate::token::TokenRef;

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
            let pool = ctx.db().await?;
            let c = channels::get(&pool, &channel).await?;
            channels::remove(&pool, c.id).await?;
            outln!("channel {} removed", c.name);
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

/// Applies rule flags onto `rules`.
fn apply_rules(rules: &mut Rules, args: &RuleArgs, kind: ChannelKind) -> anyhow::Result<()> {
    if let Some(s) = &args.min_severity {
        rules.min_severity = rules::parse_severity(s).map_err(anyhow::Error::msg)?;
    }
    if let Some(on) = &args.on {
        rules.events = rules::parse_events(on).map_err(anyhow::Error::msg)?;
    }
    let clean = |v: &Vec<String>| -> Vec<String> {
        v.iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    if let Some(c) = &args.checks {
        rules.checks = clean(c);
        for id in &rules.checks {
            if crate::checks::meta(id).is_none() {
                bail!("--checks: unknown check id {id:?}: see `intercom-sspm checks`");
            }
        }
    }
    if let Some(c) = &args.exclude_checks {
        rules.exclude_checks = clean(c);
    }
    if let Some(i) = &args.instances {
        rules.instances = clean(i);
    }
    if let Some(d) = &args.digest {
        if d.trim() == "off" {
            rules.digest = None;
        } else {
            if kind == ChannelKind::Pagerduty {
                bail!("--digest: PagerDuty incidents follow findings; send digests to a webhook, Slack or email channel");
            }
            digest::parse(d).map_err(anyhow::Error::msg)?;
            rules.digest = Some(d.trim().to_string());
        }
    }
    Ok(())
}

/// The URL (or SMTP URL) given on the command line or stdin, checked for its kind.
fn given_url(kind: ChannelKind, t: &TargetArgs) -> anyhow::Result<Option<SecretString>> {
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
    let url = match (&t.url, &t.smtp_url) {
        (Some(u), _) | (_, Some(u)) => Some(SecretString::from(u.trim().to_string())),
        _ if t.url_stdin => Some(read_stdin("URL")?),
        _ => None,
    };
    if let Some(u) = &url {
        match kind {
            ChannelKind::Email => {
                if t.url.is_some() {
                    bail!("an email channel takes --smtp-url, not --url");
                }
                send::validate_smtp_url(u.expose_secret()).map_err(anyhow::Error::msg)?
            }
            _ => {
                if t.smtp_url.is_some() {
                    bail!("--smtp-url is for email channels; use --url");
                }
                send::validate_http_url(u.expose_secret(), "--url").map_err(anyhow::Error::msg)?
            }
        }
    }
    Ok(url)
}

fn parse_ref(raw: &str) -> anyhow::Result<String> {
    let r: TokenRef = raw.parse().map_err(|_| {
        anyhow::anyhow!("--url-ref {raw:?} must be file:/absolute/path or env:VARIABLE_NAME")
    })?;
    Ok(r.to_string())
}

async fn add(ctx: &Context, args: AddArgs) -> anyhow::Result<ExitCode> {
    channels::validate_name(&args.name)?;
    let kind = args.kind;
    let t = &args.target;
    let mut rules = Rules::default();
    apply_rules(&mut rules, &args.rules, kind)?;
    if t.format.is_some() && kind != ChannelKind::Webhook {
        bail!("--format is for webhook channels");
    }
    if (t.from.is_some() || t.to.is_some()) && kind != ChannelKind::Email {
        bail!("--from and --to are for email channels");
    }
    if t.routing_key_stdin && kind != ChannelKind::Pagerduty {
        bail!("--routing-key-stdin is for PagerDuty channels");
    }
    let url = given_url(kind, t)?;
    let url_ref = t.url_ref.as_deref().map(parse_ref).transpose()?;
    let mut secrets = Secrets {
        url,
        ..Secrets::default()
    };
    let email_to: Vec<String> =
        t.to.clone()
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    match kind {
        ChannelKind::Webhook | ChannelKind::Slack => {
            if secrets.url.is_none() && url_ref.is_none() {
                bail!("a {kind} channel needs --url, --url-stdin or --url-ref");
            }
        }
        ChannelKind::Email => {
            if secrets.url.is_none() && url_ref.is_none() {
                bail!("an email channel needs --smtp-url (or --url-stdin / --url-ref holding it)");
            }
            let from = t.from.as_deref().unwrap_or("");
            if from.parse::<lettre::message::Mailbox>().is_err() {
                bail!("an email channel needs --from ADDR (a valid address)");
            }
            if email_to.is_empty() {
                bail!("an email channel needs --to ADDR[,ADDR]");
            }
            for to in &email_to {
                if to.parse::<lettre::message::Mailbox>().is_err() {
                    bail!("--to: {to:?} is not an email address");
                }
            }
        }
        ChannelKind::Pagerduty => {
            if !t.routing_key_stdin {
                bail!("a PagerDuty channel needs --routing-key-stdin (the integration key of an Events API v2 integration)");
            }
            secrets.routing_key = Some(read_stdin("routing key")?);
        }
    }
    let signing_secret = (kind == ChannelKind::Webhook).then(generate_signing_secret);
    secrets.signing_secret = signing_secret.clone();

    let id = Uuid::new_v4();
    let sealed = if secrets.is_empty() {
        None
    } else {
        let ring = ctx.keyring().context(
            "channel secrets are sealed with the token key; configure it, or give the URL with --url-ref",
        )?;
        Some(secrets.seal(&ring, id))
    };
    let pool = ctx.db().await?;
    channels::insert(
        &pool,
        &NewChannel {
            id,
            name: &args.name,
            kind,
            format: (kind == ChannelKind::Webhook).then(|| t.format.unwrap_or(WebhookFormat::Json)),
            email_from: t.from.as_deref().map(str::trim),
            email_to: &email_to,
            sealed: sealed.as_ref(),
            url_ref: url_ref.as_deref(),
            rules: &rules,
        },
    )
    .await?;
    match args.output {
        ListFormat::Json => outln!(
            "{}",
            output::json(&serde_json::json!({
                "id": id,
                "name": args.name,
                "kind": kind.as_str(),
                "signing_secret": signing_secret.as_ref().map(|s| s.expose_secret().to_string()),
            }))?
        ),
        ListFormat::Table => {
            outln!("channel {} added ({kind}, id {id})", args.name);
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
    apply_rules(&mut c.rules, &args.rules, c.kind)?;
    let t = &args.target;
    if let Some(f) = t.format {
        if c.kind != ChannelKind::Webhook {
            bail!("--format is for webhook channels");
        }
        c.format = Some(f);
    }
    if let Some(from) = &t.from {
        c.email_from = Some(from.trim().to_string());
    }
    if let Some(to) = &t.to {
        c.email_to = to
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    let new_url = given_url(c.kind, t)?;
    let new_ref = t.url_ref.as_deref().map(parse_ref).transpose()?;
    let mut printed_secret = None;
    if new_url.is_some() || args.rotate_secret || t.routing_key_stdin || new_ref.is_some() {
        if args.rotate_secret && c.kind != ChannelKind::Webhook {
            bail!("--rotate-secret is for webhook channels");
        }
        let ring = ctx.keyring_optional()?;
        let mut secrets = match &c.sealed {
            Some(_) => {
                let ring = ring
                    .as_ref()
                    .context("channel secrets are sealed with the token key; configure it")?;
                Secrets::open(ring, c.sealed.as_ref().expect("checked"), c.id)
                    .with_context(|| format!("opening the secrets of channel {:?}", c.name))?
            }
            None => Secrets::default(),
        };
        if let Some(u) = new_url {
            secrets.url = Some(u);
            c.url_ref = None;
        }
        if let Some(r) = new_ref {
            secrets.url = None;
            c.url_ref = Some(r);
        }
        if t.routing_key_stdin {
            secrets.routing_key = Some(read_stdin("routing key")?);
        }
        if args.rotate_secret {
            let s = generate_signing_secret();
            secrets.signing_secret = Some(s.clone());
            printed_secret = Some(s);
        }
        c.sealed = if secrets.is_empty() {
            None
        } else {
            let ring = ring
                .as_ref()
                .context("channel secrets are sealed with the token key; configure it")?;
            Some(secrets.seal(ring, c.id))
        };
    }
    channels::update(&pool, &c).await?;
    outln!("channel {} updated", c.name);
    if let Some(s) = printed_secret {
        outln!("new signing secret (shown once):");
        outln!("{}", s.expose_secret());
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_enabled(ctx: &Context, name: &str, enabled: bool) -> anyhow::Result<ExitCode> {
    let pool = ctx.db().await?;
    let mut c = channels::get(&pool, name).await?;
    c.enabled = enabled;
    channels::update(&pool, &c).await?;
    outln!(
        "channel {} {}",
        c.name,
        if enabled { "enabled" } else { "disabled" }
    );
    Ok(ExitCode::SUCCESS)
}

async fn test(ctx: &Context, name: &str) -> anyhow::Result<ExitCode> {
    let pool = ctx.db().await?;
    let c = channels::get(&pool, name).await?;
    let ring = ctx.keyring_optional()?;
    let secrets = c.secrets(ring.as_ref())?;
    let sender = Sender::new(&ctx.settings.notify)
        .context("building the HTTP client")?
        .with_console_url(ctx.settings.console.public_url.clone());
    let event = AlertEvent::new(EventKind::Test, Utc::now());
    let id = Uuid::new_v4();
    match sender.send(&c, &secrets, &event, id).await {
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
