//! Attachments: `POST /files?name=<original name>` streams a raw body to
//! disk under a random 128-bit id; `GET /files/{id}` serves it back to any
//! signed-in user with the `Content-Type` it was uploaded with and a
//! `Content-Disposition` that names the original file (inline for images,
//! a download for everything else); `GET /files/{id}/meta` answers
//! `{"id","name","size","content_type"}` so a client can show a file's
//! name, size and type next to a message that only carries its id.
//!
//! An upload never sits in memory: its body goes frame by frame to a temp
//! file, within `--body-timeout-ms` (408 after), and at most
//! `--max-uploads-in-flight` are received at once (503 above). Downloads
//! take the token from `Authorization`, from the `cbx_files` cookie the
//! browser client sets (path `/files`, so `<img src>` needs no token in
//! its URL), or from `?token=`.
//!
//! A file uploaded with `?dm=<user id>` belongs to the DM conversation of
//! the uploader and that user: only those two may read it or its meta
//! (403 for anyone else, admins included). Room files stay readable by
//! any signed-in user.
//!
//! No client string ever reaches the filesystem: the path is the data
//! directory plus 32 hex digits the hub generated, and a request's id is
//! checked to be exactly that shape before it is used.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::{Body, HttpBody};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::auth::{self, Claims};
use crate::server::AppState;

/// Longest `Content-Type` kept.
const MAX_TYPE_BYTES: usize = 200;
/// Longest original file name kept, in characters.
const MAX_NAME_CHARS: usize = 200;
/// Types a browser may show in place; anything else is served as a
/// download (SVG is left out: it is a document, not a picture).
const INLINE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/bmp",
];
const FALLBACK_TYPE: &str = "application/octet-stream";
/// The cookie the browser client keeps its token in for `GET /files/{id}`.
pub const TOKEN_COOKIE: &str = "cbx_files";

/// What is kept next to a file's bytes.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    content_type: String,
    size: usize,
    /// The uploader's file name (`?name=`), cleaned; `None` when none was
    /// given (and for files stored before names were kept).
    #[serde(default)]
    name: Option<String>,
    /// Who uploaded it.
    owner: String,
    /// The other party when uploaded for a DM conversation (`?dm=`): only
    /// the owner and this user may read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dm: Option<String>,
    uploaded_ms: u64,
}

/// `/files` routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/files", post(upload))
        .route("/files/{id}", get(download))
        .route("/files/{id}/meta", get(describe))
}

fn files_dir(state: &AppState) -> PathBuf {
    state.config.data_dir.join("files")
}

/// True for ids this hub generates: 32 lowercase hex digits.
pub fn is_file_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True when a room file with this id was uploaded (a room message's
/// attachments must name one; a DM's file is not readable by the room).
pub fn exists(state: &AppState, id: &str) -> bool {
    if !is_file_id(id) {
        return false;
    }
    let raw = match std::fs::read(files_dir(state).join(format!("{id}.meta"))) {
        Ok(raw) => raw,
        Err(_) => return false,
    };
    serde_json::from_slice::<Meta>(&raw).is_ok_and(|m| m.dm.is_none())
}

fn error(status: StatusCode, detail: &str) -> Response {
    let code = status
        .canonical_reason()
        .unwrap_or("error")
        .to_lowercase()
        .replace(' ', "_");
    (
        status,
        Json(serde_json::json!({"error": code, "detail": detail})),
    )
        .into_response()
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= MAX_TYPE_BYTES && HeaderValue::from_str(t).is_ok())
        .unwrap_or(FALLBACK_TYPE)
        .to_owned()
}

/// The original file name from `?name=`: its last path component, cleaned
/// like a display name (no controls, no invisible or bidi characters),
/// at most [`MAX_NAME_CHARS`]. `None` when nothing usable is left.
fn original_name(query: Option<&str>) -> Option<String> {
    let raw = auth::query_param(query?, "name")?;
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let name = crate::features::names::display_name(base, MAX_NAME_CHARS).ok()?;
    (name != "." && name != "..").then_some(name)
}

/// The DM peer from `?dm=`: a user id, at most 200 bytes; `Err` when given
/// but unusable.
fn dm_peer(query: Option<&str>) -> Result<Option<String>, ()> {
    match query.and_then(|q| auth::query_param(q, "dm")) {
        None => Ok(None),
        Some(peer) if !peer.is_empty() && peer.len() <= 200 => Ok(Some(peer)),
        Some(_) => Err(()),
    }
}

impl Meta {
    /// May `sub` read this file? Anyone signed in for a room file; the two
    /// parties for a DM's.
    fn readable_by(&self, sub: &str) -> bool {
        match &self.dm {
            None => true,
            Some(peer) => sub == self.owner || sub == peer,
        }
    }
}

/// Checks a DM's `attachments` (`None` when absent): a list of at most 10
/// ids of uploaded files, each a room file or one uploaded for this very
/// conversation (by either party).
pub async fn dm_attachments(
    state: &AppState,
    list: Option<&serde_json::Value>,
    sender: &str,
    peer: &str,
) -> Result<Option<serde_json::Value>, crate::error::Refusal> {
    use crate::error::Refusal;
    let list = match list {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Array(a)) => a,
        Some(_) => return Err(Refusal::bad_request("attachments must be a list")),
    };
    if list.len() > MAX_DM_ATTACHMENTS {
        return Err(Refusal::too_large(format!(
            "at most {MAX_DM_ATTACHMENTS} attachments"
        )));
    }
    let dir = files_dir(state);
    for a in list {
        let meta = match a.as_str() {
            Some(id) => read_meta(&dir, id).await,
            None => None,
        };
        let Some(meta) = meta else {
            return Err(Refusal::bad_request(
                "attachments must be ids of uploaded files",
            ));
        };
        if !(meta.readable_by(sender) && meta.readable_by(peer)) {
            return Err(Refusal::forbidden(
                "a file of another conversation cannot be attached here",
            ));
        }
    }
    Ok(Some(serde_json::Value::Array(list.clone())))
}

/// Most attachments on one DM (as on a room message).
const MAX_DM_ATTACHMENTS: usize = 10;

/// `Content-Disposition` for a download: inline for pictures, a download
/// otherwise, named after the original file (RFC 6266: an ASCII
/// `filename` for old clients, `filename*` in UTF-8 for the rest).
fn disposition(content_type: &str, name: Option<&str>, id: &str) -> HeaderValue {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let kind = if INLINE_TYPES.iter().any(|t| essence.eq_ignore_ascii_case(t)) {
        "inline"
    } else {
        "attachment"
    };
    let name = name.unwrap_or(id);
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        // RFC 5987 attr-char.
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or(HeaderValue::from_static("attachment"))
}

/// Why an upload's body was not stored.
enum Failed {
    TooLarge,
    TimedOut,
    Read,
    Store(std::io::Error),
}

/// Streams `body` into `<dir>/<id>.tmp`, at most `max` bytes, then moves it
/// to `<dir>/<id>` and writes the meta file (last: its presence means the
/// file is whole). Returns the size; the temp file is gone on failure.
async fn store(dir: &FsPath, id: &str, body: Body, max: usize) -> Result<usize, Failed> {
    use tokio::io::AsyncWriteExt;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(Failed::Store)?;
    let tmp = dir.join(format!("{id}.tmp"));
    let result = async {
        let mut file = tokio::fs::File::create(&tmp).await.map_err(Failed::Store)?;
        let mut body = std::pin::pin!(body);
        let mut size = 0usize;
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            let frame = frame.map_err(|e| {
                if crate::http::body_timed_out(&e) {
                    Failed::TimedOut
                } else {
                    Failed::Read
                }
            })?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            size += chunk.len();
            if size > max {
                return Err(Failed::TooLarge);
            }
            file.write_all(&chunk).await.map_err(Failed::Store)?;
        }
        file.flush().await.map_err(Failed::Store)?;
        tokio::fs::rename(&tmp, dir.join(id))
            .await
            .map_err(Failed::Store)?;
        Ok(size)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

async fn upload(
    State(state): State<Arc<AppState>>,
    claims: Claims,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> Response {
    let max = state.config.max_file_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("files are limited to {max} bytes"),
        );
    }
    let Ok(dm) = dm_peer(uri.query()) else {
        return error(StatusCode::BAD_REQUEST, "dm must be a user id");
    };
    let Ok(_receiving) = state.uploads.try_acquire() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many uploads in progress: try again shortly",
        );
    };
    let bytes: [u8; 16] = rand::thread_rng().gen();
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = files_dir(&state);
    let size = match store(&dir, &id, body, max).await {
        Ok(size) => size,
        Err(Failed::TooLarge) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("files are limited to {max} bytes"),
            )
        }
        Err(Failed::TimedOut) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "the upload was not received in time",
            )
        }
        Err(Failed::Read) => return error(StatusCode::BAD_REQUEST, "could not read the body"),
        Err(Failed::Store(e)) => {
            tracing::error!(error = %e, "could not store an upload");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not store the file",
            );
        }
    };
    let meta = Meta {
        content_type: content_type(&headers),
        size,
        name: original_name(uri.query()),
        owner: claims.sub.clone(),
        dm,
        uploaded_ms: crate::frames::now_ms(),
    };
    let meta_bytes = serde_json::to_vec(&meta).unwrap_or_default();
    if let Err(e) = tokio::fs::write(dir.join(format!("{id}.meta")), meta_bytes).await {
        tracing::error!(error = %e, "could not store an upload's meta");
        let _ = tokio::fs::remove_file(dir.join(&id)).await;
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not store the file",
        );
    }
    tracing::info!(file = %id, size, owner = %claims.sub, "file uploaded");
    (
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": id,
            "url": format!("/files/{id}"),
            "content_type": meta.content_type,
            "size": meta.size,
            "name": meta.name,
            "dm": meta.dm,
        })),
    )
        .into_response()
}

/// Who the request's token says: `Authorization`, `?token=` or the
/// client's `cbx_files` cookie; `None` without a valid one.
fn signed_in(state: &AppState, headers: &HeaderMap, uri: &axum::http::Uri) -> Option<Claims> {
    state
        .auth
        .verify_request(headers, uri.query())
        .or_else(|_| match auth::cookie(headers, TOKEN_COOKIE) {
            Some(token) => state.auth.verify(token),
            None => Err(auth::Refused("no token".into())),
        })
        .ok()
}

/// 403 for a DM's file asked by someone not in the conversation.
fn forbidden() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "this file belongs to a conversation you are not in",
    )
}

/// The meta file of `id`, when `id` is one of ours and whole.
async fn read_meta(dir: &FsPath, id: &str) -> Option<Meta> {
    if !is_file_id(id) {
        return None;
    }
    let raw = tokio::fs::read(dir.join(format!("{id}.meta"))).await.ok()?;
    serde_json::from_slice(&raw).ok()
}

/// `GET /files/{id}/meta`: what a client shows for an attachment.
async fn describe(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let Some(claims) = signed_in(&state, &headers, &uri) else {
        return auth::unauthorized();
    };
    let Some(meta) = read_meta(&files_dir(&state), &id).await else {
        return error(StatusCode::NOT_FOUND, "no such file");
    };
    if !meta.readable_by(&claims.sub) {
        return forbidden();
    }
    Json(serde_json::json!({
        "id": id,
        "name": meta.name,
        "size": meta.size,
        "content_type": meta.content_type,
    }))
    .into_response()
}

async fn download(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let Some(claims) = signed_in(&state, &headers, &uri) else {
        return auth::unauthorized();
    };
    let dir = files_dir(&state);
    let Some(meta) = read_meta(&dir, &id).await else {
        return error(StatusCode::NOT_FOUND, "no such file");
    };
    if !meta.readable_by(&claims.sub) {
        return forbidden();
    }
    let data = match tokio::fs::read(dir.join(&id)).await {
        Ok(d) => d,
        Err(_) => return error(StatusCode::NOT_FOUND, "no such file"),
    };
    let content_type = HeaderValue::from_str(&meta.content_type)
        .unwrap_or(HeaderValue::from_static(FALLBACK_TYPE));
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_DISPOSITION,
                disposition(&meta.content_type, meta.name.as_deref(), &id),
            ),
            // Uploads are served from the hub's own origin: never let one
            // run as a page (an uploaded text/html would otherwise see the
            // viewer's token).
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; img-src 'self'; media-src 'self'; sandbox",
                ),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=86400"),
            ),
        ],
        data,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_name_is_its_last_path_component_cleaned() {
        assert_eq!(
            original_name(Some("name=report%20Q3.pdf")).as_deref(),
            Some("report Q3.pdf")
        );
        assert_eq!(
            original_name(Some("x=1&name=..%2F..%2Fetc%2Fpasswd")).as_deref(),
            Some("passwd")
        );
        assert_eq!(
            original_name(Some("name=C:%5Cdocs%5Cnotes.txt")).as_deref(),
            Some("notes.txt")
        );
        // Bidi overrides go: "exe.txt" cannot pose as "txt.exe".
        assert_eq!(
            original_name(Some("name=a%E2%80%AEtxt.exe")).as_deref(),
            Some("atxt.exe")
        );
        assert_eq!(original_name(Some("name=..")), None);
        assert_eq!(original_name(Some("name=%E2%80%8B")), None);
        assert_eq!(original_name(Some("other=1")), None);
        assert_eq!(original_name(None), None);
        let long = format!("name={}", "a".repeat(MAX_NAME_CHARS + 1));
        assert_eq!(original_name(Some(&long)), None);
    }

    #[test]
    fn pictures_show_inline_and_the_rest_downloads_under_its_name() {
        let d = disposition("image/png", Some("dot.png"), "id");
        assert_eq!(d, "inline; filename=\"dot.png\"; filename*=UTF-8''dot.png");
        let d = disposition("application/pdf", Some("Größe \"v2\".pdf"), "id");
        assert_eq!(
            d,
            "attachment; filename=\"Gr__e _v2_.pdf\"; filename*=UTF-8''Gr%C3%B6%C3%9Fe%20%22v2%22.pdf"
        );
        // SVG is a document: never inline.
        assert!(disposition("image/svg+xml", None, "abc")
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"abc\""));
        assert!(disposition("IMAGE/JPEG; x=y", None, "abc")
            .to_str()
            .unwrap()
            .starts_with("inline"));
    }
}
