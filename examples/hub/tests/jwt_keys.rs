//! Tokens from an identity provider: `--jwt-jwks` (a file, or a JWK Set
//! served over HTTP by this test on 127.0.0.1) and `--jwt-public-key`,
//! beside `--jwt-secret`, with `--jwt-issuer` and `--jwt-audience`.
//!
//! Keys are made by the `openssl` command line (RSA 2048, EC P-256,
//! Ed25519) and tokens signed with jsonwebtoken. A valid token of each
//! algorithm joins a room over a real WebSocket; forged, expired,
//! confused and unsigned tokens get 401 before the upgrade.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{now, Hub, SECRET, WAIT};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A key pair made by openssl, and its public half as a JWK.
struct TestKey {
    kid: String,
    alg: Algorithm,
    private_pem: Vec<u8>,
    public_pem: Vec<u8>,
    jwk: Value,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("the openssl command (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new key of `alg`'s kind named `kid`, made in `dir`.
fn make_key(dir: &Path, alg: Algorithm, kid: &str) -> TestKey {
    let path = dir.join(format!("{kid}.pem"));
    let file = path.to_str().unwrap();
    let gen: &[&str] = match alg {
        Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        Algorithm::EdDSA => &["-algorithm", "ED25519"],
        other => panic!("no test keys for {other:?}"),
    };
    let mut args = vec!["genpkey"];
    args.extend_from_slice(gen);
    args.extend_from_slice(&["-out", file]);
    openssl(&args);
    let private_pem = std::fs::read(&path).unwrap();
    let public_pem = openssl(&["pkey", "-in", file, "-pubout"]);
    let der = openssl(&["pkey", "-in", file, "-pubout", "-outform", "DER"]);
    let jwk = match alg {
        Algorithm::RS256 => {
            let out =
                String::from_utf8(openssl(&["rsa", "-in", file, "-noout", "-modulus"])).unwrap();
            let hex = out.trim().strip_prefix("Modulus=").unwrap();
            let n: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&n), "e": "AQAB"})
        }
        Algorithm::ES256 => {
            // The SubjectPublicKeyInfo ends with the point 04 || x || y.
            let point = &der[der.len() - 64..];
            json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&point[..32]), "y": b64(&point[32..])})
        }
        _ => json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(&der[der.len() - 32..])}),
    };
    TestKey {
        kid: kid.into(),
        alg,
        private_pem,
        public_pem,
        jwk,
    }
}

/// The keys every test uses, made once per test binary: `*-1` are the
/// provider's, `*-2` strangers of the same kinds, `ed-3` a rotated key.
struct Keys {
    dir: tempfile::TempDir,
    rsa: TestKey,
    ec: TestKey,
    ed: TestKey,
    rsa_stranger: TestKey,
    ec_stranger: TestKey,
    ed_stranger: TestKey,
    rotated: TestKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        // Under target/tmp: a static is never dropped to clean up.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let p = dir.path();
        Keys {
            rsa: make_key(p, Algorithm::RS256, "rsa-1"),
            ec: make_key(p, Algorithm::ES256, "ec-1"),
            ed: make_key(p, Algorithm::EdDSA, "ed-1"),
            rsa_stranger: make_key(p, Algorithm::RS256, "rsa-2"),
            ec_stranger: make_key(p, Algorithm::ES256, "ec-2"),
            ed_stranger: make_key(p, Algorithm::EdDSA, "ed-2"),
            rotated: make_key(p, Algorithm::EdDSA, "ed-3"),
            dir,
        }
    })
}

impl Keys {
    fn providers(&self) -> [&TestKey; 3] {
        [&self.rsa, &self.ec, &self.ed]
    }
}

/// A JWK Set document of `keys`.
fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// Writes `body` to a new file in the keys' directory.
fn write_file(name: &str, body: &[u8]) -> PathBuf {
    let path = keys().dir.path().join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// Claims of a valid token for `sub`, an hour to live.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 3600})
}

/// `claims` signed by `key`, the header naming `kid`.
fn sign_as(key: &TestKey, kid: Option<&str>, claims: &Value) -> String {
    let encoding = match key.alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&key.private_pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&key.private_pem),
        _ => EncodingKey::from_ed_pem(&key.private_pem),
    }
    .unwrap();
    let mut header = Header::new(key.alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &encoding).unwrap()
}

/// `claims` signed by `key` under its own `kid`.
fn sign(key: &TestKey, claims: &Value) -> String {
    sign_as(key, Some(&key.kid), claims)
}

/// A token with any `header`, HMAC-SHA256-signed with `secret` (for the
/// confusion attacks: a header that lies about how it was signed).
fn hmac_token(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

/// Asserts that `token` joins `room` over a WebSocket.
async fn joins(hub: &Hub, room: &str, token: &str, what: &str) {
    match hub.ws(&format!("/chat/{room}"), token).await {
        Ok(mut client) => {
            client.expect("history").await;
            client.close().await;
        }
        Err(status) => panic!("{what}: refused with HTTP {status}"),
    }
}

/// Asserts that `token` is refused with 401 before the upgrade.
async fn refused(hub: &Hub, token: &str, what: &str) {
    match hub.ws("/chat/lobby", token).await {
        Err(status) => assert_eq!(status, 401, "{what}"),
        Ok(_) => panic!("{what}: the upgrade was accepted"),
    }
}

/// A JWK Set served on 127.0.0.1 by this test, counting its requests.
struct JwksServer {
    url: String,
    /// GET requests answered so far.
    requests: Arc<AtomicUsize>,
    /// What the next requests get.
    answer: Arc<Mutex<Answer>>,
}

#[derive(Clone)]
enum Answer {
    /// 200 with this JWK Set.
    Set(String),
    /// 500.
    Error,
    /// No answer at all (the connection stays open).
    Hang,
}

impl JwksServer {
    async fn start(set: String) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let requests = Arc::new(AtomicUsize::new(0));
        let answer = Arc::new(Mutex::new(Answer::Set(set)));
        let (count, current) = (requests.clone(), answer.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (count, current) = (count.clone(), current.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                        if head.len() > 64 * 1024 {
                            return;
                        }
                    }
                    assert!(head.starts_with(b"GET /.well-known/jwks.json "));
                    count.fetch_add(1, Ordering::SeqCst);
                    let answer = current.lock().unwrap().clone();
                    let (status, body) = match answer {
                        Answer::Set(body) => ("200 OK", body),
                        Answer::Error => ("500 Internal Server Error", "{}".to_owned()),
                        Answer::Hang => {
                            tokio::time::sleep(WAIT).await;
                            return;
                        }
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        JwksServer {
            url,
            requests,
            answer,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

/// Waits (bounded by [`WAIT`]) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of metric `name` on `/metrics`.
async fn metric(hub: &Hub, token: &str, name: &str) -> u64 {
    let (status, text) = hub
        .http_text(
            "GET",
            "/metrics",
            &[("Authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("channelbox_{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn each_algorithm_from_a_jwks_file_joins_a_room() {
    let k = keys();
    let file = write_file("set-file.json", jwks(&k.providers()).as_bytes());
    let hub = Hub::start_with(|c| c.jwt_jwks = Some(file.to_str().unwrap().into())).await;
    for key in k.providers() {
        let token = sign(key, &claims(&format!("user-{}", key.kid)));
        joins(&hub, "lobby", &token, &key.kid).await;
    }
    // The hub's own HS256 tokens still work beside them.
    joins(&hub, "lobby", &hub.user("local"), "HS256").await;
    let token = sign(&k.rsa, &claims("watcher"));
    assert_eq!(metric(&hub, &token, "jwks_keys").await, 3);
    assert_eq!(metric(&hub, &token, "jwks_reloads_total").await, 0);
    hub.stop().await;
}

#[tokio::test]
async fn forged_expired_confused_and_unsigned_tokens_get_401_before_the_upgrade() {
    let k = keys();
    let file = write_file("set-refusals.json", jwks(&k.providers()).as_bytes());
    let hub = Hub::start_with(|c| c.jwt_jwks = Some(file.to_str().unwrap().into())).await;
    let strangers = [&k.rsa_stranger, &k.ec_stranger, &k.ed_stranger];
    for (key, stranger) in k.providers().into_iter().zip(strangers) {
        // A key of the same kind, but not the provider's, under its kid.
        let forged = sign_as(stranger, Some(&key.kid), &claims("mallory"));
        refused(&hub, &forged, &format!("{:?} wrong signature", key.alg)).await;
        let expired = sign(key, &json!({"sub": "late", "exp": now() - 3600}));
        refused(&hub, &expired, &format!("{:?} expired", key.alg)).await;
        let no_exp = sign(key, &json!({"sub": "forever"}));
        refused(&hub, &no_exp, &format!("{:?} without exp", key.alg)).await;
        // The token's own key, but no kid: nothing chooses a key for it.
        let no_kid = sign_as(key, None, &claims("anon"));
        refused(&hub, &no_kid, &format!("{:?} without kid", key.alg)).await;
        // Signed by an EdDSA key, naming this kid with its own alg: the
        // key's kind decides, the header cannot.
        if key.alg != Algorithm::EdDSA {
            let mismatch = sign_as(&k.ed, Some(&key.kid), &claims("mallory"));
            refused(&hub, &mismatch, &format!("EdDSA token naming {}", key.kid)).await;
        }
        // A header that claims this key's alg over an HMAC with the
        // hub's own secret: never verified with the secret.
        let header = json!({"alg": format!("{:?}", key.alg), "kid": key.kid, "typ": "JWT"});
        let confused = hmac_token(&header, &claims("mallory"), SECRET.as_bytes());
        refused(&hub, &confused, &format!("{:?} header over HS256", key.alg)).await;
        // The classic confusion: HS256 "signed" with the public key's text.
        for text in [&key.public_pem[..], key.jwk.to_string().as_bytes()] {
            let header = json!({"alg": "HS256", "kid": key.kid, "typ": "JWT"});
            let confused = hmac_token(&header, &claims("mallory"), text);
            refused(
                &hub,
                &confused,
                &format!("HS256 with {}'s public key", key.kid),
            )
            .await;
        }
    }
    // `alg: none`, and HS512 with the right secret (only HS256 is taken).
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims("nobody").to_string().as_bytes())
    );
    refused(&hub, &none, "alg none").await;
    let hs512 = encode(
        &Header::new(Algorithm::HS512),
        &claims("mallory"),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    refused(&hub, &hs512, "HS512").await;
    // The same refusals on plain HTTP routes.
    let forged = sign_as(&k.rsa_stranger, Some("rsa-1"), &claims("mallory"));
    let (status, _) = hub.json("GET", "/rooms", &forged, None).await;
    assert_eq!(status, 401);
    let (status, _) = hub
        .json("GET", "/rooms", &sign(&k.rsa, &claims("ok")), None)
        .await;
    assert_eq!(status, 200);
    hub.stop().await;
}

#[tokio::test]
async fn a_hub_with_only_a_secret_takes_hs256_alone() {
    let k = keys();
    let hub = Hub::start().await;
    joins(&hub, "lobby", &hub.user("local"), "HS256").await;
    for key in k.providers() {
        let what = |case: &str| format!("{:?} {case}", key.alg);
        refused(&hub, &sign(key, &claims("x")), &what("token")).await;
        let header = json!({"alg": format!("{:?}", key.alg), "typ": "JWT"});
        let confused = hmac_token(&header, &claims("x"), SECRET.as_bytes());
        refused(&hub, &confused, &what("header over HS256 with the secret")).await;
    }
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims("nobody").to_string().as_bytes())
    );
    refused(&hub, &none, "alg none").await;
    hub.stop().await;
}

#[tokio::test]
async fn a_hub_with_only_a_secret_checks_iss_and_aud_when_configured() {
    let hub = Hub::start_with(|c| {
        c.jwt_issuer = Some("https://app.example".into());
        c.jwt_audience = Some("channelbox".into());
    })
    .await;
    let mut c = claims("ivy");
    refused(&hub, &common::sign(&c, SECRET), "no iss, no aud").await;
    c["iss"] = json!("https://app.example");
    c["aud"] = json!("channelbox");
    joins(
        &hub,
        "lobby",
        &common::sign(&c, SECRET),
        "right iss and aud",
    )
    .await;
    c["iss"] = json!("https://evil.example");
    refused(&hub, &common::sign(&c, SECRET), "wrong iss").await;
    hub.stop().await;
}

#[tokio::test]
async fn iss_and_aud_must_match_when_configured_for_every_algorithm() {
    let k = keys();
    let file = write_file("set-iss-aud.json", jwks(&k.providers()).as_bytes());
    let hub = Hub::start_with(|c| {
        c.jwt_jwks = Some(file.to_str().unwrap().into());
        c.jwt_issuer = Some("https://idp.example".into());
        c.jwt_audience = Some("channelbox".into());
    })
    .await;
    let with = |iss: Option<&str>, aud: Option<Value>| {
        let mut c = claims("ivy");
        if let Some(iss) = iss {
            c["iss"] = json!(iss);
        }
        if let Some(aud) = aud {
            c["aud"] = aud;
        }
        c
    };
    let good = with(Some("https://idp.example"), Some(json!("channelbox")));
    for key in k.providers() {
        let what = |case: &str| format!("{:?} {case}", key.alg);
        joins(&hub, "lobby", &sign(key, &good), &what("right iss and aud")).await;
        let listed = with(
            Some("https://idp.example"),
            Some(json!(["other", "channelbox"])),
        );
        joins(&hub, "lobby", &sign(key, &listed), &what("aud in a list")).await;
        let wrong_iss = with(Some("https://evil.example"), Some(json!("channelbox")));
        refused(&hub, &sign(key, &wrong_iss), &what("wrong iss")).await;
        let wrong_aud = with(Some("https://idp.example"), Some(json!("another-app")));
        refused(&hub, &sign(key, &wrong_aud), &what("wrong aud")).await;
        let no_iss = with(None, Some(json!("channelbox")));
        refused(&hub, &sign(key, &no_iss), &what("no iss")).await;
        let no_aud = with(Some("https://idp.example"), None);
        refused(&hub, &sign(key, &no_aud), &what("no aud")).await;
    }
    // HS256 is held to the same claims.
    joins(&hub, "lobby", &common::sign(&good, SECRET), "HS256 right").await;
    refused(&hub, &hub.user("plain"), "HS256 without iss and aud").await;
    let wrong = with(Some("https://idp.example"), Some(json!("another-app")));
    refused(&hub, &common::sign(&wrong, SECRET), "HS256 wrong aud").await;
    hub.stop().await;
}

#[tokio::test]
async fn without_an_audience_configured_a_token_naming_one_is_refused() {
    let k = keys();
    let file = write_file("set-no-aud.json", jwks(&k.providers()).as_bytes());
    let hub = Hub::start_with(|c| c.jwt_jwks = Some(file.to_str().unwrap().into())).await;
    // As before this item for HS256: a token for another service is not
    // one for this hub. An issuer is not checked without --jwt-issuer.
    let mut for_another = claims("ivy");
    for_another["aud"] = json!("another-app");
    for_another["iss"] = json!("https://anyone.example");
    refused(&hub, &sign(&k.ec, &for_another), "ES256 with aud").await;
    refused(&hub, &common::sign(&for_another, SECRET), "HS256 with aud").await;
    for_another.as_object_mut().unwrap().remove("aud");
    joins(
        &hub,
        "lobby",
        &sign(&k.ec, &for_another),
        "ES256 with iss only",
    )
    .await;
    hub.stop().await;
}

// The hub reads its key set at start on the calling thread: the test's
// JWK Set server needs another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_reloads_the_served_set_once_and_a_rotated_key_then_joins() {
    let k = keys();
    let server = JwksServer::start(jwks(&k.providers())).await;
    let hub = Hub::start_with(|c| c.jwt_jwks = Some(server.url.clone())).await;
    assert_eq!(server.requests(), 1, "read once at start");
    joins(
        &hub,
        "lobby",
        &sign(&k.rsa, &claims("first")),
        "served RS256",
    )
    .await;
    assert_eq!(server.requests(), 1, "a known kid needs no reload");

    // The provider rotates: a new key joins the set.
    server.answer(Answer::Set(jwks(&[&k.rsa, &k.ec, &k.ed, &k.rotated])));
    let rotated = sign(&k.rotated, &claims("rotated"));
    // The token that names the new kid starts the reload; the check
    // itself does not wait for it.
    refused(&hub, &rotated, "before the reload").await;
    eventually("one reload", || server.requests() == 2).await;
    let set = hub.state.auth.key_set().unwrap().clone();
    eventually("the reload applied", || set.len() == 4).await;
    joins(&hub, "lobby", &rotated, "rotated key after the reload").await;

    // A storm of made-up kids within 30 s: no request at all.
    for i in 0..50 {
        let kid = format!("made-up-{i}");
        refused(
            &hub,
            &sign_as(&k.ed, Some(&kid), &claims("storm")),
            "made-up kid",
        )
        .await;
    }
    // The reload would have been started inside those 50 checks; give a
    // started one the time to reach the server.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.requests(), 2, "no reload within 30 s of the last");
    let token = sign(&k.rsa, &claims("watcher"));
    assert_eq!(metric(&hub, &token, "jwks_reloads_total").await, 1);
    assert_eq!(metric(&hub, &token, "jwks_reload_failures_total").await, 0);
    hub.stop().await;
}

// The hub reads its key set at start on the calling thread: the test's
// JWK Set server needs another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_interval_an_unknown_kid_reloads_again() {
    let k = keys();
    let server = JwksServer::start(jwks(&[&k.rsa])).await;
    let hub = Hub::start_with(|c| {
        c.jwt_jwks = Some(server.url.clone());
        c.jwt_jwks_min_reload_interval = Duration::from_millis(200);
    })
    .await;
    let unknown = sign(&k.ed, &claims("who"));
    let first = Instant::now();
    refused(&hub, &unknown, "unknown kid").await;
    eventually("the first reload", || server.requests() == 2).await;
    // Within the interval: none (checked when this machine was quick
    // enough to still be within it); once it is over: the next one.
    refused(&hub, &unknown, "unknown kid again").await;
    if first.elapsed() < Duration::from_millis(150) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(server.requests(), 2);
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    refused(&hub, &unknown, "unknown kid after the interval").await;
    eventually("the second reload", || server.requests() == 3).await;
    hub.stop().await;
}

// The hub reads its key set at start on the calling thread: the test's
// JWK Set server needs another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_keeps_the_old_keys_and_is_counted() {
    let k = keys();
    let server = JwksServer::start(jwks(&k.providers())).await;
    let hub = Hub::start_with(|c| {
        c.jwt_jwks = Some(server.url.clone());
        c.jwt_jwks_min_reload_interval = Duration::ZERO;
        c.jwt_jwks_fetch_timeout = Duration::from_millis(300);
    })
    .await;
    let watcher = sign(&k.rsa, &claims("watcher"));
    let unknown = sign(&k.rotated, &claims("who"));
    let set = hub.state.auth.key_set().unwrap().clone();
    let failures = || set.reload_failures.load(Ordering::SeqCst);
    for (n, answer) in [
        Answer::Error,
        Answer::Set("not json".into()),
        Answer::Set(r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hs"}]}"#.into()),
        Answer::Hang,
    ]
    .into_iter()
    .enumerate()
    {
        server.answer(answer);
        refused(&hub, &unknown, "unknown kid").await;
        eventually("the failure counted", || failures() == n as u64 + 1).await;
        for key in k.providers() {
            joins(
                &hub,
                "lobby",
                &sign(key, &claims("still")),
                "old key after a failed reload",
            )
            .await;
        }
    }
    assert_eq!(
        metric(&hub, &watcher, "jwks_reload_failures_total").await,
        4
    );
    assert_eq!(metric(&hub, &watcher, "jwks_reloads_total").await, 0);
    assert_eq!(metric(&hub, &watcher, "jwks_keys").await, 3);
    hub.stop().await;
}

// The hub reads its key set at start on the calling thread: the test's
// JWK Set server needs another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_or_key_file_that_cannot_be_used_stops_the_start() {
    let k = keys();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/jwks.json", l.local_addr().unwrap())
    };
    let oct = write_file(
        "set-oct.json",
        br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hs"}]}"#,
    );
    let garbage = write_file("set-garbage.json", b"{\"keys\": 3");
    let missing = keys().dir.path().join("no-such-set.json");
    for (location, expect) in [
        (missing.to_str().unwrap(), "cannot read"),
        (garbage.to_str().unwrap(), "not a JWK Set"),
        (oct.to_str().unwrap(), "no usable signing key"),
        (closed.as_str(), "GET"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = channelbox_hub::Config {
            jwt_jwks: Some(location.into()),
            data_dir: dir.path().into(),
            ..channelbox_hub::Config::default()
        };
        let error = match channelbox_hub::server::AppState::new(config) {
            Ok(_) => panic!("{location}: the hub started"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            error.contains("--jwt-jwks") && error.contains(expect),
            "{error}"
        );
    }
    let private = write_file("private.pem", &k.ec.private_pem);
    let p384 = {
        let path = k.dir.path().join("p384.pem");
        let file = path.to_str().unwrap();
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
            file,
        ]);
        write_file("p384.pub.pem", &openssl(&["pkey", "-in", file, "-pubout"]))
    };
    for (path, expect) in [(private, "private key"), (p384, "P-256")] {
        let dir = tempfile::tempdir().unwrap();
        let config = channelbox_hub::Config {
            jwt_public_key: Some(path),
            data_dir: dir.path().into(),
            ..channelbox_hub::Config::default()
        };
        let error = match channelbox_hub::server::AppState::new(config) {
            Ok(_) => panic!("the hub started"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            error.contains("--jwt-public-key") && error.contains(expect),
            "{error}"
        );
    }
    // Guests need a secret to be signed with.
    let dir = tempfile::tempdir().unwrap();
    let config = channelbox_hub::Config {
        jwt_public_key: Some(write_file("ed-guest.pub.pem", &k.ed.public_pem)),
        allow_guest: true,
        data_dir: dir.path().into(),
        ..channelbox_hub::Config::default()
    };
    let error = channelbox_hub::server::AppState::new(config)
        .err()
        .expect("refused");
    assert!(
        error
            .to_string()
            .contains("--allow-guest needs --jwt-secret"),
        "{error}"
    );
}

#[tokio::test]
async fn a_public_key_pem_verifies_its_own_algorithm_and_the_hub_mints_no_guests() {
    let k = keys();
    for key in k.providers() {
        let pem = write_file(&format!("{}.pub.pem", key.kid), &key.public_pem);
        // No secret: only the provider's key verifies.
        let hub = Hub::start_with(|c| {
            c.jwt_secret = None;
            c.jwt_public_key = Some(pem.clone());
        })
        .await;
        assert!(hub.state.demo_secret.is_none(), "not demo mode");
        let what = |case: &str| format!("{:?} {case}", key.alg);
        joins(
            &hub,
            "lobby",
            &sign_as(key, None, &claims("pat")),
            &what("no kid"),
        )
        .await;
        joins(&hub, "lobby", &sign(key, &claims("pat")), &what("any kid")).await;
        for other in k.providers().into_iter().filter(|o| o.alg != key.alg) {
            refused(
                &hub,
                &sign_as(other, None, &claims("x")),
                &what("other kind"),
            )
            .await;
        }
        let stranger = match key.alg {
            Algorithm::RS256 => &k.rsa_stranger,
            Algorithm::ES256 => &k.ec_stranger,
            _ => &k.ed_stranger,
        };
        refused(
            &hub,
            &sign_as(stranger, None, &claims("x")),
            &what("wrong signature"),
        )
        .await;
        let expired = sign_as(key, None, &json!({"sub": "late", "exp": now() - 3600}));
        refused(&hub, &expired, &what("expired")).await;
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let confused = hmac_token(&header, &claims("mallory"), &key.public_pem);
        refused(&hub, &confused, &what("HS256 with the PEM's text")).await;
        // No secret, so nothing signs HS256 tokens: not even the test's.
        refused(&hub, &common::token("old", "old"), &what("HS256")).await;
        // Guest tokens: off, as with a secret and no --allow-guest.
        let provider_token = sign(key, &claims("pat"));
        let (status, body) = hub
            .json("POST", "/auth/guest", "", Some(json!({"username": "g"})))
            .await;
        assert_eq!(status, 403, "{body}");
        let (status, _) = hub
            .json("POST", "/auth/refresh", &provider_token, None)
            .await;
        assert_eq!(status, 403);
        assert_eq!(
            hub.state
                .auth
                .mint(&serde_json::from_value(claims("x")).unwrap()),
            ""
        );
        hub.stop().await;
    }
}

#[tokio::test]
async fn public_key_and_key_set_and_secret_each_verify_their_own_tokens() {
    let k = keys();
    // The set has the EC and Ed25519 keys; the PEM is the RSA key.
    let file = write_file("set-mixed.json", jwks(&[&k.ec, &k.ed]).as_bytes());
    let pem = write_file("rsa-mixed.pub.pem", &k.rsa.public_pem);
    let hub = Hub::start_with(|c| {
        c.jwt_jwks = Some(file.to_str().unwrap().into());
        c.jwt_public_key = Some(pem);
        c.jwt_issuer = Some("https://idp.example".into());
    })
    .await;
    let mut c = claims("mix");
    c["iss"] = json!("https://idp.example");
    for key in k.providers() {
        joins(&hub, "lobby", &sign(key, &c), &format!("{:?}", key.alg)).await;
    }
    joins(&hub, "lobby", &common::sign(&c, SECRET), "HS256").await;
    // The RSA kid is not in the set: the PEM verifies it (and a reload is
    // asked for, as for any unknown kid).
    refused(
        &hub,
        &sign_as(&k.rsa_stranger, Some("rsa-1"), &c),
        "RS256 forged",
    )
    .await;
    hub.stop().await;
}

/// A child process (openssl's TLS server); killed (by PID) when dropped.
struct ChildProcess(std::process::Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_hub_process_takes_tokens_from_a_served_key_set_and_refuses_a_bad_one() {
    let k = keys();
    let server = JwksServer::start(jwks(&k.providers())).await;
    let dir = tempfile::tempdir().unwrap();
    // Spawned without waiting: the wait below is async, beside the key
    // set server on this runtime.
    let hub = common::HubChild::spawn(|c| {
        c.args(["--threads", "2"])
            .args(["--jwt-audience", "channelbox"])
            .arg("--data-dir")
            .arg(dir.path())
            .env("CHANNELBOX_JWT_JWKS", &server.url)
            .env_remove("CHANNELBOX_JWT_SECRET");
    });
    let addr = hub.addr;
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the hub did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The port is bound before the key set is read.
    eventually("the key set read at start", || server.requests() == 1).await;
    let url = |token: &str| format!("ws://{addr}/chat/lobby?token={token}");
    let mut good = claims("proc");
    good["aud"] = json!("channelbox");
    for key in k.providers() {
        let (mut ws, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::connect_async(url(&sign(key, &good))),
        )
        .await
        .expect("in time")
        .unwrap_or_else(|e| panic!("{:?}: {e}", key.alg));
        let first = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut ws))
            .await
            .expect("a frame in time")
            .expect("a frame")
            .expect("a frame");
        let frame: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
        assert_eq!(frame["type"], "history", "{frame}");
    }
    assert_eq!(server.requests(), 1, "known kids need no reload");
    let forged = sign_as(&k.ed_stranger, Some("ed-1"), &good);
    match tokio_tungstenite::connect_async(url(&forged)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("forged token: {:?}", other.map(|_| ())),
    }

    // A key set that cannot be read: the process says so and exits.
    let out = Command::new(common::hub_binary())
        .args(["--port", "0", "--jwt-jwks"])
        .arg(k.dir.path().join("no-such-set.json"))
        .arg("--data-dir")
        .arg(dir.path().join("second"))
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--jwt-jwks") && stderr.contains("no-such-set.json"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_key_set_behind_an_untrusted_certificate_stops_the_start() {
    let k = keys();
    let (cert, key) = (k.dir.path().join("tls.crt"), k.dir.path().join("tls.key"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    let port = common::free_port();
    let _tls = ChildProcess(
        Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-accept",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server"),
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    eventually("openssl s_server listening", || {
        std::net::TcpStream::connect(addr).is_ok()
    })
    .await;
    // A self-signed certificate is no provider's: the fetch (rustls, the
    // Mozilla roots) refuses it, and the hub does not start.
    let dir = tempfile::tempdir().unwrap();
    let config = channelbox_hub::Config {
        jwt_jwks: Some(format!("https://127.0.0.1:{port}/jwks.json")),
        data_dir: dir.path().into(),
        ..channelbox_hub::Config::default()
    };
    let error = match channelbox_hub::server::AppState::new(config) {
        Ok(_) => panic!("the hub started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("--jwt-jwks https://") && error.contains("certificate"),
        "{error}"
    );
}
