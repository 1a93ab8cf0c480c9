//! Tokens that Microsoft Entra ID really issued (long expired, found in public repositories),
//! with the Microsoft public keys that signed them: shared/fixtures/real-entra-tokens.json,
//! beside the checkout (CI lays shared/ there). The core must accept each at a time inside its
//! lifetime, through the injected clock, as the right kind of principal, and refuse it once
//! anything about it is off: so that no rule can drift from what Entra issues.

use aad_auth_core::{validate, KeySet, Label, Policy, TokenError, TokenKind};
use aad_auth_testkit::serde_json::{self, json, Value};
use std::path::PathBuf;

struct Real {
    note: String,
    token: String,
    jwk: Value,
    claims: Value,
}

fn fixtures() -> Vec<Real> {
    // AAD_REAL_TOKENS names the file when the tree is a copy elsewhere (make mutants).
    let path = std::env::var_os("AAD_REAL_TOKENS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/fixtures/real-entra-tokens.json")
        });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the real-token fixtures live in shared/, beside the checkout",
            path.display()
        )
    });
    let doc: Value = serde_json::from_str(&text).expect("fixture JSON");
    doc["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| Real {
            note: t["note"].as_str().unwrap_or_default().to_owned(),
            token: t["token"].as_str().expect("token").to_owned(),
            jwk: t["jwk"].clone(),
            claims: t["claims"].clone(),
        })
        .collect()
}

impl Real {
    fn claim(&self, name: &str) -> &str {
        self.claims[name].as_str().unwrap_or_default()
    }

    fn keys(&self) -> KeySet {
        KeySet::parse(json!({ "keys": [self.jwk] }).to_string().as_bytes()).expect("the key")
    }

    /// Inside the token's lifetime.
    fn now(&self) -> i64 {
        self.claims["iat"].as_i64().expect("iat") + 60
    }

    fn is_app(&self) -> bool {
        self.claims["idtyp"] == "app"
    }

    /// The policy the token was issued for: its tenant, and its audience unless it is the
    /// Azure Database for PostgreSQL resource (accepted by default).
    fn policy(&self) -> Policy {
        let mut policy = Policy::for_tenant(self.claim("tid").parse().expect("tid"));
        if !policy.audiences.iter().any(|a| a == self.claim("aud")) {
            policy.audiences = vec![self.claim("aud").to_owned()];
        }
        policy
    }

    /// The label of the role bound to the token's principal.
    fn label(&self) -> Label {
        let kind = if self.is_app() { "service" } else { "user" };
        format!("aadauth,oid={},type={kind}", self.claim("oid"))
            .parse()
            .expect("label")
    }

    fn check(&self, token: &str, keys: &KeySet, policy: &Policy) -> Result<TokenKind, TokenError> {
        validate(token.as_bytes(), keys, policy, &self.label(), self.now())
            .result
            .map(|p| p.kind)
    }
}

#[test]
fn real_tokens_are_accepted_as_the_right_principal() {
    let all = fixtures();
    assert!(
        all.len() >= 2,
        "expected the v1 app token and the v2 user token"
    );
    for real in &all {
        let want = if real.is_app() {
            TokenKind::App
        } else {
            TokenKind::User
        };
        assert_eq!(
            real.check(&real.token, &real.keys(), &real.policy()),
            Ok(want),
            "{}",
            real.note
        );
    }
}

#[test]
fn real_tokens_are_refused_when_anything_is_off() {
    for real in fixtures() {
        let (keys, policy) = (real.keys(), real.policy());
        // One byte of the payload changed.
        let parts: Vec<&str> = real.token.split('.').collect();
        let mut payload = parts[1].as_bytes().to_vec();
        let i = payload.len() / 2;
        payload[i] = if payload[i] == b'A' { b'B' } else { b'A' };
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            String::from_utf8(payload).unwrap(),
            parts[2]
        );
        assert!(
            matches!(
                real.check(&tampered, &keys, &policy),
                Err(TokenError::BadSignature | TokenError::Malformed(_))
            ),
            "{}: a changed payload byte",
            real.note
        );
        // Another tenant.
        let mut other = policy.clone();
        other.tenant = "f8cdef31-a31e-4b4a-93e4-5f571e91255a".parse().unwrap();
        assert!(
            matches!(
                real.check(&real.token, &keys, &other),
                Err(TokenError::WrongTenant { .. })
            ),
            "{}: another tenant",
            real.note
        );
        // Without its key (another real Microsoft key only).
        let others: Vec<Value> = fixtures()
            .into_iter()
            .filter(|o| o.jwk["kid"] != real.jwk["kid"])
            .map(|o| o.jwk)
            .collect();
        let without = KeySet::parse(json!({ "keys": others }).to_string().as_bytes()).unwrap();
        assert!(
            matches!(
                real.check(&real.token, &without, &policy),
                Err(TokenError::UnknownKey { .. })
            ),
            "{}: without its key",
            real.note
        );
        // After it expired.
        let exp = real.claims["exp"].as_i64().unwrap();
        let late = validate(
            real.token.as_bytes(),
            &keys,
            &policy,
            &real.label(),
            exp + 3600,
        );
        assert!(
            matches!(late.result, Err(TokenError::Expired { .. })),
            "{}: expired",
            real.note
        );
        // A custom API's token (v2) is refused with the default audiences.
        if real.claim("aud") != "https://ossrdbms-aad.database.windows.net" {
            let default = Policy::for_tenant(policy.tenant);
            assert!(
                matches!(
                    real.check(&real.token, &keys, &default),
                    Err(TokenError::WrongAudience { .. })
                ),
                "{}: default audiences",
                real.note
            );
        }
    }
}
