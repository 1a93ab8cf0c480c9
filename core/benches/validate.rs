//! The core's cost per sign-in: parse a token, verify its RS256 signature with a cached key and
//! apply the claim rules. Prints the median, the 90th percentile and the mean over many tokens.
//! Run: cargo bench -p aad_auth_core --bench validate

use aad_auth_core::{validate, Guid, KeySet, Label, Policy, PrincipalType};
use aad_auth_testkit::{header, jwks, mint, now, Claims, TestKey};
use std::time::Instant;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OID: &str = "5d7c1f3e-2a4b-4c8d-9e0f-a1b2c3d4e5f6";

fn main() {
    let iterations: usize = std::env::var("AAD_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let key = TestKey::generate("bench-key");
    // Entra publishes several keys: the one in use is not necessarily the first.
    let others: Vec<TestKey> = (0..5)
        .map(|i| key.with_kid(&format!("other-{i}")))
        .collect();
    let mut all: Vec<&TestKey> = others.iter().collect();
    all.push(&key);
    let keys = KeySet::parse(jwks(&all).as_bytes()).expect("key set");
    let policy = Policy::for_tenant(TENANT.parse::<Guid>().unwrap());
    let label = Label {
        oid: OID.parse().unwrap(),
        kind: PrincipalType::User,
        admin: false,
        mfa: false,
    };
    let token = mint(
        &key,
        &header(&key.kid),
        &Claims::user(TENANT, OID, "bench@contoso.com"),
    );
    let t = now();

    for _ in 0..200 {
        assert!(validate(token.as_bytes(), &keys, &policy, &label, t)
            .result
            .is_ok());
    }
    let mut samples: Vec<f64> = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        let outcome = validate(
            std::hint::black_box(token.as_bytes()),
            &keys,
            &policy,
            &label,
            t,
        );
        samples.push(start.elapsed().as_secs_f64() * 1e6);
        assert!(outcome.result.is_ok());
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let median = samples[samples.len() / 2];
    let p90 = samples[samples.len() * 9 / 10];
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    println!(
        "core validation (parse + RS256 signature + claims, cached key, {} bytes): median {median:.1} µs, p90 {p90:.1} µs, mean {mean:.1} µs over {iterations} tokens",
        token.len()
    );
}
