//! Offline forms outside a conversation, the rows of a mailed transcript and agents'
//! "Accept chats" toggles on both stores (#17): the same calls through `store::Store`, once
//! on SQLite and once on a real PostgreSQL, give the same answers and leave the same rows.
//! What SQLite answers is also checked against what the inputs say, so that two stores
//! agreeing on nothing cannot pass.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::postgres::Postgres;
use jiff::Timestamp;

use livechat::config::Bundle;
use livechat::config::schema::WebhookKind;
use livechat::engine::notify::{self, Submission};
use livechat::mail::Outbound;
use livechat::mail::outbox::{Doorbell, Item};
use livechat::mail::templates::Templates;
use livechat::store::forms::Submitted;
use livechat::store::postgres::effects::Effect;
use livechat::store::postgres::log::{LogWriter, NewEvent, Transition};
use livechat::store::postgres::{PgError, PgStore};
use livechat::store::{self, Store, StoreError};

fn example_bundle() -> Arc<Bundle> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bots");
    let unset = |_: &str| None;
    Arc::new(livechat::config::load_dir(&dir, &unset).unwrap().unwrap())
}

fn outbound() -> Outbound {
    Outbound {
        templates: Templates::new(None),
        public_url: "https://help.example".into(),
        doorbell: Doorbell::default(),
    }
}

fn time(minute: u32) -> Timestamp {
    format!("2026-12-03T09:{minute:02}:00Z").parse().unwrap()
}

/// A time as the store writes it (`engine::persist::stamp`: microseconds).
fn stamp(t: Timestamp) -> String {
    format!("{t:.6}")
}

/// The SQLite store of `dir` as the server opens it, and a PostgreSQL database `name` of
/// `cluster`.
async fn both(cluster: &Postgres, dir: &std::path::Path, name: &str) -> (Store, Store) {
    let lite = Store::open_sqlite(dir).unwrap();
    let url = cluster.database(name);
    let pg = Store::postgres(PgStore::connect(&url, 4).await.unwrap());
    (lite, pg)
}

/// Runs `sql` (no parameters, no answer) on either store.
async fn execute(store: &Store, sql: &str) {
    match store {
        Store::Sqlite(db) => {
            let sql = sql.to_string();
            db.write(move |c| c.execute_batch(&sql)).await.unwrap();
        }
        Store::Postgres(pg) => {
            let client = pg.pool().get().await.unwrap();
            client.batch_execute(sql).await.unwrap();
        }
    }
}

/// The answer of `sql` on either store, each row's columns as text (`NULL` for none).
async fn rows(store: &Store, sql: &str) -> Vec<Vec<String>> {
    match store {
        Store::Sqlite(db) => {
            let sql = sql.to_string();
            db.read(move |c| {
                let mut stmt = c.prepare(&sql)?;
                let width = stmt.column_count();
                let found = stmt
                    .query_map([], |r| {
                        (0..width)
                            .map(|i| {
                                Ok(match r.get_ref(i)? {
                                    rusqlite::types::ValueRef::Null => "NULL".to_string(),
                                    rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                                    rusqlite::types::ValueRef::Text(t) => {
                                        String::from_utf8_lossy(t).into_owned()
                                    }
                                    other => format!("{other:?}"),
                                })
                            })
                            .collect::<rusqlite::Result<Vec<String>>>()
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok::<_, rusqlite::Error>(found)
            })
            .await
            .unwrap()
        }
        Store::Postgres(pg) => {
            let client = pg.pool().get().await.unwrap();
            // Every column read as text, as SQLite's are above.
            let wrapped = format!("SELECT to_jsonb(q)::text FROM ({sql}) q");
            let names: Vec<String> = client
                .prepare(sql)
                .await
                .unwrap()
                .columns()
                .iter()
                .map(|c| c.name().to_string())
                .collect();
            client
                .query(&wrapped, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    let row: serde_json::Value = serde_json::from_str(r.get(0)).unwrap();
                    names
                        .iter()
                        .map(|n| match &row[n] {
                            serde_json::Value::Null => "NULL".to_string(),
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Bool(b) => i64::from(*b).to_string(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .collect()
        }
    }
}

/// An offline form as a sender fills it in: bot, form, values, page, address, and the
/// Live Chat actions whose webhooks hear of it.
struct Sent {
    bot: &'static str,
    form: &'static str,
    values: &'static [(&'static str, &'static str)],
    page_url: Option<&'static str>,
    ip: Option<&'static str>,
    notify: &'static [&'static str],
}

const SENT: [Sent; 3] = [
    Sent {
        bot: "afterhours",
        form: "night",
        values: &[
            ("email", "nina@customer.example"),
            ("message", "The checkout page shows a blank screen"),
        ],
        page_url: Some("https://shop.example/checkout"),
        ip: Some("203.0.113.7"),
        notify: &["slack-oncall", "ticketing"],
    },
    Sent {
        bot: "sales",
        form: "callback",
        values: &[
            ("name", "Omar Ortiz"),
            ("email", "omar@corp.example"),
            ("phone", "+1 555 0100"),
        ],
        page_url: None,
        ip: None,
        notify: &[],
    },
    Sent {
        bot: "afterhours",
        form: "night",
        values: &[
            ("email", "pia@customer.example"),
            ("message", "Zwei Pakete, beide beschädigt <b>"),
        ],
        page_url: Some("https://shop.example/de/"),
        ip: Some("2001:db8::1"),
        notify: &["ticketing"],
    },
];

/// What the engine queues for `sent` at `now`: the team's mail as `notify::form_items`
/// composes it, and a webhook call for each action in `notify` (the example bots' webhook
/// URLs come from the environment, unset here, so those calls are made by hand).
fn items_of(
    bundle: &Bundle,
    sent: &Sent,
    values: &BTreeMap<String, String>,
    now: Timestamp,
) -> Vec<Item> {
    let bot = &bundle.bots[sent.bot];
    let mut items = notify::form_items(
        &outbound(),
        &Submission {
            bot_id: sent.bot,
            bot,
            form_id: sent.form,
            form: &bot.offline_form[sent.form],
            values,
            vars: &BTreeMap::new(),
            conversation_id: None,
            page_url: sent.page_url,
            language: "en",
            notify: Vec::new(),
        },
        now,
    )
    .unwrap();
    items.extend(sent.notify.iter().map(|webhook| Item::Webhook {
        bot: sent.bot.into(),
        webhook: webhook.to_string(),
        webhook_kind: WebhookKind::Generic,
        event: "offline_form.submitted".into(),
        body: serde_json::json!({ "form": sent.form, "fields": values }).to_string(),
    }));
    items
}

/// Sends [`SENT`] through `store`, then a form whose mail the database refuses; answers the
/// ids it gave and the database's words of the refusal.
async fn send_forms(store: &Store, bundle: &Bundle) -> (Vec<String>, String) {
    let doorbell = Doorbell::default();
    let mut ids = Vec::new();
    for (i, sent) in SENT.iter().enumerate() {
        let values: BTreeMap<String, String> = sent
            .values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let now = time(i as u32);
        let items = items_of(bundle, sent, &values, now);
        let submitted = Submitted {
            bot: sent.bot,
            form: sent.form,
            values: &values,
            page_url: sent.page_url,
            ip: sent.ip,
        };
        ids.push(
            store
                .write_submission(&submitted, &items, now, &doorbell)
                .await
                .unwrap(),
        );
    }
    // A form whose mail the database refuses (a check on the outbox, added here) is not
    // stored either: the form and its items are one write, and its row is written before
    // its items, so the refusal comes after it.
    match store {
        Store::Sqlite(_) => {
            execute(
                store,
                "CREATE TRIGGER refuse_mail BEFORE INSERT ON outbox
                 WHEN new.payload LIKE '%refuse this mail%'
                 BEGIN SELECT RAISE(ABORT, 'mail refused'); END;",
            )
            .await
        }
        Store::Postgres(_) => {
            execute(
                store,
                "ALTER TABLE outbox ADD CONSTRAINT refuse_mail
                 CHECK (payload NOT LIKE '%refuse this mail%')",
            )
            .await
        }
    }
    let values: BTreeMap<String, String> = [
        ("email", "quinn@customer.example"),
        ("message", "please refuse this mail"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let now = time(10);
    let items = items_of(bundle, &SENT[0], &values, now);
    assert_eq!(items.len(), 3, "a mail and two webhook calls: {items:#?}");
    let refused = store
        .write_submission(
            &Submitted {
                bot: "afterhours",
                form: "night",
                values: &values,
                page_url: None,
                ip: Some("198.51.100.9"),
            },
            &items,
            now,
            &doorbell,
        )
        .await
        .unwrap_err();
    let words = match &refused {
        StoreError::Postgres(PgError::Db(e)) => e.as_db_error().map(|db| db.message().to_string()),
        _ => None,
    };
    (ids, words.unwrap_or_else(|| refused.to_string()))
}

const FORMS: &str = "SELECT id, bot, form, conversation_id, visitor_id, fields, page_url, ip,
                            created_at
                     FROM form_submissions ORDER BY created_at";

/// Sorted by the caller: the two databases' collations may order payloads differently.
const OUTBOX: &str = "SELECT kind, payload, status, attempts FROM outbox";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_forms_store_the_same_rows_and_outbox_items_on_both_stores() {
    let bundle = example_bundle();
    let cluster = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (lite, pg) = both(&cluster, dir.path(), "forms").await;

    let (lite_ids, lite_refused) = send_forms(&lite, &bundle).await;
    let (pg_ids, pg_refused) = send_forms(&pg, &bundle).await;
    assert!(lite_refused.contains("mail refused"), "{lite_refused}");
    assert!(
        pg_refused.contains("violates check constraint \"refuse_mail\""),
        "{pg_refused}"
    );

    // The forms: each under the id its write answered, without a conversation or a
    // visitor, the values as JSON; nothing of the refused one.
    let (lite_forms, pg_forms) = (rows(&lite, FORMS).await, rows(&pg, FORMS).await);
    for (forms, ids) in [(&lite_forms, &lite_ids), (&pg_forms, &pg_ids)] {
        let stored: Vec<&String> = forms.iter().map(|f| &f[0]).collect();
        assert_eq!(stored, ids.iter().collect::<Vec<_>>());
        assert!(ids.iter().all(|id| id.starts_with("f_")), "{ids:?}");
    }
    let without_ids = |forms: &[Vec<String>]| -> Vec<Vec<String>> {
        forms.iter().map(|f| f[1..].to_vec()).collect()
    };
    assert_eq!(
        without_ids(&lite_forms),
        [
            [
                "afterhours",
                "night",
                "NULL",
                "NULL",
                r#"{"email":"nina@customer.example","message":"The checkout page shows a blank screen"}"#,
                "https://shop.example/checkout",
                "203.0.113.7",
                &stamp(time(0)),
            ],
            [
                "sales",
                "callback",
                "NULL",
                "NULL",
                r#"{"email":"omar@corp.example","name":"Omar Ortiz","phone":"+1 555 0100"}"#,
                "NULL",
                "NULL",
                &stamp(time(1)),
            ],
            [
                "afterhours",
                "night",
                "NULL",
                "NULL",
                r#"{"email":"pia@customer.example","message":"Zwei Pakete, beide beschädigt <b>"}"#,
                "https://shop.example/de/",
                "2001:db8::1",
                &stamp(time(2)),
            ],
        ]
    );
    assert_eq!(without_ids(&pg_forms), without_ids(&lite_forms));

    // The outbox: the same items, pending and never tried; nothing of the refused form.
    let sorted = |mut items: Vec<Vec<String>>| {
        items.sort();
        items
    };
    let lite_out = sorted(rows(&lite, OUTBOX).await);
    let pg_out = sorted(rows(&pg, OUTBOX).await);
    let kinds: Vec<&str> = lite_out.iter().map(|i| i[0].as_str()).collect();
    assert_eq!(
        kinds,
        ["mail", "mail", "mail", "webhook", "webhook", "webhook"]
    );
    assert!(lite_out.iter().all(|i| i[2] == "pending" && i[3] == "0"));
    let mails: Vec<serde_json::Value> = lite_out[..3]
        .iter()
        .map(|i| serde_json::from_str(&i[1]).unwrap())
        .collect();
    let to: Vec<&str> = mails.iter().map(|m| m["to"][0].as_str().unwrap()).collect();
    assert!(to.contains(&"oncall@example.com"), "{to:?}");
    assert!(
        mails.iter().any(|m| m["reply_to"] == "omar@corp.example"
            && m["text"].as_str().unwrap().contains("Omar Ortiz")),
        "{mails:#?}"
    );
    assert!(
        !lite_out.iter().any(|i| i[1].contains("quinn@")),
        "{lite_out:#?}"
    );
    assert_eq!(pg_out, lite_out);
}

/// Two conversations' events, the same on either store: (conversation, type, visible to
/// the visitor, data, its message's files by attachment id).
fn conversation_events() -> Vec<(&'static str, &'static str, bool, String, Vec<&'static str>)> {
    let message = |id: &str, author: &str, agent: Option<&str>, text: &str| {
        let mut data = serde_json::json!({ "author": author, "message_id": id, "text": text });
        if let Some(agent) = agent {
            data["agent"] = agent.into();
        }
        data.to_string()
    };
    let ana = Some("ana@acme.example");
    vec![
        ("c1", "conversation.started", true, "{}".into(), vec![]),
        (
            "c1",
            "message.created",
            true,
            message("m1", "visitor", None, "my parcel is late"),
            vec![],
        ),
        (
            "c1",
            "message.created",
            true,
            message("m2", "bot", None, "Let me find someone"),
            vec![],
        ),
        (
            "c2",
            "message.created",
            true,
            message("m3", "visitor", None, "another chat"),
            vec![],
        ),
        (
            "c1",
            "conversation.assigned",
            true,
            r#"{"agent":"ana@acme.example"}"#.into(),
            vec![],
        ),
        (
            "c1",
            "message.created",
            true,
            message("m4", "agent", ana, "Hi, I am Ana"),
            vec![],
        ),
        (
            "c1",
            "note.created",
            false,
            r#"{"agent":"ana@acme.example","message_id":"m5","name":"Ana","text":"refund it"}"#
                .into(),
            vec![],
        ),
        (
            "c1",
            "message.created",
            true,
            message("m6", "visitor", None, ""),
            vec!["a1", "a2"],
        ),
        (
            "c1",
            "message.created",
            true,
            message("m7", "agent", ana, "Your label"),
            vec!["a3"],
        ),
        (
            "c1",
            "message.created",
            true,
            message("m8", "system", None, "Ana left"),
            vec![],
        ),
    ]
}

/// The files, named so that their order by name is not their order in the message.
const FILES: &str = "INSERT INTO attachments (id, sha256, name, type, size, bot, created_ms) VALUES
    ('a1', 's1', 'photo-of-box.jpg', 'image/jpeg', 10, 'support', 1),
    ('a2', 's2', 'delivery-note.pdf', 'application/pdf', 20, 'support', 1),
    ('a3', 's3', 'return-label.pdf', 'application/pdf', 30, 'support', 1)";

/// Writes [`conversation_events`] and their files: on SQLite as the engine's writer job
/// does (the event, then `store::attachments::link`), on PostgreSQL through the log writer
/// with the files as the transition's effect.
async fn fill(store: &Store) {
    execute(store, FILES).await;
    let at = stamp(time(30));
    match store {
        Store::Sqlite(db) => {
            db.write(move |c| {
                for (conv, kind, visible, data, files) in conversation_events() {
                    c.execute(
                        "INSERT INTO events (conversation_id, bot, type, at, visitor_visible, data)
                         VALUES (?1, 'support', ?2, ?3, ?4, ?5)",
                        rusqlite::params![conv, kind, at, visible, data],
                    )?;
                    if !files.is_empty() {
                        let id: String = serde_json::from_str::<serde_json::Value>(&data).unwrap()
                            ["message_id"]
                            .as_str()
                            .unwrap()
                            .into();
                        let files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
                        store::attachments::link(c, &id, conv, &files, 2)?;
                    }
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        }
        Store::Postgres(pg) => {
            let log = LogWriter::start(pg, 1);
            for (conv, kind, visible, data, files) in conversation_events() {
                let mut effects = Vec::new();
                if !files.is_empty() {
                    let message: serde_json::Value = serde_json::from_str(&data).unwrap();
                    effects.push(Effect::Files {
                        message_id: message["message_id"].as_str().unwrap().into(),
                        conversation_id: conv.into(),
                        attachments: files.iter().map(|f| f.to_string()).collect(),
                        now_ms: 2,
                    });
                }
                let written = log
                    .write(Transition {
                        guard: None,
                        events: vec![NewEvent {
                            conversation_id: Some(conv.into()),
                            bot: Some("support".into()),
                            kind: kind.into(),
                            at: at.clone(),
                            visitor_visible: visible,
                            data,
                            client_id: None,
                        }],
                        outbox: Vec::new(),
                        effects,
                    })
                    .await
                    .unwrap();
                assert!(written.is_ok(), "{written:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcript_rows_answer_alike_on_both_stores() {
    let cluster = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (lite, pg) = both(&cluster, dir.path(), "transcripts").await;
    fill(&lite).await;
    fill(&pg).await;

    let at = stamp(time(30));
    let row = |kind: &str, author: Option<&str>, text: &str| {
        (
            kind.to_string(),
            author.map(str::to_string),
            text.to_string(),
            at.clone(),
        )
    };
    let ana = Some("ana@acme.example");
    let want = vec![
        row("visitor", None, "my parcel is late"),
        row("bot", None, "Let me find someone"),
        row("agent", ana, "Hi, I am Ana"),
        row(
            "visitor",
            None,
            "[Files: photo-of-box.jpg, delivery-note.pdf]",
        ),
        row("agent", ana, "Your label\n[Files: return-label.pdf]"),
        row("system", None, "Ana left"),
    ];
    let on_sqlite = lite.transcript_rows("c1").await.unwrap();
    assert_eq!(on_sqlite, want);
    assert_eq!(pg.transcript_rows("c1").await.unwrap(), on_sqlite);

    let other = vec![row("visitor", None, "another chat")];
    assert_eq!(lite.transcript_rows("c2").await.unwrap(), other);
    assert_eq!(pg.transcript_rows("c2").await.unwrap(), other);
    for store in [&lite, &pg] {
        assert_eq!(store.transcript_rows("nope").await.unwrap(), vec![]);
    }
}

/// Toggles as agents flip them (emails in any case), with a password set beforehand for
/// one of them; answers who accepts, the agents' rows and that password.
async fn toggle(store: &Store) -> (Vec<String>, Vec<Vec<String>>, Option<String>) {
    store
        .set_password("ana@acme.example", "$argon2id$v=19$stand-in", time(40))
        .await
        .unwrap();
    for (email, accepting, minute) in [
        ("Ana@Acme.example", true, 41),
        ("BO@acme.example", true, 42),
        ("bo@acme.example", false, 43),
        ("cy@acme.example", false, 44),
        ("dee@acme.example", true, 45),
        ("eve@acme.example", true, 46),
        ("DEE@ACME.EXAMPLE", true, 47),
    ] {
        store
            .set_accepting(email, accepting, time(minute))
            .await
            .unwrap();
    }
    let mut accepting = store.accepting_agents().await.unwrap();
    accepting.sort();
    let agents = rows(
        store,
        "SELECT email, accepting, updated_at FROM agents ORDER BY email",
    )
    .await;
    let password = store.password_hash("ana@acme.example").await.unwrap();
    (accepting, agents, password)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_chats_toggles_answer_alike_on_both_stores() {
    let cluster = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (lite, pg) = both(&cluster, dir.path(), "toggles").await;
    // On PostgreSQL an agent may have a row already, without a password or a toggle: the
    // one `max_chats` locks while counting their chats.
    execute(
        &pg,
        "INSERT INTO agents (email) VALUES ('eve@acme.example')",
    )
    .await;
    for store in [&lite, &pg] {
        assert_eq!(
            store.accepting_agents().await.unwrap(),
            Vec::<String>::new()
        );
    }

    let on_sqlite = toggle(&lite).await;
    let at = |minute| time(minute).to_string();
    assert_eq!(
        on_sqlite.0,
        ["ana@acme.example", "dee@acme.example", "eve@acme.example"]
    );
    assert_eq!(
        on_sqlite.1,
        [
            ["ana@acme.example".to_string(), "1".into(), at(41)],
            ["bo@acme.example".into(), "0".into(), at(43)],
            ["cy@acme.example".into(), "0".into(), at(44)],
            ["dee@acme.example".into(), "1".into(), at(47)],
            ["eve@acme.example".into(), "1".into(), at(46)],
        ]
    );
    assert_eq!(on_sqlite.2.as_deref(), Some("$argon2id$v=19$stand-in"));
    assert_eq!(toggle(&pg).await, on_sqlite);
}
