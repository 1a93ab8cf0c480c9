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
    /// Modulus and exponent, big-endian without leading zeros (for [`KeySet::to_compact_json`]).
    n: Vec<u8>,
    e: Vec<u8>,
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

    /// The usable keys as a compact JWKS document (`kty`, `kid`, `x5t`, `n`, `e`, `issuer`
    /// only), at most `capacity` bytes: keys that do not fit are left out and counted in the
    /// second value. Parsing the result gives the same keys.
    pub fn to_compact_json(&self, capacity: usize) -> (String, usize) {
        let mut doc = String::from("{\"keys\":[");
        let mut left_out = 0;
        for key in &self.keys {
            let mut entry = serde_json::json!({
                "kty": "RSA",
                "use": "sig",
                "kid": key.kid,
                "n": URL_SAFE_NO_PAD.encode(&key.n),
                "e": URL_SAFE_NO_PAD.encode(&key.e),
            });
            if let Some(x5t) = &key.x5t {
                entry["x5t"] = x5t.clone().into();
            }
            if let Some(issuer) = &key.issuer {
                entry["issuer"] = issuer.clone().into();
            }
            let entry = entry.to_string();
            let separator = usize::from(!doc.ends_with('['));
            if doc.len() + separator + entry.len() + 2 > capacity {
                left_out += 1;
                continue;
            }
            if separator == 1 {
                doc.push(',');
            }
            doc.push_str(&entry);
        }
        doc.push_str("]}");
        (doc, left_out)
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
    let issuer = text("issuer")?.map(str::to_owned);
    rsa_key(kid, x5t, issuer, &n, &e)
}

/// Builds a key from its parts, refusing moduli outside the accepted sizes and exponents that
/// are not odd integers of at least 3.
fn rsa_key(
    kid: String,
    x5t: Option<String>,
    issuer: Option<String>,
    n: &[u8],
    e: &[u8],
) -> Result<Jwk, String> {
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
        issuer,
        bits,
        key: DecodingKey::from_rsa_raw_components(n_trimmed, e_trimmed),
        n: n_trimmed.to_vec(),
        e: e_trimmed.to_vec(),
    })
}

/// The binary form of a key set in the shared cache: per key, length-prefixed (u16, little
/// endian) kid, x5t, issuer, modulus and exponent. An absent x5t or issuer has length 0xFFFF.
const ABSENT: u16 = u16::MAX;

impl KeySet {
    /// The usable keys in the binary form, at most `capacity` bytes: keys that do not fit, or
    /// whose `x5t` or `issuer` is too long for a u16 length, are left out and counted in the
    /// second value. [`KeySet::from_bytes`] reads it back without
    /// any JSON or base64 work.
    pub fn to_bytes(&self, capacity: usize) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut left_out = 0;
        for key in &self.keys {
            let mut record = Vec::new();
            let mut field = |bytes: Option<&[u8]>| match bytes {
                Some(b) => {
                    record.extend_from_slice(&(b.len() as u16).to_le_bytes());
                    record.extend_from_slice(b);
                }
                None => record.extend_from_slice(&ABSENT.to_le_bytes()),
            };
            field(Some(key.kid.as_bytes()));
            field(key.x5t.as_deref().map(str::as_bytes));
            field(key.issuer.as_deref().map(str::as_bytes));
            field(Some(&key.n));
            field(Some(&key.e));
            // A length of 0xFFFF or more cannot be written: it would read back as "absent" or
            // wrap, and the rest of the field as further fields (kid, n and e are short).
            if out.len() + record.len() > capacity
                || [&key.x5t, &key.issuer]
                    .into_iter()
                    .flatten()
                    .any(|v| v.len() >= ABSENT as usize)
            {
                left_out += 1;
            } else {
                out.extend_from_slice(&record);
            }
        }
        (out, left_out)
    }

    /// Reads the binary form back; every length is checked against what is left.
    pub fn from_bytes(mut bytes: &[u8]) -> Result<KeySet, String> {
        fn field<'a>(bytes: &mut &'a [u8]) -> Result<Option<&'a [u8]>, String> {
            let (len, rest) = bytes
                .split_first_chunk::<2>()
                .ok_or("truncated key record")?;
            let len = u16::from_le_bytes(*len);
            if len == ABSENT {
                *bytes = rest;
                return Ok(None);
            }
            let (value, rest) = rest
                .split_at_checked(len as usize)
                .ok_or("truncated key record")?;
            *bytes = rest;
            Ok(Some(value))
        }
        let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        let mut set = KeySet::default();
        while !bytes.is_empty() {
            let kid = text(field(&mut bytes)?).ok_or("key record without kid")?;
            let x5t = text(field(&mut bytes)?);
            let issuer = text(field(&mut bytes)?);
            let n = field(&mut bytes)?.ok_or("key record without modulus")?;
            let e = field(&mut bytes)?.ok_or("key record without exponent")?;
            set.keys.push(rsa_key(kid, x5t, issuer, n, e)?);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: &str = "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw";

    fn doc(n_keys: usize) -> String {
        let keys: Vec<_> = (0..n_keys)
            .map(|i| serde_json::json!({"kty":"RSA","use":"sig","kid":format!("k{i}"),"x5t":format!("k{i}"),"n":N,"e":"AQAB","issuer":"https://login.microsoftonline.com/{tenantid}/v2.0","x5c":["MIIC..."]}))
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    #[test]
    fn jwks_compact_json_round_trips() {
        let set = KeySet::parse(doc(3).as_bytes()).unwrap();
        let (compact, left_out) = set.to_compact_json(1 << 20);
        assert_eq!(left_out, 0);
        assert!(!compact.contains("x5c"));
        let again = KeySet::parse(compact.as_bytes()).unwrap();
        assert_eq!(again.keys().len(), 3);
        for (a, b) in set.keys().iter().zip(again.keys()) {
            assert_eq!(
                (&a.kid, &a.x5t, &a.issuer, a.bits, &a.n, &a.e),
                (&b.kid, &b.x5t, &b.issuer, b.bits, &b.n, &b.e)
            );
        }
    }

    #[test]
    fn jwks_binary_form_round_trips_and_respects_capacity() {
        let set = KeySet::parse(doc(10).as_bytes()).unwrap();
        let (bytes, left_out) = set.to_bytes(1 << 20);
        assert_eq!(left_out, 0);
        let again = KeySet::from_bytes(&bytes).unwrap();
        assert_eq!(again.keys().len(), 10);
        for (a, b) in set.keys().iter().zip(again.keys()) {
            assert_eq!(
                (&a.kid, &a.x5t, &a.issuer, a.bits, &a.n, &a.e),
                (&b.kid, &b.x5t, &b.issuer, b.bits, &b.n, &b.e)
            );
        }
        let (half, left_out) = set.to_bytes(bytes.len() / 2);
        assert!(half.len() <= bytes.len() / 2 && left_out > 0);
        assert_eq!(
            KeySet::from_bytes(&half).unwrap().keys().len() + left_out,
            10
        );
        // truncated or corrupted input is an error, never a panic
        for cut in [1, 2, 5, bytes.len() / 3, bytes.len() - 1] {
            assert!(KeySet::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn jwks_compact_json_respects_capacity() {
        let set = KeySet::parse(doc(10).as_bytes()).unwrap();
        let (one, _) = set.to_compact_json(1 << 20);
        let capacity = one.len() / 2;
        let (half, left_out) = set.to_compact_json(capacity);
        assert!(half.len() <= capacity);
        assert!(left_out > 0);
        let parsed = KeySet::parse(half.as_bytes()).unwrap();
        assert_eq!(parsed.keys().len() + left_out, 10);
    }

    /// A modulus of `bits` bits stored in `len` bytes (leading zero bytes when longer).
    fn modulus(bits: usize, len: usize) -> Vec<u8> {
        let mut n = vec![0xff_u8; len];
        let used = bits.div_ceil(8);
        for b in n.iter_mut().take(len - used) {
            *b = 0;
        }
        let top = bits % 8;
        if top != 0 {
            n[len - used] = ((1u8 << top) - 1) | (1u8 << (top - 1));
        }
        n
    }

    #[test]
    fn rsa_key_counts_bits_not_bytes_so_a_2047_bit_modulus_in_256_bytes_is_refused() {
        let e = [1, 0, 1];
        for bits in [2041, 2047] {
            let n = modulus(bits, 256);
            assert_eq!(n.len(), 256);
            let err = rsa_key("k".into(), None, None, &n, &e).unwrap_err();
            assert!(err.contains(&format!("{bits} bits")), "{err}");
        }
        let key = rsa_key("k".into(), None, None, &modulus(2048, 256), &e).unwrap();
        assert_eq!(key.bits, 2048);
        // Leading zero bytes do not count either.
        let key = rsa_key("k".into(), None, None, &modulus(2048, 260), &e).unwrap();
        assert_eq!(key.bits, 2048);
        assert!(rsa_key("k".into(), None, None, &modulus(8193, 1025), &e).is_err());
        assert_eq!(
            rsa_key("k".into(), None, None, &modulus(8192, 1024), &e)
                .unwrap()
                .bits,
            8192
        );
    }

    #[test]
    fn rsa_key_exponent_of_nine_bytes_is_refused_eight_accepted() {
        let n = modulus(2048, 256);
        let mut nine = vec![1u8; 9];
        nine[8] = 3;
        let err = rsa_key("k".into(), None, None, &n, &nine).unwrap_err();
        assert!(err.contains("not a small integer"), "{err}");
        // Leading zeros do not make it longer; eight significant bytes are a small integer.
        let mut padded = vec![0u8; 4];
        padded.extend_from_slice(&nine[1..]);
        assert!(rsa_key("k".into(), None, None, &n, &padded).is_ok());
        assert!(rsa_key("k".into(), None, None, &n, &nine[1..]).is_ok());
    }

    fn key_with(kid: Option<&str>, x5t: Option<&str>) -> Result<Jwk, String> {
        let mut entry = serde_json::json!({"kty": "RSA", "n": N, "e": "AQAB"});
        if let Some(kid) = kid {
            entry["kid"] = kid.into();
        }
        if let Some(x5t) = x5t {
            entry["x5t"] = x5t.into();
        }
        parse_key(&entry)
    }

    #[test]
    fn parse_key_empty_ids_are_no_ids() {
        assert!(key_with(Some(""), None).is_err());
        assert!(key_with(Some(""), Some("")).is_err());
        assert!(key_with(None, Some("")).is_err());
        assert!(key_with(None, None).is_err());
        // An empty kid gives way to the x5t; an empty x5t leaves the kid.
        assert_eq!(key_with(Some(""), Some("t1")).unwrap().kid, "t1");
        assert_eq!(key_with(Some("k1"), Some("")).unwrap().kid, "k1");
        assert_eq!(key_with(None, Some("t1")).unwrap().kid, "t1");
    }

    #[test]
    fn to_bytes_keeps_a_key_that_fits_exactly_and_never_exceeds_capacity() {
        let set = KeySet::parse(doc(3).as_bytes()).unwrap();
        let (all, _) = set.to_bytes(1 << 20);
        let (one, _) = KeySet::parse(doc(1).as_bytes()).unwrap().to_bytes(1 << 20);
        let record = one.len();
        assert_eq!(all.len(), 3 * record);
        for capacity in 0..=all.len() + 1 {
            let (bytes, left_out) = set.to_bytes(capacity);
            assert!(bytes.len() <= capacity, "{} > {capacity}", bytes.len());
            // Every key that fits is kept: as many whole records as the capacity holds.
            let fit = (capacity / record).min(3);
            assert_eq!(
                (bytes.len(), left_out),
                (fit * record, 3 - fit),
                "{capacity}"
            );
        }
    }

    #[test]
    fn to_compact_json_keeps_a_key_that_fits_exactly_and_never_exceeds_capacity() {
        let set = KeySet::parse(doc(3).as_bytes()).unwrap();
        let (all, _) = set.to_compact_json(1 << 20);
        let (one, _) = KeySet::parse(doc(1).as_bytes())
            .unwrap()
            .to_compact_json(1 << 20);
        for capacity in 0..=all.len() + 1 {
            let (json, left_out) = set.to_compact_json(capacity);
            let kept = KeySet::parse(json.as_bytes()).map_or(0, |k| k.keys().len());
            assert_eq!(kept + left_out, 3, "{capacity}");
            if capacity >= "{\"keys\":[]}".len() {
                assert!(json.len() <= capacity, "{} > {capacity}", json.len());
            }
            // A key is kept whenever the document with it still fits.
            let want = if capacity >= all.len() {
                3
            } else if capacity >= all.len() - (all.len() - one.len()) / 2 {
                2
            } else if capacity >= one.len() {
                1
            } else {
                0
            };
            assert_eq!(kept, want, "{capacity}");
        }
    }

    #[test]
    fn parse_key_kid_of_256_bytes_is_accepted_257_refused() {
        assert!(key_with(Some(&"k".repeat(256)), None).is_ok());
        let err = key_with(Some(&"k".repeat(257)), None).unwrap_err();
        assert!(err.contains("longer than 256"), "{err}");
    }

    #[test]
    fn jwk_debug_names_the_key_never_its_material() {
        let key = key_with(Some("kid-1"), Some("t-1")).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("kid-1") && shown.contains("2048"), "{shown}");
        assert!(!shown.contains(&N[..20]), "{shown}");
    }

    #[test]
    fn jwks_errors_say_what_is_wrong() {
        assert_eq!(
            JwksError::TooLarge(5).to_string(),
            format!("key set of 5 bytes is larger than the limit of {MAX_JWKS_BYTES} bytes")
        );
        assert_eq!(
            JwksError::NotJson("x".into()).to_string(),
            "key set is not valid JSON: x"
        );
        assert_eq!(
            JwksError::NoKeysArray.to_string(),
            "key set has no \"keys\" array"
        );
    }
}
