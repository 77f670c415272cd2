//! Public keys that verify tokens from an identity provider: one from a PEM
//! file (`--jwt-public-key`) or many from a JWK Set (`--jwt-jwks`).
//!
//! A key's own kind decides the one algorithm it verifies (RSA: RS256,
//! EC P-256: ES256, Ed25519: EdDSA), never the token's header: a token
//! whose `alg` differs from its key's is refused, and no public key is
//! ever used as an HMAC secret. Symmetric (`oct`) keys are not taken from
//! a key set, and keys for encryption (`"use": "enc"`) are skipped.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// A public key and the one algorithm it verifies.
#[derive(Clone)]
pub struct VerifyingKey {
    /// RS256, ES256 or EdDSA, from the key's kind.
    pub alg: Algorithm,
    /// What jsonwebtoken verifies the signature with.
    pub key: DecodingKey,
}

/// Keys of a JWK Set by `kid`.
pub type KeysById = HashMap<String, VerifyingKey>;

/// The DER of the named curve P-256 (prime256v1, 1.2.840.10045.3.1.7),
/// as it appears in an EC key's SubjectPublicKeyInfo.
const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The key of a public-key PEM (`-----BEGIN PUBLIC KEY-----`, or PKCS#1
/// `RSA PUBLIC KEY`): RSA, EC P-256 or Ed25519. Private keys and
/// certificates are refused, so a wrong file is named at start.
pub fn from_pem(pem: &[u8]) -> Result<VerifyingKey, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not a PEM text file".to_owned())?;
    if text.contains("PRIVATE KEY-----") {
        return Err("this is a private key: give the provider's public key".into());
    }
    if text.contains("-----BEGIN RSA PUBLIC KEY-----") {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| format!("bad RSA key: {e}"))?;
        return Ok(VerifyingKey {
            alg: Algorithm::RS256,
            key,
        });
    }
    if !text.contains("-----BEGIN PUBLIC KEY-----") {
        return Err("expected a PEM '-----BEGIN PUBLIC KEY-----' block".into());
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(VerifyingKey {
            alg: Algorithm::RS256,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok(VerifyingKey {
            alg: Algorithm::EdDSA,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        // jsonwebtoken reads any curve's point; ES256 wants P-256.
        let der = pem_body(text).ok_or("bad PEM base64")?;
        if !der.windows(P256_OID.len()).any(|w| w == P256_OID) {
            return Err("an EC key on a curve other than P-256 (only ES256 is accepted)".into());
        }
        return Ok(VerifyingKey {
            alg: Algorithm::ES256,
            key,
        });
    }
    Err("not an RSA, EC P-256 or Ed25519 public key".into())
}

/// The DER bytes of the first PEM block in `text`.
fn pem_body(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// One JWK as a signing key with its `kid`; `Err` says why it is skipped.
pub fn from_jwk(value: &serde_json::Value) -> Result<(String, VerifyingKey), String> {
    let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|e| format!("not a JWK: {e}"))?;
    let kid = jwk
        .common
        .key_id
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or("no kid")?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err(format!("kid {kid}: not a signing key (use)"));
    }
    let declared = jwk.common.key_algorithm;
    let (alg, expected) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (Algorithm::EdDSA, KeyAlgorithm::EdDSA)
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err(format!(
                "kid {kid}: symmetric keys are not taken from a key set"
            ))
        }
        _ => return Err(format!("kid {kid}: unsupported curve")),
    };
    if declared.is_some_and(|d| d != expected) {
        return Err(format!(
            "kid {kid}: alg {declared:?} is not accepted (RS256, ES256 and EdDSA are)"
        ));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("kid {kid}: {e}"))?;
    Ok((kid, VerifyingKey { alg, key }))
}

/// The signing keys of a JWK Set document (`{"keys": [...]}`), with a
/// line for each key skipped. `Err` when the document is not a key set or
/// holds no usable key.
pub fn parse_jwks(body: &[u8]) -> Result<(KeysById, Vec<String>), String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a JWK Set: {e}"))?;
    let mut keys = KeysById::new();
    let mut skipped = Vec::new();
    for value in &document.keys {
        match from_jwk(value) {
            Ok((kid, key)) => match keys.entry(kid) {
                Entry::Occupied(e) => {
                    skipped.push(format!("kid {}: listed twice, the first kept", e.key()))
                }
                Entry::Vacant(e) => {
                    e.insert(key);
                }
            },
            Err(why) => skipped.push(why),
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "no usable signing key (RS256, ES256 or EdDSA with a kid) among {} keys{}",
            document.keys.len(),
            if skipped.is_empty() {
                String::new()
            } else {
                format!(": {}", skipped.join("; "))
            }
        ));
    }
    Ok((keys, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_key_set_keeps_signing_keys_and_says_why_others_are_skipped() {
        // An Ed25519 key (RFC 8037, A.2), an `oct` key, an encryption
        // key, one without kid, one with another alg.
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let set = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "ed"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hs"},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "enc", "use": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": x},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "wrong-alg", "alg": "ES256"},
            {"kty": "weird"},
        ]});
        let (keys, skipped) = parse_jwks(set.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["ed"]);
        assert_eq!(keys["ed"].alg, Algorithm::EdDSA);
        assert_eq!(skipped.len(), 5, "{skipped:?}");
        assert!(
            skipped.iter().any(|s| s.contains("symmetric")),
            "{skipped:?}"
        );
    }

    #[test]
    fn a_set_without_usable_keys_or_not_a_set_is_an_error() {
        assert!(parse_jwks(b"{\"keys\": []}").is_err());
        assert!(parse_jwks(b"[1, 2]").is_err());
        assert!(parse_jwks(b"not json").is_err());
    }

    #[test]
    fn private_keys_and_garbage_are_not_public_keys() {
        let private =
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        let why = |pem: &[u8]| from_pem(pem).err().expect("refused");
        assert!(why(private).contains("private key"));
        assert!(why(b"hello").contains("PUBLIC KEY"));
    }
}
