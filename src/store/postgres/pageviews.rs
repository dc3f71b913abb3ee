//! Page views on PostgreSQL (#17): the rows and rules of `store::pageviews` (the SQLite
//! side), for replicas. Not used by `serve` yet (docs/postgres.md).

use deadpool_postgres::GenericClient;
use serde_json::{Value, json};

use super::PgError;
use crate::store::StoreError;
use crate::store::pageviews::{NewPageView, Swept};

/// Stores a page view at `at` (a stored time) and marks the visitor seen then, as
/// `pageviews::insert`: a visitor erased or swept meanwhile gets no row.
///
/// SQLite checks that the visitor exists and then inserts, safe because its one writer runs
/// nothing in between. Here a sweep or an erase on another replica may delete the visitor
/// between the check and the insert, and the insert would then fail on the foreign key
/// instead of writing nothing. So the visitor's row is locked first, by the update of
/// `last_seen_at`, and the view is inserted only if that update found the row: a delete
/// that holds the row makes this wait and then find nothing; one that comes after waits
/// for this to commit and then finds the visitor seen just now.
pub async fn insert(
    client: &impl GenericClient,
    view: &NewPageView<'_>,
    at: &str,
) -> Result<(), StoreError> {
    client
        .execute(
            "WITH seen AS (
                 UPDATE visitors SET last_seen_at = $5 WHERE id = $1 RETURNING id
             )
             INSERT INTO pageviews (visitor_id, url, title, referrer, at)
             SELECT id, $2, $3, $4, $5 FROM seen",
            &[
                &view.visitor_id,
                &view.url,
                &view.title,
                &view.referrer,
                &at,
            ],
        )
        .await
        .map_err(PgError::from)?;
    Ok(())
}

/// A visitor's page views, oldest first, for their export (as `pageviews::of_visitor`).
pub async fn of_visitor(
    client: &impl GenericClient,
    visitor_id: &str,
) -> Result<Vec<Value>, StoreError> {
    let rows = client
        .query(
            "SELECT url, title, referrer, at FROM pageviews WHERE visitor_id = $1 ORDER BY id",
            &[&visitor_id],
        )
        .await
        .map_err(PgError::from)?;
    Ok(rows
        .iter()
        .map(|r| {
            json!({
                "url": r.get::<_, String>(0),
                "title": r.get::<_, Option<String>>(1),
                "referrer": r.get::<_, Option<String>>(2),
                "at": r.get::<_, String>(3),
            })
        })
        .collect())
}

/// Deletes a visitor's page views; how many.
pub async fn erase_of(client: &impl GenericClient, visitor_id: &str) -> Result<usize, StoreError> {
    let n = client
        .execute(
            "DELETE FROM pageviews WHERE visitor_id = $1",
            &[&visitor_id],
        )
        .await
        .map_err(PgError::from)?;
    Ok(n as usize)
}

/// Deletes page views from before `cutoff` (a stored time), then the visitors left with
/// nothing: no conversation, no page view, no form, no upload, last seen before `cutoff`
/// (as `pageviews::sweep`). The visitors deleted come back sorted.
///
/// Beside a page view of the same visitor on another replica ([`insert`] locks the
/// visitor's row): if the insert holds the row first, the delete waits for it and then,
/// checking the row again, finds the visitor seen at the view's time (now, after the
/// cutoff) and keeps them; if the delete
/// holds the row first, the insert writes nothing. Two sweeps at once delete each row once,
/// and each visitor is returned by the one sweep that deleted them.
pub async fn sweep(client: &impl GenericClient, cutoff: &str) -> Result<Swept, StoreError> {
    let pageviews = client
        .execute("DELETE FROM pageviews WHERE at < $1", &[&cutoff])
        .await
        .map_err(PgError::from)?;
    let rows = client
        .query(
            "WITH gone AS (
                 DELETE FROM visitors v WHERE v.last_seen_at < $1
                   AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.visitor_id = v.id)
                   AND NOT EXISTS (SELECT 1 FROM pageviews p WHERE p.visitor_id = v.id)
                   AND NOT EXISTS (SELECT 1 FROM form_submissions f WHERE f.visitor_id = v.id)
                   AND NOT EXISTS (SELECT 1 FROM attachments a WHERE a.visitor_id = v.id)
                 RETURNING v.id
             )
             SELECT id FROM gone ORDER BY id COLLATE \"C\"",
            &[&cutoff],
        )
        .await
        .map_err(PgError::from)?;
    Ok(Swept {
        pageviews: pageviews as usize,
        visitor_ids: rows.iter().map(|r| r.get(0)).collect(),
    })
}
