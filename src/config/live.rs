//! The config the server runs on, swapped in whole: the validated bundle, the revision it
//! was recorded as, and why the last edit was refused.

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;

use super::{Bundle, Diagnostic, Sources};

/// The config the server runs on: a validated bundle, swapped in whole.
#[derive(Debug)]
pub struct Live {
    pub bundle: Arc<Bundle>,
    /// The revision this bundle was recorded as (None only before any valid bundle).
    pub revision: Option<Revision>,
    /// Why the last edit was refused; the bundle above stays live meanwhile.
    pub error: Option<Vec<Diagnostic>>,
}

/// The handle every part holds: `load()` gives the config in force now.
pub type LiveConfig = Arc<ArcSwap<Live>>;

/// A revision without its files: a line of `livechat history`. Serializes as the admin
/// API's `revision` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionSummary {
    pub number: i64,
    /// `config::hash_sources` of the bundle.
    pub hash: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// One of `SOURCES`.
    pub source: String,
    /// What changed against the revision before, like `+1 bot, ~2 agents`.
    pub summary: String,
}

/// A revision with its files. Serializes like `RevisionSummary`: the files stay out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revision {
    pub number: i64,
    pub hash: String,
    pub created_at: String,
    pub source: String,
    pub summary: String,
    /// The files: name → text.
    #[serde(skip)]
    pub bundle: Sources,
}

impl Revision {
    pub fn to_summary(&self) -> RevisionSummary {
        RevisionSummary {
            number: self.number,
            hash: self.hash.clone(),
            created_at: self.created_at.clone(),
            source: self.source.clone(),
            summary: self.summary.clone(),
        }
    }

    /// The first 12 characters of the hash, as history shows it.
    pub fn short_hash(&self) -> &str {
        short_hash(&self.hash)
    }
}

/// The first 12 characters of a hash.
pub fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
