//! End to end: no token, signature or password reaches the server log, at any log level.

mod common;

use common::*;

#[test]
fn nothing_secret_is_logged_even_at_debug5() {
    let c = Cluster::start(Setup::default());
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("secretive@contoso.com", &oid, "user");
    // set before the logging goes up: the statement itself would be logged by log_statement
    c.admin("CREATE ROLE plain_secretive LOGIN PASSWORD 'Pa55word-never-logged'");
    c.reload_with(&[
        ("log_min_messages", "debug5"),
        ("log_min_error_statement", "debug5"),
        ("log_connections", "on"),
        ("log_disconnections", "on"),
        ("log_statement", "all"),
    ]);

    let good = user_token(&oid, "secretive@contoso.com");
    let expired = expired_user_token(&oid, "s");
    let wrong_oid = user_token(&new_oid(), "secretive@contoso.com");
    let stranger = mint(
        other_key(),
        &header(&other_key().kid),
        &Claims::user(TENANT, &oid, "s"),
    );
    assert!(c.sign_in("secretive@contoso.com", &good).is_ok());
    for bad in [&expired, &wrong_oid, &stranger] {
        let err = c.sign_in("secretive@contoso.com", bad).unwrap_err();
        assert!(
            !err.contains(bad.as_str()) && !err.contains(bad.rsplit('.').next().unwrap()),
            "{err}"
        );
    }
    // a token sent for an ordinary role, and that role's password, right and wrong
    assert!(c.sign_in("plain_secretive", &good).is_err());
    assert!(c
        .sign_in("plain_secretive", "Pa55word-never-logged")
        .is_ok());
    assert!(c
        .sign_in("plain_secretive", "Wr0ng-password-never-logged")
        .is_err());
    std::thread::sleep(std::time::Duration::from_millis(300));

    let log = c.log();
    assert!(log.contains("DEBUG"), "the log is not at debug level");
    for token in [&good, &expired, &wrong_oid, &stranger] {
        let parts: Vec<&str> = token.split('.').collect();
        assert!(!log.contains(token.as_str()), "a token is in the log");
        assert!(!log.contains(parts[2]), "a signature is in the log");
        assert!(!log.contains(parts[1]), "a payload is in the log");
    }
    assert!(
        !log.contains("Pa55word-never-logged") && !log.contains("Wr0ng-password-never-logged"),
        "a password is in the log"
    );
}
