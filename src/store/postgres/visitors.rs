//! A visitor's own row on PostgreSQL (#17): `store::visitors` (the SQLite side), for
//! replicas.

use deadpool_postgres::GenericClient;

use super::PgError;
use crate::store::visitors::NewVisitor;

/// Stores the visitor, made and last seen at `at` (a stored time), as `visitors::insert`.
/// Its id is new and its token's hash is unique, so two replicas never make the same one.
pub async fn insert(
    client: &impl GenericClient,
    v: &NewVisitor<'_>,
    at: &str,
) -> Result<(), PgError> {
    client
        .execute(
            "INSERT INTO visitors
                 (id, token_hash, bot, name, email, language, country, ip, created_at, last_seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            &[
                &v.id,
                &v.token_hash,
                &v.bot,
                &v.name,
                &v.email,
                &v.language,
                &v.country,
                &v.ip,
                &at,
            ],
        )
        .await?;
    Ok(())
}
