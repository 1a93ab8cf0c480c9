//! End to end, with clusters of their own: settings that change how the hook decides.

mod common;

use common::*;

#[test]
fn password_auth_off_refuses_passwords_over_tcp_but_not_the_unix_socket() {
    let c = Cluster::start(Setup {
        conf: vec!["aad_auth.password_auth = off".into()],
        hba_before: vec!["host all scram_only 127.0.0.1/32 scram-sha-256".into()],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    c.admin("CREATE ROLE plain_user LOGIN PASSWORD 'pw'");
    c.admin("CREATE ROLE scram_only LOGIN PASSWORD 'pw'");
    let oid = new_oid();
    c.principal("entra@contoso.com", &oid, "user");

    let msg = "password authentication is disabled on this server; sign in with a Microsoft Entra ID token";
    let on_trust_line = c.sign_in("plain_user", "pw").unwrap_err();
    assert!(on_trust_line.contains(msg), "{on_trust_line}");
    let on_scram_line = c.sign_in("scram_only", "pw").unwrap_err();
    assert!(on_scram_line.contains(msg), "{on_scram_line}");
    // a role that does not exist gets what an ordinary role gets
    let unknown = c.sign_in("nobody_here", "pw").unwrap_err();
    assert!(unknown.contains(msg), "{unknown}");
    // tokens still work, and the unix socket is the break-glass path
    assert_eq!(
        c.sign_in("entra@contoso.com", &user_token(&oid, "e"))
            .unwrap(),
        "entra@contoso.com"
    );
    let out = std::process::Command::new(psql())
        .args(["-X", "-A", "-t", "-h"])
        .arg(&c.dir)
        .args([
            "-p",
            &c.port.to_string(),
            "-U",
            "plain_user",
            "-d",
            "postgres",
            "-c",
            "SELECT current_user",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "plain_user");

    // turned back on at reload, without a restart
    c.reload_with(&[("aad_auth.password_auth", "on")]);
    assert_eq!(c.sign_in("plain_user", "pw").unwrap(), "plain_user");
    assert_eq!(c.sign_in("scram_only", "pw").unwrap(), "scram_only");
    c.assert_no_crash();
}

#[test]
fn skip_roles_pass_governed_lines_unchallenged() {
    let c = Cluster::start(Setup {
        conf: vec!["aad_auth.skip_roles = 'monitor, \"Backup Tool\"'".into()],
        ..Setup::default()
    });
    c.admin(
        "CREATE ROLE monitor LOGIN; CREATE ROLE \"Backup Tool\" LOGIN; CREATE ROLE other LOGIN",
    );
    // no password at all: psql -w would fail if one were asked for
    assert_eq!(c.sign_in("monitor", "").unwrap(), "monitor");
    assert_eq!(c.sign_in("Backup Tool", "").unwrap(), "Backup Tool");
    assert!(c.sign_in("other", "").is_err());
}

#[test]
fn refuses_to_load_outside_shared_preload_libraries() {
    let c = Cluster::start(Setup {
        preload: false,
        ..Setup::default()
    });
    let err = c.try_admin("CREATE EXTENSION aad_auth").unwrap_err();
    assert!(
        err.contains("aad_auth must be loaded via shared_preload_libraries"),
        "{err}"
    );
    assert!(
        err.contains("shared_preload_libraries = 'aad_auth'"),
        "{err}"
    );
}

#[test]
fn start_up_log_names_the_governed_lines_and_the_keys() {
    let c = Cluster::start(Setup::default());
    let log = c.log();
    assert!(
        log.contains("aad_auth: governs") && log.contains("host all all 127.0.0.1/32 trust"),
        "{log}"
    );
    assert!(
        log.contains(&format!("aad_auth: 1 signing key(s) loaded: {}", key().kid)),
        "{log}"
    );
}

#[test]
fn key_set_file_changes_are_picked_up_without_restart() {
    let c = Cluster::start(Setup::default());
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("rotate@contoso.com", &oid, "user");
    let claims = Claims::user(TENANT, &oid, "rotate@contoso.com");
    let new_token = mint(other_key(), &header(&other_key().kid), &claims);
    assert!(c
        .sign_in("rotate@contoso.com", &new_token)
        .unwrap_err()
        .contains("signing key is unknown"));
    // many sign-ins, one load: the file is parsed once, at start-up
    for _ in 0..20 {
        assert!(c
            .sign_in("rotate@contoso.com", &user_token(&oid, "r"))
            .is_ok());
    }
    let status =
        "SELECT fetches || ' ' || array_to_string(key_ids, ',') FROM aad_auth_jwks_status()";
    assert_eq!(c.admin(status), format!("1 {}", key().kid));

    // rotate: publish both keys (write a new file and rename over, as a DBA's tooling would)
    let tmp = c.dir.join("jwks.json.new");
    std::fs::write(&tmp, jwks(&[key(), other_key()])).unwrap();
    std::fs::rename(&tmp, c.dir.join("jwks.json")).unwrap();
    assert_eq!(
        c.sign_in("rotate@contoso.com", &new_token).unwrap(),
        "rotate@contoso.com"
    );
    assert_eq!(
        c.admin(status),
        format!("2 {},{}", key().kid, other_key().kid)
    );

    // a broken file keeps the last good keys
    std::fs::write(c.dir.join("jwks.json"), "{ not json").unwrap();
    assert_eq!(
        c.sign_in("rotate@contoso.com", &new_token).unwrap(),
        "rotate@contoso.com"
    );
    assert!(c.log().contains("keeping the last good key set"));
    assert_eq!(
        c.admin("SELECT failures || ' ' || (last_error IS NOT NULL) FROM aad_auth_jwks_status()"),
        "1 true"
    );
    c.assert_no_crash();
}

#[test]
fn no_tenant_configured_refuses_tokens_clearly() {
    let c = Cluster::start(Setup {
        conf: vec!["aad_auth.tenant_id = ''".into()],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("early@contoso.com", &oid, "user");
    let err = c
        .sign_in("early@contoso.com", &user_token(&oid, "e"))
        .unwrap_err();
    assert!(err.contains("aad_auth.tenant_id is not set"), "{err}");
}

#[test]
fn malformed_tenant_setting_is_rejected_at_reload_and_the_old_value_kept() {
    let c = Cluster::start(Setup::default());
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("keep@contoso.com", &oid, "user");
    std::fs::write(
        c.data().join("postgresql.auto.conf"),
        "aad_auth.tenant_id = 'not-a-guid'\n",
    )
    .unwrap();
    c.admin("SELECT pg_reload_conf()");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        c.log()
            .contains("invalid value for parameter \"aad_auth.tenant_id\""),
        "{}",
        c.log()
    );
    assert_eq!(c.admin("SHOW aad_auth.tenant_id"), TENANT);
    assert!(c
        .sign_in("keep@contoso.com", &user_token(&oid, "k"))
        .is_ok());
}
