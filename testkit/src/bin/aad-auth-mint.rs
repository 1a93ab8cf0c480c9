//! aad-auth-mint: a local stand-in for Entra ID, for the demo and for manual tests.
//!
//!   aad-auth-mint keygen DIR [KID]        writes DIR/signing-key.der and DIR/jwks.json
//!   aad-auth-mint user DIR TID OID UPN [--expired] [--mfa] [--lifetime=SECONDS]
//!   aad-auth-mint app DIR TID OID APPID [--expired] [--lifetime=SECONDS]
//!
//! `--lifetime=SECONDS` mints a token that expires that many seconds from now (Entra ID's own
//! last 60 to 90 minutes): the client-recipe tests use tokens of a few seconds.
//!
//! Tokens are printed on stdout. The signing key never leaves DIR.

use aad_auth_testkit::serde_json::json;
use aad_auth_testkit::{header, jwks, mint, now, with, Claims, TestKey};
use std::path::Path;
use std::process::exit;

fn usage() -> ! {
    eprintln!(
        "usage:\n  aad-auth-mint keygen DIR [KID]\n  aad-auth-mint user DIR TID OID UPN [--expired] [--mfa] [--lifetime=SECONDS]\n  aad-auth-mint app DIR TID OID APPID [--expired] [--lifetime=SECONDS]"
    );
    exit(2)
}

fn load(dir: &Path) -> TestKey {
    let kid = std::fs::read_to_string(dir.join("kid")).unwrap_or_else(|e| {
        eprintln!(
            "aad-auth-mint: cannot read {}: {e} (run keygen first)",
            dir.join("kid").display()
        );
        exit(1)
    });
    let der = std::fs::read(dir.join("signing-key.der")).unwrap_or_else(|e| {
        eprintln!("aad-auth-mint: cannot read signing key: {e}");
        exit(1)
    });
    TestKey::from_pkcs1_der(kid.trim(), &der).unwrap_or_else(|| {
        eprintln!("aad-auth-mint: signing-key.der is not an RSA key");
        exit(1)
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags: Vec<&str> = args
        .iter()
        .filter(|a| a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let pos: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    match pos.as_slice() {
        ["keygen", dir, rest @ ..] => {
            let kid = rest.first().copied().unwrap_or("demo-key-1");
            let key = TestKey::generate(kid);
            let dir = Path::new(dir);
            let write = |name: &str, bytes: &[u8]| {
                std::fs::write(dir.join(name), bytes).unwrap_or_else(|e| {
                    eprintln!(
                        "aad-auth-mint: cannot write {}: {e}",
                        dir.join(name).display()
                    );
                    exit(1)
                })
            };
            write("signing-key.der", &key.to_pkcs1_der());
            write("kid", kid.as_bytes());
            write("jwks.json", jwks(&[&key]).as_bytes());
            println!("{}", dir.join("jwks.json").display());
        }
        [kind @ ("user" | "app"), dir, tid, oid, name] => {
            let key = load(Path::new(dir));
            let mut claims = if *kind == "user" {
                Claims::user(tid, oid, name)
            } else {
                Claims::app(tid, oid, name)
            };
            if flags.contains(&"--expired") {
                let t = now() - 7200;
                claims = with(claims, "iat", json!(t));
                claims = with(claims, "nbf", json!(t));
                claims = with(claims, "exp", json!(t + 3600));
            }
            if let Some(lifetime) = flags.iter().find_map(|f| f.strip_prefix("--lifetime=")) {
                let Ok(lifetime) = lifetime.parse::<i64>() else {
                    usage()
                };
                let t = now();
                claims = with(claims, "iat", json!(t));
                claims = with(claims, "nbf", json!(t));
                claims = with(claims, "exp", json!(t + lifetime));
            }
            if flags.contains(&"--mfa") {
                claims = with(claims, "amr", json!(["pwd", "mfa"]));
            }
            println!("{}", mint(&key, &header(&key.kid), &claims));
        }
        _ => usage(),
    }
}
