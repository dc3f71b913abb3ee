//! Whether the store can be written, as the writer last found it, and how much room the
//! data directory has left: what `/healthz` and `/metrics` report.
//!
//! The writer records the outcome of each group commit here. The [`watch`] task looks at the
//! free space every [`CHECK_EVERY`], warns in the log when it goes below the threshold, and
//! while writes fail it tries a small write now and then, so that the health turns back to
//! `ok` by itself once there is room again, also on a server that nobody writes to.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

use super::writer::WeakWriter;
pub use crate::settings::SpaceThreshold as Threshold;

/// How often the free space is looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(30);
/// How often a write is tried while writes fail.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Free space below which no write is tried: a small one might fit where the clients' do not,
/// and turn the health back while their writes still fail.
const PROBE_ROOM: u64 = 1 << 20;
/// How often the low-space warning is repeated while the space stays low.
const WARN_AGAIN_EVERY: Duration = Duration::from_secs(300);

/// `u64::MAX` in [`Health::free_bytes`]: not measured (yet, or not on this system).
const UNKNOWN: u64 = u64::MAX;

/// Since when and why writes fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    pub reason: String,
    pub since: Timestamp,
}

/// Shared by the writer (which records) and whoever reports.
pub struct Health {
    failing: Mutex<Option<Failing>>,
    free_bytes: AtomicU64,
    total_bytes: AtomicU64,
    low: std::sync::atomic::AtomicBool,
    /// Woken when writes start failing, so the space is looked at at once.
    changed: tokio::sync::Notify,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            failing: Mutex::new(None),
            free_bytes: AtomicU64::new(UNKNOWN),
            total_bytes: AtomicU64::new(UNKNOWN),
            low: Default::default(),
            changed: tokio::sync::Notify::new(),
        }
    }
}

impl Health {
    /// `None` while writes succeed.
    pub fn failing(&self) -> Option<Failing> {
        self.lock().clone()
    }

    /// Free bytes of the data directory's file system (for an unprivileged process), as of
    /// the last check; `None` before the first one.
    pub fn free_bytes(&self) -> Option<u64> {
        Some(self.free_bytes.load(Ordering::Relaxed)).filter(|n| *n != UNKNOWN)
    }

    /// The size of that file system.
    pub fn total_bytes(&self) -> Option<u64> {
        Some(self.total_bytes.load(Ordering::Relaxed)).filter(|n| *n != UNKNOWN)
    }

    /// Whether the free space was below the warning threshold at the last check.
    pub fn low_space(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// A group failed to commit: logged once when writes start failing, not per group.
    /// `unavailable`: the storage's failure (clients get 503), else one of ours (500).
    pub(super) fn write_failed(&self, reason: &str, unavailable: bool) {
        let mut failing = self.lock();
        if failing.is_none() {
            let answer = if unavailable {
                "503 storage_unavailable"
            } else {
                "500 internal"
            };
            tracing::error!(
                "the database cannot be written: {reason}; writes answer {answer} until it \
                 can (reads go on)"
            );
            *failing = Some(Failing {
                reason: reason.to_string(),
                since: Timestamp::now(),
            });
            self.changed.notify_one();
        } else {
            tracing::debug!("a group commit failed again: {reason}");
        }
    }

    /// A group committed.
    pub(super) fn write_succeeded(&self) {
        let mut failing = self.lock();
        if let Some(was) = failing.take() {
            let since = Timestamp::now().duration_since(was.since);
            tracing::info!(
                "the database can be written again (writes failed for {:.1} s)",
                since.as_secs_f64()
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Failing>> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn megabytes(n: u64) -> String {
    format!("{:.1} MB", n as f64 / 1e6)
}

/// (free, total) bytes of the file system holding `dir`, free as an unprivileged process
/// may use it (root's reserve left out).
#[cfg(unix)]
pub fn disk_space(dir: &Path) -> std::io::Result<(u64, u64)> {
    let st = rustix::fs::statvfs(dir)?;
    Ok((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

#[cfg(not(unix))]
pub fn disk_space(_dir: &Path) -> std::io::Result<(u64, u64)> {
    Err(std::io::Error::other("not measured on this system"))
}

/// Looks at the data directory's free space now, every [`CHECK_EVERY`] and whenever writes
/// start failing; while they fail, tries a write every [`PROBE_EVERY`] (when there is
/// [`PROBE_ROOM`]). Runs until the
/// writer is dropped.
pub async fn watch(writer: WeakWriter, data_dir: PathBuf, threshold: Threshold) {
    let health = writer.health().clone();
    let mut warned: Option<std::time::Instant> = None;
    while writer.upgrade().is_some() {
        let dir = data_dir.clone();
        match tokio::task::spawn_blocking(move || disk_space(&dir)).await {
            Ok(Ok((free, total))) => {
                health.free_bytes.store(free, Ordering::Relaxed);
                health.total_bytes.store(total, Ordering::Relaxed);
                let limit = threshold.bytes(total);
                let low = free < limit;
                health.low.store(low, Ordering::Relaxed);
                if low && warned.is_none_or(|at| at.elapsed() >= WARN_AGAIN_EVERY) {
                    tracing::warn!(
                        "low disk space: {} free of {} where the database is ({}), below \
                         the warning threshold of {threshold}; writes fail once it is full",
                        megabytes(free),
                        megabytes(total),
                        data_dir.display()
                    );
                    warned = Some(std::time::Instant::now());
                } else if !low && warned.take().is_some() {
                    tracing::info!(
                        "disk space is back above the warning threshold: {} free",
                        megabytes(free)
                    );
                }
            }
            Ok(Err(e)) => tracing::debug!("cannot measure the free disk space: {e}"),
            Err(_) => return,
        }
        let wait = if health.failing().is_some() {
            // A real write: it turns the health back once the storage takes writes again,
            // without waiting for a client to write.
            let room = health.free_bytes().is_none_or(|free| free >= PROBE_ROOM);
            if let Some(writer) = writer.upgrade().filter(|_| room) {
                let _ = writer.probe().await;
            }
            PROBE_EVERY
        } else {
            CHECK_EVERY
        };
        let _ = tokio::time::timeout(wait, health.changed.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_directory_has_a_size_and_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = disk_space(dir.path()).unwrap();
        assert!(total > 0 && free <= total, "{free} of {total}");
    }
}
