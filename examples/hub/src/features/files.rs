//! Attachments: `POST /files` streams a raw body to disk under a random
//! 128-bit id; `GET /files/{id}` serves it back to any signed-in user with
//! the `Content-Type` it was uploaded with.
//!
//! An upload never sits in memory: its body goes frame by frame to a temp
//! file, within `--body-timeout-ms` (408 after), and at most
//! `--max-uploads-in-flight` are received at once (503 above). Downloads
//! take the token from `Authorization`, from the `cbx_files` cookie the
//! browser client sets (path `/files`, so `<img src>` needs no token in
//! its URL), or from `?token=`.
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
const FALLBACK_TYPE: &str = "application/octet-stream";
/// The cookie the browser client keeps its token in for `GET /files/{id}`.
pub const TOKEN_COOKIE: &str = "cbx_files";

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
        owner: claims.sub.clone(),
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
        })),
    )
        .into_response()
}

async fn download(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let signed_in =
        state
            .auth
            .verify_request(&headers, uri.query())
            .or_else(|_| match auth::cookie(&headers, TOKEN_COOKIE) {
                Some(token) => state.auth.verify(token),
                None => Err(auth::Refused("no token".into())),
            });
    if signed_in.is_err() {
        return auth::unauthorized();
    }
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
