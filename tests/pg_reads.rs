//! The console's read models on both stores (#17): the conversation list (each filter and
//! the search), a conversation's details, its transcript, the conversations export,
//! `/metrics`' conversations by status and the engine's lookups (a conversation's state,
//! a visitor's token and latest conversation, a message by its client id, the visitor's
//! last lines) are read from a SQLite store and from a real PostgreSQL holding the same
//! rows, and must answer alike. The SQLite answers are also checked against what the rows say, so that
//! two stores agreeing on nothing cannot pass.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::postgres::Postgres;
use jiff::Timestamp;
use serde_json::Value;

use livechat::chat::conversation::{Conversation, Rating, Status, Visitor};
use livechat::config::Bundle;
use livechat::config::contacts::ContactField;
use livechat::engine::queries::{self, ListFilter};
use livechat::store::postgres::PgStore;
use livechat::store::postgres::log::{LogWriter, NewEvent};
use livechat::store::reader::Readers;
use livechat::store::writer::Writer;
use livechat::store::{self, Store};

const ANA: &str = "ana@acme.example";
const BO: &str = "bo@acme.example";

fn example_bundle() -> Arc<Bundle> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bots");
    let unset = |_: &str| None;
    Arc::new(livechat::config::load_dir(&dir, &unset).unwrap().unwrap())
}

fn time(minute: u32) -> Timestamp {
    format!("2026-12-02T17:{minute:02}:00Z").parse().unwrap()
}

/// A time as the store writes it (`engine::persist::stamp`: microseconds).
fn stamp_of(t: Timestamp) -> String {
    format!("{t:.6}")
}

fn stamp(minute: u32) -> String {
    stamp_of(time(minute))
}

/// A visitor's row: id, stored name, stored email.
const VISITORS: [(&str, Option<&str>, Option<&str>); 3] = [
    ("v1", Some("Vera"), Some("vera@example.com")),
    ("v2", None, None),
    ("v3", Some("Otto"), None),
];

/// A conversation's row and state.
struct Conv {
    state: Conversation,
    created: String,
    updated: String,
}

/// Six conversations of two bots and three visitors, in the order they are written.
fn conversations(bundle: &Bundle) -> Vec<Conv> {
    let start = |id: &str, bot: &str, visitor: &str, minute: u32| {
        let t = Conversation::start(
            id,
            bot,
            visitor,
            Visitor::default(),
            &bundle.bots[bot],
            time(minute),
        );
        t.conversation
    };
    // Waiting since 17:02, with a name the conversation itself was given.
    let mut c1 = start("c1", "support", "v1", 1);
    c1.status = Status::New;
    c1.requested_at = Some(time(2));
    c1.name = Some("Vera K.".into());
    // Ana talks with the visitor of sales.
    let mut c2 = start("c2", "sales", "v2", 3);
    c2.status = Status::Chatting;
    c2.assignee = Some(ANA.into());
    c2.requested_at = Some(time(4));
    c2.assigned_at = Some(time(5));
    // Bo resolved v1's earlier question, rated bad with a comment.
    let mut c3 = start("c3", "support", "v1", 0);
    c3.status = Status::Resolved;
    c3.assignee = Some(BO.into());
    c3.resolved_at = Some(time(9));
    c3.resolve_note = Some("refund sent".into());
    c3.rating = Some(Rating::Bad);
    c3.rating_comment = Some("slow, =bad".into());
    // Waiting since 17:07: newer than c1, so listed before it.
    let mut c4 = start("c4", "support", "v3", 6);
    c4.status = Status::New;
    c4.requested_at = Some(time(7));
    // Still with the bot.
    let c5 = start("c5", "sales", "v2", 8);
    // Waiting, with no request time: last of the waiting ones.
    let mut c6 = start("c6", "support", "v3", 10);
    c6.status = Status::New;
    vec![
        Conv {
            state: c1,
            created: stamp(1),
            updated: stamp(12),
        },
        Conv {
            state: c2,
            created: stamp(3),
            updated: stamp(14),
        },
        Conv {
            state: c3,
            created: stamp(0),
            updated: stamp(10),
        },
        Conv {
            state: c4,
            created: stamp(6),
            updated: stamp(11),
        },
        Conv {
            state: c5,
            created: stamp(8),
            updated: stamp(13),
        },
        Conv {
            state: c6,
            created: stamp(10),
            updated: stamp(15),
        },
    ]
}

/// An event: conversation, type, visible to the visitor, data.
type Ev = (&'static str, &'static str, bool, String);

fn message(id: &str, author: &str, agent: Option<&str>, text: &str) -> String {
    serde_json::json!({ "message_id": id, "author": author, "agent": agent, "text": text })
        .to_string()
}

/// Messages, notes, files and calls; seq 1 upwards in this order on both stores.
fn events() -> Vec<Ev> {
    vec![
        (
            "c3",
            "message.created",
            true,
            message("m1", "visitor", None, "I want a refund"),
        ),
        (
            "c3",
            "message.created",
            true,
            message("m2", "agent", Some(BO), "Refund policy: 14 days"),
        ),
        (
            "c3",
            "note.created",
            false,
            message("n1", "note", Some(BO), "checked the invoice"),
        ),
        (
            "c1",
            "message.created",
            true,
            message("m3", "visitor", None, "Hello, anyone there?"),
        ),
        (
            "c1",
            "message.created",
            true,
            message("m4", "visitor", None, "My order is late"),
        ),
        (
            "c2",
            "message.created",
            true,
            message("m5", "visitor", None, "Pricing for teams?"),
        ),
        (
            "c2",
            "message.created",
            true,
            message("m6", "agent", Some(ANA), "Here is our price list; see file"),
        ),
        ("c2", "video.started", true, "{}".into()),
        (
            "c2",
            "video.ended",
            true,
            r#"{"reason":"hangup","duration_secs":95}"#.into(),
        ),
        ("c2", "video.started", true, "{}".into()),
        (
            "c2",
            "video.ended",
            true,
            r#"{"reason":"hangup","duration_secs":30}"#.into(),
        ),
        (
            "c2",
            "message.created",
            true,
            message("m7", "visitor", None, "Thanks!"),
        ),
        (
            "c4",
            "message.created",
            true,
            message("m8", "visitor", None, "=SUM(1) invoice \"quote\""),
        ),
        (
            "c4",
            "note.created",
            false,
            message("n2", "note", Some(ANA), "VIP customer"),
        ),
    ]
}

/// The id a client gave its message, and that message's seq (m7, in c2).
const CLIENT_ID: (&str, i64) = ("k-7", 12);

/// Files: (id, name, conversation, message, position).
const FILES: [(&str, &str, &str, &str, i64); 3] = [
    ("f1", "prices.pdf", "c2", "m6", 0),
    ("f2", "terms, 2026.pdf", "c2", "m6", 1),
    ("f3", "receipt.png", "c3", "m1", 0),
];

/// Form submissions: (id, bot, form, conversation, visitor, fields, minute).
const FORMS: [(&str, &str, &str, &str, &str, &str, u32); 2] = [
    (
        "s1",
        "sales",
        "quote",
        "c2",
        "v2",
        r#"{"company":"Acme","seats":"12"}"#,
        4,
    ),
    (
        "s2",
        "sales",
        "callback",
        "c2",
        "v2",
        r#"{"phone":"+49 30 1234"}"#,
        6,
    ),
];

/// Contact values: (visitor, field, value).
const CONTACTS: [(&str, &str, &str); 3] = [
    ("v2", "company", "Acme"),
    ("v2", "plan", "Team"),
    ("v1", "company", "Vera's shop"),
];

/// Read marks: (agent, conversation, seq).
const READS: [(&str, &str, i64); 2] = [(ANA, "c1", 4), (BO, "c2", 12)];

fn sqlite(dir: &std::path::Path) -> Store {
    let conn = store::open(dir).unwrap();
    Store::sqlite(Writer::start(conn), Readers::new(dir))
}

async fn fill(store: &Store, log: Option<&LogWriter>, convs: Vec<Conv>) {
    match store {
        Store::Sqlite(db) => {
            db.write(move |c| {
                for (id, name, email) in VISITORS {
                    c.execute(
                        "INSERT INTO visitors (id, token_hash, bot, name, email, created_at, last_seen_at)
                         VALUES (?1, ?1, 'support', ?2, ?3, ?4, ?4)",
                        rusqlite::params![id, name, email, stamp(0)],
                    )?;
                }
                for conv in &convs {
                    let s = &conv.state;
                    c.execute(
                        "INSERT INTO conversations (id, visitor_id, bot, status, assignee,
                           created_at, updated_at, requested_at, state)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        rusqlite::params![
                            s.id,
                            s.visitor_id,
                            s.bot,
                            s.status.as_str(),
                            s.assignee,
                            conv.created,
                            conv.updated,
                            s.requested_at.map(stamp_of),
                            serde_json::to_string(s).unwrap(),
                        ],
                    )?;
                }
                for (conv, kind, visible, data) in events() {
                    let bot = convs.iter().find(|c| c.state.id == conv).unwrap().state.bot.clone();
                    c.execute(
                        "INSERT INTO events (conversation_id, bot, type, at, visitor_visible, data)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        rusqlite::params![conv, bot, kind, stamp(20), visible, data],
                    )?;
                }
                c.execute(
                    "UPDATE events SET client_id = ?1 WHERE seq = ?2",
                    rusqlite::params![CLIENT_ID.0, CLIENT_ID.1],
                )?;
                for (id, name, conv, message, position) in FILES {
                    c.execute(
                        "INSERT INTO attachments (id, sha256, name, type, size, bot, conversation_id,
                           created_ms, used_ms)
                         VALUES (?1, ?1, ?2, 'application/pdf', 100, 'sales', ?3, 1, 2)",
                        rusqlite::params![id, name, conv],
                    )?;
                    c.execute(
                        "INSERT INTO message_attachments (message_id, position, attachment_id)
                         VALUES (?1, ?2, ?3)",
                        rusqlite::params![message, position, id],
                    )?;
                }
                for (id, bot, form, conv, visitor, fields, minute) in FORMS {
                    c.execute(
                        "INSERT INTO form_submissions (id, bot, form, conversation_id, visitor_id,
                           fields, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        rusqlite::params![id, bot, form, conv, visitor, fields, stamp(minute)],
                    )?;
                }
                for (visitor, field, value) in CONTACTS {
                    c.execute(
                        "INSERT INTO contact_values (visitor_id, field, value, updated_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        rusqlite::params![visitor, field, value, stamp(0)],
                    )?;
                }
                for (agent, conv, seq) in READS {
                    c.execute(
                        "INSERT INTO reads (agent_email, conversation_id, seq, at) VALUES (?1, ?2, ?3, ?4)",
                        rusqlite::params![agent, conv, seq, stamp(0)],
                    )?;
                }
                Ok::<_, rusqlite::Error>(())
            })
            .await
            .unwrap();
        }
        Store::Postgres(pg) => {
            let client = pg.pool().get().await.unwrap();
            for (id, name, email) in VISITORS {
                client
                    .execute(
                        "INSERT INTO visitors (id, token_hash, bot, name, email, created_at, last_seen_at)
                         VALUES ($1, $1, 'support', $2, $3, $4, $4)",
                        &[&id, &name, &email, &stamp(0)],
                    )
                    .await
                    .unwrap();
            }
            for conv in &convs {
                let s = &conv.state;
                client
                    .execute(
                        "INSERT INTO conversations (id, version, visitor_id, bot, status, assignee,
                           created_at, updated_at, requested_at, state)
                         VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        &[
                            &s.id,
                            &s.visitor_id,
                            &s.bot,
                            &s.status.as_str(),
                            &s.assignee,
                            &conv.created,
                            &conv.updated,
                            &s.requested_at.map(stamp_of),
                            &serde_json::to_string(s).unwrap(),
                        ],
                    )
                    .await
                    .unwrap();
            }
            let log = log.unwrap();
            for (conv, kind, visible, data) in events() {
                let bot = convs
                    .iter()
                    .find(|c| c.state.id == conv)
                    .unwrap()
                    .state
                    .bot
                    .clone();
                log.append(vec![NewEvent {
                    conversation_id: Some(conv.into()),
                    bot: Some(bot),
                    kind: kind.into(),
                    at: stamp(20),
                    visitor_visible: visible,
                    data,
                    client_id: None,
                }])
                .await
                .unwrap();
            }
            client
                .execute(
                    "UPDATE events SET client_id = $1 WHERE seq = $2",
                    &[&CLIENT_ID.0, &CLIENT_ID.1],
                )
                .await
                .unwrap();
            for (id, name, conv, message, position) in FILES {
                client
                    .execute(
                        "INSERT INTO attachments (id, sha256, name, type, size, bot, conversation_id,
                           created_ms, used_ms)
                         VALUES ($1, $1, $2, 'application/pdf', 100, 'sales', $3, 1, 2)",
                        &[&id, &name, &conv],
                    )
                    .await
                    .unwrap();
                client
                    .execute(
                        "INSERT INTO message_attachments (message_id, position, attachment_id)
                         VALUES ($1, $2, $3)",
                        &[&message, &position, &id],
                    )
                    .await
                    .unwrap();
            }
            for (id, bot, form, conv, visitor, fields, minute) in FORMS {
                client
                    .execute(
                        "INSERT INTO form_submissions (id, bot, form, conversation_id, visitor_id,
                           fields, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        &[&id, &bot, &form, &conv, &visitor, &fields, &stamp(minute)],
                    )
                    .await
                    .unwrap();
            }
            for (visitor, field, value) in CONTACTS {
                client
                    .execute(
                        "INSERT INTO contact_values (visitor_id, field, value, updated_at)
                         VALUES ($1, $2, $3, $4)",
                        &[&visitor, &field, &value, &stamp(0)],
                    )
                    .await
                    .unwrap();
            }
            for (agent, conv, seq) in READS {
                client
                    .execute(
                        "INSERT INTO reads (agent_email, conversation_id, seq, at) VALUES ($1, $2, $3, $4)",
                        &[&agent, &conv, &seq, &stamp(0)],
                    )
                    .await
                    .unwrap();
            }
        }
    }
}

/// The lists asked for, by name.
fn filters() -> Vec<(&'static str, Option<BTreeSet<String>>, ListFilter)> {
    let f = |reader: &str| ListFilter {
        limit: 100,
        reader: reader.into(),
        ..ListFilter::default()
    };
    let bots = |names: &[&str]| Some(names.iter().map(|b| b.to_string()).collect());
    let search = |q: &str| ListFilter {
        q: Some(q.into()),
        ..f(ANA)
    };
    vec![
        ("all", None, f(ANA)),
        ("all for bo", None, f(BO)),
        (
            "new",
            None,
            ListFilter {
                status: Some("new".into()),
                ..f(ANA)
            },
        ),
        (
            "new or resolved",
            None,
            ListFilter {
                status: Some("new, resolved".into()),
                ..f(ANA)
            },
        ),
        (
            "ana's",
            None,
            ListFilter {
                assignee: Some("ANA@acme.example".into()),
                ..f(ANA)
            },
        ),
        (
            "sales",
            None,
            ListFilter {
                bot: Some("sales".into()),
                ..f(ANA)
            },
        ),
        ("support only", bots(&["support"]), f(ANA)),
        ("no bots", bots(&[]), f(ANA)),
        (
            "unread by ana",
            None,
            ListFilter {
                unread: true,
                ..f(ANA)
            },
        ),
        (
            "unread by bo",
            None,
            ListFilter {
                unread: true,
                ..f(BO)
            },
        ),
        ("two", None, ListFilter { limit: 2, ..f(ANA) }),
        ("search refund", None, search("refund")),
        ("search two words", None, search("REFUND   policy")),
        ("search a note", None, search("invoice")),
        ("search a quote", None, search("\"quote\"")),
        ("search nothing", None, search("nowhere")),
        ("search blank", None, search("  \0 ")),
        ("search in sales", bots(&["sales"]), search("price")),
    ]
}

/// An export asked for: name, from and to (minutes after 17:00), bot, visible bots.
type ExportScope = (
    &'static str,
    u32,
    u32,
    Option<&'static str>,
    Option<&'static [&'static str]>,
);

/// Every answer of the read models, by name.
async fn answers(store: &Store, bundle: &Bundle, convs: &[Conv]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, bots, filter) in filters() {
        let list = queries::list(store, bots, filter).await.unwrap();
        out.push((format!("list {name}"), Value::from(list)));
    }
    for conv in convs {
        let fields = bundle.bots[&conv.state.bot].header.contact_fields.clone();
        let details = queries::details(store, conv.state.clone(), fields)
            .await
            .unwrap();
        out.push((format!("details {}", conv.state.id), details));
        let csv = queries::transcript_csv(store, conv.state.id.clone())
            .await
            .unwrap();
        out.push((format!("transcript {}", conv.state.id), csv.into()));
    }
    let fields_of: BTreeMap<String, Vec<ContactField>> = bundle
        .bots
        .iter()
        .map(|(id, bot)| (id.clone(), bot.header.contact_fields.clone()))
        .collect();
    let scopes: [ExportScope; 5] = [
        ("all", 0, 59, None, None),
        ("from 17:01 to 17:08", 1, 8, None, None),
        ("sales", 0, 59, Some("sales"), None),
        ("visible support", 0, 59, None, Some(&["support"])),
        ("visible none", 0, 59, None, Some(&[])),
    ];
    for (name, from, to, bot, visible) in scopes {
        let visible = visible.map(|v| v.iter().map(|b| b.to_string()).collect());
        let csv = queries::conversations_csv(
            store,
            time(from),
            time(to),
            bot.map(str::to_string),
            visible,
            fields_of.clone(),
        )
        .await
        .unwrap();
        out.push((format!("export {name}"), csv.into()));
    }
    for conv in convs {
        let id = &conv.state.id;
        let state = store.load_conversation(id).await.unwrap();
        out.push((format!("load {id}"), serde_json::json!(state)));
        let lines = store.last_visitor_lines(id, 5).await.unwrap();
        out.push((format!("lines {id}"), serde_json::json!(lines)));
    }
    let lines = store.last_visitor_lines("c1", 1).await.unwrap();
    out.push(("lines c1 1".into(), serde_json::json!(lines)));
    let lines = store.last_visitor_lines("c2", 0).await.unwrap();
    out.push(("lines c2 0".into(), serde_json::json!(lines)));
    let missing = store.load_conversation("c9").await.unwrap();
    out.push(("load c9".into(), serde_json::json!(missing)));
    for visitor in ["v1", "v2", "v3", "v9"] {
        let latest = store.latest_conversation_of(visitor).await.unwrap();
        out.push((format!("latest of {visitor}"), serde_json::json!(latest)));
        let found = store.visitor_by_token(visitor).await.unwrap();
        out.push((format!("token {visitor}"), serde_json::json!(found)));
    }
    for (conv, client_id) in [("c2", CLIENT_ID.0), ("c1", CLIENT_ID.0), ("c2", "k-other")] {
        let found = store.message_by_client_id(conv, client_id).await.unwrap();
        out.push((
            format!("client id {conv} {client_id}"),
            serde_json::json!(found),
        ));
    }
    let statuses = store.conversations_by_status().await.unwrap();
    out.push(("by status".into(), serde_json::json!(statuses)));
    out
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_reads_answer_alike_on_both_stores() {
    let bundle = example_bundle();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite(dir.path());
    fill(&sqlite, None, conversations(&bundle)).await;
    let on_sqlite = answers(&sqlite, &bundle, &conversations(&bundle)).await;

    let pg = Postgres::start();
    let pg_store = PgStore::connect(&pg.database("reads"), 4).await.unwrap();
    let log = LogWriter::start(&pg_store, 1);
    let postgres = Store::postgres(pg_store);
    fill(&postgres, Some(&log), conversations(&bundle)).await;
    let on_postgres = answers(&postgres, &bundle, &conversations(&bundle)).await;

    let sqlite_answer =
        |name: &str| -> &Value { &on_sqlite.iter().find(|(n, _)| n == name).unwrap().1 };
    // What the rows say, on SQLite: waiting requests first (newest request first), then
    // by the last change.
    let all = sqlite_answer("list all");
    assert_eq!(ids(all), ["c4", "c1", "c6", "c2", "c5", "c3"]);
    assert_eq!(all[1]["visitor"]["name"], "Vera K.");
    assert_eq!(all[1]["visitor"]["email"], "vera@example.com");
    assert_eq!(all[1]["last_message"], "My order is late");
    assert_eq!(all[1]["unread"], 1);
    assert_eq!(all[3]["unread"], 2);
    assert_eq!(all[4]["last_message"], Value::Null);
    assert_eq!(
        ids(sqlite_answer("list new or resolved")),
        ["c4", "c1", "c6", "c3"]
    );
    assert_eq!(ids(sqlite_answer("list ana's")), ["c2"]);
    assert_eq!(
        ids(sqlite_answer("list unread by ana")),
        ["c4", "c1", "c2", "c3"]
    );
    assert_eq!(ids(sqlite_answer("list unread by bo")), ["c4", "c1", "c3"]);
    assert_eq!(ids(sqlite_answer("list two")), ["c4", "c1"]);
    assert_eq!(ids(sqlite_answer("list search refund")), ["c3"]);
    assert_eq!(ids(sqlite_answer("list search two words")), ["c3"]);
    assert_eq!(ids(sqlite_answer("list search a note")), ["c4", "c3"]);
    assert_eq!(ids(sqlite_answer("list search a quote")), ["c4"]);
    assert_eq!(
        ids(sqlite_answer("list search nothing")),
        Vec::<&str>::new()
    );
    assert_eq!(ids(sqlite_answer("list search blank")).len(), 6);
    assert_eq!(ids(sqlite_answer("list search in sales")), ["c2"]);
    assert_eq!(ids(sqlite_answer("list no bots")), Vec::<&str>::new());
    let c2 = sqlite_answer("details c2");
    assert_eq!(c2["messages"].as_array().unwrap().len(), 3);
    assert_eq!(
        c2["messages"][1]["attachments"].as_array().unwrap().len(),
        2
    );
    assert_eq!(c2["forms"].as_array().unwrap().len(), 2);
    assert_eq!(c2["contact"][0]["value"], "Acme", "{c2:#}");
    assert_eq!(c2["contact"][1]["value"], "Team");
    assert_eq!(
        ids(&sqlite_answer("details c1")["earlier_conversations"]),
        ["c3"]
    );
    assert_eq!(
        sqlite_answer("details c4")["notes"][0]["text"],
        "VIP customer"
    );
    let transcript = sqlite_answer("transcript c2").as_str().unwrap();
    assert!(
        transcript.contains(",\"prices.pdf; terms, 2026.pdf\"\r\n"),
        "{transcript}"
    );
    assert!(
        !sqlite_answer("transcript c3")
            .as_str()
            .unwrap()
            .contains("invoice")
    );
    let export = sqlite_answer("export all").as_str().unwrap();
    println!("{export}");
    let lines: Vec<&str> = export.lines().collect();
    assert_eq!(lines.len(), 7);
    assert!(lines[1].starts_with("c3,"), "{export}");
    assert!(lines[3].contains(",2,1,2,,,,2,125,"), "{export}");
    assert_eq!(
        sqlite_answer("export from 17:01 to 17:08")
            .as_str()
            .unwrap()
            .lines()
            .count(),
        4
    );
    assert_eq!(
        sqlite_answer("export visible none")
            .as_str()
            .unwrap()
            .lines()
            .count(),
        1
    );

    assert_eq!(
        sqlite_answer("by status"),
        &serde_json::json!([["bot", 1], ["chatting", 1], ["new", 3], ["resolved", 1]])
    );

    // The engine's lookups.
    assert_eq!(sqlite_answer("load c2")["assignee"], ANA);
    assert_eq!(sqlite_answer("load c9"), &Value::Null);
    assert_eq!(
        sqlite_answer("lines c2"),
        &serde_json::json!(["Pricing for teams?", "Thanks!"])
    );
    assert_eq!(
        sqlite_answer("lines c1 1"),
        &serde_json::json!(["My order is late"])
    );
    assert_eq!(sqlite_answer("lines c2 0"), &serde_json::json!([]));
    assert_eq!(sqlite_answer("lines c5"), &serde_json::json!([]));
    assert_eq!(sqlite_answer("latest of v1"), "c1");
    assert_eq!(sqlite_answer("latest of v2"), "c5");
    assert_eq!(sqlite_answer("latest of v9"), &Value::Null);
    assert_eq!(
        sqlite_answer("token v3"),
        &serde_json::json!(["v3", "support"])
    );
    assert_eq!(sqlite_answer("token v9"), &Value::Null);
    assert_eq!(
        sqlite_answer("client id c2 k-7"),
        &serde_json::json!(["m7", 12])
    );
    assert_eq!(sqlite_answer("client id c1 k-7"), &Value::Null);

    for ((name, a), (_, b)) in on_sqlite.iter().zip(&on_postgres) {
        assert_eq!(a, b, "{name} differs");
    }
    assert_eq!(on_sqlite.len(), on_postgres.len());
}
