//! `GET /healthz`: is the server up, can it store, which config revision is live, and did
//! the last edit fail.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

/// `status` is `ok`, or `degraded` while the database cannot be written (reads and open
/// sockets still work). The answer is `200` either way: a load balancer that took the one
/// server out would cut those too, and there is no other server to send the traffic to.
pub async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let live = state.live.load();
    let errors = live.error.as_deref().unwrap_or_default();
    let config_error = (!errors.is_empty()).then(|| {
        errors
            .iter()
            .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message))
            .collect::<Vec<_>>()
            .join("\n")
    });
    // SQLite's writer watches its own writes and the disk; on PostgreSQL the database's
    // health is its operators' (a failing write answers 503 there).
    let health = state.engine.writer().map(|w| w.health());
    let failing = health.as_ref().and_then(|h| h.failing());
    Json(json!({
        "status": if failing.is_some() { "degraded" } else { "ok" },
        "store": {
            "kind": state.store().kind(),
            "writable": failing.is_none(),
            "error": failing.as_ref().map(|f| f.reason.clone()),
            "failing_since": failing.as_ref().map(|f| f.since),
            "free_bytes": health.as_ref().and_then(|h| h.free_bytes()),
            "low_space": health.as_ref().is_some_and(|h| h.low_space()),
        },
        "config_revision": live.revision.as_ref().map(|r| r.number),
        "config_hash": live.revision.as_ref().map(|r| r.hash.clone()),
        "config_error": config_error,
        "config_errors": errors,
        "bots": live.bundle.bots.keys().collect::<Vec<_>>(),
        // The widget's versioned URL, for the snippet: cached by browsers for a year.
        "widget_js": super::assets::widget_js_path(),
    }))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<String, super::error::AppError> {
    if let Some(expected) = state.settings.metrics_token.as_deref()
        && !crate::auth::bearer_is(&headers, expected)
    {
        return Err(super::error::AppError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the metrics token is required (Authorization: Bearer …)",
        ));
    }
    let live = state.live.load();
    let engine = state.engine.clone();
    let outbox = state
        .store()
        .outbox_counts()
        .await
        .map_err(super::error::AppError::internal)?;
    let statuses = engine
        .store()
        .conversations_by_status()
        .await
        .map_err(super::error::AppError::internal)?;
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, samples: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in samples {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    metric(
        "livechat_config_revision",
        "The live config revision.",
        "gauge",
        vec![(
            String::new(),
            live.revision.as_ref().map_or(0.0, |r| r.number as f64),
        )],
    );
    metric(
        "livechat_config_error",
        "1 while the last config edit was refused.",
        "gauge",
        vec![(String::new(), if live.error.is_some() { 1.0 } else { 0.0 })],
    );
    metric(
        "livechat_conversations",
        "Conversations by status.",
        "gauge",
        statuses
            .into_iter()
            .map(|(status, n)| (format!("{{status=\"{status}\"}}"), n as f64))
            .collect(),
    );
    metric(
        "livechat_open_conversations",
        "Conversations the engine holds in memory.",
        "gauge",
        vec![(String::new(), engine.open_conversations() as f64)],
    );
    metric(
        "livechat_event_subscribers",
        "Open event streams (WebSockets).",
        "gauge",
        vec![(String::new(), engine.hub().subscribers() as f64)],
    );
    if engine.readers().is_none() {
        // PostgreSQL: ephemeral frames go to the other replicas, best effort.
        metric(
            "livechat_ephemeral_frames_dropped_total",
            "Ephemeral frames (typing, call signalling) not sent to the other replicas.",
            "counter",
            vec![(String::new(), engine.hub().relay_dropped() as f64)],
        );
    }
    let (groups, jobs) = engine.writer().map_or((0, 0), |w| w.counts());
    metric(
        "livechat_group_commits_total",
        "Transactions the writer committed; each holds every write that was waiting.",
        "counter",
        vec![(String::new(), groups as f64)],
    );
    metric(
        "livechat_group_commit_writes_total",
        "Writes (messages, state changes) in those transactions.",
        "counter",
        vec![(String::new(), jobs as f64)],
    );
    let health = engine.writer().map(|w| w.health());
    let failing = health.as_ref().and_then(|h| h.failing());
    metric(
        "livechat_store_writable",
        "1 while the database can be written, 0 while writes fail (disk full, I/O error).",
        "gauge",
        vec![(String::new(), if failing.is_none() { 1.0 } else { 0.0 })],
    );
    if let Some(health) = &health
        && let (Some(free), Some(total)) = (health.free_bytes(), health.total_bytes())
    {
        metric(
            "livechat_data_dir_free_bytes",
            "Free space of the data directory's file system, as of the last check.",
            "gauge",
            vec![(String::new(), free as f64)],
        );
        metric(
            "livechat_data_dir_size_bytes",
            "Size of the data directory's file system.",
            "gauge",
            vec![(String::new(), total as f64)],
        );
        metric(
            "livechat_data_dir_low_space",
            "1 while the free space is below low_space_warning.",
            "gauge",
            vec![(String::new(), if health.low_space() { 1.0 } else { 0.0 })],
        );
    }
    let mut outbox_samples = Vec::new();
    for kind in ["mail", "webhook"] {
        for status in ["pending", "sent", "dead"] {
            let n = outbox[kind][status].as_i64().unwrap_or(0);
            outbox_samples.push((format!("{{kind=\"{kind}\",status=\"{status}\"}}"), n as f64));
        }
    }
    metric(
        "livechat_outbox",
        "Mail and webhook calls by status; dead letters failed for good.",
        "gauge",
        outbox_samples,
    );
    Ok(out)
}
