//! A deterministic, seeded mutation fuzzer over the token parser and validator, for stable Rust
//! (no cargo-fuzz, no libFuzzer). Each target is its own test:
//!
//! - `fuzz_arbitrary_bytes`: random bytes and biased alphabets into `validate`, `token::parse`,
//!   `KeySet::parse` and `Label::from_str`: nothing panics, nothing is accepted.
//! - `fuzz_mutated_signed_tokens`: byte, segment, claim, header, encoding and signature mutations
//!   of valid signed tokens, keeping the original signature: only a token byte-identical to one
//!   of the valid tokens may be accepted (or even pass signature verification).
//! - `fuzz_resigned_claims`: JSON-level mutations of the claims, properly re-signed with the
//!   trusted key: the verdict must be the one an independent reading of the rules gives.
//! - `fuzz_mutated_key_sets`: mutations of the published key set: a valid token is accepted
//!   only when the set still holds the signing key; the compact JSON and binary cache forms
//!   read back the same keys; corrupted binary forms never panic.
//!
//! `AAD_FUZZ_ITERATIONS` sets the iterations per target (default [`DEFAULT_ITERATIONS`], the
//! budget `make test` runs) and `AAD_FUZZ_SEED` the seed (default [`DEFAULT_SEED`]); both are
//! printed at the start, and a failure names them with the input in hex. The signing keys come
//! from a fixed seed too, so a run is the same bytes every time. `make fuzz` runs more.

use aad_auth_core::policy::DEFAULT_AUDIENCES;
use aad_auth_core::token::{self, MAX_TOKEN_BYTES};
use aad_auth_core::{validate, KeySet, Label, Policy, PrincipalType, TokenError, TokenKind};
use aad_auth_testkit::serde_json::{self, json, Map, Value};
use aad_auth_testkit::{b64, header, jwks, mint_raw, with, Claims, TestKey};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rsa::pkcs1::EncodeRsaPrivateKey;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Iterations per target when `AAD_FUZZ_ITERATIONS` is not set: the fixed budget of
/// `make test` (the whole file in about 13 s in a debug build on two cores; `make fuzz` runs
/// 50 times as many in a release build).
const DEFAULT_ITERATIONS: u64 = 3500;
/// The seed when `AAD_FUZZ_SEED` is not set (decimal or 0x-prefixed hex).
const DEFAULT_SEED: u64 = 0x00AA_D0A0_F022_2025;
/// The seed the signing keys are generated from (not varied: key generation is slow, and a
/// fixed key keeps every run's bytes the same).
const KEY_SEED: u64 = 0x6B65_795F_5345_4544;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OTHER_TENANT: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";
const USER_OID: &str = "8f0c3c4e-6b0a-4b2f-9d55-0d6c1e2f3a4b";
const OTHER_OID: &str = "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9";
const APP_OID: &str = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9";
const APP_ID: &str = "0a1b2c3d-4e5f-4061-8283-94a5b6c7d8e9";
const GROUP_OID: &str = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f";
const NOW: i64 = 1_700_000_000;
const SKEW: i64 = 300;
const ROLE: &str = "alice@contoso.com";
const KID: &str = "nOo3ZDrODXEK1jKWhXslHR_KXEg";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// ---------------------------------------------------------------------------------------------
// Running a target: configuration, panics caught with the input, statistics

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
                None => v.replace('_', "").parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not an unsigned integer"))
        }
    }
}

struct Run {
    target: &'static str,
    seed: u64,
    iterations: u64,
    started: Instant,
    accepted: u64,
    refused: BTreeMap<String, u64>,
}

impl Run {
    /// Reads the configuration, prints it, and returns the target's own random stream.
    fn start(target: &'static str) -> (Run, StdRng) {
        let seed = env_u64("AAD_FUZZ_SEED", DEFAULT_SEED);
        let iterations = env_u64("AAD_FUZZ_ITERATIONS", DEFAULT_ITERATIONS);
        println!("fuzz {target}: AAD_FUZZ_SEED={seed:#x} AAD_FUZZ_ITERATIONS={iterations}");
        // FNV-1a of the target's name: each target draws its own stream from the one seed.
        let salt = target.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let run = Run {
            target,
            seed,
            iterations,
            started: Instant::now(),
            accepted: 0,
            refused: BTreeMap::new(),
        };
        (run, StdRng::seed_from_u64(seed ^ salt))
    }

    fn fail(&self, iteration: u64, what: &str, input: &[u8]) -> ! {
        panic!(
            "fuzz {target}: iteration {iteration}: {what}\n\
             reproduce: AAD_FUZZ_SEED={seed:#x} AAD_FUZZ_ITERATIONS={n} \
             cargo test -p aad_auth_core --test fuzz {target}\n\
             input ({len} bytes) as text: {text:?}\n\
             input as hex: {hex}",
            target = self.target,
            seed = self.seed,
            n = iteration + 1,
            len = input.len(),
            text = String::from_utf8_lossy(input),
            hex = hex(input),
        )
    }

    /// Runs `f`, failing with the input when it panics.
    fn guard<T>(&self, iteration: u64, call: &str, input: &[u8], f: impl FnOnce() -> T) -> T {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(v) => v,
            Err(payload) => {
                let why = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                self.fail(iteration, &format!("{call} panicked: {why}"), input)
            }
        }
    }

    /// Validates `token` under `label` (panics caught); checks the messages of a refusal.
    fn validate(
        &mut self,
        iteration: u64,
        token: &[u8],
        keys: &KeySet,
        label: &Label,
    ) -> Result<aad_auth_core::Principal, TokenError> {
        let policy = &fixture().policy;
        let out = self.guard(iteration, "validate", token, || {
            validate(token, keys, policy, label, NOW)
        });
        match &out.result {
            Ok(_) => self.accepted += 1,
            Err(e) => {
                self.check_messages(iteration, token, e);
                let name = format!("{e:?}");
                let name = name.split(['(', ' ', '{']).next().unwrap_or_default();
                *self.refused.entry(name.to_owned()).or_default() += 1;
            }
        }
        out.result
    }

    /// The messages of a refusal are formatted without panicking, stay short and printable,
    /// and never echo the token, its payload or its signature (as `rules.rs` requires).
    fn check_messages(&self, iteration: u64, token: &[u8], e: &TokenError) {
        let messages = self.guard(iteration, "TokenError messages", token, || {
            [e.client_message(ROLE), e.log_detail(), e.to_string()]
        });
        for m in &messages {
            if m.len() >= 400 || m.chars().any(char::is_control) {
                self.fail(iteration, &format!("{e:?}: message {m:?}"), token);
            }
        }
        let Ok(text) = std::str::from_utf8(token) else {
            return;
        };
        let mut needles = vec![text];
        needles.extend(text.split('.').skip(1).take(2));
        for needle in needles.into_iter().filter(|n| n.len() >= 16) {
            if messages.iter().any(|m| m.contains(needle)) {
                self.fail(iteration, &format!("{e:?} echoes the token"), token);
            }
        }
    }

    fn finish(&self) {
        let elapsed: Duration = self.started.elapsed();
        let refused: Vec<String> = self
            .refused
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "fuzz {}: {} iterations in {:.1?}; accepted {}; refused: {}",
            self.target,
            self.iterations,
            elapsed,
            self.accepted,
            refused.join(", ")
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Keys, labels and the valid tokens every mutation starts from

struct Fixture {
    key: TestKey,
    /// A key the server does not trust, claiming the same kid.
    impostor: TestKey,
    jwks: Value,
    keys: KeySet,
    policy: Policy,
    user: Label,
    /// A user token accepted under `user`.
    good: String,
    /// The same, for another object id (same key).
    other: String,
    /// The same claims as `good` under a header with `kid` only.
    third: String,
}

impl Fixture {
    fn originals(&self) -> [&[u8]; 3] {
        [
            self.good.as_bytes(),
            self.other.as_bytes(),
            self.third.as_bytes(),
        ]
    }
}

fn seeded_key(kid: &str, seed: u64) -> TestKey {
    let mut rng = StdRng::seed_from_u64(seed);
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key generation");
    let der = key.to_pkcs1_der().expect("PKCS#1 encoding");
    TestKey::from_pkcs1_der(kid, der.as_bytes()).expect("PKCS#1 decoding")
}

fn label(s: &str) -> Label {
    s.parse().expect("a valid label")
}

fn at_now(c: Value) -> Value {
    let c = with(c, "iat", json!(NOW - 60));
    let c = with(c, "nbf", json!(NOW - 60));
    with(c, "exp", json!(NOW + 3600))
}

fn user_claims(oid: &str) -> Value {
    at_now(Claims::user(TENANT, oid, ROLE))
}

fn sign(key: &TestKey, header: &[u8], payload: &[u8]) -> String {
    mint_raw(key, header, payload)
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = seeded_key(KID, KEY_SEED);
        let impostor = seeded_key(KID, KEY_SEED + 1);
        let jwks: Value = serde_json::from_str(&jwks(&[&key])).expect("JWKS");
        let keys = KeySet::parse(jwks.to_string().as_bytes()).expect("the key set parses");
        let hdr = header(KID).to_string();
        let good = sign(
            &key,
            hdr.as_bytes(),
            user_claims(USER_OID).to_string().as_bytes(),
        );
        let other = sign(
            &key,
            hdr.as_bytes(),
            user_claims(OTHER_OID).to_string().as_bytes(),
        );
        let third = sign(
            &key,
            json!({"alg": "RS256", "kid": KID}).to_string().as_bytes(),
            user_claims(USER_OID).to_string().as_bytes(),
        );
        let f = Fixture {
            key,
            impostor,
            jwks,
            keys,
            policy: Policy::for_tenant(TENANT.parse().expect("tenant")),
            user: label(&format!("aadauth,oid={USER_OID},type=user")),
            good,
            other,
            third,
        };
        for t in [&f.good, &f.third] {
            let out = validate(t.as_bytes(), &f.keys, &f.policy, &f.user, NOW);
            assert!(out.result.is_ok(), "the valid token validates: {out:?}");
        }
        f
    })
}

// ---------------------------------------------------------------------------------------------
// Random material

/// A length in `0..20000`, mostly short, sometimes at the token size limit.
fn length(rng: &mut StdRng) -> usize {
    match rng.gen_range(0..10) {
        0 => rng.gen_range(0..20_000),
        1 => MAX_TOKEN_BYTES - 1 + rng.gen_range(0..3),
        _ => {
            let bits = rng.gen_range(0..14);
            rng.gen_range(0..(2usize << bits))
        }
    }
}

fn from_alphabet(rng: &mut StdRng, len: usize, alphabet: &[u8]) -> Vec<u8> {
    (0..len)
        .map(|_| *alphabet.choose(rng).expect("alphabet"))
        .collect()
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.gen()).collect()
}

fn b64_segment(rng: &mut StdRng, len: usize) -> Vec<u8> {
    from_alphabet(rng, len, B64URL)
}

/// Text built from JSON's punctuation and the words a JWT header and payload use.
fn json_ish(rng: &mut StdRng) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        "\"",
        ":",
        ",",
        " ",
        "\"alg\"",
        "\"RS256\"",
        "\"kid\"",
        "\"x5t\"",
        "\"typ\"",
        "\"JWT\"",
        "\"crit\"",
        "\"none\"",
        "\"tid\"",
        "\"aud\"",
        "\"exp\"",
        "0",
        "-1",
        "1e999",
        "1.5",
        "true",
        "false",
        "null",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"\\\"\"",
        "\"é\"",
        "\"nOo3ZDrODXEK1jKWhXslHR_KXEg\"",
        "{\"alg\":\"RS256\",",
        "\"kid\":\"",
    ];
    let n = rng.gen_range(0..40);
    (0..n)
        .flat_map(|_| WORDS.choose(rng).expect("words").bytes())
        .collect()
}

fn interesting_string(rng: &mut StdRng) -> String {
    let long = rng.gen_range(0..12_000);
    match rng.gen_range(0..16) {
        0 => TENANT.into(),
        1 => TENANT.to_uppercase(),
        2 => OTHER_TENANT.into(),
        3 => USER_OID.into(),
        4 => USER_OID.to_uppercase(),
        5 => OTHER_OID.into(),
        6 => APP_OID.into(),
        7 => APP_ID.into(),
        8 => GROUP_OID.into(),
        9 => DEFAULT_AUDIENCES
            .choose(rng)
            .expect("audiences")
            .to_string(),
        10 => ["app", "user", "mfa", "pwd", "", "RS256", KID]
            .choose(rng)
            .expect("words")
            .to_string(),
        11 => "x".repeat(long),
        12 => "é\u{0}\u{7f}\"\\\u{202e}😀".repeat(rng.gen_range(0..200)),
        13 => format!("https://sts.windows.net/{TENANT}/"),
        14 => format!("{{{USER_OID}}}"),
        _ => String::from_utf8_lossy(&b64_segment(rng, 40)).into_owned(),
    }
}

fn interesting_number(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..14) {
        0 => json!(NOW),
        1 => json!(NOW + rng.gen_range(-700..700)),
        2 => json!(NOW as f64 + rng.gen_range(-700.0..700.0)),
        3 => json!(i64::MAX),
        4 => json!(i64::MIN),
        5 => json!(u64::MAX),
        6 => json!(f64::MAX),
        7 => json!(-f64::MAX),
        8 => json!(100_000_000_000i64 + rng.gen_range(-2..2)),
        9 => json!(-100_000_000_000i64 + rng.gen_range(-2..2)),
        10 => json!(99_999_999_999.9),
        11 => json!(-0.0),
        12 => json!(f64::MIN_POSITIVE),
        _ => json!(rng.gen::<i64>()),
    }
}

/// Any JSON value, nested at most `depth` deep.
fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.gen_range(0..if depth == 0 { 4 } else { 6 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => interesting_number(rng),
        3 => Value::String(interesting_string(rng)),
        4 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.gen_range(0..4))
                .map(|_| (claim_name(rng).to_owned(), random_value(rng, depth - 1)))
                .collect(),
        ),
    }
}

const CLAIMS: &[&str] = &[
    "tid",
    "iss",
    "aud",
    "exp",
    "nbf",
    "iat",
    "oid",
    "idtyp",
    "scp",
    "upn",
    "unique_name",
    "preferred_username",
    "appid",
    "azp",
    "groups",
    "amr",
    "hasgroups",
    "_claim_names",
    "sub",
    "ver",
    "x_unused",
];

fn claim_name(rng: &mut StdRng) -> &'static str {
    CLAIMS.choose(rng).expect("claims")
}

// ---------------------------------------------------------------------------------------------
// Target 1: arbitrary bytes

fn arbitrary_input(rng: &mut StdRng) -> Vec<u8> {
    let f = fixture();
    match rng.gen_range(0..8) {
        0 => {
            let len = length(rng);
            random_bytes(rng, len)
        }
        1 => {
            // base64url text with a dot now and then.
            let len = length(rng);
            let dots = 1.0 / rng.gen_range(2.0..200.0);
            (0..len)
                .map(|_| {
                    if rng.gen_bool(dots) {
                        b'.'
                    } else {
                        *B64URL.choose(rng).expect("alphabet")
                    }
                })
                .collect()
        }
        2 => {
            // Three base64url segments: past the shape check.
            let total = length(rng);
            let (a, b) = (rng.gen_range(0..=total), rng.gen_range(0..=total));
            let (a, b) = (a.min(b), a.max(b));
            let mut t = b64_segment(rng, a);
            t.push(b'.');
            t.extend(b64_segment(rng, b - a));
            t.push(b'.');
            t.extend(b64_segment(rng, total - b));
            t
        }
        3 => {
            let len = length(rng);
            let alphabet = [B64URL, b"..==+/ \n\t%\0\xff", "é".as_bytes()].concat();
            from_alphabet(rng, len, &alphabet)
        }
        4 => {
            // base64url of JSON-ish text: past base64, into the JSON parser.
            let h = json_ish(rng);
            let p = json_ish(rng);
            let len = rng.gen_range(0..300);
            let s = random_bytes(rng, len);
            format!("{}.{}.{}", b64(&h), b64(&p), b64(&s)).into_bytes()
        }
        5 => {
            // The valid header: into key lookup and RSA verification.
            let h = f.good.split('.').next().expect("header");
            let p = if rng.gen() {
                b64(random_value(rng, 3).to_string().as_bytes())
            } else {
                let len = length(rng) % 4000;
                String::from_utf8(b64_segment(rng, len)).expect("ascii")
            };
            let len = *[0, 1, 255, 256, 257, 512].choose(rng).expect("lengths");
            let s = b64(&random_bytes(rng, len));
            format!("{h}.{p}.{s}").into_bytes()
        }
        6 => {
            // A random header object.
            let mut h = Map::new();
            for _ in 0..rng.gen_range(0..5) {
                let name = ["alg", "kid", "x5t", "typ", "crit", "jwk", "jku", "x"]
                    .choose(rng)
                    .expect("names");
                let value = if rng.gen() {
                    random_value(rng, 2)
                } else {
                    json!(["RS256", KID, "JWT"].choose(rng).expect("values"))
                };
                h.insert(name.to_string(), value);
            }
            let p = random_value(rng, 3).to_string();
            let s = random_bytes(rng, 256);
            format!(
                "{}.{}.{}",
                b64(Value::Object(h).to_string().as_bytes()),
                b64(p.as_bytes()),
                b64(&s)
            )
            .into_bytes()
        }
        _ => {
            // JSON-ish text as it is: for the key set and label parsers.
            let mut t = json_ish(rng);
            if rng.gen() {
                t.splice(0..0, b"{\"keys\":[".iter().copied());
            }
            t
        }
    }
}

/// Label-shaped text: the prefix and items, well- and ill-formed.
fn label_input(rng: &mut StdRng) -> String {
    let oid_items = [
        format!("oid={USER_OID}"),
        format!("oid={}", USER_OID.to_uppercase()),
        format!("oid={{{USER_OID}}}"),
        "oid=".into(),
        "oid=é".into(),
        format!("oid = {GROUP_OID} "),
        format!("oid={}", &USER_OID[..35]),
    ];
    let items = [
        "type=user",
        "type=GROUP",
        "type=service",
        "type=",
        "type=robot",
        "admin",
        "mfa",
        "admin=1",
        "",
        "  ",
        "=",
        "==",
        "\0",
        "oid",
        "type",
    ];
    let mut parts = vec![["aadauth", "AADAUTH", " aadauth ", "aadauth\0", ""]
        .choose(rng)
        .expect("prefixes")
        .to_string()];
    for _ in 0..rng.gen_range(0..6) {
        parts.push(if rng.gen_bool(0.3) {
            oid_items.choose(rng).expect("oids").clone()
        } else if rng.gen_bool(0.1) {
            interesting_string(rng)
        } else {
            items.choose(rng).expect("items").to_string()
        });
    }
    let sep = [",", ", ", ",,", " ,"].choose(rng).expect("separators");
    parts.join(sep)
}

fn check_label(run: &Run, iteration: u64, text: &str) {
    run.guard(iteration, "Label::from_str", text.as_bytes(), || {
        if let Ok(l) = text.parse::<Label>() {
            // What is accepted prints canonically and reads back the same.
            let again = l.to_string().parse::<Label>();
            assert_eq!(again.as_ref(), Ok(&l), "label {text:?} does not round-trip");
        }
    });
}

#[test]
fn fuzz_arbitrary_bytes() {
    let f = fixture();
    let (mut run, mut rng) = Run::start("fuzz_arbitrary_bytes");
    for i in 0..run.iterations {
        let input = arbitrary_input(&mut rng);
        if run.validate(i, &input, &f.keys, &f.user).is_ok() {
            run.fail(i, "validate accepted arbitrary bytes", &input);
        }
        run.guard(i, "token::parse", &input, || {
            if let Ok(t) = token::parse(&input) {
                let _ = t.verify(&f.keys);
            }
        });
        run.guard(i, "KeySet::parse", &input, || {
            if let Ok(set) = KeySet::parse(&input) {
                let _ = set.to_compact_json(1 << 16);
            }
        });
        run.guard(i, "KeySet::from_bytes", &input, || {
            if let Ok(set) = KeySet::from_bytes(&input) {
                let _ = (set.to_bytes(1 << 16), set.to_compact_json(1 << 16));
            }
        });
        check_label(&run, i, &String::from_utf8_lossy(&input));
        check_label(&run, i, &label_input(&mut rng));
    }
    run.finish();
}

// ---------------------------------------------------------------------------------------------
// Target 2: mutations of valid signed tokens, signature kept

/// The byte ranges of the token's dot-separated pieces.
fn pieces(t: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in t.iter().enumerate() {
        if b == b'.' {
            out.push((start, i));
            start = i + 1;
        }
    }
    out.push((start, t.len()));
    out
}

/// The decoded bytes of piece `index` (after whatever mutations), when it is still base64url.
fn decoded_piece(t: &[u8], index: usize) -> Option<Vec<u8>> {
    let (a, b) = *pieces(t).get(index)?;
    URL_SAFE_NO_PAD.decode(&t[a..b]).ok()
}

fn replace_piece(t: &mut Vec<u8>, index: usize, with: &[u8]) {
    if let Some(&(a, b)) = pieces(t).get(index) {
        t.splice(a..b, with.iter().copied());
    }
}

/// Encodes in base64url mostly, sometimes in another base64 flavour.
fn encode(rng: &mut StdRng, bytes: &[u8]) -> Vec<u8> {
    match rng.gen_range(0..12) {
        0 => URL_SAFE.encode(bytes),
        1 => STANDARD.encode(bytes),
        2 => STANDARD_NO_PAD.encode(bytes),
        _ => URL_SAFE_NO_PAD.encode(bytes),
    }
    .into_bytes()
}

/// Adds big-endian `a` and `b`.
fn add_be(a: &[u8], b: &[u8]) -> Vec<u8> {
    let n = a.len().max(b.len()) + 1;
    let at = |v: &[u8], i: usize| if i < v.len() { v[v.len() - 1 - i] } else { 0 };
    let mut out = vec![0u8; n];
    let mut carry = 0u16;
    for i in 0..n {
        let s = u16::from(at(a, i)) + u16::from(at(b, i)) + carry;
        out[n - 1 - i] = s as u8;
        carry = s >> 8;
    }
    let first = out.iter().position(|&x| x != 0).unwrap_or(out.len() - 1);
    out.split_off(first)
}

/// Mutates the claims of a token's payload: each change below alters what it says.
fn mutate_payload_json(rng: &mut StdRng, payload: &[u8]) -> Vec<u8> {
    let Ok(Value::Object(mut c)) = serde_json::from_slice::<Value>(payload) else {
        let mut p = payload.to_vec();
        p.extend_from_slice(b" ");
        return p;
    };
    match rng.gen_range(0..12) {
        0 => drop(c.insert("oid".into(), json!(OTHER_OID))),
        1 => drop(c.insert("oid".into(), json!(USER_OID.to_uppercase()))),
        2 => drop(c.insert("aud".into(), json!("https://evil.example"))),
        3 => drop(c.insert("aud".into(), json!([DEFAULT_AUDIENCES[0]]))),
        4 => drop(c.insert("tid".into(), json!(OTHER_TENANT))),
        5 => drop(c.insert("exp".into(), json!(NOW + 1_000_000))),
        6 => drop(c.insert("exp".into(), json!(NOW - 1_000_000))),
        7 => drop(c.remove("nbf")),
        8 => drop(c.insert("idtyp".into(), json!("app"))),
        9 => {
            // A duplicate key, written out by hand.
            let text = Value::Object(c).to_string();
            let name = claim_name(rng);
            return format!("{},\"{name}\":\"{OTHER_OID}\"}}", &text[..text.len() - 1])
                .into_bytes();
        }
        10 => return serde_json::to_vec_pretty(&c).expect("JSON"),
        _ => drop(c.insert(claim_name(rng).into(), random_value(rng, 2))),
    }
    Value::Object(c).to_string().into_bytes()
}

fn mutate_header_json(rng: &mut StdRng, header: &[u8]) -> Vec<u8> {
    let Ok(Value::Object(mut h)) = serde_json::from_slice::<Value>(header) else {
        return header.to_vec();
    };
    match rng.gen_range(0..10) {
        0 => drop(h.insert("alg".into(), json!("none"))),
        1 => drop(h.insert("alg".into(), json!("HS256"))),
        2 => drop(h.insert("alg".into(), json!("rs256"))),
        3 => drop(h.insert("kid".into(), json!("another-key"))),
        4 => drop(h.remove("kid")),
        5 => drop(h.remove("typ")),
        6 => drop(h.insert("crit".into(), json!(["exp"]))),
        7 => drop(h.insert("jwk".into(), fixture().impostor.jwk())),
        8 => {
            let text = Value::Object(h).to_string();
            return format!("{},\"alg\":\"none\"}}", &text[..text.len() - 1]).into_bytes();
        }
        _ => drop(h.insert("typ".into(), json!("JWS"))),
    }
    Value::Object(h).to_string().into_bytes()
}

fn mutate_token(rng: &mut StdRng, t: &mut Vec<u8>) -> &'static str {
    let f = fixture();
    let ps = pieces(t);
    let index = rng.gen_range(0..ps.len());
    let (a, b) = ps[index];
    match rng.gen_range(0..14) {
        0 => {
            if a < b {
                let at = rng.gen_range(a..b);
                t[at] ^= 1 << rng.gen_range(0..8);
            }
            "flip a bit"
        }
        1 => {
            if a < b {
                let at = rng.gen_range(a..b);
                t[at] = *B64URL.choose(rng).expect("alphabet");
            }
            "replace a character"
        }
        2 => {
            let at = rng.gen_range(a..=b);
            let c = if rng.gen_bool(0.8) {
                *B64URL.choose(rng).expect("alphabet")
            } else {
                rng.gen()
            };
            t.insert(at, c);
            "insert a byte"
        }
        3 => {
            if a < b {
                let at = rng.gen_range(a..b);
                let n = rng.gen_range(1..=4).min(b - at);
                t.drain(at..at + n);
            }
            "delete bytes"
        }
        4 => {
            // Segments from the valid tokens, mixed.
            let tokens = f.originals();
            let segs: Vec<&[u8]> = (0..3)
                .map(|i| {
                    let src = tokens.choose(rng).expect("tokens");
                    let (a, b) = pieces(src)[i];
                    &src[a..b]
                })
                .collect();
            *t = segs.join(&b'.');
            "swap segments"
        }
        5 => {
            if let Some(p) = decoded_piece(t, 1) {
                let p = mutate_payload_json(rng, &p);
                let e = encode(rng, &p);
                replace_piece(t, 1, &e);
            }
            "re-encode the payload with a changed claim"
        }
        6 => {
            if let Some(h) = decoded_piece(t, 0) {
                let h = mutate_header_json(rng, &h);
                let e = encode(rng, &h);
                replace_piece(t, 0, &e);
            }
            "re-encode the header with a changed field"
        }
        7 => {
            let at = rng.gen_range(0..=t.len());
            if rng.gen() {
                t.truncate(at);
            } else {
                t.drain(..at);
            }
            "truncate"
        }
        8 => {
            let pad = "=".repeat(rng.gen_range(1..=3));
            let at = if rng.gen() { b } else { t.len() };
            t.splice(at..at, pad.bytes());
            "add padding"
        }
        9 => {
            if rng.gen_bool(0.2) {
                for c in &mut t[a..b] {
                    *c = if rng.gen() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    };
                }
            } else {
                for _ in 0..rng.gen_range(1..=3) {
                    if a < b {
                        let at = rng.gen_range(a..b);
                        if t[at].is_ascii_alphabetic() {
                            t[at] ^= 0x20;
                        }
                    }
                }
            }
            "change the case of characters"
        }
        10 => {
            match rng.gen_range(0..7) {
                0 => t.insert(rng.gen_range(0..=t.len()), b'.'),
                1 => {
                    if let Some(at) = t.iter().position(|&c| c == b'.') {
                        t.remove(at);
                    }
                }
                2 => {
                    let piece = t[a..b].to_vec();
                    t.splice(b..b, [&b"."[..], &piece].concat());
                }
                3 => drop(t.drain(a..b)),
                4 => *t = [&b"Bearer "[..], t].concat(),
                5 => t.push(b'\n'),
                _ => t.push(0),
            }
            "change the structure"
        }
        11 => {
            // Signatures that are not the signature: s + n, a leading zero, zeros, one bit.
            if let Some(s) = decoded_piece(t, 2) {
                let s = match rng.gen_range(0..5) {
                    0 => add_be(&s, &f.key.public_modulus()),
                    1 => [&[0u8][..], &s].concat(),
                    2 => s.iter().skip_while(|&&b| b == 0).skip(1).copied().collect(),
                    3 => vec![0; s.len()],
                    _ => {
                        let mut s = s;
                        if !s.is_empty() {
                            let at = rng.gen_range(0..s.len());
                            s[at] ^= 1 << rng.gen_range(0..8);
                        }
                        s
                    }
                };
                replace_piece(t, 2, URL_SAFE_NO_PAD.encode(s).as_bytes());
            }
            "change the signature's value"
        }
        12 => {
            // The same bytes in another base64 flavour.
            if let Some(d) = decoded_piece(t, index) {
                let e = match rng.gen_range(0..3) {
                    0 => URL_SAFE.encode(&d),
                    1 => STANDARD.encode(&d),
                    _ => STANDARD_NO_PAD.encode(&d),
                };
                replace_piece(t, index, e.as_bytes());
            }
            "re-encode a segment"
        }
        _ => {
            // Signed by a key the server does not trust (same kid).
            if t.iter().filter(|&&c| c == b'.').count() == 2 {
                let ps = pieces(t);
                let input = t[..ps[1].1].to_vec();
                let s = b64(&f.impostor.sign(&input));
                replace_piece(t, 2, s.as_bytes());
            }
            "re-sign with an untrusted key"
        }
    }
}

#[test]
fn fuzz_mutated_signed_tokens() {
    let f = fixture();
    let (mut run, mut rng) = Run::start("fuzz_mutated_signed_tokens");
    for i in 0..run.iterations {
        let mut t = f.originals().choose(&mut rng).expect("tokens").to_vec();
        let mut done = Vec::new();
        for _ in 0..rng.gen_range(1..=3) {
            done.push(mutate_token(&mut rng, &mut t));
        }
        let original = f.originals().contains(&&t[..]);
        if run.validate(i, &t, &f.keys, &f.user).is_ok() && !original {
            run.fail(
                i,
                &format!("accepted a mutated token ({})", done.join(", ")),
                &t,
            );
        }
        let verified = run.guard(i, "token::parse + verify", &t, || {
            token::parse(&t).is_ok_and(|p| p.verify(&f.keys).is_ok())
        });
        if verified && !original {
            run.fail(
                i,
                &format!(
                    "the signature of a mutated token verifies ({})",
                    done.join(", ")
                ),
                &t,
            );
        }
    }
    run.finish();
}

// ---------------------------------------------------------------------------------------------
// Target 3: mutated claims, re-signed with the trusted key

/// The payload text and what the generator knows about it.
struct Payload {
    claims: Map<String, Value>,
    /// Members appended as raw text (name as written, already escaped; value literal).
    raw: Vec<(String, String)>,
    /// The top-level names of `raw`, unescaped.
    raw_names: Vec<String>,
}

impl Payload {
    fn add_raw(&mut self, written: &str, name: &str, literal: String) {
        self.raw.push((written.to_owned(), literal));
        self.raw_names.push(name.to_owned());
    }

    /// A top-level name appears twice.
    fn duplicate(&self) -> bool {
        let mut seen: BTreeSet<&str> = self.claims.keys().map(String::as_str).collect();
        !self.raw_names.iter().all(|n| seen.insert(n))
    }

    fn text(&self, rng: &mut StdRng) -> Vec<u8> {
        let object = Value::Object(self.claims.clone());
        let mut text = if rng.gen_bool(0.1) {
            serde_json::to_string_pretty(&object)
        } else {
            serde_json::to_string(&object)
        }
        .expect("JSON");
        text.pop();
        let mut first = self.claims.is_empty();
        for (name, literal) in &self.raw {
            if !first {
                text.push(',');
            }
            first = false;
            text.push_str(&format!("\"{name}\":{literal}"));
        }
        text.push('}');
        match rng.gen_range(0..30) {
            0 => format!(" \n{text}\t "),
            1 => format!("\u{feff}{text}"),
            2 => format!("{text}x"),
            _ => text,
        }
        .into_bytes()
    }
}

fn interesting_claim(rng: &mut StdRng, name: &str) -> Value {
    let pick = |rng: &mut StdRng, vs: Vec<Value>| vs.choose(rng).expect("values").clone();
    match name {
        "tid" => pick(
            rng,
            vec![
                json!(TENANT),
                json!(TENANT.to_uppercase()),
                json!(OTHER_TENANT),
                json!(format!("{{{TENANT}}}")),
                json!(format!("{TENANT} ")),
                json!(TENANT.replace('-', "")),
                json!("00000000-0000-0000-0000-000000000000"),
                json!(""),
            ],
        ),
        "iss" => pick(
            rng,
            vec![
                json!(format!("https://sts.windows.net/{TENANT}/")),
                json!(format!(
                    "https://sts.windows.net/{}/",
                    TENANT.to_uppercase()
                )),
                json!(format!("https://login.microsoftonline.com/{TENANT}/v2.0")),
                json!(format!("https://sts.windows.net/{TENANT}")),
                json!(format!("https://sts.windows.net/{OTHER_TENANT}/")),
                json!("https://sts.windows.net/{tenantid}/"),
            ],
        ),
        "aud" => pick(
            rng,
            vec![
                json!(DEFAULT_AUDIENCES[0]),
                json!(DEFAULT_AUDIENCES[1]),
                json!(DEFAULT_AUDIENCES[2]),
                json!(DEFAULT_AUDIENCES[0].to_uppercase()),
                json!(format!("{}/x", DEFAULT_AUDIENCES[0])),
                json!(["https://evil.example", DEFAULT_AUDIENCES[2]]),
                json!([DEFAULT_AUDIENCES[0], 1]),
                json!([]),
                json!({ "aud": DEFAULT_AUDIENCES[0] }),
            ],
        ),
        "exp" | "nbf" | "iat" => {
            let d = *[-10_000, -301, -300, -299, -1, 0, 1, 299, 300, 301, 10_000]
                .choose(rng)
                .expect("deltas");
            match rng.gen_range(0..5) {
                0 => json!((NOW + d) as f64 + rng.gen_range(-1.0..1.0)),
                1 => interesting_number(rng),
                2 => pick(
                    rng,
                    vec![
                        json!(i64::MIN),
                        json!(i64::MAX),
                        json!(u64::MAX),
                        json!(-100_000_000_000i64),
                        json!(99_999_999_999i64),
                        json!(-99_999_999_999.99),
                    ],
                ),
                _ => json!(NOW + d),
            }
        }
        "oid" | "appid" | "azp" => pick(
            rng,
            vec![
                json!(USER_OID),
                json!(USER_OID.to_uppercase()),
                json!(OTHER_OID),
                json!(APP_OID),
                json!(APP_ID),
                json!(GROUP_OID),
                json!(format!("{{{USER_OID}}}")),
                json!(USER_OID.replace('-', "")),
                json!(format!(" {USER_OID}")),
                json!(format!("{USER_OID}\u{0}")),
            ],
        ),
        "idtyp" => pick(
            rng,
            vec![
                json!("app"),
                json!("user"),
                json!("App"),
                json!(""),
                Value::Null,
                json!(1),
            ],
        ),
        "groups" => pick(
            rng,
            vec![
                json!([GROUP_OID]),
                json!([OTHER_OID, GROUP_OID.to_uppercase()]),
                json!([GROUP_OID, 1]),
                json!(GROUP_OID),
                json!([]),
                json!([[GROUP_OID]]),
            ],
        ),
        "amr" => pick(
            rng,
            vec![
                json!(["pwd", "mfa"]),
                json!(["pwd"]),
                json!("mfa"),
                json!(["MFA"]),
                json!([null]),
                json!(["mfa", 1]),
            ],
        ),
        "hasgroups" => pick(rng, vec![json!(true), json!(false), json!("true")]),
        "_claim_names" => pick(
            rng,
            vec![
                json!({"groups": "src1"}),
                json!({"groups": null}),
                json!("x"),
            ],
        ),
        _ => random_value(rng, 2),
    }
}

/// Changes `v` to a value of another JSON type.
fn change_type(rng: &mut StdRng, v: &Value) -> Value {
    let as_text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match rng.gen_range(0..6) {
        0 => Value::Null,
        1 => Value::Bool(!matches!(v, Value::Bool(true))),
        2 => as_text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| json!(as_text.len())),
        3 => Value::String(as_text),
        4 => json!([v]),
        _ => json!({ "value": v }),
    }
}

/// The claims the rules read.
const RULE_CLAIMS: &[&str] = &[
    "tid",
    "iss",
    "aud",
    "exp",
    "nbf",
    "oid",
    "idtyp",
    "scp",
    "upn",
    "appid",
    "azp",
    "groups",
    "amr",
    "hasgroups",
    "_claim_names",
    "nonce",
];

fn mutate_claims(rng: &mut StdRng, p: &mut Payload) {
    let existing: Vec<String> = p.claims.keys().cloned().collect();
    let name = match rng.gen_range(0..20) {
        0..=11 => RULE_CLAIMS.choose(rng).expect("claims").to_string(),
        12..=16 if !existing.is_empty() => existing.choose(rng).expect("claims").clone(),
        _ => claim_name(rng).to_owned(),
    };
    match rng.gen_range(0..16) {
        0 => drop(p.claims.remove(&name)),
        15 => {
            // The kind of principal: an app token, a user token, or what the claims imply.
            match rng.gen_range(0..4) {
                0 => drop(p.claims.insert("idtyp".into(), json!("app"))),
                1 => drop(p.claims.insert("idtyp".into(), json!("user"))),
                2 => drop(p.claims.remove("idtyp")),
                _ => {
                    for n in ["idtyp", "scp", "upn"] {
                        p.claims.remove(n);
                    }
                }
            }
        }
        1 => drop(p.claims.insert(name, random_value(rng, 3))),
        12 | 13 => {
            // The edges of the time window.
            let (name, edge) = *[("exp", NOW - SKEW), ("nbf", NOW + SKEW)]
                .choose(rng)
                .expect("edges");
            let d = rng.gen_range(-1..=1);
            let v = if rng.gen() {
                json!(edge + d)
            } else {
                json!((edge + d) as f64 + [-0.5, 0.5].choose(rng).expect("fractions"))
            };
            p.claims.insert(name.to_owned(), v);
        }
        2 => {
            if let Some(v) = p.claims.get(&name) {
                let v = change_type(rng, v);
                p.claims.insert(name, v);
            }
        }
        3..=5 | 14 => {
            let v = interesting_claim(rng, &name);
            p.claims.insert(name, v);
        }
        6 => {
            let n = rng.gen_range(0..12_000);
            let s: String = (0..n)
                .map(|_| {
                    *['a', 'é', '"', '\\', '\n', '\u{0}', '😀']
                        .choose(rng)
                        .unwrap()
                })
                .collect();
            p.claims.insert(name, json!(s));
        }
        7 => {
            // Deep nesting, in an unused claim or in place of a used one.
            let depth = *[1, 10, 100, 126, 127, 128, 129, 200, 1000, 3000]
                .choose(rng)
                .expect("depths");
            let literal = if rng.gen() {
                format!("{}{}", "[".repeat(depth), "]".repeat(depth))
            } else {
                format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
            };
            let name = if rng.gen() { "x_deep".to_owned() } else { name };
            p.claims.remove(&name);
            p.add_raw(&name, &name, literal);
        }
        8 => {
            // Numbers serde_json cannot hold, or JSON does not allow.
            let literal = [
                "1e400",
                "-1e400",
                "18446744073709551616",
                "-9223372036854775808",
                "-9223372036854775809",
                "9223372036854775807",
                "123456789012345678901234567890",
                "1e-400",
                "-0",
                "1E11",
                "99999999999.5",
                "1700000000.999999999999",
                "NaN",
                "Infinity",
                "01",
                "+1",
                "1.",
            ]
            .choose(rng)
            .expect("numbers")
            .to_string();
            let name = *["exp", "nbf", "iat", "x_num", "oid", "tid"]
                .choose(rng)
                .expect("names");
            p.claims.remove(name);
            p.add_raw(name, name, literal);
        }
        9 => {
            // A duplicate top-level key, possibly written with an escape.
            let name = claim_name(rng);
            let written = if rng.gen() {
                name.to_owned()
            } else {
                let mut cs = name.chars();
                let c = cs.next().expect("a name");
                format!("\\u{:04x}{}", c as u32, cs.as_str())
            };
            if !p.claims.contains_key(name) {
                let v = interesting_claim(rng, name);
                p.claims.insert(name.to_owned(), v);
            }
            let v = interesting_claim(rng, name);
            p.add_raw(&written, name, v.to_string());
        }
        10 => {
            // Duplicates and bad escapes below the top level.
            let literal = [
                r#"{"a":1,"a":2}"#,
                r#"[{"groups":1,"groups":2}]"#,
                r#""\ud800""#,
                r#""\u0000""#,
                r#""\x""#,
            ]
            .choose(rng)
            .expect("literals")
            .to_string();
            p.claims.remove("x_raw");
            p.add_raw("x_raw", "x_raw", literal);
        }
        _ => {
            if let Some(Value::String(s)) = p.claims.get(&name) {
                let s = match rng.gen_range(0..3) {
                    0 => s.to_uppercase(),
                    1 => s.to_lowercase(),
                    _ => s.chars().rev().collect(),
                };
                p.claims.insert(name, json!(s));
            }
        }
    }
}

/// What the rules say about verified `claims` for `label`, read independently of the core:
/// `Ok` when the token must be accepted, else why it must be refused.
fn expected(c: &Map<String, Value>, label: &Label) -> Result<TokenKind, String> {
    let absent = |n: &str| matches!(c.get(n), None | Some(Value::Null));
    let text = |n: &str| match c.get(n) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let strings = |n: &str| -> Option<Vec<&str>> {
        match c.get(n) {
            Some(Value::Array(a)) => a.iter().map(Value::as_str).collect(),
            _ => None,
        }
    };
    for n in [
        "tid",
        "iss",
        "oid",
        "idtyp",
        "scp",
        "upn",
        "unique_name",
        "preferred_username",
        "appid",
        "azp",
    ] {
        if !absent(n) && text(n).is_none() {
            return Err(format!("{n} is neither a string nor null"));
        }
    }
    for n in ["groups", "amr"] {
        if !absent(n) && strings(n).is_none() {
            return Err(format!("{n} is neither a list of strings nor null"));
        }
    }
    let tid = text("tid").ok_or("no tid")?;
    if !tid.eq_ignore_ascii_case(TENANT) {
        return Err("tid is not the tenant".into());
    }
    if (text("appid").is_none() && text("azp").is_none()) || c.contains_key("nonce") {
        return Err("an ID token (no appid or azp, or a nonce)".into());
    }
    let iss = text("iss").ok_or("no iss")?;
    if iss != format!("https://sts.windows.net/{tid}/")
        && iss != format!("https://login.microsoftonline.com/{tid}/v2.0")
    {
        return Err("iss is not the tenant's".into());
    }
    let auds = match c.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(_)) => strings("aud").ok_or("aud has a non-string")?,
        _ => return Err("no aud".into()),
    };
    if !auds.iter().any(|a| DEFAULT_AUDIENCES.contains(a)) {
        return Err("aud not accepted".into());
    }
    let seconds = |n: &str| -> Result<Option<i64>, String> {
        match c.get(n) {
            None => Ok(None),
            Some(Value::Number(v)) => {
                let f = v
                    .as_i64()
                    .map(|i| i as f64)
                    .or(v.as_f64())
                    .unwrap_or(f64::NAN);
                if f.is_finite() && f.abs() < 1e11 {
                    Ok(Some(f.trunc() as i64))
                } else {
                    Err(format!("{n} out of range"))
                }
            }
            Some(_) => Err(format!("{n} not a number")),
        }
    };
    let exp = seconds("exp")?.ok_or("no exp")?;
    if exp + SKEW <= NOW {
        return Err("expired".into());
    }
    if let Some(nbf) = seconds("nbf")? {
        if NOW < nbf - SKEW {
            return Err("not yet valid".into());
        }
    }
    let appid = text("appid").or(text("azp"));
    let kind = match text("idtyp") {
        Some("app") => TokenKind::App,
        Some(_) => TokenKind::User,
        None if absent("scp") && absent("upn") && appid.is_some() => TokenKind::App,
        None => TokenKind::User,
    };
    let oid = label.oid.to_string();
    let is_oid = |v: Option<&str>| v.is_some_and(|v| v.eq_ignore_ascii_case(&oid));
    match label.kind {
        PrincipalType::User if kind != TokenKind::User => return Err("not a user token".into()),
        PrincipalType::User if !is_oid(text("oid")) => return Err("oid differs".into()),
        PrincipalType::Service if kind != TokenKind::App => return Err("not an app token".into()),
        PrincipalType::Service if !is_oid(text("oid")) && !is_oid(appid) => {
            return Err("neither oid nor appid matches".into())
        }
        PrincipalType::Group
            if !strings("groups").is_some_and(|g| g.into_iter().any(|g| is_oid(Some(g)))) =>
        {
            return Err("group not listed".into())
        }
        _ => {}
    }
    if label.mfa && !strings("amr").is_some_and(|a| a.contains(&"mfa")) {
        return Err("no mfa".into());
    }
    Ok(kind)
}

#[test]
fn fuzz_resigned_claims() {
    let f = fixture();
    let (mut run, mut rng) = Run::start("fuzz_resigned_claims");
    let bases: [(Value, Vec<String>); 3] = [
        (
            with(
                with(
                    at_now(Claims::user(TENANT, USER_OID, ROLE)),
                    "amr",
                    json!(["pwd", "mfa"]),
                ),
                "groups",
                json!([OTHER_OID, GROUP_OID]),
            ),
            vec![
                format!("aadauth,oid={USER_OID},type=user"),
                format!("aadauth,oid={USER_OID},type=user,mfa"),
                format!("aadauth,oid={GROUP_OID},type=group"),
                format!("aadauth,oid={GROUP_OID},type=group,mfa,admin"),
            ],
        ),
        (
            at_now(Claims::user_v2(TENANT, USER_OID, ROLE)),
            vec![format!("aadauth,oid={USER_OID},type=user")],
        ),
        (
            at_now(Claims::app(TENANT, APP_OID, APP_ID)),
            vec![
                format!("aadauth,oid={APP_OID},type=service"),
                format!("aadauth,oid={APP_ID},type=service"),
            ],
        ),
    ];
    let all_labels: Vec<Label> = bases
        .iter()
        .flat_map(|(_, ls)| ls.iter().map(|l| label(l)))
        .collect();
    for i in 0..run.iterations {
        let (base, labels) = bases.choose(&mut rng).expect("bases");
        let label = if rng.gen_bool(0.8) {
            label(labels.choose(&mut rng).expect("labels"))
        } else {
            all_labels.choose(&mut rng).expect("labels").clone()
        };
        let mut p = Payload {
            claims: base.as_object().expect("claims").clone(),
            raw: Vec::new(),
            raw_names: Vec::new(),
        };
        for _ in 0..rng.gen_range(0..=3) {
            mutate_claims(&mut rng, &mut p);
        }
        let payload = p.text(&mut rng);
        let (hdr, header_ok) = match rng.gen_range(0..20) {
            0 => (json!({"alg": "RS256", "kid": KID}), true),
            1 => (json!({"alg": "RS256", "x5t": KID}), true),
            2 => (json!({"typ": "jwt", "alg": "RS256", "kid": KID}), true),
            3 => (json!({"alg": "RS256", "kid": "", "x5t": KID}), true),
            4 => (
                json!({"alg": "RS256", "kid": KID, "jwk": f.impostor.jwk()}),
                true,
            ),
            5 => (json!({"alg": "none", "kid": KID}), false),
            6 => (json!({"alg": "rs256", "kid": KID}), false),
            7 => (json!({"alg": "RS256", "kid": "unknown", "x5t": KID}), false),
            8 => (json!({"alg": "RS256", "kid": KID, "crit": ["x"]}), false),
            9 => (json!({"alg": "RS256", "kid": KID, "typ": "JWS"}), false),
            10 => (json!({"alg": "RS256"}), false),
            11 => (json!({"alg": "RS256", "kid": [KID]}), false),
            _ => (header(KID), true),
        };
        let token = sign(&f.key, hdr.to_string().as_bytes(), &payload);
        let got = run.validate(i, token.as_bytes(), &f.keys, &label);
        // The reference reading: serde_json's own parse of the payload (which keeps the last
        // of duplicate keys, hence the separate check), and the rules above.
        let want = if !header_ok {
            Err("the header is refused".to_owned())
        } else if token.len() > MAX_TOKEN_BYTES {
            Err("too large".to_owned())
        } else if p.duplicate() {
            Err("duplicate top-level claim".to_owned())
        } else {
            match serde_json::from_slice::<Value>(&payload) {
                Ok(Value::Object(c)) => expected(&c, &label),
                Ok(_) => Err("not an object".to_owned()),
                Err(e) => Err(format!("not JSON: {e}")),
            }
        };
        let context = || {
            format!(
                "label {label}; payload {}",
                String::from_utf8_lossy(&payload)
            )
        };
        match (&got, &want) {
            (Ok(principal), Ok(kind)) if principal.kind != *kind => run.fail(
                i,
                &format!(
                    "accepted as {:?}, expected {kind:?}; {}",
                    principal.kind,
                    context()
                ),
                token.as_bytes(),
            ),
            (Ok(_), Err(why)) => run.fail(
                i,
                &format!("accepted, but the rules refuse it ({why}); {}", context()),
                token.as_bytes(),
            ),
            (Err(e), Ok(_)) => run.fail(
                i,
                &format!("refused ({e:?}), but the rules accept it; {}", context()),
                token.as_bytes(),
            ),
            _ => {}
        }
    }
    run.finish();
}

// ---------------------------------------------------------------------------------------------
// Target 4: mutated key sets

fn mutate_jwks(rng: &mut StdRng, doc: &Value) -> Vec<u8> {
    let f = fixture();
    let mut doc = doc.clone();
    let keys = doc["keys"].as_array_mut().expect("keys");
    let n = keys[0]["n"].as_str().expect("n").to_owned();
    for _ in 0..rng.gen_range(1..=3) {
        let op = rng.gen_range(0..12);
        match op {
            5 => {
                // The impostor first, under the same kid.
                keys.insert(0, f.impostor.jwk());
                continue;
            }
            6 => {
                // Past the limit on keys.
                let extra = keys[0].clone();
                for _ in 0..rng.gen_range(1..70) {
                    keys.insert(0, extra.clone());
                }
                continue;
            }
            7 => {
                let mut other = f.impostor.jwk();
                other["kid"] = json!("other");
                keys.insert(0, other);
                continue;
            }
            _ => {}
        }
        let at = rng.gen_range(0..keys.len());
        let k = keys[at].as_object_mut().expect("a key");
        match op {
            0 => {
                let v = [
                    format!("AA{n}"),
                    format!("{n}="),
                    format!("{n}=="),
                    n[1..].to_owned(),
                    format!("{n}A"),
                    n.to_lowercase(),
                    STANDARD.encode(URL_SAFE_NO_PAD.decode(&n).expect("n")),
                    f.impostor.jwk()["n"].as_str().expect("n").to_owned(),
                    String::new(),
                ];
                k.insert("n".into(), json!(v.choose(rng).expect("n")));
            }
            1 => {
                let v = [
                    "AQAB",
                    "AAEAAQ",
                    "AQ",
                    "Aw",
                    "Ag",
                    "AAAAAAAAAAAAAQAB",
                    "AQAB=",
                    "//8",
                    "",
                    "AAAAAAAAAAAAAAAAAQAB",
                    "AQAAAAAAAAAB",
                ];
                k.insert("e".into(), json!(v.choose(rng).expect("e")));
            }
            2 => {
                let name = ["kty", "use", "alg", "kid", "x5t", "issuer", "n", "e"]
                    .choose(rng)
                    .expect("fields");
                let v = match rng.gen_range(0..3) {
                    0 => json!(
                        ["RSA", "rsa", "EC", "sig", "enc", "RS256", "RS512", KID, ""]
                            .choose(rng)
                            .expect("values")
                    ),
                    1 => {
                        // Around the limit on kids, and around the binary form's u16 lengths.
                        let len = *[250, 256, 257, 65_534, 65_535, 65_536, 65_537, 65_600]
                            .choose(rng)
                            .expect("lengths");
                        json!("k".repeat(len))
                    }
                    _ => random_value(rng, 2),
                };
                k.insert(name.to_string(), v);
            }
            3 => {
                let name = ["kty", "use", "alg", "kid", "x5t", "issuer", "n", "e"]
                    .choose(rng)
                    .expect("fields");
                k.remove(*name);
            }
            4 => {
                let v = [
                    "https://login.microsoftonline.com/{tenantid}/v2.0".to_owned(),
                    format!("https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"),
                    format!(
                        "https://login.microsoftonline.com/{}/v2.0",
                        TENANT.to_uppercase()
                    ),
                    "{tenantid}".to_owned(),
                    String::new(),
                ];
                k.insert("issuer".into(), json!(v.choose(rng).expect("issuers")));
            }
            _ => {}
        }
    }
    let mut text = doc.to_string().into_bytes();
    if rng.gen_bool(0.25) && !text.is_empty() {
        let at = rng.gen_range(0..text.len());
        match rng.gen_range(0..3) {
            0 => text[at] ^= 1 << rng.gen_range(0..8),
            1 => drop(text.remove(at)),
            _ => text.insert(at, *B64URL.choose(rng).expect("alphabet")),
        }
    }
    text
}

/// When `keys` accepts the valid token, the key it names (by kid, else by x5t) must be the
/// signing key.
fn check_signing_key(run: &mut Run, i: u64, keys: &KeySet, input: &[u8], n: &str, e: &str) {
    if run
        .validate(i, fixture().good.as_bytes(), keys, &fixture().user)
        .is_err()
    {
        return;
    }
    let compact = run.guard(i, "KeySet::to_compact_json", input, || {
        keys.to_compact_json(usize::MAX).0
    });
    let set: Value = serde_json::from_str(&compact).expect("compact JSON");
    let entries = set["keys"].as_array().expect("keys").clone();
    let named = entries
        .iter()
        .find(|k| k["kid"] == KID)
        .or_else(|| entries.iter().find(|k| k["x5t"] == KID));
    if !named.is_some_and(|k| k["n"] == n && k["e"] == e) {
        run.fail(i, "accepted with a key set lacking the signing key", input);
    }
}

#[test]
fn fuzz_mutated_key_sets() {
    let f = fixture();
    let (mut run, mut rng) = Run::start("fuzz_mutated_key_sets");
    let jwk = f.key.jwk();
    let canonical = |name: &str| {
        URL_SAFE_NO_PAD.encode(
            URL_SAFE_NO_PAD
                .decode(jwk[name].as_str().expect("a field"))
                .expect("base64url"),
        )
    };
    let (n, e) = (canonical("n"), canonical("e"));
    for i in 0..run.iterations {
        let doc = mutate_jwks(&mut rng, &f.jwks);
        let parsed = run.guard(i, "KeySet::parse", &doc, || KeySet::parse(&doc));
        let Ok(keys) = parsed else { continue };
        check_signing_key(&mut run, i, &keys, &doc, &n, &e);

        // The compact JSON form parses back to the same keys.
        let capacity = if rng.gen_bool(0.9) {
            1 << 20
        } else {
            rng.gen_range(0..4000)
        };
        let (compact, left_out) = run.guard(i, "KeySet::to_compact_json", &doc, || {
            keys.to_compact_json(capacity)
        });
        let all = run.guard(i, "KeySet::to_compact_json", &doc, || {
            keys.to_compact_json(usize::MAX).0
        });
        let again = run.guard(i, "KeySet::parse (compact)", compact.as_bytes(), || {
            KeySet::parse(compact.as_bytes())
        });
        let same = match &again {
            Ok(k) if left_out == 0 => k.to_compact_json(usize::MAX).0 == all,
            Ok(k) => k.keys().len() + left_out == keys.keys().len(),
            Err(_) => false,
        };
        if !same {
            run.fail(
                i,
                "the compact JSON form does not read back the same keys",
                &doc,
            );
        }

        // So does the binary form of the shared key cache, and a corrupted one is refused
        // (or read as keys) without panicking.
        let (mut bytes, left_out) =
            run.guard(i, "KeySet::to_bytes", &doc, || keys.to_bytes(capacity));
        let again = run.guard(i, "KeySet::from_bytes", &bytes, || {
            KeySet::from_bytes(&bytes)
        });
        let same = match &again {
            Ok(k) if left_out == 0 => k.to_compact_json(usize::MAX).0 == all,
            Ok(k) => k.keys().len() + left_out == keys.keys().len(),
            Err(_) => false,
        };
        if !same {
            run.fail(
                i,
                &format!("the binary form does not read back the same keys: {again:?}"),
                &doc,
            );
        }
        if !bytes.is_empty() {
            for _ in 0..rng.gen_range(1..=3) {
                let at = rng.gen_range(0..bytes.len());
                match rng.gen_range(0..4) {
                    0 => bytes[at] ^= 1 << rng.gen_range(0..8),
                    1 => bytes[at] = rng.gen(),
                    2 => bytes.truncate(at),
                    _ => bytes.insert(at, rng.gen()),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            let read = run.guard(i, "KeySet::from_bytes", &bytes, || {
                KeySet::from_bytes(&bytes)
            });
            if let Ok(k) = read {
                check_signing_key(&mut run, i, &k, &bytes, &n, &e);
            }
        }
    }
    run.finish();
}
