//! The database schema, as embedded migrations. Append new migrations at the end; never edit
//! one that has shipped, since `user_version` records how many have run.

use rusqlite_migration::{M, Migrations};

/// Every migration, oldest first.
pub static MIGRATIONS: Migrations<'static> = Migrations::from_slice(STEPS);

const STEPS: &[M<'static>] = &[
    // 1: installed config bundles, one row per revision.
    M::up(
        "CREATE TABLE revisions (
            number     INTEGER PRIMARY KEY AUTOINCREMENT,
            hash       TEXT NOT NULL,
            created_at TEXT NOT NULL,
            source     TEXT NOT NULL,
            summary    TEXT NOT NULL,
            bundle     TEXT NOT NULL
        );
        CREATE INDEX revisions_hash ON revisions (hash);",
    ),
    // 2: live chat. The event log is the truth of what happened; `conversations` keeps each
    // conversation's current state (as the engine's JSON) beside the columns lists filter on.
    M::up(
        "CREATE TABLE visitors (
            id           TEXT PRIMARY KEY,
            token_hash   TEXT NOT NULL UNIQUE,
            bot          TEXT NOT NULL,
            name         TEXT,
            email        TEXT,
            language     TEXT,
            country      TEXT,
            ip           TEXT,
            created_at   TEXT NOT NULL,
            last_seen_at TEXT NOT NULL
        );
        CREATE TABLE conversations (
            id           TEXT PRIMARY KEY,
            visitor_id   TEXT NOT NULL REFERENCES visitors (id),
            bot          TEXT NOT NULL,
            status       TEXT NOT NULL,
            assignee     TEXT,
            team         TEXT,
            created_at   TEXT NOT NULL,
            updated_at   TEXT NOT NULL,
            requested_at TEXT,
            state        TEXT NOT NULL
        );
        CREATE INDEX conversations_status ON conversations (status, requested_at);
        CREATE INDEX conversations_visitor ON conversations (visitor_id, created_at);
        CREATE INDEX conversations_assignee ON conversations (assignee, status);
        CREATE TABLE events (
            seq             INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id TEXT,
            bot             TEXT,
            type            TEXT NOT NULL,
            at              TEXT NOT NULL,
            visitor_visible INTEGER NOT NULL,
            data            TEXT NOT NULL
        );
        CREATE INDEX events_conversation ON events (conversation_id, seq);
        CREATE TABLE messages (
            id              TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations (id),
            seq             INTEGER NOT NULL,
            kind            TEXT NOT NULL,
            author          TEXT,
            text            TEXT NOT NULL,
            client_id       TEXT,
            at              TEXT NOT NULL,
            UNIQUE (conversation_id, client_id)
        );
        CREATE INDEX messages_conversation ON messages (conversation_id, seq);
        CREATE VIRTUAL TABLE messages_fts USING fts5 (
            text, content = 'messages', content_rowid = 'rowid'
        );
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts (rowid, text) VALUES (new.rowid, new.text);
        END;
        CREATE TABLE agents (
            email         TEXT PRIMARY KEY,
            password_hash TEXT,
            accepting     INTEGER NOT NULL DEFAULT 0,
            updated_at    TEXT NOT NULL
        );
        CREATE TABLE sessions (
            token_hash  TEXT PRIMARY KEY,
            agent_email TEXT NOT NULL,
            csrf_token  TEXT NOT NULL,
            created_at  TEXT NOT NULL,
            expires_at  TEXT NOT NULL
        );
        CREATE INDEX sessions_agent ON sessions (agent_email);
        CREATE TABLE form_submissions (
            id              TEXT PRIMARY KEY,
            bot             TEXT NOT NULL,
            form            TEXT NOT NULL,
            conversation_id TEXT,
            visitor_id      TEXT,
            fields          TEXT NOT NULL,
            page_url        TEXT,
            ip              TEXT,
            created_at      TEXT NOT NULL
        );",
    ),
    // 3: the outbox: every mail and webhook call, written in the same transaction as what
    // caused it, delivered and retried by the outbox worker. Times due are unix milliseconds
    // so they compare as numbers.
    M::up(
        "CREATE TABLE outbox (
            id              TEXT PRIMARY KEY,
            kind            TEXT NOT NULL,
            payload         TEXT NOT NULL,
            status          TEXT NOT NULL DEFAULT 'pending',
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_ms INTEGER NOT NULL,
            last_error      TEXT,
            created_at      TEXT NOT NULL,
            sent_at         TEXT
        );
        CREATE INDEX outbox_due ON outbox (status, next_attempt_ms);
        CREATE TABLE invites (
            token_hash  TEXT PRIMARY KEY,
            agent_email TEXT NOT NULL,
            created_at  TEXT NOT NULL,
            expires_at  TEXT NOT NULL,
            used_at     TEXT
        );
        CREATE INDEX invites_agent ON invites (agent_email);",
    ),
    // 4: fewer pages written per message. Messages are indexed for search once per group
    // commit (store::search), not by a trigger per message; and `messages` loses its
    // (conversation_id, seq) index: every message wrote a page of it, while the unique
    // (conversation_id, client_id) index finds a conversation's messages as well (they are
    // then sorted, a conversation at a time), and the newest message of a conversation comes
    // from the event log's own (conversation_id, seq) index.
    M::up(
        "DROP TRIGGER messages_fts_insert;
        DROP INDEX messages_conversation;",
    ),
    // 5: erasing a visitor removes their words from the search index itself: with FTS5's
    // `secure-delete`, a deleted row's terms are taken out of the index pages, where a plain
    // delete would only add a marker and leave them until a merge.
    M::up("INSERT INTO messages_fts (messages_fts, rank) VALUES ('secure-delete', 1);"),
    // 6: attachments. A file is stored once per content (`sha256`, under DATA_DIR/files);
    // a row per upload says who sent it and, once a message refers to it, the conversation
    // it belongs to. `message_attachments` lists each message's files in order.
    M::up(
        "CREATE TABLE attachments (
            id              TEXT PRIMARY KEY,
            sha256          TEXT NOT NULL,
            name            TEXT NOT NULL,
            type            TEXT NOT NULL,
            size            INTEGER NOT NULL,
            width           INTEGER,
            height          INTEGER,
            bot             TEXT NOT NULL,
            visitor_id      TEXT,
            agent_email     TEXT,
            conversation_id TEXT,
            created_ms      INTEGER NOT NULL,
            used_ms         INTEGER
        );
        CREATE INDEX attachments_sha256 ON attachments (sha256);
        CREATE INDEX attachments_conversation ON attachments (conversation_id);
        CREATE INDEX attachments_unused ON attachments (created_ms) WHERE used_ms IS NULL;
        CREATE TABLE message_attachments (
            message_id      TEXT NOT NULL,
            position        INTEGER NOT NULL,
            attachment_id   TEXT NOT NULL,
            PRIMARY KEY (message_id, position)
        );",
    ),
    // 7: read marks, per agent and conversation: the last event `seq` the agent has read.
    // Visitor messages after it are the agent's unread ones. Erasing a conversation takes
    // its marks along.
    M::up(
        "CREATE TABLE reads (
            agent_email     TEXT NOT NULL,
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            seq             INTEGER NOT NULL,
            at              TEXT NOT NULL,
            PRIMARY KEY (agent_email, conversation_id)
        ) WITHOUT ROWID;
        CREATE INDEX reads_conversation ON reads (conversation_id);",
    ),
    // 8: contact fields (`[[contact_field]]` of a bot): the visitor's own values, kept
    // across their conversations. Erasing the visitor takes them along.
    M::up(
        "CREATE TABLE contact_values (
            visitor_id TEXT NOT NULL REFERENCES visitors (id) ON DELETE CASCADE,
            field      TEXT NOT NULL,
            value      TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (visitor_id, field)
        ) WITHOUT ROWID;",
    ),
    // 9: page views the widget reports, kept for `pageview_retention`. A visitor may now
    // exist without a conversation (their token only); erasing them takes these along.
    M::up(
        "CREATE TABLE pageviews (
            id         INTEGER PRIMARY KEY,
            visitor_id TEXT NOT NULL REFERENCES visitors (id) ON DELETE CASCADE,
            url        TEXT NOT NULL,
            title      TEXT,
            referrer   TEXT,
            at         TEXT NOT NULL
        );
        CREATE INDEX pageviews_visitor ON pageviews (visitor_id);
        CREATE INDEX pageviews_at ON pageviews (at);",
    ),
    // 10: what the server learnt of an upload's content: the type of its preview (a smaller,
    // re-encoded picture kept beside the file, `store::previews`; NULL when none was made)
    // and the length of a recording read from its header (`store::media`).
    M::up(
        "ALTER TABLE attachments ADD COLUMN preview TEXT;
        ALTER TABLE attachments ADD COLUMN duration_ms INTEGER;",
    ),
    // 11: messages live in the event log (issue #15). A message was written twice, as its
    // `message.created`/`note.created` event and as a `messages` row with two more indexes
    // (its id, and `(conversation_id, client_id)`), each a page written per message at a
    // different place. The event already holds the message's id, author and text; the
    // client's id moves into a column of the event, and `messages` becomes a view over the
    // log, so everything that reads it reads the same rows. The search index is rebuilt
    // over the view, keyed by `seq`; exactness of `client_id` retries comes from the
    // writer (`engine::persist::ClientIds`), not from a unique index.
    M::up(
        "ALTER TABLE events ADD COLUMN client_id TEXT;
        UPDATE events SET client_id = m.client_id,
               data = CASE WHEN json_extract(events.data, '$.message_id') IS m.id THEN events.data
                           ELSE json_set(events.data, '$.message_id', m.id) END
          FROM messages m WHERE m.seq = events.seq;
        DROP TABLE messages_fts;
        DROP TABLE messages;
        CREATE VIEW messages (id, conversation_id, seq, kind, author, text, client_id, at) AS
          SELECT json_extract(data, '$.message_id'), conversation_id, seq,
                 CASE type WHEN 'note.created' THEN 'note' ELSE json_extract(data, '$.author') END,
                 json_extract(data, '$.agent'), json_extract(data, '$.text'), client_id, at
          FROM events WHERE type IN ('message.created', 'note.created');
        CREATE VIRTUAL TABLE messages_fts USING fts5 (
            text, content = 'messages', content_rowid = 'seq'
        );
        INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
        INSERT INTO messages_fts (messages_fts, rank) VALUES ('secure-delete', 1);",
    ),
    // 12: the log by conversation is indexed by the writer in batches (issue #15): the
    // index SQLite kept on `events (conversation_id, seq)` wrote about four pages per
    // message. `event_index` holds the entries up to `event_index_mark.upto`; the views
    // read a conversation's events (and messages) from it and, above the mark, from the log
    // (see `store::event_index`).
    M::up(
        "CREATE TABLE event_index (
            conversation_id TEXT NOT NULL,
            seq             INTEGER NOT NULL,
            PRIMARY KEY (conversation_id, seq)
        ) WITHOUT ROWID;
        CREATE TABLE event_index_mark (upto INTEGER NOT NULL);
        INSERT INTO event_index (conversation_id, seq)
          SELECT conversation_id, seq FROM events WHERE conversation_id IS NOT NULL
          ORDER BY conversation_id, seq;
        INSERT INTO event_index_mark (upto) SELECT coalesce(max(seq), 0) FROM events;
        DROP INDEX events_conversation;
        CREATE VIEW conversation_events
            (seq, conversation_id, bot, type, at, visitor_visible, data, client_id) AS
          SELECT i.seq, i.conversation_id, e.bot, e.type, e.at, e.visitor_visible, e.data,
                 e.client_id
          FROM event_index i JOIN events e ON e.seq = i.seq
          UNION ALL
          SELECT seq, conversation_id, bot, type, at, visitor_visible, data, client_id
          FROM events WHERE seq > (SELECT upto FROM event_index_mark);
        CREATE VIEW conversation_messages
            (id, conversation_id, seq, kind, author, text, client_id, at) AS
          SELECT json_extract(data, '$.message_id'), conversation_id, seq,
                 CASE type WHEN 'note.created' THEN 'note' ELSE json_extract(data, '$.author') END,
                 json_extract(data, '$.agent'), json_extract(data, '$.text'), client_id, at
          FROM conversation_events WHERE type IN ('message.created', 'note.created');",
    ),
    // 13: an agent's "Take video calls" is kept beside "Accept chats" (it was memory only,
    // and on replicas a replica started later did not know it).
    M::up("ALTER TABLE agents ADD COLUMN video INTEGER NOT NULL DEFAULT 1;"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
    }
}
