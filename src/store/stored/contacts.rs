//! Contact field values through the store interface: `store::contacts` on SQLite,
//! `store::postgres::contacts` on PostgreSQL. They are written with the `contact.updated`
//! event that carries them, by the transition's own write.

use std::collections::BTreeMap;

use crate::store::contacts;
use crate::store::handle::client;
use crate::store::postgres::contacts as pg;
use crate::store::{Store, StoreError};

impl Store {
    /// A visitor's values by field name, fields no longer declared included.
    pub async fn contact_values(
        &self,
        visitor_id: &str,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let id = visitor_id.to_string();
                db.read(move |c| contacts::of_visitor(c, &id)).await
            }
            Store::Postgres(pg) => pg::of_visitor(&client(pg).await?, visitor_id).await,
        }
    }
}
