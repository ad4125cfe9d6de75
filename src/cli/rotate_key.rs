//! `intercom-sspm rotate-key`: re-seal every sealed token under the current token key.
//!
//! Procedure (docs/SECURITY.md): generate a new key, configure it as `security.token_key`
//! with the old one in `security.previous_token_keys` (daemons too), run this command,
//! then drop the old key once it reports the key id as no longer referenced.
//!
//! All or nothing: every token is opened and re-sealed inside ONE transaction holding the
//! rows' locks; a token that cannot be opened (unknown key id, tampered row) aborts it and
//! no row changes. Messages name the instance, never the token.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;

use super::Context;
use crate::db::keys;

#[derive(Debug, Args)]
pub struct RotateKeyArgs {
    /// Open every token and report what would change, but write nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(ctx: &Context, args: RotateKeyArgs) -> anyhow::Result<ExitCode> {
    let keyring = ctx.keyring()?;
    let current = keyring.current_id().to_string();
    // Ids only (public hash prefixes): used to tell the operator which keys may go.
    let previous_ids: BTreeSet<String> = keyring.previous_ids().map(str::to_string).collect();

    let pool = ctx.db().await?;
    let mut tx = pool.begin().await?;
    let before = key_ids_in_use(&mut tx).await?;
    let rows = keys::lock_sealed(&mut tx).await?;
    let mut resealed = 0usize;
    let mut already_current = 0usize;
    for row in &rows {
        let aad = row.id.as_bytes();
        // Open even tokens already under the current key: the command then proves that
        // every stored token is readable, and a damaged row is reported now, not at scan.
        let token = match keyring.open(&row.sealed, aad) {
            Ok(t) => t,
            Err(e) => {
                // Dropping `tx` rolls back every re-seal made so far in this run.
                drop(tx);
                bail!(
                    "cannot open the sealed token of instance {:?} ({}): {e}. Nothing was changed; \
                     fix that instance (configure its key in security.previous_token_keys, or \
                     replace its token with `intercom-sspm instance set-token {}`) and run rotate-key again",
                    row.name,
                    row.id,
                    row.name
                );
            }
        };
        if row.sealed.key_id == current {
            already_current += 1;
            continue;
        }
        let sealed = keyring.seal(&token, aad);
        if !keys::reseal(&mut tx, row.id, &sealed)
            .await
            .with_context(|| format!("re-sealing the token of instance {:?}", row.name))?
        {
            // Impossible while the row lock is held; refuse rather than half-rotate.
            bail!(
                "instance {:?} changed during the rotation; nothing was changed, run rotate-key again",
                row.name
            );
        }
        resealed += 1;
    }
    // Alert channel secrets are sealed under the same key (src/notify/channels.rs).
    let (channels_resealed, channels_current) =
        reseal_channels(&mut tx, &keyring, &current).await?;
    let after = key_ids_in_use(&mut tx).await?;
    if args.dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }

    let verb = if args.dry_run {
        "would re-seal"
    } else {
        "re-sealed"
    };
    outln!(
        "{verb} {resealed} token(s) under key id {current}; {already_current} already used it; \
         token references are not affected"
    );
    println!(
        "{verb} {channels_resealed} alert channel secret(s); {channels_current} already used the key"
    );
    // Keys that opened tokens before (or are configured as previous) and seal none now.
    let unreferenced: Vec<&String> = before
        .union(&previous_ids)
        .filter(|id| **id != current && !after.contains(*id))
        .collect();
    for id in &unreferenced {
        let configured = if previous_ids.contains(*id) {
            "remove it from security.previous_token_keys"
        } else {
            "it is not configured"
        };
        if args.dry_run {
            outln!("key id {id} would no longer be referenced by any token");
        } else {
            outln!("key id {id} is no longer referenced by any token: {configured}");
        }
    }
    let still: Vec<&String> = after.iter().filter(|id| **id != current).collect();
    if !args.dry_run && !still.is_empty() {
        // Only reachable if a row was sealed concurrently under an old key.
        eprintln!(
            "warning: key id(s) {} are still referenced; run rotate-key again before dropping them",
            still
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Key ids that seal anything: instance tokens and alert channel secrets.
async fn key_ids_in_use(tx: &mut sqlx::PgConnection) -> anyhow::Result<BTreeSet<String>> {
    let mut ids: BTreeSet<String> = keys::key_ids_in_use(&mut *tx)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.extend(crate::notify::channels::key_ids_in_use(&mut *tx).await?);
    Ok(ids)
}

/// Re-seals every alert channel's secrets under the current key, in the caller's
/// transaction (all or nothing with the tokens). Returns (re-sealed, already current).
async fn reseal_channels(
    tx: &mut sqlx::PgConnection,
    keyring: &crate::crypto::Keyring,
    current: &str,
) -> anyhow::Result<(usize, usize)> {
    use crate::notify::channels::{self, Secrets};
    let (mut resealed, mut already) = (0, 0);
    for (id, name, sealed) in channels::lock_sealed(&mut *tx).await? {
        let secrets = Secrets::open(keyring, &sealed, id).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the sealed secrets of alert channel {name:?} ({id}): {e}. Nothing was \
                 changed; configure its key in security.previous_token_keys, or give the channel \
                 new secrets with `intercom-sspm channel set {name} --url ...`, and run rotate-key again"
            )
        })?;
        if sealed.key_id == current {
            already += 1;
            continue;
        }
        if !channels::reseal(&mut *tx, id, &secrets.seal(keyring, id)).await? {
            bail!("alert channel {name:?} changed during the rotation; nothing was changed, run rotate-key again");
        }
        resealed += 1;
    }
    Ok((resealed, already))
}
