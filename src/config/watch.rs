//! Watching the live bundle directory: a saved edit becomes one "changed" signal.
//!
//! We watch the directory, not the files: editors save by writing a temporary file and
//! renaming it over the old one, which a watch on the file itself would lose. Events are
//! debounced, filtered to bundle files, and coalesced into one signal per quiet period; the
//! reload that follows compares content hashes, so a signal with nothing new costs one read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

use super::is_bundle_file;

/// How long a path must stay quiet before its events are passed on.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Keeps the watch alive; dropping it stops watching.
pub struct BundleWatcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

/// Starts watching `dir`. The receiver gets `()` after each burst of relevant changes.
pub fn watch(dir: &Path) -> notify::Result<(BundleWatcher, mpsc::UnboundedReceiver<()>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let root: PathBuf = dir.to_path_buf();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let relevant = match result {
            Ok(events) => events
                .iter()
                .flat_map(|e| e.paths.iter())
                .any(|p| is_relevant(&root, p)),
            // An error from the OS watcher: reload to be safe, the hash check makes it cheap.
            Err(errors) => {
                for e in errors {
                    tracing::warn!("watching the bundle directory: {e}");
                }
                true
            }
        };
        if relevant {
            let _ = tx.send(());
        }
    })?;
    debouncer.watch(dir, RecursiveMode::NonRecursive)?;
    Ok((
        BundleWatcher {
            _debouncer: debouncer,
        },
        rx,
    ))
}

fn is_relevant(root: &Path, path: &Path) -> bool {
    if path == root {
        return true;
    }
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(is_bundle_file)
}

/// Waits for the next change signal, then swallows any that follow within `settle`, so a
/// burst of saves across several files turns into one reload. `None` when the watch ended.
pub async fn next_change(rx: &mut mpsc::UnboundedReceiver<()>, settle: Duration) -> Option<()> {
    rx.recv().await?;
    loop {
        match tokio::time::timeout(settle, rx.recv()).await {
            Ok(Some(())) => continue,
            Ok(None) | Err(_) => return Some(()),
        }
    }
}
