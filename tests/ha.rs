//! Entra sign-in across a Patroni cluster and its failovers (issue 13), on loopback: one etcd
//! member and three Patroni-managed PostgreSQL nodes with aad_auth preloaded, all fetching the
//! tenant's keys from one JWKS stand-in, as real nodes share one key address (each node's own
//! fetch attempts are read from its `aad_auth_jwks_status()`).
//!
//! Patroni's own connections never meet a token: its superuser connects over the unix socket
//! (`use_unix_socket`, a `local ... peer` line aad_auth never checks), replication and pg_rewind
//! connect with SCRAM on their own `host replication` and `host all postgres` lines, where aad_auth
//! only vetoes roles bound to Entra principals. Clients use the `host all all ... trust` line that
//! aad_auth governs.
//!
//! One test, in order: principals created on the leader sign in on every node (replicas read-only)
//! within replication lag; 8 clients sign in continuously, with good tokens through a libpq
//! multi-host string with `target_session_attrs=read-write` and with wrong tokens straight to each
//! node in turn, while the leader's postmaster is killed (SIGKILL) with the JWKS stand-in down; a
//! replica is promoted, the SQL API works there (and refuses on the replicas), and the old leader
//! rejoins as a replica and signs principals in from its saved keys; then, with the clients still
//! signing in, the signing key rotates and every node picks it up with one fetch. It prints the
//! longest gap in successful sign-ins and the fetch counts, and fails if a wrong token was ever
//! accepted. Run by `make test-ha`.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SCOPE: &str = "aadha";
/// Replicas streaming from this node (Patroni names each by its node name; pg_basebackup's own
/// WAL stream, named pg_basebackup, is not a replica yet).
const STREAMING_REPLICAS: &str = "SELECT count(*) FROM pg_stat_replication \
     WHERE state = 'streaming' AND application_name LIKE 'node_'";
const SUPERUSER_PASSWORD: &str = "patroni-superuser-secret";
const REPLICATION_PASSWORD: &str = "patroni-replication-secret";

fn spawn_logged(mut cmd: Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("a log file");
    let err = out.try_clone().expect("log file");
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"))
}

/// Kills `pattern`'s processes (by command line) and stops `data`'s server when this test
/// process dies without cleaning up.
fn watchdog(pattern: &str, data: Option<&Path>) {
    let stop = data
        .map(|d| {
            format!(
                "; runuser -u postgres -- {} -D '{}' -m immediate stop",
                bindir().join("pg_ctl").display(),
                d.display()
            )
        })
        .unwrap_or_default();
    // `[x]rest` matches "xrest" but not the watching shell's own command line, which holds
    // "[x]rest".
    let mut chars = pattern.chars();
    let first = chars.next().unwrap_or('/');
    when_this_test_exits(&format!("pkill -9 -f '[{first}]{}'{stop}", chars.as_str()));
}

struct Etcd {
    child: Child,
    client_port: u16,
}

impl Etcd {
    fn start(dir: &Path) -> Etcd {
        let client_port = free_port();
        let peer_port = free_port();
        let data = dir.join("etcd");
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", "e1", "--data-dir"])
            .arg(&data)
            .arg(format!(
                "--listen-client-urls=http://127.0.0.1:{client_port}"
            ))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{client_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!("--initial-cluster=e1=http://127.0.0.1:{peer_port}"))
            .arg("--enable-v2=true");
        let child = spawn_logged(cmd, &dir.join("etcd.log"));
        watchdog(&data.display().to_string(), None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", client_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "etcd did not start: {}",
                read(&dir.join("etcd.log"))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Etcd { child, client_port }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// One Patroni-managed PostgreSQL node.
struct Node {
    name: String,
    dir: PathBuf,
    port: u16,
    config: PathBuf,
    patroni: Option<Child>,
}

impl Node {
    fn new(base: &Path, name: &str, etcd: &Etcd, jwks_uri: &str) -> Node {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).expect("node dir");
        let port = free_port();
        let api = free_port();
        let bin = bindir();
        let config = dir.join("patroni.yml");
        let yaml = format!(
            r#"scope: {SCOPE}
name: {name}
log:
  level: INFO
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
etcd:
  host: 127.0.0.1:{etcd}
  protocol: http
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    primary_start_timeout: 0
    maximum_lag_on_failover: 16777216
    postgresql:
      use_pg_rewind: true
      remove_data_directory_on_rewind_failure: true
      remove_data_directory_on_diverged_timelines: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_log_hints: "on"
  initdb:
    - encoding: UTF8
    - data-checksums
postgresql:
  listen: 127.0.0.1:{port}
  connect_address: 127.0.0.1:{port}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {dir}/pgpass
  use_unix_socket: true
  authentication:
    superuser:
      username: postgres
      password: {SUPERUSER_PASSWORD}
    replication:
      username: replicator
      password: {REPLICATION_PASSWORD}
  parameters:
    unix_socket_directories: {dir}
    shared_preload_libraries: aad_auth
    aad_auth.tenant_id: {TENANT}
    aad_auth.jwks_uri: {jwks_uri}
    fsync: "off"
    logging_collector: "on"
    log_directory: {dir}/log
    log_filename: postgresql.log
    log_line_prefix: "%m [%p] "
  pg_hba:
    - local all postgres peer
    - local replication postgres peer
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all postgres 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 trust
"#,
            etcd = etcd.client_port,
            data = dir.join("data").display(),
            bin = bin.display(),
            dir = dir.display(),
        );
        std::fs::write(&config, yaml).expect("patroni.yml");
        give_to_postgres(&dir);
        Node {
            name: name.to_owned(),
            dir,
            port,
            config,
            patroni: None,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn start(&mut self) {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", "patroni"])
            .arg(&self.config);
        self.patroni = Some(spawn_logged(cmd, &self.dir.join("patroni.log")));
        watchdog(&self.config.display().to_string(), Some(&self.data()));
    }

    /// The server's log: what it wrote before its logging collector started (Patroni keeps
    /// that in its own log), then the collector's files.
    fn server_log(&self) -> String {
        let mut all = read(&self.dir.join("patroni.log"));
        if let Ok(entries) = std::fs::read_dir(self.dir.join("log")) {
            let mut files: Vec<PathBuf> =
                entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            files.sort();
            for f in files {
                all.push_str(&read(&f));
            }
        }
        all
    }

    fn diagnostics(&self) -> String {
        format!(
            "--- {} patroni.log (tail)\n{}\n--- server log (tail)\n{}",
            self.name,
            tail(&read(&self.dir.join("patroni.log")), 40),
            tail(&self.server_log(), 40)
        )
    }

    /// SQL as the superuser over the unix socket, as Patroni itself connects.
    fn sql(&self, sql: &str) -> Result<String, String> {
        psql_as_os_postgres(&self.dir, self.port, sql)
    }

    fn in_recovery(&self) -> Option<bool> {
        match self.sql("SELECT pg_is_in_recovery()").ok()?.as_str() {
            "t" => Some(true),
            "f" => Some(false),
            _ => None,
        }
    }

    /// Key fetch attempts this node's server made since it started, and its key generation
    /// (None while the extension's functions are not there yet).
    fn try_fetches(&self) -> Option<(u64, u64)> {
        let row = self
            .sql("SELECT fetches || ' ' || generation FROM aad_auth_jwks_status()")
            .ok()?;
        let mut it = row.split(' ').map(|n| n.parse().ok());
        Some((it.next()??, it.next()??))
    }

    fn fetches(&self) -> (u64, u64) {
        self.try_fetches().unwrap_or_else(|| {
            panic!(
                "{}: aad_auth_jwks_status()\n{}",
                self.name,
                self.diagnostics()
            )
        })
    }

    fn postmaster_pid(&self) -> Option<i32> {
        read(&self.data().join("postmaster.pid"))
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// A token sign-in over TCP on the governed line: `current_user` and whether the session is
    /// read-only, or psql's error.
    fn sign_in(&self, role: &str, token: &str) -> Result<String, String> {
        outcome(psql_at(
            &format!(
                "host=127.0.0.1 port={} dbname=postgres user={role} connect_timeout=5",
                self.port
            ),
            token,
            "SELECT current_user || ' ' || pg_is_in_recovery()",
        ))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-TERM", "-f", &self.config.display().to_string()])
            .status();
        if let Some(mut child) = self.patroni.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bindir().join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn wait_until(what: &str, secs: u64, nodes: &[&Node], mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > Duration::from_secs(secs) {
            let diag: Vec<String> = nodes.iter().map(|n| n.diagnostics()).collect();
            panic!("waited {secs} s for {what}\n{}", diag.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

fn leader(nodes: &[Node]) -> Option<usize> {
    let leaders: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].in_recovery() == Some(false))
        .collect();
    (leaders.len() == 1).then(|| leaders[0])
}

fn token_for(key: &TestKey, oid: &str, upn: &str) -> String {
    mint(key, &header(&key.kid), &Claims::user(TENANT, oid, upn))
}

/// What the continuous sign-ins saw.
#[derive(Default)]
struct LoadReport {
    /// Good tokens through the multi-host string: signed in on the read-write node.
    successes: Vec<Instant>,
    /// Good tokens that found no read-write node (during the failover).
    failures: usize,
    /// Wrong tokens sent straight to one node: accepted (never), refused by the node, or not
    /// answered (the node was down).
    wrong_accepted: Vec<String>,
    wrong_refused: usize,
    wrong_unanswered: usize,
}

/// Removes the test's directory when the test passes (dropped after the nodes and etcd).
struct RemoveOnSuccess(PathBuf);

impl Drop for RemoveOnSuccess {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn sign_in_load(
    conninfo: String,
    direct: Vec<String>,
    good: Arc<Mutex<String>>,
    bad: String,
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    worker: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut attempt = worker;
        while !stop.load(Ordering::Relaxed) {
            attempt += 1;
            let wrong = attempt.is_multiple_of(4);
            let (target, token) = if wrong {
                (direct[attempt / 4 % direct.len()].clone(), bad.clone())
            } else {
                (conninfo.clone(), good.lock().unwrap().clone())
            };
            let out = psql_at(&target, &token, "SELECT pg_is_in_recovery()");
            let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            let mut r = report.lock().unwrap();
            match (wrong, out.status.success()) {
                (true, true) => r.wrong_accepted.push(format!("{target}: {stdout}")),
                (true, false) if stderr.contains("authentication failed") => r.wrong_refused += 1,
                (true, false) => r.wrong_unanswered += 1,
                (false, true) if stdout == "f" => r.successes.push(Instant::now()),
                (false, _) => r.failures += 1,
            }
            drop(r);
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

#[test]
fn entra_sign_in_survives_a_patroni_failover() {
    assert!(
        is_root(),
        "the HA test runs Patroni and PostgreSQL as the postgres user: run as root"
    );
    let base = fresh_dir("ha");
    let _cleanup = RemoveOnSuccess(base.clone());
    give_to_postgres(&base);
    let etcd = Etcd::start(&base);
    let keys = JwksServer::start(jwks(&[key()]));
    let mut nodes: Vec<Node> = ["node1", "node2", "node3"]
        .iter()
        .map(|n| Node::new(&base, n, &etcd, &keys.uri()))
        .collect();
    let all = |nodes: &[Node]| -> Vec<String> { nodes.iter().map(|n| n.diagnostics()).collect() };

    // 1. Bootstrap: node1 becomes the leader, then the others join as replicas.
    let started = Instant::now();
    nodes[0].start();
    wait_until("node1 to lead", 90, &[&nodes[0]], || {
        nodes[0].in_recovery() == Some(false)
    });
    nodes[1].start();
    nodes[2].start();
    wait_until(
        "two streaming replicas",
        120,
        &nodes.iter().collect::<Vec<_>>(),
        || {
            nodes[0].sql(STREAMING_REPLICAS).as_deref() == Ok("2")
                && nodes[1..].iter().all(|n| n.in_recovery() == Some(true))
        },
    );
    eprintln!(
        "ha: three nodes up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Each node's own first fetch, before any sign-in (which could otherwise ask for one).
    nodes[0]
        .sql("CREATE EXTENSION aad_auth")
        .expect("CREATE EXTENSION on the leader");
    wait_until(
        "every node's keys",
        30,
        &nodes.iter().collect::<Vec<_>>(),
        || {
            nodes.iter().all(|n| {
                n.try_fetches()
                    .is_some_and(|(_, generation)| generation > 0)
            })
        },
    );
    for n in &nodes {
        let log = n.server_log();
        assert!(
            log.contains("aad_auth: governs") && log.contains("host all all 127.0.0.1/32 trust"),
            "{}: aad_auth governs the clients' trust line Patroni wrote:\n{}",
            n.name,
            n.diagnostics()
        );
    }

    // 2. Principals made on the leader sign in on every node, replicas read-only.
    let alice = new_oid();
    let svc = new_oid();
    nodes[0]
        .sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('alice@contoso.com', '{alice}', 'user', false, false); \
             SELECT pgaadauth_create_principal_with_oid('svc-app', '{svc}', 'service', false, false)"
        ))
        .expect("principals on the leader");
    let alice_token = token_for(key(), &alice, "alice@contoso.com");
    let svc_token = mint(
        key(),
        &header(&key().kid),
        &Claims::app(TENANT, &svc, &new_oid()),
    );
    for n in &nodes {
        let lag = wait_until("the principal to replicate", 30, &[n], || {
            n.sign_in("alice@contoso.com", &alice_token).is_ok()
        });
        let standby = n.in_recovery() == Some(true);
        eprintln!(
            "ha: alice signs in on {} ({}) {:.2} s after her creation on the leader",
            n.name,
            if standby { "replica" } else { "leader" },
            lag.as_secs_f64()
        );
        assert_eq!(
            n.sign_in("alice@contoso.com", &alice_token).as_deref(),
            Ok(format!("alice@contoso.com {standby}").as_str())
        );
        assert!(
            n.sign_in("svc-app", &svc_token).is_ok(),
            "{}: the service principal signs in",
            n.name
        );
        let wrong = n.sign_in("alice@contoso.com", &svc_token);
        assert!(
            wrong
                .as_ref()
                .is_err_and(|e| e.contains("authentication failed")),
            "{}: another principal's token is refused: {wrong:?}",
            n.name
        );
        if standby {
            let write = n.sql("CREATE TABLE t(x int)");
            assert!(
                write.is_err_and(|e| e.contains("read-only")),
                "{}: replicas are read-only",
                n.name
            );
        }
    }
    let start_fetches: Vec<u64> = nodes.iter().map(|n| n.fetches().0).collect();
    eprintln!("ha: key fetches per node at start-up: {start_fetches:?}");
    assert!(
        start_fetches.iter().all(|&f| f == 1),
        "one fetch per node at start-up: {start_fetches:?}"
    );

    // 3. Continuous sign-ins: good tokens through a multi-host string, wrong tokens (another
    // object's) straight to each node in turn, so that every node, the new leader included,
    // is tried with them throughout.
    let ports: Vec<String> = nodes.iter().map(|n| n.port.to_string()).collect();
    let conninfo = format!(
        "host=127.0.0.1,127.0.0.1,127.0.0.1 port={} dbname=postgres user=alice@contoso.com \
         target_session_attrs=read-write connect_timeout=2",
        ports.join(",")
    );
    let direct: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "host=127.0.0.1 port={p} dbname=postgres user=alice@contoso.com connect_timeout=2"
            )
        })
        .collect();
    let wrong_token = token_for(key(), &new_oid(), "alice@contoso.com");
    let good = Arc::new(Mutex::new(alice_token.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let load_started = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            sign_in_load(
                conninfo.clone(),
                direct.clone(),
                good.clone(),
                wrong_token.clone(),
                stop.clone(),
                report.clone(),
                w,
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));

    // The key stand-in goes down (HTTP 500), then the leader's postmaster is killed.
    keys.set_mode(Mode::Fail);
    let requests_before = keys.requests();
    let old = leader(&nodes).expect("one leader before the kill");
    let others: Vec<usize> = (0..nodes.len()).filter(|&i| i != old).collect();
    let others_fetches: Vec<u64> = others.iter().map(|&i| nodes[i].fetches().0).collect();
    let old_pid = nodes[old]
        .postmaster_pid()
        .expect("the leader's postmaster pid");
    let killed = Instant::now();
    let ok = Command::new("kill")
        .args(["-9", &old_pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let promoted = wait_until(
        "a replica to be promoted",
        90,
        &nodes.iter().collect::<Vec<_>>(),
        || leader(&nodes).is_some_and(|i| i != old),
    );
    let new = leader(&nodes).expect("a new leader");
    eprintln!(
        "ha: {} promoted {:.1} s after the leader's postmaster was killed",
        nodes[new].name,
        promoted.as_secs_f64()
    );
    wait_until(
        "the old leader to rejoin as a replica",
        120,
        &nodes.iter().collect::<Vec<_>>(),
        || {
            nodes[old].in_recovery() == Some(true)
                && nodes[new].sql(STREAMING_REPLICAS).as_deref() == Ok("2")
        },
    );
    eprintln!(
        "ha: {} streaming from {} {:.1} s after the kill",
        nodes[old].name,
        nodes[new].name,
        killed.elapsed().as_secs_f64()
    );
    assert_ne!(
        nodes[old].postmaster_pid(),
        Some(old_pid),
        "the old leader's server was restarted"
    );

    // The old leader, restarted while the key stand-in was down, signs in from its saved keys.
    assert_eq!(
        nodes[old]
            .sign_in("alice@contoso.com", &alice_token)
            .as_deref(),
        Ok("alice@contoso.com true"),
        "{}",
        nodes[old].diagnostics()
    );
    assert!(
        nodes[old]
            .server_log()
            .contains("signing keys loaded from aad_auth_jwks.json"),
        "{}: its saved keys were loaded\n{}",
        nodes[old].name,
        nodes[old].diagnostics()
    );
    // No fetch storm: the nodes that stayed up did not fetch; the restarted one tried once per
    // start (its server may have started twice: as a standby, then after pg_rewind).
    let after: Vec<u64> = others.iter().map(|&i| nodes[i].fetches().0).collect();
    let old_attempts = nodes[old].fetches().0;
    let requests = keys.requests() - requests_before;
    eprintln!(
        "ha: key fetch attempts during the failover (stand-in down): {} since its restart {old_attempts}, \
         the others {:?}; requests the stand-in saw {requests}",
        nodes[old].name,
        after.iter().zip(&others_fetches).map(|(a, b)| a - b).collect::<Vec<_>>()
    );
    assert_eq!(
        after, others_fetches,
        "the nodes that stayed up fetched nothing"
    );
    assert!(
        old_attempts <= 1 && requests <= 2,
        "at most one attempt per start: {old_attempts}, {requests}"
    );

    // 4. The SQL API works on the new leader and refuses on the replicas; what it makes signs in
    // on every node.
    keys.set_mode(Mode::Serve);
    let bob = new_oid();
    nodes[new]
        .sql(&format!(
            "SELECT pgaadauth_create_principal_with_oid('bob@contoso.com', '{bob}', 'user', false, false)"
        ))
        .expect("the SQL API on the new leader");
    let bob_token = token_for(key(), &bob, "bob@contoso.com");
    for n in &nodes {
        wait_until("bob to replicate", 30, &[n], || {
            n.sign_in("bob@contoso.com", &bob_token).is_ok()
        });
    }
    let write_on_old = nodes[old].sql(&format!(
        "SELECT pgaadauth_create_principal_with_oid('eve@contoso.com', '{}', 'user', false, false)",
        new_oid()
    ));
    assert!(
        write_on_old
            .as_ref()
            .is_err_and(|e| e
                .contains("cannot execute pgaadauth_create_principal_with_oid on a hot standby")),
        "the old leader is a standby now, and the SQL API says so: {write_on_old:?}"
    );

    // 5. The signing key rotates while the clients go on signing in. First the restarted node's
    // retry after its failed fetch (60 s after it, scheduled) must have happened, so that every
    // fetch counted below is one the rotation caused.
    wait_until("the restarted node's retry", 90, &[&nodes[old]], || {
        nodes[old]
            .sql("SELECT last_success IS NOT NULL AND last_success >= coalesce(last_failure, last_success) FROM aad_auth_jwks_status()")
            .as_deref()
            == Ok("t")
    });
    let rotated = TestKey::generate("ha-rotated-key");
    keys.set_body(jwks(&[key(), &rotated]));
    let pids: Vec<Option<i32>> = nodes.iter().map(|n| n.postmaster_pid()).collect();
    let before: Vec<u64> = nodes.iter().map(|n| n.fetches().0).collect();
    let new_token = token_for(&rotated, &alice, "alice@contoso.com");
    *good.lock().unwrap() = new_token.clone();
    // and a burst of unknown-key sign-ins straight to every node, 4 at once on each
    let burst: Vec<_> = nodes
        .iter()
        .flat_map(|n| {
            let port = n.port;
            let token = new_token.clone();
            (0..4).map(move |_| {
                let token = token.clone();
                std::thread::spawn(move || {
                    let out = psql_at(
                        &format!(
                            "host=127.0.0.1 port={port} dbname=postgres user=alice@contoso.com"
                        ),
                        &token,
                        "SELECT current_user",
                    );
                    (
                        port,
                        out.status.success(),
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    )
                })
            })
        })
        .collect();
    for b in burst {
        let (port, ok, err) = b.join().expect("a burst sign-in");
        assert!(
            ok,
            "a token of the new key on port {port}: {err}\n{}",
            all(&nodes).join("\n")
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a load worker");
    }
    let load_ended = Instant::now();
    let rotation: Vec<u64> = nodes
        .iter()
        .zip(&before)
        .map(|(n, b)| n.fetches().0 - b)
        .collect();
    eprintln!("ha: key fetches per node for the rotation (4 concurrent unknown-key sign-ins each, and the clients'): {rotation:?}");
    assert!(
        rotation.iter().all(|&d| d == 1),
        "one fetch per node per rotation: {rotation:?}"
    );
    assert_eq!(
        pids,
        nodes.iter().map(|n| n.postmaster_pid()).collect::<Vec<_>>(),
        "no restart"
    );

    // The clients' record.
    let r = report.lock().unwrap();
    let mut times = r.successes.clone();
    times.sort();
    let mut gap = Duration::ZERO;
    let mut prev = load_started;
    for t in times.iter().chain(std::iter::once(&load_ended)) {
        gap = gap.max(t.duration_since(prev));
        prev = *t;
    }
    let after_kill = times.iter().filter(|t| **t > killed).count();
    eprintln!(
        "ha: load over {:.0} s: {} good sign-ins ({} after the kill), {} good attempts with no read-write node; \
         wrong tokens: {} refused, {} unanswered (node down), {} accepted; longest gap in successful sign-ins {:.2} s",
        load_ended.duration_since(load_started).as_secs_f64(),
        times.len(),
        after_kill,
        r.failures,
        r.wrong_refused,
        r.wrong_unanswered,
        r.wrong_accepted.len(),
        gap.as_secs_f64()
    );
    assert!(
        r.wrong_accepted.is_empty(),
        "a wrong token was accepted: {:?}",
        r.wrong_accepted
    );
    assert!(
        r.wrong_refused >= 30,
        "wrong tokens were tried on every node: {}",
        r.wrong_refused
    );
    assert!(after_kill > 0, "sign-ins succeeded after the failover");
    drop(r);

    // Patroni's own connections (superuser over the socket, replication and pg_rewind with
    // SCRAM) were never refused, and no token reached a log.
    for n in &nodes {
        let log = n.server_log();
        for line in log.lines().filter(|l| l.contains("FATAL")) {
            assert!(
                !line.contains("\"postgres\"") && !line.contains("\"replicator\""),
                "{}: Patroni's own role refused: {line}",
                n.name
            );
        }
        for token in [
            &alice_token,
            &svc_token,
            &wrong_token,
            &bob_token,
            &new_token,
        ] {
            let signature = token.rsplit('.').next().unwrap_or_default();
            assert!(!log.contains(signature), "{}: a token in the log", n.name);
        }
    }
    drop(nodes);
    drop(etcd);
}
