//! The visitor's contact field values (`contact_values`): one row per visitor and field,
//! written when a `contact.updated` event is stored, read for details and exports.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::StoreError;

/// Sets (or, for an empty value, clears) fields of a visitor's profile.
pub fn save(
    conn: &Connection,
    visitor_id: &str,
    fields: &BTreeMap<String, String>,
    at: &str,
) -> Result<(), StoreError> {
    for (field, value) in fields {
        if value.is_empty() {
            conn.prepare_cached("DELETE FROM contact_values WHERE visitor_id = ?1 AND field = ?2")?
                .execute(params![visitor_id, field])?;
        } else {
            conn.prepare_cached(
                "INSERT INTO contact_values (visitor_id, field, value, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (visitor_id, field)
                 DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )?
            .execute(params![visitor_id, field, value, at])?;
        }
    }
    Ok(())
}

/// A visitor's values, by field name (fields no longer declared included: the caller
/// decides what to show).
pub fn of_visitor(
    conn: &Connection,
    visitor_id: &str,
) -> Result<BTreeMap<String, String>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT field, value FROM contact_values WHERE visitor_id = ?1")?;
    let rows = stmt.query_map([visitor_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Removes every value of a visitor (their erasure).
pub fn erase(conn: &Connection, visitor_id: &str) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM contact_values WHERE visitor_id = ?1",
        [visitor_id],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_set_changed_cleared_and_go_with_their_visitor() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::MIGRATIONS.to_latest(&mut conn).unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        conn.execute(
            "INSERT INTO visitors (id, token_hash, bot, created_at, last_seen_at)
             VALUES ('v_1', 'h', 'shop', 'x', 'x')",
            [],
        )
        .unwrap();
        let fields = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        save(
            &conn,
            "v_1",
            &fields(&[("company", "Acme"), ("plan", "Pro")]),
            "t1",
        )
        .unwrap();
        save(
            &conn,
            "v_1",
            &fields(&[("company", "Initech"), ("plan", "")]),
            "t2",
        )
        .unwrap();
        assert_eq!(
            of_visitor(&conn, "v_1").unwrap(),
            fields(&[("company", "Initech")])
        );
        // Retention deletes the visitor row alone: the values follow it.
        conn.execute("DELETE FROM visitors WHERE id = 'v_1'", [])
            .unwrap();
        assert!(of_visitor(&conn, "v_1").unwrap().is_empty());
    }
}
