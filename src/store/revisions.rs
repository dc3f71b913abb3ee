//! Installed config bundles: every bundle that went live is a numbered revision, with its
//! files, so that `livechat history` can list them and `livechat rollback` bring one back.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::StoreError;
use crate::config::Sources;

/// What put a revision in place: `livechat apply`, the admin API, a hand edit the server
/// noticed, `livechat rollback`, or the bundle the server found when it started.
pub const SOURCES: [&str; 5] = ["apply", "api", "watch", "rollback", "startup"];

pub use crate::config::live::{Revision, RevisionSummary, short_hash};

const COLUMNS: &str = "number, hash, created_at, source, summary, bundle";

fn revision_from_row(row: &Row<'_>) -> rusqlite::Result<(RevisionSummary, String)> {
    Ok((
        RevisionSummary {
            number: row.get(0)?,
            hash: row.get(1)?,
            created_at: row.get(2)?,
            source: row.get(3)?,
            summary: row.get(4)?,
        },
        row.get(5)?,
    ))
}

/// A revision from its summary and its stored bundle (JSON); also read so on PostgreSQL.
pub(crate) fn with_bundle(
    (info, bundle): (RevisionSummary, String),
) -> Result<Revision, StoreError> {
    let bundle = serde_json::from_str(&bundle).map_err(|source| StoreError::CorruptBundle {
        number: info.number,
        source,
    })?;
    Ok(Revision {
        number: info.number,
        hash: info.hash,
        created_at: info.created_at,
        source: info.source,
        summary: info.summary,
        bundle,
    })
}

/// The newest revision: the one that is live.
pub fn latest(conn: &Connection) -> Result<Option<Revision>, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM revisions ORDER BY number DESC LIMIT 1"),
        [],
        revision_from_row,
    )
    .optional()?
    .map(with_bundle)
    .transpose()
}

/// Revision `number`, if there is one.
pub fn get(conn: &Connection, number: i64) -> Result<Option<Revision>, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM revisions WHERE number = ?1"),
        [number],
        revision_from_row,
    )
    .optional()?
    .map(with_bundle)
    .transpose()
}

/// Every revision, newest first.
pub fn list(conn: &Connection) -> Result<Vec<RevisionSummary>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT number, hash, created_at, source, summary FROM revisions ORDER BY number DESC",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(RevisionSummary {
            number: row.get(0)?,
            hash: row.get(1)?,
            created_at: row.get(2)?,
            source: row.get(3)?,
            summary: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records a new revision, numbered after every earlier one (numbers are never reused).
pub fn insert(
    conn: &Connection,
    hash: &str,
    source: &str,
    summary: &str,
    sources: &Sources,
) -> Result<Revision, StoreError> {
    if !SOURCES.contains(&source) {
        return Err(StoreError::UnknownSource(source.to_string()));
    }
    let created_at = now_rfc3339();
    let bundle = serde_json::to_string(sources).expect("a map of strings always serializes");
    conn.execute(
        "INSERT INTO revisions (hash, created_at, source, summary, bundle)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![hash, created_at, source, summary, bundle],
    )?;
    Ok(Revision {
        number: conn.last_insert_rowid(),
        hash: hash.to_string(),
        created_at,
        source: source.to_string(),
        summary: summary.to_string(),
        bundle: sources.clone(),
    })
}

/// Now, to the second, like `2025-06-01T12:00:00Z`.
fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(pairs: &[(&str, &str)]) -> Sources {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn revisions_are_numbered_listed_newest_first_and_keep_their_files() {
        let tmp = tempfile::tempdir().unwrap();
        let conn = super::super::open(tmp.path()).unwrap();
        assert_eq!(latest(&conn).unwrap(), None);
        assert_eq!(list(&conn).unwrap(), vec![]);

        let one = sources(&[("support.toml", "name = \"S\"\n"), ("agents.toml", "")]);
        let r1 = insert(&conn, "aaa", "apply", "+1 bot", &one).unwrap();
        let two = sources(&[("sales.toml", "name = \"Ünïcode ✓\"\n")]);
        let r2 = insert(&conn, "bbb", "watch", "-1 bot, +1 bot", &two).unwrap();
        assert_eq!((r1.number, r2.number), (1, 2));

        assert_eq!(latest(&conn).unwrap().unwrap(), r2);
        let got = get(&conn, 1).unwrap().unwrap();
        assert_eq!(got.bundle, one);
        assert_eq!(got.source, "apply");
        let at: jiff::Timestamp = got.created_at.parse().unwrap();
        assert!(got.created_at.ends_with('Z'), "{}", got.created_at);
        assert!((jiff::Timestamp::now() - at).get_seconds().abs() < 60);
        assert_eq!(get(&conn, 3).unwrap(), None);

        let listed: Vec<(i64, String)> = list(&conn)
            .unwrap()
            .into_iter()
            .map(|r| (r.number, r.summary))
            .collect();
        assert_eq!(
            listed,
            vec![(2, "-1 bot, +1 bot".into()), (1, "+1 bot".into())]
        );
    }

    #[test]
    fn an_unknown_source_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let conn = super::super::open(tmp.path()).unwrap();
        let err = insert(&conn, "h", "cron", "", &Sources::new()).unwrap_err();
        assert!(matches!(err, StoreError::UnknownSource(s) if s == "cron"));
        assert_eq!(latest(&conn).unwrap(), None);
    }
}
