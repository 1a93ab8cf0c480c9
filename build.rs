//! Compiles src/shim.c against the headers of the server the extension is built for
//! (the `pg_config` that pgrx uses), so Port and HbaLine are read with the server's layout.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-env-changed=PGRX_PG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PG_CONFIG");
    let pg_config = std::env::var("PGRX_PG_CONFIG_PATH")
        .or_else(|_| std::env::var("PG_CONFIG"))
        .unwrap_or_else(|_| pg_config_from_pgrx().unwrap_or_else(|| "pg_config".into()));
    let include = Command::new(&pg_config)
        .arg("--includedir-server")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| panic!("cannot run `{pg_config} --includedir-server`; set PG_CONFIG"));
    cc::Build::new()
        .file("src/shim.c")
        .include(&include)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-missing-field-initializers")
        .compile("aad_auth_shim");
}

/// The pg_config that `cargo pgrx init` recorded for the enabled pgNN feature.
fn pg_config_from_pgrx() -> Option<String> {
    let version = ["15", "16", "17", "18"]
        .into_iter()
        .find(|v| std::env::var(format!("CARGO_FEATURE_PG{v}")).is_ok())?;
    let home = std::env::var("PGRX_HOME")
        .ok()
        .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.pgrx")))?;
    let config = std::fs::read_to_string(format!("{home}/config.toml")).ok()?;
    config.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == format!("pg{version}")).then(|| value.trim().trim_matches('"').to_owned())
    })
}
