//! Attachments: `POST /files` stores a raw body on disk under a random
//! 128-bit id; `GET /files/{id}` serves it back to any signed-in user with
//! the `Content-Type` it was uploaded with.
//!
//! No client string ever reaches the filesystem: the path is the data
//! directory plus 32 hex digits the hub generated, and a request's id is
//! checked to be exactly that shape before it is used.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::auth::Claims;
use crate::server::AppState;

/// Longest `Content-Type` kept.
const MAX_TYPE_BYTES: usize = 200;
const FALLBACK_TYPE: &str = "application/octet-stream";

/// What is kept next to a file's bytes.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    content_type: String,
    size: usize,
    /// Who uploaded it.
    owner: String,
    uploaded_ms: u64,
}

/// `/files` routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/files", post(upload))
        .route("/files/{id}", get(download))
}

fn files_dir(state: &AppState) -> PathBuf {
    state.config.data_dir.join("files")
}

/// True for ids this hub generates: 32 lowercase hex digits.
pub fn is_file_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True when a file with this id was uploaded (attachments must name one).
pub fn exists(state: &AppState, id: &str) -> bool {
    is_file_id(id) && files_dir(state).join(format!("{id}.meta")).is_file()
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

async fn write_file(dir: &FsPath, id: &str, data: &[u8], meta: &Meta) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let tmp = dir.join(format!("{id}.tmp"));
    tokio::fs::write(&tmp, data).await?;
    tokio::fs::rename(&tmp, dir.join(id)).await?;
    // The meta file is written last: its presence means the file is whole.
    let meta = serde_json::to_vec(meta).unwrap_or_default();
    tokio::fs::write(dir.join(format!("{id}.meta")), meta).await
}

/// True when reading a body failed because it went over the limit
/// (`http_body_util::LengthLimitError`, somewhere in the error's chain).
fn over_limit(e: &axum::Error) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        if c.to_string().contains("length limit exceeded") {
            return true;
        }
        cause = c.source();
    }
    false
}

async fn upload(
    State(state): State<Arc<AppState>>,
    claims: Claims,
    headers: HeaderMap,
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
    let data = match axum::body::to_bytes(body, max).await {
        Ok(d) => d,
        Err(e) => {
            let too_large = over_limit(&e);
            return if too_large {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("files are limited to {max} bytes"),
                )
            } else {
                error(StatusCode::BAD_REQUEST, "could not read the body")
            };
        }
    };
    let bytes: [u8; 16] = rand::thread_rng().gen();
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let meta = Meta {
        content_type: content_type(&headers),
        size: data.len(),
        owner: claims.sub.clone(),
        uploaded_ms: crate::frames::now_ms(),
    };
    if let Err(e) = write_file(&files_dir(&state), &id, &data, &meta).await {
        tracing::error!(error = %e, "could not store an upload");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not store the file",
        );
    }
    tracing::info!(file = %id, size = data.len(), owner = %claims.sub, "file uploaded");
    (
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": id,
            "url": format!("/files/{id}"),
            "content_type": meta.content_type,
            "size": meta.size,
        })),
    )
        .into_response()
}

async fn download(
    State(state): State<Arc<AppState>>,
    _claims: Claims,
    Path(id): Path<String>,
) -> Response {
    if !is_file_id(&id) {
        return error(StatusCode::NOT_FOUND, "no such file");
    }
    let dir = files_dir(&state);
    let meta: Meta = match tokio::fs::read(dir.join(format!("{id}.meta"))).await {
        Ok(raw) => match serde_json::from_slice(&raw) {
            Ok(m) => m,
            Err(_) => return error(StatusCode::NOT_FOUND, "no such file"),
        },
        Err(_) => return error(StatusCode::NOT_FOUND, "no such file"),
    };
    let data = match tokio::fs::read(dir.join(&id)).await {
        Ok(d) => d,
        Err(_) => return error(StatusCode::NOT_FOUND, "no such file"),
    };
    let content_type = HeaderValue::from_str(&meta.content_type)
        .unwrap_or(HeaderValue::from_static(FALLBACK_TYPE));
    (
        [
            (header::CONTENT_TYPE, content_type),
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
