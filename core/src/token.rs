//! Compact JWS parsing and RS256 signature verification.
//!
//! Order matters for safety: size and shape first, then the header (and `alg` = RS256) before
//! any key is looked up, then the signature, and only then is the payload read.

use crate::error::{excerpt, TokenError};
use crate::json;
use crate::jwks::{Jwk, KeySet};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

/// Longest password treated as a token. Entra tokens are a few KB (about 8 KB with many
/// groups); PostgreSQL itself caps a password message at 65535 bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token whose header has been read and whose algorithm is RS256; not yet trusted.
#[derive(Debug)]
pub struct UnverifiedToken<'a> {
    signing_input: &'a str,
    payload_b64: &'a str,
    signature: Vec<u8>,
    /// The key id as written (`kid`, else `x5t`): what the key set is searched for.
    key_id: String,
    /// The key id to verify with (`kid`, else `x5t`), as a short printable excerpt for
    /// messages and the audit log.
    pub kid: String,
}

/// Splits and decodes the token's header. Refuses everything but RS256 here, before any key
/// lookup.
pub fn parse(token: &[u8]) -> Result<UnverifiedToken<'_>, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge { len: token.len() });
    }
    let text = std::str::from_utf8(token).map_err(|_| TokenError::NotAJwt)?;
    let mut parts = text.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::NotAJwt);
    };
    if h.is_empty() || p.is_empty() || !is_b64url(h) || !is_b64url(p) || !is_b64url(s) {
        return Err(TokenError::NotAJwt);
    }
    let header = decode_object(h, "header")?;
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "RS256" => {}
        Some(Value::String(alg)) => return Err(TokenError::UnsupportedAlgorithm(excerpt(alg))),
        _ => return Err(TokenError::Malformed("header has no \"alg\"".into())),
    }
    if let Some(typ) = header.get("typ") {
        if !matches!(typ.as_str(), Some(t) if t.eq_ignore_ascii_case("JWT")) {
            return Err(TokenError::Malformed("header \"typ\" is not JWT".into()));
        }
    }
    if header.contains_key("crit") {
        return Err(TokenError::Malformed(
            "header has \"crit\" extensions".into(),
        ));
    }
    let id = |name| match header.get(name) {
        Some(Value::String(v)) if !v.is_empty() => Ok(Some(v.clone())),
        Some(Value::String(_)) | None => Ok(None),
        Some(_) => Err(TokenError::Malformed(format!(
            "header \"{name}\" is not a string"
        ))),
    };
    let kid = match (id("kid")?, id("x5t")?) {
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => return Err(TokenError::MissingKeyId),
    };
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed("signature is not base64url".into()))?;
    Ok(UnverifiedToken {
        signing_input: &text[..h.len() + 1 + p.len()],
        payload_b64: p,
        signature,
        kid: excerpt(&kid),
        key_id: kid,
    })
}

impl UnverifiedToken<'_> {
    /// Finds the key in `keys`, checks it serves the token's tenant and verifies the signature;
    /// then decodes the payload.
    pub fn verify(&self, keys: &KeySet) -> Result<Map<String, Value>, TokenError> {
        if keys.is_empty() {
            return Err(TokenError::NoKeys);
        }
        // Search by the id as written: the excerpt differs from it for ids longer than 80
        // characters or holding quotes, and such ids are valid in a key set.
        let key = keys
            .find(&self.key_id)
            .ok_or_else(|| TokenError::UnknownKey {
                kid: self.kid.clone(),
            })?;
        self.verify_with(key)
    }

    /// Verifies the signature with `key`, then decodes the payload (and checks the key's
    /// issuer template against the payload's `tid`).
    pub fn verify_with(&self, key: &Jwk) -> Result<Map<String, Value>, TokenError> {
        let verifier = (DEFAULT_PROVIDER.verifier_factory)(&Algorithm::RS256, &key.key)
            .map_err(|_| TokenError::BadSignature)?;
        if verifier
            .verify(self.signing_input.as_bytes(), &self.signature)
            .is_err()
        {
            return Err(TokenError::BadSignature);
        }
        let claims = decode_object(self.payload_b64, "payload")?;
        if let Some(Value::String(tid)) = claims.get("tid") {
            if !key.serves_tenant(tid) {
                return Err(TokenError::KeyIssuerMismatch {
                    kid: self.kid.clone(),
                });
            }
        }
        Ok(claims)
    }
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn decode_object(part: &str, what: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(format!("{what} is not base64url")))?;
    json::parse_object(&bytes).map_err(|e| TokenError::Malformed(format!("{what}: {e}")))
}
