//! The SQL API in pg_catalog (issue 11, item 1): bare and `pg_catalog.`-qualified calls work
//! with any search_path, and a server running 0.1.0 (functions in the schema CREATE EXTENSION
//! picked, usually `public`) is brought up with `ALTER EXTENSION aad_auth UPDATE`, keeping every
//! principal; the update gives exactly what a fresh install of the new version gives.

mod common;
use common::*;
use std::process::Command;

/// 0.1.0's install script, as released, and a secondary control file that lets this test
/// install 0.1.0 where 0.1.0 went (the control file of today says pg_catalog).
fn install_release_0_1_0() {
    let out = Command::new(
        std::env::var("PG_CONFIG")
            .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".into()),
    )
    .arg("--sharedir")
    .output()
    .expect("pg_config --sharedir");
    let dir =
        std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("extension");
    let sql = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aad_auth--0.1.0.sql"),
    )
    .expect("tests/fixtures/aad_auth--0.1.0.sql");
    std::fs::write(dir.join("aad_auth--0.1.0.sql"), sql).expect("install 0.1.0's script (as root)");
    std::fs::write(dir.join("aad_auth--0.1.0.control"), "schema = public\n")
        .expect("install 0.1.0's control file");
}

fn sign_in_as(c: &Cluster, role: &str, oid: &str) -> Result<String, String> {
    c.sign_in(role, &user_token(oid, role))
}

/// The extension's functions in this database: name, arguments, full definition and ACL.
fn api_functions(c: &Cluster, db: &str) -> String {
    c.admin_in(
        db,
        "SELECT string_agg(p.pronamespace::regnamespace || '.' || p.proname || '(' \
         || pg_get_function_identity_arguments(p.oid) || ') ' || coalesce(p.proacl::text, '-') \
         || E'\\n' || pg_get_functiondef(p.oid), E'\\n' ORDER BY p.proname) \
         FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid AND d.classid = 'pg_proc'::regclass \
         JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass \
         WHERE e.extname = 'aad_auth' AND d.deptype = 'e'",
    )
}

#[test]
fn the_sql_api_is_in_pg_catalog_whatever_the_search_path() {
    let c = Cluster::start(Setup::default());
    c.admin("CREATE EXTENSION aad_auth");
    assert_eq!(
        c.admin("SELECT extnamespace::regnamespace FROM pg_extension WHERE extname = 'aad_auth'"),
        "pg_catalog"
    );
    let oid = new_oid();
    c.admin(&format!(
        "SET search_path = ''; \
         SELECT pg_catalog.pgaadauth_create_principal_with_oid('qualified@contoso.com', '{oid}', 'user', false, false)"
    ));
    c.admin("CREATE SCHEMA elsewhere");
    let listed = c.admin(
        "SET search_path = elsewhere; \
         SELECT string_agg(rolname, ',') FROM pgaadauth_list_principals(false)",
    );
    assert_eq!(listed, "qualified@contoso.com");
    assert_eq!(
        c.admin("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pgaadauth%' AND pronamespace <> 'pg_catalog'::regnamespace"),
        "0"
    );
    assert_eq!(
        sign_in_as(&c, "qualified@contoso.com", &oid).as_deref(),
        Ok("qualified@contoso.com")
    );
    // Dropping the extension leaves roles and labels (shared catalogs); creating it again
    // adopts the azure_pg_admin it made.
    create_admin(&c, "keeper@contoso.com");
    c.admin("DROP EXTENSION aad_auth; CREATE EXTENSION aad_auth");
    assert_eq!(
        sign_in_as(&c, "qualified@contoso.com", &oid).as_deref(),
        Ok("qualified@contoso.com")
    );
}

fn create_admin(c: &Cluster, role: &str) -> String {
    let oid = new_oid();
    c.admin(&format!(
        "SELECT pg_catalog.pgaadauth_create_principal_with_oid('{role}', '{oid}', 'user', true, false)"
    ));
    oid
}

#[test]
fn a_0_1_0_server_updates_in_place_and_keeps_every_principal() {
    install_release_0_1_0();
    let c = Cluster::start(Setup::default());
    c.admin("CREATE EXTENSION aad_auth VERSION '0.1.0'");
    assert_eq!(
        c.admin("SELECT extversion || ' ' || extnamespace::regnamespace FROM pg_extension WHERE extname = 'aad_auth'"),
        "0.1.0 public"
    );
    // Principals made the 0.1.0 way, with the functions in public.
    let user_oid = new_oid();
    let admin_oid = new_oid();
    let app_oid = new_oid();
    c.admin(&format!(
        "SELECT public.pgaadauth_create_principal_with_oid('old-user@contoso.com', '{user_oid}', 'user', false, false); \
         SELECT public.pgaadauth_create_principal_with_oid('old-admin@contoso.com', '{admin_oid}', 'user', true, false); \
         SELECT public.pgaadauth_create_principal_with_oid('old-app', '{app_oid}', 'service', false, false)"
    ));
    let before = c.admin("SELECT string_agg(rolname || ' ' || objectid || ' ' || isadmin, ',' ORDER BY rolname) FROM public.pgaadauth_list_principals(false)");

    c.admin("ALTER EXTENSION aad_auth UPDATE");

    assert_eq!(
        c.admin("SELECT extversion || ' ' || extnamespace::regnamespace FROM pg_extension WHERE extname = 'aad_auth'"),
        "0.2.0 pg_catalog"
    );
    assert_eq!(
        c.admin("SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace"),
        "0",
        "0.1.0's functions are left in public"
    );
    let after = c.admin(
        "SET search_path = ''; SELECT string_agg(rolname || ' ' || objectid || ' ' || isadmin, ',' ORDER BY rolname) FROM pg_catalog.pgaadauth_list_principals(false)",
    );
    assert_eq!(after, before, "principals changed in the update");
    // Every principal still signs in; the admin manages principals through the moved API.
    assert_eq!(
        sign_in_as(&c, "old-user@contoso.com", &user_oid).as_deref(),
        Ok("old-user@contoso.com")
    );
    assert_eq!(
        c.sign_in("old-app", &app_token(&app_oid, &new_oid()))
            .as_deref(),
        Ok("old-app")
    );
    let out = c.psql(
        "old-admin@contoso.com",
        &user_token(&admin_oid, "old-admin@contoso.com"),
        &format!(
            "SET search_path = ''; SELECT pg_catalog.pgaadauth_create_principal_with_oid('new-user@contoso.com', '{}', 'user', false, false)",
            new_oid()
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The jwks status stays for admins only.
    assert_eq!(
        c.admin("SELECT has_function_privilege('public', 'pg_catalog.aad_auth_jwks_status()', 'EXECUTE')"),
        "f"
    );
    // The extension no longer holds on to the schema 0.1.0 was installed in.
    assert_eq!(
        c.admin(
            "SELECT count(*) FROM pg_depend WHERE classid = 'pg_extension'::regclass \
                 AND objid = (SELECT oid FROM pg_extension WHERE extname = 'aad_auth') \
                 AND refclassid = 'pg_namespace'::regclass"
        ),
        "0"
    );
    // The update gives what a fresh install of 0.2.0 gives, definitions and privileges alike.
    c.admin("CREATE DATABASE fresh");
    c.admin_in("fresh", "CREATE EXTENSION aad_auth");
    assert_eq!(api_functions(&c, "postgres"), api_functions(&c, "fresh"));
}
