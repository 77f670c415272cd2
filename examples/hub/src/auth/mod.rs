//! Who is calling: JWTs (from `Authorization: Bearer` or `?token=`)
//! signed with the hub's HS256 secret, or by an identity provider's keys
//! (`--jwt-public-key`, `--jwt-jwks`: see [`keys`] and [`jwks`]), and
//! guest tokens in demo mode.
//!
//! Each algorithm is checked against its own kind of key: HS256 only with
//! the secret, RS256/ES256/EdDSA only with a public key of that kind
//! (chosen by `kid` in a key set). Every refusal (no token, malformed,
//! wrong signature, `alg: none`, an algorithm without its key, expired, no
//! `exp`, `nbf` in the future, wrong `iss`/`aud` when configured) is the
//! same HTTP 401, decided before a WebSocket upgrade; the claims then name
//! the user in every frame. Guest tokens are limited per client IP and
//! minute, and minted only by a hub with a secret.

pub mod jwks;
pub mod keys;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::Config;
use crate::server::AppState;

/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 30;
/// How long a guest token lives.
const GUEST_TTL_SECS: u64 = 24 * 3600;
/// Longest `sub` accepted: two ids and a prefix must fit the core's
/// 256-byte group names (a DM pair's history group).
const MAX_SUB_BYTES: usize = 100;
/// Longest `username` accepted.
const MAX_USERNAME_BYTES: usize = 128;
/// Secrets shorter than this are logged as weak: HS256 wants a key at
/// least as long as its 32-byte hash (RFC 7518, 3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// A warning for a secret shorter than [`MIN_SECRET_BYTES`].
pub fn weak_secret(secret: &[u8]) -> Option<&'static str> {
    (secret.len() < MIN_SECRET_BYTES).then_some(
        "the JWT secret is shorter than 32 bytes: tokens signed with it can be forged by brute force; use a long random secret",
    )
}

/// The claims of a verified token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id: what DMs, presence, room members and moderation name.
    pub sub: String,
    /// Display name shown in `user` and `from`; defaults to `sub`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// `"admin"` grants moderation everywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Expiry, seconds since the Unix epoch (required).
    pub exp: u64,
}

impl Claims {
    /// True when the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// True for admins (moderation in every room).
    pub fn is_admin(&self) -> bool {
        self.has_role("admin")
    }
}

/// Why a token was refused (logged at debug level; the client only sees 401).
#[derive(Debug)]
pub struct Refused(pub String);

/// What verifies tokens besides the HS256 secret, and the claims every
/// token must carry (`--jwt-public-key`, `--jwt-jwks`, `--jwt-issuer`,
/// `--jwt-audience`).
#[derive(Default)]
pub struct Verifiers {
    /// `--jwt-public-key`: tokens of its algorithm, whatever their `kid`
    /// (when the key set has no key of that `kid`).
    pub public_key: Option<keys::VerifyingKey>,
    /// `--jwt-jwks`: keys chosen by the token's `kid`.
    pub key_set: Option<Arc<jwks::KeySet>>,
    /// `--jwt-issuer`: `iss` must equal it.
    pub issuer: Option<String>,
    /// `--jwt-audience`: `aud` must name it. Without it a token that
    /// carries `aud` is refused (it was meant for another service).
    pub audience: Option<String>,
}

/// Token verification, and minting with the hub's secret.
pub struct Auth {
    /// HS256 with the hub's secret: verifies, and signs guest tokens.
    /// `None` when only a provider's public keys are configured.
    hmac: Option<(DecodingKey, EncodingKey)>,
    /// HMAC-SHA256 keyed with the secret once (its key schedule done):
    /// each HS256 token's signature is checked with a copy of it.
    hs256: Option<Hmac<Sha256>>,
    /// The HS256 validation with the signature check off: the claims'
    /// checks, after [`Auth::decode_hs256`] checked the signature.
    hs256_claims: Validation,
    /// The provider's keys and the `iss`/`aud` checks.
    verifiers: Verifiers,
    /// One validation per accepted algorithm (that algorithm only, `exp`
    /// and `sub` required, 30 s leeway, `iss`/`aud` when configured).
    validations: Vec<(Algorithm, Validation)>,
    /// `POST /auth/guest` answers (demo mode or `--allow-guest`).
    pub allow_guest: bool,
    /// `--guest-tokens-per-minute` per client IP (0 = no cap).
    pub guest_per_minute: u32,
    /// Guest tokens minted per IP in the current minute.
    guests: parking_lot::Mutex<GuestWindow>,
}

/// Guest tokens per IP in a one-minute window; the map is emptied when a
/// new window starts, so it holds at most one minute's callers.
struct GuestWindow {
    started: Instant,
    minted: rustc_hash::FxHashMap<IpAddr, u32>,
}

/// The algorithms a token may name; anything else (`none` included) is
/// refused before a key is looked at.
const ACCEPTED: [Algorithm; 4] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

impl Auth {
    /// HS256 with `secret`, nothing else.
    pub fn new(secret: &[u8], allow_guest: bool) -> Auth {
        Auth::with_verifiers(Some(secret), Verifiers::default(), allow_guest)
    }

    /// HS256 with `secret` (when given) and the provider's `verifiers`.
    /// Without a secret no token can be minted: keep `allow_guest` off.
    pub fn with_verifiers(secret: Option<&[u8]>, verifiers: Verifiers, allow_guest: bool) -> Auth {
        let validations: Vec<(Algorithm, Validation)> = ACCEPTED
            .iter()
            .map(|&alg| {
                let mut validation = Validation::new(alg);
                validation.leeway = LEEWAY_SECS;
                validation.validate_exp = true;
                validation.validate_nbf = true;
                let mut required = vec!["exp", "sub"];
                if let Some(issuer) = &verifiers.issuer {
                    validation.set_issuer(&[issuer]);
                    required.push("iss");
                }
                if let Some(audience) = &verifiers.audience {
                    validation.set_audience(&[audience]);
                    required.push("aud");
                }
                validation.set_required_spec_claims(&required);
                (alg, validation)
            })
            .collect();
        let mut hs256_claims = validations
            .iter()
            .find_map(|(alg, v)| (*alg == Algorithm::HS256).then(|| v.clone()))
            .unwrap_or_else(|| Validation::new(Algorithm::HS256));
        hs256_claims.insecure_disable_signature_validation();
        Auth {
            hmac: secret.map(|s| (DecodingKey::from_secret(s), EncodingKey::from_secret(s))),
            // HMAC takes a key of any length.
            hs256: secret.and_then(|s| Hmac::<Sha256>::new_from_slice(s).ok()),
            hs256_claims,
            verifiers,
            validations,
            allow_guest: allow_guest && secret.is_some(),
            guest_per_minute: 0,
            guests: parking_lot::Mutex::new(GuestWindow {
                started: Instant::now(),
                minted: Default::default(),
            }),
        }
    }

    /// The hub's token checks from its flags, and the random secret of
    /// demo mode (no secret, no public key, no key set) to log. `Err`
    /// names the flag that cannot be used.
    pub fn from_config(config: &Config) -> anyhow::Result<(Auth, Option<String>)> {
        use anyhow::Context;
        let public_key = match config.jwt_public_key() {
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("--jwt-public-key {}", path.display()))?;
                let key = keys::from_pem(&pem)
                    .map_err(|why| anyhow::anyhow!("--jwt-public-key {}: {why}", path.display()))?;
                tracing::info!(path = %path.display(), alg = ?key.alg, "--jwt-public-key loaded");
                Some(key)
            }
            None => None,
        };
        let key_set = match config.jwt_jwks() {
            Some(location) => Some(
                jwks::KeySet::open(
                    location,
                    config.jwt_jwks_min_reload_interval,
                    config.jwt_jwks_fetch_timeout,
                )
                .map_err(|why| anyhow::anyhow!("--jwt-jwks {location}: {why}"))?,
            ),
            None => None,
        };
        let provider = public_key.is_some() || key_set.is_some();
        let demo_secret = (config.jwt_secret().is_none() && !provider).then(Auth::random_secret);
        let secret = config
            .jwt_secret()
            .map(str::to_owned)
            .or_else(|| demo_secret.clone());
        if config.allow_guest && secret.is_none() {
            anyhow::bail!(
                "--allow-guest needs --jwt-secret: guest tokens are signed with it, and the keys of --jwt-jwks or --jwt-public-key only verify"
            );
        }
        if let Some(warning) = secret.as_deref().and_then(|s| weak_secret(s.as_bytes())) {
            tracing::warn!(bytes = secret.as_deref().map_or(0, str::len), "{warning}");
        }
        let verifiers = Verifiers {
            public_key,
            key_set,
            issuer: config.jwt_issuer().map(str::to_owned),
            audience: config.jwt_audience().map(str::to_owned),
        };
        let allow_guest = config.allow_guest || demo_secret.is_some();
        let mut auth =
            Auth::with_verifiers(secret.as_deref().map(str::as_bytes), verifiers, allow_guest);
        auth.guest_per_minute = config.guest_tokens_per_minute;
        Ok((auth, demo_secret))
    }

    /// True when this hub signs tokens (it has a secret).
    pub fn can_mint(&self) -> bool {
        self.hmac.is_some()
    }

    /// The key set of `--jwt-jwks`, if any.
    pub fn key_set(&self) -> Option<&Arc<jwks::KeySet>> {
        self.verifiers.key_set.as_ref()
    }

    /// Appends the key set's gauges and counters to a `/metrics` page
    /// (all 0 without `--jwt-jwks`).
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let set = self.verifiers.key_set.as_deref();
        let count = |f: fn(&jwks::KeySet) -> u64| set.map_or(0, f);
        for (name, kind, help, value) in [
            (
                "jwks_keys",
                "gauge",
                "Signing keys in the --jwt-jwks key set.",
                count(|s| s.len() as u64),
            ),
            (
                "jwks_reloads_total",
                "counter",
                "Key set reloads (unknown kid) that replaced the keys.",
                count(|s| s.reloads.load(std::sync::atomic::Ordering::Relaxed)),
            ),
            (
                "jwks_reload_failures_total",
                "counter",
                "Key set reloads that failed (the previous keys stayed).",
                count(|s| s.reload_failures.load(std::sync::atomic::Ordering::Relaxed)),
            ),
        ] {
            let _ = write!(
                out,
                "# HELP channelbox_{name} {help}\n# TYPE channelbox_{name} {kind}\nchannelbox_{name} {value}\n"
            );
        }
    }

    /// Counts a guest token for `ip`; false when it already had its
    /// `--guest-tokens-per-minute`.
    pub fn take_guest(&self, ip: IpAddr) -> bool {
        if self.guest_per_minute == 0 {
            return true;
        }
        let mut window = self.guests.lock();
        if window.started.elapsed() >= Duration::from_secs(60) {
            window.started = Instant::now();
            window.minted.clear();
        }
        let n = window.minted.entry(ip).or_default();
        if *n >= self.guest_per_minute {
            return false;
        }
        *n += 1;
        true
    }

    /// A random secret for demo mode, as hex (printable in the log).
    pub fn random_secret() -> String {
        let bytes: [u8; 32] = rand::thread_rng().gen();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Verifies a token and returns its claims, `username` filled in.
    pub fn verify(&self, token: &str) -> Result<Claims, Refused> {
        let hmac_only = self.verifiers.public_key.is_none() && self.verifiers.key_set.is_none();
        let data = match &self.hmac {
            // Only the secret: any other `alg` is refused, so the header
            // is parsed once, by `decode`.
            Some((key, _)) if hmac_only => self.decode_hs256(token, key)?,
            _ => self.decode_by_header(token)?,
        };
        let mut claims = data.claims;
        if claims.sub.is_empty() || claims.sub.len() > MAX_SUB_BYTES {
            return Err(Refused("sub is empty or too long".into()));
        }
        if claims.username.len() > MAX_USERNAME_BYTES {
            return Err(Refused("username is too long".into()));
        }
        // Invisible and direction-changing characters never reach a frame.
        claims.username = crate::features::names::display_name(&claims.username, usize::MAX)
            .unwrap_or_else(|_| claims.sub.clone());
        Ok(claims)
    }

    /// Decodes an HS256 token: the signature checked with the secret's
    /// ready HMAC state ([`Auth::hs256`]; `jsonwebtoken` keys a new HMAC,
    /// copying the secret, and base64-encodes the result on every call),
    /// then `jsonwebtoken` decodes the header and claims and checks the
    /// claims, as with the signature check on; the header must say HS256.
    fn decode_hs256(
        &self,
        token: &str,
        key: &DecodingKey,
    ) -> Result<jsonwebtoken::TokenData<Claims>, Refused> {
        use base64::Engine;
        let mac = self
            .hs256
            .as_ref()
            .ok_or_else(|| Refused("no secret".into()))?;
        let (message, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| Refused("InvalidToken".into()))?;
        // Base64url without padding, canonical (as `jsonwebtoken`, which
        // compares the encoded strings); an HS256 signature is 32 bytes.
        let mut raw = [0u8; 48];
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode_slice(signature, &mut raw)
            .map_err(|_| Refused("InvalidSignature".into()))?;
        let mut mac = mac.clone();
        mac.update(message.as_bytes());
        // Constant time.
        mac.verify_slice(&raw[..n])
            .map_err(|_| Refused("InvalidSignature".into()))?;
        let data =
            decode::<Claims>(token, key, &self.hs256_claims).map_err(|e| Refused(e.to_string()))?;
        if data.header.alg != Algorithm::HS256 {
            return Err(Refused(format!(
                "{:?} tokens are not accepted",
                data.header.alg
            )));
        }
        Ok(data)
    }

    /// The validation of `alg`; `Err` for an algorithm never accepted.
    fn validation(&self, alg: Algorithm) -> Result<&Validation, Refused> {
        self.validations
            .iter()
            .find_map(|(a, v)| (*a == alg).then_some(v))
            .ok_or_else(|| Refused(format!("{alg:?} tokens are not accepted")))
    }

    /// Decodes `token` with the key its header's `alg` (and `kid`) picks.
    fn decode_by_header(&self, token: &str) -> Result<jsonwebtoken::TokenData<Claims>, Refused> {
        let refused = |e: jsonwebtoken::errors::Error| Refused(e.to_string());
        // `alg: none` and unknown names fail here already.
        let header = jsonwebtoken::decode_header(token).map_err(refused)?;
        let validation = self.validation(header.alg)?;
        if header.alg == Algorithm::HS256 {
            let (key, _) = self
                .hmac
                .as_ref()
                .ok_or_else(|| Refused("HS256 tokens are not accepted: no secret".into()))?;
            return decode::<Claims>(token, key, validation).map_err(refused);
        }
        let key = self.public_key_for(header.alg, header.kid.as_deref())?;
        decode::<Claims>(token, &key.key, validation).map_err(refused)
    }

    /// The public key for a token of `alg` (not HS256) naming `kid`: the
    /// key set's key of that `kid`, else `--jwt-public-key`; each only when
    /// its kind is `alg`. An unknown `kid` asks the key set to reload.
    fn public_key_for(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<keys::VerifyingKey, Refused> {
        if let (Some(set), Some(kid)) = (&self.verifiers.key_set, kid) {
            match set.get(kid) {
                Some(key) if key.alg == alg => return Ok(key),
                Some(key) => {
                    return Err(Refused(format!(
                        "kid {kid} is a {:?} key, the token says {alg:?}",
                        key.alg
                    )))
                }
                None => set.unknown_kid(kid),
            }
        }
        match &self.verifiers.public_key {
            Some(key) if key.alg == alg => Ok(key.clone()),
            _ => Err(Refused(match kid {
                Some(kid) => format!("no {alg:?} key with kid {kid}"),
                None => format!("no {alg:?} key (and no kid)"),
            })),
        }
    }

    /// Verifies the token of a request: `Authorization: Bearer` first, then
    /// `?token=` in `query`.
    pub fn verify_request(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Claims, Refused> {
        let token = bearer(headers)
            .map(str::to_owned)
            .or_else(|| query.and_then(|q| query_param(q, "token")))
            .ok_or_else(|| Refused("no token".into()))?;
        self.verify(&token)
    }

    /// Signs a token for `claims` with the hub's secret; empty when the
    /// hub has none ([`Auth::can_mint`] is false: it mints nothing then).
    pub fn mint(&self, claims: &Claims) -> String {
        let Some((_, key)) = &self.hmac else {
            return String::new();
        };
        // HS256 signing of a serializable struct does not fail.
        encode(&Header::new(Algorithm::HS256), claims, key).unwrap_or_default()
    }
}

/// The token of an `Authorization: Bearer <jwt>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name && !v.is_empty()).then_some(v)
        })
}

/// The percent-decoded value of `name` in a query string.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k).as_deref() == Some(name)).then(|| percent_decode(v))?
    })
}

/// Decodes `%XX` escapes and `+`; `None` when the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Axum extractor for HTTP handlers that need a signed-in caller: 401
/// otherwise. Extensions use it too (`features::routes()`).
impl FromRequestParts<Arc<AppState>> for Claims {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        state
            .auth
            .verify_request(&parts.headers, parts.uri.query())
            .map_err(|Refused(why)| {
                tracing::debug!(%why, path = %parts.uri.path(), "token refused");
                unauthorized()
            })
    }
}

/// The 401 every refused token gets.
pub fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({"error": "unauthorized", "detail": "a valid token is required"})),
    )
        .into_response()
}

/// `POST /auth/guest`'s body.
#[derive(Deserialize)]
pub struct GuestRequest {
    username: String,
}

/// `POST /auth/guest {"username"}` → `{"token","user_id","username"}`: a
/// token without roles, for demo mode or `--allow-guest`.
pub async fn guest(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<GuestRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let error = |status: StatusCode, detail: &str| {
        (
            status,
            Json(serde_json::json!({"error": detail, "detail": detail})),
        )
            .into_response()
    };
    if !state.auth.allow_guest {
        return error(StatusCode::FORBIDDEN, "guest login is disabled on this hub");
    }
    let Ok(Json(request)) = body else {
        return error(StatusCode::BAD_REQUEST, "expected {\"username\": \"...\"}");
    };
    if !state.auth.take_guest(peer.ip()) {
        tracing::info!(ip = %peer.ip(), "guest tokens: per-minute limit reached");
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many guest tokens from this address: try again in a minute",
        );
    }
    let max = state.config.max_display_name_chars;
    let Ok(username) = crate::features::names::display_name(&request.username, max) else {
        return error(
            StatusCode::BAD_REQUEST,
            "username must be 1 to --max-display-name-chars printable characters",
        );
    };
    if crate::features::names::taken_by_a_user(&state, &username) {
        return error(
            StatusCode::CONFLICT,
            "that name belongs to a user of this hub: pick another",
        );
    }
    let username = username.as_str();
    // 64 random bits: guessing another guest's id is out of reach.
    let tag: u64 = rand::thread_rng().gen();
    let slug: String = username
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(32)
        .collect();
    let sub = format!(
        "guest-{}{:016x}",
        if slug.is_empty() {
            String::new()
        } else {
            format!("{slug}-")
        },
        tag
    );
    let claims = Claims {
        sub: sub.clone(),
        username: username.to_owned(),
        roles: Vec::new(),
        exp: jsonwebtoken::get_current_timestamp() + GUEST_TTL_SECS,
    };
    let token = state.auth.mint(&claims);
    tracing::info!(%sub, username, "guest token issued");
    Json(serde_json::json!({"token": token, "user_id": sub, "username": username})).into_response()
}

/// `POST /auth/refresh` (with a valid guest token) →
/// `{"token","user_id","username"}`: the same guest with a fresh `exp`.
/// A guest's identity is its token, so a client that comes back before
/// the token runs out keeps it for good this way; only guest tokens
/// (`guest-` ids, no roles) from a hub that hands them out are renewed.
pub async fn refresh(State(state): State<Arc<AppState>>, claims: Claims) -> Response {
    if !state.auth.allow_guest || !claims.sub.starts_with("guest-") || !claims.roles.is_empty() {
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({
                "error": "forbidden",
                "detail": "only guest tokens are renewed here",
            })),
        )
            .into_response();
    }
    let renewed = Claims {
        exp: jsonwebtoken::get_current_timestamp() + GUEST_TTL_SECS,
        ..claims
    };
    let token = state.auth.mint(&renewed);
    Json(serde_json::json!({"token": token, "user_id": renewed.sub, "username": renewed.username}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const SECRET: &[u8] = b"unit-secret-0123456789abcdef0123456789";

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// `header.claims.signature`, HMAC-SHA256 with `secret` whatever the
    /// header says.
    fn hmac_token(header: &str, claims: &serde_json::Value, secret: &[u8]) -> String {
        let message = format!(
            "{}.{}",
            b64(header.as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(message.as_bytes());
        format!("{message}.{}", b64(&mac.finalize().into_bytes()))
    }

    fn exp() -> u64 {
        jsonwebtoken::get_current_timestamp() + 3600
    }

    /// The HS256 path with the ready HMAC state takes what `jsonwebtoken`
    /// took and refuses what it refused.
    #[test]
    fn hs256_tokens_are_checked_as_before() {
        let auth = Auth::new(SECRET, false);
        let header = r#"{"alg":"HS256","typ":"JWT"}"#;
        let good = serde_json::json!({"sub": "ann", "username": "Ann", "exp": exp()});
        let token = hmac_token(header, &good, SECRET);
        let claims = auth.verify(&token).expect("a good token");
        assert_eq!(
            (claims.sub.as_str(), claims.username.as_str()),
            ("ann", "Ann")
        );
        // Minted by the hub itself.
        let minted = auth.mint(&claims);
        assert_eq!(auth.verify(&minted).expect("minted").sub, "ann");

        let mut refused = vec![
            (
                "another secret",
                hmac_token(header, &good, b"another-secret-0123456789abcdef012345"),
            ),
            ("padded signature", format!("{token}=")),
            (
                "no signature",
                token.rsplit_once('.').unwrap().0.to_owned() + ".",
            ),
            ("four parts", format!("x.{token}")),
            ("two parts", token.split_once('.').unwrap().1.to_owned()),
            (
                "HS512 header",
                hmac_token(r#"{"alg":"HS512"}"#, &good, SECRET),
            ),
            (
                "none header",
                hmac_token(r#"{"alg":"none"}"#, &good, SECRET),
            ),
            (
                "expired",
                hmac_token(
                    header,
                    &serde_json::json!({"sub": "ann", "exp": 1000}),
                    SECRET,
                ),
            ),
            (
                "no exp",
                hmac_token(header, &serde_json::json!({"sub": "ann"}), SECRET),
            ),
            (
                "no sub",
                hmac_token(header, &serde_json::json!({"exp": exp()}), SECRET),
            ),
            (
                "an audience nobody configured",
                hmac_token(
                    header,
                    &serde_json::json!({"sub": "ann", "exp": exp(), "aud": "x"}),
                    SECRET,
                ),
            ),
        ];
        // The claims changed under the same signature.
        let (head, rest) = token.split_once('.').unwrap();
        let signature = rest.rsplit_once('.').unwrap().1;
        let other = b64(serde_json::json!({"sub": "root", "exp": exp()})
            .to_string()
            .as_bytes());
        refused.push(("claims swapped", format!("{head}.{other}.{signature}")));
        // One bit of the signature's last character (non-canonical base64).
        let mut odd = token.clone();
        let last = odd.pop().unwrap();
        odd.push(if last == 'A' { 'B' } else { 'A' });
        refused.push(("signature changed", odd));
        for (what, token) in refused {
            assert!(auth.verify(&token).is_err(), "{what} was taken");
        }
    }
}
