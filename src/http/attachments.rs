//! Attachments over HTTP: uploads by visitors and agents, each file's own URL (served inert),
//! and short-lived signed links for `<img>` tags in the widget.
//!
//! An upload streams to a temporary file while it is hashed and counted; over the bot's size
//! limit it stops at once and nothing stays. What the file is comes from its first bytes
//! (`store::attachments::sniff`); only raster images, audio and video are ever served
//! inline, everything else as a download of `application/octet-stream`, and every answer
//! carries `nosniff` and `Content-Security-Policy: sandbox`.

use std::path::PathBuf;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::AppState;
use super::error::{ApiQuery, AppError, blocking};
use super::visitor::AuthVisitor;
use crate::auth::AuthAgent;
use crate::chat::conversation::{Attachment, MAX_ATTACHMENTS};
use crate::config::schema::AttachmentKind;
use crate::engine::AgentRef;
use crate::store::attachments::{self as files, Stored};
use crate::store::stored::contents::Content;
use crate::store::{media, previews};

/// Longest file name kept, in characters.
const MAX_NAME_CHARS: usize = 200;
/// How long a signed link lasts unless the caller asks for less (seconds).
const LINK_TTL: i64 = 600;

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    #[serde(default)]
    name: Option<String>,
}

/// Who sends a file, and the conversation it counts against.
enum Uploader {
    Visitor { id: String, conversation: String },
    Agent { email: String, conversation: String },
}

/// The most of an upload held in memory on its way to the file.
const WRITE_CHUNK: usize = 256 * 1024;

/// `POST /api/v1/visitor/attachments`: the body is the file.
pub async fn visitor_upload(
    State(state): State<AppState>,
    AuthVisitor(visitor): AuthVisitor,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let conversation = state.engine.visitor_conversation(&visitor).await?;
    let who = Uploader::Visitor {
        id: visitor.id.clone(),
        conversation,
    };
    receive(&state, &visitor.bot, who, q.name, &headers, body).await
}

/// `POST /api/v1/conversations/{id}/attachments`: an agent who may see the conversation.
pub async fn agent_upload(
    State(state): State<AppState>,
    agent: AuthAgent,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let conv = state.engine.agent_may_see(&agent_ref(&agent), &id).await?;
    let who = Uploader::Agent {
        email: agent.email.clone(),
        conversation: conv.id.clone(),
    };
    receive(&state, &conv.bot, who, q.name, &headers, body).await
}

fn agent_ref(agent: &AuthAgent) -> AgentRef {
    AgentRef {
        email: agent.email.clone(),
        admin: agent.is_admin(),
    }
}

/// A temporary file that is removed unless it was put in place.
struct Temp(Option<PathBuf>);

impl Drop for Temp {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn too_large(max: u64) -> AppError {
    AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "file_too_large",
        format!("files may be at most {max} bytes"),
    )
}

fn conversation_full(total: u64) -> AppError {
    AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "conversation_full",
        format!("the files of one conversation may be at most {total} bytes together"),
    )
}

fn io_error(e: std::io::Error) -> AppError {
    AppError::storage_unavailable(format!("cannot write an upload: {e}"))
}

async fn receive(
    state: &AppState,
    bot: &str,
    who: Uploader,
    name: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let rules = state
        .live
        .load()
        .bundle
        .bots
        .get(bot)
        .map(|b| b.header.attachments.clone())
        .unwrap_or_default();
    if !rules.enabled {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "attachments_disabled",
            "this chat takes no files",
        ));
    }
    let max = rules.max_size.get();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    let data_dir = state.settings.data_dir.clone();
    let reserve = state.settings.attachment_reserve;
    let dir = data_dir.clone();
    let (free, total) =
        blocking(move || crate::store::health::disk_space(&dir).map_err(AppError::internal))
            .await?;
    if free < reserve.bytes(total).saturating_add(declared.unwrap_or(max)) {
        return Err(AppError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage_reserve",
            "the server is low on disk space and takes no files for now; messages still go through",
        ));
    }
    let (visitor_id, agent_email, conversation) = match who {
        Uploader::Visitor { id, conversation } => (Some(id), None, conversation),
        Uploader::Agent {
            email,
            conversation,
        } => (None, Some(email), conversation),
    };
    let used = state
        .store()
        .attachment_bytes(
            Some(&conversation),
            visitor_id.as_deref(),
            agent_email.as_deref(),
        )
        .await?;
    let limit = rules.conversation_total.get();
    if used.saturating_add(declared.unwrap_or(0)) > limit {
        return Err(conversation_full(limit));
    }

    let temp_dir = files::temp_dir(&data_dir);
    tokio::fs::create_dir_all(&temp_dir)
        .await
        .map_err(io_error)?;
    let mut temp = Temp(Some(
        temp_dir.join(format!("{}.part", crate::ids::new_id("u"))),
    ));
    let path = temp.0.clone().expect("just set");
    let mut file = tokio::fs::File::create(&path).await.map_err(io_error)?;
    // Each write hands at most this much to a blocking thread (tokio's default is 2 MiB).
    file.set_max_buf_size(WRITE_CHUNK);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut head = Vec::with_capacity(files::SNIFF_BYTES);
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            AppError::bad_request("invalid_body", format!("the file could not be read: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        size += data.len() as u64;
        if size > max {
            return Err(too_large(max));
        }
        if head.len() < files::SNIFF_BYTES {
            let take = (files::SNIFF_BYTES - head.len()).min(data.len());
            head.extend_from_slice(&data[..take]);
        }
        hasher.update(&data);
        file.write_all(&data).await.map_err(io_error)?;
    }
    if size == 0 {
        return Err(AppError::bad_request("empty_file", "the file is empty"));
    }
    file.sync_all().await.map_err(io_error)?;
    drop(file);
    if used.saturating_add(size) > limit {
        return Err(conversation_full(limit));
    }
    let sniffed = files::sniff(&head);
    if !rules.types.contains(&sniffed.kind) {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "type_not_allowed",
            "this chat does not take files of this type",
        ));
    }
    let sha256 = hex::encode(hasher.finalize());
    // What the header tells (a picture's size, a recording's length), then the preview:
    // reused when this content has one already, else made within the decoder's bounds.
    let (source, mime) = (path.clone(), sniffed.mime);
    let (size_px, duration_ms) = blocking(move || {
        Ok::<_, AppError>((
            media::dimensions(&source, &head, mime),
            (mime == "audio/wav")
                .then(|| media::wav_duration_ms(&source))
                .flatten(),
        ))
    })
    .await?;
    let stored_preview = state.store().stored_preview(&data_dir, &sha256).await?;
    let mut preview_temp = Temp(None);
    let preview = match stored_preview {
        Some(mime) => Some(mime),
        None if sniffed.kind == AttachmentKind::Image => {
            let out = path.with_extension("preview");
            preview_temp.0 = Some(out.clone());
            let made = previews::make(path.clone(), sniffed.mime, size_px, out).await;
            if made.is_none() {
                // Whatever a failed decoder left.
                drop(std::mem::replace(&mut preview_temp, Temp(None)));
            }
            made
        }
        None => None,
    };
    let (width, height) = size_px.unzip();
    let is_agent = agent_email.is_some();
    let row = Stored {
        id: crate::ids::new_sortable_id("a"),
        name: clean_name(name.as_deref()),
        mime: sniffed.mime.to_string(),
        size,
        width,
        height,
        bot: bot.to_string(),
        visitor_id,
        agent_email,
        // An agent's upload belongs to its conversation at once; a visitor's when a
        // message of theirs first uses it.
        conversation_id: is_agent.then_some(conversation),
        created_ms: jiff::Timestamp::now().as_millisecond(),
        sha256,
        preview: preview.map(str::to_string),
        duration_ms,
    };
    let row = state
        .store()
        .record_upload(row, &data_dir, &path, preview_temp.0.as_deref())
        .await?;
    // In place (or removed, when the content was stored already): nothing to clean up.
    temp.0 = None;
    preview_temp.0 = None;
    let view = serde_json::to_value(view(&row)).map_err(AppError::internal)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// The name a client gave, made safe to keep: no directories, no control characters, not
/// empty, at most [`MAX_NAME_CHARS`].
fn clean_name(name: Option<&str>) -> String {
    let name = name.unwrap_or("");
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "file".to_string()
    } else {
        clean.to_string()
    }
}

/// An upload as clients see it (in the upload's answer and in `message.created`).
pub fn view(a: &Stored) -> Attachment {
    a.view()
}

/// Whose files a message may carry.
pub enum Sender<'a> {
    /// Their own uploads.
    Visitor(&'a str),
    /// Files of the conversation written to: their own uploads to it, and the visitor's.
    Agent(&'a str),
}

/// The files a message refers to, checked: each one the sender's to send. An id that is
/// not is refused as unknown (whether it exists is nobody else's business).
pub async fn for_message(
    state: &AppState,
    ids: Vec<String>,
    sender: Sender<'_>,
) -> Result<Vec<Attachment>, AppError> {
    if ids.len() > MAX_ATTACHMENTS {
        return Err(AppError::bad_request(
            "invalid_input",
            format!("a message carries at most {MAX_ATTACHMENTS} files"),
        ));
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row = state.store().attachment(&id).await?;
        let mine = row.as_ref().is_some_and(|a| match &sender {
            Sender::Visitor(visitor) => a.visitor_id.as_deref() == Some(*visitor),
            Sender::Agent(conversation) => a.conversation_id.as_deref() == Some(*conversation),
        });
        match row {
            Some(a) if mine => out.push(view(&a)),
            _ => {
                return Err(AppError::bad_request(
                    "unknown_attachment",
                    format!("no attachment `{id}` to send here; upload the file first"),
                ));
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
pub struct FetchQuery {
    #[serde(default)]
    expires: Option<i64>,
    #[serde(default)]
    sig: Option<String>,
}

fn not_found() -> AppError {
    AppError::new(StatusCode::NOT_FOUND, "not_found", "no such attachment")
}

fn link_mac(key: &[u8; 32], id: &str, expires: i64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{expires}").as_bytes());
    mac
}

fn signed_ok(key: &[u8; 32], id: &str, q: &FetchQuery) -> bool {
    let (Some(expires), Some(sig)) = (q.expires, q.sig.as_deref()) else {
        return false;
    };
    if expires < jiff::Timestamp::now().as_second() {
        return false;
    }
    let Ok(sig) = hex::decode(sig) else {
        return false;
    };
    link_mac(key, id, expires).verify_slice(&sig).is_ok()
}

/// Whether the request's visitor may see the file: theirs, or of their conversation.
async fn visitor_may_see(state: &AppState, token: &str, a: &Stored) -> bool {
    let Ok(visitor) = state.engine.visitor(token).await else {
        return false;
    };
    if a.visitor_id.as_deref() == Some(visitor.id.as_str()) {
        return true;
    }
    match &a.conversation_id {
        Some(conv) => state
            .engine
            .peek(conv)
            .await
            .is_ok_and(|c| c.visitor_id == visitor.id),
        None => false,
    }
}

async fn agent_may_see(state: &AppState, agent: &AuthAgent, a: &Stored) -> bool {
    match &a.conversation_id {
        Some(conv) => state
            .engine
            .agent_may_see(&agent_ref(agent), conv)
            .await
            .is_ok(),
        None => a.agent_email.as_deref() == Some(agent.email.as_str()),
    }
}

/// `GET /api/v1/attachments/{id}`: the file, for the agents who may see its conversation,
/// its visitor (token, or a signed link), and nobody else (404, as for no such file).
pub async fn fetch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FetchQuery>,
    request: Request,
) -> Result<Response, AppError> {
    let (parts, a) = allowed(&state, id, &q, request).await?;
    let content = state
        .store()
        .content(&state.settings.data_dir, &a.sha256, false)
        .await?
        .ok_or_else(not_found)?;
    let file = Served {
        mime: &a.mime,
        name: &a.name,
    };
    serve(content, file, parts.headers.get(header::RANGE)).await
}

/// `GET /api/v1/attachments/{id}/preview`: the picture's preview (made by the server, no
/// metadata), for whoever may see the file; 404 when it has none.
pub async fn fetch_preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FetchQuery>,
    request: Request,
) -> Result<Response, AppError> {
    let (parts, a) = allowed(&state, id, &q, request).await?;
    let mime = a.preview.as_deref().ok_or_else(not_found)?;
    let content = state
        .store()
        .content(&state.settings.data_dir, &a.sha256, true)
        .await?
        .ok_or_else(not_found)?;
    let ext = if mime == "image/png" { "png" } else { "jpg" };
    let stem = a.name.rsplit_once('.').map_or(a.name.as_str(), |(s, _)| s);
    let name = format!("{stem}-preview.{ext}");
    let file = Served { mime, name: &name };
    serve(content, file, parts.headers.get(header::RANGE)).await
}

/// The file of `id` and the request's parts, when the caller may see it; else 404.
async fn allowed(
    state: &AppState,
    id: String,
    q: &FetchQuery,
    request: Request,
) -> Result<(axum::http::request::Parts, Stored), AppError> {
    let (mut parts, _) = request.into_parts();
    let a = state.store().attachment(&id).await?.ok_or_else(not_found)?;
    let mut allowed = signed_ok(&state.link_key, &a.id, q);
    if !allowed && let Some(token) = crate::auth::bearer(&parts.headers) {
        allowed = visitor_may_see(state, token, &a).await;
    }
    if !allowed && let Ok(agent) = AuthAgent::from_request_parts(&mut parts, state).await {
        allowed = agent_may_see(state, &agent, &a).await;
    }
    if !allowed {
        return Err(not_found());
    }
    Ok((parts, a))
}

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    /// Seconds the link lasts (at most, and by default, ten minutes).
    #[serde(default)]
    ttl: Option<i64>,
}

/// `GET /api/v1/visitor/attachments/{id}/link`: a signed URL of a file the visitor may see,
/// for an `<img>`, `<audio>` or `<video>` (which send no token).
pub async fn visitor_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    AuthVisitor(_): AuthVisitor,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LinkQuery>,
) -> Result<Json<Value>, AppError> {
    let a = state.store().attachment(&id).await?.ok_or_else(not_found)?;
    let token = crate::auth::bearer(&headers).unwrap_or("");
    if !visitor_may_see(&state, token, &a).await {
        return Err(not_found());
    }
    let ttl = q.ttl.unwrap_or(LINK_TTL).clamp(1, LINK_TTL);
    let expires = jiff::Timestamp::now().as_second() + ttl;
    let sig = hex::encode(
        link_mac(&state.link_key, &a.id, expires)
            .finalize()
            .into_bytes(),
    );
    let mut answer = json!({
        "url": format!("/api/v1/attachments/{}?expires={expires}&sig={sig}", a.id),
        "expires": expires,
    });
    // One signature opens the file and its preview (which shows no more than the file).
    if a.preview.is_some() {
        answer["preview_url"] = json!(format!(
            "/api/v1/attachments/{}/preview?expires={expires}&sig={sig}",
            a.id
        ));
    }
    Ok(Json(answer))
}

/// `filename*` of `Content-Disposition` (RFC 5987), with a plain ASCII `filename` first.
fn disposition(inline: bool, name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let kind = if inline { "inline" } else { "attachment" };
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or(HeaderValue::from_static("attachment"))
}

/// One range of `bytes=a-b`, `bytes=a-` or `bytes=-n` within `size`; `Err` when it is not
/// satisfiable; `Ok(None)` for no range or one we do not serve (several): the whole file.
fn range(value: Option<&HeaderValue>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = (start.trim(), end.trim());
    let (first, last) = if start.is_empty() {
        let n: u64 = end.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let first: u64 = start.parse().map_err(|_| ())?;
        let last = if end.is_empty() {
            size - 1
        } else {
            end.parse::<u64>().map_err(|_| ())?.min(size - 1)
        };
        (first, last)
    };
    if first > last || first >= size {
        return Err(());
    }
    Ok(Some((first, last)))
}

/// What a response says of the file it sends.
struct Served<'a> {
    mime: &'a str,
    name: &'a str,
}

async fn serve(
    content: Content,
    a: Served<'_>,
    range_header: Option<&HeaderValue>,
) -> Result<Response, AppError> {
    let sniffed_inline = ["image/", "audio/", "video/"]
        .iter()
        .any(|p| a.mime.starts_with(p));
    let size = content.size();
    let mut headers = HeaderMap::new();
    let content_type = if sniffed_inline {
        HeaderValue::from_str(a.mime)
            .unwrap_or(HeaderValue::from_static("application/octet-stream"))
    } else {
        HeaderValue::from_static("application/octet-stream")
    };
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(
        header::CONTENT_DISPOSITION,
        disposition(sniffed_inline, a.name),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let (status, first, len) = match range(range_header, size) {
        Ok(None) => (StatusCode::OK, 0, size),
        Ok(Some((first, last))) => {
            let value = format!("bytes {first}-{last}/{size}");
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&value).map_err(AppError::internal)?,
            );
            (StatusCode::PARTIAL_CONTENT, first, last - first + 1)
        }
        Err(()) => {
            let value = format!("bytes */{size}");
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&value).map_err(AppError::internal)?,
            );
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response());
        }
    };
    let stream = match content.read(first, len).await {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(AppError::internal(e)),
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok((status, headers, Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(range(None, 10), Ok(None));
        assert_eq!(range(Some(&h("bytes=0-3")), 10), Ok(Some((0, 3))));
        assert_eq!(range(Some(&h("bytes=4-")), 10), Ok(Some((4, 9))));
        assert_eq!(range(Some(&h("bytes=-3")), 10), Ok(Some((7, 9))));
        assert_eq!(range(Some(&h("bytes=5-100")), 10), Ok(Some((5, 9))));
        assert_eq!(range(Some(&h("bytes=10-")), 10), Err(()));
        assert_eq!(range(Some(&h("bytes=0-1,3-4")), 10), Ok(None));
    }

    #[test]
    fn names_lose_their_directories_and_controls() {
        assert_eq!(clean_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean_name(Some("C:\\x\\a\u{0}b.png")), "ab.png");
        assert_eq!(clean_name(Some("..")), "file");
        assert_eq!(clean_name(None), "file");
    }
}
