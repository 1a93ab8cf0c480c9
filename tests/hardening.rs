//! End to end, issue 10 ("Hardening"): one test per rule of shared/DESIGN.md that the outside
//! review found broken, each through the product's real interfaces (a real sign-in, real SQL,
//! the real server log), each negative case beside a positive control.
//!
//! Clusters: `hardened()` is shared by the tests that never reconfigure it (admin power,
//! passwords of labelled roles, escaping, ID tokens, client messages); the others start their
//! own (azure_pg_admin adoption, SQL_ASCII, crash, SSL, settings at start-up, failure delay,
//! identity with log_connections, directory, PAM).

mod common;

use aad_auth_testkit::{AZ_CLI_APPID, OSSRDBMS};
use common::*;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A client application's id, accepted as an audience by `hardened()` (as a DBA might list an
/// app of their own): an ID token issued to it must still never open the database.
const CLIENT_APP: &str = "6e2f4a1b-3c5d-4e7f-8a9b-0c1d2e3f4a5b";
/// The Azure Database for PostgreSQL app id (a default audience).
const OSSRDBMS_APP: &str = "123cd850-d9df-40bd-94d5-c9f07b7fa203";
/// The password a superuser gives roles in these tests.
const PASSWORD: &str = "Sekr1t-pw";

/// The cluster shared by the tests that never reconfigure it: every log entry carries its
/// SQLSTATE (`%e`), a client app is an accepted audience, and three password lines
/// (scram-sha-256, md5, password) come before the governed trust line. Not log_connections:
/// PostgreSQL 18 itself then logs the role name of every trust-line connection as the client
/// sent it ("connection authenticated: user=..."), which the escaping test must not count.
fn hardened() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let c = Cluster::start(Setup {
            conf: vec![
                "log_line_prefix = '%m [%p] %e '".into(),
                format!(
                    "aad_auth.audiences = '{OSSRDBMS},{OSSRDBMS}/,{OSSRDBMS_APP},{CLIENT_APP}'"
                ),
            ],
            hba_before: vec![
                "host all lab_scram,ord_scram 127.0.0.1/32 scram-sha-256".into(),
                "host all lab_md5,ord_md5 127.0.0.1/32 md5".into(),
                "host all lab_pw,ord_pw 127.0.0.1/32 password".into(),
            ],
            ..Setup::default()
        });
        c.admin("CREATE EXTENSION aad_auth");
        c
    })
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A SQL identifier.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn create_principal(c: &Cluster, role: &str, oid: &str, kind: &str, admin: bool) {
    c.admin(&format!(
        "SELECT pgaadauth_create_principal_with_oid({}, '{oid}', '{kind}', {admin}, false)",
        lit(role)
    ));
}

fn token(claims: &Value) -> String {
    mint(key(), &header(&key().kid), claims)
}

/// The role's pgaadauth label, `-` when it has none, `missing` when the role does not exist.
fn label_of(c: &Cluster, role: &str) -> String {
    c.admin(&format!(
        "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM pg_authid WHERE rolname = {r}) THEN 'missing' \
         ELSE coalesce((SELECT l.label FROM pg_shseclabel l JOIN pg_authid a ON a.oid = l.objoid \
         WHERE l.provider = 'pgaadauth' AND l.classoid = 'pg_authid'::regclass AND a.rolname = {r}), '-') END",
        r = lit(role)
    ))
}

/// Waits for the log to hold what the last refusals wrote.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

// ---- 1. Admin power never exceeds PostgreSQL's own -----------------------------------------

fn manage_sql(op: &str, target: &str, oid: &str) -> String {
    match op {
        "update" => format!(
            "SELECT pgaadauth_update_principal_with_oid({}, '{oid}', 'user', false, false)",
            lit(target)
        ),
        "drop" => format!("SELECT pgaadauth_drop_principal({})", lit(target)),
        "label" => format!(
            "SECURITY LABEL FOR pgaadauth ON ROLE {} IS 'aadauth,oid={oid},type=user'",
            ident(target)
        ),
        _ => unreachable!(),
    }
}

/// What is wrong with `result`, which must be psql's verbose error: 42501, "permission denied
/// to manage role", the reason.
fn not_refused_to_manage(
    result: &Result<String, String>,
    target: &str,
    detail: &str,
    what: &str,
) -> Option<String> {
    let err = match result {
        Ok(out) => return Some(format!("{what}: not refused: {out}")),
        Err(err) => err,
    };
    let message = format!("ERROR:  42501: permission denied to manage role \"{target}\"");
    let detail = format!("DETAIL:  {detail}");
    (!err.contains(&message) || !err.contains(&detail))
        .then(|| format!("{what}: expected {message:?} and {detail:?}, got:\n{err}"))
}

fn superuser_reason(t: &str) -> String {
    format!("Role \"{t}\" is a superuser; only a superuser may manage it.")
}

fn attribute_reason(t: &str, attribute: &str) -> String {
    format!("Role \"{t}\" has the {attribute} attribute, which you do not have.")
}

fn privileges_reason(t: &str, role: &str) -> String {
    format!("Role \"{t}\" has the privileges of role \"{role}\", which you do not have.")
}

fn not_entra_reason(t: &str) -> String {
    format!(
        "Role \"{t}\" is not a Microsoft Entra ID principal; binding it is for a role that may set its password \
         (a superuser, or a CREATEROLE role with ADMIN OPTION on it)."
    )
}

#[test]
fn admin_power_never_exceeds_postgresqls_own() {
    let c = hardened();
    let pg16 = c.version_num() >= 160000;
    c.admin(
        "CREATE ROLE ops LOGIN; GRANT postgres TO ops; \
         CREATE ROLE repl LOGIN REPLICATION; CREATE ROLE bypass LOGIN BYPASSRLS; \
         CREATE ROLE exec LOGIN; GRANT pg_execute_server_program TO exec; \
         CREATE ROLE readf LOGIN; GRANT pg_read_server_files TO readf; \
         CREATE ROLE writef LOGIN; GRANT pg_write_server_files TO writef; \
         CREATE ROLE plain LOGIN; CREATE ROLE plain_unbound LOGIN",
    );
    let admin_oid = new_oid();
    create_principal(c, "admin1", &admin_oid, "user", true);
    for role in [
        "su_entra",
        "entra_exec",
        "entra_repl",
        "entra_plain",
        "entra_label",
    ] {
        create_principal(c, role, &new_oid(), "user", false);
    }
    c.admin(
        "ALTER ROLE su_entra SUPERUSER; GRANT pg_execute_server_program TO entra_exec; \
         ALTER ROLE entra_repl REPLICATION",
    );
    let targets = [
        ("ops", privileges_reason("ops", "postgres")),
        ("repl", attribute_reason("repl", "REPLICATION")),
        ("bypass", attribute_reason("bypass", "BYPASSRLS")),
        (
            "exec",
            privileges_reason("exec", "pg_execute_server_program"),
        ),
        ("readf", privileges_reason("readf", "pg_read_server_files")),
        (
            "writef",
            privileges_reason("writef", "pg_write_server_files"),
        ),
        ("plain", not_entra_reason("plain")),
        ("su_entra", superuser_reason("su_entra")),
        (
            "entra_exec",
            privileges_reason("entra_exec", "pg_execute_server_program"),
        ),
        ("entra_repl", attribute_reason("entra_repl", "REPLICATION")),
    ];

    // The attack of the issue, by the admin signed in for real with its own token: rebind `ops`
    // (a member of postgres) to an object id of the admin's choosing, then sign in as `ops`.
    let admin_token = user_token(&admin_oid, "admin1@contoso.com");
    let as_admin = |sql: &str| {
        c.psql_with(
            "admin1",
            &admin_token,
            "",
            &["-v", "VERBOSITY=verbose"],
            sql,
        )
    };
    assert_eq!(
        as_admin("SELECT current_user").as_deref(),
        Ok("admin1"),
        "the admin signs in with its token"
    );
    // Every refusal is checked before the test fails, so that one run reports them all.
    let mut problems: Vec<String> = Vec::new();
    let mut check = |result: Result<String, String>, op: &str, target: &str, who: &str| {
        let reason = &targets.iter().find(|(t, _)| *t == target).unwrap().1;
        let what = format!("{who}: {op} {target}");
        let unlabelled = !target.starts_with("su_") && !target.starts_with("entra_");
        let problem = if op == "label" && (pg16 || target.starts_with("su_")) {
            // PostgreSQL's own check on SECURITY LABEL comes first where it applies: a
            // superuser target needs a superuser; on 16+ any role needs ADMIN OPTION on it.
            match &result {
                Err(err) if err.contains("ERROR:  42501:") => None,
                other => Some(format!("{what}: expected 42501, got {other:?}")),
            }
        } else if op == "drop" && unlabelled {
            // Dropping a role without a label is refused anyway (42809), unless the permission
            // check refuses it first.
            match &result {
                Err(err)
                    if err.contains("ERROR:  42809:")
                        && err.contains("is not a Microsoft Entra ID principal") =>
                {
                    None
                }
                other => not_refused_to_manage(other, target, reason, &what),
            }
        } else {
            not_refused_to_manage(&result, target, reason, &what)
        };
        problems.extend(problem);
    };
    let chosen = new_oid();
    for op in ["update", "drop", "label"] {
        check(
            as_admin(&manage_sql(op, "ops", &chosen)),
            op,
            "ops",
            "signed-in admin1",
        );
    }
    assert_eq!(label_of(c, "ops"), "-", "ops got a label");
    let err = c
        .sign_in("ops", &user_token(&chosen, "mallory@contoso.com"))
        .expect_err("the admin's chosen object signs in as ops");
    assert!(err.contains("password authentication failed"), "{err}");

    // Every operation on every privileged or ordinary target, as the admin.
    for (target, _) in &targets {
        let before = label_of(c, target);
        for op in ["update", "drop", "label"] {
            let sql = format!(
                "SET SESSION AUTHORIZATION admin1; {}",
                manage_sql(op, target, &new_oid())
            );
            check(c.try_admin_verbose(&sql), op, target, "admin1");
        }
        assert_eq!(label_of(c, target), before, "{target}'s label changed");
    }

    // Positive controls. The signed-in admin rebinds and drops an ordinary Entra principal.
    let rebound = new_oid();
    assert_eq!(
        as_admin(&manage_sql("update", "entra_plain", &rebound)),
        Ok("Updated role for \"entra_plain\"".to_owned())
    );
    assert_eq!(
        c.sign_in("entra_plain", &user_token(&rebound, "p@contoso.com"))
            .unwrap(),
        "entra_plain"
    );
    assert_eq!(
        as_admin(&manage_sql("drop", "entra_plain", &rebound)),
        Ok("Dropped role for \"entra_plain\"".to_owned())
    );
    assert_eq!(label_of(c, "entra_plain"), "missing");
    if !pg16 {
        // ... and labels one directly (on 16+ PostgreSQL itself asks for ADMIN OPTION).
        let relabel = new_oid();
        assert!(as_admin(&manage_sql("label", "entra_label", &relabel)).is_ok());
        assert_eq!(
            label_of(c, "entra_label"),
            format!("aadauth,oid={relabel},type=user")
        );
    }
    // A superuser still rebinds ops, and labels an ordinary role directly.
    let ops_oid = new_oid();
    assert_eq!(
        c.admin(&manage_sql("update", "ops", &ops_oid)),
        "Updated role for \"ops\""
    );
    assert_eq!(
        c.sign_in("ops", &user_token(&ops_oid, "ops@contoso.com"))
            .unwrap(),
        "ops"
    );
    let plain_oid = new_oid();
    c.admin(&manage_sql("label", "plain", &plain_oid));
    assert_eq!(
        label_of(c, "plain"),
        format!("aadauth,oid={plain_oid},type=user")
    );
    // Dropping a role without a label stays refused, for a superuser too (42809).
    let err = c
        .try_admin_verbose(&manage_sql("drop", "plain_unbound", ""))
        .expect_err("drop of a role without a label");
    assert!(
        err.contains("ERROR:  42809:") && err.contains("is not a Microsoft Entra ID principal"),
        "{err}"
    );
    assert_eq!(label_of(c, "plain_unbound"), "-");
    c.assert_no_crash();
    assert!(
        problems.is_empty(),
        "{} refusal(s) not as specified:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

#[test]
fn admin_power_azure_pg_admin_is_adopted_only_when_harmless() {
    let c = Cluster::start(Setup::default());
    let installed = || c.admin("SELECT count(*) FROM pg_extension WHERE extname = 'aad_auth'");
    let refused = |why: &str| {
        let err = c
            .try_admin("CREATE EXTENSION aad_auth")
            .expect_err(&format!("azure_pg_admin adopted although {why}"));
        assert!(err.contains("azure_pg_admin"), "{why}: {err}");
        assert_eq!(installed(), "0", "{why}");
    };
    c.admin("CREATE ROLE azure_pg_admin LOGIN");
    refused("it can log in");
    for (attribute, undo) in [
        ("SUPERUSER", "NOSUPERUSER"),
        ("CREATEROLE", "NOCREATEROLE"),
        ("CREATEDB", "NOCREATEDB"),
        ("REPLICATION", "NOREPLICATION"),
        ("BYPASSRLS", "NOBYPASSRLS"),
    ] {
        c.admin(&format!("ALTER ROLE azure_pg_admin NOLOGIN {attribute}"));
        refused(&format!("it has {attribute}"));
        c.admin(&format!("ALTER ROLE azure_pg_admin {undo}"));
    }
    c.admin("CREATE ROLE hanger_on LOGIN; GRANT azure_pg_admin TO hanger_on");
    refused("an ordinary role is a member");
    c.admin("REVOKE azure_pg_admin FROM hanger_on");
    c.admin(&format!(
        "CREATE ROLE entra_member LOGIN; \
         SECURITY LABEL FOR pgaadauth ON ROLE entra_member IS 'aadauth,oid={},type=user'; \
         GRANT azure_pg_admin TO entra_member",
        new_oid()
    ));
    refused("an Entra principal that is not an admin is a member");
    c.admin("REVOKE azure_pg_admin FROM entra_member");

    // Positive: NOLOGIN, no attributes, no members but a superuser: adopted.
    c.admin("CREATE ROLE su_member SUPERUSER NOLOGIN; GRANT azure_pg_admin TO su_member");
    c.admin("CREATE EXTENSION aad_auth");
    assert_eq!(installed(), "1");
    // An admin principal is a member; the extension is dropped and created again: adopted.
    let admin = new_oid();
    create_principal(&c, "adopter@contoso.com", &admin, "user", true);
    c.admin("DROP EXTENSION aad_auth");
    c.admin("CREATE EXTENSION aad_auth");
    assert_eq!(installed(), "1");
    // The admin manages principals through the adopted role.
    let made = c.psql_with(
        "adopter@contoso.com",
        &user_token(&admin, "adopter@contoso.com"),
        "",
        &[],
        &format!(
            "SELECT pgaadauth_create_principal_with_oid('made-by-adopter', '{}', 'user', false, false)",
            new_oid()
        ),
    );
    assert_eq!(made, Ok("Created role for \"made-by-adopter\"".to_owned()));
    // Once an ordinary role is a member again, it is not adopted again.
    c.admin("DROP EXTENSION aad_auth; GRANT azure_pg_admin TO hanger_on");
    refused("an ordinary role became a member after DROP EXTENSION");
}

// ---- 2. Labelled roles have no password ----------------------------------------------------

fn password_is_null(c: &Cluster, role: &str) -> String {
    c.admin(&format!(
        "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = {}",
        lit(role)
    ))
}

fn bound_message(role: &str) -> String {
    format!(
        "role \"{role}\" is bound to a Microsoft Entra ID principal and signs in only with an access token, not a password"
    )
}

#[test]
fn labelled_roles_have_no_password() {
    let c = hardened();
    // Creating a principal: no password.
    create_principal(c, "lab_new", &new_oid(), "user", false);
    assert_eq!(password_is_null(c, "lab_new"), "t");

    // Rebinding a role that had a password clears it.
    let lines = [
        ("lab_scram", "ord_scram", "scram-sha-256"),
        ("lab_md5", "ord_md5", "md5"),
        ("lab_pw", "ord_pw", "scram-sha-256"),
    ];
    for (labelled, ordinary, encryption) in lines {
        let set = format!("SET password_encryption = '{encryption}'; ");
        c.admin(&format!(
            "{set}CREATE ROLE {labelled} LOGIN PASSWORD '{PASSWORD}'"
        ));
        assert_eq!(password_is_null(c, labelled), "f");
        assert_eq!(
            c.admin(&format!(
                "SELECT pgaadauth_update_principal_with_oid('{labelled}', '{}', 'user', false, false)",
                new_oid()
            )),
            format!("Updated role for \"{labelled}\"")
        );
        assert_eq!(
            password_is_null(c, labelled),
            "t",
            "rebinding {labelled} kept its password"
        );
        // A superuser sets one anyway; the ordinary twin has the same password.
        c.admin(&format!("{set}ALTER ROLE {labelled} PASSWORD '{PASSWORD}'"));
        c.admin(&format!(
            "{set}CREATE ROLE {ordinary} LOGIN PASSWORD '{PASSWORD}'"
        ));
    }

    // On scram-sha-256, md5 and password lines the labelled role's password is vetoed; the
    // ordinary role's is accepted.
    for (labelled, ordinary, _) in lines {
        let err = c
            .sign_in(labelled, PASSWORD)
            .expect_err(&format!("{labelled} signs in with a password"));
        assert!(err.contains(&bound_message(labelled)), "{labelled}: {err}");
        assert_eq!(c.sign_in(ordinary, PASSWORD).unwrap(), ordinary);
    }
    // SQLSTATE 28000, over the wire on the password line ...
    assert_eq!(
        RawClient::sign_in(c.port, "lab_pw", PASSWORD.as_bytes()),
        Answer::Error {
            code: "28000".into(),
            message: bound_message("lab_pw")
        }
    );
    assert_eq!(
        RawClient::sign_in(c.port, "ord_pw", PASSWORD.as_bytes()),
        Answer::Ok
    );
    // ... and in the log (whose prefix carries the SQLSTATE) for the SCRAM and MD5 lines.
    settle();
    let log = c.log();
    for role in ["lab_scram", "lab_md5"] {
        let entry = format!("FATAL:  {}", bound_message(role));
        let line = log
            .lines()
            .find(|l| l.contains(&entry))
            .unwrap_or_else(|| panic!("no {entry:?} in the log:\n{log}"));
        assert!(line.contains(" 28000 FATAL:"), "{line}");
    }
    c.assert_no_crash();
}

// ---- 3. Names are bytes --------------------------------------------------------------------

#[test]
fn names_are_bytes() {
    let c = Cluster::start(Setup {
        initdb_args: vec!["-E".into(), "SQL_ASCII".into(), "--locale=C".into()],
        ..Setup::default()
    });
    let latin1: &[u8] = b"m\xFCller";
    let utf8: &[u8] = "m\u{FFFD}ller".as_bytes();
    let (a, b) = (new_oid(), new_oid());
    for (name, oid) in [(latin1, &a), (utf8, &b)] {
        let mut sql = b"CREATE ROLE \"".to_vec();
        sql.extend_from_slice(name);
        sql.extend_from_slice(b"\" LOGIN; SECURITY LABEL FOR pgaadauth ON ROLE \"");
        sql.extend_from_slice(name);
        sql.extend_from_slice(format!("\" IS 'aadauth,oid={oid},type=user'").as_bytes());
        c.try_admin_bytes(&sql)
            .expect("create a role whose name is bytes");
    }
    assert_eq!(
        c.admin("SELECT string_agg(encode(convert_to(rolname::text, 'SQL_ASCII'), 'hex'), ',' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'm%ller'"),
        "6defbfbd6c6c6572,6dfc6c6c6572",
        "two roles, one byte apart from a lossy conversion"
    );
    let token_a = user_token(&a, "a@contoso.com");
    let token_b = user_token(&b, "b@contoso.com");

    // B's token names the role whose name is the lossy conversion of m\xFCller: refused.
    let answer = RawClient::sign_in_bytes(c.port, latin1, b"postgres", token_b.as_bytes());
    assert!(
        matches!(answer, Answer::Error { .. }),
        "a token for m\u{FFFD}ller signs in as m\\xFCller: {answer:?}"
    );
    // A's token signs in as exactly m\xFCller.
    let mut client = RawClient::connect_bytes(c.port, latin1, b"postgres");
    client.expect_password_request();
    client.send_password(token_a.as_bytes());
    assert_eq!(client.answer(), Answer::Ok);
    assert_eq!(
        client.query_one("SELECT encode(convert_to(current_user::text, 'SQL_ASCII'), 'hex')"),
        "6dfc6c6c6572"
    );
    // The UTF-8 role: B's token in, A's out.
    assert_eq!(
        RawClient::sign_in_bytes(c.port, utf8, b"postgres", token_b.as_bytes()),
        Answer::Ok
    );
    assert!(matches!(
        RawClient::sign_in_bytes(c.port, utf8, b"postgres", token_a.as_bytes()),
        Answer::Error { .. }
    ));

    // The audit line quotes the name's bytes.
    settle();
    let log = String::from_utf8_lossy(&c.log_bytes()).into_owned();
    let accepted = log
        .lines()
        .find(|l| l.contains("aad_auth: sign-in accepted: role=\"m\\xfcller\""))
        .unwrap_or_else(|| panic!("no accepted line for role=\"m\\xfcller\":\n{log}"));
    assert!(accepted.contains(&a), "{accepted}");
    assert!(
        log.contains("aad_auth: sign-in refused: role=\"m\\xfcller\""),
        "{log}"
    );
    assert!(
        !c.log_bytes().windows(10).any(|w| w == b"role=\"m\xFCll"),
        "a raw non-UTF-8 byte in an audit line"
    );
    c.assert_no_crash();
}

// ---- 4. Keys after a crash-restart ---------------------------------------------------------

#[test]
fn keys_after_a_crash_restart() {
    let c = Cluster::start(Setup {
        jwks: Some(jwks(&[key(), other_key()])),
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    let role = "crash@contoso.com";
    c.principal(role, &oid, "user");
    let claims = Claims::user(TENANT, &oid, role);
    let (k1, k2) = (
        mint(key(), &header(&key().kid), &claims),
        mint(other_key(), &header(&other_key().kid), &claims),
    );
    let publish = |keys: &[&TestKey]| {
        let tmp = c.dir.join("jwks.json.new");
        std::fs::write(&tmp, jwks(keys)).unwrap();
        std::fs::rename(&tmp, c.dir.join("jwks.json")).unwrap();
    };
    let unknown = |when: &str| {
        let err = c
            .sign_in(role, &k2)
            .expect_err(&format!("a removed key signs in {when}"));
        assert!(err.contains("signing key is unknown"), "{when}: {err}");
    };
    assert_eq!(c.sign_in(role, &k1).unwrap(), role);
    assert_eq!(c.sign_in(role, &k2).unwrap(), role);

    // K2 is removed, and the server crashes before any sign-in has read the file.
    publish(&[key()]);
    c.crash_a_backend();
    unknown("after a crash (no sign-in between the removal and the crash)");
    assert_eq!(c.sign_in(role, &k1).unwrap(), role);

    // K2 is published again, then removed again and the removal seen by a sign-in; a crash.
    publish(&[key(), other_key()]);
    assert_eq!(c.sign_in(role, &k2).unwrap(), role);
    publish(&[key()]);
    unknown("once removed");
    c.crash_a_backend();
    unknown("after a crash");
    assert_eq!(c.sign_in(role, &k1).unwrap(), role);
    assert_eq!(c.crash_restarts(), 2);
}

// ---- 5. Log lines escaped ------------------------------------------------------------------

/// The line begins with the real `%m [%p] ` prefix of a server process: a timestamp of the
/// server's shape (not the forged one) and a pid other than 1.
fn genuine_prefix(line: &str) -> bool {
    let Some(ts) = line.get(..23) else {
        return false;
    };
    let shape = ts.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b' ',
        13 | 16 => b == b':',
        19 => b == b'.',
        _ => b.is_ascii_digit(),
    });
    if !shape || ts == "2026-01-01 00:00:00.000" {
        return false;
    }
    let rest = &line[23..];
    let (Some(open), Some(close)) = (rest.find(" ["), rest.find("] ")) else {
        return false;
    };
    let zone = &rest[..open];
    zone.starts_with(' ')
        && zone[1..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
        && close > open
        && rest[open + 2..close]
            .parse::<u32>()
            .is_ok_and(|pid| pid > 1)
}

#[test]
fn log_lines_are_escaped() {
    let c = hardened();
    let kid = &key().kid;
    let (oid, upn) = (new_oid(), "escape@contoso.com");
    let role = format!("esc-{}", &oid[..8]);
    create_principal(c, &role, &oid, "user", false);
    let (sp, appid) = (new_oid(), new_oid());
    let app_role = format!("esc-app-{}", &sp[..8]);
    create_principal(c, &app_role, &sp, "service", false);

    // Real sign-ins, for the new audit format.
    assert_eq!(c.sign_in(&role, &user_token(&oid, upn)).unwrap(), role);
    assert_eq!(
        c.sign_in(&app_role, &app_token(&sp, &appid)).unwrap(),
        app_role
    );

    // Database names that would forge an accepted line, with a refused (expired) token. At most
    // 63 bytes: PostgreSQL cuts longer names in the startup packet.
    let expired = expired_user_token(&oid, upn);
    let databases: [&[u8]; 2] = [
        b"x\" \n2026-01-01 00:00:00.000 UTC [1] LOG:  sign-in accepted",
        b"x\"\naad_auth: sign-in accepted: role=\"victim\"",
    ];
    for db in databases {
        assert!(db.len() <= 63);
        let (code, message) = refusal(RawClient::sign_in_bytes(
            c.port,
            role.as_bytes(),
            db,
            expired.as_bytes(),
        ));
        assert_eq!(code, "28P01", "{message}");
    }
    // Entra role names with a quote, a backslash and a newline.
    let forged_role = "q\"\\\nLOG:  aad_auth: sign-in accepted: role=\"v\"";
    let forged_oid = new_oid();
    create_principal(c, forged_role, &forged_oid, "user", false);
    assert_eq!(
        label_of(c, forged_role),
        format!("aadauth,oid={forged_oid},type=user")
    );
    let (code, message) = refusal(RawClient::sign_in(
        c.port,
        forged_role,
        expired_user_token(&forged_oid, "q").as_bytes(),
    ));
    assert_eq!(code, "28P01", "{message}");
    let for_user = format!(
        "Microsoft Entra ID authentication failed for user {}: ",
        quoted(forged_role.as_bytes())
    );
    assert!(
        message.starts_with(&for_user),
        "expected {for_user:?}: {message}"
    );
    // A role that does not exist.
    let missing = "nobody\"\\\n2026-01-01 00:00:00.000 UTC [1] LOG:  sign-in accepted";
    assert!(missing.len() <= 63);
    let (code, message) = refusal(RawClient::sign_in(c.port, missing, b"wrong"));
    assert_eq!(code, "28P01", "{message}");
    let failed = format!(
        "password authentication failed for user {}",
        quoted(missing.as_bytes())
    );
    assert!(message.contains(&failed), "expected {failed:?}: {message}");

    settle();
    let log = c.log();
    // No line begins a forged entry: every line that says "sign-in accepted" is the server's.
    for line in log.lines() {
        if line.contains("sign-in accepted") {
            assert!(genuine_prefix(line), "a forged log line: {line}\n\n{log}");
        }
        for forged in [
            "sign-in accepted: role=\"victim\"",
            "sign-in accepted: role=\"v\"",
        ] {
            assert!(!line.contains(forged), "a forged entry: {line}");
        }
    }
    // The refusals quote what the client chose.
    for db in databases {
        let field = format!(
            "aad_auth: sign-in refused: role=\"{role}\" database={} host=\"127.0.0.1\"",
            quoted(db)
        );
        assert!(log.contains(&field), "no {field:?} in:\n{log}");
    }
    assert!(
        log.contains(
            "database=\"x\\\" \\n2026-01-01 00:00:00.000 UTC [1] LOG:  sign-in accepted\""
        ),
        "{log}"
    );
    let refused_role = format!(
        "aad_auth: sign-in refused: role={} database=\"postgres\"",
        quoted(forged_role.as_bytes())
    );
    assert!(
        log.contains(&refused_role),
        "no {refused_role:?} in:\n{log}"
    );
    assert!(
        log.contains(&for_user),
        "the FATAL for the forged role:\n{log}"
    );
    assert!(
        log.contains(&failed),
        "the FATAL for the missing role:\n{log}"
    );
    // Positive control: the same role with its valid token, accepted and quoted the same way.
    // (Only now: with log_connections on, PostgreSQL's own "connection authorized" line prints
    // the name as it is, continued on a new line after a tab, which aad_auth cannot change.)
    assert_eq!(
        RawClient::sign_in(c.port, forged_role, user_token(&forged_oid, "q").as_bytes()),
        Answer::Ok
    );
    settle();
    let accepted_role = format!(
        "aad_auth: sign-in accepted: role={} database=\"postgres\"",
        quoted(forged_role.as_bytes())
    );
    assert!(c.log().contains(&accepted_role), "no {accepted_role:?}");
    // The audit format: every claim quoted, a missing one `-`; refusals end with the reason.
    let user_line = format!(
        "aad_auth: sign-in accepted: role=\"{role}\" database=\"postgres\" host=\"127.0.0.1\" \
         label_type=user token_type=user oid=\"{oid}\" name=\"{upn}\" appid=\"{AZ_CLI_APPID}\" \
         tenant=\"{TENANT}\" kid=\"{kid}\""
    );
    assert!(
        log.lines().any(|l| l.ends_with(&user_line)),
        "no line ending with {user_line:?}:\n{log}"
    );
    let app_line = format!(
        "aad_auth: sign-in accepted: role=\"{app_role}\" database=\"postgres\" host=\"127.0.0.1\" \
         label_type=service token_type=app oid=\"{sp}\" name=- appid=\"{appid}\" \
         tenant=\"{TENANT}\" kid=\"{kid}\""
    );
    assert!(
        log.lines().any(|l| l.ends_with(&app_line)),
        "no line ending with {app_line:?}:\n{log}"
    );
    let refused = log
        .lines()
        .find(|l| {
            l.contains(&format!(
                "aad_auth: sign-in refused: role=\"{role}\" database=\"x"
            ))
        })
        .expect("refused line");
    assert!(
        refused.contains(&format!(
            "label_type=user token_type=user oid=\"{oid}\" name=\"{upn}\" appid=\"{AZ_CLI_APPID}\" tenant=\"{TENANT}\" kid=\"{kid}\" reason=\"expired: exp "
        )) && refused.ends_with('"'),
        "{refused}"
    );
    c.assert_no_crash();
}

// ---- 6. URL settings parsed ----------------------------------------------------------------

/// A `WARNING:` line that names `setting` and says what sign-in does meanwhile.
fn assert_warned(c: &Cluster, setting: &str) {
    let log = c.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARNING:") && l.contains(setting) && l.contains("meanwhile")),
        "no WARNING line naming {setting} and what sign-in does meanwhile:\n{log}"
    );
}

#[test]
fn url_settings_are_parsed() {
    let server = JwksServer::start(jwks(&[key()]));
    // http://127.0.0.1:<port>@evil.example/...: the host is evil.example, not the loopback.
    let uri = server.uri();
    let (authority, path) = uri
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
        .expect("a loopback http:// address");
    let tricked = format!("http://{authority}@evil.example/{path}");
    let c = Cluster::start(Setup {
        conf: vec![
            format!("aad_auth.jwks_uri = '{tricked}'"),
            // whatever address sign-in falls back to, it answers at once
            "aad_auth.authority = 'http://127.0.0.1:1'".into(),
            "aad_auth.jwks_min_refresh_interval = '1s'".into(),
        ],
        jwks: None,
        ..Setup::default()
    });
    assert_warned(&c, "aad_auth.jwks_uri");
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("url@contoso.com", &oid, "user");
    let token = user_token(&oid, "url@contoso.com");
    assert!(c.sign_in("url@contoso.com", &token).is_err());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        server.requests(),
        0,
        "the tricked address reached the key server"
    );

    let refused = [
        "http://127.0.0.1@evil.example/",
        "http://localhost:1@evil.example/",
        "http://127.0.0.1.evil.example/",
        "https://user:pw@login.microsoftonline.com",
        "http://127.0.0.1\\@evil.example/",
        "http://127.0.0.1%2f@evil.example/",
        "http://128.0.0.1/",
        "ftp://127.0.0.1/",
    ];
    let accepted = [
        "http://127.0.0.1:8080/keys",
        "http://127.1.2.3/k",
        "http://localhost/k",
        "http://[::1]:9/k",
        "https://login.microsoftonline.com",
    ];
    for setting in [
        "aad_auth.jwks_uri",
        "aad_auth.authority",
        "aad_auth.graph_endpoint",
    ] {
        for value in refused {
            let err = c
                .try_admin_verbose(&format!("ALTER SYSTEM SET {setting} = {}", lit(value)))
                .expect_err(&format!("{setting} = {value} accepted"));
            let expected = format!("ERROR:  22023: invalid value for parameter \"{setting}\"");
            assert!(err.contains(&expected), "{setting} = {value}: {err}");
        }
        for value in accepted {
            if let Err(err) =
                c.try_admin_verbose(&format!("ALTER SYSTEM SET {setting} = {}", lit(value)))
            {
                panic!("{setting} = {value} refused: {err}");
            }
            c.admin(&format!("ALTER SYSTEM RESET {setting}"));
        }
    }

    // Positive control: the key server's real address is fetched from, and the token signs in.
    c.reload_with(&[("aad_auth.jwks_uri", &uri)]);
    c.wait_for("SELECT generation > 0 FROM aad_auth_jwks_status()", "t", 20);
    assert_eq!(
        c.sign_in("url@contoso.com", &token).unwrap(),
        "url@contoso.com"
    );
    assert!(server.requests() > 0);
    c.assert_no_crash();
}

// ---- 7. Tokens only over encrypted connections ---------------------------------------------

const ENCRYPTION_REQUIRED: &str = "an encrypted connection is required to send a password or access token to this server; connect with sslmode=require or stronger";

#[test]
fn tokens_only_over_encrypted_connections() {
    let ssl = server_has_ssl();
    let c = Cluster::start(Setup {
        ssl,
        conf: vec![
            "aad_auth.require_secure_transport = 'strict'".into(),
            "aad_auth.skip_roles = 'monitor'".into(),
        ],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    assert_eq!(
        c.admin(
            "SELECT boot_val || ' ' || context FROM pg_settings WHERE name = 'aad_auth.require_secure_transport'"
        ),
        "on sighup"
    );
    let oid = new_oid();
    let entra = "tls@contoso.com";
    c.principal(entra, &oid, "user");
    c.admin(&format!(
        "CREATE ROLE tls_plain LOGIN PASSWORD '{PASSWORD}'; CREATE ROLE monitor LOGIN"
    ));
    let token = user_token(&oid, entra);

    // strict, no SSL: refused before any credential is asked, whoever the role.
    for role in [entra, "tls_plain", "tls_missing"] {
        let mut client = c.raw(role);
        match client.read() {
            Some((b'E', body)) => {
                let (code, message) = error_fields(&body);
                assert_eq!(code, "28000", "{role}: {message}");
                assert_eq!(message, ENCRYPTION_REQUIRED, "{role}");
            }
            other => panic!(
                "{role}: expected an ErrorResponse before any password request, got {other:?}"
            ),
        }
    }
    for (role, password) in [(entra, token.as_str()), ("tls_plain", PASSWORD)] {
        let err = c
            .psql_with(
                role,
                password,
                "sslmode=disable",
                &[],
                "SELECT current_user",
            )
            .expect_err(&format!("{role} signs in without SSL under strict"));
        assert!(err.contains(ENCRYPTION_REQUIRED), "{role}: {err}");
    }
    // Roles in skip_roles are not affected.
    assert_eq!(
        c.psql_with("monitor", "", "sslmode=disable", &[], "SELECT current_user"),
        Ok("monitor".to_owned())
    );
    if ssl {
        // strict over SSL: the token and the password are accepted.
        assert_eq!(
            c.psql_with(
                entra,
                &token,
                "sslmode=require",
                &[],
                "SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ),
            Ok(format!("{entra} true"))
        );
        assert_eq!(
            c.psql_with(
                "tls_plain",
                PASSWORD,
                "sslmode=require",
                &[],
                "SELECT current_user"
            ),
            Ok("tls_plain".to_owned())
        );
    } else {
        eprintln!(
            "NOTE: this server is built without SSL: strict over SSL is tested on PostgreSQL 15"
        );
    }

    // on: loopback without SSL is accepted.
    c.reload_with(&[("aad_auth.require_secure_transport", "on")]);
    assert_eq!(
        c.psql_with(entra, &token, "sslmode=disable", &[], "SELECT current_user"),
        Ok(entra.to_owned())
    );
    let mut client = c.raw("tls_plain");
    client.expect_password_request();
    // off: anything.
    c.reload_with(&[("aad_auth.require_secure_transport", "off")]);
    assert_eq!(
        c.psql_with(entra, &token, "sslmode=disable", &[], "SELECT current_user"),
        Ok(entra.to_owned())
    );
    c.assert_no_crash();
}

// ---- 8a. ID tokens refused -----------------------------------------------------------------

#[test]
fn id_tokens_are_refused() {
    let c = hardened();
    let oid = new_oid();
    let role = "idtoken@contoso.com";
    create_principal(c, role, &oid, "user", false);
    // Issued to a client app that aad_auth.audiences lists.
    let for_app = with(Claims::user(TENANT, &oid, role), "aud", json!(CLIENT_APP));
    let v2_for_app = with(
        Claims::user_v2(TENANT, &oid, role),
        "aud",
        json!(CLIENT_APP),
    );
    let id_tokens = [
        ("no appid", with(for_app.clone(), "appid", Value::Null)),
        (
            "a nonce",
            with(for_app.clone(), "nonce", json!("n-0S6_WzA2Mj")),
        ),
        ("v2, no azp", with(v2_for_app.clone(), "azp", Value::Null)),
        (
            "v2, a nonce",
            with(v2_for_app.clone(), "nonce", json!("n-0S6_WzA2Mj")),
        ),
        (
            "the default audience, no appid",
            with(Claims::user(TENANT, &oid, role), "appid", Value::Null),
        ),
    ];
    for (what, claims) in id_tokens {
        let (code, message) = refusal(RawClient::sign_in(c.port, role, token(&claims).as_bytes()));
        assert_eq!(code, "28P01", "{what}: {message}");
        assert!(
            message.contains("ID token") && message.contains("request an access token"),
            "{what}: {message}"
        );
    }
    // Positive controls: the same shapes as access tokens.
    for (what, claims) in [("v1", &for_app), ("v2", &v2_for_app)] {
        assert_eq!(
            RawClient::sign_in(c.port, role, token(claims).as_bytes()),
            Answer::Ok,
            "{what}"
        );
    }
}

// ---- 8b. failure_delay ---------------------------------------------------------------------

#[test]
fn failure_delay_slows_refusals() {
    let c = Cluster::start(Setup {
        conf: vec!["aad_auth.failure_delay = 1500".into()],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    assert_eq!(
        c.admin("SELECT boot_val || ' ' || unit || ' ' || max_val FROM pg_settings WHERE name = 'aad_auth.failure_delay'"),
        "0 ms 10000"
    );
    let oid = new_oid();
    let role = "delay@contoso.com";
    c.principal(role, &oid, "user");
    c.admin(&format!("CREATE ROLE delay_pw LOGIN PASSWORD '{PASSWORD}'"));
    let expired = expired_user_token(&oid, role);
    let good = user_token(&oid, role);
    let attempt = |role: &str, password: &[u8]| {
        let mut client = c.raw(role);
        client.expect_password_request();
        timed(|| {
            client.send_password(password);
            client.answer()
        })
    };
    let delay = Duration::from_millis(1500);

    let (answer, took) = attempt(role, expired.as_bytes());
    assert!(matches!(answer, Answer::Error { .. }), "{answer:?}");
    assert!(took >= delay, "a refused token answered after {took:?}");
    let (answer, took) = attempt("delay_pw", b"wrong");
    assert!(matches!(answer, Answer::Error { .. }), "{answer:?}");
    assert!(took >= delay, "a refused password answered after {took:?}");
    // Accepted sign-ins are not delayed.
    let (answer, took) = attempt(role, good.as_bytes());
    assert_eq!(answer, Answer::Ok);
    assert!(took < delay, "an accepted token answered after {took:?}");
    let (answer, took) = attempt("delay_pw", PASSWORD.as_bytes());
    assert_eq!(answer, Answer::Ok);
    assert!(took < delay, "an accepted password answered after {took:?}");

    // Durations with a unit; at most 10 s.
    c.reload_with(&[("aad_auth.failure_delay", "2s")]);
    assert_eq!(
        c.admin("SELECT setting FROM pg_settings WHERE name = 'aad_auth.failure_delay'"),
        "2000"
    );
    let err = c
        .try_admin_verbose("ALTER SYSTEM SET aad_auth.failure_delay = '11s'")
        .expect_err("a failure delay of 11 s");
    assert!(
        err.contains("ERROR:  22023:") && err.contains("aad_auth.failure_delay"),
        "{err}"
    );
    // With 0, a refusal is quick.
    c.reload_with(&[("aad_auth.failure_delay", "0")]);
    let (answer, took) = attempt(role, expired.as_bytes());
    assert!(matches!(answer, Answer::Error { .. }), "{answer:?}");
    assert!(took < delay, "with no delay a refusal took {took:?}");
    c.assert_no_crash();
}

// ---- 8c. Client messages never name the bound object ---------------------------------------

#[test]
fn client_messages_never_name_the_bound_object() {
    let c = hardened();
    let failed =
        |role: &str| format!("Microsoft Entra ID authentication failed for user \"{role}\": ");

    // A user role and another user's token.
    let (bound, other) = (new_oid(), new_oid());
    let user = "bound-user@contoso.com";
    create_principal(c, user, &bound, "user", false);
    assert_eq!(
        RawClient::sign_in(c.port, user, user_token(&bound, user).as_bytes()),
        Answer::Ok
    );
    let (code, message) = refusal(RawClient::sign_in(
        c.port,
        user,
        user_token(&other, "other@contoso.com").as_bytes(),
    ));
    assert_eq!(code, "28P01");
    assert_eq!(
        message,
        format!(
            "{}the access token's object id {other} is not the object role \"{user}\" is bound to",
            failed(user)
        )
    );
    assert!(!message.contains(&bound), "{message}");

    // A group role and a token that does not list its group.
    let group = new_oid();
    let group_role = "bound-group";
    create_principal(c, group_role, &group, "group", false);
    let member = with(
        Claims::user(TENANT, &new_oid(), "member@contoso.com"),
        "groups",
        json!([group]),
    );
    assert_eq!(
        RawClient::sign_in(c.port, group_role, token(&member).as_bytes()),
        Answer::Ok
    );
    let outsider = with(
        Claims::user(TENANT, &new_oid(), "outsider@contoso.com"),
        "groups",
        json!([new_oid()]),
    );
    let (code, message) = refusal(RawClient::sign_in(
        c.port,
        group_role,
        token(&outsider).as_bytes(),
    ));
    assert_eq!(code, "28P01");
    assert_eq!(
        message,
        format!(
            "{}the access token does not list the group that role \"{group_role}\" is bound to",
            failed(group_role)
        )
    );
    assert!(!message.contains(&group), "{message}");

    // A service role bound by application id, and another application's token.
    let (bound_app, app_oid) = (new_oid(), new_oid());
    let app_role = "bound-app";
    create_principal(c, app_role, &bound_app, "service", false);
    assert_eq!(
        RawClient::sign_in(c.port, app_role, app_token(&app_oid, &bound_app).as_bytes()),
        Answer::Ok
    );
    let stranger = new_oid();
    let (code, message) = refusal(RawClient::sign_in(
        c.port,
        app_role,
        app_token(&stranger, &new_oid()).as_bytes(),
    ));
    assert_eq!(code, "28P01");
    assert!(
        message.contains(&format!(
            "is not the object role \"{app_role}\" is bound to"
        )),
        "{message}"
    );
    assert!(!message.contains(&bound_app), "{message}");

    // The server log keeps the detail.
    settle();
    let log = c.log();
    for (role, oid) in [(user, &bound), (group_role, &group), (app_role, &bound_app)] {
        let prefix = format!("aad_auth: sign-in refused: role=\"{role}\"");
        assert!(
            log.lines()
                .any(|l| l.contains(&prefix) && l.contains(oid.as_str())),
            "no refusal line for {role} naming {oid}:\n{log}"
        );
    }
}

// ---- 8d. The authenticated identity is the token's oid -------------------------------------

#[test]
fn authenticated_identity_is_the_tokens_oid() {
    let c = &Cluster::start(Setup {
        conf: vec!["log_connections = on".into()],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    let pg16 = c.version_num() >= 160000;
    let oid = new_oid();
    let user = "identity@contoso.com";
    create_principal(c, user, &oid, "user", false);
    let (group, member) = (new_oid(), new_oid());
    create_principal(c, "identity-group", &group, "group", false);
    let member_token = token(&with(
        Claims::user(TENANT, &member, "member@contoso.com"),
        "groups",
        json!([group]),
    ));
    let user_token = user_token(&oid, user);

    let sql = if pg16 {
        "SELECT current_user || ' ' || system_user"
    } else {
        "SELECT current_user"
    };
    let expect = |role: &str, identity: &str| {
        if pg16 {
            format!("{role} trust:{identity}")
        } else {
            role.to_owned()
        }
    };
    assert_eq!(
        c.psql_with(user, &user_token, "", &[], sql),
        Ok(expect(user, &oid))
    );
    assert_eq!(
        c.psql_with("identity-group", &member_token, "", &[], sql),
        Ok(expect("identity-group", &member))
    );
    settle();
    let log = c.log();
    for identity in [&oid, &member] {
        let line = format!("connection authenticated: identity=\"{identity}\" method=trust");
        assert!(log.contains(&line), "no {line:?} in:\n{log}");
    }
    assert!(
        !log.contains(&format!("identity=\"{group}\"")),
        "the group's oid is the identity"
    );
}

// ---- 8e. Directory waits honour cancel and statement_timeout -------------------------------

/// A directory removed when dropped (after the cluster that reads it, declared later).
struct RemovedOnDrop(std::path::PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const GRAPH_CLIENT_ID: &str = "9a1c7a2e-0b6f-4c55-8e1d-3c2b1a0f9e8d";
const GRAPH_SECRET: &str = "s3cret-client-value";

#[test]
fn directory_waits_honour_cancel_and_statement_timeout() {
    let hang = Arc::new(AtomicBool::new(false));
    let resolved = new_oid();
    let graph = {
        let hang = hang.clone();
        let resolved = resolved.clone();
        StubServer::start(move |request| {
            if hang.load(Ordering::SeqCst) {
                return Reply::Hang;
            }
            let path = request.target.split('?').next().unwrap_or("");
            if request.method == "POST" && path == format!("/{TENANT}/oauth2/v2.0/token") {
                Reply::Respond(
                    200,
                    json!({"token_type":"Bearer","expires_in":3599,"access_token":"graph-token"})
                        .to_string(),
                )
            } else if request.method == "GET" && path.starts_with("/v1.0/users/") {
                Reply::Respond(200, json!({ "id": resolved }).to_string())
            } else {
                Reply::Respond(404, "{}".into())
            }
        })
    };
    let secret_dir = RemovedOnDrop(fresh_dir("graph_secret"));
    let secret_file = secret_dir.0.join("secret");
    std::fs::write(&secret_file, format!("{GRAPH_SECRET}\n")).unwrap();
    give_to_postgres(&secret_dir.0);
    let c = Cluster::start(Setup {
        conf: vec![
            format!("aad_auth.authority = '{}'", graph.url()),
            format!("aad_auth.graph_endpoint = '{}'", graph.url()),
            format!("aad_auth.graph_client_id = '{GRAPH_CLIENT_ID}'"),
            format!(
                "aad_auth.graph_client_secret_file = '{}'",
                secret_file.display()
            ),
        ],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");

    // Positive control: the directory answers within the statement timeout.
    assert_eq!(
        c.try_admin_verbose(
            "SET statement_timeout = '5s'; SELECT pgaadauth_create_principal('ready@contoso.com', false, false)"
        ),
        Ok("Created role for \"ready@contoso.com\"".to_owned())
    );

    // The directory stops answering: statement_timeout ends the wait.
    hang.store(true, Ordering::SeqCst);
    let (result, took) = timed(|| {
        c.try_admin_verbose(
            "SET statement_timeout = '1s'; SELECT pgaadauth_create_principal('someone@contoso.com', false, false)",
        )
    });
    let err = result.expect_err("a principal created while the directory hangs");
    assert!(err.contains("ERROR:  57014:"), "{err}");
    assert!(
        took < Duration::from_secs(8),
        "statement_timeout of 1 s took {took:?}"
    );

    // A cancel ends it too.
    let mut waiting = Command::new(psql())
        .args(["-X", "-q", "-A", "-t", "-v", "VERBOSITY=verbose", "-h"])
        .arg(&c.dir)
        .args([
            "-p",
            &c.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            "SELECT pgaadauth_create_principal('another@contoso.com', false, false)",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    let find = "SELECT pid FROM pg_stat_activity WHERE query LIKE '%pgaadauth_create_principal(''another@%' \
                AND state = 'active' AND pid <> pg_backend_pid()";
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        let pid = c.admin(find);
        if !pid.is_empty() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the waiting call did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "the call ended before it was cancelled"
    );
    let cancelled_at = Instant::now();
    assert_eq!(c.admin(&format!("SELECT pg_cancel_backend({pid})")), "t");
    loop {
        if waiting.try_wait().unwrap().is_some() {
            break;
        }
        if cancelled_at.elapsed() > Duration::from_secs(8) {
            let _ = waiting.kill();
            panic!("the call did not end within 8 s of its cancel");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = waiting.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ERROR:  57014:"), "{err}");
    assert_eq!(
        c.admin("SELECT count(*) FROM pg_roles WHERE rolname IN ('someone@contoso.com', 'another@contoso.com')"),
        "0"
    );
}

// ---- 8f. An invalid setting at start is reported at WARNING --------------------------------

#[test]
fn invalid_setting_at_start_is_warned() {
    let c = Cluster::start(Setup {
        conf: vec!["aad_auth.tenant_id = 'not-a-guid'".into()],
        ..Setup::default()
    });
    assert_warned(&c, "aad_auth.tenant_id");
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("start@contoso.com", &oid, "user");
    let token = user_token(&oid, "start@contoso.com");
    assert!(c.sign_in("start@contoso.com", &token).is_err());
    // Positive control: a valid tenant, and the same token signs in.
    c.reload_with(&[("aad_auth.tenant_id", TENANT)]);
    assert_eq!(
        c.sign_in("start@contoso.com", &token).unwrap(),
        "start@contoso.com"
    );
    // (aad_auth.jwks_uri: see url_settings_are_parsed.)
}

// ---- 2, PAM lines (optional): password_auth = off refuses them too -------------------------

/// The PAM service the cluster's pam line names; created (pam_permit) for the test's duration.
const PAM_SERVICE: &str = "/etc/pam.d/aad_auth_hardening";
const PAM_PERMIT: &str = "auth required pam_permit.so\naccount required pam_permit.so\n";

/// Removes the PAM service file on drop.
struct PamService;

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(PAM_SERVICE);
    }
}

#[test]
fn labelled_roles_have_no_password_and_password_auth_off_refuses_pam_lines() {
    // As tests/poolers.rs: a PAM service that accepts every password is made only on a
    // throwaway machine (CI=true) or when asked (AAD_TEST_PAM=1), as root.
    let allowed = std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("AAD_TEST_PAM").is_ok_and(|v| v == "1");
    let configure = Command::new(pg_config())
        .arg("--configure")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !allowed || !is_root() || !configure.contains("--with-pam") {
        eprintln!("SKIPPED: PAM lines are tested as root with CI=true or AAD_TEST_PAM=1, on a server built with PAM");
        return;
    }
    if std::path::Path::new(PAM_SERVICE).exists() {
        eprintln!("SKIPPED: {PAM_SERVICE} exists; left alone");
        return;
    }
    std::fs::write(PAM_SERVICE, PAM_PERMIT).expect("write the PAM service");
    let _service = PamService;
    let c = Cluster::start(Setup {
        conf: vec!["aad_auth.password_auth = off".into()],
        hba_before: vec!["host all pam_user 127.0.0.1/32 pam pamservice=aad_auth_hardening".into()],
        ..Setup::default()
    });
    c.admin("CREATE ROLE pam_user LOGIN");
    let err = c
        .sign_in("pam_user", "anything")
        .expect_err("a pam line signs in with password_auth off");
    assert!(
        err.contains(
            "password authentication is disabled on this server; sign in with a Microsoft Entra ID token"
        ),
        "{err}"
    );
    // Positive control: with password_auth on, PAM (pam_permit) lets the role in.
    c.reload_with(&[("aad_auth.password_auth", "on")]);
    assert_eq!(c.sign_in("pam_user", "anything").unwrap(), "pam_user");
}

// ---- Found by the break-it review ----------------------------------------------------------

/// Making a role an admin gives it CREATEROLE and CREATEDB: a member of azure_pg_admin that has
/// neither cannot give them to itself (or to anyone) through `isAdmin`.
#[test]
fn admin_power_making_an_admin_needs_createrole_and_createdb() {
    let c = hardened();
    let weak_oid = new_oid();
    c.admin("CREATE ROLE weak_admin LOGIN; GRANT azure_pg_admin TO weak_admin");
    c.admin(&format!(
        "SECURITY LABEL FOR pgaadauth ON ROLE weak_admin IS 'aadauth,oid={weak_oid},type=user'"
    ));
    let weak_token = user_token(&weak_oid, "weak@contoso.com");
    let detail = |t: &str| {
        format!("Making role \"{t}\" a Microsoft Entra ID admin gives it CREATEROLE and CREATEDB, which you do not have.")
    };
    // Signed in for real, the weak admin promotes itself: refused, and nothing changed.
    let err = c
        .psql_with(
            "weak_admin",
            &weak_token,
            "",
            &["-v", "VERBOSITY=verbose"],
            &format!(
                "SELECT pgaadauth_update_principal_with_oid('weak_admin', '{weak_oid}', 'user', true, false)"
            ),
        )
        .expect_err("self-promotion not refused");
    assert!(
        err.contains("42501")
            && err.contains("permission denied to manage role \"weak_admin\"")
            && err.contains(&detail("weak_admin")),
        "self-promotion not refused: {err}"
    );
    assert_eq!(
        c.admin("SELECT rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = 'weak_admin'"),
        "f"
    );
    // Nor can it create an admin principal, or write an admin label.
    let err = c
        .try_admin_verbose(&format!(
            "SET SESSION AUTHORIZATION weak_admin; \
             SELECT pgaadauth_create_principal_with_oid('weak_made', '{}', 'user', true, false)",
            new_oid()
        ))
        .expect_err("weak admin created an admin");
    assert!(err.contains(&detail("weak_made")), "{err}");
    assert_eq!(label_of(c, "weak_made"), "missing");
    create_principal(c, "weak_target", &new_oid(), "user", false);
    let err = c
        .try_admin_verbose(&format!(
            "SET SESSION AUTHORIZATION weak_admin; \
             SECURITY LABEL FOR pgaadauth ON ROLE weak_target IS 'aadauth,oid={},type=user,admin'",
            new_oid()
        ))
        .expect_err("weak admin wrote an admin label");
    assert!(err.contains("42501"), "{err}");
    // Positive controls: the same admin manages an ordinary principal; an admin made by the
    // API (CREATEROLE, CREATEDB) makes another admin.
    c.admin(&format!(
        "SET SESSION AUTHORIZATION weak_admin; \
         SELECT pgaadauth_update_principal_with_oid('weak_target', '{}', 'user', false, true)",
        new_oid()
    ));
    let strong_oid = new_oid();
    create_principal(c, "strong_admin", &strong_oid, "user", true);
    let out = c.psql(
        "strong_admin",
        &user_token(&strong_oid, "strong@contoso.com"),
        &format!(
            "SELECT pgaadauth_create_principal_with_oid('strong_made', '{}', 'user', true, false)",
            new_oid()
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.admin("SELECT rolcreaterole AND rolcreatedb FROM pg_roles WHERE rolname = 'strong_made'"),
        "t"
    );
}

/// A role named azure_pg_admin that someone else made confers nothing before CREATE EXTENSION
/// has checked it: its members cannot write labels (an admin label on themselves included),
/// so they cannot dress themselves up as Entra admins for the adoption check.
#[test]
fn admin_power_azure_pg_admin_confers_nothing_before_create_extension() {
    let c = Cluster::start(Setup::default());
    c.admin(
        "CREATE ROLE mallory LOGIN CREATEROLE; \
         SET ROLE mallory; CREATE ROLE azure_pg_admin NOLOGIN; GRANT azure_pg_admin TO mallory",
    );
    let err = c
        .try_admin(&format!(
            "SET SESSION AUTHORIZATION mallory; \
             SECURITY LABEL FOR pgaadauth ON ROLE mallory IS 'aadauth,oid={},type=user,admin'",
            new_oid()
        ))
        .expect_err("a member of a stranger's azure_pg_admin wrote a label");
    assert!(
        err.contains("permission denied"),
        "unexpected refusal: {err}"
    );
    assert_eq!(label_of(&c, "mallory"), "-");
    let err = c
        .try_admin("CREATE EXTENSION aad_auth")
        .expect_err("the stranger's azure_pg_admin was adopted");
    assert!(err.contains("azure_pg_admin"), "{err}");
    // Positive control: a superuser labels a role in the same database.
    c.admin(&format!(
        "SECURITY LABEL FOR pgaadauth ON ROLE mallory IS 'aadauth,oid={},type=user'",
        new_oid()
    ));
    assert!(label_of(&c, "mallory").starts_with("aadauth,"));
}

/// The key refresher never uses a proxy from the environment: HTTP_PROXY and friends would
/// carry a loopback request to whoever runs the proxy, who could then serve the keys.
#[test]
fn url_settings_never_go_through_an_environment_proxy() {
    let proxy = StubServer::start(|_| Reply::Respond(200, jwks(&[other_key()])));
    let keys = JwksServer::start(jwks(&[key()]));
    let proxy_url = proxy.url();
    let mut setup = fetching_from(&keys, &[]);
    setup.env = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .map(|k| (k.to_string(), proxy_url.clone()))
    .collect();
    let c = Cluster::start(setup);
    c.admin("CREATE EXTENSION aad_auth");
    c.wait_for("SELECT generation > 0 FROM aad_auth_jwks_status()", "t", 20);
    let oid = new_oid();
    c.principal("proxied@contoso.com", &oid, "user");
    // The tenant's key signs in; a key only the proxy serves does not.
    assert_eq!(
        c.sign_in(
            "proxied@contoso.com",
            &user_token(&oid, "proxied@contoso.com")
        )
        .as_deref(),
        Ok("proxied@contoso.com")
    );
    let forged = mint(
        other_key(),
        &header(&other_key().kid),
        &Claims::user(TENANT, &oid, "proxied@contoso.com"),
    );
    assert!(c.sign_in("proxied@contoso.com", &forged).is_err());
    assert_eq!(
        proxy.requests().len(),
        0,
        "a request went through the proxy"
    );
    assert!(keys.requests() > 0);
}

/// skip_roles folds unquoted names as PostgreSQL does (ASCII letters only): `Übermon` skips
/// the role `Übermon`, never `übermon`.
#[test]
fn skip_roles_match_exactly_the_listed_role() {
    let c = Cluster::start(Setup {
        conf: vec!["aad_auth.skip_roles = 'Übermon, \u{212a}elvin'".into()],
        ..Setup::default()
    });
    c.admin(
        "CREATE ROLE \"übermon\" LOGIN PASSWORD 'right-pw'; CREATE ROLE \"Übermon\" LOGIN; \
         CREATE ROLE kelvin LOGIN PASSWORD 'right-pw'",
    );
    assert_eq!(c.sign_in("Übermon", "").as_deref(), Ok("Übermon"));
    for role in ["übermon", "kelvin"] {
        let err = c
            .sign_in(role, "wrong-pw")
            .expect_err("a role that is not listed passed unchallenged");
        assert!(err.contains("password authentication failed"), "{err}");
        assert_eq!(c.sign_in(role, "right-pw").as_deref(), Ok(role));
    }
}
