//! The connection-pool recipes of docs/clients.md (issue 12, item 4), run by the real client
//! libraries against a real cluster: psycopg 3 with psycopg_pool, SQLAlchemy, asyncpg and
//! node-postgres (and pgjdbc where a JDK is installed). Tokens last 3 seconds and
//! `aad_auth.clock_skew` is 0, so most of the connections a pool opens come after the first token
//! has expired: each recipe must fetch a fresh token for each new connection, with no error.
//! The same programs handing out their first token for ever (AAD_STATIC=1) must fail, which
//! shows that the test catches a recipe that does not refresh. Every recipe block quoted in
//! docs/clients.md must be the one these programs run, verbatim.
//!
//! The programs are under tests/clients/; their libraries are installed by scripts/test-deps.sh
//! (`make test-clients` runs it, and builds aad-auth-mint, which mints the tokens).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn clients() -> PathBuf {
    repo_root().join("tests/clients")
}

struct Server {
    cluster: Cluster,
    keys: PathBuf,
}

/// One cluster for every recipe, and the signing key in a directory aad-auth-mint reads.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let cluster = Cluster::start(Setup {
            conf: vec![
                "aad_auth.clock_skew = 0".into(),
                "max_connections = 200".into(),
            ],
            ..Setup::default()
        });
        cluster.admin("CREATE EXTENSION aad_auth");
        let keys = fresh_dir("client_keys");
        std::fs::write(keys.join("signing-key.der"), key().to_pkcs1_der()).expect("key");
        std::fs::write(keys.join("kid"), &key().kid).expect("kid");
        Server { cluster, keys }
    })
}

/// A principal of its own for the recipe `name` (so that the server log's refusals can be told
/// apart per recipe), and the command that mints its tokens: they expire 3 seconds after they
/// are minted (2 to 3 seconds, as `exp` is in whole seconds).
fn principal_for(name: &str) -> (String, Vec<String>) {
    let s = server();
    let role = format!("pool-{name}@contoso.com");
    let oid = new_oid();
    s.cluster.principal(&role, &oid, "user");
    let mint = repo_root().join("target/debug/aad-auth-mint");
    assert!(
        mint.exists(),
        "{} is missing: run `make test-clients` (it builds it)",
        mint.display()
    );
    let mint = vec![
        mint.to_string_lossy().into_owned(),
        "user".into(),
        s.keys.to_string_lossy().into_owned(),
        TENANT.into(),
        oid,
        role.clone(),
        "--lifetime=3".into(),
    ];
    (role, mint)
}

/// What a recipe program printed.
#[derive(Debug)]
struct Run {
    connections: u64,
    tokens: u64,
    after_first_expiry: u64,
    errors: Vec<String>,
}

fn run(program: &[&str], role: &str, mint: &[String], static_token: bool) -> Run {
    let s = server();
    // No recipe may hang the suite: each run takes about 7 seconds.
    let mut cmd = Command::new("timeout");
    cmd.arg("120")
        .args(program)
        .current_dir(clients())
        .env("AAD_HOST", "127.0.0.1")
        .env("AAD_PORT", s.cluster.port.to_string())
        .env("AAD_USER", role)
        .env("AAD_DBNAME", "postgres")
        .env(
            "AAD_MINT",
            aad_auth_testkit::serde_json::to_string(mint).expect("json"),
        )
        .env("AAD_STATIC", if static_token { "1" } else { "0" })
        .env("AAD_STEPS", "8")
        .env("AAD_INTERVAL", "1.0")
        .env_remove("PGPASSWORD");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run `make test-clients`)", program[0]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program:?} failed:\n{stdout}\n{stderr}"
    );
    let line = stdout.lines().last().unwrap_or_default();
    let v: aad_auth_testkit::serde_json::Value = aad_auth_testkit::serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{program:?} printed no report ({e}):\n{stdout}\n{stderr}"));
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {line}"));
    Run {
        connections: n("connections"),
        tokens: n("tokens"),
        after_first_expiry: n("after_first_expiry"),
        errors: v["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| e.as_str().unwrap_or_default().to_owned())
            .collect(),
    }
}

/// The recipe refreshes: every connection opened, many after the first token expired, one token
/// each, no error. Without refreshing, the same program fails with the expiry refusal.
fn check(name: &str, program: &[&str]) {
    let (role, mint) = principal_for(name);
    let fresh = run(program, &role, &mint, false);
    eprintln!("{name}: {fresh:?}");
    assert!(fresh.errors.is_empty(), "{name}: {:?}", fresh.errors);
    assert!(
        fresh.connections >= 8,
        "{name}: the pool grew to 8 connections: {fresh:?}"
    );
    assert!(
        fresh.after_first_expiry >= 3,
        "{name}: connections opened after the first token expired: {fresh:?}"
    );
    assert!(
        fresh.tokens >= fresh.connections,
        "{name}: a token for every new connection: {fresh:?}"
    );

    let before = expired_refusals(&role);
    let stale = run(program, &role, &mint, true);
    eprintln!("{name} with one token for ever: {stale:?}");
    // Some pools report the server's message, others only that no connection came in time:
    // the server log says why.
    assert!(
        !stale.errors.is_empty(),
        "{name}: reusing the first token must fail once it has expired: {stale:?}"
    );
    assert!(
        expired_refusals(&role) > before,
        "{name}: the server refused the reused token as expired: {stale:?}"
    );
    server().cluster.assert_no_crash();
}

/// Sign-ins of `role` the server refused because the token had expired, so far.
fn expired_refusals(role: &str) -> usize {
    server()
        .cluster
        .log()
        .lines()
        .filter(|l| {
            l.contains("sign-in refused")
                && l.contains(&format!("role=\"{role}\""))
                && l.contains("reason=\"expired")
        })
        .count()
}

fn python() -> String {
    let venv = repo_root().join("target/clients/venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/test-deps.sh (make test-clients does)",
        venv.display()
    );
    venv.to_string_lossy().into_owned()
}

#[test]
fn psycopg_pool_fetches_a_fresh_token_per_connection() {
    check("psycopg_pool", &[&python(), "psycopg_pool_recipe.py"]);
}

#[test]
fn sqlalchemy_fetches_a_fresh_token_per_connection() {
    check("sqlalchemy", &[&python(), "sqlalchemy_recipe.py"]);
}

#[test]
fn asyncpg_pool_fetches_a_fresh_token_per_connection() {
    check("asyncpg", &[&python(), "asyncpg_recipe.py"]);
}

#[test]
fn node_postgres_pool_fetches_a_fresh_token_per_connection() {
    assert!(
        clients().join("node_modules/pg").is_dir(),
        "node-postgres is missing: run scripts/test-deps.sh (make test-clients does)"
    );
    check("node-postgres", &["node", "node_pg_recipe.js"]);
}

/// pgjdbc's authentication plugin, where a JDK and Debian's pgjdbc are installed
/// (scripts/test-deps.sh installs pgjdbc when javac is present).
#[test]
fn pgjdbc_plugin_fetches_a_fresh_token_per_connection() {
    let jar = Path::new("/usr/share/java/postgresql.jar");
    let javac = Command::new("javac").arg("-version").output();
    if !jar.exists() || !javac.is_ok_and(|o| o.status.success()) {
        eprintln!("pgjdbc: skipped, no JDK or no /usr/share/java/postgresql.jar on this machine");
        return;
    }
    let classes = fresh_dir("pgjdbc_classes");
    let out = Command::new("javac")
        .args(["-d"])
        .arg(&classes)
        .args(["-cp", "/usr/share/java/postgresql.jar"])
        .args(["EntraTokenPlugin.java", "PgjdbcRecipe.java"])
        .current_dir(clients())
        .output()
        .expect("javac");
    assert!(
        out.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cp = format!("{}:/usr/share/java/postgresql.jar", classes.display());
    check("pgjdbc", &["java", "-cp", &cp, "PgjdbcRecipe"]);
}

/// docs/clients.md quotes each recipe exactly as these programs run it.
#[test]
fn the_documented_recipes_are_the_tested_ones() {
    let doc =
        std::fs::read_to_string(repo_root().join("docs/clients.md")).expect("docs/clients.md");
    let files = [
        "psycopg_pool_recipe.py",
        "sqlalchemy_recipe.py",
        "asyncpg_recipe.py",
        "node_pg_recipe.js",
        "EntraTokenPlugin.java",
    ];
    for file in files {
        let text = std::fs::read_to_string(clients().join(file)).expect(file);
        let recipe = recipe_of(&text).unwrap_or_else(|| panic!("{file} has no recipe block"));
        assert!(
            doc.contains(&recipe),
            "docs/clients.md does not quote the recipe of tests/clients/{file}:\n{recipe}"
        );
    }
}

/// The lines between `recipe: NAME` and `end recipe` (comment lines of either language), as
/// they are, indentation included.
fn recipe_of(text: &str) -> Option<String> {
    let marker = |l: &&str| {
        l.trim_start()
            .trim_start_matches(['#', '/'])
            .trim()
            .to_owned()
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| marker(l).starts_with("recipe:"))?;
    let end = lines.iter().position(|l| marker(l) == "end recipe")?;
    Some(lines[start + 1..end].join("\n"))
}
