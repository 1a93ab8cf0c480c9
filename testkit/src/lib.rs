//! Test support for aad_auth: RSA signing keys generated at test time, the key sets that
//! publish them, and Entra-shaped access tokens minted with them. Nothing here reaches Entra ID.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

pub use serde_json;

/// The resource `az account get-access-token --resource-type oss-rdbms` requests.
pub const OSSRDBMS: &str = "https://ossrdbms-aad.database.windows.net";
/// The Azure CLI's client id, as it appears in `appid` of CLI-issued user tokens.
pub const AZ_CLI_APPID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// An RSA signing key with its key id.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    key: RsaPrivateKey,
}

impl TestKey {
    /// A fresh 2048-bit key.
    pub fn generate(kid: &str) -> TestKey {
        Self::generate_bits(kid, 2048)
    }

    pub fn generate_bits(kid: &str, bits: usize) -> TestKey {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), bits).expect("RSA key generation");
        TestKey {
            kid: kid.to_owned(),
            key,
        }
    }

    /// The same key under another key id.
    pub fn with_kid(&self, kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_owned(),
            key: self.key.clone(),
        }
    }

    /// The key as a JWK, shaped as Entra publishes it (`kty`, `use`, `kid`, `x5t`, `n`, `e`,
    /// `issuer` template).
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": URL_SAFE_NO_PAD.encode(self.key.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(self.key.e().to_bytes_be()),
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
        })
    }

    /// Signs `input` (base64url header "." base64url payload) with RS256.
    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        SigningKey::<Sha256>::new(self.key.clone())
            .sign(input)
            .to_vec()
    }

    /// The public modulus, big-endian (for tests that forge with the public key's bytes).
    pub fn public_modulus(&self) -> Vec<u8> {
        self.key.n().to_bytes_be()
    }

    /// PKCS#1 DER of the private key, so a key can be saved and used again (the demo).
    pub fn to_pkcs1_der(&self) -> Vec<u8> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        self.key
            .to_pkcs1_der()
            .expect("encode key")
            .as_bytes()
            .to_vec()
    }

    pub fn from_pkcs1_der(kid: &str, der: &[u8]) -> Option<TestKey> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        RsaPrivateKey::from_pkcs1_der(der).ok().map(|key| TestKey {
            kid: kid.to_owned(),
            key,
        })
    }
}

/// A JWKS document publishing `keys`.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
}

/// HMAC-SHA256, for forging an HS256 token the way an attacker would (keyed with the public
/// key's bytes, the classic algorithm confusion).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut k = if key.len() > 64 {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let ih = Sha256::new()
        .chain_update(&inner)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer)
        .chain_update(ih)
        .finalize()
        .to_vec()
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The header Entra puts on v1 tokens.
pub fn header(kid: &str) -> Value {
    json!({"typ": "JWT", "alg": "RS256", "kid": kid, "x5t": kid})
}

/// Signs `header` and `claims` with `key` into a compact JWS.
pub fn mint(key: &TestKey, header: &Value, claims: &Value) -> String {
    mint_raw(
        key,
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
    )
}

/// Signs raw header and payload bytes (for malformed-JSON and duplicate-key cases).
pub fn mint_raw(key: &TestKey, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// Entra-shaped claims for tests, starting from a valid user token and changed field by field.
pub struct Claims;

impl Claims {
    /// A v1 user token as `az account get-access-token --resource-type oss-rdbms` returns it,
    /// valid for an hour from now.
    pub fn user(tid: &str, oid: &str, upn: &str) -> Value {
        let now = now();
        json!({
            "aud": OSSRDBMS,
            "iss": format!("https://sts.windows.net/{tid}/"),
            "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
            "amr": ["pwd"],
            "appid": AZ_CLI_APPID,
            "appidacr": "0",
            "idtyp": "user",
            "name": "Test User",
            "oid": oid,
            "scp": "user_impersonation",
            "sub": "pairwise-subject-not-used",
            "tid": tid,
            "unique_name": upn,
            "upn": upn,
            "ver": "1.0",
        })
    }

    /// A v1 app-only token of a service principal or managed identity.
    pub fn app(tid: &str, oid: &str, appid: &str) -> Value {
        let now = now();
        json!({
            "aud": OSSRDBMS,
            "iss": format!("https://sts.windows.net/{tid}/"),
            "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
            "appid": appid,
            "appidacr": "2",
            "idtyp": "app",
            "oid": oid,
            "sub": oid,
            "tid": tid,
            "ver": "1.0",
        })
    }

    /// A v2 user token (issuer under the authority, audience the app id).
    pub fn user_v2(tid: &str, oid: &str, upn: &str) -> Value {
        let now = now();
        json!({
            "aud": "123cd850-d9df-40bd-94d5-c9f07b7fa203",
            "iss": format!("https://login.microsoftonline.com/{tid}/v2.0"),
            "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
            "azp": AZ_CLI_APPID,
            "idtyp": "user",
            "oid": oid,
            "preferred_username": upn,
            "scp": "user_impersonation",
            "tid": tid,
            "ver": "2.0",
        })
    }
}

/// Sets `claims[name] = value` (or removes it when `value` is null) and returns the claims.
pub fn with(mut claims: Value, name: &str, value: Value) -> Value {
    if let Some(map) = claims.as_object_mut() {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.to_owned(), value);
        }
    }
    claims
}
