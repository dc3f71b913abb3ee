//! What every handler can reach, wired once by `server` and cloned per request.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::config::LiveConfig;
use crate::engine::Engine;
use crate::settings::Settings;

/// The shared state of the HTTP layer. Handlers take the whole of it; an extractor that
/// needs less asks for its part by `FromRef` (see [`Sessions`]).
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub live: LiveConfig,
    pub engine: Engine,
    pub limits: Arc<super::limits::Limits>,
    /// Held while the live config changes (a reload of the bundle directory, a revision
    /// taken from the database), so that two changes never interleave and the live revision
    /// never goes back to a lower number.
    pub config_changes: Arc<std::sync::Mutex<()>>,
    /// The hash of the bundle this server last read from its directory (which may not be
    /// the one it serves: on PostgreSQL a replica behind the live revision serves the
    /// database's). A read that differs from it is an edit of the directory.
    pub bundle_read: Arc<std::sync::Mutex<Option<String>>>,
    /// The key of signed attachment links (`Store::link_key`): the same on every replica of
    /// one PostgreSQL database, and across restarts.
    pub link_key: Arc<[u8; 32]>,
}

impl AppState {
    /// The store interface: whichever database the server runs on.
    pub fn store(&self) -> &crate::store::Store {
        self.engine.store()
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
