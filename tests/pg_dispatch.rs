//! Page views, read marks, contact values and attachments through the store interface
//! (`store::Store`, #17): each scenario runs once on SQLite (the writer and its readers, as
//! the server opens them) and once on a real PostgreSQL, through the same `Store` calls the
//! engine and the handlers make, and must see the same answers. What the calls need but do
//! not write themselves (conversations, their events, contact values, which transitions
//! write) is put in each database by its own SQL.

mod common;

use std::path::Path;

use common::postgres::Postgres;
use livechat::store::attachments::{self as files, Stored};
use livechat::store::pageviews::NewPageView;
use livechat::store::postgres::PgStore;
use livechat::store::reader::Readers;
use livechat::store::reads::Mark;
use livechat::store::visitors::NewVisitor;
use livechat::store::writer::Writer;
use livechat::store::{self, Store};
use rusqlite::types::Value as Lite;
use tokio_postgres::types::ToSql;

/// A SQLite store in `dir`, as the server opens it (less the search index and the
/// checkpointer, which these areas do not touch).
fn sqlite(dir: &Path) -> Store {
    Store::sqlite(Writer::start(store::open(dir).unwrap()), Readers::new(dir))
}

async fn postgres(pg: &Postgres, name: &str) -> Store {
    Store::postgres(PgStore::connect(&pg.database(name), 4).await.unwrap())
}

/// An argument of [`exec`] and [`rows`]: text, or no value.
type Arg = Option<&'static str>;

/// Runs `sql` in the store's own database (`$n` placeholders, which SQLite reads too).
async fn exec(store: &Store, sql: &'static str, args: &[Arg]) {
    match store {
        Store::Sqlite(db) => {
            let args = args.to_vec();
            db.write(move |c| c.execute(sql, rusqlite::params_from_iter(args)))
                .await
                .unwrap();
        }
        Store::Postgres(pg) => {
            let args: Vec<&(dyn ToSql + Sync)> =
                args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
            let client = pg.pool().get().await.unwrap();
            client.execute(sql, &args).await.unwrap();
        }
    }
}

/// The rows of a query whose columns are all text (or null), each row as one string.
async fn rows(store: &Store, sql: &'static str) -> Vec<String> {
    let join = |cols: Vec<Option<String>>| {
        cols.into_iter()
            .map(|c| c.unwrap_or_else(|| "-".into()))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    match store {
        Store::Sqlite(db) => db
            .read(move |c| {
                let mut stmt = c.prepare(sql)?;
                let n = stmt.column_count();
                let found = stmt
                    .query_map([], |r| {
                        (0..n)
                            .map(|i| {
                                Ok(match r.get::<_, Lite>(i)? {
                                    Lite::Null => None,
                                    Lite::Integer(i) => Some(i.to_string()),
                                    Lite::Text(s) => Some(s),
                                    other => Some(format!("{other:?}")),
                                })
                            })
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok::<_, rusqlite::Error>(found.into_iter().map(join).collect())
            })
            .await
            .unwrap(),
        Store::Postgres(pg) => {
            let client = pg.pool().get().await.unwrap();
            client
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| join((0..r.len()).map(|i| r.get(i)).collect()))
                .collect()
        }
    }
}

/// A conversation row, in either database's columns.
async fn conversation(store: &Store, id: &'static str, visitor: &'static str) {
    let sql = match store {
        Store::Sqlite(_) => {
            "INSERT INTO conversations (id, visitor_id, bot, status, created_at, updated_at, state)
             VALUES ($1, $2, 'support', 'chatting', 't', 't', '{}')"
        }
        Store::Postgres(_) => {
            "INSERT INTO conversations
                 (id, version, visitor_id, bot, status, created_at, updated_at, state)
             VALUES ($1, 1, $2, 'support', 'chatting', 't', 't', '{}')"
        }
    };
    exec(store, sql, &[Some(id), Some(visitor)]).await;
}

/// A message of `author` as event `seq` of `conversation`.
async fn message(store: &Store, seq: &'static str, conversation: &'static str, author: &str) {
    let data: &'static str = match author {
        "visitor" => r#"{"message_id":"m","author":"visitor","text":"hi"}"#,
        _ => r#"{"message_id":"m","author":"agent","text":"hello"}"#,
    };
    let sql = match store {
        Store::Sqlite(_) => {
            "INSERT INTO events (seq, conversation_id, bot, type, at, visitor_visible, data)
             VALUES (CAST($1 AS INTEGER), $2, 'support', 'message.created', 't', 1, $3)"
        }
        Store::Postgres(_) => {
            "INSERT INTO events (seq, conversation_id, bot, type, at, visitor_visible, data)
             VALUES ($1::text::bigint, $2, 'support', 'message.created', 't', true, $3)"
        }
    };
    exec(store, sql, &[Some(seq), Some(conversation), Some(data)]).await;
}

fn day(d: u32) -> String {
    format!("2026-01-{d:02}T00:00:00.000000Z")
}

fn visitor<'a>(id: &'a str, token_hash: &'a str) -> NewVisitor<'a> {
    NewVisitor {
        id,
        token_hash,
        bot: "support",
        name: None,
        email: None,
        language: Some("de"),
        country: (id == "v_old").then_some("AT"),
        ip: None,
    }
}

fn view<'a>(visitor_id: &'a str, url: &'a str) -> NewPageView<'a> {
    NewPageView {
        visitor_id,
        url,
        title: url.len().is_multiple_of(2).then_some("Pricing – Ünïcode"),
        referrer: url
            .ends_with('/')
            .then_some("https://search.example/?q=chat"),
    }
}

/// Page views with their new visitors, then the sweep, then what is left.
async fn page_views_scenario(store: &Store) -> Vec<String> {
    let mut seen = Vec::new();
    // The first view of each visitor makes them; later ones only mark them seen.
    for (v, url, d) in [
        ("v_old", "https://shop.example/", 1),
        ("v_chat", "https://shop.example/a", 1),
        ("v_new", "https://shop.example/b", 20),
    ] {
        let hash = format!("hash-{v}");
        store
            .record_page_view(Some(&visitor(v, &hash)), &view(v, url), &day(d))
            .await
            .unwrap();
    }
    store
        .record_page_view(None, &view("v_old", "https://shop.example/c"), &day(2))
        .await
        .unwrap();
    // A visitor erased or swept meanwhile: nothing is stored, and it is no error.
    store
        .record_page_view(None, &view("v_gone", "https://shop.example/"), &day(3))
        .await
        .unwrap();
    // A token hash that is someone's already: refused, and their view is not stored.
    let twice = store
        .record_page_view(
            Some(&visitor("v_twin", "hash-v_new")),
            &view("v_twin", "https://shop.example/"),
            &day(21),
        )
        .await;
    seen.push(format!(
        "a second visitor of one token refused: {}",
        twice.is_err()
    ));
    conversation(store, "c1", "v_chat").await;
    let visitors = "SELECT id, bot, language, country, created_at, last_seen_at
                    FROM visitors ORDER BY id";
    let views = "SELECT visitor_id, url, title, referrer, at FROM pageviews ORDER BY id";
    seen.extend(rows(store, visitors).await);
    seen.extend(rows(store, views).await);
    // Ten days kept: the views of the first days go, and the one visitor with nothing
    // else (v_chat has a conversation).
    let swept = store.sweep_pageviews(&day(10)).await.unwrap();
    let mut gone = swept.visitor_ids.clone();
    gone.sort();
    seen.push(format!(
        "swept {} views, visitors {gone:?}",
        swept.pageviews
    ));
    let again = store.sweep_pageviews(&day(10)).await.unwrap();
    seen.push(format!(
        "then {} views, visitors {:?}",
        again.pageviews, again.visitor_ids
    ));
    seen.extend(rows(store, visitors).await);
    seen.extend(rows(store, views).await);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_views_and_their_sweep_answer_alike_on_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let on_sqlite = page_views_scenario(&sqlite(dir.path())).await;
    let pg = Postgres::start();
    let on_postgres = page_views_scenario(&postgres(&pg, "pageviews").await).await;
    println!("sqlite:   {on_sqlite:#?}\npostgres: {on_postgres:#?}");
    assert_eq!(on_sqlite[0], "a second visitor of one token refused: true");
    assert!(
        on_sqlite.contains(&"swept 3 views, visitors [\"v_old\"]".to_string()),
        "{on_sqlite:#?}"
    );
    assert!(on_sqlite.contains(&"then 0 views, visitors []".to_string()));
    // Left: v_chat (a conversation) and v_new with the one view of day 20.
    let tail = &on_sqlite[on_sqlite.len() - 3..];
    assert!(
        tail[0].starts_with("v_chat | support | de | - | "),
        "{tail:?}"
    );
    assert!(
        tail[1].starts_with("v_new | support | de | - | "),
        "{tail:?}"
    );
    assert_eq!(
        tail[2],
        format!(
            "v_new | https://shop.example/b | Pricing – Ünïcode | - | {}",
            day(20)
        )
    );
    assert_eq!(on_postgres, on_sqlite);
}

/// Read marks set and unread counts asked, by two agents.
async fn marks_scenario(store: &Store) -> Vec<String> {
    let mut seen = Vec::new();
    exec(
        store,
        "INSERT INTO visitors (id, token_hash, bot, created_at, last_seen_at)
         VALUES ('v1', 'h', 'support', 't', 't')",
        &[],
    )
    .await;
    conversation(store, "c1", "v1").await;
    conversation(store, "c2", "v1").await;
    for (seq, author) in [("1", "visitor"), ("2", "agent"), ("3", "visitor")] {
        message(store, seq, "c1", author).await;
    }
    message(store, "4", "c2", "visitor").await;
    let mut unread = async |agent: &str, conv: &str| {
        let n = store.unread(agent, conv).await.unwrap();
        seen.push(format!("{agent} {conv}: {n} unread"));
    };
    unread("ana@x", "c1").await;
    unread("ana@x", "nowhere").await;
    let marks: Vec<Mark> = vec![
        store.set_mark("ana@x", "c1", 1, &day(1)).await.unwrap(),
        // Past the newest event: held at it.
        store.set_mark("ana@x", "c1", 99, &day(2)).await.unwrap(),
        // Never back.
        store.set_mark("ana@x", "c1", 2, &day(3)).await.unwrap(),
        store.set_mark("bea@x", "c2", -5, &day(3)).await.unwrap(),
    ];
    seen.push(format!("{marks:?}"));
    message(store, "5", "c1", "visitor").await;
    let mut unread = async |agent: &str, conv: &str| {
        let n = store.unread(agent, conv).await.unwrap();
        seen.push(format!("{agent} {conv}: {n} unread"));
    };
    unread("ana@x", "c1").await;
    unread("bea@x", "c1").await;
    unread("bea@x", "c2").await;
    seen.extend(
        rows(
            store,
            "SELECT agent_email, conversation_id, CAST(seq AS text), at FROM reads
             ORDER BY agent_email, conversation_id",
        )
        .await,
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_marks_and_unread_counts_answer_alike_on_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let on_sqlite = marks_scenario(&sqlite(dir.path())).await;
    let pg = Postgres::start();
    let on_postgres = marks_scenario(&postgres(&pg, "reads").await).await;
    println!("sqlite:   {on_sqlite:#?}\npostgres: {on_postgres:#?}");
    assert_eq!(
        on_sqlite[..3],
        [
            "ana@x c1: 2 unread",
            "ana@x nowhere: 0 unread",
            "[Mark { seq: 1, unread: 1 }, Mark { seq: 3, unread: 0 }, \
             Mark { seq: 3, unread: 0 }, Mark { seq: 0, unread: 1 }]",
        ]
    );
    assert_eq!(
        on_sqlite[3..6],
        [
            "ana@x c1: 1 unread",
            "bea@x c1: 3 unread",
            "bea@x c2: 1 unread"
        ]
    );
    assert_eq!(on_postgres, on_sqlite);
}

/// Contact values as the transitions leave them, read back per visitor.
async fn contacts_scenario(store: &Store) -> Vec<String> {
    exec(
        store,
        "INSERT INTO visitors (id, token_hash, bot, created_at, last_seen_at)
         VALUES ('v1', 'h1', 'support', 't', 't'), ('v2', 'h2', 'support', 't', 't')",
        &[],
    )
    .await;
    for (visitor, field, value) in [
        ("v1", "plan", "Pro"),
        ("v1", "company", "Acme – Ünïcode"),
        ("v2", "company", "Initech"),
    ] {
        exec(
            store,
            "INSERT INTO contact_values (visitor_id, field, value, updated_at)
             VALUES ($1, $2, $3, 't')",
            &[Some(visitor), Some(field), Some(value)],
        )
        .await;
    }
    let mut seen = Vec::new();
    for visitor in ["v1", "v2", "v_none"] {
        let values = store.contact_values(visitor).await.unwrap();
        seen.push(format!("{visitor}: {values:?}"));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_values_answer_alike_on_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let on_sqlite = contacts_scenario(&sqlite(dir.path())).await;
    let pg = Postgres::start();
    let on_postgres = contacts_scenario(&postgres(&pg, "contacts").await).await;
    println!("sqlite:   {on_sqlite:#?}\npostgres: {on_postgres:#?}");
    assert_eq!(
        on_sqlite,
        [
            r#"v1: {"company": "Acme – Ünïcode", "plan": "Pro"}"#,
            r#"v2: {"company": "Initech"}"#,
            "v_none: {}",
        ]
    );
    assert_eq!(on_postgres, on_sqlite);
}

/// An upload's row before it is stored: `content` stands for its bytes (and its hash).
fn upload(id: &str, content: &str, created_ms: i64, agent: bool, preview: bool) -> Stored {
    Stored {
        id: id.into(),
        sha256: format!("{content:0>64}"),
        name: format!("{id}.png"),
        mime: "image/png".into(),
        size: content.len() as u64,
        width: Some(640),
        height: (!agent).then_some(480),
        bot: "support".into(),
        visitor_id: (!agent).then(|| "v1".into()),
        agent_email: agent.then(|| "ana@x".into()),
        conversation_id: agent.then(|| "c1".into()),
        created_ms,
        preview: preview.then(|| "image/webp".into()),
        duration_ms: None,
    }
}

/// The files under `dir/files` (the upload area left out), relative to `dir`.
fn files_on_disk(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.join(files::FILES_DIR)];
    while let Some(at) = todo.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path == files::temp_dir(dir) {
                continue;
            }
            if path.is_dir() {
                todo.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// What a store keeps of its uploads' files, as paths relative to `dir`: SQLite's files
/// under `dir/files`; PostgreSQL's contents in `file_contents`, named as SQLite's files (it
/// keeps none on disk).
async fn stored_files(store: &Store, dir: &Path) -> Vec<String> {
    match store {
        Store::Sqlite(_) => files_on_disk(dir),
        Store::Postgres(pg) => {
            assert_eq!(files_on_disk(dir), Vec::<String>::new(), "nothing on disk");
            let client = pg.pool().get().await.unwrap();
            let rows = client
                .query("SELECT DISTINCT sha256, preview FROM file_contents", &[])
                .await
                .unwrap();
            let mut found: Vec<String> = rows
                .iter()
                .map(|r| {
                    let path = files::file_path(Path::new(""), r.get(0));
                    let preview = if r.get(1) { ".preview" } else { "" };
                    format!("{}{preview}", path.display())
                })
                .collect();
            found.sort();
            found
        }
    }
}

/// Uploads recorded with their files, counted against the conversation, read back and
/// swept.
async fn uploads_scenario(store: &Store, dir: &Path) -> Vec<String> {
    let mut seen = Vec::new();
    exec(
        store,
        "INSERT INTO visitors (id, token_hash, bot, created_at, last_seen_at)
         VALUES ('v1', 'h1', 'support', 't', 't')",
        &[],
    )
    .await;
    conversation(store, "c1", "v1").await;
    let hour = files::UNUSED_FOR_MS;
    let now = 10 * hour;
    let tmp = files::temp_dir(dir);
    std::fs::create_dir_all(&tmp).unwrap();
    // (row, a preview made now)
    let uploads = [
        (upload("a1", "abc", now, false, true), true),
        // The same content: its file and preview are there, the copy is dropped.
        (upload("a2", "abc", now, true, true), false),
        // Counts on a preview nobody made: stored without one.
        (upload("a3", "defg", now - hour - 1, false, true), false),
        (upload("a4", "hi", now, true, false), false),
    ];
    for (row, made) in uploads {
        let temp = tmp.join(format!("{}.part", row.id));
        std::fs::write(&temp, &row.sha256).unwrap();
        let preview = made.then(|| {
            let p = tmp.join(format!("{}.preview", row.id));
            std::fs::write(&p, "preview").unwrap();
            p
        });
        let id = row.id.clone();
        let stored = store
            .record_upload(row, dir, &temp, preview.as_deref())
            .await
            .unwrap();
        assert!(
            !temp.exists(),
            "{id}: the upload is put in place or dropped"
        );
        let read = store.attachment(&id).await.unwrap();
        assert_eq!(read.as_ref(), Some(&stored), "{id} reads back as stored");
        seen.push(format!("{stored:?}"));
    }
    seen.push(format!("{:?}", store.attachment("nowhere").await.unwrap()));
    for (conv, visitor, agent) in [
        (Some("c1"), Some("v1"), None),
        (Some("c1"), None, Some("ana@x")),
        (None, Some("v1"), None),
        (None, None, None),
    ] {
        let bytes = store.attachment_bytes(conv, visitor, agent).await.unwrap();
        seen.push(format!("{conv:?} {visitor:?} {agent:?}: {bytes} bytes"));
    }
    seen.extend(stored_files(store, dir).await);
    // An hour on, the visitor's upload no message used goes, with its file.
    seen.push(format!(
        "swept {}",
        store.sweep_attachments(dir, now).await.unwrap()
    ));
    seen.push(format!("{:?}", store.attachment("a3").await.unwrap()));
    // The conversation gone: its files go, and then the visitor's first upload alone keeps
    // the shared content.
    exec(store, "DELETE FROM conversations WHERE id = 'c1'", &[]).await;
    seen.push(format!(
        "swept {}",
        store.sweep_attachments(dir, now).await.unwrap()
    ));
    seen.extend(stored_files(store, dir).await);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_recorded_read_back_and_swept_alike_on_both_stores() {
    let lite = tempfile::tempdir().unwrap();
    let on_sqlite = uploads_scenario(&sqlite(lite.path()), lite.path()).await;
    let pg = Postgres::start();
    let pg_dir = tempfile::tempdir().unwrap();
    let on_postgres = uploads_scenario(&postgres(&pg, "uploads").await, pg_dir.path()).await;
    println!("sqlite:   {on_sqlite:#?}\npostgres: {on_postgres:#?}");
    let abc = format!("{:0>64}", "abc");
    // The second upload of "abc" keeps the preview made by the first; "defg" has none.
    assert!(
        on_sqlite[1].contains("preview: Some(\"image/webp\")"),
        "{on_sqlite:#?}"
    );
    assert!(on_sqlite[2].contains("preview: None"), "{on_sqlite:#?}");
    assert_eq!(on_sqlite[4], "None");
    assert_eq!(
        on_sqlite[5..9],
        [
            // c1's files (a2, a4) and the visitor's unused ones (a1, a3).
            "Some(\"c1\") Some(\"v1\") None: 12 bytes",
            // c1's files and nothing unused of the agent's.
            "Some(\"c1\") None Some(\"ana@x\"): 5 bytes",
            "None Some(\"v1\") None: 7 bytes",
            "None None None: 0 bytes",
        ]
    );
    let after = &on_sqlite[on_sqlite.len() - 5..];
    assert_eq!(
        after,
        [
            "swept 1".to_string(),
            "None".to_string(),
            "swept 2".to_string(),
            format!("files/00/{abc}"),
            format!("files/00/{abc}.preview"),
        ],
        "{on_sqlite:#?}"
    );
    assert_eq!(on_postgres, on_sqlite);
}
