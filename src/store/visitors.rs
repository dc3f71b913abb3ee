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

/// A [`NewVisitor`] that a writer job can own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedVisitor {
    pub id: String,
    pub token_hash: String,
    pub bot: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub language: Option<String>,
    pub country: Option<String>,
    pub ip: Option<String>,
}

impl OwnedVisitor {
    pub fn of(v: &NewVisitor<'_>) -> OwnedVisitor {
        let own = |s: Option<&str>| s.map(str::to_string);
        OwnedVisitor {
            id: v.id.to_string(),
            token_hash: v.token_hash.to_string(),
            bot: v.bot.to_string(),
            name: own(v.name),
            email: own(v.email),
            language: own(v.language),
            country: own(v.country),
            ip: own(v.ip),
        }
    }

    pub fn borrowed(&self) -> NewVisitor<'_> {
        NewVisitor {
            id: &self.id,
            token_hash: &self.token_hash,
            bot: &self.bot,
            name: self.name.as_deref(),
            email: self.email.as_deref(),
            language: self.language.as_deref(),
            country: self.country.as_deref(),
            ip: self.ip.as_deref(),
        }
    }
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
