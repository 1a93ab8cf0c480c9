//! The Debian package (issue 12): `make package PG=15` writes
//! `dist/postgresql-15-aad-auth_<version>_<arch>.deb`. Installed with dpkg on this machine, which
//! has Debian's PostgreSQL 15, it is all a server needs: a cluster preloads it, `CREATE EXTENSION`
//! installs this version, a principal signs in with a token. Removing it takes every file it
//! brought, and a server still configured to preload the library then refuses to start rather
//! than run its `trust` lines unguarded. Needs root (dpkg); run by `make test-package`, after
//! `make package`. The aad_auth files already in the server's directories (a development
//! install) are put aside for the test and put back after it, whatever happens.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn pg_config_value(flag: &str) -> String {
    let (ok, out) = run(&pg_config(), &[flag]);
    assert!(ok, "pg_config {flag}: {out}");
    out.trim().to_owned()
}

fn major() -> String {
    let version = pg_config_value("--version");
    version
        .trim_start_matches("PostgreSQL ")
        .split(['.', ' '])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The aad_auth files of the server's library and extension directories, put aside while the
/// test runs and restored when it ends (also when it fails), so that only the package's files
/// can be loaded.
struct PutAside {
    saved: Vec<(PathBuf, Vec<u8>, std::fs::Permissions)>,
}

impl PutAside {
    fn take(dirs: &[PathBuf]) -> PutAside {
        let mut saved = Vec::new();
        for dir in dirs {
            for entry in std::fs::read_dir(dir).expect("read a server directory") {
                let path = entry.expect("directory entry").path();
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                if name == "aad_auth.so"
                    || name.starts_with("aad_auth.")
                    || name.starts_with("aad_auth--")
                {
                    saved.push((
                        path.clone(),
                        std::fs::read(&path).expect("read an installed file"),
                        std::fs::metadata(&path).expect("stat").permissions(),
                    ));
                    std::fs::remove_file(&path).expect("put an installed file aside");
                }
            }
        }
        PutAside { saved }
    }
}

impl Drop for PutAside {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", &package_name()])
            .output();
        for (path, bytes, mode) in &self.saved {
            if let Err(e) = std::fs::write(path, bytes)
                .and_then(|()| std::fs::set_permissions(path, mode.clone()))
            {
                eprintln!("could not restore {}: {e}", path.display());
            }
        }
    }
}

fn package_name() -> String {
    format!("postgresql-{}-aad-auth", major())
}

fn deb() -> PathBuf {
    let (_, arch) = run("dpkg", &["--print-architecture"]);
    repo_root().join(format!(
        "dist/{}_{VERSION}_{}.deb",
        package_name(),
        arch.trim()
    ))
}

fn installed(name: &str) -> bool {
    let (ok, out) = run("dpkg-query", &["-W", "-f=${db:Status-Status}", name]);
    ok && out.trim() == "installed"
}

#[test]
fn the_package_installs_signs_in_and_removes_cleanly() {
    assert!(
        is_root(),
        "the package test installs with dpkg: run it as root"
    );
    let major = major();
    let lib = PathBuf::from(pg_config_value("--pkglibdir"));
    let ext = PathBuf::from(pg_config_value("--sharedir")).join("extension");
    assert_eq!(
        lib,
        PathBuf::from(format!("/usr/lib/postgresql/{major}/lib")),
        "the package has Debian's layout: test it against Debian's PostgreSQL {major}"
    );
    let deb = deb();
    assert!(
        deb.exists(),
        "{} is missing: run `make package PG={major}`",
        deb.display()
    );
    let deb = deb.to_string_lossy().into_owned();

    // What it is: this version, for this server version, needing nothing a server lacks.
    let (ok, fields) = run(
        "dpkg-deb",
        &["-f", &deb, "Package", "Version", "Depends", "Architecture"],
    );
    assert!(ok, "{fields}");
    assert!(
        fields.contains(&format!("Package: {}\n", package_name())),
        "{fields}"
    );
    assert!(
        fields.contains(&format!("Version: {VERSION}\n")),
        "{fields}"
    );
    let depends = fields
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .expect("a Depends field");
    let needs: BTreeSet<&str> = depends
        .split(',')
        .map(|d| d.trim().split([' ', '(']).next().unwrap_or_default())
        .collect();
    let server = format!("postgresql-{major}");
    assert!(
        needs.contains(server.as_str()),
        "depends on {server}: {depends}"
    );
    // The key refresher checks login.microsoftonline.com against the system's CA store.
    assert!(
        needs.contains("ca-certificates"),
        "depends on ca-certificates: {depends}"
    );
    for need in &needs {
        assert!(
            [server.as_str(), "ca-certificates", "libc6", "libgcc-s1"].contains(need),
            "a dependency a PostgreSQL server does not already have: {need} ({depends})"
        );
    }

    // What it holds: the library, the control file, the install and update scripts, the
    // licence and the changelog, and nothing else.
    let (ok, contents) = run("dpkg-deb", &["-c", &deb]);
    assert!(ok, "{contents}");
    let files: BTreeSet<String> = contents
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches('.').to_owned())
        .collect();
    let doc = format!("/usr/share/doc/{}", package_name());
    let want: BTreeSet<String> = [
        format!("{}/aad_auth.so", lib.display()),
        format!("{}/aad_auth.control", ext.display()),
        format!("{}/aad_auth--{VERSION}.sql", ext.display()),
        format!("{}/aad_auth--0.1.0--{VERSION}.sql", ext.display()),
        format!("{doc}/copyright"),
        format!("{doc}/changelog.gz"),
    ]
    .into_iter()
    .collect();
    assert_eq!(files, want, "{contents}");
    assert!(
        contents.lines().all(|l| l.contains("root/root")),
        "every file owned by root: {contents}"
    );

    let aside = PutAside::take(&[lib.clone(), ext.clone()]);
    assert!(!lib.join("aad_auth.so").exists());
    let (ok, out) = run("dpkg", &["-i", &deb]);
    assert!(ok, "dpkg -i: {out}");
    assert!(installed(&package_name()));
    for file in &want {
        assert!(Path::new(file).is_file(), "{file} installed");
    }

    // A server loads it and a principal signs in.
    let c = Cluster::start(Setup::default());
    assert!(
        c.log().contains("aad_auth: governs"),
        "the packaged library governs the trust line: {}",
        c.log()
    );
    c.admin("CREATE EXTENSION aad_auth");
    assert_eq!(
        c.admin("SELECT extversion FROM pg_extension WHERE extname = 'aad_auth'"),
        VERSION
    );
    let oid = new_oid();
    c.principal("packaged@contoso.com", &oid, "user");
    assert_eq!(
        c.sign_in(
            "packaged@contoso.com",
            &user_token(&oid, "packaged@contoso.com")
        )
        .as_deref(),
        Ok("packaged@contoso.com")
    );
    let refused = c
        .sign_in(
            "packaged@contoso.com",
            &user_token(&new_oid(), "packaged@contoso.com"),
        )
        .expect_err("another object's token is refused");
    assert!(
        refused.contains("is not the object role \"packaged@contoso.com\" is bound to"),
        "{refused}"
    );
    c.assert_no_crash();

    // Removed, it leaves nothing behind, and a server still told to preload it does not start
    // (so its trust lines never admit anyone unchecked).
    c.stop();
    assert!(
        !c.data().join("postmaster.pid").exists(),
        "the server stopped"
    );
    let log_before = c.log().len();
    let (ok, out) = run("dpkg", &["--purge", &package_name()]);
    assert!(ok, "dpkg --purge: {out}");
    assert!(!installed(&package_name()));
    for file in &want {
        assert!(!Path::new(file).exists(), "{file} left behind");
    }
    let refused = c
        .try_start()
        .expect_err("a server preloading a removed library must not start");
    let log = c.log();
    assert!(
        log[log_before..].contains("could not access file \"aad_auth\""),
        "the start failed for the missing library: {refused}"
    );
    drop(aside);
}

/// A directory of stand-ins for dpkg, apt-get, apt-cache, rustc and cargo that record how
/// scripts/build-deps.sh calls them: every Debian package reads as missing, apt knows
/// PostgreSQL `apt_knows` only, rustc reports `rustc` (None: no Rust toolchain at all).
fn stand_ins(rustc: Option<&str>, apt_knows: &str) -> PathBuf {
    let dir = fresh_dir("build_deps");
    let log = dir.join("calls.log");
    let script = |name: &str, body: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write a stand-in");
        let ok = Command::new("chmod").arg("755").arg(&path).status();
        assert!(ok.is_ok_and(|s| s.success()));
    };
    let record = format!("echo \"$(basename \"$0\") $*\" >> '{}'", log.display());
    script("dpkg", &format!("{record}\nexit 1"));
    script("apt-get", &format!("{record}\nexit 0"));
    script(
        "apt-cache",
        &format!("{record}\n[ \"$2\" = postgresql-server-dev-{apt_knows} ]"),
    );
    if let Some(version) = rustc {
        script("rustc", &format!("echo 'rustc {version} (stand-in)'"));
        script(
            "cargo",
            &format!(
                "{record}\nif [ \"$1 $2\" = 'pgrx --version' ]; then echo 'cargo-pgrx {}'; \
                 elif [ \"$1\" = --version ]; then echo 'cargo {version}'; fi",
                pgrx_version()
            ),
        );
    }
    dir
}

fn pgrx_version() -> String {
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("pgrx = \"="))
        .and_then(|v| v.strip_suffix('"'))
        .expect("pgrx's pinned version")
        .to_owned()
}

/// scripts/build-deps.sh for PostgreSQL `pg`, with the stand-ins first on PATH (and no other
/// Rust toolchain): its exit status, its messages and the calls the stand-ins recorded.
fn build_deps(pg: &str, stand_ins: &Path) -> (bool, String, String) {
    let pgrx_home = fresh_dir("build_deps_pgrx");
    let out = Command::new(repo_root().join("scripts/build-deps.sh"))
        .env("PG", pg)
        .env_remove("PG_CONFIG")
        .env("PGRX_HOME", &pgrx_home)
        .env(
            "PATH",
            format!(
                "{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                stand_ins.display()
            ),
        )
        .output()
        .expect("scripts/build-deps.sh");
    let calls = std::fs::read_to_string(stand_ins.join("calls.log")).unwrap_or_default();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        calls,
    )
}

/// The `apt-get … install …` call the stand-ins recorded.
fn apt_install(calls: &str) -> &str {
    calls
        .lines()
        .find(|l| l.starts_with("apt-get") && l.contains(" install "))
        .unwrap_or_else(|| panic!("build-deps installs the missing packages: {calls}"))
}

/// `make install` and `make package` install what building needs and nothing else: never a
/// PostgreSQL server, never another version's packages, never the test tools.
#[test]
fn build_dependencies_are_only_what_building_needs() {
    assert!(is_root(), "scripts/build-deps.sh installs packages as root");
    let test_tools = [
        "postgresql-15",
        "postgresql-16",
        "postgresql-17",
        "postgresql-18",
        "pgbouncer",
        "pgpool2",
        "python3-pip",
        "nodejs",
        "npm",
        "sudo",
        "libpostgresql-jdbc-java",
    ];
    let bin = stand_ins(Some("1.95.0"), "15");
    let (ok, messages, calls) = build_deps("15", &bin);
    assert!(ok, "{messages}\n{calls}");
    let install = apt_install(&calls);
    let packages: BTreeSet<&str> = install
        .split_whitespace()
        .filter(|w| !w.starts_with('-'))
        .collect();
    for wanted in [
        "postgresql-server-dev-15",
        "clang",
        "libclang-dev",
        "pkg-config",
    ] {
        assert!(packages.contains(wanted), "installs {wanted}: {install}");
    }
    for unwanted in test_tools {
        assert!(
            !packages.contains(unwanted),
            "installs {unwanted}: {install}"
        );
    }
    assert!(
        calls.contains("cargo pgrx init --pg15 /usr/lib/postgresql/15/bin/pg_config"),
        "{calls}"
    );

    // A version apt does not know here (no PGDG repository): headers from a PyPI wheel, no
    // Debian PostgreSQL package at all.
    let bin = stand_ins(Some("1.95.0"), "15");
    let (ok, messages, calls) = build_deps("18", &bin);
    assert!(ok, "{messages}\n{calls}");
    let install = apt_install(&calls);
    assert!(
        !install.contains("postgresql"),
        "no PostgreSQL package for 18 here: {install}"
    );
    assert!(calls.contains("cargo pgrx init --pg18 "), "{calls}");
}

/// The Rust toolchain is checked first, and the message says what to install.
#[test]
fn build_dependencies_name_the_rust_toolchain_they_need() {
    let need = std::fs::read_to_string(repo_root().join("Cargo.toml"))
        .expect("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("Cargo.toml's rust-version")
        .to_owned();

    let bin = stand_ins(Some("1.80.1"), "15");
    let (ok, messages, calls) = build_deps("15", &bin);
    assert!(!ok, "a too-old toolchain is refused");
    assert!(
        messages.contains(&format!(
            "rustc 1.80.1 is too old: aad_auth needs Rust {need} or later"
        )) && messages.contains("rustup update stable"),
        "{messages}"
    );
    assert!(
        !calls.contains("apt-get"),
        "nothing is installed before the check: {calls}"
    );

    // The version the check names is the one Cargo.toml declares, and this toolchain meets it.
    let bin = stand_ins(Some(&need), "15");
    let (ok, messages, _) = build_deps("15", &bin);
    assert!(ok, "Rust {need} itself is enough: {messages}");

    // (Only where no Rust is installed system-wide: the stand-ins cannot hide it.)
    let system_rust = ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join("cargo").exists() || Path::new(d).join("rustc").exists());
    if system_rust {
        eprintln!("no-toolchain case skipped: a system-wide cargo or rustc is installed");
        return;
    }
    let bin = stand_ins(None, "15");
    let (ok, messages, calls) = build_deps("15", &bin);
    assert!(!ok, "no toolchain is refused");
    assert!(
        messages.contains(&format!(
            "no Rust toolchain (cargo and rustc) on PATH; aad_auth needs Rust {need} or later"
        )) && messages.contains("https://sh.rustup.rs"),
        "{messages}"
    );
    assert!(!calls.contains("apt-get"), "{calls}");
}
