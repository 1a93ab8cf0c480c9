//! End to end: sign-in statistics (`aad_auth_sign_in_stats()`), the live token sessions
//! (`aad_auth_sessions()`), and the ending of sessions whose token expired
//! (`aad_auth.session_lifetime = token`) or whose principal was revoked
//! (`aad_auth.revoke_live_sessions`).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn claims_with(claims: Value, changes: &[(&str, Value)]) -> Value {
    changes
        .iter()
        .fold(claims, |c, (name, value)| with(c, name, value.clone()))
}

fn signed(claims: &Value) -> String {
    mint(key(), &header(&key().kid), claims)
}

/// A user token that expires at `exp` (Unix seconds).
fn user_token_expiring(oid: &str, upn: &str, exp: i64) -> String {
    signed(&claims_with(
        Claims::user(TENANT, oid, upn),
        &[("exp", json!(exp))],
    ))
}

/// (accepted, refused, refused_by as a map, last_accepted set, last_refused set) per role;
/// the overflow row under "".
type Stats = BTreeMap<String, (i64, i64, BTreeMap<String, i64>, bool, bool)>;

fn stats(c: &Cluster) -> Stats {
    c.admin(
        "SELECT coalesce(rolname::text, ''), accepted, refused, refused_by::text, \
         last_accepted IS NOT NULL, last_refused IS NOT NULL FROM aad_auth_sign_in_stats()",
    )
    .lines()
    .map(|line| {
        let f: Vec<&str> = line.split('|').collect();
        let by: BTreeMap<String, i64> = serde_json_map(f[3]);
        (
            f[0].to_owned(),
            (
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                by,
                f[4] == "t",
                f[5] == "t",
            ),
        )
    })
    .collect()
}

fn serde_json_map(text: &str) -> BTreeMap<String, i64> {
    let v: Value = aad_auth_testkit::serde_json::from_str(text).expect("refused_by is JSON");
    v.as_object()
        .expect("refused_by is an object")
        .iter()
        .map(|(k, n)| (k.clone(), n.as_i64().expect("a count")))
        .collect()
}

/// The refused_by map with `counts` and every other class at 0.
fn by(counts: &[(&str, i64)]) -> BTreeMap<String, i64> {
    let mut all: BTreeMap<String, i64> = [
        "expired",
        "audience",
        "tenant",
        "unknown_key",
        "principal",
        "mfa",
        "group",
        "malformed",
        "password",
        "transport",
        "other",
    ]
    .iter()
    .map(|k| (k.to_string(), 0))
    .collect();
    for (k, n) in counts {
        all.insert(k.to_string(), *n);
    }
    all
}

#[test]
fn sign_in_stats_count_every_attempt_by_reason_and_reset_zeroes_them() {
    let c = Cluster::start(Setup {
        conf: vec!["aad_auth.skip_roles = 'maint'".into()],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    let (alice, bob, app, group) = (new_oid(), new_oid(), new_oid(), new_oid());
    c.principal("alice@contoso.com", &alice, "user");
    c.admin(&format!(
        "SELECT pgaadauth_create_principal_with_oid('mfa-bob@contoso.com', '{bob}', 'user', false, true)"
    ));
    c.principal("reporting-app", &app, "service");
    c.principal("analysts", &group, "group");
    c.admin("CREATE ROLE plain LOGIN PASSWORD 'right'");
    c.admin("CREATE ROLE maint LOGIN");

    let user = |oid: &str, upn: &str| Claims::user(TENANT, oid, upn);
    let good = user_token(&alice, "alice@contoso.com");
    // alice: 2 accepted, then one refusal of each token class that applies to a user role.
    assert!(c.sign_in("alice@contoso.com", &good).is_ok());
    assert!(c.sign_in("alice@contoso.com", &good).is_ok());
    let refusals = [
        expired_user_token(&alice, "alice@contoso.com"),
        signed(&claims_with(
            user(&alice, "alice@contoso.com"),
            &[("aud", json!("https://management.azure.com"))],
        )),
        signed(&claims_with(
            Claims::user(OTHER_TENANT, &alice, "alice@contoso.com"),
            &[],
        )),
        mint(
            other_key(),
            &header(&other_key().kid),
            &user(&alice, "alice@contoso.com"),
        ),
        user_token(&new_oid(), "mallory@contoso.com"),
        "not-a-token".to_string(),
    ];
    for token in &refusals {
        assert!(c.sign_in("alice@contoso.com", token).is_err());
    }
    // mfa-bob: a token without MFA; reporting-app: a user token; analysts: a token of no member.
    assert!(c
        .sign_in("mfa-bob@contoso.com", &user_token(&bob, "bob@contoso.com"))
        .is_err());
    assert!(c
        .sign_in("reporting-app", &user_token(&app, "x@contoso.com"))
        .is_err());
    assert!(c
        .sign_in("analysts", &user_token(&new_oid(), "carol@contoso.com"))
        .is_err());
    // Passwords: an ordinary role right and wrong, and a role that does not exist.
    assert!(c.sign_in("plain", "right").is_ok());
    assert!(c.sign_in("plain", "wrong").is_err());
    assert!(c.sign_in("ghost", "whatever").is_err());
    // A name that is not UTF-8, shown escaped, never lossily.
    assert!(matches!(
        RawClient::sign_in_bytes(c.port, b"caf\xe9", b"postgres", b"pw"),
        Answer::Error { .. }
    ));
    // A break-glass role passes the governed line unchallenged: an accepted sign-in.
    assert!(c.sign_in("maint", "").is_ok());
    // A token over a connection that is not encrypted, with strict transport.
    c.reload_with(&[("aad_auth.require_secure_transport", "strict")]);
    assert!(c.sign_in("alice@contoso.com", &good).is_err());
    c.reload_with(&[("aad_auth.require_secure_transport", "on")]);
    // Unix-socket connections (the admin's, all along) are never counted.

    let s = stats(&c);
    assert_eq!(
        s.keys().cloned().collect::<Vec<_>>(),
        [
            "alice@contoso.com",
            "analysts",
            "caf\\xe9",
            "ghost",
            "maint",
            "mfa-bob@contoso.com",
            "plain",
            "reporting-app"
        ],
        "{s:?}"
    );
    assert_eq!(
        s["alice@contoso.com"],
        (
            2,
            7,
            by(&[
                ("expired", 1),
                ("audience", 1),
                ("tenant", 1),
                ("unknown_key", 1),
                ("principal", 1),
                ("malformed", 1),
                ("transport", 1)
            ]),
            true,
            true
        )
    );
    assert_eq!(
        s["mfa-bob@contoso.com"],
        (0, 1, by(&[("mfa", 1)]), false, true)
    );
    assert_eq!(
        s["reporting-app"],
        (0, 1, by(&[("principal", 1)]), false, true)
    );
    assert_eq!(s["analysts"], (0, 1, by(&[("group", 1)]), false, true));
    assert_eq!(s["plain"], (1, 1, by(&[("password", 1)]), true, true));
    assert_eq!(s["ghost"], (0, 1, by(&[("password", 1)]), false, true));
    assert_eq!(s["caf\\xe9"], (0, 1, by(&[("password", 1)]), false, true));
    assert_eq!(s["maint"], (1, 0, by(&[]), true, false));
    assert_eq!(
        c.admin("SELECT count(*) FROM aad_auth_sign_in_stats() WHERE last_accepted > now() - interval '1 minute'"),
        "3"
    );

    // Admins only: an Entra principal that is not an admin is refused; an admin may read and reset.
    let out = c.psql(
        "alice@contoso.com",
        &good,
        "SELECT * FROM aad_auth_sign_in_stats()",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied for function"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "aad_auth_reset_sign_in_stats()",
        "aad_auth_sign_in_stats_rows()",
    ] {
        let out = c.psql("alice@contoso.com", &good, &format!("SELECT {f}"));
        assert!(!out.status.success(), "{f} is refused to non-admins");
    }
    let admin = new_oid();
    c.admin(&format!(
        "SELECT pgaadauth_create_principal_with_oid('dba@contoso.com', '{admin}', 'user', true, false)"
    ));
    let admin_token = user_token(&admin, "dba@contoso.com");
    let out = c.psql(
        "dba@contoso.com",
        &admin_token,
        "SELECT accepted FROM aad_auth_sign_in_stats() WHERE rolname = 'plain'",
    );
    assert_eq!(outcome(out).unwrap(), "1");
    let out = c.psql(
        "dba@contoso.com",
        &admin_token,
        "SELECT aad_auth_reset_sign_in_stats()",
    );
    outcome(out).unwrap();
    assert!(
        c.log()
            .contains("aad_auth: sign-in statistics reset by role \"dba@contoso.com\" (session user \"dba@contoso.com\")"),
        "the reset is logged with who did it"
    );
    // The reset zeroed everything before it; only sign-ins after it count.
    assert_eq!(
        c.admin("SELECT count(*) FROM aad_auth_sign_in_stats()"),
        "0"
    );
    assert!(c.sign_in("plain", "wrong").is_err());
    let s = stats(&c);
    assert_eq!(s.keys().cloned().collect::<Vec<_>>(), ["plain"]);
    assert_eq!(s["plain"], (0, 1, by(&[("password", 1)]), false, true));
    c.assert_no_crash();
}

#[test]
fn sign_in_stats_are_bounded_and_made_up_names_cannot_crowd_out_roles() {
    let c = Cluster::start(Setup {
        conf: vec!["aad_auth.sign_in_stats_max = 16".into()],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    c.admin("CREATE ROLE real_role LOGIN PASSWORD 'pw'");
    // 12 names that are no role: 8 (half the table) get rows, 4 go to the overflow row.
    for i in 0..12 {
        assert!(c.sign_in(&format!("spray{i}"), "guess").is_err());
    }
    // A real role still gets its own row, and so do more real roles after it.
    assert!(c.sign_in("real_role", "pw").is_ok());
    assert!(c.sign_in("real_role", "nope").is_err());
    let s = stats(&c);
    let sprayed = s.keys().filter(|k| k.starts_with("spray")).count();
    assert_eq!(sprayed, 8, "{s:?}");
    assert_eq!(s[""].1, 4, "the overflow row counts the rest: {s:?}");
    assert_eq!(s["real_role"].0, 1);
    assert_eq!(s["real_role"].1, 1);
    let total: i64 = s.values().map(|v| v.1).sum();
    assert_eq!(total, 13, "no attempt is lost");
    // More overflow: logged once.
    for i in 12..15 {
        assert!(c.sign_in(&format!("spray{i}"), "guess").is_err());
    }
    assert_eq!(stats(&c)[""].1, 7);
    assert_eq!(
        c.log().matches("the sign-in statistics are full").count(),
        1,
        "logged once"
    );
    assert!(c.log().contains("aad_auth.sign_in_stats_max = 16"));
    c.assert_no_crash();
}

/// A signed-in wire-protocol session and its backend's pid.
fn session(c: &Cluster, role: &str, token: &str) -> (RawClient, String) {
    let mut client = c.raw(role);
    client.expect_password_request();
    client.send_password(token.as_bytes());
    assert_eq!(client.answer(), Answer::Ok, "{role} signs in");
    let pid = client.query_one("SELECT pg_backend_pid()");
    (client, pid)
}

fn alive(c: &Cluster, pid: &str) -> bool {
    c.admin(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
    )) == "1"
}

#[test]
fn sessions_lists_exactly_the_token_sessions_alive() {
    let c = Cluster::start(Setup::default());
    c.admin("CREATE EXTENSION aad_auth");
    let (alice, app, member, group) = (new_oid(), new_oid(), new_oid(), new_oid());
    c.principal("alice@contoso.com", &alice, "user");
    c.principal("reporting-app", &app, "service");
    c.principal("analysts", &group, "group");
    c.admin("CREATE ROLE plain LOGIN PASSWORD 'pw'");
    let alice_token = user_token(&alice, "alice@contoso.com");
    let exp = now() + 3600;
    let (a, a_pid) = session(
        &c,
        "alice@contoso.com",
        &user_token_expiring(&alice, "alice@contoso.com", exp),
    );
    let (mut b, b_pid) = session(
        &c,
        "reporting-app",
        &app_token(&app, "11111111-2222-3333-4444-555555555555"),
    );
    let member_token = signed(&claims_with(
        Claims::user(TENANT, &member, "carol@contoso.com"),
        &[("groups", json!([group]))],
    ));
    let (_g, g_pid) = session(&c, "analysts", &member_token);
    // A password session is not a token session.
    let mut p = c.raw("plain");
    p.expect_password_request();
    p.send_password(b"pw");
    assert_eq!(p.answer(), Answer::Ok);
    let p_pid = p.query_one("SELECT pg_backend_pid()");

    let rows = c.admin(
        "SELECT pid, rolname, oid, principal_type, coalesce(name, '-'), tenant, \
         extract(epoch from token_expires)::bigint, method FROM aad_auth_sessions()",
    );
    let mut want = vec![
        format!("{a_pid}|alice@contoso.com|{alice}|user|alice@contoso.com|{TENANT}|{exp}|trust"),
        format!(
            "{b_pid}|reporting-app|{app}|service|11111111-2222-3333-4444-555555555555|{TENANT}|"
        ),
        format!("{g_pid}|analysts|{member}|group|carol@contoso.com|{TENANT}|"),
    ];
    want.sort_by_key(|r| r.split('|').next().unwrap().parse::<i32>().unwrap());
    let got: Vec<&str> = rows.lines().collect();
    assert_eq!(got.len(), 3, "{rows}");
    for (g, w) in got.iter().zip(&want) {
        assert!(g.starts_with(w.as_str()), "{g} vs {w}");
        assert!(g.ends_with("|trust"), "{g}");
    }
    assert!(!rows.contains(&p_pid), "no password session: {rows}");
    // Joinable with pg_stat_activity on pid.
    assert_eq!(
        c.admin(
            "SELECT string_agg(a.usename || ':' || s.oid, ',' ORDER BY a.usename) \
             FROM aad_auth_sessions() s JOIN pg_stat_activity a USING (pid)"
        ),
        format!("alice@contoso.com:{alice},analysts:{member},reporting-app:{app}")
    );
    // A session that ends leaves the list.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.admin(&format!(
        "SELECT count(*) FROM aad_auth_sessions() WHERE pid = {a_pid}"
    )) != "0"
    {
        assert!(
            Instant::now() < deadline,
            "the ended session is still listed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.admin("SELECT count(*) FROM aad_auth_sessions()"), "2");
    // An admin ending a token session the monitor did not end gets PostgreSQL's own message.
    c.admin(&format!("SELECT pg_terminate_backend({b_pid})"));
    let (code, message) = b.next_error().expect("terminated");
    assert_eq!(code, "57P01");
    assert_eq!(
        message,
        "terminating connection due to administrator command"
    );
    // Admins only.
    let out = c.psql(
        "alice@contoso.com",
        &alice_token,
        "SELECT * FROM aad_auth_sessions()",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied for function"));
    assert!(alive(&c, &p_pid));
    c.assert_no_crash();
}

#[test]
fn session_lifetime_token_ends_expired_sessions_wherever_they_are_and_never_early() {
    let c = Cluster::start(Setup {
        conf: vec![
            "aad_auth.clock_skew = 0".into(),
            "aad_auth.session_lifetime = token".into(),
            "aad_auth.session_grace = '2s'".into(),
        ],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("alice@contoso.com", &oid, "user");
    c.admin("CREATE ROLE plain LOGIN PASSWORD 'pw'");
    let exp = now() + 6;
    let short = user_token_expiring(&oid, "alice@contoso.com", exp);
    let (idle, idle_pid) = session(&c, "alice@contoso.com", &short);
    let (mut sleeper, sleeper_pid) = session(&c, "alice@contoso.com", &short);
    let (mut in_tx, in_tx_pid) = session(&c, "alice@contoso.com", &short);
    let (_fresh, fresh_pid) = session(
        &c,
        "alice@contoso.com",
        &user_token(&oid, "alice@contoso.com"),
    );
    let mut p = c.raw("plain");
    p.expect_password_request();
    p.send_password(b"pw");
    assert_eq!(p.answer(), Answer::Ok);
    let p_pid = p.query_one("SELECT pg_backend_pid()");
    sleeper.send_query("SELECT pg_sleep(60)");
    in_tx.execute("BEGIN");
    in_tx.query_one("SELECT count(*) FROM pg_class");

    // Nothing is ended before exp + grace.
    let over = exp + 2;
    while now() < over {
        for pid in [&idle_pid, &sleeper_pid, &in_tx_pid, &fresh_pid] {
            assert!(alive(&c, pid), "pid {pid} was ended before exp + grace");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each of the three is ended within a few seconds after it, with the reason: each client
    // waits in a thread of its own, noting when the error arrives.
    let waiting: Vec<_> = [
        (idle, &idle_pid),
        (sleeper, &sleeper_pid),
        (in_tx, &in_tx_pid),
    ]
    .into_iter()
    .map(|(mut client, pid)| {
        let pid = pid.clone();
        std::thread::spawn(move || {
            let error = client.next_error();
            (pid, error, now())
        })
    })
    .collect();
    for waiter in waiting {
        let (pid, error, ended) = waiter.join().unwrap();
        let (code, message) = error.expect("an error before the end");
        assert_eq!(code, "57P01", "{message}");
        assert!(
            message.contains("access token") && message.contains("expired at"),
            "{message}"
        );
        assert!(
            ended > over && ended <= over + 5,
            "pid {pid} ended at {ended}, over at {over}"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(&c, &pid) {
            assert!(Instant::now() < deadline, "pid {pid} lives on");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The session with a fresh token and the password session live on.
    assert!(alive(&c, &fresh_pid));
    assert!(alive(&c, &p_pid));
    assert_eq!(c.admin("SELECT count(*) FROM aad_auth_sessions()"), "1");
    let log = c.log();
    assert_eq!(log.matches("aad_auth: ending session").count(), 3, "{log}");
    assert!(
        log.contains("FATAL:  terminating connection because the Microsoft Entra ID access token")
    );
    c.assert_no_crash();
}

#[test]
fn revoke_live_sessions_ends_dropped_rebound_and_unlabelled_principals_only_when_on() {
    let c = Cluster::start(Setup::default());
    c.admin("CREATE EXTENSION aad_auth");
    let run = |revoke: bool| {
        c.reload_with(&[(
            "aad_auth.revoke_live_sessions",
            if revoke { "on" } else { "off" },
        )]);
        // Time for the monitor, too, to have read the new setting.
        std::thread::sleep(Duration::from_millis(1500));
        let tag = if revoke { "on" } else { "off" };
        let names = [
            "dropped",
            "rebound",
            "unlabelled",
            "recreated",
            "kept",
            "renamed",
        ]
        .map(|n| format!("{n}-{tag}@contoso.com"));
        let oids: Vec<String> = names.iter().map(|_| new_oid()).collect();
        let mut sessions = Vec::new();
        for (name, oid) in names.iter().zip(&oids) {
            c.principal(name, oid, "user");
            sessions.push(session(&c, name, &user_token(oid, name)));
        }
        c.admin(&format!("SELECT pgaadauth_drop_principal('{}')", names[0]));
        c.admin(&format!(
            "SELECT pgaadauth_update_principal_with_oid('{}', '{}', 'user', false, false)",
            names[1],
            new_oid()
        ));
        c.admin(&format!(
            "SECURITY LABEL FOR pgaadauth ON ROLE \"{}\" IS NULL",
            names[2]
        ));
        // Dropped and created again with the same name and object id: another role.
        c.admin(&format!("SELECT pgaadauth_drop_principal('{}')", names[3]));
        c.principal(&names[3], &oids[3], "user");
        // Flags may change, and the role be renamed, without ending a session.
        c.admin(&format!(
            "SELECT pgaadauth_update_principal_with_oid('{}', '{}', 'user', true, false)",
            names[4], oids[4]
        ));
        c.admin(&format!(
            "ALTER ROLE \"{}\" RENAME TO \"{}-now\"",
            names[5], names[5]
        ));
        let started = Instant::now();
        (sessions, started)
    };

    let (mut on, started) = run(true);
    for (client, pid) in on.iter_mut().take(4) {
        let (code, message) = client.next_error().expect("ended");
        assert_eq!(code, "57P01", "{message}");
        assert!(message.contains("is no longer bound"), "{message}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "ended within seconds"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(&c, pid) {
            assert!(Instant::now() < deadline, "pid {pid} lives on");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(
        alive(&c, &on[4].1),
        "a principal whose flags changed is not ended"
    );
    assert!(alive(&c, &on[5].1), "a renamed principal is not ended");
    assert_eq!(
        c.admin(&format!(
            "SELECT rolname FROM aad_auth_sessions() WHERE pid = {}",
            on[5].1
        )),
        "renamed-on@contoso.com-now",
        "listed under its new name"
    );
    assert_eq!(c.log().matches("aad_auth: ending session").count(), 4);

    let (off, _) = run(false);
    std::thread::sleep(Duration::from_secs(4));
    for (_, pid) in &off {
        assert!(alive(&c, pid), "revocation off: pid {pid} lives on");
    }
    assert!(alive(&c, &on[4].1));
    assert_eq!(c.log().matches("aad_auth: ending session").count(), 4);
    c.assert_no_crash();
}

#[test]
fn unlimited_lifetime_leaves_sessions_past_their_token() {
    let c = Cluster::start(Setup {
        conf: vec!["aad_auth.clock_skew = 0".into()],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("alice@contoso.com", &oid, "user");
    let exp = now() + 2;
    let (mut s, pid) = session(
        &c,
        "alice@contoso.com",
        &user_token_expiring(&oid, "alice@contoso.com", exp),
    );
    // Grace 0, so that only the setting keeps it alive.
    c.reload_with(&[("aad_auth.session_grace", "0")]);
    while now() <= exp + 3 {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(alive(&c, &pid));
    assert_eq!(s.query_one("SELECT 1"), "1");
    // Switching to token ends it (its token expired long enough ago).
    c.reload_with(&[("aad_auth.session_lifetime", "token")]);
    let (code, _) = s.next_error().expect("ended once the setting is on");
    assert_eq!(code, "57P01");
    c.assert_no_crash();
}

#[test]
fn a_hot_standby_lists_its_sessions_and_ends_those_revoked_on_the_primary() {
    let c = Cluster::start(Setup {
        conf: vec!["aad_auth.revoke_live_sessions = on".into()],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("replica-reader@contoso.com", &oid, "user");
    let standby = c.standby();
    let (mut s, pid) = session(
        &standby,
        "replica-reader@contoso.com",
        &user_token(&oid, "replica-reader@contoso.com"),
    );
    assert_eq!(
        standby.admin("SELECT pid, rolname, method FROM aad_auth_sessions()"),
        format!("{pid}|replica-reader@contoso.com|trust")
    );
    assert_eq!(c.admin("SELECT count(*) FROM aad_auth_sessions()"), "0");
    let started = Instant::now();
    c.admin("SELECT pgaadauth_drop_principal('replica-reader@contoso.com')");
    let (code, message) = s.next_error().expect("ended on the standby");
    assert_eq!(code, "57P01");
    assert!(message.contains("is no longer bound"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
    standby.assert_no_crash();
    c.assert_no_crash();
}

#[test]
fn slots_are_freed_so_sessions_after_many_sign_ins_are_still_listed_and_ended() {
    // Few slots (max_connections and the workers), many sign-ins one after another.
    let c = Cluster::start(Setup {
        conf: vec![
            "max_connections = 5".into(),
            "superuser_reserved_connections = 0".into(),
            "max_wal_senders = 0".into(),
            "wal_level = minimal".into(),
            "autovacuum_max_workers = 1".into(),
            "max_worker_processes = 4".into(),
            "aad_auth.revoke_live_sessions = on".into(),
        ],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("churn@contoso.com", &oid, "user");
    let token = user_token(&oid, "churn@contoso.com");
    // Well over the slots on every version (MaxBackends is about 11 on 15 and 16, 12 on 17 and
    // 27 on 18 here), each session gone before the next signs in.
    for _ in 0..100 {
        let (client, pid) = session(&c, "churn@contoso.com", &token);
        drop(client);
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(&c, &pid) {
            assert!(Instant::now() < deadline, "pid {pid} lives on");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let (mut last, pid) = session(&c, "churn@contoso.com", &token);
    assert_eq!(
        c.admin("SELECT pid FROM aad_auth_sessions()"),
        pid,
        "the last session is listed, and only it"
    );
    c.admin("SECURITY LABEL FOR pgaadauth ON ROLE \"churn@contoso.com\" IS NULL");
    let (code, message) = last.next_error().expect("ended");
    assert_eq!(code, "57P01");
    assert!(message.contains("is no longer bound"), "{message}");
    assert!(!c.log().contains("no free session slot"));
    c.assert_no_crash();
}

#[test]
fn with_lifetime_token_a_token_past_exp_plus_grace_is_refused_even_within_clock_skew() {
    let c = Cluster::start(Setup {
        conf: vec![
            "aad_auth.clock_skew = 300".into(),
            "aad_auth.session_grace = 0".into(),
        ],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("late@contoso.com", &oid, "user");
    let late = user_token_expiring(&oid, "late@contoso.com", now() - 60);
    // Unlimited: within clock_skew, accepted (as before).
    assert!(c.sign_in("late@contoso.com", &late).is_ok());
    // Token: the session would be ended at once, so it is not opened.
    c.reload_with(&[("aad_auth.session_lifetime", "token")]);
    let refused = c.sign_in("late@contoso.com", &late).unwrap_err();
    assert!(
        refused.contains("the access token has expired"),
        "{refused}"
    );
    // With grace, it is accepted, until exp + grace.
    c.reload_with(&[("aad_auth.session_grace", "5min")]);
    assert!(c.sign_in("late@contoso.com", &late).is_ok());
    let s = c.admin(
        "SELECT accepted, refused_by->>'expired' FROM aad_auth_sign_in_stats() WHERE rolname = 'late@contoso.com'",
    );
    assert_eq!(s, "2|1");
    c.assert_no_crash();
}
