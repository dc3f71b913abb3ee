//! The outbox through the store interface (`store::Store`, #17): one scenario on SQLite and
//! on a real PostgreSQL, through the same calls (queue, counts, list, take, record, retry of
//! a dead letter), with the same answers; then what only replicas do: a claim one replica
//! holds keeps the other off until it is recorded or given back, and two replicas' mail
//! workers deliver one queue through a real SMTP server (aiosmtpd), each mail once.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use common::postgres::{Postgres, connect};
use common::smtp::{SmtpServer, decode_qp, header};
use livechat::config::schema::WebhookKind;
use livechat::config::{Bundle, Live, Roster};
use livechat::mail::Outbound;
use livechat::mail::outbox::{Claimed, Doorbell, Item, Outcome, Worker};
use livechat::mail::templates::Templates;
use livechat::mail::transport::{Mail, Transport};
use livechat::settings::ServerArgs;
use livechat::store::postgres::PgStore;
use livechat::store::reader::Readers;
use livechat::store::writer::Writer;
use livechat::store::{self, Store};
use serde_json::{Value, json};

const LEASE: Duration = Duration::from_secs(30);

fn sqlite(dir: &std::path::Path) -> Store {
    let conn = store::open(dir).unwrap();
    Store::sqlite(Writer::start(conn), Readers::new(dir))
}

async fn postgres(url: &str) -> Store {
    Store::postgres(PgStore::connect(url, 4).await.unwrap())
}

fn outbound() -> Outbound {
    Outbound {
        templates: Templates::new(None),
        public_url: "http://chat.acme.example".into(),
        doorbell: Doorbell::default(),
    }
}

fn roster(emails: &[&str]) -> Roster {
    let text: String = emails
        .iter()
        .map(|e| {
            format!("[[agent]]\nname = \"{e}\"\nemail = \"{e}\"\nrole = \"agent\"\nteams = []\n")
        })
        .collect();
    toml::from_str(&text).unwrap()
}

fn form_mail(to: &str, subject: &str) -> Item {
    Item::Mail(Mail {
        kind: "offline_form".into(),
        to: vec![to.into()],
        reply_to: None,
        subject: subject.into(),
        text: format!("{subject}: the visitor wrote"),
        html: format!("<p>{subject}: the visitor wrote</p>"),
    })
}

fn subject(due: &Claimed) -> String {
    match due.item.as_ref().unwrap() {
        Item::Mail(mail) => mail.subject.clone(),
        Item::Webhook { event, .. } => event.clone(),
    }
}

/// The items of `status` as the admin API lists them, less what differs between runs (ids,
/// times): each line its kind, summary, attempts, last error and whether it was sent.
async fn listed(store: &Store, status: &str) -> Vec<String> {
    let items = store.outbox_list(status, 200).await.unwrap();
    let mut lines: Vec<String> = items
        .iter()
        .map(|i| {
            assert_eq!(i["status"], status);
            let created = i["created_at"].as_str().unwrap();
            assert!(created.parse::<jiff::Timestamp>().is_ok(), "{created}");
            let sent = match &i["sent_at"] {
                Value::Null => "not sent".to_string(),
                at => {
                    let at: jiff::Timestamp = at.as_str().unwrap().parse().unwrap();
                    assert!(at >= created.parse().unwrap(), "sent before it was queued");
                    "sent".into()
                }
            };
            format!(
                "{} {} attempts={} error={} {sent}",
                i["kind"], i["summary"], i["attempts"], i["last_error"]
            )
        })
        .collect();
    lines.sort();
    lines
}

/// Queue, count, list, take, record, retry: everything the admin API, `/metrics` and the
/// mail worker ask of the outbox, on a new database.
async fn outbox_scenario(store: &Store) -> Vec<String> {
    let mut seen = Vec::new();
    assert_eq!(store.outbox_counts().await.unwrap(), json!({}));
    assert_eq!(store.outbox_next_due().await.unwrap(), None);
    assert!(store.claim_outbox("a", LEASE, 10).await.unwrap().is_empty());
    // Queued as the code queues them: on their own (a transcript), and inside another
    // operation's transaction (an invitation).
    store
        .enqueue_outbox(&form_mail("team@acme.example", "form one"))
        .await
        .unwrap();
    store
        .enqueue_outbox(&form_mail("team@acme.example", "form two"))
        .await
        .unwrap();
    let hook = Item::Webhook {
        bot: "support".into(),
        webhook: "crm".into(),
        webhook_kind: WebhookKind::Generic,
        event: "form.submitted".into(),
        body: r#"{"event":"form.submitted"}"#.into(),
    };
    store.enqueue_outbox(&hook).await.unwrap();
    let invited = store
        .invite_new_agents(&roster(&["ana@acme.example"]), &outbound())
        .await
        .unwrap();
    seen.push(format!("invited {invited}"));
    seen.push(format!("queued: {}", store.outbox_counts().await.unwrap()));
    assert_eq!(
        store.outbox_next_due().await.unwrap(),
        Some(Duration::ZERO),
        "all due now"
    );
    // Taken: every item, none tried before.
    let mut taken = store.claim_outbox("a", LEASE, 10).await.unwrap();
    taken.sort_by_key(subject);
    seen.push(format!(
        "taken: {:?}",
        taken
            .iter()
            .map(|d| format!("{} attempts={}", subject(d), d.attempts))
            .collect::<Vec<_>>()
    ));
    let by = |s: &str| {
        taken
            .iter()
            .find(|d| subject(d).contains(s))
            .unwrap()
            .clone()
    };
    let (one, two, hooked, invitation) = (
        by("form one"),
        by("form two"),
        by("form.submitted"),
        by("invitation"),
    );
    // Delivered; delivered and kept without its body; failed, again in an hour; failed,
    // again at once.
    let Ok(Item::Mail(mut invite)) = invitation.item.clone() else {
        panic!("{invitation:?}");
    };
    assert_eq!(invite.kind, "invite");
    invite.text = "(not kept)".into();
    invite.html = "(not kept)".into();
    let kept = serde_json::to_string(&Item::Mail(invite)).unwrap();
    let outcomes = [
        (&one, Outcome::Sent { kept: None }),
        (&invitation, Outcome::Sent { kept: Some(kept) }),
        (
            &two,
            Outcome::Retry {
                error: "451 try again later".into(),
                wait: Duration::from_secs(3600),
            },
        ),
        (
            &hooked,
            Outcome::Retry {
                error: "crm: 503".into(),
                wait: Duration::ZERO,
            },
        ),
    ];
    for (due, outcome) in &outcomes {
        assert!(
            store.record_outbox("a", due, outcome).await.unwrap(),
            "{due:?}"
        );
    }
    // The webhook is due again, its attempt counted; it fails for good.
    let again = store.claim_outbox("a", LEASE, 10).await.unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(
        (again[0].id.as_str(), again[0].attempts),
        (hooked.id.as_str(), 1)
    );
    assert_eq!(again[0].item, Ok(hook.clone()));
    let gone = Outcome::Dead {
        error: "crm: 410 gone".into(),
    };
    assert!(store.record_outbox("a", &again[0], &gone).await.unwrap());
    // Nothing due until the mail's retry, in an hour.
    assert!(store.claim_outbox("a", LEASE, 10).await.unwrap().is_empty());
    let next = store.outbox_next_due().await.unwrap().unwrap();
    assert!(
        next > Duration::from_secs(3590) && next <= Duration::from_secs(3600),
        "{next:?}"
    );
    seen.push(format!("counts: {}", store.outbox_counts().await.unwrap()));
    for status in ["pending", "sent", "dead"] {
        seen.push(format!(
            "{status}: {}",
            listed(store, status).await.join(" | ")
        ));
    }
    // Only a dead letter goes back, once; then it is due with no attempt counted, and
    // delivered.
    assert!(!store.retry_outbox(&one.id).await.unwrap(), "a sent item");
    assert!(
        !store.retry_outbox(&two.id).await.unwrap(),
        "a pending item"
    );
    assert!(!store.retry_outbox("o_nothing").await.unwrap());
    assert!(store.retry_outbox(&hooked.id).await.unwrap());
    assert!(
        !store.retry_outbox(&hooked.id).await.unwrap(),
        "no longer dead"
    );
    let retried = store.claim_outbox("a", LEASE, 10).await.unwrap();
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert_eq!(
        (retried[0].id.as_str(), retried[0].attempts),
        (hooked.id.as_str(), 0)
    );
    let sent = Outcome::Sent { kept: None };
    assert!(store.record_outbox("a", &retried[0], &sent).await.unwrap());
    seen.push(format!("at last: {}", store.outbox_counts().await.unwrap()));
    seen.push(format!("dead: {}", listed(store, "dead").await.join(" | ")));
    seen.push(format!("sent: {}", listed(store, "sent").await.join(" | ")));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_answers_alike_on_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let on_sqlite = outbox_scenario(&sqlite(dir.path())).await;
    let pg = Postgres::start();
    let on_postgres = outbox_scenario(&postgres(&pg.database("alike")).await).await;
    println!("sqlite:\n  {}", on_sqlite.join("\n  "));
    println!("postgres:\n  {}", on_postgres.join("\n  "));
    let expected_start = [
        "invited 1",
        r#"queued: {"mail":{"pending":3},"webhook":{"pending":1}}"#,
    ];
    assert_eq!(on_sqlite[..2], expected_start);
    assert!(on_sqlite[2].starts_with("taken: [") && on_sqlite[2].contains("form one attempts=0"));
    assert_eq!(
        on_sqlite[3],
        r#"counts: {"mail":{"pending":1,"sent":2},"webhook":{"dead":1}}"#
    );
    assert!(
        on_sqlite[4].contains("attempts=1 error=\"451 try again later\" not sent"),
        "{}",
        on_sqlite[4]
    );
    assert!(
        on_sqlite[6].contains("attempts=2 error=\"crm: 410 gone\" not sent"),
        "{}",
        on_sqlite[6]
    );
    assert_eq!(
        on_sqlite[7],
        r#"at last: {"mail":{"pending":1,"sent":2},"webhook":{"sent":1}}"#
    );
    assert_eq!(on_sqlite[8], "dead: ");
    assert_eq!(on_postgres, on_sqlite);
}

/// Replica A's claim keeps replica B off: B takes nothing, cannot record A's items, and
/// waits for the claim rather than spinning on an item it cannot take; what A gives back
/// B takes at once, and A's record after that changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_keeps_other_replicas_off_until_given_back() {
    let pg = Postgres::start();
    let url = pg.database("claims");
    let (a, b) = (postgres(&url).await, postgres(&url).await);
    for n in 0..3 {
        a.enqueue_outbox(&form_mail("team@acme.example", &format!("form {n}")))
            .await
            .unwrap();
    }
    let held = a.claim_outbox("replica-a", LEASE, 10).await.unwrap();
    assert_eq!(held.len(), 3);
    assert!(
        b.claim_outbox("replica-b", LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let sent = Outcome::Sent { kept: None };
    assert!(!b.record_outbox("replica-b", &held[0], &sent).await.unwrap());
    // Due, but held: B's worker sleeps until the lease runs out (at most its second).
    let wait = b.outbox_next_due().await.unwrap().unwrap();
    assert!(
        wait > LEASE - Duration::from_secs(5) && wait <= LEASE,
        "{wait:?}"
    );
    // A delivers one, gives the other two back; B takes those two now.
    assert!(a.record_outbox("replica-a", &held[0], &sent).await.unwrap());
    let rest: Vec<String> = held[1..].iter().map(|d| d.id.clone()).collect();
    a.release_outbox("replica-a", &rest).await.unwrap();
    assert_eq!(b.outbox_next_due().await.unwrap(), Some(Duration::ZERO));
    let mut taken: Vec<String> = b
        .claim_outbox("replica-b", LEASE, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    taken.sort();
    let mut expected = rest.clone();
    expected.sort();
    assert_eq!(taken, expected);
    assert!(!a.record_outbox("replica-a", &held[1], &sent).await.unwrap());
    assert!(b.record_outbox("replica-b", &held[1], &sent).await.unwrap());
    // Giving back a claim that is another's does nothing.
    a.release_outbox("replica-a", &rest[1..]).await.unwrap();
    assert!(
        a.claim_outbox("replica-a", LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        b.outbox_counts().await.unwrap(),
        json!({"mail": {"pending": 1, "sent": 2}})
    );
}

fn worker(store: Store, transport: Transport, doorbell: Doorbell) -> Worker {
    let live = Live {
        bundle: Arc::new(Bundle::empty()),
        revision: None,
        error: None,
    };
    Worker {
        store,
        transport,
        from: "Acme Support <support@acme.example>".into(),
        live: Arc::new(ArcSwap::from_pointee(live)),
        doorbell,
        retry_base: Duration::from_millis(200),
    }
}

/// Waits until `check` holds of the outbox's counts (read through `store`).
async fn until_counts(store: &Store, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let counts = store.outbox_counts().await.unwrap();
        if check(&counts) {
            return counts;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: still {counts} after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two replicas' mail workers on one PostgreSQL outbox and a real SMTP server: every mail
/// arrives once (claims, not reads, divide the queue), an invitation's link is mailed but
/// not kept, a mail queued while the server is down arrives after its backoff, and a dead
/// letter put back through the other replica is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_workers_deliver_each_mail_once_through_smtp() {
    let mut smtp = SmtpServer::start();
    let conf_dir = tempfile::tempdir().unwrap();
    let settings = ServerArgs {
        config: Some(smtp.settings(conf_dir.path(), "")),
        data_dir: Some(conf_dir.path().join("data")),
        ..ServerArgs::default()
    }
    .resolve()
    .unwrap();
    let transport = Transport::from_settings(&settings).unwrap();
    assert!(matches!(transport, Transport::Smtp { .. }));
    let pg = Postgres::start();
    let url = pg.database("workers");
    let (a, b) = (postgres(&url).await, postgres(&url).await);
    // A letter that died before the workers started (as if an earlier server gave up).
    let dead_id = a
        .enqueue_outbox(&form_mail("team@acme.example", "the dead letter"))
        .await
        .unwrap();
    let taken = a.claim_outbox("earlier", LEASE, 10).await.unwrap();
    let gone = Outcome::Dead {
        error: "550 mailbox unavailable".into(),
    };
    assert!(a.record_outbox("earlier", &taken[0], &gone).await.unwrap());
    // Forty forms, half queued through each replica, and an agent's invitation.
    for n in 0..40 {
        let store = if n % 2 == 0 { &a } else { &b };
        store
            .enqueue_outbox(&form_mail("team@acme.example", &format!("form {n:02}")))
            .await
            .unwrap();
    }
    let out = outbound();
    assert_eq!(
        a.invite_new_agents(&roster(&["bo@acme.example"]), &out)
            .await
            .unwrap(),
        1
    );
    let (bell_a, bell_b) = (Doorbell::default(), Doorbell::default());
    let workers = [
        tokio::spawn(worker(a.clone(), transport.clone(), bell_a.clone()).run()),
        tokio::spawn(worker(b.clone(), transport.clone(), bell_b.clone()).run()),
    ];
    let counts = until_counts(&a, "41 sent", |c| c["mail"]["sent"] == 41).await;
    assert_eq!(counts, json!({"mail": {"sent": 41, "dead": 1}}));
    let mails = smtp.wait_for_mails(41, Duration::from_secs(10));
    let mut ids: Vec<String> = mails
        .iter()
        .map(|m| header(m, "Message-ID").unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!((mails.len(), ids.len()), (41, 41), "each mail once");
    // The invitation went out with its link; the row kept who and what, not the link.
    let invitations = smtp.mails_of("invite");
    assert_eq!(invitations.len(), 1);
    let body = decode_qp(&invitations[0]);
    let token = body
        .split("/set-password?token=")
        .nth(1)
        .expect("a set-password link")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect::<String>();
    assert!(token.len() >= 16, "{token}");
    let db = connect(&url).await;
    let stored: String = db
        .query_one(
            "SELECT payload FROM outbox WHERE payload LIKE '%bo@acme.example%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!stored.contains(&token), "the link stayed: {stored}");
    assert!(stored.contains("not kept"), "{stored}");
    // The server down: a mail queued through B fails, is retried after its backoff, and
    // arrives once the server is back.
    smtp.stop();
    let down_id = b
        .enqueue_outbox(&form_mail("team@acme.example", "while down"))
        .await
        .unwrap();
    bell_b.ring();
    let start = Instant::now();
    let error = loop {
        let row = db
            .query_one(
                "SELECT attempts, last_error FROM outbox WHERE id = $1",
                &[&down_id],
            )
            .await
            .unwrap();
        if row.get::<_, i32>(0) >= 1 {
            break row.get::<_, Option<String>>(1).unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    smtp.resume();
    until_counts(&a, "the mail sent after the outage", |c| {
        c["mail"]["sent"] == 42
    })
    .await;
    // The dead letter, put back through B, is delivered by one of the workers.
    assert!(b.retry_outbox(&dead_id).await.unwrap());
    bell_b.ring();
    let counts = until_counts(&b, "the dead letter sent", |c| c["mail"]["sent"] == 43).await;
    assert_eq!(counts, json!({"mail": {"sent": 43}}));
    let mails = smtp.wait_for_mails(43, Duration::from_secs(10));
    // Exactly 43, none twice: a mail delivered again would be a 44th with a repeated id.
    let mut ids: Vec<String> = mails
        .iter()
        .map(|m| header(m, "Message-ID").unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!((mails.len(), ids.len()), (43, 43), "each mail once");
    let subjects: Vec<String> = mails
        .iter()
        .map(|m| header(m, "Subject").unwrap())
        .collect();
    for wanted in ["while down", "the dead letter"] {
        assert_eq!(
            subjects.iter().filter(|s| s.contains(wanted)).count(),
            1,
            "{wanted}: {subjects:?}"
        );
    }
    for w in workers {
        w.abort();
    }
    println!(
        "two workers: 41 mails, 41 distinct Message-IDs; with the server down the first attempt failed ({error}), then sent; the dead letter put back and sent: 43 in all, 0 dead"
    );
}
