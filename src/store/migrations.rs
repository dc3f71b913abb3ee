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
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
    }
}
