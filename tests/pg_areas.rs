//! Page views, read marks, contact values and attachments on PostgreSQL (#17), against
//! their SQLite originals: the same inputs to both stores' functions give the same outputs
//! (differential), and the locks PostgreSQL needs where SQLite's one writer made a
//! check-then-act safe hold with two connections racing. The tests share one cluster while
//! they run (a database each).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use common::postgres::Postgres;
use deadpool_postgres::GenericClient;
use livechat::store;
use livechat::store::attachments::{self as lite_files, Stored};
use livechat::store::pageviews::NewPageView;
use livechat::store::postgres::{
    PgStore, attachments as pg_files, contacts as pg_contacts, contents as pg_contents,
    pageviews as pg_views, reads as pg_reads,
};
use livechat::store::{contacts as lite_contacts, pageviews as lite_views, reads as lite_reads};
use rusqlite::{Connection, params};

/// The cluster of the tests running now: started by the first, stopped when the last one
/// that holds it ends.
fn cluster() -> Arc<Postgres> {
    static SHARED: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pg) = shared.upgrade() {
        return pg;
    }
    let pg = Arc::new(Postgres::start());
    *shared = Arc::downgrade(&pg);
    pg
}

/// Both stores, empty: SQLite as `serve` opens it in a temporary data directory, and a new
/// PostgreSQL database migrated by `PgStore::connect`, with a data directory of its own.
struct Both {
    cluster: Arc<Postgres>,
    pg: PgStore,
    lite: Connection,
    lite_dir: tempfile::TempDir,
    pg_dir: tempfile::TempDir,
}

async fn both(name: &str) -> Both {
    let pg = cluster();
    let url = pg.database(name);
    let store = PgStore::connect(&url, 6).await.unwrap();
    let lite_dir = tempfile::tempdir().unwrap();
    let lite = store::open(lite_dir.path()).unwrap();
    Both {
        cluster: pg,
        pg: store,
        lite,
        lite_dir,
        pg_dir: tempfile::tempdir().unwrap(),
    }
}

impl Both {
    async fn client(&self) -> deadpool_postgres::Object {
        self.pg.pool().get().await.unwrap()
    }

    /// The same SQL in both (placeholders `$n`, which SQLite reads as well).
    async fn exec(&self, sql: &str, args: &[&str]) {
        self.lite
            .execute(sql, rusqlite::params_from_iter(args.iter()))
            .unwrap();
        let pg_args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
            .iter()
            .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        self.client().await.execute(sql, &pg_args).await.unwrap();
    }

    async fn visitor(&self, id: &str, last_seen: &str) {
        self.exec(
            "INSERT INTO visitors (id, token_hash, bot, created_at, last_seen_at)
             VALUES ($1, 'h-' || $1, 'support', $2, $2)",
            &[id, last_seen],
        )
        .await;
    }

    async fn conversation(&self, id: &str, visitor: &str) {
        self.lite
            .execute(
                "INSERT INTO conversations (id, visitor_id, bot, status, created_at, updated_at, state)
                 VALUES (?1, ?2, 'support', 'chatting', 't', 't', '{}')",
                [id, visitor],
            )
            .unwrap();
        self.client()
            .await
            .execute(
                "INSERT INTO conversations
                     (id, version, visitor_id, bot, status, created_at, updated_at, state)
                 VALUES ($1, 1, $2, 'support', 'chatting', 't', 't', '{}')",
                &[&id, &visitor],
            )
            .await
            .unwrap();
    }

    async fn event(&self, seq: i64, conversation: &str, kind: &str, data: &str) {
        self.lite
            .execute(
                "INSERT INTO events (seq, conversation_id, bot, type, at, visitor_visible, data)
                 VALUES (?1, ?2, 'support', ?3, 't', 1, ?4)",
                params![seq, conversation, kind, data],
            )
            .unwrap();
        self.client()
            .await
            .execute(
                "INSERT INTO events (seq, conversation_id, bot, type, at, visitor_visible, data)
                 VALUES ($1, $2, 'support', $3, 't', true, $4)",
                &[&seq, &conversation, &kind, &data],
            )
            .await
            .unwrap();
    }

    /// Each visitor's id and last seen time, in both.
    async fn visitors(&self) -> (Vec<(String, String)>, Vec<(String, String)>) {
        let sql = "SELECT id, last_seen_at FROM visitors ORDER BY id";
        let lite = self
            .lite
            .prepare(sql)
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let pg = self
            .client()
            .await
            .query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        (lite, pg)
    }
}

/// A small deterministic generator (xorshift), so a failing run can be read again.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a, T: ?Sized>(&mut self, from: &[&'a T]) -> &'a T {
        from[self.below(from.len())]
    }
}

fn day(d: usize) -> String {
    format!("2026-01-{d:02}T00:00:00.000000Z")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_views_are_stored_exported_erased_and_swept_alike() {
    let both = both("pageviews").await;
    for (i, id) in ["v0", "v1", "v2", "v3", "v4", "v5"].iter().enumerate() {
        both.visitor(id, &day(1 + i)).await;
    }
    // Visitors kept by something other than page views: a conversation, a form, an upload.
    both.conversation("c1", "v1").await;
    both.exec(
        "INSERT INTO form_submissions (id, bot, form, visitor_id, fields, created_at)
         VALUES ('f1', 'support', 'contact', $1, '{}', 't')",
        &["v2"],
    )
    .await;
    both.exec(
        "INSERT INTO attachments (id, sha256, name, type, size, bot, visitor_id, created_ms)
         VALUES ('a1', 'abc', 'a.pdf', 'application/pdf', 3, 'support', $1, 0)",
        &["v3"],
    )
    .await;
    let ids = ["v0", "v1", "v2", "v3", "v4", "v5", "v_gone"];
    let urls = [
        "https://shop.example/",
        "https://shop.example/pricing?x=1",
        "/ä",
    ];
    let texts = ["Pricing", "", "Ünïcode ✓", "it's"];
    let mut rng = Rng(0x5eed_0001);
    let client = both.client().await;
    for _ in 0..60 {
        let title = (rng.below(3) > 0).then(|| rng.pick(&texts));
        let referrer = (rng.below(2) > 0).then(|| rng.pick(&urls));
        let view = NewPageView {
            visitor_id: rng.pick(&ids),
            url: rng.pick(&urls),
            title,
            referrer,
        };
        let at = day(1 + rng.below(9));
        lite_views::insert(&both.lite, &view, &at).unwrap();
        pg_views::insert(&client, &view, &at).await.unwrap();
    }
    let (lite, pg) = both.visitors().await;
    assert_eq!(lite, pg, "visitors seen alike");
    assert!(!pg.iter().any(|(id, _)| id == "v_gone"));
    let exports = |label: &str| {
        let label = label.to_string();
        let (both, client) = (&both, &client);
        async move {
            let mut total = 0;
            for id in ids {
                let lite = lite_views::of_visitor(&both.lite, id).unwrap();
                let pg = pg_views::of_visitor(client, id).await.unwrap();
                assert_eq!(lite, pg, "{label}: {id}'s page views");
                total += pg.len();
            }
            total
        }
    };
    let stored = exports("stored").await;
    assert!(stored > 20, "most views were of known visitors ({stored})");

    for cutoff in [day(5), day(8), day(20)] {
        let lite = lite_views::sweep(&both.lite, &cutoff).unwrap();
        let pg = pg_views::sweep(&client, &cutoff).await.unwrap();
        assert_eq!(lite.pageviews, pg.pageviews, "views swept before {cutoff}");
        let mut lite_ids = lite.visitor_ids;
        lite_ids.sort();
        assert_eq!(lite_ids, pg.visitor_ids, "visitors swept before {cutoff}");
        let (lite, pg) = both.visitors().await;
        assert_eq!(lite, pg, "visitors left after the sweep before {cutoff}");
        exports(&format!("after the sweep before {cutoff}")).await;
    }
    let (_, left) = both.visitors().await;
    let left: Vec<&str> = left.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(left, ["v1", "v2", "v3"], "only the kept visitors stay");

    // Erasing: counted alike, and nothing left.
    both.visitor("v9", &day(1)).await;
    for at in [day(2), day(3)] {
        let view = NewPageView {
            visitor_id: "v9",
            url: "https://shop.example/",
            title: None,
            referrer: None,
        };
        lite_views::insert(&both.lite, &view, &at).unwrap();
        pg_views::insert(&client, &view, &at).await.unwrap();
    }
    for id in ["v9", "v9", "v_gone"] {
        assert_eq!(
            lite_views::erase_of(&both.lite, id).unwrap(),
            pg_views::erase_of(&client, id).await.unwrap(),
            "erasing {id}"
        );
    }
    assert!(
        pg_views::of_visitor(&client, "v9")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_marks_and_unread_counts_agree() {
    let both = both("reads").await;
    both.visitor("v1", &day(1)).await;
    both.conversation("c1", "v1").await;
    both.conversation("c2", "v1").await;
    both.conversation("c3", "v1").await;
    let kinds = [
        (
            "message.created",
            r#"{"message_id":"m","author":"visitor","text":"hi"}"#,
        ),
        (
            "message.created",
            r#"{"message_id":"m","author":"agent","text":"hello"}"#,
        ),
        (
            "message.created",
            r#"{"message_id":"m","author":"bot","text":"…"}"#,
        ),
        (
            "note.created",
            r#"{"message_id":"m","author":"visitor","text":"n"}"#,
        ),
        ("conversation.accepted", r#"{"agent":"ana@x"}"#),
    ];
    let mut rng = Rng(0x5eed_0002);
    let mut seq = 0;
    let mut append = async |rng: &mut Rng, n: usize| {
        for _ in 0..n {
            seq += 1;
            // c3 never gets an event.
            let conversation = rng.pick(&["c1", "c1", "c2"]);
            let (kind, data) = kinds[rng.below(kinds.len())];
            both.event(seq, conversation, kind, data).await;
        }
        seq
    };
    let newest = append(&mut rng, 40).await;
    let client = both.client().await;
    let agents = ["ana@x", "bea@x"];
    let conversations = ["c1", "c2", "c3", "nowhere"];
    let compare = async |label: &str| {
        for agent in agents {
            for id in conversations {
                assert_eq!(
                    lite_reads::unread(&both.lite, agent, id).unwrap(),
                    pg_reads::unread(&client, agent, id).await.unwrap(),
                    "{label}: {agent}'s unread of {id}"
                );
                assert_eq!(
                    lite_reads::mark(&both.lite, agent, id).unwrap(),
                    pg_reads::mark(&client, agent, id).await.unwrap(),
                    "{label}: {agent}'s mark of {id}"
                );
            }
        }
    };
    compare("before any mark").await;
    let mut marks = 0;
    for round in 0..2 {
        for _ in 0..40 {
            let agent = rng.pick(&agents);
            let id = rng.pick(&conversations[..3]);
            // Below zero, within, and past the newest event.
            let to = rng.below(newest as usize + 10) as i64 - 3;
            let lite = lite_reads::set_mark(&both.lite, agent, id, to, "t").unwrap();
            let pg = pg_reads::set_mark(&client, agent, id, to, "t")
                .await
                .unwrap();
            assert_eq!(lite, pg, "round {round}: {agent} marks {id} read to {to}");
            marks += usize::from(pg.seq > 0);
        }
        compare(&format!("round {round}")).await;
        // New messages after the marks are unread alike.
        append(&mut rng, 15).await;
        compare(&format!("after round {round}'s new events")).await;
    }
    assert!(marks > 20, "marks were set ({marks})");
    // A conversation that does not exist takes no mark in either.
    assert!(lite_reads::set_mark(&both.lite, "ana@x", "nowhere", 1, "t").is_err());
    assert!(
        pg_reads::set_mark(&client, "ana@x", "nowhere", 1, "t")
            .await
            .is_err()
    );
    // The list's expression, over every conversation at once.
    let sql = format!(
        "SELECT c.id, {} FROM conversations c ORDER BY c.id",
        pg_reads::unread_sql("$1")
    );
    for agent in agents {
        let listed: Vec<(String, i64)> = client
            .query(&sql, &[&agent])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for (id, unread) in listed {
            assert_eq!(
                lite_reads::unread(&both.lite, agent, &id).unwrap(),
                unread,
                "{agent}'s listed unread of {id}"
            );
        }
    }
    // Erasing a conversation takes its marks along in both.
    both.exec("DELETE FROM conversations WHERE id = $1", &["c2"])
        .await;
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM reads WHERE conversation_id = 'c2'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    compare("after c2 was erased").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_values_are_saved_cleared_and_erased_alike() {
    let both = both("contacts").await;
    both.visitor("v1", &day(1)).await;
    both.visitor("v2", &day(1)).await;
    let client = both.client().await;
    let fields = ["company", "plan", "phone", "Vip"];
    let values = ["", "", "Acme", "Initech", "Ünïcode ✓", "it's"];
    let mut rng = Rng(0x5eed_0003);
    let mut nonempty = 0;
    for i in 0..40 {
        let visitor = rng.pick(&["v1", "v2"]);
        let save: BTreeMap<String, String> = (0..1 + rng.below(3))
            .map(|_| (rng.pick(&fields).to_string(), rng.pick(&values).to_string()))
            .collect();
        let at = day(1 + i % 9);
        lite_contacts::save(&both.lite, visitor, &save, &at).unwrap();
        pg_contacts::save(&client, visitor, &save, &at)
            .await
            .unwrap();
        for id in ["v1", "v2"] {
            let lite = lite_contacts::of_visitor(&both.lite, id).unwrap();
            assert_eq!(
                lite,
                pg_contacts::of_visitor(&client, id).await.unwrap(),
                "save {i} ({visitor}: {save:?}): {id}'s values"
            );
            nonempty += usize::from(!lite.is_empty());
        }
    }
    assert!(nonempty > 20, "values were kept ({nonempty})");
    let updated = "SELECT visitor_id, field, updated_at FROM contact_values ORDER BY 1, 2";
    let lite: Vec<(String, String, String)> = both
        .lite
        .prepare(updated)
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let pg: Vec<(String, String, String)> = client
        .query(updated, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(lite, pg, "times of the last change alike");
    // A visitor who does not exist takes no value in either.
    let one = BTreeMap::from([("plan".to_string(), "Pro".to_string())]);
    assert!(lite_contacts::save(&both.lite, "v_gone", &one, "t").is_err());
    assert!(
        pg_contacts::save(&client, "v_gone", &one, "t")
            .await
            .is_err()
    );
    // Erasing counts alike; deleting the visitor's row takes the rest along.
    pg_contacts::save(&client, "v2", &one, "t").await.unwrap();
    lite_contacts::save(&both.lite, "v2", &one, "t").unwrap();
    assert_eq!(
        lite_contacts::erase(&both.lite, "v1").unwrap(),
        pg_contacts::erase(&client, "v1").await.unwrap()
    );
    both.exec("DELETE FROM visitors WHERE id = $1", &["v2"])
        .await;
    for id in ["v1", "v2"] {
        assert!(
            lite_contacts::of_visitor(&both.lite, id)
                .unwrap()
                .is_empty()
        );
        assert!(
            pg_contacts::of_visitor(&client, id)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

/// Whether `task` is still waiting after a moment: it is held by a lock.
async fn waits<T>(task: &tokio::task::JoinHandle<T>) -> bool {
    tokio::time::sleep(Duration::from_millis(400)).await;
    !task.is_finished()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_view_beside_a_sweep_of_its_visitor_writes_nothing_or_keeps_them() {
    let both = both("pageview_races").await;
    both.visitor("v_old", &day(1)).await;
    both.visitor("v_back", &day(1)).await;
    let view = |visitor_id| NewPageView {
        visitor_id,
        url: "https://shop.example/",
        title: None,
        referrer: None,
    };
    // The sweep first: it deletes the visitor and holds the row until its commit; the view
    // on another replica's connection waits, then finds no visitor and writes nothing (on
    // SQLite: the sweep's job, then the view's).
    let mut sweeper = both.client().await;
    let tx = sweeper.transaction().await.unwrap();
    let swept = pg_views::sweep(&tx, &day(5)).await.unwrap();
    assert_eq!(swept.visitor_ids, ["v_back", "v_old"]);
    let task = tokio::spawn({
        let store = both.pg.clone();
        async move {
            let client = store.pool().get().await.unwrap();
            pg_views::insert(&client, &view("v_old"), &day(10)).await
        }
    });
    assert!(waits(&task).await, "the view waits for the visitor's row");
    tx.rollback().await.unwrap();
    // Rolled back: the view then finds its visitor and is stored.
    task.await.unwrap().unwrap();
    let client = both.client().await;
    assert_eq!(
        pg_views::of_visitor(&client, "v_old").await.unwrap().len(),
        1
    );
    both.client()
        .await
        .execute("DELETE FROM pageviews", &[])
        .await
        .unwrap();
    both.client()
        .await
        .execute("UPDATE visitors SET last_seen_at = $1", &[&day(1)])
        .await
        .unwrap();
    let tx = sweeper.transaction().await.unwrap();
    pg_views::sweep(&tx, &day(5)).await.unwrap();
    let task = tokio::spawn({
        let store = both.pg.clone();
        async move {
            let client = store.pool().get().await.unwrap();
            pg_views::insert(&client, &view("v_old"), &day(10)).await
        }
    });
    assert!(waits(&task).await, "the view waits for the visitor's row");
    tx.commit().await.unwrap();
    task.await
        .unwrap()
        .expect("a view of a visitor swept meanwhile is no error");
    assert!(
        pg_views::of_visitor(&client, "v_old")
            .await
            .unwrap()
            .is_empty()
    );

    // The view first: it holds the visitor's row, seen now; the sweep waits, then checks
    // the row again and keeps the visitor (on SQLite: the view's job, then the sweep's).
    both.visitor("v_new", &day(1)).await;
    let mut viewer = both.client().await;
    let tx = viewer.transaction().await.unwrap();
    pg_views::insert(&tx, &view("v_new"), &day(10))
        .await
        .unwrap();
    let task = tokio::spawn({
        let store = both.pg.clone();
        async move {
            let client = store.pool().get().await.unwrap();
            pg_views::sweep(&client, &day(5)).await.unwrap()
        }
    });
    assert!(waits(&task).await, "the sweep waits for the visitor's row");
    tx.commit().await.unwrap();
    let swept = task.await.unwrap();
    assert!(swept.visitor_ids.is_empty(), "kept: {swept:?}");
    assert_eq!(
        pg_views::of_visitor(&client, "v_new").await.unwrap().len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_set_at_once_through_two_replicas_end_at_the_largest() {
    let both = both("marks_at_once").await;
    both.visitor("v1", &day(1)).await;
    both.conversation("c1", "v1").await;
    for seq in 1..=100 {
        let data = r#"{"message_id":"m","author":"visitor","text":"hi"}"#;
        both.event(seq, "c1", "message.created", data).await;
    }
    let url = both.cluster.url("marks_at_once");
    let other = PgStore::connect(&url, 6).await.unwrap();
    let mut rng = Rng(0x5eed_0004);
    let mut tasks = Vec::new();
    let mut largest = 0;
    for i in 0..200 {
        let seq = rng.below(100) as i64 + 1;
        largest = largest.max(seq);
        let store = if i % 2 == 0 {
            both.pg.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let client = store.pool().get().await.unwrap();
            let mark = pg_reads::set_mark(&client, "ana@x", "c1", seq, "t")
                .await
                .unwrap();
            (seq, mark)
        }));
    }
    for task in tasks {
        let (seq, mark) = task.await.unwrap();
        assert!(
            mark.seq >= seq,
            "a mark never moves back: {seq} gave {mark:?}"
        );
        // Counted after the mark: another may have moved it further meanwhile.
        assert!(mark.unread <= 100 - mark.seq, "{mark:?}");
    }
    let client = both.client().await;
    assert_eq!(
        pg_reads::mark(&client, "ana@x", "c1").await.unwrap(),
        largest
    );
}

/// An upload's row before it is stored.
fn upload(id: &str, content: &str, created_ms: i64, sender: &str, preview: bool) -> Stored {
    let (visitor_id, agent_email, conversation_id) = match sender {
        "visitor" => (Some("v1".to_string()), None, None),
        _ => (None, Some("ana@x".to_string()), Some("c2".to_string())),
    };
    Stored {
        id: id.into(),
        sha256: sha(content),
        name: format!("{id}.png"),
        mime: "image/png".into(),
        size: content.len() as u64,
        width: Some(4_000_000_000),
        height: content.len().is_multiple_of(2).then_some(30),
        bot: "support".into(),
        visitor_id,
        agent_email,
        conversation_id,
        created_ms,
        preview: preview.then(|| "image/webp".to_string()),
        duration_ms: content.len().is_multiple_of(3).then_some(1500),
    }
}

fn sha(content: &str) -> String {
    format!("{content:0>64}")
}

/// Writes an upload's temporary file (and its preview's) under `dir`.
fn arriving(dir: &Path, id: &str, content: &str, preview: bool) -> (PathBuf, Option<PathBuf>) {
    let tmp = lite_files::temp_dir(dir);
    std::fs::create_dir_all(&tmp).unwrap();
    let temp = tmp.join(format!("{id}.part"));
    std::fs::write(&temp, content).unwrap();
    let preview = preview.then(|| {
        let p = tmp.join(format!("{id}.preview.part"));
        std::fs::write(&p, format!("preview of {content}")).unwrap();
        p
    });
    (temp, preview)
}

/// The files under `dir/files`, as paths relative to it (the upload area left out).
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(at).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path != lite_files::temp_dir(root) {
                    walk(root, &path, out);
                }
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &dir.join(lite_files::FILES_DIR), &mut out);
    out.sort();
    out
}

/// The contents PostgreSQL holds (`file_contents`), named as SQLite's files would be
/// (`files/ab/abc…`, `….preview`), each with its bytes put together from its pieces.
async fn in_database(client: &impl GenericClient) -> Vec<(String, Vec<u8>)> {
    let rows = client
        .query(
            "SELECT sha256, preview, data FROM file_contents ORDER BY sha256, preview, piece",
            &[],
        )
        .await
        .unwrap();
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for r in rows {
        let (sha, preview, data): (String, bool, Vec<u8>) = (r.get(0), r.get(1), r.get(2));
        let path = lite_files::file_path(Path::new(""), &sha);
        let name = format!(
            "{}{}",
            path.display(),
            if preview { ".preview" } else { "" }
        );
        match out.last_mut() {
            Some((last, bytes)) if *last == name => bytes.extend(data),
            _ => out.push((name, data)),
        }
    }
    out.sort();
    out
}

/// The files under `dir/files` with their bytes, as [`in_database`] names them.
fn files_with_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files(dir)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

/// SQLite's files under `lite_dir` are PostgreSQL's contents, byte for byte, and nothing
/// is kept under PostgreSQL's `pg_dir`.
async fn same_contents(lite_dir: &Path, pg_dir: &Path, client: &impl GenericClient, label: &str) {
    assert_eq!(
        files_with_bytes(lite_dir),
        in_database(client).await,
        "{label}: the same contents kept, byte for byte"
    );
    assert_eq!(
        files(pg_dir),
        Vec::<String>::new(),
        "{label}: nothing on PostgreSQL's disk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_are_stored_linked_counted_and_swept_alike() {
    let both = both("attachments").await;
    both.visitor("v1", &day(1)).await;
    both.conversation("c1", "v1").await;
    both.conversation("c2", "v1").await;
    let (lite_dir, pg_dir) = (both.lite_dir.path(), both.pg_dir.path());
    let mut client = both.client().await;
    let hour = lite_files::UNUSED_FOR_MS;
    let now = 10 * hour;
    // (id, content, created, sender, a preview made now, a preview counted on)
    let uploads = [
        ("a1", "abc", now, "visitor", true, false),
        ("a2", "abc", now, "visitor", false, true), // the same content: its preview kept
        ("a3", "defg", now - hour - 1, "visitor", false, false), // never used
        ("a4", "hi", now, "agent", false, true),    // counts on a preview that is not there
        ("a5", "jklmno", now, "visitor", false, false),
        ("a6", "pq", now - hour - 1, "agent", false, false), // the agent's, in c2
        ("a7", "jklmno", now, "agent", true, false),         // a preview made for a stored content
    ];
    for (id, content, created, sender, preview_now, counted) in uploads {
        let mut lite = upload(id, content, created, sender, preview_now || counted);
        let mut pg = lite.clone();
        let (temp, preview) = arriving(lite_dir, id, content, preview_now);
        lite_files::insert(&both.lite, &mut lite, lite_dir, &temp, preview.as_deref()).unwrap();
        let (temp, preview) = arriving(pg_dir, id, content, preview_now);
        pg_files::insert(&mut client, &mut pg, pg_dir, &temp, preview.as_deref())
            .await
            .unwrap();
        assert_eq!(lite, pg, "{id} as stored");
        assert!(
            !temp.exists(),
            "{id}: the upload is put in place or dropped"
        );
        assert!(
            preview.as_ref().is_none_or(|p| !p.exists()),
            "{id}: the preview is stored or dropped"
        );
        assert_eq!(
            lite_files::get(&both.lite, id).unwrap(),
            pg_files::get(&client, id).await.unwrap(),
            "{id} read back"
        );
    }
    assert_eq!(pg_files::get(&client, "a_none").await.unwrap(), None);
    same_contents(lite_dir, pg_dir, &client, "stored").await;
    assert_eq!(
        in_database(&client).await.len(),
        7,
        "five contents, two previews"
    );

    // Messages refer to their files; a file used first in c1 belongs to c1.
    let links: [(&str, &str, &[&str]); 4] = [
        ("m_b", "c1", &["a5", "a1"]),
        ("m_a", "c1", &["a2"]),
        ("m_c", "c2", &["a6", "a5", "a_none"]),
        ("M_d", "c2", &["a7"]),
    ];
    for (message, conversation, ids) in links {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        lite_files::link(&both.lite, message, conversation, &ids, now).unwrap();
        pg_files::link(&client, message, conversation, &ids, now)
            .await
            .unwrap();
    }
    let compare = async |client: &deadpool_postgres::Object, label: &str| {
        for conversation in ["c1", "c2", "c9"] {
            assert_eq!(
                lite_files::by_message(&both.lite, conversation).unwrap(),
                pg_files::by_message(client, conversation).await.unwrap(),
                "{label}: the files of {conversation}'s messages"
            );
            for (visitor, agent) in [
                (Some("v1"), None),
                (None, Some("ana@x")),
                (Some("v1"), Some("ana@x")),
                (None, None),
            ] {
                for c in [Some(conversation), None] {
                    assert_eq!(
                        lite_files::conversation_bytes(&both.lite, c, visitor, agent).unwrap(),
                        pg_files::conversation_bytes(client, c, visitor, agent)
                            .await
                            .unwrap(),
                        "{label}: bytes of {c:?} for {visitor:?}, {agent:?}"
                    );
                }
            }
        }
        for (id, ..) in uploads {
            assert_eq!(
                lite_files::get(&both.lite, id).unwrap(),
                pg_files::get(client, id).await.unwrap(),
                "{label}: {id}"
            );
        }
    };
    compare(&client, "linked").await;
    let listed = pg_files::by_message(&client, "c2").await.unwrap();
    let order: Vec<(&str, &str)> = listed
        .iter()
        .map(|(m, a)| (m.as_str(), a.id.as_str()))
        .collect();
    // a5 went to c1, where it was used first; a_none is no upload.
    assert_eq!(
        order,
        [("M_d", "a7"), ("m_c", "a6")],
        "message ids in bytewise order"
    );

    // An hour on: the never used upload goes, its file with it.
    let lite = lite_files::sweep(&both.lite, lite_dir, now).unwrap();
    let pg = pg_files::sweep(&mut client, pg_dir, now).await.unwrap();
    assert_eq!((lite, pg), (1, 1));
    same_contents(lite_dir, pg_dir, &client, "after the hour").await;
    compare(&client, "after the hour").await;
    // A conversation gone: its uploads go, a file shared with c2 stays, the rest goes.
    both.exec("DELETE FROM conversations WHERE id = $1", &["c1"])
        .await;
    let lite = lite_files::sweep(&both.lite, lite_dir, now).unwrap();
    let pg = pg_files::sweep(&mut client, pg_dir, now).await.unwrap();
    assert_eq!(lite, pg, "rows swept with c1");
    assert_eq!(pg, 3, "a1, a2 and a5 were c1's");
    same_contents(lite_dir, pg_dir, &client, "after c1 went").await;
    let names: Vec<String> = in_database(&client)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.iter().any(|f| f.ends_with(&sha("jklmno"))));
    assert!(!names.iter().any(|f| f.contains(&sha("abc"))));
    compare(&client, "after c1 went").await;
    let links: i64 = client
        .query_one("SELECT count(*) FROM message_attachments", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        links, 2,
        "m_c's a6 and M_d's a7 stay; a_none, a5 and c1's went"
    );
    // Nothing more to sweep; an erase's removal of files no row names.
    assert_eq!(pg_files::sweep(&mut client, pg_dir, now).await.unwrap(), 0);
    both.exec("DELETE FROM attachments WHERE id = $1", &["a6"])
        .await;
    let shas = [sha("pq"), sha("jklmno"), sha("pq")];
    assert_eq!(
        lite_files::remove_unreferenced(&both.lite, lite_dir, &shas).unwrap(),
        pg_files::remove_unreferenced(&mut client, pg_dir, &shas)
            .await
            .unwrap(),
    );
    same_contents(lite_dir, pg_dir, &client, "after the erase").await;
}

/// Stores `a` as a new upload of `content` through the PostgreSQL store, in `dir`.
async fn stored(store: &PgStore, dir: &Path, mut a: Stored, content: &str) -> Stored {
    let (temp, _) = arriving(dir, &a.id, content, false);
    let mut client = store.pool().get().await.unwrap();
    pg_files::insert(&mut client, &mut a, dir, &temp, None)
        .await
        .unwrap();
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_of_a_content_being_swept_waits_and_keeps_its_file() {
    let both = both("upload_after_sweep").await;
    let dir = both.pg_dir.path().to_path_buf();
    let hour = lite_files::UNUSED_FOR_MS;
    let now = 10 * hour;
    // The last upload of this content, never used: the sweep removes it and its file.
    stored(
        &both.pg,
        &dir,
        upload("a_old", "xyz", now - hour - 1, "visitor", false),
        "xyz",
    )
    .await;
    // The sweep on one connection, stopped after it found the content unreferenced (its
    // lock held) and before it removes the content.
    let mut sweeper = both.client().await;
    let tx = sweeper.transaction().await.unwrap();
    let gone = pg_files::sweep_rows(&tx, now).await.unwrap();
    let unused = pg_files::unreferenced(&tx, &gone).await.unwrap();
    assert_eq!(unused, [sha("xyz")]);
    // Meanwhile an upload of the same content on another replica's connection: the content
    // is still stored, so without the lock it would drop its own copy and count on that one.
    let task = tokio::spawn({
        let (store, dir) = (both.pg.clone(), dir.clone());
        async move {
            stored(
                &store,
                &dir,
                upload("a_new", "xyz", now, "visitor", false),
                "xyz",
            )
            .await
        }
    });
    let waited = waits(&task).await;
    assert_eq!(pg_contents::remove(&tx, &unused).await.unwrap(), 1);
    tx.commit().await.unwrap();
    task.await.unwrap();
    let client = both.client().await;
    assert!(pg_files::get(&client, "a_old").await.unwrap().is_none());
    assert!(pg_files::get(&client, "a_new").await.unwrap().is_some());
    let xyz = lite_files::file_path(Path::new(""), &sha("xyz"));
    assert_eq!(
        in_database(&client).await,
        [(xyz.display().to_string(), b"xyz".to_vec())],
        "the new upload's row has its content"
    );
    assert!(waited, "the upload waited for the sweep's lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_beside_an_upload_of_the_same_content_keeps_the_file() {
    let both = both("sweep_after_upload").await;
    let dir = both.pg_dir.path().to_path_buf();
    let hour = lite_files::UNUSED_FOR_MS;
    let now = 10 * hour;
    stored(
        &both.pg,
        &dir,
        upload("a_old", "xyz", now - hour - 1, "visitor", false),
        "xyz",
    )
    .await;
    // An upload of the same content, stopped after it found the content stored and so wrote
    // none of its own, before its commit: what `attachments::insert` does, step by step.
    let mut uploader = both.client().await;
    let tx = uploader.transaction().await.unwrap();
    let mut a = upload("a_new", "xyz", now, "visitor", false);
    let (temp, _) = arriving(&dir, "a_new", "xyz", false);
    pg_files::lock_content(&tx, &a.sha256).await.unwrap();
    pg_files::keep_preview(&tx, &mut a, &dir, None)
        .await
        .unwrap();
    pg_files::insert_row(&tx, &a).await.unwrap();
    pg_files::store_contents(&tx, &a.sha256, &temp, None)
        .await
        .unwrap();
    let pieces: i64 = tx
        .query_one("SELECT count(*) FROM file_contents", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pieces, 1, "the stored content is counted on");
    // The sweep on another replica's connection removes the old row; the new one is not
    // committed yet, so without the lock it would find the content unreferenced.
    let task = tokio::spawn({
        let (store, dir) = (both.pg.clone(), dir.clone());
        async move {
            let mut client = store.pool().get().await.unwrap();
            pg_files::sweep(&mut client, &dir, now).await.unwrap()
        }
    });
    let waited = waits(&task).await;
    tx.commit().await.unwrap();
    assert_eq!(task.await.unwrap(), 1, "the old upload's row went");
    let client = both.client().await;
    assert!(pg_files::get(&client, "a_new").await.unwrap().is_some());
    assert!(
        pg_contents::has(&client, &sha("xyz"), false).await.unwrap(),
        "the new upload's row has its content"
    );
    assert!(waited, "the sweep waited for the upload's lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_through_two_replicas_at_once_remove_and_report_each_once() {
    let both = both("sweeps_at_once").await;
    let dir = both.pg_dir.path().to_path_buf();
    let hour = lite_files::UNUSED_FOR_MS;
    let now = 10 * hour;
    let client = both.client().await;
    for i in 0..200 {
        let id = format!("v{i:03}");
        both.visitor(&id, &day(1)).await;
        let view = NewPageView {
            visitor_id: &id,
            url: "https://shop.example/",
            title: None,
            referrer: None,
        };
        pg_views::insert(&client, &view, &day(2)).await.unwrap();
        // Uploads nobody used, two to a content.
        let content = format!("c{}", i / 2);
        let old = upload(
            &format!("a{i:03}"),
            &content,
            now - hour - 1,
            "visitor",
            false,
        );
        stored(&both.pg, &dir, old, &content).await;
    }
    assert_eq!(in_database(&client).await.len(), 100);
    let url = both.cluster.url("sweeps_at_once");
    let other = PgStore::connect(&url, 6).await.unwrap();
    let mut tasks = Vec::new();
    for store in [both.pg.clone(), other.clone(), both.pg.clone(), other] {
        let dir = dir.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = store.pool().get().await.unwrap();
            let views = pg_views::sweep(&client, &day(5)).await.unwrap();
            let rows = pg_files::sweep(&mut client, &dir, now).await.unwrap();
            (views, rows)
        }));
    }
    let (mut views, mut visitors, mut rows) = (0, Vec::new(), 0);
    for task in tasks {
        let (swept, n) = task.await.unwrap();
        views += swept.pageviews;
        visitors.extend(swept.visitor_ids);
        rows += n;
    }
    visitors.sort();
    let expected: Vec<String> = (0..200).map(|i| format!("v{i:03}")).collect();
    assert_eq!(views, 200, "each page view deleted once");
    assert_eq!(rows, 200, "each upload deleted once");
    // A visitor is deleted once their uploads are: by the sweeps that came after.
    let (_, left) = both.visitors().await;
    let left: Vec<String> = left.into_iter().map(|(id, _)| id).collect();
    let mut all = visitors.clone();
    all.extend(left);
    all.sort();
    assert_eq!(all, expected, "each visitor reported by at most one sweep");
    assert!(in_database(&client).await.is_empty(), "every content went");
}
