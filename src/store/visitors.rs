//! A visitor's own row (`visitors`): made when a page view or a chat first meets them,
//! with the token they are known by from then on. The rows that hang off it are their
//! areas' (`pageviews`, `contacts`, `attachments`, `privacy`).

use rusqlite::{Connection, params};

use super::StoreError;

/// A visitor to store.
pub struct NewVisitor<'a> {
    pub id: &'a str,
    pub token_hash: &'a str,
    pub bot: &'a str,
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub language: Option<&'a str>,
    pub country: Option<&'a str>,
    pub ip: Option<&'a str>,
}

/// Stores the visitor, made and last seen at `at` (a stored time).
pub fn insert(conn: &Connection, v: &NewVisitor<'_>, at: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO visitors (id, token_hash, bot, name, email, language, country, ip, created_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        params![v.id, v.token_hash, v.bot, v.name, v.email, v.language, v.country, v.ip, at],
    )?;
    Ok(())
}
