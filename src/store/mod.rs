//! SQLite storage: one database file in the data directory, WAL mode, embedded migrations.
