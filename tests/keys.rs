//! End to end: signing keys fetched from the tenant's endpoint (a stand-in served here on
//! loopback) into the cluster-wide cache, through rotation, outages and restarts.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn token_signed_by(key: &TestKey, oid: &str) -> String {
    mint(
        key,
        &header(&key.kid),
        &Claims::user(TENANT, oid, "keys@contoso.com"),
    )
}

fn with_principal(c: &Cluster, role: &str) -> String {
    c.admin("CREATE EXTENSION IF NOT EXISTS aad_auth");
    let oid = new_oid();
    c.principal(role, &oid, "user");
    oid
}

#[test]
fn keys_are_fetched_at_start_up_and_rotation_is_picked_up_without_restart() {
    let server = JwksServer::start(jwks(&[key()]));
    let c = Cluster::start(fetching_from(
        &server,
        &["aad_auth.jwks_min_refresh_interval = '1s'"],
    ));
    let oid = with_principal(&c, "rotating@contoso.com");
    c.wait_for("SELECT generation > 0 FROM aad_auth_jwks_status()", "t", 10);
    assert_eq!(
        c.sign_in("rotating@contoso.com", &token_signed_by(key(), &oid))
            .unwrap(),
        "rotating@contoso.com"
    );
    assert_eq!(c.jwks_status("source"), server.uri());
    let fetches = server.requests();

    // Microsoft rotates: the new key signs tokens before the server has seen it.
    server.set_body(jwks(&[key(), other_key()]));
    std::thread::sleep(Duration::from_millis(1100)); // past the 1 s floor of the start-up fetch
    assert_eq!(
        c.sign_in("rotating@contoso.com", &token_signed_by(other_key(), &oid))
            .unwrap(),
        "rotating@contoso.com"
    );
    assert_eq!(
        server.requests(),
        fetches + 1,
        "one refresh for the unknown key id"
    );
    assert_eq!(
        c.jwks_status("array_to_string(key_ids, ',')"),
        format!("{},{}", key().kid, other_key().kid)
    );
    c.assert_no_crash();
}

#[test]
fn cached_keys_serve_sign_ins_with_no_fetch() {
    let server = JwksServer::start(jwks(&[key()]));
    let c = Cluster::start(fetching_from(&server, &[]));
    let oid = with_principal(&c, "busy@contoso.com");
    c.wait_for("SELECT generation > 0 FROM aad_auth_jwks_status()", "t", 10);
    let before = (server.requests(), c.jwks_status("fetches"));
    let token = token_signed_by(key(), &oid);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (port, token) = (c.port, token.clone());
            std::thread::spawn(move || {
                for _ in 0..125 {
                    assert_eq!(
                        RawClient::sign_in(port, "busy@contoso.com", token.as_bytes()),
                        Answer::Ok
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        (server.requests(), c.jwks_status("fetches")),
        before,
        "500 sign-ins fetched keys"
    );
}

#[test]
fn provider_down_after_keys_are_cached_and_across_a_restart() {
    let mut server = JwksServer::start(jwks(&[key()]));
    let c = Cluster::start(fetching_from(&server, &[]));
    let oid = with_principal(&c, "outage@contoso.com");
    c.wait_for("SELECT generation > 0 FROM aad_auth_jwks_status()", "t", 10);
    let token = token_signed_by(key(), &oid);
    assert!(c.sign_in("outage@contoso.com", &token).is_ok());

    server.stop();
    assert_eq!(
        c.sign_in("outage@contoso.com", &token).unwrap(),
        "outage@contoso.com"
    );

    // restart while the provider is still down: the saved keys are loaded at start-up
    c.restart();
    assert!(
        c.log()
            .contains("signing keys loaded from aad_auth_jwks.json"),
        "{}",
        c.log()
    );
    assert_eq!(
        c.sign_in("outage@contoso.com", &token).unwrap(),
        "outage@contoso.com"
    );
    c.assert_no_crash();
}

#[test]
fn nothing_cached_and_provider_down_refuses_promptly() {
    let mut server = JwksServer::start(jwks(&[key()]));
    server.stop(); // the address now refuses connections
    let c = Cluster::start(fetching_from(&server, &[]));
    let oid = with_principal(&c, "nokeys@contoso.com");
    let started = Instant::now();
    let err = c
        .sign_in("nokeys@contoso.com", &token_signed_by(key(), &oid))
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.contains("could not be fetched"), "{err}");
    assert!(c
        .jwks_status("last_error")
        .contains("could not fetch the signing keys"));
}

#[test]
fn a_provider_that_never_answers_does_not_hang_sign_ins() {
    let server = JwksServer::start(jwks(&[key()]));
    server.set_mode(Mode::Hang);
    let c = Cluster::start(fetching_from(&server, &[]));
    let oid = with_principal(&c, "hang@contoso.com");
    let started = Instant::now();
    let answer = RawClient::sign_in(
        c.port,
        "hang@contoso.com",
        token_signed_by(key(), &oid).as_bytes(),
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(8),
        "sign-in waited {elapsed:?}"
    );
    let (_, message) = refusal(answer);
    assert!(message.contains("could not be fetched"), "{message}");
    c.assert_no_crash();
}

#[test]
fn a_burst_of_unknown_key_ids_costs_at_most_one_fetch() {
    let server = JwksServer::start(jwks(&[key()]));
    let c = Cluster::start(fetching_from(&server, &[]));
    let oid = with_principal(&c, "burst@contoso.com");
    c.wait_for("SELECT generation > 0 FROM aad_auth_jwks_status()", "t", 10);
    let before = server.requests();
    for i in 0..30 {
        let stranger = other_key().with_kid(&format!("garbage-{i}"));
        let answer = RawClient::sign_in(
            c.port,
            "burst@contoso.com",
            token_signed_by(&stranger, &oid).as_bytes(),
        );
        assert!(refusal(answer).1.contains("signing key is unknown"));
    }
    assert!(
        server.requests() <= before + 1,
        "{} fetches for 30 unknown key ids",
        server.requests() - before
    );
}

/// A rotation meets many clients at once: every concurrent sign-in with the new key id waits
/// for the one refresh the first of them asked for, and all are accepted, for one fetch.
#[test]
fn concurrent_sign_ins_with_a_new_key_share_one_refresh_and_all_succeed() {
    let server = JwksServer::start(jwks(&[key()]));
    let c = Cluster::start(fetching_from(&server, &[]));
    let oid = with_principal(&c, "crowd@contoso.com");
    c.wait_for("SELECT generation > 0 FROM aad_auth_jwks_status()", "t", 10);
    let before = server.requests();
    server.set_body(jwks(&[key(), other_key()]));
    let token = token_signed_by(other_key(), &oid);
    let port = c.port;
    let crowd: Vec<_> = (0..12)
        .map(|_| {
            let token = token.clone();
            std::thread::spawn(move || {
                RawClient::sign_in(port, "crowd@contoso.com", token.as_bytes())
            })
        })
        .collect();
    for client in crowd {
        let answer = client.join().expect("a sign-in");
        assert!(
            matches!(answer, Answer::Ok),
            "every concurrent sign-in with the new key is accepted: {answer:?}"
        );
    }
    assert_eq!(
        server.requests(),
        before + 1,
        "one fetch for the whole crowd"
    );
    c.assert_no_crash();
}

#[test]
fn a_failed_refresh_keeps_the_last_good_keys() {
    let server = JwksServer::start(jwks(&[key()]));
    let c = Cluster::start(fetching_from(
        &server,
        &["aad_auth.jwks_min_refresh_interval = '1s'"],
    ));
    let oid = with_principal(&c, "keep@contoso.com");
    c.wait_for("SELECT generation > 0 FROM aad_auth_jwks_status()", "t", 10);
    server.set_mode(Mode::Fail);
    std::thread::sleep(Duration::from_millis(1100));
    // an unknown key id makes the worker fetch, and the fetch fails with 500
    let stranger = token_signed_by(other_key(), &oid);
    assert!(c.sign_in("keep@contoso.com", &stranger).is_err());
    c.wait_for("SELECT failures > 0 FROM aad_auth_jwks_status()", "t", 10);
    assert!(
        c.jwks_status("last_error").contains("500"),
        "{}",
        c.jwks_status("last_error")
    );
    assert_eq!(
        c.sign_in("keep@contoso.com", &token_signed_by(key(), &oid))
            .unwrap(),
        "keep@contoso.com"
    );
}

#[test]
fn changing_the_key_address_on_reload_takes_effect_without_restart() {
    let first = JwksServer::start(jwks(&[key()]));
    let second = JwksServer::start(jwks(&[other_key()]));
    let c = Cluster::start(fetching_from(&first, &[]));
    let oid = with_principal(&c, "moved@contoso.com");
    c.wait_for("SELECT generation > 0 FROM aad_auth_jwks_status()", "t", 10);
    c.reload_with(&[("aad_auth.jwks_uri", &second.uri())]);
    c.wait_for(
        "SELECT source FROM aad_auth_jwks_status()",
        &second.uri(),
        10,
    );
    assert_eq!(
        c.sign_in("moved@contoso.com", &token_signed_by(other_key(), &oid))
            .unwrap(),
        "moved@contoso.com"
    );
    // and to a key file
    std::fs::write(c.dir.join("file.json"), jwks(&[key()])).unwrap();
    c.reload_with(&[(
        "aad_auth.jwks_file",
        &c.dir.join("file.json").display().to_string(),
    )]);
    assert_eq!(
        c.sign_in("moved@contoso.com", &token_signed_by(key(), &oid))
            .unwrap(),
        "moved@contoso.com"
    );
}

#[test]
fn a_hot_standby_fetches_keys_and_signs_in_principals_created_on_the_primary() {
    let server = JwksServer::start(jwks(&[key()]));
    let primary = Cluster::start(fetching_from(&server, &[]));
    let oid = with_principal(&primary, "replica-reader@contoso.com");
    let standby = primary.standby();
    standby.wait_for("SELECT pg_is_in_recovery()", "t", 10);
    standby.wait_for("SELECT generation > 0 FROM aad_auth_jwks_status()", "t", 10);
    assert_eq!(
        standby
            .sign_in("replica-reader@contoso.com", &token_signed_by(key(), &oid))
            .unwrap(),
        "replica-reader@contoso.com"
    );
    // a principal created on the primary signs in on the standby after replay
    let later = new_oid();
    primary.principal("late@contoso.com", &later, "user");
    standby.wait_for(
        "SELECT count(*) FROM pg_roles WHERE rolname = 'late@contoso.com'",
        "1",
        10,
    );
    assert_eq!(
        standby
            .sign_in("late@contoso.com", &token_signed_by(key(), &later))
            .unwrap(),
        "late@contoso.com"
    );
    // the SQL API that changes roles says clearly that a standby cannot, and changes nothing;
    // listing works there
    for sql in [
        format!("SELECT pgaadauth_create_principal_with_oid('nope@contoso.com', '{}', 'user', false, false)", new_oid()),
        format!("SELECT pgaadauth_update_principal_with_oid('late@contoso.com', '{}', 'user', false, false)", new_oid()),
        "SELECT pgaadauth_drop_principal('late@contoso.com')".to_string(),
        "SELECT pgaadauth_create_principal('someone@contoso.com', false, false)".to_string(),
    ] {
        let err = standby.try_admin_verbose(&sql).expect_err("a standby refuses");
        assert!(
            err.contains("25006") && err.contains("on a hot standby") && err.contains("Manage principals on the primary"),
            "{sql}: {err}"
        );
    }
    assert_eq!(
        standby.admin("SELECT count(*) FROM pgaadauth_list_principals(false) WHERE rolname = 'late@contoso.com'"),
        "1"
    );
    // someone who may not manage principals still learns only that, on a standby too
    primary.admin("CREATE ROLE not_an_admin NOLOGIN");
    standby.wait_for(
        "SELECT count(*) FROM pg_roles WHERE rolname = 'not_an_admin'",
        "1",
        10,
    );
    let err = standby
        .try_admin_verbose(&format!(
            "SET ROLE not_an_admin; SELECT pgaadauth_create_principal_with_oid('nope@contoso.com', '{}', 'user', true, false)",
            new_oid()
        ))
        .expect_err("a non-admin is refused");
    assert!(
        err.contains("42501")
            && err.contains("permission denied for function")
            && !err.contains("hot standby"),
        "{err}"
    );
    standby.assert_no_crash();
}

#[test]
fn a_key_set_larger_than_the_cache_is_cut_and_logged_not_a_crash() {
    let keys: Vec<TestKey> = (0..100)
        .map(|i| key().with_kid(&format!("bulk-{i:03}")))
        .collect();
    let server = JwksServer::start(jwks(&keys.iter().collect::<Vec<_>>()));
    let c = Cluster::start(fetching_from(&server, &[]));
    let oid = with_principal(&c, "bulk@contoso.com");
    c.wait_for("SELECT generation > 0 FROM aad_auth_jwks_status()", "t", 10);
    assert_eq!(c.jwks_status("cardinality(key_ids)"), "64");
    assert!(
        c.log().contains("more than 64 keys in the set"),
        "{}",
        c.log()
    );
    assert_eq!(
        c.sign_in("bulk@contoso.com", &token_signed_by(&keys[0], &oid))
            .unwrap(),
        "bulk@contoso.com"
    );
    c.assert_no_crash();
}
