//! Privacy through the store interface (`store::Store`, #17): a visitor's export, erasing a
//! visitor and the retention sweep, as the engine and `livechat visitor` now make them. The
//! same rows go into three stores: SQLite driven through the `Store` calls (as the command
//! line makes them), a real PostgreSQL driven through the same calls, and SQLite driven
//! through the engine (which refuses PostgreSQL until the engine's command path moves).
//! Every answer, and everything left afterwards (rows per table, tombstones in the log,
//! files in the data directory, mail files), must be the same in all three.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use common::postgres::Postgres;
use jiff::Timestamp;
use serde_json::Value;

use livechat::config::Bundle;
use livechat::config::live::Live;
use livechat::engine::{Engine, EngineError, Outbound};
use livechat::hub::Hub;
use livechat::mail::outbox::Doorbell;
use livechat::mail::templates::Templates;
use livechat::store::attachments::{FILES_DIR, file_path};
use livechat::store::postgres::PgStore;
use livechat::store::privacy::Erased;
use livechat::store::reader::Readers;
use livechat::store::writer::Writer;
use livechat::store::{self, Store};

/// A time every cutoff of these tests is before (the old ones are in 2020).
const LATER: &str = "2999-01-01T00:00:00.000000Z";

/// Conversations: (id, visitor, bot, status, created_at, updated_at). c2, c3 and c5 are
/// settled and old (retention's); c2 is v1's, whose erase takes it first; c6 is old but
/// still going, c4 settled but recent.
const CONVERSATIONS: [(&str, &str, &str, &str, &str, &str); 6] = [
    ("c1", "v1", "support", "new", "2026-01-01T00:00:01Z", LATER),
    (
        "c2",
        "v1",
        "support",
        "closed",
        "2026-01-01T00:00:02Z",
        "2020-01-02T00:00:00Z",
    ),
    (
        "c3",
        "v2",
        "sales",
        "closed",
        "2026-01-01T00:00:03Z",
        "2020-01-03T00:00:00Z",
    ),
    (
        "c4",
        "v2",
        "sales",
        "resolved",
        "2026-01-01T00:00:04Z",
        LATER,
    ),
    (
        "c5",
        "v4",
        "support",
        "ended",
        "2026-01-01T00:00:05Z",
        "2020-01-05T00:00:00Z",
    ),
    (
        "c6",
        "v5",
        "support",
        "chatting",
        "2026-01-01T00:00:06Z",
        "2020-01-06T00:00:00Z",
    ),
];

/// Events: (seq, conversation, type, visible to the visitor, data).
const EVENTS: [(i64, &str, &str, bool, &str); 13] = [
    (1, "c1", "conversation.started", true, "{}"),
    (
        2,
        "c1",
        "message.created",
        true,
        r#"{"message_id":"m1","author":"visitor","text":"I live at 1 Elm St"}"#,
    ),
    (
        3,
        "c1",
        "note.created",
        false,
        r#"{"message_id":"m2","agent":"ana@acme.example","text":"VIP"}"#,
    ),
    (4, "c2", "conversation.started", true, "{}"),
    (
        5,
        "c2",
        "message.created",
        true,
        r#"{"message_id":"m3","author":"visitor","text":"my card ends 4242"}"#,
    ),
    (6, "c3", "conversation.started", true, "{}"),
    (
        7,
        "c3",
        "message.created",
        true,
        r#"{"message_id":"m4","author":"visitor","text":"a quote please"}"#,
    ),
    (8, "c4", "conversation.started", true, "{}"),
    (
        9,
        "c4",
        "message.created",
        true,
        r#"{"message_id":"m5","author":"visitor","text":"the photo again"}"#,
    ),
    (
        10,
        "c5",
        "message.created",
        true,
        r#"{"message_id":"m6","author":"visitor","text":"anyone there?"}"#,
    ),
    (
        11,
        "c6",
        "message.created",
        true,
        r#"{"message_id":"m7","author":"visitor","text":"still typing"}"#,
    ),
    (
        12,
        "c1",
        "message.created",
        true,
        r#"{"message_id":"m8","author":"agent","text":"noted"}"#,
    ),
    (13, "c4", "conversation.resolved", true, "{}"),
];

/// The file contents the uploads stand for: a1 and a3 share one.
const SHARED: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const UNUSED: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const RETAINED: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

/// The visitors, first (SQLite's conversations name them by a foreign key): v1 is erased on
/// request; v2 keeps a recent conversation; v3 and v4 are old and left with none; v5 is
/// recent.
const VISITORS: &str = "
    INSERT INTO visitors (id, token_hash, bot, email, created_at, last_seen_at) VALUES
      ('v1', 'h1', 'support', 'Vera@Visitor.example', '2026-01-01T00:00:00Z', '2999-01-01'),
      ('v2', 'h2', 'sales', 'walt@visitor.example', '2020-01-01T00:00:00Z', '2020-01-01'),
      ('v3', 'h3', 'support', NULL, '2020-01-01T00:00:00Z', '2020-01-01'),
      ('v4', 'h4', 'support', NULL, '2020-01-01T00:00:00Z', '2020-01-01'),
      ('v5', 'h5', 'support', NULL, '2026-01-01T00:00:00Z', '2999-01-01');
";

/// Everything else, in SQL both databases read: offline forms, the uploads and their
/// links, contact values, page views and the outbox (mail to v1 under another case, items
/// about c2 and c3, settled and pending ones, old and new).
const ROWS: &str = "
    INSERT INTO form_submissions (id, bot, form, conversation_id, visitor_id, fields, created_at)
      VALUES ('f1', 'support', 'contact', 'c1', 'v1', '{\"email\":\"vera@visitor.example\"}',
              '2026-01-01T00:01:00Z'),
             ('f2', 'support', 'contact', NULL, 'v1', '{}', '2026-01-01T00:02:00Z'),
             ('f3', 'sales', 'contact', 'c3', 'v2', '{}', '2020-01-03T00:00:00Z'),
             ('f4', 'support', 'contact', NULL, 'v3', '{}', '2020-01-01T00:00:00Z'),
             ('f5', 'support', 'contact', NULL, NULL, '{}', '2020-01-01T00:00:00Z'),
             ('f6', 'support', 'contact', NULL, 'v5', '{}', '2999-01-01T00:00:00Z');
    INSERT INTO attachments (id, sha256, name, type, size, bot, visitor_id, conversation_id,
                             created_ms, used_ms)
      VALUES ('a1', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
              'id.png', 'image/png', 10, 'support', 'v1', 'c1', 1, 2),
             ('a2', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',
              'unused.png', 'image/png', 20, 'support', 'v1', NULL, 3, NULL),
             ('a3', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
              'same.png', 'image/png', 10, 'sales', 'v2', 'c4', 4, 5),
             ('a4', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc',
              'quote.pdf', 'application/pdf', 30, 'sales', 'v2', 'c3', 6, 7);
    INSERT INTO message_attachments (message_id, position, attachment_id)
      VALUES ('m1', 0, 'a1'), ('m5', 0, 'a3'), ('m4', 0, 'a4');
    INSERT INTO contact_values (visitor_id, field, value, updated_at)
      VALUES ('v1', 'phone', '555-0100', 't'), ('v2', 'phone', '555-0199', 't');
    INSERT INTO pageviews (visitor_id, url, at)
      VALUES ('v1', 'https://shop.example/cart', '2026-01-01T00:00:00Z'),
             ('v2', 'https://shop.example/', '2020-01-01T00:00:00Z'),
             ('v5', 'https://shop.example/help', '2026-01-01T00:00:00Z');
    INSERT INTO outbox (id, kind, payload, status, next_attempt_ms, created_at) VALUES
      ('o1', 'mail', '{\"to\":[\"vera@visitor.example\"],\"subject\":\"Your transcript\"}',
       'pending', 0, '2026-01-01T00:00:00Z'),
      ('o2', 'webhook', '{\"conversation_id\":\"c2\",\"type\":\"message.created\"}',
       'pending', 0, '2026-01-01T00:00:00Z'),
      ('o3', 'webhook', '{\"conversation_id\":\"c3\",\"type\":\"message.created\"}',
       'pending', 0, '2026-01-01T00:00:00Z'),
      ('o4', 'mail', '{\"to\":[\"ops@acme.example\"],\"subject\":\"Daily\"}',
       'sent', 0, '2020-01-01T00:00:00Z'),
      ('o5', 'mail', '{\"to\":[\"ops@acme.example\"],\"subject\":\"Stuck\"}',
       'pending', 0, '2020-01-01T00:00:00Z'),
      ('o6', 'mail', '{\"to\":[\"ops@acme.example\"],\"subject\":\"Today\"}',
       'sent', 0, '2999-01-01T00:00:00Z');
";

const OUTBOX: [&str; 6] = ["o1", "o2", "o3", "o4", "o5", "o6"];

/// The SQL that fills one store: its conversations (PostgreSQL's rows carry a version),
/// their events and [`ROWS`].
fn fill_sql(postgres: bool) -> String {
    let mut sql = VISITORS.to_string();
    for (id, visitor, bot, status, created, updated) in CONVERSATIONS {
        let (version_col, version) = if postgres {
            (", version", ", 1")
        } else {
            ("", "")
        };
        sql += &format!(
            "INSERT INTO conversations (id, visitor_id, bot, status, created_at, updated_at,
                                        state{version_col})
             VALUES ('{id}', '{visitor}', '{bot}', '{status}', '{created}', '{updated}',
                     '{{\"id\":\"{id}\"}}'{version});\n"
        );
    }
    for (seq, conv, kind, visible, data) in EVENTS {
        let bot = CONVERSATIONS.iter().find(|c| c.0 == conv).unwrap().2;
        sql += &format!(
            "INSERT INTO events (seq, conversation_id, bot, type, at, visitor_visible, data)
             VALUES ({seq}, '{conv}', '{bot}', '{kind}', '2026-01-01T00:00:{seq:02}Z', {visible},
                     '{data}');\n"
        );
    }
    if postgres {
        sql += "UPDATE seq_counter SET last = 13;\n";
    }
    sql + ROWS
}

/// Fills `store` (its files in `data_dir`, its mail files in `mail_dir`) with the rows
/// above, the three contents' files and a mail file per outbox item.
async fn fill(store: &Store, data_dir: &Path, mail_dir: &Path) {
    match store {
        Store::Sqlite(db) => {
            let sql = fill_sql(false);
            db.write(move |c| c.execute_batch(&sql)).await.unwrap();
        }
        Store::Postgres(pg) => {
            let client = pg.pool().get().await.unwrap();
            client.batch_execute(&fill_sql(true)).await.unwrap();
        }
    }
    for sha in [SHARED, UNUSED, RETAINED] {
        let path = file_path(data_dir, sha);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, sha).unwrap();
    }
    std::fs::create_dir_all(mail_dir).unwrap();
    for id in OUTBOX {
        std::fs::write(mail_dir.join(format!("{id}.eml")), id).unwrap();
    }
}

/// What is left in a store, table by table, as text: every row's key, the log's events
/// with their type and data (so the tombstones show), and the files and mail files.
const LEFT: [&str; 9] = [
    "SELECT id FROM visitors ORDER BY id",
    "SELECT id || ' ' || status FROM conversations ORDER BY id",
    "SELECT seq || ' ' || coalesce(conversation_id, '-') || ' ' || type || ' ' || data
     FROM events ORDER BY seq",
    "SELECT id FROM form_submissions ORDER BY id",
    "SELECT id || ' ' || sha256 FROM attachments ORDER BY id",
    "SELECT message_id || ' ' || attachment_id FROM message_attachments ORDER BY message_id",
    "SELECT visitor_id || ' ' || field FROM contact_values ORDER BY visitor_id, field",
    "SELECT visitor_id || ' ' || url FROM pageviews ORDER BY visitor_id, url",
    "SELECT id || ' ' || status FROM outbox ORDER BY id",
];

async fn left(store: &Store, data_dir: &Path, mail_dir: &Path) -> Vec<Vec<String>> {
    let mut tables = match store {
        Store::Sqlite(db) => db
            .read(|c| {
                LEFT.iter()
                    .map(|sql| {
                        c.prepare(sql)?
                            .query_map([], |r| r.get::<_, String>(0))?
                            .collect::<rusqlite::Result<Vec<String>>>()
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .unwrap(),
        Store::Postgres(pg) => {
            let client = pg.pool().get().await.unwrap();
            let mut tables = Vec::new();
            for sql in LEFT {
                let rows = client.query(sql, &[]).await.unwrap();
                tables.push(rows.iter().map(|r| r.get::<_, String>(0)).collect());
            }
            tables
        }
    };
    tables.push(names_under(&data_dir.join(FILES_DIR)));
    tables.push(names_under(mail_dir));
    tables
}

/// The names of the files under `dir`, at any depth, sorted.
fn names_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                found.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

/// An erase's answer, comparable across stores (files and visitors in order).
fn erased_text(mut e: Erased) -> String {
    e.files.sort();
    e.visitor_ids.sort();
    format!("{e:?}")
}

/// What an erase or a sweep removed, in the engine's terms (`engine::privacy::Removed`,
/// less the WAL, which only SQLite has).
fn removed_text(r: &livechat::engine::privacy::Removed) -> String {
    format!(
        "{} conversations, {} messages, {} forms, {} page views, {} events redacted, \
         {} visitors, {} outbox items, {} mail files",
        r.conversations,
        r.messages,
        r.forms,
        r.pageviews,
        r.events_redacted,
        r.visitors,
        r.outbox_items,
        r.mail_files
    )
}

/// The same in the store's terms.
fn summed(erased: &Erased, outbox: usize, mail_files: usize) -> String {
    removed_text(&livechat::engine::privacy::Removed {
        conversations: erased.conversations.len(),
        messages: erased.messages,
        forms: erased.forms,
        pageviews: erased.pageviews,
        events_redacted: erased.events,
        visitors: erased.visitors,
        outbox_items: outbox,
        mail_files,
        wal_truncated: false,
    })
}

/// The retention cutoff of `keep` as the engine computes it: the stored time of now less
/// `keep`, and the instant itself for the outbox.
fn cutoff(keep: Duration) -> (String, Timestamp) {
    let at = Timestamp::now() - jiff::SignedDuration::try_from(keep).unwrap();
    (format!("{at:.6}"), at)
}

/// The scenario through the `Store` calls, as `livechat visitor` and the engine make them:
/// v1's export, v1's erase (rows, then files no upload refers to, then mail files), then
/// retention in batches of one until a batch is not full. Answers what each step said,
/// and what the WAL step answered (SQLite's alone).
async fn through_the_store(
    store: &Store,
    data_dir: &Path,
    mail_dir: &Path,
) -> (Vec<String>, Vec<Option<bool>>) {
    let mut said = Vec::new();
    let mut wal = Vec::new();
    let exported = store.export_visitor("v1").await.unwrap().unwrap();
    said.push(exported.to_string());
    said.push(format!("{:?}", store.export_visitor("v9").await.unwrap()));
    said.push(format!(
        "{:?}",
        store.visitor_conversations("v1").await.unwrap()
    ));
    said.push(format!(
        "{:?}",
        store.visitor_conversations("v9").await.unwrap()
    ));

    let (erased, mut outbox) = store.erase_visitor_rows("v1").await.unwrap();
    let files = store
        .remove_unreferenced_files(data_dir, &erased.files)
        .await
        .unwrap();
    let mails = livechat::mail::transport::remove_mail_files(mail_dir, &outbox);
    wal.push(store.cut_back_wal().await.unwrap());
    outbox.sort();
    said.push(format!(
        "erase: {} outbox {outbox:?}, {files} files; {}",
        erased_text(erased.clone()),
        summed(&erased, outbox.len(), mails)
    ));
    // Gone: a second erase finds no visitor, and erasing their rows again removes nothing.
    said.push(format!(
        "{:?}",
        store.visitor_conversations("v1").await.unwrap()
    ));
    let (again, none) = store.erase_visitor_rows("v1").await.unwrap();
    said.push(format!("again: {} {none:?}", erased_text(again)));

    let (stamp, at) = cutoff(Duration::from_secs(86_400));
    let mut total = Erased::default();
    let mut outbox_total = Vec::new();
    let mut mails = 0;
    loop {
        let (erased, outbox, more) = store.erase_expired(&stamp, at, 1).await.unwrap();
        said.push(format!(
            "batch: {} outbox {outbox:?} more {more}",
            erased_text(erased.clone())
        ));
        if !erased.files.is_empty() {
            store
                .remove_unreferenced_files(data_dir, &erased.files)
                .await
                .unwrap();
        }
        mails += livechat::mail::transport::remove_mail_files(mail_dir, &outbox);
        wal.push(store.cut_back_wal().await.unwrap());
        total.conversations.extend(erased.conversations);
        total.messages += erased.messages;
        total.forms += erased.forms;
        total.pageviews += erased.pageviews;
        total.events += erased.events;
        total.visitors += erased.visitors;
        outbox_total.extend(outbox);
        if !more {
            break;
        }
    }
    said.push(format!(
        "retention: {}",
        summed(&total, outbox_total.len(), mails)
    ));
    (said, wal)
}

fn sqlite(dir: &Path) -> Store {
    Store::sqlite(Writer::start(store::open(dir).unwrap()), Readers::new(dir))
}

async fn engine_on(store: Store, data_dir: &Path) -> Engine {
    let live = Arc::new(ArcSwap::from_pointee(Live {
        bundle: Arc::new(Bundle::empty()),
        revision: None,
        error: None,
    }));
    let outbound = Outbound {
        templates: Templates::new(None),
        public_url: "http://chat.example".into(),
        doorbell: Doorbell::default(),
    };
    Engine::open(store, data_dir.to_path_buf(), live, Hub::new(), outbound)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_erase_and_retention_answer_alike_through_the_store_and_the_engine() {
    // SQLite through the store interface.
    let lite_dir = tempfile::tempdir().unwrap();
    let lite_mail = lite_dir.path().join("mail");
    let lite = sqlite(lite_dir.path());
    fill(&lite, lite_dir.path(), &lite_mail).await;
    let before = left(&lite, lite_dir.path(), &lite_mail).await;
    let (on_sqlite, wal) = through_the_store(&lite, lite_dir.path(), &lite_mail).await;
    let left_sqlite = left(&lite, lite_dir.path(), &lite_mail).await;
    assert!(wal.iter().all(|w| w.is_some()), "{wal:?}");

    // PostgreSQL through the same calls.
    let cluster = Postgres::start();
    let pg_dir = tempfile::tempdir().unwrap();
    let pg_mail = pg_dir.path().join("mail");
    let pg = Store::postgres(
        PgStore::connect(&cluster.database("privacy"), 4)
            .await
            .unwrap(),
    );
    fill(&pg, pg_dir.path(), &pg_mail).await;
    assert_eq!(left(&pg, pg_dir.path(), &pg_mail).await, before);
    let (on_postgres, wal) = through_the_store(&pg, pg_dir.path(), &pg_mail).await;
    assert!(wal.iter().all(|w| w.is_none()), "{wal:?}");
    for (i, (s, p)) in on_sqlite.iter().zip(&on_postgres).enumerate() {
        assert_eq!(p, s, "answer {i} differs");
    }
    assert_eq!(on_postgres.len(), on_sqlite.len());
    let left_postgres = left(&pg, pg_dir.path(), &pg_mail).await;
    assert_eq!(left_postgres, left_sqlite);

    // What must have gone and what must have stayed, whichever store.
    let export: Value = serde_json::from_str(&on_sqlite[0]).unwrap();
    assert_eq!(export["conversations"].as_array().unwrap().len(), 2);
    assert_eq!(export["conversations"][0]["messages"][1]["text"], "VIP");
    assert_eq!(export["forms"].as_array().unwrap().len(), 2);
    assert_eq!(export["attachments"].as_array().unwrap().len(), 2);
    assert_eq!(export["pageviews"].as_array().unwrap().len(), 1);
    assert_eq!(on_sqlite[1], "None");
    assert_eq!(on_sqlite[2], r#"Some(["c1", "c2"])"#);
    assert!(
        on_sqlite[4].contains("outbox [\"o1\", \"o2\"], 1 files;"),
        "{}",
        on_sqlite[4]
    );
    assert!(
        on_sqlite[4].ends_with(
            "2 conversations, 4 messages, 2 forms, 1 page views, 6 events redacted, \
             1 visitors, 2 outbox items, 2 mail files"
        ),
        "{}",
        on_sqlite[4]
    );
    assert_eq!(on_sqlite[5], "None");
    assert!(
        on_sqlite.last().unwrap().ends_with(
            "2 conversations, 2 messages, 2 forms, 0 page views, 3 events redacted, \
             2 visitors, 2 outbox items, 2 mail files"
        ),
        "{}",
        on_sqlite.last().unwrap()
    );
    let [
        visitors,
        conversations,
        events,
        forms,
        attachments,
        links,
        contacts,
        views,
        outbox,
        files,
        mails,
    ] = &left_sqlite[..]
    else {
        unreachable!()
    };
    assert_eq!(visitors, &["v2", "v5"]);
    assert_eq!(conversations, &["c4 resolved", "c6 chatting"]);
    assert_eq!(events.len(), 13, "no event goes: {events:?}");
    let tombstones: Vec<&str> = events
        .iter()
        .filter(|e| e.ends_with(" redacted {}"))
        .map(|e| e.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(
        tombstones,
        ["c1", "c1", "c1", "c2", "c2", "c3", "c3", "c5", "c1"]
    );
    assert!(
        !events
            .iter()
            .any(|e| e.contains("Elm St") || e.contains("4242"))
    );
    // f4's visitor still existed when the leftovers' forms went; the next pass takes it.
    assert_eq!(forms, &["f4", "f6"]);
    assert_eq!(attachments, &[format!("a3 {SHARED}")]);
    assert_eq!(links, &["m5 a3"]);
    assert_eq!(contacts, &["v2 phone"]);
    assert_eq!(
        views,
        &["v2 https://shop.example/", "v5 https://shop.example/help"]
    );
    assert_eq!(outbox, &["o5 pending", "o6 sent"]);
    assert_eq!(files, &[SHARED]);
    assert_eq!(mails, &["o5.eml", "o6.eml"]);

    // SQLite through the engine: the same export, the same erase, one sweep; the same
    // rows, files and mail files left.
    let eng_dir = tempfile::tempdir().unwrap();
    let eng_mail = eng_dir.path().join("mail");
    let store = Store::open_sqlite(eng_dir.path()).unwrap();
    let engine = engine_on(store.clone(), eng_dir.path()).await;
    fill(&store, eng_dir.path(), &eng_mail).await;
    let exported = engine.export_visitor("v1").await.unwrap();
    assert_eq!(exported.to_string(), on_sqlite[0]);
    assert!(matches!(
        engine.export_visitor("v9").await,
        Err(EngineError::NotFound)
    ));
    let erased = engine.erase_visitor("v1", &eng_mail).await.unwrap();
    assert!(erased.wal_truncated);
    assert!(
        on_sqlite[4].ends_with(&removed_text(&erased)),
        "{}",
        removed_text(&erased)
    );
    assert!(matches!(
        engine.erase_visitor("v1", &eng_mail).await,
        Err(EngineError::NotFound)
    ));
    let swept = engine
        .sweep_retention(Duration::from_secs(86_400), &eng_mail)
        .await
        .unwrap();
    assert!(
        on_sqlite.last().unwrap().ends_with(&removed_text(&swept)),
        "{}",
        removed_text(&swept)
    );
    assert_eq!(left(&store, eng_dir.path(), &eng_mail).await, left_sqlite);
    println!(
        "erase: {}\nretention: {}",
        removed_text(&erased),
        removed_text(&swept)
    );
}

/// Two replicas' retention sweeps through `Store::erase_expired` at once: each
/// conversation is erased once and each outbox item about one is forgotten once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sweeping_through_the_store_forget_each_item_once() {
    let cluster = Postgres::start();
    let url = cluster.database("sweeps");
    let setup = PgStore::connect(&url, 2).await.unwrap();
    let client = setup.pool().get().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO conversations
               (id, version, visitor_id, bot, status, created_at, updated_at, state)
             SELECT 'c' || lpad(n::text, 3, '0'), 1, 'v', 'support', 'closed', 't',
                    '2020-01-01T00:00:00Z', '{}'
             FROM generate_series(1, 90) AS n;
             INSERT INTO outbox (id, kind, payload, status, next_attempt_ms, created_at)
             SELECT 'o' || n, 'webhook',
                    '{\"conversation_id\":\"c' || lpad(n::text, 3, '0') || '\"}',
                    'pending', 0, now()
             FROM generate_series(1, 90) AS n;",
        )
        .await
        .unwrap();
    let (stamp, at) = cutoff(Duration::from_secs(86_400));
    let start = Arc::new(tokio::sync::Barrier::new(2));
    let sweep = |store: Store| {
        let (start, stamp) = (start.clone(), stamp.clone());
        tokio::spawn(async move {
            let (mut conversations, mut outbox) = (Vec::new(), Vec::new());
            start.wait().await;
            loop {
                let (erased, forgotten, more) = store.erase_expired(&stamp, at, 7).await.unwrap();
                conversations.extend(erased.ids());
                outbox.extend(forgotten);
                if !more {
                    return (conversations, outbox);
                }
            }
        })
    };
    let a = sweep(Store::postgres(PgStore::connect(&url, 2).await.unwrap()));
    let b = sweep(Store::postgres(PgStore::connect(&url, 2).await.unwrap()));
    let ((ca, oa), (cb, ob)) = (a.await.unwrap(), b.await.unwrap());
    println!(
        "replica a erased {} conversations and forgot {} items, replica b {} and {}",
        ca.len(),
        oa.len(),
        cb.len(),
        ob.len()
    );
    for (what, a, b) in [("conversation", ca, cb), ("outbox item", oa, ob)] {
        let mut all: Vec<String> = a.into_iter().chain(b).collect();
        let total = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), total, "an {what} was taken twice");
        assert_eq!(total, 90, "{what}s");
    }
    let left: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM conversations) + (SELECT count(*) FROM outbox)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}
