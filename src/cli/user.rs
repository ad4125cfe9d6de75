//! `intercom-sspm user add | list | set-role | set-password | disable | enable | remove`:
//! local console users. Passwords come from stdin or a hidden prompt, never an argument
//! (arguments end up in shell history and `ps`).

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use secrecy::SecretString;
use serde_json::json;
use zeroize::Zeroizing;

use super::output;
use super::{Context, ListFormat};
use crate::audit::{self, Actor};
use crate::console::role::Role;
use crate::console::users;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a console user.
    ///
    /// Example: `printf '%s' "$PW" | intercom-sspm user add alice --role operator --password-stdin`
    Add {
        /// Sign-in name (letters, digits, '.', '_', '-', '@').
        name: String,
        /// viewer (read), operator (scan now, exceptions, attestations) or admin (everything).
        #[arg(long)]
        role: Role,
        /// Read the password from standard input instead of a hidden prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List console users (never their password hashes).
    ///
    /// Example: `intercom-sspm user list --format json`
    List {
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Change a user's role (takes effect on their next request).
    ///
    /// Example: `intercom-sspm user set-role alice admin`
    SetRole { name: String, role: Role },
    /// Set a new password; the user's sessions end.
    ///
    /// Example: `intercom-sspm user set-password alice` (prompts twice)
    SetPassword {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Stop a user from signing in; their sessions end at once.
    ///
    /// Example: `intercom-sspm user disable alice`
    Disable { name: String },
    /// Allow a disabled user to sign in again.
    ///
    /// Example: `intercom-sspm user enable alice`
    Enable { name: String },
    /// Delete a user and their sessions (the audit trail keeps their name).
    ///
    /// Example: `intercom-sspm user remove alice`
    Remove { name: String },
}

fn read_password(from_stdin: bool) -> anyhow::Result<SecretString> {
    let stdin = std::io::stdin();
    let password = if from_stdin {
        let mut raw = Zeroizing::new(String::new());
        stdin
            .lock()
            .read_to_string(&mut raw)
            .context("reading the password from standard input")?;
        // One trailing newline is the shell's, not the password's.
        let trimmed = raw.strip_suffix('\n').unwrap_or(&raw);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        SecretString::from(trimmed.to_string())
    } else if stdin.is_terminal() {
        let first = Zeroizing::new(
            rpassword::prompt_password("Password (at least 12 characters): ")
                .context("reading the password")?,
        );
        let second = Zeroizing::new(
            rpassword::prompt_password("Repeat the password: ").context("reading the password")?,
        );
        if *first != *second {
            bail!("the two passwords differ: try again");
        }
        SecretString::from(first.to_string())
    } else {
        bail!("standard input is not a terminal: pass the password with --password-stdin");
    };
    users::validate_password(&password)?;
    Ok(password)
}

pub async fn run(ctx: &Context, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let actor = Actor::cli();
    match cmd {
        UserCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            users::validate_name(&name)?;
            let password = read_password(password_stdin)?;
            let hash = users::hash_password(&password)?;
            drop(password);
            let pool = ctx.db().await?;
            let mut tx = pool.begin().await?;
            let user = users::add(&mut tx, &name, role, &hash).await?;
            let details = json!({ "user_id": user.id, "role": role.as_str() });
            audit::record(&mut tx, &actor, "user.add", &user.name, details).await?;
            tx.commit().await?;
            outln!("added console user {} with role {role}", user.name);
        }
        UserCommand::List { format } => {
            let pool = ctx.db().await?;
            let all = users::list(&pool).await?;
            match format {
                ListFormat::Json => outln!("{}", output::json(&all)?),
                ListFormat::Table if all.is_empty() => outln!(
                    "no console users yet: add one with `intercom-sspm user add NAME --role admin`"
                ),
                ListFormat::Table => {
                    let rows = all
                        .iter()
                        .map(|u| {
                            vec![
                                u.name.clone(),
                                u.role.clone(),
                                if u.disabled { "disabled" } else { "active" }.into(),
                                u.created_at.format("%Y-%m-%d %H:%M").to_string(),
                            ]
                        })
                        .collect();
                    outln!(
                        "{}",
                        output::table(&["name", "role", "state", "created"], rows)
                    );
                }
            }
        }
        UserCommand::SetRole { name, role } => {
            let pool = ctx.db().await?;
            let mut tx = pool.begin().await?;
            let user = users::get(&mut *tx, &name).await?;
            users::set_role(&mut tx, user.id, role).await?;
            let details = json!({ "user_id": user.id, "from": user.role, "to": role.as_str() });
            audit::record(&mut tx, &actor, "user.set_role", &user.name, details).await?;
            tx.commit().await?;
            outln!("{} is now {role}", user.name);
        }
        UserCommand::SetPassword {
            name,
            password_stdin,
        } => {
            let pool = ctx.db().await?;
            let user = users::get(&pool, &name).await?;
            let password = read_password(password_stdin)?;
            let hash = users::hash_password(&password)?;
            let mut tx = pool.begin().await?;
            users::set_password(&mut tx, user.id, &hash).await?;
            let details = json!({ "user_id": user.id });
            audit::record(&mut tx, &actor, "user.set_password", &user.name, details).await?;
            tx.commit().await?;
            outln!("password of {} changed; their sessions ended", user.name);
        }
        UserCommand::Disable { name } => set_disabled(ctx, &actor, &name, true).await?,
        UserCommand::Enable { name } => set_disabled(ctx, &actor, &name, false).await?,
        UserCommand::Remove { name } => {
            let pool = ctx.db().await?;
            let mut tx = pool.begin().await?;
            let user = users::get(&mut *tx, &name).await?;
            users::remove(&mut tx, user.id).await?;
            let details = json!({ "user_id": user.id, "role": user.role });
            audit::record(&mut tx, &actor, "user.remove", &user.name, details).await?;
            tx.commit().await?;
            outln!("removed console user {}", user.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_disabled(
    ctx: &Context,
    actor: &Actor,
    name: &str,
    disabled: bool,
) -> anyhow::Result<()> {
    let pool = ctx.db().await?;
    let mut tx = pool.begin().await?;
    let user = users::get(&mut *tx, name).await?;
    users::set_disabled(&mut tx, user.id, disabled).await?;
    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    audit::record(
        &mut tx,
        actor,
        action,
        &user.name,
        json!({ "user_id": user.id }),
    )
    .await?;
    tx.commit().await?;
    if disabled {
        outln!("disabled {}; their sessions ended", user.name);
    } else {
        outln!("enabled {}", user.name);
    }
    Ok(())
}
