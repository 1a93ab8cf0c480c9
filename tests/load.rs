//! End to end under load and faults: many sign-ins at once, many refusals, and the key
//! refresher killed and restarted while sign-ins go on.

mod common;

use common::*;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// The postmaster's pid, from postmaster.pid.
fn postmaster_pid(c: &Cluster) -> u32 {
    let text = std::fs::read_to_string(c.data().join("postmaster.pid")).expect("postmaster.pid");
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid")
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn worker_pid(c: &Cluster) -> String {
    c.admin("SELECT coalesce(worker_pid::text, '') FROM aad_auth_jwks_status()")
}

#[test]
fn sixty_four_concurrent_token_sign_ins_all_succeed() {
    let c = Cluster::start(Setup {
        conf: vec!["max_connections = 100".into()],
        ..Setup::default()
    });
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("crowd@contoso.com", &oid, "user");
    let token = user_token(&oid, "crowd@contoso.com");
    let ready = Arc::new(Barrier::new(64));
    let done = Arc::new(Barrier::new(64));
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let (port, token, ready, done) = (c.port, token.clone(), ready.clone(), done.clone());
            std::thread::spawn(move || {
                let mut client = RawClient::connect(port, "crowd@contoso.com", "postgres");
                client.expect_password_request();
                ready.wait(); // all 64 are at the password prompt: answer together
                client.send_password(token.as_bytes());
                let answer = client.answer();
                let user = (answer == Answer::Ok).then(|| client.query_one("SELECT current_user"));
                done.wait(); // and all 64 sessions are open at once
                (answer, user)
            })
        })
        .collect();
    for t in threads {
        let (answer, user) = t.join().unwrap();
        assert_eq!(answer, Answer::Ok);
        assert_eq!(user.as_deref(), Some("crowd@contoso.com"));
    }
    c.assert_no_crash();
}

#[test]
fn a_thousand_refusals_leave_the_server_healthy() {
    let c = Cluster::start(Setup::default());
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("target@contoso.com", &oid, "user");
    c.admin("CREATE ROLE plain_target LOGIN PASSWORD 'right'");
    // warm up, then measure the long-lived processes
    assert!(c
        .sign_in("target@contoso.com", &user_token(&oid, "t"))
        .is_ok());
    let postmaster = postmaster_pid(&c);
    let worker: u32 = worker_pid(&c).parse().expect("worker pid");
    let before = (
        open_fds(postmaster),
        rss_kb(postmaster),
        open_fds(worker),
        rss_kb(worker),
    );

    let bad_tokens: Vec<Vec<u8>> = vec![
        user_token(&new_oid(), "mallory@contoso.com").into_bytes(),
        mint(
            other_key(),
            &header(&other_key().kid),
            &Claims::user(TENANT, &oid, "t"),
        )
        .into_bytes(),
        mint(
            key(),
            &header(&key().kid),
            &with(Claims::user(TENANT, &oid, "t"), "aud", json!("api://x")),
        )
        .into_bytes(),
        b"not a token".to_vec(),
        vec![0xff; 3000],
        Vec::new(),
    ];
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (port, bad) = (c.port, bad_tokens.clone());
            std::thread::spawn(move || {
                for i in 0..250 {
                    let role = if i % 5 == 4 {
                        "plain_target"
                    } else {
                        "target@contoso.com"
                    };
                    let answer = RawClient::sign_in(port, role, &bad[(i + t) % bad.len()]);
                    assert!(matches!(answer, Answer::Error { .. }), "{answer:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for _ in 0..10 {
        assert_eq!(
            c.sign_in("target@contoso.com", &user_token(&oid, "t"))
                .unwrap(),
            "target@contoso.com"
        );
        assert_eq!(c.sign_in("plain_target", "right").unwrap(), "plain_target");
    }
    let after = (
        open_fds(postmaster),
        rss_kb(postmaster),
        open_fds(worker),
        rss_kb(worker),
    );
    assert_eq!(after.0, before.0, "postmaster file descriptors");
    assert_eq!(after.2, before.2, "worker file descriptors");
    assert!(
        after.1 <= before.1 + 1024,
        "postmaster RSS grew from {} kB to {} kB",
        before.1,
        after.1
    );
    assert!(
        after.3 <= before.3 + 1024,
        "worker RSS grew from {} kB to {} kB",
        before.3,
        after.3
    );
    c.assert_no_crash();
}

#[test]
fn sign_ins_keep_working_while_the_key_refresher_is_killed_and_restarted() {
    let server = JwksServer::start(jwks(&[key()]));
    let c = Cluster::start(fetching_from(
        &server,
        &["aad_auth.jwks_min_refresh_interval = '1s'"],
    ));
    c.admin("CREATE EXTENSION aad_auth");
    let oid = new_oid();
    c.principal("steady@contoso.com", &oid, "user");
    c.wait_for("SELECT generation > 0 FROM aad_auth_jwks_status()", "t", 10);
    let token = user_token(&oid, "steady@contoso.com");
    let first = worker_pid(&c);
    assert!(!first.is_empty(), "no key refresher running");

    // SIGTERM, as an operator's `kill` (the worker has no database session to terminate)
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &first])
        .status()
        .unwrap();
    assert!(killed.success());
    // while it is gone, cached keys keep serving sign-ins
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut sign_ins = 0;
    let second = loop {
        assert_eq!(
            c.sign_in("steady@contoso.com", &token).unwrap(),
            "steady@contoso.com"
        );
        sign_ins += 1;
        let now = worker_pid(&c);
        if !now.is_empty() && now != first {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the key refresher was not restarted"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(sign_ins > 1);
    assert_ne!(first, second);
    // and the new worker serves refreshes: a rotated key is picked up
    server.set_body(jwks(&[key(), other_key()]));
    std::thread::sleep(Duration::from_millis(1100));
    let rotated = mint(
        other_key(),
        &header(&other_key().kid),
        &Claims::user(TENANT, &oid, "s"),
    );
    assert_eq!(
        c.sign_in("steady@contoso.com", &rotated).unwrap(),
        "steady@contoso.com"
    );
    c.assert_no_crash();
}
