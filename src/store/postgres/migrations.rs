//! The PostgreSQL schema, embedded: each migration runs once, in order, and replicas that
//! start together take turns by a transaction-level advisory lock, so that exactly one of
//! them applies a migration and the others find it done.

use tokio_postgres::Client;

use super::PgError;

/// The advisory lock key of migrations: "livechat" in ASCII, read as a 64-bit integer.
const LOCK_KEY: i64 = 0x6c69_7665_6368_6174;

/// The migrations, by version; a new one goes at the end with the next number, and a
/// released one is never edited.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        // The event log. `seq` is not an identity column: a sequence hands its numbers out when
        // a row is inserted while transactions commit in another order, so a reader polling
        // `seq > last` would skip a row that commits late. The one row of `seq_counter` is
        // updated by every commit that appends, as its last statement: the row lock orders the
        // commits, and a rollback gives its numbers back (`log::append`).
        "CREATE TABLE seq_counter (
         id   boolean PRIMARY KEY DEFAULT true CHECK (id),
         last bigint NOT NULL
     );
     INSERT INTO seq_counter (id, last) VALUES (true, 0);
     CREATE TABLE events (
         seq             bigint PRIMARY KEY,
         conversation_id text,
         bot             text,
         type            text NOT NULL,
         at              text NOT NULL,
         visitor_visible boolean NOT NULL,
         data            text NOT NULL,
         client_id       text
     );
     CREATE INDEX events_conversation ON events (conversation_id, seq);",
    ),
    (
        2,
        // Conversations, as SQLite's, with a version that every write of one raises: a
        // replica writes a transition only if the row is still at the version it read
        // (`conversations::write`). `agents` holds a row per agent to lock while counting
        // their chats against `max_chats`.
        "CREATE TABLE conversations (
             id           text PRIMARY KEY,
             version      bigint NOT NULL,
             visitor_id   text NOT NULL,
             bot          text NOT NULL,
             status       text NOT NULL,
             assignee     text,
             team         text,
             created_at   text NOT NULL,
             updated_at   text NOT NULL,
             requested_at text,
             state        text NOT NULL
         );
         CREATE INDEX conversations_status ON conversations (status, requested_at);
         CREATE INDEX conversations_visitor ON conversations (visitor_id, created_at);
         CREATE INDEX conversations_assignee ON conversations (assignee, status);
         CREATE TABLE agents (
             email text PRIMARY KEY
         );",
    ),
    (
        3,
        // Each conversation's earliest deadline. A replica claims the due ones with a lease
        // (`timers::claim`, `FOR UPDATE SKIP LOCKED`: replicas never wait for each other's
        // claims) and fires them as ordinary guarded transitions; a claim whose replica died
        // is claimed again once its lease has run out.
        "CREATE TABLE timers (
             conversation_id text PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
             due_at          timestamptz NOT NULL,
             leased_by       text,
             lease_until     timestamptz
         );
         CREATE INDEX timers_due ON timers (due_at);",
    ),
    (
        4,
        // The outbox, as SQLite's, with a lease: any replica claims due rows
        // (`outbox::claim`) and records how each delivery went (`outbox::record`).
        "CREATE TABLE outbox (
             id              text PRIMARY KEY,
             kind            text NOT NULL,
             payload         text NOT NULL,
             status          text NOT NULL DEFAULT 'pending',
             attempts        integer NOT NULL DEFAULT 0,
             next_attempt_ms bigint NOT NULL,
             last_error      text,
             created_at      timestamptz NOT NULL,
             sent_at         timestamptz,
             leased_by       text,
             lease_until     timestamptz
         );
         CREATE INDEX outbox_due ON outbox (status, next_attempt_ms);",
    ),
    (
        5,
        // Presence across replicas (`presence`): each replica's heartbeat, and how many
        // sockets of each agent it holds.
        "CREATE TABLE replicas (
             id           text PRIMARY KEY,
             started_at   timestamptz NOT NULL,
             heartbeat_at timestamptz NOT NULL
         );
         CREATE TABLE agent_sockets (
             replica text NOT NULL,
             email   text NOT NULL,
             sockets integer NOT NULL CHECK (sockets > 0),
             PRIMARY KEY (replica, email)
         );",
    ),
    (
        6,
        // Passwords, login sessions and invitations, as SQLite's (`auth::pg`); times are
        // RFC 3339 text, as there.
        "ALTER TABLE agents
             ADD COLUMN password_hash text,
             ADD COLUMN accepting     boolean NOT NULL DEFAULT false,
             ADD COLUMN updated_at    text;
         CREATE TABLE sessions (
             token_hash  text PRIMARY KEY,
             agent_email text NOT NULL,
             csrf_token  text NOT NULL,
             created_at  text NOT NULL,
             expires_at  text NOT NULL
         );
         CREATE INDEX sessions_agent ON sessions (agent_email);
         CREATE TABLE invites (
             token_hash  text PRIMARY KEY,
             agent_email text NOT NULL,
             created_at  text NOT NULL,
             expires_at  text NOT NULL,
             used_at     text
         );
         CREATE INDEX invites_agent ON invites (agent_email);",
    ),
    (
        7,
        // A message retried by its client is found by the id the client gave it
        // (`conversations::write`, `Refused::Duplicate`).
        "CREATE INDEX events_client_id ON events (conversation_id, client_id)
             WHERE client_id IS NOT NULL;",
    ),
    (
        8,
        // Config revisions, as SQLite's; numbered under the revisions' lock
        // (`revisions::insert`), so numbers have no gaps and are never reused.
        "CREATE TABLE revisions (
             number     bigint PRIMARY KEY,
             hash       text NOT NULL,
             created_at text NOT NULL,
             source     text NOT NULL,
             summary    text NOT NULL,
             bundle     text NOT NULL
         );
         CREATE INDEX revisions_hash ON revisions (hash);",
    ),
    (
        9,
        // A replica's socket counts exist only while its row does: one that writes them
        // before its first heartbeat, or after it was swept, is told so by the refusal.
        "ALTER TABLE agent_sockets
             ADD FOREIGN KEY (replica) REFERENCES replicas (id);",
    ),
    (
        10,
        // Visitors and what hangs off them (page views, contact values, form submissions),
        // read marks and attachments: SQLite's tables (its migrations 2, 6 to 10) with the
        // same names, columns and meanings. SQLite's INTEGER is 64-bit, so bigint here;
        // times SQLite keeps as text stay text, and those compared with `<` in SQL
        // (`pageviews.at`, `visitors.last_seen_at`) order bytewise ("C") as SQLite's do,
        // whatever the database's collation. Foreign keys where SQLite has them, except
        // `conversations.visitor_id`: migration 2 made conversations before there was a
        // visitors table and nothing writes visitor rows yet, so here nothing stops a
        // conversation naming a visitor who is gone (docs/postgres.md).
        "CREATE TABLE visitors (
             id           text PRIMARY KEY,
             token_hash   text NOT NULL UNIQUE,
             bot          text NOT NULL,
             name         text,
             email        text,
             language     text,
             country      text,
             ip           text,
             created_at   text NOT NULL,
             last_seen_at text COLLATE \"C\" NOT NULL
         );
         CREATE TABLE form_submissions (
             id              text PRIMARY KEY,
             bot             text NOT NULL,
             form            text NOT NULL,
             conversation_id text,
             visitor_id      text,
             fields          text NOT NULL,
             page_url        text,
             ip              text,
             created_at      text NOT NULL
         );
         -- Not in SQLite, which scans: the page-view sweep asks per visitor.
         CREATE INDEX form_submissions_visitor ON form_submissions (visitor_id);
         CREATE TABLE attachments (
             id              text PRIMARY KEY,
             sha256          text NOT NULL,
             name            text NOT NULL,
             type            text NOT NULL,
             size            bigint NOT NULL,
             width           bigint,
             height          bigint,
             bot             text NOT NULL,
             visitor_id      text,
             agent_email     text,
             conversation_id text,
             created_ms      bigint NOT NULL,
             used_ms         bigint,
             preview         text,
             duration_ms     bigint
         );
         CREATE INDEX attachments_sha256 ON attachments (sha256);
         CREATE INDEX attachments_conversation ON attachments (conversation_id);
         CREATE INDEX attachments_unused ON attachments (created_ms) WHERE used_ms IS NULL;
         -- Not in SQLite, which scans: the page-view sweep asks per visitor.
         CREATE INDEX attachments_visitor ON attachments (visitor_id);
         CREATE TABLE message_attachments (
             message_id    text NOT NULL,
             position      bigint NOT NULL,
             attachment_id text NOT NULL,
             PRIMARY KEY (message_id, position)
         );
         CREATE TABLE reads (
             agent_email     text NOT NULL,
             conversation_id text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
             seq             bigint NOT NULL,
             at              text NOT NULL,
             PRIMARY KEY (agent_email, conversation_id)
         );
         CREATE INDEX reads_conversation ON reads (conversation_id);
         CREATE TABLE contact_values (
             visitor_id text NOT NULL REFERENCES visitors (id) ON DELETE CASCADE,
             field      text NOT NULL,
             value      text NOT NULL,
             updated_at text NOT NULL,
             PRIMARY KEY (visitor_id, field)
         );
         CREATE TABLE pageviews (
             id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             visitor_id text NOT NULL REFERENCES visitors (id) ON DELETE CASCADE,
             url        text NOT NULL,
             title      text,
             referrer   text,
             at         text COLLATE \"C\" NOT NULL
         );
         CREATE INDEX pageviews_visitor ON pageviews (visitor_id);
         CREATE INDEX pageviews_at ON pageviews (at);",
    ),
    (
        11,
        // The console's search (`engine::queries::list`): the words of messages' and notes'
        // text, lowercased and not stemmed ("simple"), as SQLite's `messages_fts` holds
        // them; the expression is the one the search compares with, so it uses this index.
        "CREATE INDEX events_text_search ON events
             USING gin (to_tsvector('simple', data::json ->> 'text'))
             WHERE type IN ('message.created', 'note.created');",
    ),
    (
        12,
        // Ephemeral frames too large for a notification's payload (a call's signalling with
        // a long SDP): the row holds the frame, the notification only its id
        // (`frames::publish_stored`). Rows are deleted a minute after they were written.
        "CREATE TABLE ephemeral_frames (
             id      bigserial PRIMARY KEY,
             at      timestamptz NOT NULL DEFAULT now(),
             payload text NOT NULL
         );
         CREATE INDEX ephemeral_frames_at ON ephemeral_frames (at);",
    ),
    (
        13,
        // Files on replicas (`postgres::contents`): the bytes of each content and of its
        // preview, in pieces of `contents::PIECE` bytes, so that neither an upload nor a
        // download holds a whole file in memory and a range reads only its pieces. Stored
        // uncompressed out of line: pictures, audio and video are compressed already.
        // `link_key`: the one key of signed links, made by whichever replica asks first.
        "CREATE TABLE file_contents (
             sha256  text NOT NULL,
             preview boolean NOT NULL,
             piece   integer NOT NULL,
             data    bytea NOT NULL,
             PRIMARY KEY (sha256, preview, piece)
         );
         ALTER TABLE file_contents ALTER COLUMN data SET STORAGE EXTERNAL;
         CREATE TABLE link_key (
             one boolean PRIMARY KEY DEFAULT true CHECK (one),
             key bytea NOT NULL
         );",
    ),
    (
        14,
        // An agent's "Take video calls", kept beside "Accept chats" (SQLite's migration 13):
        // every replica reads it with the rest of the shared presence.
        "ALTER TABLE agents ADD COLUMN video boolean NOT NULL DEFAULT true;",
    ),
];

/// The newest version this build knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |(version, _)| *version)
}

/// Applies the migrations the database lacks, all in one transaction under the lock, and
/// returns the versions it applied (none when another replica did it first). A database
/// with a version newer than this build's is refused: an older replica must not write to a
/// schema it does not know.
pub async fn run(client: &mut Client) -> Result<Vec<i32>, PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    if found > latest() {
        return Err(PgError::NewerSchema {
            found,
            known: latest(),
        });
    }
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await?;
        applied.push(*version);
    }
    tx.commit().await.map_err(super::at_commit)?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_rise_one_by_one_from_one() {
        for (i, (version, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
        }
        assert_eq!(latest() as usize, MIGRATIONS.len());
    }
}
