//! Contact field values on PostgreSQL (#17): the rows of `store::contacts` (the SQLite
//! side), for replicas. Not used by `serve` yet (docs/postgres.md).

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;

use super::PgError;
use crate::store::StoreError;

/// Sets (or, for an empty value, clears) fields of a visitor's profile, as
/// `contacts::save`: two statements, part of the caller's transaction (the transition that
/// stores the `contact.updated` event). Each field's row is written under its own lock, so
/// two saves of one visitor at once leave every field with a value one of them wrote; which
/// one may differ from field to field, as on SQLite where the later save wins each field it
/// names.
pub async fn save(
    client: &impl GenericClient,
    visitor_id: &str,
    fields: &BTreeMap<String, String>,
    at: &str,
) -> Result<(), PgError> {
    let (cleared, set): (Vec<_>, Vec<_>) = fields.iter().partition(|(_, value)| value.is_empty());
    if !cleared.is_empty() {
        let names: Vec<&str> = cleared.iter().map(|(field, _)| field.as_str()).collect();
        client
            .execute(
                "DELETE FROM contact_values WHERE visitor_id = $1 AND field = ANY($2)",
                &[&visitor_id, &names],
            )
            .await?;
    }
    if !set.is_empty() {
        let names: Vec<&str> = set.iter().map(|(field, _)| field.as_str()).collect();
        let values: Vec<&str> = set.iter().map(|(_, value)| value.as_str()).collect();
        client
            .execute(
                "INSERT INTO contact_values (visitor_id, field, value, updated_at)
                 SELECT $1, field, value, $4
                 FROM unnest($2::text[], $3::text[]) AS f (field, value)
                 ON CONFLICT (visitor_id, field)
                 DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                &[&visitor_id, &names, &values, &at],
            )
            .await?;
    }
    Ok(())
}

/// A visitor's values, by field name (fields no longer declared included).
pub async fn of_visitor(
    client: &impl GenericClient,
    visitor_id: &str,
) -> Result<BTreeMap<String, String>, StoreError> {
    let rows = client
        .query(
            "SELECT field, value FROM contact_values WHERE visitor_id = $1",
            &[&visitor_id],
        )
        .await
        .map_err(PgError::from)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Removes every value of a visitor (their erasure); how many.
pub async fn erase(client: &impl GenericClient, visitor_id: &str) -> Result<usize, StoreError> {
    let n = client
        .execute(
            "DELETE FROM contact_values WHERE visitor_id = $1",
            &[&visitor_id],
        )
        .await
        .map_err(PgError::from)?;
    Ok(n as usize)
}
