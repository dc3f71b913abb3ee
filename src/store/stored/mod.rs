//! The store's own areas through the store interface (`store::Store`, #17): one file per
//! area of `store/`, each an `impl Store` block whose SQLite arm runs that area's function
//! (`store::reads`, …) on a reader or in the writer, unchanged, and whose PostgreSQL arm
//! runs its twin under `store::postgres`. A caller's several steps that were one writer job
//! stay one job on SQLite and are one transaction on PostgreSQL.

pub mod attachments;
pub mod contacts;
pub mod contents;
pub mod pageviews;
pub mod reads;
