//! Connection poolers from Debian (PgBouncer 1.18, Pgpool-II 4.3.5) in front of a cluster with
//! aad_auth: the limits and failures that docs/poolers.md reports, pinned.
//!
//! No setup both passes Entra ID tokens through and is safe: PgBouncer forwards a token only with
//! `auth_type = pam`, and then hands pooled server connections to clients whose password the
//! server never saw; Pgpool-II forwards tokens of at most 1,023 bytes (Entra ID's are longer), and
//! with its connection cache keeps admitting an expired token. These tests pin that, so that a
//! newer pooler that changes it is noticed.
//!
//! The poolers run as `postgres` on free loopback ports, with their files in a directory of their
//! own; each is killed (its whole process group) on drop. Tests skip, saying so, when a pooler is
//! not installed (`apt-get install pgbouncer pgpool2`). The PgBouncer PAM tests need the PAM
//! service `/etc/pam.d/pgbouncer`: run as root, they create it (pam_permit) for the duration and
//! remove it afterwards; an existing file with other content is left alone and the tests skip.

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";
const PGPOOL: &str = "/usr/sbin/pgpool";

/// Whether `program` is installed; says so when it is not.
fn installed(program: &str, package: &str) -> bool {
    if Path::new(program).exists() {
        return true;
    }
    eprintln!("SKIPPED: {program} is not installed (apt-get install {package})");
    false
}

fn postgres_id(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the postgres user")
}

/// A pooler running as `postgres` in its own process group, with its files in its own directory.
/// Drop kills the group (Pgpool-II forks children); a watchdog kills it if the test process dies.
struct Pooler {
    child: Child,
    dir: PathBuf,
    port: u16,
    log: PathBuf,
}

impl Pooler {
    fn spawn(dir: PathBuf, port: u16, program: &str, args: &[&str]) -> Pooler {
        give_to_postgres(&dir);
        let log = dir.join("pooler.log");
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .process_group(0);
        if is_root() {
            cmd.gid(postgres_id("-g")).uid(postgres_id("-u"));
        }
        let child = cmd.spawn().expect("start pooler");
        let pooler = Pooler {
            child,
            dir,
            port,
            log,
        };
        pooler.watchdog();
        pooler.wait_listening();
        pooler
    }

    fn watchdog(&self) {
        when_this_test_exits(&format!("kill -KILL -- -{} 2>/dev/null", self.child.id()));
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the pooler did not listen on {}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Pgpool-II listens before its children are all forked.
        std::thread::sleep(Duration::from_millis(300));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// psql through the pooler: `current_user`, or psql's error text.
    fn psql_sign_in(&self, role: &str, password: &str) -> Result<String, String> {
        let out = Command::new(psql())
            .args(["-X", "-A", "-t", "-w", "-c", "SELECT current_user"])
            .arg(format!(
                "host=127.0.0.1 port={} dbname=appdb user='{}'",
                self.port,
                role.replace('\'', "\\'")
            ))
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "20")
            .env_remove("PGSERVICE")
            .output()
            .expect("psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Signs in over the wire and runs `SELECT current_user`.
    fn sign_in(&self, role: &str, password: &[u8]) -> Result<String, String> {
        sign_in_and_query(self.port, role, password)
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-INT", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Pgpool-II's children may outlive the parent: kill the whole group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("pooler files kept for inspection: {}", self.dir.display());
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write pooler file");
    path.display().to_string()
}

/// PgBouncer in front of `c`'s database `appdb`, session pooling, with more `[pgbouncer]` lines.
fn pgbouncer(c: &Cluster, extra: &str) -> Pooler {
    let dir = fresh_dir("pgbouncer");
    let port = free_port();
    let ini = format!(
        "[databases]\n\
         appdb = host=127.0.0.1 port={pg} dbname=appdb\n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         pidfile = {dir}/pgbouncer.pid\n\
         pool_mode = session\n\
         query_wait_timeout = 5\n\
         {extra}\n",
        pg = c.port,
        dir = dir.display(),
    );
    let ini = write(&dir, "pgbouncer.ini", &ini);
    Pooler::spawn(dir, port, PGBOUNCER, &[&ini])
}

/// Pgpool-II in raw mode in front of `c`, without pool_passwd or pool_hba, with more settings.
fn pgpool(c: &Cluster, extra: &str) -> Pooler {
    let dir = fresh_dir("pgpool");
    let port = free_port();
    let conf = format!(
        "backend_clustering_mode = 'raw'\n\
         listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = '{dir}'\n\
         pcp_listen_addresses = ''\n\
         pcp_port = {pcp}\n\
         pcp_socket_dir = '{dir}'\n\
         backend_hostname0 = '127.0.0.1'\n\
         backend_port0 = {pg}\n\
         backend_weight0 = 1\n\
         backend_flag0 = 'DISALLOW_TO_FAILOVER'\n\
         enable_pool_hba = off\n\
         pool_passwd = ''\n\
         pid_file_name = '{dir}/pgpool.pid'\n\
         logdir = '{dir}'\n\
         health_check_period = 0\n\
         sr_check_period = 0\n\
         load_balance_mode = off\n\
         failover_on_backend_error = off\n\
         log_destination = 'stderr'\n\
         {extra}\n",
        pcp = free_port(),
        pg = c.port,
        dir = dir.display(),
    );
    let conf = write(&dir, "pgpool.conf", &conf);
    let pcp = write(&dir, "pcp.conf", "");
    Pooler::spawn(dir, port, PGPOOL, &["-n", "-f", &conf, "-F", &pcp])
}

/// A cluster with aad_auth and the database `appdb`: Pgpool-II never caches connections to
/// `postgres` (nor template0, template1, regression), so the tests use another database.
fn cluster() -> Cluster {
    let c = Cluster::start(Setup::default());
    c.admin("CREATE EXTENSION aad_auth");
    c.admin("CREATE DATABASE appdb");
    c
}

/// The token sign-ins the server accepted so far (aad_auth.log_logins is on by default).
fn accepted(c: &Cluster) -> usize {
    c.log().matches("aad_auth: sign-in accepted").count()
}

/// The fewest claims aad_auth needs for a user token (Entra ID's tokens carry many more): the
/// only way to get a token under Pgpool-II's limit. `appid` stays: without it (or `azp`) the
/// token is an ID token, which aad_auth refuses.
fn short_claims(oid: &str) -> Value {
    let mut claims = Claims::user(TENANT, oid, "u@contoso.com");
    for name in [
        "iat",
        "nbf",
        "amr",
        "appidacr",
        "name",
        "scp",
        "sub",
        "unique_name",
        "upn",
        "ver",
    ] {
        claims = with(claims, name, Value::Null);
    }
    claims
}

/// A valid user token for `oid` of exactly `len` bytes (at least about 830).
fn token_of_len(oid: &str, len: usize) -> String {
    let padded = |pad: usize| {
        let claims = with(short_claims(oid), "padding", json!("x".repeat(pad)));
        mint(key(), &header(&key().kid), &claims)
    };
    let base = padded(0).len();
    assert!(len >= base, "the shortest padded token is {base} bytes");
    let mut pad = (len - base).saturating_sub(8) * 3 / 4;
    loop {
        let t = padded(pad);
        if t.len() == len {
            return t;
        }
        assert!(t.len() < len, "no token of exactly {len} bytes");
        pad += 1;
    }
}

/// A short user token that expires `secs` seconds from now (negative: expired).
fn token_expiring_in(oid: &str, secs: i64) -> String {
    let claims = with(short_claims(oid), "exp", json!(now() + secs));
    mint(key(), &header(&key().kid), &claims)
}

fn error_text(body: &[u8]) -> String {
    body.split(|&b| b == 0)
        .filter(|f| matches!(f.first(), Some(b'M') | Some(b'D')))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Signs in (sending the password if asked for one), runs `SELECT current_user` and terminates
/// cleanly (Pgpool-II caches a backend only after a Terminate): the answer, or the first error's
/// message and detail.
fn sign_in_and_query(port: u16, role: &str, password: &[u8]) -> Result<String, String> {
    let mut c = RawClient::connect(port, role, "appdb");
    loop {
        match c.read() {
            Some((b'R', b)) if b == 3u32.to_be_bytes() => c.send_password(password),
            Some((b'E', b)) => return Err(error_text(&b)),
            Some((b'Z', _)) => break,
            Some(_) => {}
            None => return Err("closed".into()),
        }
    }
    c.send(b'Q', b"SELECT current_user\0");
    let mut value = None;
    loop {
        match c.read() {
            Some((b'D', b)) => {
                let len = i32::from_be_bytes([b[2], b[3], b[4], b[5]]).max(0) as usize;
                value = Some(String::from_utf8_lossy(&b[6..6 + len]).into_owned());
            }
            Some((b'E', b)) => return Err(error_text(&b)),
            Some((b'Z', _)) => {
                c.send(b'X', b"");
                return value.ok_or_else(|| "no row".into());
            }
            Some(_) => {}
            None => return Err("closed".into()),
        }
    }
}

#[track_caller]
fn assert_err_contains(r: Result<String, String>, needle: &str) {
    match r {
        Err(e) => assert!(e.contains(needle), "expected {needle:?} in: {e}"),
        Ok(v) => panic!("expected a refusal containing {needle:?}, got in as {v}"),
    }
}

// ---------------------------------------------------------------------------------------------
// PAM service for PgBouncer (its service name is compiled in: "pgbouncer")

const PAM_SERVICE: &str = "/etc/pam.d/pgbouncer";

/// Whether the tests may create a PAM service that accepts every password: on CI (a throwaway
/// machine), or when asked with AAD_TEST_PAM=1.
fn may_change_pam() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("AAD_TEST_PAM").is_ok_and(|v| v == "1")
}
const PAM_PERMIT: &str = "auth required pam_permit.so\naccount required pam_permit.so\n";

static PAM_USERS: Mutex<usize> = Mutex::new(0);
static PAM_CREATED: AtomicBool = AtomicBool::new(false);

/// `/etc/pam.d/pgbouncer` accepting every password, while held; created (as root) if missing
/// and removed again by the last holder. None (and a message) when it cannot be had.
struct PamPermit;

impl PamPermit {
    fn get() -> Option<PamPermit> {
        let mut users = PAM_USERS.lock().unwrap_or_else(|e| e.into_inner());
        match std::fs::read_to_string(PAM_SERVICE) {
            Ok(text) if text == PAM_PERMIT => {}
            Ok(_) => {
                eprintln!("SKIPPED: {PAM_SERVICE} exists with other content; left alone");
                return None;
            }
            Err(_) if is_root() && may_change_pam() => {
                std::fs::write(PAM_SERVICE, PAM_PERMIT).expect("write the PAM service");
                PAM_CREATED.store(true, Ordering::SeqCst);
            }
            Err(_) if is_root() => {
                eprintln!(
                    "SKIPPED: {PAM_SERVICE} is missing; set AAD_TEST_PAM=1 (CI=true does the same) to let the test \
                     create it for its duration (any PgBouncer using PAM here would then accept every password)"
                );
                return None;
            }
            Err(_) => {
                eprintln!("SKIPPED: {PAM_SERVICE} is missing and only root may create it");
                return None;
            }
        }
        *users += 1;
        Some(PamPermit)
    }
}

impl Drop for PamPermit {
    fn drop(&mut self) {
        let mut users = PAM_USERS.lock().unwrap_or_else(|e| e.into_inner());
        *users -= 1;
        if *users == 0 && PAM_CREATED.swap(false, Ordering::SeqCst) {
            let _ = std::fs::remove_file(PAM_SERVICE);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PgBouncer

/// auth_type = pam: PgBouncer checks the password with PAM (pam_permit accepts anything: no PAM
/// module can check a token, as PAM sees only its first 511 bytes) and uses the last password
/// PAM accepted for the role to open server connections. A pooled server connection is handed
/// to any later client of the role without the server checking anything: a wrong password, an
/// expired token, or an ordinary role's wrong password all get in.
#[test]
fn pgbouncer_pam_hands_a_pooled_connection_to_any_password() {
    if !installed(PGBOUNCER, "pgbouncer") {
        return;
    }
    let Some(_pam) = PamPermit::get() else { return };
    let c = cluster();
    c.reload_with(&[("aad_auth.clock_skew", "0")]);
    let (alice, bob) = ("alice@contoso.com", "bob@contoso.com");
    let oid = new_oid();
    c.principal(alice, &oid, "user");
    c.principal(bob, &new_oid(), "user");
    c.admin("CREATE ROLE plainrole LOGIN PASSWORD 'secret-pw'");
    let p = pgbouncer(&c, "auth_type = pam");

    // The token reaches the server, which checks it: 1 accepted sign-in.
    let token = token_expiring_in(&oid, 3);
    let before = accepted(&c);
    assert_eq!(p.sign_in(alice, token.as_bytes()).unwrap(), alice);
    assert_eq!(accepted(&c), before + 1);

    // A client with no token at all gets the pooled connection: the server sees nothing.
    assert_eq!(p.sign_in(alice, b"not a token").unwrap(), alice);
    // The same after the token has expired.
    std::thread::sleep(Duration::from_secs(4));
    assert_err_contains(c.sign_in(alice, &token), "expired");
    assert_eq!(p.sign_in(alice, token.as_bytes()).unwrap(), alice);
    assert_eq!(
        accepted(&c),
        before + 1,
        "the server checked a reused connection"
    );

    // Ordinary roles: a correct password opens the server connection, then any password will do.
    assert_eq!(p.sign_in("plainrole", b"secret-pw").unwrap(), "plainrole");
    assert_eq!(p.sign_in("plainrole", b"wrong").unwrap(), "plainrole");

    // Another role has its own pool: a new server connection, which the server checks.
    assert_err_contains(
        p.sign_in(bob, token.as_bytes()),
        "Microsoft Entra ID authentication failed",
    );
    // psql through it, too.
    assert_eq!(p.psql_sign_in(alice, "anything").unwrap(), alice);
}

/// auth_type = pam with server_lifetime = 0 (every server connection used once): the server
/// checks each sign-in, but PgBouncer keeps the password in a cut buffer: tokens of 2,048 bytes
/// or more reach the server cut to 2,047 and are refused; past pkt_buf (4,096 by default) the
/// password packet is refused by PgBouncer itself.
#[test]
fn pgbouncer_pam_cuts_tokens_to_2047_bytes() {
    if !installed(PGBOUNCER, "pgbouncer") {
        return;
    }
    let Some(_pam) = PamPermit::get() else { return };
    let c = cluster();
    let roles = ["alice@contoso.com", "carol@contoso.com", "dave@contoso.com"];
    let oids: Vec<String> = roles.iter().map(|_| new_oid()).collect();
    for (role, oid) in roles.iter().zip(&oids) {
        c.principal(role, oid, "user");
    }
    let p = pgbouncer(&c, "auth_type = pam\nserver_lifetime = 0");

    let before = accepted(&c);
    let fits = token_of_len(&oids[0], 2047);
    assert_eq!(p.sign_in(roles[0], fits.as_bytes()).unwrap(), roles[0]);
    assert_eq!(p.sign_in(roles[0], fits.as_bytes()).unwrap(), roles[0]);
    assert_eq!(accepted(&c), before + 2, "each sign-in reaches the server");

    // Each in a pool of its own: after a failed server login PgBouncer holds a pool's clients
    // back (server_login_retry) instead of answering at once.
    let cut = token_of_len(&oids[1], 2048);
    assert_err_contains(
        p.sign_in(roles[1], cut.as_bytes()),
        "Microsoft Entra ID authentication failed",
    );
    let too_big = token_of_len(&oids[2], 4091);
    assert_err_contains(
        p.sign_in(roles[2], too_big.as_bytes()),
        "client sent partial pkt in startup phase",
    );
    assert_eq!(accepted(&c), before + 2);
}

/// Without PAM, PgBouncer checks the password itself (auth_file, auth_query) or asks for none
/// (trust), and logs in to the server with what it has: never the client's token.
#[test]
fn pgbouncer_without_pam_never_forwards_the_token() {
    if !installed(PGBOUNCER, "pgbouncer") {
        return;
    }
    let c = cluster();
    let alice = "alice@contoso.com";
    let oid = new_oid();
    c.principal(alice, &oid, "user");
    c.admin("CREATE ROLE pgb_auth LOGIN SUPERUSER PASSWORD 'auth-pw'");
    let token = user_token(&oid, alice);
    for auth_type in ["plain", "trust"] {
        let dir = fresh_dir("pgbouncer_userlist");
        let userlist = write(&dir, "userlist.txt", "\"pgb_auth\" \"auth-pw\"\n");
        give_to_postgres(&dir);
        let p = pgbouncer(
            &c,
            &format!("auth_type = {auth_type}\nauth_file = {userlist}\nauth_user = pgb_auth"),
        );
        let before = accepted(&c);
        let r = p.sign_in(alice, token.as_bytes());
        assert!(r.is_err(), "auth_type = {auth_type}: signed in: {r:?}");
        assert_eq!(accepted(&c), before, "auth_type = {auth_type}");
        drop(p);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Pgpool-II

/// Pgpool-II forwards the cleartext password the server asks for, up to 1,023 bytes: a
/// 1,024-byte token (and the test suite's usual 1.1 KB one, shorter than Entra ID's) is refused
/// by Pgpool-II itself.
#[test]
fn pgpool_refuses_tokens_longer_than_1023_bytes() {
    if !installed(PGPOOL, "pgpool2") {
        return;
    }
    let c = cluster();
    let alice = "alice@contoso.com";
    let oid = new_oid();
    c.principal(alice, &oid, "user");
    let p = pgpool(&c, "connection_cache = off");

    let before = accepted(&c);
    assert_eq!(
        p.sign_in(alice, token_of_len(&oid, 1023).as_bytes())
            .unwrap(),
        alice
    );
    assert_eq!(accepted(&c), before + 1);
    for token in [token_of_len(&oid, 1024), user_token(&oid, alice)] {
        assert_err_contains(p.sign_in(alice, token.as_bytes()), "password is too long");
    }
    assert_eq!(accepted(&c), before + 1);
}

/// connection_cache = off: every client gets a new backend, so the server checks every token
/// (and every ordinary password). Safe, but only for tokens of at most 1,023 bytes.
#[test]
fn pgpool_without_connection_cache_has_the_server_check_every_sign_in() {
    if !installed(PGPOOL, "pgpool2") {
        return;
    }
    let c = cluster();
    let (alice, bob) = ("alice@contoso.com", "bob@contoso.com");
    let oid = new_oid();
    c.principal(alice, &oid, "user");
    c.principal(bob, &new_oid(), "user");
    c.admin("CREATE ROLE plainrole LOGIN PASSWORD 'secret-pw'");
    let p = pgpool(&c, "num_init_children = 1\nconnection_cache = off");

    let token = token_of_len(&oid, 1000);
    let before = accepted(&c);
    assert_eq!(p.sign_in(alice, token.as_bytes()).unwrap(), alice);
    assert_eq!(p.sign_in(alice, token.as_bytes()).unwrap(), alice);
    assert_eq!(p.psql_sign_in(alice, &token).unwrap(), alice);
    assert_eq!(accepted(&c), before + 3, "each sign-in reaches the server");

    assert_err_contains(
        p.sign_in(alice, b"not a token"),
        "is not a valid Microsoft Entra ID access token",
    );
    assert_err_contains(
        p.sign_in(alice, token_expiring_in(&oid, -3600).as_bytes()),
        "the access token has expired",
    );
    assert_err_contains(
        p.sign_in(bob, token.as_bytes()),
        "is not the object role \"bob@contoso.com\" is bound to",
    );
    assert_eq!(p.sign_in("plainrole", b"secret-pw").unwrap(), "plainrole");
    assert_err_contains(
        p.sign_in("plainrole", b"wrong"),
        "password authentication failed",
    );
    assert_eq!(accepted(&c), before + 3);
}

/// connection_cache = on (the default): when a client reuses a cached backend, Pgpool-II compares
/// its password with the one it saved, without asking the server. The token that opened the
/// backend keeps working after it has expired (for as long as the backend is reused within
/// connection_life_time), and the client's next token is refused until the backend closes.
#[test]
fn pgpool_connection_cache_admits_an_expired_token_and_refuses_the_new_one() {
    if !installed(PGPOOL, "pgpool2") {
        return;
    }
    let c = cluster();
    c.reload_with(&[("aad_auth.clock_skew", "0")]);
    let (alice, bob) = ("alice@contoso.com", "bob@contoso.com");
    let oid = new_oid();
    c.principal(alice, &oid, "user");
    c.principal(bob, &new_oid(), "user");
    // One child, so that every client meets the same cache.
    let p = pgpool(&c, "num_init_children = 1\nmax_pool = 4");

    let old = token_expiring_in(&oid, 3);
    let before = accepted(&c);
    assert_eq!(p.sign_in(alice, old.as_bytes()).unwrap(), alice);
    assert_eq!(accepted(&c), before + 1);

    std::thread::sleep(Duration::from_secs(4));
    assert_err_contains(c.sign_in(alice, &old), "the access token has expired");
    // The expired token still gets in through the cached backend.
    assert_eq!(p.sign_in(alice, old.as_bytes()).unwrap(), alice);
    // A new, valid token does not; nor does anything else.
    let new = token_of_len(&oid, 900);
    assert_err_contains(
        p.sign_in(alice, new.as_bytes()),
        "clear text password authentication failed",
    );
    assert_err_contains(
        p.sign_in(alice, b"not a token"),
        "clear text password authentication failed",
    );
    assert_eq!(accepted(&c), before + 1, "the server saw a reused backend");

    // Another role has its own backend, which the server checks.
    assert_err_contains(
        p.sign_in(bob, new.as_bytes()),
        "is not the object role \"bob@contoso.com\" is bound to",
    );
}
