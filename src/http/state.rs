//! What every handler can reach, wired once by `server` and cloned per request.

use std::sync::Arc;

use axum::extract::FromRef;
use rusqlite::Connection;

use super::error::AppError;

use crate::config::LiveConfig;
use crate::engine::Engine;
use crate::settings::Settings;
use crate::store::StoreError;

/// The shared state of the HTTP layer. Handlers take the whole of it; an extractor that
/// needs less asks for its part by `FromRef` (see [`Sessions`]).
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub live: LiveConfig,
    pub engine: Engine,
    pub limits: Arc<super::limits::Limits>,
}

impl AppState {
    /// The store interface: whichever database the server runs on.
    pub fn store(&self) -> &crate::store::Store {
        self.engine.store()
    }

    /// A query on the store's readers, off the async workers.
    pub async fn read<T, E, F>(&self, query: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        StoreError: From<E>,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let read = self.engine.readers().read(move |conn| Ok(query(conn)?));
        Ok(read.await?)
    }

    /// Writes through the one writer; answers once they are durable.
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        StoreError: From<E>,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let write = self.engine.writer().run(move |conn| Ok(work(conn)?));
        Ok(write.await?)
    }
}

/// What the agent extractor needs: the live roster, and the store for sessions.
#[derive(Clone)]
pub struct Sessions {
    pub live: LiveConfig,
    pub store: crate::store::Store,
}

impl FromRef<AppState> for Sessions {
    fn from_ref(state: &AppState) -> Sessions {
        Sessions {
            live: state.live.clone(),
            store: state.engine.store().clone(),
        }
    }
}
