//! Key sets (JWKS) as Entra ID publishes them: RSA signing keys named by `kid` and `x5t`.

use crate::json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::DecodingKey;
use serde_json::Value;
use std::fmt;

/// A key set document larger than this is refused (Entra's is a few KB).
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// At most this many keys are kept from one document (Entra publishes a handful).
pub const MAX_KEYS: usize = 64;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits.
pub const MAX_RSA_BITS: usize = 8192;

/// One RSA signing key.
#[derive(Clone)]
pub struct Jwk {
    /// `kid`, or `x5t` when the key has no `kid`.
    pub kid: String,
    /// `x5t`, when present.
    pub x5t: Option<String>,
    /// `issuer` template (may contain `{tenantid}`).
    pub issuer: Option<String>,
    /// Modulus size in bits.
    pub bits: usize,
    pub(crate) key: DecodingKey,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("x5t", &self.x5t)
            .field("issuer", &self.issuer)
            .field("bits", &self.bits)
            .finish()
    }
}

impl Jwk {
    /// True when the key's `issuer` (if any) is valid for tenant `tid`: after substituting
    /// `{tenantid}`, it must name that tenant. Keys without `issuer` belong to whoever
    /// serves them (the tenant's own endpoint, or the DBA's file).
    pub fn serves_tenant(&self, tid: &str) -> bool {
        match &self.issuer {
            None => true,
            Some(template) => template
                .replace("{tenantid}", tid)
                .to_ascii_lowercase()
                .contains(&tid.to_ascii_lowercase()),
        }
    }
}

/// A parsed key set.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
    /// Keys left out, each with the reason (for the log and the status function).
    pub skipped: Vec<String>,
}

/// Why a key set document was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    TooLarge(usize),
    NotJson(String),
    NoKeysArray,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::TooLarge(n) => write!(
                f,
                "key set of {n} bytes is larger than the limit of {MAX_JWKS_BYTES} bytes"
            ),
            JwksError::NotJson(e) => write!(f, "key set is not valid JSON: {e}"),
            JwksError::NoKeysArray => f.write_str("key set has no \"keys\" array"),
        }
    }
}

impl std::error::Error for JwksError {}

impl KeySet {
    /// Parses a JWKS document. Keys that cannot verify RS256 (other `kty`, `use` other than
    /// `sig`, `alg` other than RS256, bad or too small modulus, no id) are skipped with a reason;
    /// keys past [`MAX_KEYS`] are skipped too.
    pub fn parse(doc: &[u8]) -> Result<KeySet, JwksError> {
        if doc.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge(doc.len()));
        }
        let root = json::parse_object(doc).map_err(JwksError::NotJson)?;
        let Some(Value::Array(entries)) = root.get("keys") else {
            return Err(JwksError::NoKeysArray);
        };
        let mut set = KeySet::default();
        for (i, entry) in entries.iter().enumerate() {
            match parse_key(entry) {
                Ok(_) if set.keys.len() >= MAX_KEYS => set
                    .skipped
                    .push(format!("key {i}: more than {MAX_KEYS} keys in the set")),
                Ok(key) if set.find(&key.kid).is_some() => set
                    .skipped
                    .push(format!("key {i}: duplicate kid \"{}\"", key.kid)),
                Ok(key) => set.keys.push(key),
                Err(why) => set.skipped.push(format!("key {i}: {why}")),
            }
        }
        Ok(set)
    }

    /// The key named `kid` (matching a key's `kid` or its `x5t`).
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys
            .iter()
            .find(|k| k.kid == kid)
            .or_else(|| self.keys.iter().find(|k| k.x5t.as_deref() == Some(kid)))
    }

    /// The usable keys.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn parse_key(entry: &Value) -> Result<Jwk, String> {
    let obj = entry.as_object().ok_or("not an object")?;
    let text = |name: &str| -> Result<Option<&str>, String> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("\"{name}\" is not a string")),
        }
    };
    match text("kty")? {
        Some("RSA") => {}
        other => {
            return Err(format!(
                "kty {:?} is not RSA",
                other.map(crate::error::excerpt)
            ))
        }
    }
    if let Some(u) = text("use")? {
        if u != "sig" {
            return Err(format!("use \"{}\" is not sig", crate::error::excerpt(u)));
        }
    }
    if let Some(alg) = text("alg")? {
        if alg != "RS256" {
            return Err(format!(
                "alg \"{}\" is not RS256",
                crate::error::excerpt(alg)
            ));
        }
    }
    let x5t = text("x5t")?.map(str::to_owned);
    let kid = match (text("kid")?, &x5t) {
        (Some(k), _) if !k.is_empty() => k.to_owned(),
        (_, Some(t)) if !t.is_empty() => t.clone(),
        _ => return Err("no kid or x5t".into()),
    };
    if kid.len() > 256 {
        return Err("kid longer than 256 bytes".into());
    }
    let decode = |name: &str| -> Result<Vec<u8>, String> {
        let v = text(name)?.ok_or_else(|| format!("no \"{name}\""))?;
        URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .map_err(|_| format!("\"{name}\" is not base64url"))
    };
    let n = decode("n")?;
    let e = decode("e")?;
    let n_trimmed = match n.iter().position(|&b| b != 0) {
        Some(first) => &n[first..],
        None => return Err("modulus is zero".into()),
    };
    let bits = n_trimmed.len() * 8 - n_trimmed[0].leading_zeros() as usize;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "modulus of {bits} bits is outside {MIN_RSA_BITS}..={MAX_RSA_BITS}"
        ));
    }
    let e_trimmed = match e.iter().position(|&b| b != 0) {
        Some(first) => &e[first..],
        None => return Err("exponent is zero or empty".into()),
    };
    if e_trimmed.len() > 8 {
        return Err("exponent is not a small integer".into());
    }
    // RSA needs an odd public exponent of at least 3 (1 makes every "signature" trivially
    // forgeable; verification would refuse such a key, silently, on every token).
    if e_trimmed.last().is_some_and(|b| b & 1 == 0) || e_trimmed == [1] {
        return Err("exponent is not an odd integer of at least 3".into());
    }
    Ok(Jwk {
        kid,
        x5t,
        issuer: text("issuer")?.map(str::to_owned),
        bits,
        key: DecodingKey::from_rsa_raw_components(n_trimmed, e_trimmed),
    })
}
