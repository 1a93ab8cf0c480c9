//! End to end: a real cluster with aad_auth preloaded and a real pg_hba.conf; tokens minted
//! here, signed with keys generated here, sent by psql (libpq) and by a wire-protocol client.

mod common;

use common::*;

fn expect_refusal(c: &Cluster, role: &str, token: &str, needle: &str) {
    let err = c
        .sign_in(role, token)
        .expect_err("sign-in should be refused");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains(token), "the refusal echoes the token: {err}");
}

#[test]
fn user_token_signs_in_with_psql() {
    let c = shared();
    let oid = new_oid();
    c.principal("alice@contoso.com", &oid, "user");
    let token = user_token(&oid, "alice@contoso.com");
    assert_eq!(
        c.sign_in("alice@contoso.com", &token).unwrap(),
        "alice@contoso.com"
    );
    c.assert_no_crash();
}

#[test]
fn user_token_signs_in_with_the_wire_protocol_client() {
    let c = shared();
    let oid = new_oid();
    c.principal("Wire Client", &oid, "user");
    let mut client = c.raw("Wire Client");
    client.expect_password_request();
    client.send_password(user_token(&oid, "wire@contoso.com").as_bytes());
    assert_eq!(client.answer(), Answer::Ok);
    assert_eq!(client.query_one("SELECT current_user"), "Wire Client");
}

#[test]
fn v2_token_signs_in() {
    let c = shared();
    let oid = new_oid();
    c.principal("v2user@contoso.com", &oid, "user");
    let token = mint(
        key(),
        &json!({"typ":"JWT","alg":"RS256","kid":key().kid}),
        &Claims::user_v2(TENANT, &oid, "v2user@contoso.com"),
    );
    assert_eq!(
        c.sign_in("v2user@contoso.com", &token).unwrap(),
        "v2user@contoso.com"
    );
}

#[test]
fn guest_and_odd_role_names_sign_in() {
    let c = shared();
    for name in [
        "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "Carol O'Neil",
        "MiXeD.Case@Contoso.com",
    ] {
        let oid = new_oid();
        c.principal(name, &oid, "user");
        assert_eq!(c.sign_in(name, &user_token(&oid, name)).unwrap(), name);
    }
}

#[test]
fn service_principal_token_signs_in_as_service_role() {
    let c = shared();
    let (oid, appid) = (new_oid(), new_oid());
    c.principal("reporting-app", &oid, "service");
    assert_eq!(
        c.sign_in("reporting-app", &app_token(&oid, &appid))
            .unwrap(),
        "reporting-app"
    );
}

#[test]
fn expired_token_is_refused() {
    let c = shared();
    let oid = new_oid();
    c.principal("expired@contoso.com", &oid, "user");
    expect_refusal(
        c,
        "expired@contoso.com",
        &expired_user_token(&oid, "x"),
        "the access token has expired",
    );
}

#[test]
fn wrong_audience_is_refused_naming_the_resource() {
    let c = shared();
    let oid = new_oid();
    c.principal("aud@contoso.com", &oid, "user");
    let claims = with(
        Claims::user(TENANT, &oid, "x"),
        "aud",
        json!("https://management.azure.com/"),
    );
    expect_refusal(
        c,
        "aud@contoso.com",
        &mint(key(), &header(&key().kid), &claims),
        "Please acquire a new token for the resource \"https://ossrdbms-aad.database.windows.net\"",
    );
}

#[test]
fn wrong_tenant_is_refused() {
    let c = shared();
    let oid = new_oid();
    c.principal("tenant@contoso.com", &oid, "user");
    let token = mint(
        key(),
        &header(&key().kid),
        &Claims::user(OTHER_TENANT, &oid, "x"),
    );
    expect_refusal(c, "tenant@contoso.com", &token, "issued by another tenant");
}

#[test]
fn not_a_jwt_is_refused() {
    let c = shared();
    let oid = new_oid();
    c.principal("notjwt@contoso.com", &oid, "user");
    expect_refusal(
        c,
        "notjwt@contoso.com",
        "hunter2",
        "is not a valid Microsoft Entra ID access token",
    );
}

#[test]
fn token_of_another_principal_is_refused() {
    let c = shared();
    let (alice, mallory) = (new_oid(), new_oid());
    c.principal("victim@contoso.com", &alice, "user");
    let err = c
        .sign_in(
            "victim@contoso.com",
            &user_token(&mallory, "mallory@contoso.com"),
        )
        .unwrap_err();
    assert!(
        err.contains(&format!(
            "the access token's object id {mallory} is not the object role \"victim@contoso.com\" is bound to"
        )),
        "names the token's object id: {err}"
    );
    assert!(
        !err.contains(&alice),
        "names the object id the role is bound to: {err}"
    );
}

#[test]
fn wrong_kind_of_principal_is_refused() {
    let c = shared();
    let (user, app) = (new_oid(), new_oid());
    c.principal("kind-user@contoso.com", &user, "user");
    c.principal("kind-app", &app, "service");
    expect_refusal(
        c,
        "kind-user@contoso.com",
        &app_token(&user, &new_oid()),
        "Service Principals cannot sign in as user role",
    );
    expect_refusal(
        c,
        "kind-app",
        &user_token(&app, "x"),
        "a user token cannot sign in as service role",
    );
}

#[test]
fn forged_tokens_are_refused() {
    let c = shared();
    let oid = new_oid();
    c.principal("forged@contoso.com", &oid, "user");
    let claims = Claims::user(TENANT, &oid, "forged@contoso.com");
    let body = b64(claims.to_string().as_bytes());

    // alg none, no signature
    let none = format!(
        "{}.{body}.",
        b64(json!({"alg":"none","typ":"JWT"}).to_string().as_bytes())
    );
    expect_refusal(c, "forged@contoso.com", &none, "only algorithm accepted");

    // HS256 keyed with the public key's bytes (the classic algorithm confusion)
    let hs_header = b64(json!({"alg":"HS256","typ":"JWT","kid":key().kid})
        .to_string()
        .as_bytes());
    let input = format!("{hs_header}.{body}");
    let mac = hmac_sha256(&key().public_modulus(), input.as_bytes());
    expect_refusal(
        c,
        "forged@contoso.com",
        &format!("{input}.{}", b64(&mac)),
        "only algorithm accepted",
    );

    // a valid token with its payload changed (oid swapped) keeps the old signature
    let good = user_token(&oid, "forged@contoso.com");
    let other = user_token(&new_oid(), "forged@contoso.com");
    let parts: Vec<&str> = good.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    expect_refusal(c, "forged@contoso.com", &tampered, "signature is not valid");

    // signed by a key the server does not know, under a kid it does not know
    let stranger = mint(other_key(), &header(&other_key().kid), &claims);
    expect_refusal(c, "forged@contoso.com", &stranger, "signing key is unknown");

    // signed by a key the server does not know, under the kid it does know
    let impostor = mint(other_key(), &header(&key().kid), &claims);
    expect_refusal(c, "forged@contoso.com", &impostor, "signature is not valid");
    c.assert_no_crash();
}

#[test]
fn bad_passwords_are_refused_without_crashing() {
    let c = shared();
    let oid = new_oid();
    c.principal("garbage@contoso.com", &oid, "user");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("garbage", b"\x01\x02garbage..".to_vec()),
        ("non-UTF-8", vec![0xff, 0xfe, b'.', 0xc3, 0x28, b'.', 0x80]),
        ("60 KB", vec![b'a'; 60 * 1024]),
        ("60 KB of dots", vec![b'.'; 60 * 1024]),
    ];
    for (what, password) in cases {
        let (code, message) = refusal(RawClient::sign_in(c.port, "garbage@contoso.com", &password));
        assert_eq!(code, "28P01", "{what}: {message}");
        assert!(
            message.contains("Microsoft Entra ID authentication failed"),
            "{what}: {message}"
        );
    }
    c.assert_no_crash();
}

#[test]
fn oversized_password_message_ends_the_connection_cleanly() {
    let c = shared();
    let oid = new_oid();
    c.principal("huge@contoso.com", &oid, "user");
    let answer = RawClient::sign_in(c.port, "huge@contoso.com", &vec![b'a'; 70 * 1024]);
    assert_eq!(answer, Answer::Closed);
    c.assert_no_crash();
    // and the role still signs in
    assert!(c
        .sign_in("huge@contoso.com", &user_token(&oid, "h"))
        .is_ok());
}

#[test]
fn embedded_nul_and_wrong_message_are_protocol_errors() {
    let c = shared();
    let oid = new_oid();
    c.principal("nul@contoso.com", &oid, "user");
    let mut client = c.raw("nul@contoso.com");
    client.expect_password_request();
    client.send(b'p', b"eyJ\0hidden\0");
    let (code, message) = refusal(client.answer());
    assert_eq!(code, "08P01", "{message}");

    let mut client = c.raw("nul@contoso.com");
    client.expect_password_request();
    client.send(b'Q', b"SELECT 1\0");
    let (code, message) = refusal(client.answer());
    assert_eq!(
        (
            code.as_str(),
            message.contains("expected password response")
        ),
        ("08P01", true),
        "{message}"
    );
    c.assert_no_crash();
}

#[test]
fn client_that_hangs_up_at_the_prompt_leaves_quietly() {
    let c = shared();
    let mut client = c.raw("postgres-hangup-probe");
    client.expect_password_request();
    drop(client);
    std::thread::sleep(std::time::Duration::from_millis(200));
    c.assert_no_crash();
}

#[test]
fn ordinary_role_signs_in_with_its_password() {
    let c = shared();
    c.admin("CREATE ROLE app_user LOGIN PASSWORD 'correct horse'");
    c.admin(
        "SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'battery staple'",
    );
    assert_eq!(c.sign_in("app_user", "correct horse").unwrap(), "app_user");
    assert_eq!(c.sign_in("md5_user", "battery staple").unwrap(), "md5_user");
    let wrong = c.sign_in("app_user", "wrong").unwrap_err();
    assert!(
        wrong.contains("password authentication failed for user \"app_user\""),
        "{wrong}"
    );
    // a token is just a wrong password for an ordinary role
    let as_token = c
        .sign_in("app_user", &user_token(&new_oid(), "x"))
        .unwrap_err();
    assert!(
        as_token.contains("password authentication failed"),
        "{as_token}"
    );
}

#[test]
fn unknown_role_gets_the_same_exchange_and_message_as_a_wrong_password() {
    let c = shared();
    c.admin("CREATE ROLE known_user LOGIN PASSWORD 'secret'");
    let known = refusal(RawClient::sign_in(c.port, "known_user", b"wrong"));
    let unknown = refusal(RawClient::sign_in(c.port, "no_such_user", b"wrong"));
    assert_eq!(known.0, unknown.0);
    assert_eq!(
        known.1.replace("known_user", "ROLE"),
        unknown.1.replace("no_such_user", "ROLE")
    );
}

#[test]
fn dropped_principal_cannot_sign_in_with_a_still_valid_token() {
    let c = shared();
    let oid = new_oid();
    c.principal("leaver@contoso.com", &oid, "user");
    let token = user_token(&oid, "leaver@contoso.com");
    assert!(c.sign_in("leaver@contoso.com", &token).is_ok());
    assert_eq!(
        c.admin("SELECT pgaadauth_drop_principal('leaver@contoso.com')"),
        "Dropped role for \"leaver@contoso.com\""
    );
    let err = c.sign_in("leaver@contoso.com", &token).unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");
}

#[test]
fn recreated_entra_object_with_a_new_oid_cannot_use_the_old_role() {
    let c = shared();
    let (old, new) = (new_oid(), new_oid());
    c.principal("recreated@contoso.com", &old, "user");
    let err = c
        .sign_in(
            "recreated@contoso.com",
            &user_token(&new, "recreated@contoso.com"),
        )
        .unwrap_err();
    assert!(
        err.contains("is not the object role \"recreated@contoso.com\" is bound to"),
        "{err}"
    );
    assert!(!err.contains(&old), "names the bound object id: {err}");
}

#[test]
fn audit_log_names_the_principal_and_never_the_token() {
    let c = shared();
    let oid = new_oid();
    c.principal("audited@contoso.com", &oid, "user");
    let good = user_token(&oid, "audited@contoso.com");
    let bad = mint(
        key(),
        &header(&key().kid),
        &with(
            Claims::user(TENANT, &oid, "audited@contoso.com"),
            "aud",
            json!("api://other"),
        ),
    );
    assert!(c.sign_in("audited@contoso.com", &good).is_ok());
    assert!(c.sign_in("audited@contoso.com", &bad).is_err());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = c.log();
    let accepted = log
        .lines()
        .find(|l| l.contains("sign-in accepted") && l.contains("audited@contoso.com"))
        .expect("accepted line");
    for field in [
        &format!("oid=\"{oid}\""),
        "name=\"audited@contoso.com\"",
        &format!("tenant=\"{TENANT}\""),
        &format!("kid=\"{}\"", key().kid),
        "token_type=user",
        "host=\"127.0.0.1\"",
    ] {
        assert!(accepted.contains(field), "{field} missing from: {accepted}");
    }
    let refused = log
        .lines()
        .find(|l| l.contains("sign-in refused") && l.contains("audited@contoso.com"))
        .expect("refused line");
    assert!(
        refused.contains("reason=\"aud \\\"api://other\\\"") || refused.contains("api://other"),
        "{refused}"
    );
    for token in [&good, &bad] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !log.contains(token.as_str()) && !log.contains(signature),
            "the log holds a token"
        );
    }
}

fn b64(bytes: &[u8]) -> String {
    aad_auth_testkit::b64(bytes)
}
