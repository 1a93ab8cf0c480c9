//! The attack matrix: each way an attacker might shape a token or a password message, one
//! test each, against a real cluster. Every refusal must carry the right SQLSTATE and the
//! specific reason (the client text of core/src/error.rs or src/error.rs), must never echo
//! the token or its signature, and must leave the server healthy.

mod common;
use common::*;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest password treated as a token (core/src/token.rs).
const MAX_TOKEN_BYTES: usize = 16 * 1024;
const RESOURCE: &str = "https://ossrdbms-aad.database.windows.net";

const ONLY_RS256: &str = "the access token is not signed with RS256, the only algorithm accepted";
const BAD_SIGNATURE: &str = "the access token's signature is not valid";
const WRONG_ISSUER: &str = "the access token's issuer is not accepted by this server";
const NOT_YET_VALID: &str = "the access token is not valid yet (nbf is in the future)";
const NO_TOKEN: &str =
    "no access token was sent; send a Microsoft Entra ID access token as the password";

/// `TooLarge | NotAJwt | Malformed` as the client reads it.
fn not_a_token(role: &str) -> String {
    format!(
        "the password for role \"{role}\" is not a valid Microsoft Entra ID access token (a JWT); \
         acquire one with: az account get-access-token --resource-type oss-rdbms"
    )
}

fn no_valid_claim(claim: &str) -> String {
    format!("the access token has no valid \"{claim}\" claim")
}

fn wrong_audience() -> String {
    format!(
        "The access token does not have a valid audience claim. Please acquire a new token for the resource \"{RESOURCE}\"."
    )
}

fn wrong_tenant() -> String {
    format!("the access token was issued by another tenant; this server accepts tokens from tenant {TENANT}")
}

/// A fresh Entra user role on the shared cluster: (role, oid).
fn user_role(tag: &str) -> (String, String) {
    let oid = new_oid();
    let role = format!("{tag}-{oid}");
    shared().principal(&role, &oid, "user");
    (role, oid)
}

fn signed(claims: &Value) -> String {
    mint(key(), &header(&key().kid), claims)
}

/// `claims` serialized with `extra` (raw JSON members) put first.
fn raw_payload(claims: &Value, extra: &str) -> Vec<u8> {
    let text = claims.to_string();
    assert!(text.starts_with('{') && text.len() > 2);
    format!("{{{extra},{}", &text[1..]).into_bytes()
}

/// Neither the message nor the server log holds the password, a token part or the signature.
fn assert_not_echoed(c: &Cluster, message: &str, password: &[u8]) {
    let text = String::from_utf8_lossy(password);
    if text.len() >= 12 {
        assert!(
            !message.contains(text.as_ref()),
            "the refusal echoes the password: {message}"
        );
    }
    for part in text.split('.').filter(|p| p.len() >= 12) {
        assert!(
            !message.contains(part),
            "the refusal echoes part of the token ({part}): {message}"
        );
    }
    if let Some(signature) = text.rsplit('.').next().filter(|s| s.len() >= 12) {
        assert!(
            !c.log().contains(signature),
            "the server log holds the token's signature"
        );
    }
}

/// Signs in as `role` with `password` over the wire and expects a refusal with `sqlstate`
/// whose message contains `needle`. Returns the message.
fn refused_on(c: &Cluster, role: &str, password: &[u8], sqlstate: &str, needle: &str) -> String {
    let (code, message) = refusal(RawClient::sign_in(c.port, role, password));
    assert_eq!(code, sqlstate, "SQLSTATE for {needle:?}: {message}");
    assert!(
        message.contains(needle),
        "expected {needle:?} in: {message}"
    );
    assert_not_echoed(c, &message, password);
    message
}

/// An Entra refusal (28P01) for `role` on the shared cluster, with the reason `needle`.
fn entra_refused(role: &str, password: &[u8], needle: &str) -> String {
    let message = refused_on(shared(), role, password, "28P01", needle);
    let prefix = format!("Microsoft Entra ID authentication failed for user \"{role}\"");
    assert!(
        message.contains(&prefix),
        "expected {prefix:?} in: {message}"
    );
    message
}

fn b64(bytes: &[u8]) -> String {
    aad_auth_testkit::b64(bytes)
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

// ---- algorithms ----------------------------------------------------------------------------

#[test]
fn alg_none_with_an_empty_signature_is_refused() {
    let (role, oid) = user_role("alg-none");
    let header = b64(json!({"alg":"none","typ":"JWT"}).to_string().as_bytes());
    let body = b64(Claims::user(TENANT, &oid, "x").to_string().as_bytes());
    entra_refused(&role, format!("{header}.{body}.").as_bytes(), ONLY_RS256);
    shared().assert_no_crash();
}

#[test]
fn hs256_keyed_with_the_public_modulus_is_refused() {
    let (role, oid) = user_role("alg-hs256");
    let header = b64(json!({"alg":"HS256","typ":"JWT","kid":key().kid})
        .to_string()
        .as_bytes());
    let body = b64(Claims::user(TENANT, &oid, "x").to_string().as_bytes());
    let input = format!("{header}.{body}");
    let mac = hmac_sha256(&key().public_modulus(), input.as_bytes());
    entra_refused(
        &role,
        format!("{input}.{}", b64(&mac)).as_bytes(),
        ONLY_RS256,
    );
    shared().assert_no_crash();
}

#[test]
fn rs384_header_is_refused() {
    let (role, oid) = user_role("alg-rs384");
    let header = json!({"typ":"JWT","alg":"RS384","kid":key().kid,"x5t":key().kid});
    let token = mint(key(), &header, &Claims::user(TENANT, &oid, "x"));
    entra_refused(&role, token.as_bytes(), ONLY_RS256);
    shared().assert_no_crash();
}

#[test]
fn ps256_header_is_refused() {
    let (role, oid) = user_role("alg-ps256");
    let header = json!({"typ":"JWT","alg":"PS256","kid":key().kid,"x5t":key().kid});
    let token = mint(key(), &header, &Claims::user(TENANT, &oid, "x"));
    entra_refused(&role, token.as_bytes(), ONLY_RS256);
    shared().assert_no_crash();
}

// ---- signatures ----------------------------------------------------------------------------

#[test]
fn signature_taken_from_another_valid_token_is_refused() {
    let (role, oid) = user_role("sig-other");
    let mine = parts(&user_token(&oid, "victim@contoso.com"));
    let theirs = parts(&user_token(&new_oid(), "mallory@contoso.com"));
    let forged = format!("{}.{}.{}", mine[0], mine[1], theirs[2]);
    entra_refused(&role, forged.as_bytes(), BAD_SIGNATURE);
    shared().assert_no_crash();
}

#[test]
fn payload_of_one_token_with_header_and_signature_of_another_is_refused() {
    let (role, oid) = user_role("sig-splice");
    // the attacker holds a valid token of their own and splices in a payload naming the victim
    let attackers = parts(&user_token(&new_oid(), "mallory@contoso.com"));
    let victims = parts(&user_token(&oid, "victim@contoso.com"));
    let forged = format!("{}.{}.{}", attackers[0], victims[1], attackers[2]);
    entra_refused(&role, forged.as_bytes(), BAD_SIGNATURE);
    shared().assert_no_crash();
}

#[test]
fn signature_truncated_by_one_byte_is_refused() {
    let (role, oid) = user_role("sig-trunc");
    let p = parts(&user_token(&oid, "x"));
    let mut sig = key().sign(format!("{}.{}", p[0], p[1]).as_bytes());
    assert_eq!(b64(&sig), p[2]);
    sig.pop();
    let forged = format!("{}.{}.{}", p[0], p[1], b64(&sig));
    entra_refused(&role, forged.as_bytes(), BAD_SIGNATURE);
    shared().assert_no_crash();
}

#[test]
fn empty_signature_is_refused() {
    let (role, oid) = user_role("sig-empty");
    let p = parts(&user_token(&oid, "x"));
    let forged = format!("{}.{}.", p[0], p[1]);
    entra_refused(&role, forged.as_bytes(), BAD_SIGNATURE);
    shared().assert_no_crash();
}

// ---- malformed header and payload (validly signed garbage) ---------------------------------

#[test]
fn header_that_is_not_json_is_refused() {
    let (role, oid) = user_role("hdr-notjson");
    let payload = Claims::user(TENANT, &oid, "x").to_string();
    let token = mint_raw(key(), b"RS256 please, kid e2e-key-1", payload.as_bytes());
    entra_refused(&role, token.as_bytes(), &not_a_token(&role));
    shared().assert_no_crash();
}

#[test]
fn header_that_is_a_json_array_is_refused() {
    let (role, oid) = user_role("hdr-array");
    let header = json!([header(&key().kid)]).to_string();
    let payload = Claims::user(TENANT, &oid, "x").to_string();
    let token = mint_raw(key(), header.as_bytes(), payload.as_bytes());
    entra_refused(&role, token.as_bytes(), &not_a_token(&role));
    shared().assert_no_crash();
}

#[test]
fn payload_that_is_not_json_is_refused() {
    let (role, oid) = user_role("pl-notjson");
    let header = header(&key().kid).to_string();
    let payload = format!("{{\"oid\":\"{oid}\",\"tid\":\"{TENANT}\",");
    let token = mint_raw(key(), header.as_bytes(), payload.as_bytes());
    entra_refused(&role, token.as_bytes(), &not_a_token(&role));
    shared().assert_no_crash();
}

#[test]
fn payload_that_is_a_json_string_is_refused() {
    let (role, oid) = user_role("pl-string");
    let header = header(&key().kid).to_string();
    let payload = json!(Claims::user(TENANT, &oid, "x").to_string()).to_string();
    let token = mint_raw(key(), header.as_bytes(), payload.as_bytes());
    entra_refused(&role, token.as_bytes(), &not_a_token(&role));
    shared().assert_no_crash();
}

// ---- missing claims ------------------------------------------------------------------------

#[test]
fn missing_exp_is_refused() {
    let (role, oid) = user_role("no-exp");
    let claims = with(Claims::user(TENANT, &oid, "x"), "exp", Value::Null);
    entra_refused(&role, signed(&claims).as_bytes(), &no_valid_claim("exp"));
    shared().assert_no_crash();
}

#[test]
fn missing_tid_is_refused() {
    let (role, oid) = user_role("no-tid");
    let claims = with(Claims::user(TENANT, &oid, "x"), "tid", Value::Null);
    entra_refused(&role, signed(&claims).as_bytes(), &no_valid_claim("tid"));
    shared().assert_no_crash();
}

#[test]
fn user_token_without_oid_is_refused_for_a_user_role() {
    let (role, oid) = user_role("no-oid");
    let claims = with(Claims::user(TENANT, &oid, "x"), "oid", Value::Null);
    let message = entra_refused(
        &role,
        signed(&claims).as_bytes(),
        &format!(
            "the access token's object id (none) is not the object role \"{role}\" is bound to"
        ),
    );
    assert!(
        !message.replace(&role, "ROLE").contains(&oid),
        "the refusal names the bound object id: {message}"
    );
    shared().assert_no_crash();
}

// ---- time window ---------------------------------------------------------------------------

#[test]
fn nbf_in_2099_is_not_valid_yet_even_with_exp_in_2100() {
    let (role, oid) = user_role("nbf-2099");
    let claims = with(
        with(
            Claims::user(TENANT, &oid, "x"),
            "exp",
            json!(4_102_444_800i64), // 2100-01-01
        ),
        "nbf",
        json!(4_070_908_800i64), // 2099-01-01
    );
    entra_refused(&role, signed(&claims).as_bytes(), NOT_YET_VALID);
    shared().assert_no_crash();
}

#[test]
fn exp_of_1e300_is_refused() {
    let (role, oid) = user_role("exp-1e300");
    let claims = with(Claims::user(TENANT, &oid, "x"), "exp", Value::Null);
    let payload = raw_payload(&claims, "\"exp\":1e300");
    let token = mint_raw(key(), header(&key().kid).to_string().as_bytes(), &payload);
    entra_refused(&role, token.as_bytes(), &no_valid_claim("exp"));
    shared().assert_no_crash();
}

#[test]
fn exp_of_twenty_nines_is_refused() {
    let (role, oid) = user_role("exp-20digits");
    let claims = with(Claims::user(TENANT, &oid, "x"), "exp", Value::Null);
    let payload = raw_payload(&claims, "\"exp\":99999999999999999999");
    let token = mint_raw(key(), header(&key().kid).to_string().as_bytes(), &payload);
    entra_refused(&role, token.as_bytes(), &no_valid_claim("exp"));
    shared().assert_no_crash();
}

// ---- audience near misses ------------------------------------------------------------------

fn audience_refused(tag: &str, aud: &str) {
    let (role, oid) = user_role(tag);
    let claims = with(Claims::user(TENANT, &oid, "x"), "aud", json!(aud));
    entra_refused(&role, signed(&claims).as_bytes(), &wrong_audience());
    shared().assert_no_crash();
}

#[test]
fn audience_with_an_extra_path_is_refused() {
    audience_refused(
        "aud-extra",
        "https://ossrdbms-aad.database.windows.net/extra",
    );
}

#[test]
fn audience_of_the_us_government_cloud_is_refused() {
    audience_refused("aud-gov", "https://ossrdbms-aad.database.usgovcloudapi.net");
}

#[test]
fn audience_in_upper_case_is_refused() {
    audience_refused("aud-upper", "HTTPS://OSSRDBMS-AAD.DATABASE.WINDOWS.NET");
}

#[test]
fn audience_as_api_uri_of_the_app_id_is_refused() {
    audience_refused("aud-api", "api://123cd850-d9df-40bd-94d5-c9f07b7fa203");
}

// ---- issuer --------------------------------------------------------------------------------

fn issuer_refused(tag: &str, iss: &str) {
    let (role, oid) = user_role(tag);
    let claims = with(Claims::user(TENANT, &oid, "x"), "iss", json!(iss));
    entra_refused(&role, signed(&claims).as_bytes(), WRONG_ISSUER);
    shared().assert_no_crash();
}

#[test]
fn v1_issuer_without_the_trailing_slash_is_refused() {
    issuer_refused("iss-noslash", &format!("https://sts.windows.net/{TENANT}"));
}

#[test]
fn issuer_of_another_host_with_the_right_tenant_is_refused() {
    issuer_refused("iss-evil", &format!("https://evil.example/{TENANT}/"));
}

#[test]
fn v1_issuer_of_another_tenant_with_this_tenants_tid_is_refused() {
    issuer_refused(
        "iss-othertid",
        &format!("https://sts.windows.net/{OTHER_TENANT}/"),
    );
}

// ---- tenant --------------------------------------------------------------------------------

#[test]
fn tid_that_is_not_a_guid_is_refused() {
    let (role, oid) = user_role("tid-notguid");
    let claims = with(
        with(Claims::user(TENANT, &oid, "x"), "tid", json!("contoso")),
        "iss",
        json!("https://sts.windows.net/contoso/"),
    );
    entra_refused(&role, signed(&claims).as_bytes(), &wrong_tenant());
    shared().assert_no_crash();
}

#[test]
fn tid_of_another_tenant_is_refused() {
    let (role, oid) = user_role("tid-other");
    let claims = Claims::user(OTHER_TENANT, &oid, "x");
    entra_refused(&role, signed(&claims).as_bytes(), &wrong_tenant());
    shared().assert_no_crash();
}

// ---- duplicate keys ------------------------------------------------------------------------

fn duplicate_refused(tag: &str, drop: &str, members: impl Fn(&str) -> String) {
    let (role, oid) = user_role(tag);
    let claims = with(Claims::user(TENANT, &oid, "x"), drop, Value::Null);
    let payload = raw_payload(&claims, &members(&oid));
    let token = mint_raw(key(), header(&key().kid).to_string().as_bytes(), &payload);
    entra_refused(&role, token.as_bytes(), &not_a_token(&role));
    shared().assert_no_crash();
}

#[test]
fn duplicate_oid_victim_first_is_refused_as_malformed() {
    let attacker = new_oid();
    duplicate_refused("dup-oid-vf", "oid", |victim| {
        format!("\"oid\":\"{victim}\",\"oid\":\"{attacker}\"")
    });
}

#[test]
fn duplicate_oid_attacker_first_is_refused_as_malformed() {
    let attacker = new_oid();
    duplicate_refused("dup-oid-af", "oid", |victim| {
        format!("\"oid\":\"{attacker}\",\"oid\":\"{victim}\"")
    });
}

#[test]
fn duplicate_aud_is_refused_as_malformed() {
    duplicate_refused("dup-aud", "aud", |_| {
        format!("\"aud\":\"https://management.azure.com/\",\"aud\":\"{RESOURCE}\"")
    });
}

// ---- size ----------------------------------------------------------------------------------

/// A valid user token with `n` extra two-character claims.
fn token_with_claims(oid: &str, n: usize) -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut claims = Claims::user(TENANT, oid, "many@contoso.com");
    let before = claims.as_object().unwrap().len();
    for i in 0..n {
        let name: String = [ALPHA[i / ALPHA.len() % ALPHA.len()], ALPHA[i % ALPHA.len()]]
            .iter()
            .map(|&b| b as char)
            .collect::<String>()
            + &"_".repeat(i / (ALPHA.len() * ALPHA.len()));
        claims = with(claims, &name, json!(0));
    }
    assert_eq!(claims.as_object().unwrap().len(), before + n);
    signed(&claims)
}

#[test]
fn token_with_1600_claims_under_16_kib_is_accepted() {
    let (role, oid) = user_role("many-claims");
    let token = token_with_claims(&oid, 1600);
    assert!(
        token.len() <= MAX_TOKEN_BYTES,
        "the token must stay within 16 KiB: {} bytes",
        token.len()
    );
    let mut client = shared().raw(&role);
    client.expect_password_request();
    client.send_password(token.as_bytes());
    assert_eq!(client.answer(), Answer::Ok);
    assert_eq!(client.query_one("SELECT current_user"), role);
    shared().assert_no_crash();
}

#[test]
fn token_over_16_kib_is_refused_as_not_a_token() {
    let (role, oid) = user_role("big-token");
    let token = token_with_claims(&oid, 3000);
    assert!(token.len() > MAX_TOKEN_BYTES && token.len() < 65_000);
    entra_refused(&role, token.as_bytes(), &not_a_token(&role));
    shared().assert_no_crash();
}

// ---- password messages ---------------------------------------------------------------------

#[test]
fn empty_password_is_refused() {
    let (role, _) = user_role("pw-empty");
    entra_refused(&role, b"", NO_TOKEN);
    shared().assert_no_crash();
}

#[test]
fn one_byte_password_is_refused() {
    let (role, _) = user_role("pw-1byte");
    entra_refused(&role, b"x", &not_a_token(&role));
    shared().assert_no_crash();
}

#[test]
fn password_of_65000_bytes_is_refused_with_a_message() {
    let (role, _) = user_role("pw-65000");
    entra_refused(&role, &vec![b'a'; 65_000], &not_a_token(&role));
    shared().assert_no_crash();
}

fn oversized_password_closes(tag: &str, len: usize) {
    let c = shared();
    let (role, oid) = user_role(tag);
    assert_eq!(
        RawClient::sign_in(c.port, &role, &vec![b'a'; len]),
        Answer::Closed
    );
    c.assert_no_crash();
    assert_eq!(c.sign_in(&role, &user_token(&oid, "x")).unwrap(), role);
}

#[test]
fn password_of_65536_bytes_closes_the_connection() {
    oversized_password_closes("pw-65536", 65_536);
}

#[test]
fn password_of_70_kb_closes_the_connection() {
    oversized_password_closes("pw-70k", 70 * 1024);
}

#[test]
fn non_utf8_password_is_refused() {
    let (role, _) = user_role("pw-nonutf8");
    let mut password = b"eyJhbGciOiJSUzI1NiJ9.eyJ".to_vec();
    password.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28, b'.', 0x80, 0xbf]);
    entra_refused(&role, &password, &not_a_token(&role));
    shared().assert_no_crash();
}

#[test]
fn embedded_nul_in_the_password_message_is_a_protocol_violation() {
    let c = shared();
    let (role, oid) = user_role("pw-nul");
    let token = user_token(&oid, "x");
    // the whole valid token follows the NUL: nothing after it may be read as the password
    let mut payload = b"eyJ\0".to_vec();
    payload.extend_from_slice(token.as_bytes());
    payload.push(0);
    let mut client = c.raw(&role);
    client.expect_password_request();
    client.send(b'p', &payload);
    let (code, message) = refusal(client.answer());
    assert_eq!(code, "08P01", "{message}");
    assert!(
        message.contains("invalid password packet size"),
        "{message}"
    );
    assert_not_echoed(c, &message, token.as_bytes());
    c.assert_no_crash();
}

// ---- other messages at the prompt ----------------------------------------------------------

fn wrong_message_at_prompt(tag: &str, kind: u8, payload: &[u8]) {
    let c = shared();
    let (role, _) = user_role(tag);
    let mut client = c.raw(&role);
    client.expect_password_request();
    client.send(kind, payload);
    let (code, message) = refusal(client.answer());
    assert_eq!(code, "08P01", "{message}");
    let needle = format!("expected password response, got message type {kind}");
    assert!(
        message.contains(&needle),
        "expected {needle:?} in: {message}"
    );
    c.assert_no_crash();
}

#[test]
fn query_message_at_the_password_prompt_is_refused() {
    wrong_message_at_prompt("prompt-query", b'Q', b"SELECT 1\0");
}

#[test]
fn terminate_message_at_the_password_prompt_is_refused() {
    wrong_message_at_prompt("prompt-term", b'X', b"");
}

// ---- clients that stop answering -----------------------------------------------------------

/// A cluster of its own whose authentication_timeout is 2 s.
fn timeout_cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let c = Cluster::start(Setup {
            conf: vec!["authentication_timeout = '2s'".into()],
            ..Setup::default()
        });
        c.admin("CREATE EXTENSION aad_auth");
        c
    })
}

#[test]
fn silent_client_at_the_prompt_is_dropped_by_authentication_timeout() {
    let c = timeout_cluster();
    let oid = new_oid();
    let role = format!("silent-{oid}");
    c.principal(&role, &oid, "user");
    let start = Instant::now();
    let mut client = c.raw(&role);
    client.expect_password_request();
    // send nothing
    assert_eq!(client.answer(), Answer::Closed);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "authentication_timeout is 2 s; the silent client was closed after {waited:?}"
    );
    c.assert_no_crash();
    assert_eq!(c.sign_in(&role, &user_token(&oid, "x")).unwrap(), role);
}

#[test]
fn twenty_silent_clients_do_not_stop_a_valid_sign_in() {
    let c = timeout_cluster();
    let oid = new_oid();
    let role = format!("busy-{oid}");
    c.principal(&role, &oid, "user");
    let start = Instant::now();
    let mut idle: Vec<RawClient> = (0..20)
        .map(|_| {
            let mut client = c.raw(&role);
            client.expect_password_request();
            client
        })
        .collect();
    assert_eq!(c.sign_in(&role, &user_token(&oid, "x")).unwrap(), role);
    let signed_in = start.elapsed();
    assert!(
        signed_in < Duration::from_secs(2),
        "the sign-in ended after the silent clients' timeout ({signed_in:?}): not concurrent"
    );
    for client in &mut idle {
        assert_eq!(client.answer(), Answer::Closed);
    }
    let waited = start.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "the silent clients were kept for {waited:?}"
    );
    c.assert_no_crash();
    assert_eq!(c.sign_in(&role, &user_token(&oid, "x")).unwrap(), role);
}

// ---- the wrong role ------------------------------------------------------------------------

#[test]
fn valid_token_of_role_a_is_refused_for_role_b() {
    let (role_a, oid_a) = user_role("role-a");
    let (role_b, oid_b) = user_role("role-b");
    let token = user_token(&oid_a, "a@contoso.com");
    assert_eq!(shared().sign_in(&role_a, &token).unwrap(), role_a);
    let message = entra_refused(
        &role_b,
        token.as_bytes(),
        &format!(
            "the access token's object id {oid_a} is not the object role \"{role_b}\" is bound to"
        ),
    );
    assert!(
        !message.replace(&role_b, "ROLE").contains(&oid_b),
        "the refusal names the object id role b is bound to: {message}"
    );
    shared().assert_no_crash();
}

#[test]
fn valid_token_is_a_wrong_password_for_an_ordinary_role() {
    let c = shared();
    let role = format!("pw_{}", new_oid().replace('-', "_"));
    c.admin(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'correct horse'"
    ));
    let token = user_token(&new_oid(), "x");
    refused_on(
        c,
        &role,
        token.as_bytes(),
        "28P01",
        &format!("password authentication failed for user \"{role}\""),
    );
    c.assert_no_crash();
}
