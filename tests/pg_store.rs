//! The store interface (`store::Store`, #17) on both of its databases: each scenario runs
//! once on SQLite (the one writer and its readers, in a temporary data directory) and once
//! on a real PostgreSQL, through the same calls, and must see the same answers. Then what
//! only replicas do: two handles on one PostgreSQL database at once.

mod common;

use common::postgres::Postgres;
use jiff::Timestamp;
use std::sync::Arc;

use livechat::config::{Bundle, Roster};
use livechat::engine::queries;
use livechat::mail::Outbound;
use livechat::mail::invites::FirstRun;
use livechat::mail::outbox::Doorbell;
use livechat::mail::templates::Templates;
use livechat::store::postgres::PgStore;
use livechat::store::postgres::log::{LogWriter, NewEvent};
use livechat::store::reader::Readers;
use livechat::store::writer::Writer;
use livechat::store::{self, Store};

fn roster(agents: &[(&str, &str)]) -> Roster {
    let text: String = agents
        .iter()
        .map(|(email, role)| {
            format!(
                "[[agent]]\nname = \"{email}\"\nemail = \"{email}\"\nrole = \"{role}\"\nteams = []\n"
            )
        })
        .collect();
    toml::from_str(&text).unwrap()
}

fn outbound() -> Outbound {
    Outbound {
        templates: Templates::new(None),
        public_url: "http://chat.example".into(),
        doorbell: Doorbell::default(),
    }
}

/// A SQLite store in `dir`, as the engine opens it (less the indexes and the checkpointer,
/// which these areas do not touch).
fn sqlite(dir: &std::path::Path) -> Store {
    let conn = store::open(dir).unwrap();
    Store::sqlite(Writer::start(conn), Readers::new(dir))
}

async fn postgres(pg: &Postgres, name: &str) -> Store {
    let url = pg.database(name);
    Store::postgres(PgStore::connect(&url, 4).await.unwrap())
}

/// The token of a setup link (`…/set-password?token=T`).
fn token_of(first: &FirstRun) -> String {
    let FirstRun::SetupLink { link, .. } = first else {
        panic!("no setup link: {first:?}");
    };
    link.split_once("token=").unwrap().1.to_string()
}

/// Passwords, sessions and invitations, from a new database to a signed-in admin.
async fn sign_in_scenario(store: &Store) -> Vec<String> {
    let mut seen = Vec::new();
    let roster = roster(&[("ana@acme.example", "admin"), ("bo@acme.example", "agent")]);
    let now = Timestamp::now();
    assert!(store.with_password().await.unwrap().is_empty());
    assert_eq!(store.password_hash("ana@acme.example").await.unwrap(), None);
    // Both agents are mailed once, however often the roster is read.
    let queued = store.invite_new_agents(&roster, &outbound()).await.unwrap();
    let again = store.invite_new_agents(&roster, &outbound()).await.unwrap();
    seen.push(format!("invited {queued} then {again}"));
    // Nobody can sign in: a setup link for the admin, which finds its agent once.
    let first = store
        .first_run(&roster, "http://chat.example/", now)
        .await
        .unwrap();
    let FirstRun::SetupLink { email, link, .. } = &first else {
        panic!("no setup link: {first:?}");
    };
    assert!(
        link.starts_with("http://chat.example/set-password?token="),
        "{link}"
    );
    seen.push(format!("setup link for {email}"));
    let token = token_of(&first);
    assert_eq!(
        store.find_invitation(&token).await.unwrap().as_deref(),
        Some("ana@acme.example")
    );
    assert_eq!(store.find_invitation("no such token").await.unwrap(), None);
    assert_eq!(store.find_invitation("").await.unwrap(), None);
    // Redeemed for another agent: refused, and the link still works for its own.
    assert!(
        !store
            .redeem_invitation(&token, "bo@acme.example", "$argon2id$bo")
            .await
            .unwrap()
    );
    assert!(
        store
            .redeem_invitation(&token, "ana@acme.example", "$argon2id$ana")
            .await
            .unwrap()
    );
    // Once only: the link, and every other open invitation of hers, is used up.
    assert!(
        !store
            .redeem_invitation(&token, "ana@acme.example", "$argon2id$again")
            .await
            .unwrap()
    );
    assert_eq!(store.find_invitation(&token).await.unwrap(), None);
    assert_eq!(
        store
            .password_hash("ana@acme.example")
            .await
            .unwrap()
            .as_deref(),
        Some("$argon2id$ana")
    );
    let mut with: Vec<String> = store.with_password().await.unwrap().into_iter().collect();
    with.sort();
    seen.push(format!("with password: {with:?}"));
    // Someone can sign in now: no new link.
    let later = store
        .first_run(&roster, "http://chat.example", now)
        .await
        .unwrap();
    seen.push(format!("then {later:?}"));
    // Sessions: made, found, ended.
    let one = store.create_session("ana@acme.example", now).await.unwrap();
    let two = store.create_session("ana@acme.example", now).await.unwrap();
    let found = store.find_session(&one.token_hash).await.unwrap().unwrap();
    assert_eq!(found.agent_email, "ana@acme.example");
    assert_eq!(found.csrf_token, one.csrf_token);
    assert_eq!(found.expires_at, one.expires_at);
    assert!(store.delete_session(&one.token_hash).await.unwrap());
    assert!(!store.delete_session(&one.token_hash).await.unwrap());
    assert!(store.find_session(&one.token_hash).await.unwrap().is_none());
    // A new password ends her other sessions.
    let ended = store
        .set_password("ana@acme.example", "$argon2id$new", now)
        .await
        .unwrap();
    seen.push(format!("a new password ended {ended} session(s)"));
    assert!(store.find_session(&two.token_hash).await.unwrap().is_none());
    // An expired session is found (to be told `session_expired`) until the agent's next
    // login clears it.
    let long_ago = now - jiff::SignedDuration::from_hours(24 * 30);
    let old = store
        .create_session("ana@acme.example", long_ago)
        .await
        .unwrap();
    let stale = store.find_session(&old.token_hash).await.unwrap().unwrap();
    assert!(stale.is_expired(now));
    store.create_session("ana@acme.example", now).await.unwrap();
    assert!(store.find_session(&old.token_hash).await.unwrap().is_none());
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_sessions_and_invitations_answer_alike_on_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let on_sqlite = sign_in_scenario(&sqlite(dir.path())).await;
    let pg = Postgres::start();
    let on_postgres = sign_in_scenario(&postgres(&pg, "alike").await).await;
    println!("sqlite:   {on_sqlite:?}\npostgres: {on_postgres:?}");
    assert_eq!(
        on_sqlite,
        vec![
            "invited 2 then 0".to_string(),
            "setup link for ana@acme.example".into(),
            "with password: [\"ana@acme.example\"]".into(),
            "then SomeoneCanSignIn".into(),
            "a new password ended 1 session(s)".into(),
        ]
    );
    assert_eq!(on_postgres, on_sqlite);
}

/// Two replicas starting together on a new database: each mails nobody twice, each prints a
/// setup link of its own, and the first password set uses up both links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_invite_once_and_one_password_ends_every_link() {
    let pg = Postgres::start();
    let url = pg.database("together");
    let a = Store::postgres(PgStore::connect(&url, 4).await.unwrap());
    let b = Store::postgres(PgStore::connect(&url, 4).await.unwrap());
    let roster = roster(&[
        ("ana@acme.example", "admin"),
        ("bo@acme.example", "agent"),
        ("cy@acme.example", "agent"),
    ]);
    let out = outbound();
    let start = |store: Store| {
        let (roster, out) = (roster.clone(), out.clone());
        tokio::spawn(async move {
            let queued = store.invite_new_agents(&roster, &out).await.unwrap();
            let first = store
                .first_run(&roster, &out.public_url, Timestamp::now())
                .await
                .unwrap();
            (queued, first)
        })
    };
    let (on_a, on_b) = (start(a.clone()), start(b.clone()));
    let (on_a, on_b) = (on_a.await.unwrap(), on_b.await.unwrap());
    println!("queued: {} + {}", on_a.0, on_b.0);
    assert_eq!(on_a.0 + on_b.0, 3, "each agent is mailed once");
    let (token_a, token_b) = (token_of(&on_a.1), token_of(&on_b.1));
    assert_ne!(token_a, token_b);
    // Either replica finds either link.
    for token in [&token_a, &token_b] {
        for store in [&a, &b] {
            assert_eq!(
                store.find_invitation(token).await.unwrap().as_deref(),
                Some("ana@acme.example")
            );
        }
    }
    assert!(
        b.redeem_invitation(&token_a, "ana@acme.example", "$argon2id$x")
            .await
            .unwrap()
    );
    assert_eq!(a.find_invitation(&token_b).await.unwrap(), None);
    assert_eq!(
        a.password_hash("ana@acme.example")
            .await
            .unwrap()
            .as_deref(),
        Some("$argon2id$x")
    );
}

/// The example bundle, as `serve` loads it on a machine that sets none of its `${VAR}`.
fn example_bundle() -> Arc<Bundle> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bots");
    let unset = |_: &str| None;
    Arc::new(livechat::config::load_dir(&dir, &unset).unwrap().unwrap())
}

/// Config revisions: what a server records of the bundles it loads, and reads back.
async fn revisions_scenario(store: &Store) -> Vec<String> {
    let mut seen = Vec::new();
    assert_eq!(store.latest_revision().await.unwrap(), None);
    assert!(store.revisions().await.unwrap().is_empty());
    let bundle = example_bundle();
    let first = store
        .record_loaded(bundle.clone(), "startup", false)
        .await
        .unwrap();
    // The same bundle again (a restart, a reload without change): no new revision.
    let again = store
        .record_loaded(bundle.clone(), "watch", false)
        .await
        .unwrap();
    assert_eq!(again, first);
    let empty = store
        .record_loaded(Arc::new(Bundle::empty()), "watch", true)
        .await
        .unwrap();
    seen.push(format!(
        "recorded {} ({}) then {} ({}: {})",
        first.number, first.source, empty.number, empty.source, empty.summary
    ));
    assert_eq!(
        store.latest_revision().await.unwrap().as_ref(),
        Some(&empty)
    );
    let one = store.revision(first.number).await.unwrap().unwrap();
    assert_eq!(one, first);
    assert_eq!(one.bundle, bundle.sources);
    assert_eq!(store.revision(99).await.unwrap(), None);
    let listed: Vec<String> = store
        .revisions()
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {} {}", r.number, r.source, r.hash == bundle.hash))
        .collect();
    seen.push(format!("listed {listed:?}"));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_answer_alike_on_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let on_sqlite = revisions_scenario(&sqlite(dir.path())).await;
    let pg = Postgres::start();
    let on_postgres = revisions_scenario(&postgres(&pg, "revisions").await).await;
    println!("sqlite:   {on_sqlite:?}\npostgres: {on_postgres:?}");
    assert!(
        on_sqlite[0].starts_with("recorded 1 (startup) then 2 (watch: "),
        "{on_sqlite:?}"
    );
    assert_eq!(
        on_sqlite[1],
        "listed [\"2 watch false\", \"1 startup true\"]"
    );
    assert_eq!(on_postgres, on_sqlite);
}

/// Conversations and their events, the same on either store: (id, visitor, bot) and
/// (conversation, type, visible to the visitor, data), in the order they are written.
const CONVERSATIONS: [(&str, &str, &str); 3] = [
    ("c1", "v1", "support"),
    ("c2", "v2", "sales"),
    ("c3", "v1", "support"),
];

type Row = (&'static str, &'static str, bool, String, &'static str);

const AT: &str = "2026-12-02T17:00:00Z";

fn events() -> Vec<Row> {
    let message = |author: &str, text: &str| {
        format!(r#"{{"message_id":"m-{text}","author":"{author}","text":"{text}"}}"#)
    };
    vec![
        ("c1", "livechat.started", true, "{}".into(), AT),
        ("c1", "message", true, message("visitor", "hello"), AT),
        ("c2", "livechat.started", true, "{}".into(), AT),
        ("c1", "note", false, message("agent", "a note"), AT),
        ("c1", "message", true, message("agent", "hi there"), AT),
        ("c2", "message", true, message("visitor", "price?"), AT),
        ("c3", "livechat.started", true, "{}".into(), AT),
        ("c3", "message", true, message("visitor", "back again"), AT),
    ]
}

/// Writes [`CONVERSATIONS`] and `events` into `store`: on SQLite as rows through the
/// writer, on PostgreSQL the events through the log writer (which numbers them).
async fn fill(store: &Store, log: Option<&LogWriter>, events: Vec<Row>) {
    let at = AT;
    match store {
        Store::Sqlite(db) => {
            db.write(move |c| {
                for (id, visitor, bot) in CONVERSATIONS {
                    c.execute(
                        "INSERT OR IGNORE INTO visitors (id, token_hash, bot, created_at, last_seen_at)
                         VALUES (?1, ?1, ?2, ?3, ?3)",
                        rusqlite::params![visitor, bot, at],
                    )?;
                    c.execute(
                        "INSERT INTO conversations
                         (id, visitor_id, bot, status, created_at, updated_at, state)
                         VALUES (?1, ?2, ?3, 'new', ?4, ?4, '{}')",
                        rusqlite::params![id, visitor, bot, at],
                    )?;
                }
                for (conv, kind, visible, data, at) in events {
                    let bot = CONVERSATIONS.iter().find(|c| c.0 == conv).unwrap().2;
                    c.execute(
                        "INSERT INTO events (conversation_id, bot, type, at, visitor_visible, data)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        rusqlite::params![conv, bot, kind, at, visible, data],
                    )?;
                }
                Ok::<_, rusqlite::Error>(())
            })
            .await
            .unwrap();
        }
        Store::Postgres(pg) => {
            let client = pg.pool().get().await.unwrap();
            for (id, visitor, bot) in CONVERSATIONS {
                client
                    .execute(
                        "INSERT INTO conversations
                         (id, version, visitor_id, bot, status, created_at, updated_at, state)
                         VALUES ($1, 1, $2, $3, 'new', $4, $4, '{}')",
                        &[&id, &visitor, &bot, &at],
                    )
                    .await
                    .unwrap();
            }
            let log = log.unwrap();
            for (conv, kind, visible, data, at) in events {
                let bot = CONVERSATIONS.iter().find(|c| c.0 == conv).unwrap().2;
                log.append(vec![NewEvent {
                    conversation_id: Some(conv.into()),
                    bot: Some(bot.into()),
                    kind: kind.into(),
                    at: at.into(),
                    visitor_visible: visible,
                    data,
                    client_id: None,
                }])
                .await
                .unwrap();
            }
        }
    }
}

/// What sockets replay and a resumed widget shows, read back from a filled store.
async fn replays(store: &Store) -> Vec<serde_json::Value> {
    let bots = |names: &[&str]| Some(names.iter().map(|b| b.to_string()).collect());
    let mut answers = Vec::new();
    answers.push(queries::last_seq(store).await.unwrap().into());
    for (visitor, after, limit) in [("v1", 0, 100), ("v1", 2, 2), ("v2", 0, 100), ("v9", 0, 9)] {
        let events = queries::visitor_events(store, visitor, after, limit)
            .await
            .unwrap();
        answers.push(events.into());
    }
    for (conversation, limit) in [("c1", 2), ("c1", 100), ("c2", 1)] {
        let events = queries::conversation_visitor_events(store, conversation, limit)
            .await
            .unwrap();
        answers.push(events.into());
    }
    for (scope, after) in [
        (None, 0),
        (bots(&["support"]), 3),
        (bots(&["sales", "support"]), 0),
        (bots(&[]), 0),
    ] {
        let events = queries::agent_events(store, scope, after, 100)
            .await
            .unwrap();
        answers.push(events.into());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_answer_alike_on_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite(dir.path());
    fill(&sqlite, None, events()).await;
    let on_sqlite = replays(&sqlite).await;
    let pg = Postgres::start();
    let url = pg.database("replays");
    let pg_store = PgStore::connect(&url, 4).await.unwrap();
    let log = LogWriter::start(&pg_store, 1);
    let postgres = Store::postgres(pg_store);
    fill(&postgres, Some(&log), events()).await;
    let on_postgres = replays(&postgres).await;
    // What the visitor of two conversations replays: their visible events only, in order.
    assert_eq!(on_sqlite[0], 8);
    let seqs = |answer: &serde_json::Value| -> Vec<i64> {
        answer
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&on_sqlite[1]), [1, 2, 5, 7, 8]);
    assert_eq!(seqs(&on_sqlite[2]), [5, 7]);
    assert_eq!(seqs(&on_sqlite[4]), Vec::<i64>::new());
    assert_eq!(seqs(&on_sqlite[5]), [2, 5]);
    assert_eq!(seqs(&on_sqlite[9]), [4, 5, 7, 8]);
    assert_eq!(seqs(&on_sqlite[11]), Vec::<i64>::new());
    for (i, (a, b)) in on_sqlite.iter().zip(&on_postgres).enumerate() {
        assert_eq!(a, b, "answer {i} differs");
    }
    assert_eq!(on_sqlite.len(), on_postgres.len());
}

/// Events the dashboard counts, in three conversations of two bots over an hour.
fn counted() -> Vec<Row> {
    let requested = r#"{"action":"talk","team":null}"#;
    vec![
        (
            "c1",
            "livechat.requested",
            true,
            requested.into(),
            "2026-12-02T17:00:00Z",
        ),
        (
            "c2",
            "livechat.requested",
            true,
            requested.into(),
            "2026-12-02T17:01:00Z",
        ),
        (
            "c1",
            "livechat.accepted",
            true,
            r#"{"agent":"ana@acme.example"}"#.into(),
            "2026-12-02T17:00:30Z",
        ),
        (
            "c3",
            "livechat.requested",
            true,
            requested.into(),
            "2026-12-02T17:05:00Z",
        ),
        (
            "c3",
            "livechat.accepted",
            true,
            r#"{"agent":"bo@acme.example"}"#.into(),
            "2026-12-02T17:06:30Z",
        ),
        (
            "c1",
            "conversation.resolved",
            true,
            r#"{"by":"ana@acme.example","note":null,"time_to_resolve_secs":300}"#.into(),
            "2026-12-02T17:05:30Z",
        ),
        // Outside the period asked for.
        (
            "c2",
            "livechat.requested",
            true,
            requested.into(),
            "2026-12-02T19:00:00Z",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_figures_answer_alike_on_both_stores() {
    use livechat::engine::stats::{StatsQuery, stats};
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite(dir.path());
    fill(&sqlite, None, counted()).await;
    let pg = Postgres::start();
    let url = pg.database("stats");
    let pg_store = PgStore::connect(&url, 4).await.unwrap();
    let log = LogWriter::start(&pg_store, 1);
    let postgres = Store::postgres(pg_store);
    fill(&postgres, Some(&log), counted()).await;
    let hour = |from: &str, to: &str, bot: Option<&str>, visible: Option<&[&str]>| StatsQuery {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        bot: bot.map(str::to_string),
        visible: visible.map(|v| v.iter().map(|b| b.to_string()).collect()),
    };
    let queries = [
        hour("2026-12-02T17:00:00Z", "2026-12-02T18:00:00Z", None, None),
        hour(
            "2026-12-02T17:00:00Z",
            "2026-12-02T18:00:00Z",
            Some("support"),
            None,
        ),
        hour(
            "2026-12-02T17:00:00Z",
            "2026-12-02T18:00:00Z",
            None,
            Some(&["sales"]),
        ),
        hour(
            "2026-12-02T17:00:00Z",
            "2026-12-02T18:00:00Z",
            None,
            Some(&[]),
        ),
        hour("2026-12-01T00:00:00Z", "2026-12-03T00:00:00Z", None, None),
    ];
    for (i, q) in queries.into_iter().enumerate() {
        let on_sqlite = stats(&sqlite, q.clone()).await.unwrap();
        let on_postgres = stats(&postgres, q).await.unwrap();
        if i == 0 {
            println!("{on_sqlite:#}");
            let total = &on_sqlite["total"];
            assert_eq!(total["live_chat_requests"], 3);
            assert_eq!(total["accepted"], 2);
            assert_eq!(total["resolved"], 1);
            assert_eq!(total["time_to_accept_secs"]["mean"], 60.0);
            assert_eq!(on_sqlite["agents"].as_array().unwrap().len(), 2);
        }
        if i == 3 {
            assert_eq!(on_sqlite["total"]["live_chat_requests"], 0);
        }
        if i == 4 {
            assert_eq!(on_sqlite["total"]["live_chat_requests"], 4);
        }
        assert_eq!(on_sqlite, on_postgres, "query {i}");
    }
}

/// A visitor's data in every table an erase reaches: messages and a note, a form in their
/// conversation and one outside it, a file in a message and an upload no message used,
/// contact values and page views; and another visitor, who must keep everything.
fn personal_events() -> Vec<Row> {
    let said = |id: &str, author: &str, text: &str| {
        format!(r#"{{"message_id":"{id}","author":"{author}","text":"{text}"}}"#)
    };
    vec![
        ("c1", "conversation.started", true, "{}".into(), AT),
        (
            "c1",
            "message.created",
            true,
            said("m1", "visitor", "my address is 1 Elm St"),
            AT,
        ),
        (
            "c2",
            "message.created",
            true,
            said("m2", "visitor", "other visitor"),
            AT,
        ),
        (
            "c1",
            "note.created",
            false,
            r#"{"message_id":"m3","agent":"ana@acme.example","text":"VIP"}"#.into(),
            AT,
        ),
        (
            "c3",
            "message.created",
            true,
            said("m4", "visitor", "back again"),
            AT,
        ),
    ]
}

const PERSONAL_ROWS: &str = "
    UPDATE visitors SET email = 'vera@visitor.example', last_seen_at = '2026-12-02T17:00:00Z';
    INSERT INTO form_submissions (id, bot, form, conversation_id, visitor_id, fields, created_at)
      VALUES ('f1', 'support', 'contact', 'c1', 'v1', '{\"email\":\"vera@visitor.example\"}',
              '2026-12-02T17:01:00Z'),
             ('f2', 'support', 'contact', NULL, 'v1', '{}', '2026-12-02T17:02:00Z'),
             ('f3', 'sales', 'contact', NULL, 'v2', '{}', '2026-12-02T17:03:00Z');
    INSERT INTO attachments (id, sha256, name, type, size, bot, visitor_id, conversation_id,
                             created_ms, used_ms)
      VALUES ('a1', 'sha-a1', 'id.png', 'image/png', 10, 'support', 'v1', 'c1', 1, 2),
             ('a2', 'sha-a2', 'unused.png', 'image/png', 20, 'support', 'v1', NULL, 3, NULL),
             ('a3', 'sha-a3', 'theirs.png', 'image/png', 30, 'sales', 'v2', 'c2', 4, 5);
    INSERT INTO message_attachments (message_id, position, attachment_id)
      VALUES ('m1', 0, 'a1'), ('m2', 0, 'a3');
    INSERT INTO contact_values (visitor_id, field, value, updated_at)
      VALUES ('v1', 'phone', '555-0100', 't'), ('v2', 'phone', '555-0199', 't');
    INSERT INTO pageviews (visitor_id, url, at)
      VALUES ('v1', 'https://shop.example/cart', '2026-12-02T16:59:00Z'),
             ('v2', 'https://shop.example/', '2026-12-02T16:58:00Z');
    UPDATE conversations SET status = 'closed', updated_at = '2026-12-02T17:10:00Z'
      WHERE id IN ('c2', 'c3');
";

/// The rows left, as text, for comparing two stores after an erase.
const LEFT: [&str; 7] = [
    "SELECT id FROM visitors ORDER BY id",
    "SELECT id || ' ' || status FROM conversations ORDER BY id",
    "SELECT seq || ' ' || type || ' ' || data FROM events ORDER BY seq",
    "SELECT id FROM form_submissions ORDER BY id",
    "SELECT id FROM attachments ORDER BY id",
    "SELECT message_id || ' ' || attachment_id FROM message_attachments ORDER BY message_id",
    "SELECT visitor_id || ' ' || field FROM contact_values ORDER BY visitor_id, field",
];

async fn left_on_sqlite(store: &Store) -> Vec<Vec<String>> {
    let Store::Sqlite(db) = store else {
        unreachable!()
    };
    db.read(|c| {
        LEFT.iter()
            .map(|sql| {
                c.prepare(sql)?
                    .query_map([], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .await
    .unwrap()
}

async fn left_on_postgres(client: &tokio_postgres::Client) -> Vec<Vec<String>> {
    let mut left = Vec::new();
    for sql in LEFT {
        let rows = client.query(sql, &[]).await.unwrap();
        left.push(rows.iter().map(|r| r.get::<_, String>(0)).collect());
    }
    left
}

/// What an erase answered, comparable across stores (files in order).
fn erased_text(mut e: livechat::store::privacy::Erased) -> String {
    e.files.sort();
    e.visitor_ids.sort();
    format!("{e:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_erase_answer_alike_on_both_stores() {
    use livechat::store::postgres::privacy as pg_privacy;
    use livechat::store::privacy;

    let dir = tempfile::tempdir().unwrap();
    let lite = sqlite(dir.path());
    fill(&lite, None, personal_events()).await;
    let Store::Sqlite(db) = &lite else {
        unreachable!()
    };
    db.write(|c| c.execute_batch(PERSONAL_ROWS)).await.unwrap();

    let cluster = Postgres::start();
    let url = cluster.database("privacy");
    let pg_store = PgStore::connect(&url, 4).await.unwrap();
    let mut client = pg_store.pool().get().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO visitors (id, token_hash, bot, created_at, last_seen_at)
             VALUES ('v1', 'v1', 'support', '2026-12-02T17:00:00Z', 't'),
                    ('v2', 'v2', 'sales', '2026-12-02T17:00:00Z', 't')",
        )
        .await
        .unwrap();
    let log = LogWriter::start(&pg_store, 1);
    let postgres = Store::postgres(pg_store.clone());
    fill(&postgres, Some(&log), personal_events()).await;
    client.batch_execute(PERSONAL_ROWS).await.unwrap();

    // The export: every table, the same document.
    let on_sqlite = db
        .read(|c| privacy::export(c, "v1"))
        .await
        .unwrap()
        .unwrap();
    let on_postgres = pg_privacy::export(&client, "v1").await.unwrap().unwrap();
    assert_eq!(on_sqlite["conversations"].as_array().unwrap().len(), 2);
    assert_eq!(
        on_sqlite["conversations"][0]["messages"][1]["text"], "VIP",
        "{on_sqlite:#}"
    );
    assert_eq!(on_sqlite["forms"].as_array().unwrap().len(), 2);
    assert_eq!(on_sqlite["attachments"].as_array().unwrap().len(), 2);
    assert_eq!(on_postgres, on_sqlite);
    assert_eq!(pg_privacy::export(&client, "v9").await.unwrap(), None);

    // Retention's choice: settled conversations changed before the cutoff, oldest first.
    let cutoff = "2026-12-02T18:00:00Z";
    let expired = db
        .read(move |c| privacy::expired_conversations(c, cutoff, 10))
        .await
        .unwrap();
    assert_eq!(expired, ["c2", "c3"]);
    assert_eq!(
        pg_privacy::expired_conversations(&client, cutoff, 10)
            .await
            .unwrap(),
        expired
    );

    // Erasing the visitor: the same answer, the same rows left, tombstones in the log.
    let erased_lite = db
        .write(|c| privacy::securely(c, |c| privacy::erase_visitor(c, "v1")))
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let erased_pg = pg_privacy::erase_visitor(&tx, "v1").await.unwrap();
    tx.commit().await.unwrap();
    println!("{erased_lite:?}");
    assert_eq!(
        (erased_lite.messages, erased_lite.forms, erased_lite.events),
        (3, 2, 4)
    );
    assert_eq!(erased_text(erased_pg), erased_text(erased_lite));
    let left = left_on_sqlite(&lite).await;
    assert_eq!(left[0], ["v2"]);
    assert!(
        left[2]
            .iter()
            .filter(|e| e.contains(" redacted {}"))
            .count()
            == 4
    );
    assert_eq!(left_on_postgres(&client).await, left);

    // Retention of what is left: the other visitor's settled conversation, then leftovers.
    let swept_lite = db
        .write(move |c| {
            privacy::securely(c, |c| {
                let gone = privacy::erase_conversations(c, &["c2".to_string()])?;
                let left = privacy::erase_expired_leftovers(c, cutoff)?;
                Ok((gone, left))
            })
        })
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let gone = pg_privacy::erase_conversations(&tx, &["c2".to_string()])
        .await
        .unwrap();
    let leftovers = pg_privacy::erase_expired_leftovers(&tx, cutoff)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(swept_lite.1.visitor_ids, ["v2"]);
    assert_eq!(erased_text(gone), erased_text(swept_lite.0));
    assert_eq!(erased_text(leftovers), erased_text(swept_lite.1));
    assert_eq!(left_on_postgres(&client).await, left_on_sqlite(&lite).await);
}

/// Two replicas running the retention sweep at once over the same expired conversations:
/// each conversation is erased once (the second finds it gone under its lock), none twice,
/// and neither sweep fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sweeping_at_once_erase_each_conversation_once() {
    use livechat::store::postgres::privacy as pg_privacy;

    let cluster = Postgres::start();
    let url = cluster.database("sweeps");
    let setup = PgStore::connect(&url, 2).await.unwrap();
    let client = setup.pool().get().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO conversations
               (id, version, visitor_id, bot, status, created_at, updated_at, state)
             SELECT 'c' || lpad(n::text, 3, '0'), 1, 'v', 'support', 'closed', 't',
                    '2026-12-01T00:00:00Z', '{}'
             FROM generate_series(1, 120) AS n",
        )
        .await
        .unwrap();
    // Both sweeps begin together, with connections ready.
    let start = Arc::new(tokio::sync::Barrier::new(2));
    let sweep = |store: PgStore| {
        let start = start.clone();
        tokio::spawn(async move {
            let mut erased = Vec::new();
            drop(store.pool().get().await.unwrap());
            start.wait().await;
            loop {
                let mut client = store.pool().get().await.unwrap();
                let batch = pg_privacy::expired_conversations(&client, "2026-12-02T00:00:00Z", 10)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return erased;
                }
                let tx = client.transaction().await.unwrap();
                let gone = pg_privacy::erase_conversations(&tx, &batch).await.unwrap();
                tx.commit().await.unwrap();
                erased.extend(gone.ids());
            }
        })
    };
    let a = sweep(PgStore::connect(&url, 2).await.unwrap());
    let b = sweep(PgStore::connect(&url, 2).await.unwrap());
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    println!("replica a erased {}, replica b erased {}", a.len(), b.len());
    let mut all: Vec<String> = a.into_iter().chain(b).collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "a conversation was erased twice");
    assert_eq!(total, 120);
}
