//! Page views the widget reports (`POST /api/v1/visitor/pageviews`): one row per page a
//! visitor opened, kept for `pageview_retention` and then swept. A row holds what the
//! widget sends (address, title, referrer) and nothing else; the visitor's language and
//! country stay on their `visitors` row as for a chat.

use rusqlite::{Connection, params};
use serde_json::{Value, json};

use super::StoreError;

/// One page view to store.
pub struct NewPageView<'a> {
    pub visitor_id: &'a str,
    pub url: &'a str,
    pub title: Option<&'a str>,
    pub referrer: Option<&'a str>,
}

/// Stores a page view at `at` (a stored time) and marks the visitor seen then. A visitor
/// erased or swept meanwhile gets no row (their token is unknown from now on).
pub fn insert(conn: &Connection, view: &NewPageView<'_>, at: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO pageviews (visitor_id, url, title, referrer, at)
         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM visitors WHERE id = ?1)",
    )?
    .execute(params![
        view.visitor_id,
        view.url,
        view.title,
        view.referrer,
        at
    ])?;
    conn.prepare_cached("UPDATE visitors SET last_seen_at = ?2 WHERE id = ?1")?
        .execute(params![view.visitor_id, at])?;
    Ok(())
}

/// A visitor's page views, oldest first, for their export.
pub fn of_visitor(conn: &Connection, visitor_id: &str) -> Result<Vec<Value>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT url, title, referrer, at FROM pageviews WHERE visitor_id = ?1 ORDER BY id",
    )?;
    let rows = stmt
        .query_map([visitor_id], |r| {
            Ok(json!({
                "url": r.get::<_, String>(0)?,
                "title": r.get::<_, Option<String>>(1)?,
                "referrer": r.get::<_, Option<String>>(2)?,
                "at": r.get::<_, String>(3)?,
            }))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Deletes a visitor's page views; how many.
pub fn erase_of(conn: &Connection, visitor_id: &str) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM pageviews WHERE visitor_id = ?1")?
        .execute([visitor_id])?)
}

/// What one sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub pageviews: usize,
    /// Visitors who only ever browsed (no conversation, no page view left) and were last
    /// seen before the cutoff: their token and row go too.
    pub visitor_ids: Vec<String>,
}

/// Deletes page views from before `cutoff` (a stored time), then the visitors left with
/// nothing: no conversation, no page view, last seen before `cutoff`.
pub fn sweep(conn: &Connection, cutoff: &str) -> Result<Swept, StoreError> {
    let pageviews = conn
        .prepare_cached("DELETE FROM pageviews WHERE at < ?1")?
        .execute([cutoff])?;
    let mut stmt = conn.prepare_cached(
        "DELETE FROM visitors WHERE last_seen_at < ?1
           AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.visitor_id = visitors.id)
           AND NOT EXISTS (SELECT 1 FROM pageviews p WHERE p.visitor_id = visitors.id)
           AND NOT EXISTS (SELECT 1 FROM form_submissions f WHERE f.visitor_id = visitors.id)
           AND NOT EXISTS (SELECT 1 FROM attachments a WHERE a.visitor_id = visitors.id)
         RETURNING id",
    )?;
    let visitor_ids = stmt
        .query_map([cutoff], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Swept {
        pageviews,
        visitor_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        crate::store::MIGRATIONS.to_latest(&mut conn).unwrap();
        for (id, seen) in [("v_old", "2020-01-01"), ("v_new", "2030-01-01")] {
            conn.execute(
                "INSERT INTO visitors (id, token_hash, bot, created_at, last_seen_at)
                 VALUES (?1, ?1, 'support', ?2, ?2)",
                [id, seen],
            )
            .unwrap();
        }
        conn
    }

    #[test]
    fn a_sweep_deletes_old_page_views_and_visitors_left_with_nothing() {
        let conn = db();
        let view = |visitor_id, url| NewPageView {
            visitor_id,
            url,
            title: Some("Pricing"),
            referrer: None,
        };
        insert(
            &conn,
            &view("v_old", "https://shop.example/a"),
            "2020-01-01",
        )
        .unwrap();
        insert(
            &conn,
            &view("v_new", "https://shop.example/b"),
            "2030-01-01",
        )
        .unwrap();
        // A visitor erased meanwhile: no row.
        insert(
            &conn,
            &view("v_gone", "https://shop.example/c"),
            "2030-01-01",
        )
        .unwrap();
        assert!(of_visitor(&conn, "v_gone").unwrap().is_empty());
        let swept = sweep(&conn, "2025-01-01").unwrap();
        assert_eq!(swept.pageviews, 1);
        assert_eq!(swept.visitor_ids, vec!["v_old".to_string()]);
        let left = of_visitor(&conn, "v_new").unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0]["url"], "https://shop.example/b");
        assert_eq!(erase_of(&conn, "v_new").unwrap(), 1);
        assert!(of_visitor(&conn, "v_new").unwrap().is_empty());
    }
}
