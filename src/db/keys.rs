//! Token-key rotation SQL: read every sealed token under a row lock, write it back re-sealed.
//! Rows with a token reference (`token_ref`) hold no ciphertext and are never touched.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::crypto::Sealed;

/// One instance's sealed token, with its name for messages.
pub struct SealedRow {
    pub id: Uuid,
    pub name: String,
    pub sealed: Sealed,
}

/// Every sealed token, locked `FOR UPDATE` until the caller's transaction ends so a
/// concurrent `instance set-token` cannot be overwritten by a stale re-seal (it waits,
/// then writes its own token sealed under whatever key it was configured with).
/// Ordered by name so runs (and their failure messages) are reproducible.
pub async fn lock_sealed(conn: &mut PgConnection) -> Result<Vec<SealedRow>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT id, name, token_ciphertext AS "ciphertext!", token_nonce AS "nonce!",
                  token_key_id AS "key_id!"
           FROM sspm.instances
           WHERE token_ref IS NULL AND token_ciphertext IS NOT NULL
           ORDER BY lower(name), id
           FOR UPDATE"#
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| SealedRow {
            id: r.id,
            name: r.name,
            sealed: Sealed {
                key_id: r.key_id,
                nonce: r.nonce,
                ciphertext: r.ciphertext,
            },
        })
        .collect())
}

/// Replaces one row's sealed token. `updated_at` is left alone on purpose: a re-seal
/// changes no fact about the instance, and consumers use `updated_at` to spot edits.
pub async fn reseal(
    conn: &mut PgConnection,
    id: Uuid,
    sealed: &Sealed,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        r#"UPDATE sspm.instances
           SET token_ciphertext = $2, token_nonce = $3, token_key_id = $4
           WHERE id = $1 AND token_ref IS NULL"#,
        id,
        sealed.ciphertext,
        sealed.nonce,
        sealed.key_id,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Key ids still referenced by sealed tokens, with how many tokens use each.
pub async fn key_ids_in_use(conn: &mut PgConnection) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT token_key_id AS "key_id!", count(*) AS "tokens!"
           FROM sspm.instances
           WHERE token_key_id IS NOT NULL
           GROUP BY token_key_id
           ORDER BY token_key_id"#
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.key_id, r.tokens)).collect())
}
