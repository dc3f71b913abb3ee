//! Uploads during the chat load (`chat --uploaders N`): N of the chats' visitors each send
//! `--uploads-each` files of `--upload-size` bytes (distinct contents, so each one is really
//! written), all at once, starting a third into the steady phase. The figures: uploads per
//! second, the chat's delivery latency for messages sent while uploads ran and for the rest
//! of the same run, and the server's resident memory before, at its peak during and after
//! the uploads (files stream to disk, so it should barely move).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};

use super::client::Api;
use super::machine;
use super::report::Section;
use super::stats::Samples;

#[derive(Debug, Clone, Copy)]
pub struct UploadOpts {
    pub uploaders: usize,
    pub size: usize,
    pub each: usize,
}

/// What the upload phase saw.
#[derive(Default)]
pub struct Uploads {
    /// When it ran, in the chat's clock (microseconds since its start).
    pub window_us: (u64, u64),
    pub elapsed: Duration,
    pub ok: usize,
    pub errors: usize,
    pub first_errors: Vec<String>,
    pub round_trip: Samples,
    pub rss_before: Option<u64>,
    pub rss_peak: Option<u64>,
}

/// `size` bytes that differ for every (visitor, file): a xorshift stream.
fn content(visitor: usize, file: usize, size: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ ((visitor as u64) << 20 | file as u64);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    out
}

/// Runs the uploads of these visitors (tokens); `now_us` reads the chat's clock.
pub async fn run(
    api: &Api,
    tokens: Vec<String>,
    o: UploadOpts,
    pid: Option<u32>,
    now_us: impl Fn() -> u64,
) -> Uploads {
    let mut out = Uploads {
        rss_before: pid.and_then(machine::rss_kib),
        ..Uploads::default()
    };
    // The server's memory, sampled every 50 ms while the uploads run.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = pid.map(|pid| {
        let on = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while on.load(Ordering::Relaxed) {
                peak = machine::rss_kib(pid).unwrap_or(0).max(peak);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    });
    let from = now_us();
    let t0 = Instant::now();
    let results: Vec<(usize, Vec<String>, Samples)> = stream::iter(tokens.into_iter().enumerate())
        .map(|(v, token)| async move {
            let (mut ok, mut errors, mut times) = (0, Vec::new(), Samples::default());
            for f in 0..o.each {
                let body = content(v, f, o.size);
                let t = Instant::now();
                match api
                    .upload(&token, &format!("bench-{v}-{f}.bin"), body)
                    .await
                {
                    Ok(201) => {
                        ok += 1;
                        times.push(t.elapsed());
                    }
                    Ok(status) => errors.push(format!("visitor {v} file {f}: HTTP {status}")),
                    Err(e) => errors.push(format!("visitor {v} file {f}: {e:#}")),
                }
            }
            (ok, errors, times)
        })
        .buffer_unordered(o.uploaders.max(1))
        .collect()
        .await;
    out.elapsed = t0.elapsed();
    out.window_us = (from, now_us());
    sampling.store(false, Ordering::Relaxed);
    if let Some(s) = sampler {
        out.rss_peak = s.await.ok();
    }
    for (ok, errors, times) in results {
        out.ok += ok;
        out.errors += errors.len();
        out.first_errors.extend(
            errors
                .into_iter()
                .take(3usize.saturating_sub(out.first_errors.len())),
        );
        out.round_trip.extend(&times);
    }
    out
}

/// The section of figures: `during` and `without` are the chat's deliveries (both ways) of
/// messages sent while the uploads ran and of the rest of the run; `rss_after` is taken at
/// the end of the steady phase.
pub fn section(
    o: UploadOpts,
    u: &Uploads,
    during: &Samples,
    without: &Samples,
    rss_after: Option<u64>,
) -> Section {
    let title = format!(
        "{} visitors each uploading {} file(s) of {} bytes at once, during the chat load",
        o.uploaders, o.each, o.size
    );
    let mut s = Section::new("uploads", title);
    s.int("uploads_ok", "uploads stored (201)", u.ok as u64, "");
    let secs = u.elapsed.as_secs_f64().max(1e-9);
    s.num("upload_phase_s", "upload phase", secs, "s");
    s.num(
        "uploads_per_s",
        "uploads per second",
        u.ok as f64 / secs,
        "/s",
    );
    s.num(
        "upload_mb_per_s",
        "upload throughput",
        (u.ok * o.size) as f64 / 1e6 / secs,
        "MB/s",
    );
    s.latency(
        "upload_call",
        "upload (HTTP round trip)",
        u.round_trip.summary(),
    );
    s.latency(
        "delivery_without_uploads",
        "chat delivery without uploads",
        without.summary(),
    );
    s.latency(
        "delivery_during_uploads",
        "chat delivery during uploads",
        during.summary(),
    );
    let mib = |k: u64| k as f64 / 1024.0;
    if let Some(k) = u.rss_before {
        s.num(
            "rss_before_mib",
            "server RSS before the uploads",
            mib(k),
            "MiB",
        );
    }
    if let Some(k) = u.rss_peak {
        s.num(
            "rss_peak_mib",
            "server RSS peak during the uploads",
            mib(k),
            "MiB",
        );
    }
    if let Some(k) = rss_after {
        s.num(
            "rss_after_mib",
            "server RSS after the uploads",
            mib(k),
            "MiB",
        );
    }
    s.check(
        "uploads_all_stored",
        "every upload stored",
        u.errors == 0,
        if u.errors == 0 {
            format!("{} stored", u.ok)
        } else {
            format!("{} failed: {}", u.errors, u.first_errors.join("; "))
        },
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_differ_and_have_their_size() {
        let a = content(0, 0, 1001);
        assert_eq!(a.len(), 1001);
        assert_ne!(a, content(0, 1, 1001));
        assert_ne!(a, content(1, 0, 1001));
    }
}
