//! End to end on PostgreSQL 18: aad_auth as an OAuth validator module (pg_hba method `oauth`),
//! driven by an OAUTHBEARER client. Built only with the pg18 feature (`make test PG=18`).

#![cfg(feature = "pg18")]

mod common;

use common::*;

fn oauth_cluster() -> Cluster {
    let c = Cluster::start(Setup {
        conf: vec!["oauth_validator_libraries = 'aad_auth'".into()],
        hba_before: vec![format!(
            "host all all 127.0.0.1/32 oauth issuer=\"https://login.microsoftonline.com/{TENANT}/v2.0\" scope=\"https://ossrdbms-aad.database.windows.net/.default\" delegate_ident_mapping=1"
        )],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    c
}

fn oauth(c: &Cluster, role: &str, token: &str) -> (Answer, RawClient) {
    let mut client = c.raw(role);
    let answer = client.oauth_sign_in(token);
    (answer, client)
}

#[test]
fn oauthbearer_signs_in_as_the_labelled_role() {
    let c = oauth_cluster();
    let oid = new_oid();
    c.principal("oauth-user@contoso.com", &oid, "user");
    let (answer, mut client) = oauth(
        &c,
        "oauth-user@contoso.com",
        &user_token(&oid, "oauth-user@contoso.com"),
    );
    assert_eq!(answer, Answer::Ok);
    assert_eq!(
        client.query_one("SELECT current_user"),
        "oauth-user@contoso.com"
    );
    assert_eq!(
        client.query_one("SELECT system_user"),
        format!("oauth:{oid}")
    );
    c.assert_no_crash();
}

#[test]
fn oauthbearer_applies_the_same_rules() {
    let c = oauth_cluster();
    let (oid, other) = (new_oid(), new_oid());
    c.principal("oauth-strict@contoso.com", &oid, "user");
    c.principal("oauth-app", &other, "service");
    c.admin("CREATE ROLE oauth_plain LOGIN PASSWORD 'pw'");
    let expired = expired_user_token(&oid, "x");
    let cases = [
        (
            "oauth-strict@contoso.com",
            user_token(&new_oid(), "mallory"),
            "reason=\"token oid",
        ),
        ("oauth-strict@contoso.com", expired, "reason=\"expired: exp"),
        (
            "oauth-strict@contoso.com",
            "not-a-token".to_string(),
            "not a compact JWS",
        ),
        (
            "oauth-app",
            user_token(&other, "x"),
            "user token for a service role",
        ),
        (
            "oauth_plain",
            user_token(&oid, "x"),
            "is not bound to a Microsoft Entra ID principal",
        ),
    ];
    for (role, token, reason) in cases {
        let (answer, _) = oauth(&c, role, &token);
        assert!(matches!(answer, Answer::Error { .. }), "{role}: {answer:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
        let log = c.log();
        assert!(log.contains(reason), "{reason:?} not in the log:\n{log}");
        assert!(
            !log.contains(&token) || token == "not-a-token",
            "a token is in the log"
        );
    }
    c.assert_no_crash();
}

#[test]
fn oauth_sessions_are_counted_listed_and_end_with_their_token() {
    let c = Cluster::start(Setup {
        conf: vec![
            "oauth_validator_libraries = 'aad_auth'".into(),
            "aad_auth.clock_skew = 0".into(),
            "aad_auth.session_lifetime = token".into(),
            "aad_auth.session_grace = '1s'".into(),
        ],
        hba_before: vec![format!(
            "host all all 127.0.0.1/32 oauth issuer=\"https://login.microsoftonline.com/{TENANT}/v2.0\" scope=\"https://ossrdbms-aad.database.windows.net/.default\" delegate_ident_mapping=1"
        )],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("oauth-short@contoso.com", &oid, "user");
    let exp = now() + 6;
    let token = mint(
        key(),
        &header(&key().kid),
        &with(
            Claims::user(TENANT, &oid, "oauth-short@contoso.com"),
            "exp",
            json!(exp),
        ),
    );
    let (answer, mut client) = oauth(&c, "oauth-short@contoso.com", &token);
    assert_eq!(answer, Answer::Ok);
    let pid = client.query_one("SELECT pg_backend_pid()");
    let (refused, _) = oauth(&c, "oauth-short@contoso.com", "not-a-token");
    assert!(matches!(refused, Answer::Error { .. }));
    assert_eq!(
        c.admin("SELECT accepted, refused_by->>'malformed' FROM aad_auth_sign_in_stats() WHERE rolname = 'oauth-short@contoso.com'"),
        "1|1"
    );
    assert_eq!(
        c.admin("SELECT pid, oid, method FROM aad_auth_sessions()"),
        format!("{pid}|{oid}|oauth")
    );
    let (code, message) = client.next_error().expect("ended when the token expired");
    assert_eq!(code, "57P01");
    assert!(message.contains("expired at"), "{message}");
    assert!(now() > exp + 1, "not before exp + grace");
    c.assert_no_crash();
}
