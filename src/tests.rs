// The SQL tier: `#[pg_test]`s for the `pgaadauth_*` functions, the `pgaadauth` label provider and
// the `aad_auth.*` settings, run by `cargo pgrx test pg15` (see scripts/pg-test.sh) in a
// cluster with the library preloaded. Each test runs in a transaction that is rolled back.

use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};
use std::ffi::CString;

const OID_UPPER: &str = "5D7C1F3E-2A4B-4C8D-9E0F-A1B2C3D4E5F6";
const OID: &str = "5d7c1f3e-2a4b-4c8d-9e0f-a1b2c3d4e5f6";
const OID2: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

// ---------------------------------------------------------------------------------------------
// helpers

fn run(sql: &str) {
    Spi::run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn text(sql: &str) -> Option<String> {
    Spi::get_one::<String>(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn boolean(sql: &str) -> bool {
    Spi::get_one::<bool>(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: NULL"))
}

fn lit(s: &str) -> String {
    quote_literal(s)
}

fn create(name: &str, oid: &str, kind: &str, admin: bool, mfa: bool) -> String {
    text(&format!(
        "SELECT pgaadauth_create_principal_with_oid({}, {}, {}, {admin}, {mfa})",
        lit(name),
        lit(oid),
        lit(kind)
    ))
    .expect("create returned NULL")
}

fn update(name: &str, oid: &str, kind: &str, admin: bool, mfa: bool) -> String {
    text(&format!(
        "SELECT pgaadauth_update_principal_with_oid({}, {}, {}, {admin}, {mfa})",
        lit(name),
        lit(oid),
        lit(kind)
    ))
    .expect("update returned NULL")
}

fn drop_principal(name: &str) -> String {
    text(&format!("SELECT pgaadauth_drop_principal({})", lit(name))).expect("drop returned NULL")
}

/// The role's `pgaadauth` label, read straight from the catalog.
fn label_of(name: &str) -> Option<String> {
    text(&format!(
        "SELECT (SELECT l.label FROM pg_catalog.pg_shseclabel l \
                 JOIN pg_catalog.pg_roles r ON r.oid = l.objoid \
                 WHERE l.provider = 'pgaadauth' \
                   AND l.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass \
                   AND r.rolname = {})",
        lit(name)
    ))
}

fn role_exists(name: &str) -> bool {
    boolean(&format!(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {})",
        lit(name)
    ))
}

fn role_flag(name: &str, column: &str) -> bool {
    boolean(&format!(
        "SELECT {column} FROM pg_catalog.pg_roles WHERE rolname = {}",
        lit(name)
    ))
}

fn is_member_of_admin(name: &str) -> bool {
    boolean(&format!(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m \
                 WHERE m.roleid = 'azure_pg_admin'::regrole \
                   AND m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {}))",
        lit(name)
    ))
}

fn listed(name: &str, only_admins: bool) -> bool {
    boolean(&format!(
        "SELECT EXISTS (SELECT 1 FROM pgaadauth_list_principals({only_admins}) WHERE rolname = {})",
        lit(name)
    ))
}

/// Runs `sql`, which must fail, in a PL/pgSQL sub-transaction and returns the error's
/// (message, detail, hint). An error raised under a Rust frame (the check hooks through
/// `aad_validate_setting`) reaches the caller with a Rust backtrace appended to its detail.
fn error_of(sql: &str) -> (String, String, String) {
    run("CREATE OR REPLACE FUNCTION pg_temp.aad_error_of(stmt text) RETURNS text[] \
         LANGUAGE plpgsql AS $f$ \
         DECLARE m text; d text; h text; \
         BEGIN \
             EXECUTE stmt; \
             RETURN NULL; \
         EXCEPTION WHEN OTHERS THEN \
             GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT; \
             RETURN ARRAY[m, d, h]; \
         END $f$");
    let parts =
        Spi::get_one::<Vec<Option<String>>>(&format!("SELECT pg_temp.aad_error_of({})", lit(sql)))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_else(|| panic!("expected an error from: {sql}"));
    let part = |i: usize| parts.get(i).cloned().flatten().unwrap_or_default();
    (part(0), part(1), part(2))
}

/// A role that may manage principals without being a superuser: a member of azure_pg_admin
/// with CREATEROLE (what `isAdmin` gives a principal).
fn make_admin(name: &str) {
    let role = quote_identifier(name);
    run(&format!("CREATE ROLE {role} NOLOGIN CREATEROLE CREATEDB"));
    run(&format!("GRANT azure_pg_admin TO {role}"));
}

fn set_role(name: &str) {
    run(&format!("SET ROLE {}", quote_identifier(name)));
}

/// Validates (without changing) a setting the way a reload of postgresql.conf or ALTER SYSTEM
/// does: runs the setting's check hook at SIGHUP context. Raises the error PostgreSQL raises
/// for a bad value. ALTER SYSTEM itself cannot run inside the test's transaction.
#[pg_extern]
fn aad_validate_setting(name: &str, value: &str) -> bool {
    let (name, value) = (CString::new(name).unwrap(), CString::new(value).unwrap());
    crate::gucs::validates(&name, &value, pg_sys::PGERROR as i32)
}

// ---------------------------------------------------------------------------------------------
// pgaadauth_create_principal_with_oid

#[pg_test]
fn create_returns_message_login_role_and_label() {
    assert_eq!(
        create("alice@contoso.com", OID_UPPER, "user", false, false),
        "Created role for \"alice@contoso.com\""
    );
    assert!(role_exists("alice@contoso.com"));
    assert!(role_flag("alice@contoso.com", "rolcanlogin"));
    assert!(!role_flag("alice@contoso.com", "rolsuper"));
    assert!(!role_flag("alice@contoso.com", "rolcreaterole"));
    assert!(!role_flag("alice@contoso.com", "rolcreatedb"));
    assert!(!is_member_of_admin("alice@contoso.com"));
    assert_eq!(
        label_of("alice@contoso.com").as_deref(),
        Some(format!("aadauth,oid={OID},type=user").as_str())
    );
}

#[pg_test]
fn create_admin_gets_flag_privileges_and_membership() {
    assert_eq!(
        create("admin_ann", OID, "user", true, false),
        "Created role for \"admin_ann\""
    );
    assert_eq!(
        label_of("admin_ann").as_deref(),
        Some(format!("aadauth,oid={OID},type=user,admin").as_str())
    );
    assert!(role_flag("admin_ann", "rolcreaterole"));
    assert!(role_flag("admin_ann", "rolcreatedb"));
    assert!(!role_flag("admin_ann", "rolsuper"));
    assert!(is_member_of_admin("admin_ann"));
}

#[pg_test]
fn create_mfa_and_admin_mfa_labels() {
    create("mfa_mia", OID, "user", false, true);
    assert_eq!(
        label_of("mfa_mia").as_deref(),
        Some(format!("aadauth,oid={OID},type=user,mfa").as_str())
    );
    assert!(!is_member_of_admin("mfa_mia"));
    create("mfa_admin_max", OID2, "user", true, true);
    assert_eq!(
        label_of("mfa_admin_max").as_deref(),
        Some(format!("aadauth,oid={OID2},type=user,admin,mfa").as_str())
    );
}

#[pg_test]
fn create_object_types_group_service_and_case_insensitive() {
    create("team_group", OID, "group", false, false);
    assert_eq!(
        label_of("team_group").as_deref(),
        Some(format!("aadauth,oid={OID},type=group").as_str())
    );
    create("app_service", OID2, "service", false, false);
    assert_eq!(
        label_of("app_service").as_deref(),
        Some(format!("aadauth,oid={OID2},type=service").as_str())
    );
    create("upper_user", OID, "USER", false, false);
    assert_eq!(
        label_of("upper_user").as_deref(),
        Some(format!("aadauth,oid={OID},type=user").as_str())
    );
    create("mixed_service", OID, "Service", false, false);
    assert_eq!(
        label_of("mixed_service").as_deref(),
        Some(format!("aadauth,oid={OID},type=service").as_str())
    );
}

#[pg_test]
fn awkward_names_round_trip_create_list_update_drop() {
    let names = [
        "alice@contoso.com",
        "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "Alice Smith",
        "say \"hi\" team",
        "MixedCase",
    ];
    for name in names {
        assert_eq!(
            create(name, OID, "user", false, false),
            format!("Created role for \"{name}\"")
        );
        assert!(role_exists(name), "{name} not created as written");
        assert!(role_flag(name, "rolcanlogin"));
        assert!(listed(name, false), "{name} not listed");
        assert_eq!(
            update(name, OID2, "group", false, true),
            format!("Updated role for \"{name}\"")
        );
        assert_eq!(
            label_of(name).as_deref(),
            Some(format!("aadauth,oid={OID2},type=group,mfa").as_str())
        );
        assert_eq!(drop_principal(name), format!("Dropped role for \"{name}\""));
        assert!(!role_exists(name), "{name} not dropped");
        assert!(!listed(name, false));
    }
    // MixedCase was kept as written, not folded.
    assert!(!role_exists("mixedcase"));
}

#[pg_test(error = "objectId \"not-a-guid\" is not an Entra ID object id")]
fn create_refuses_bad_object_id() {
    create("bad_oid", "not-a-guid", "user", false, false);
}

#[pg_test(error = "objectType: \"robot\" is not a principal type; use user, group or service")]
fn create_refuses_bad_object_type() {
    create("bad_type", OID, "robot", false, false);
}

#[pg_test(error = "roleName must not be null")]
fn create_refuses_null_role_name() {
    run(&format!(
        "SELECT pgaadauth_create_principal_with_oid(NULL, {}, 'user', false, false)",
        lit(OID)
    ));
}

#[pg_test(error = "objectId must not be null")]
fn create_refuses_null_object_id() {
    run("SELECT pgaadauth_create_principal_with_oid('null_oid', NULL, 'user', false, false)");
}

#[pg_test(error = "objectType must not be null")]
fn create_refuses_null_object_type() {
    run(&format!(
        "SELECT pgaadauth_create_principal_with_oid('null_type', {}, NULL, false, false)",
        lit(OID)
    ));
}

#[pg_test(error = "isAdmin must not be null")]
fn create_refuses_null_is_admin() {
    run(&format!(
        "SELECT pgaadauth_create_principal_with_oid('null_admin', {}, 'user', NULL, false)",
        lit(OID)
    ));
}

#[pg_test(error = "isMfa must not be null")]
fn create_refuses_null_is_mfa() {
    run(&format!(
        "SELECT pgaadauth_create_principal_with_oid('null_mfa', {}, 'user', false, NULL)",
        lit(OID)
    ));
}

#[pg_test(error = "role \"dup_dan\" already exists")]
fn create_refuses_existing_principal() {
    create("dup_dan", OID, "user", false, false);
    create("dup_dan", OID2, "user", false, false);
}

#[pg_test(error = "role \"plain_existing\" already exists")]
fn create_refuses_existing_ordinary_role() {
    run("CREATE ROLE plain_existing");
    create("plain_existing", OID, "user", false, false);
}

#[pg_test]
fn create_existing_role_is_left_untouched() {
    run("CREATE ROLE untouched_ursula NOLOGIN");
    let (message, _, hint) = error_of(&format!(
        "SELECT pgaadauth_create_principal_with_oid('untouched_ursula', {}, 'user', true, false)",
        lit(OID)
    ));
    assert_eq!(message, "role \"untouched_ursula\" already exists");
    assert!(
        hint.contains("pgaadauth_update_principal_with_oid"),
        "hint: {hint}"
    );
    assert_eq!(label_of("untouched_ursula"), None);
    assert!(!role_flag("untouched_ursula", "rolcanlogin"));
    assert!(!is_member_of_admin("untouched_ursula"));
}

#[pg_test(
    error = "role name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is 64 bytes long; PostgreSQL role names are at most 63 bytes"
)]
fn create_refuses_name_longer_than_63_bytes() {
    create(&"a".repeat(64), OID, "user", false, false);
}

#[pg_test]
fn create_accepts_name_of_63_bytes() {
    let name = "b".repeat(63);
    create(&name, OID, "user", false, false);
    assert!(role_exists(&name));
}

#[pg_test(error = "permission denied for function pgaadauth_create_principal_with_oid")]
fn create_refused_for_non_admin() {
    run("CREATE ROLE nobody_nick NOLOGIN");
    set_role("nobody_nick");
    create("by_nobody", OID, "user", false, false);
}

#[pg_test(error = "permission denied for function pgaadauth_create_principal_with_oid")]
fn create_refused_for_createrole_non_admin() {
    run("CREATE ROLE createrole_carl NOLOGIN CREATEROLE");
    set_role("createrole_carl");
    create("by_carl", OID, "user", false, false);
}

#[pg_test(
    error = "pgaadauth_create_principal cannot resolve names: no Microsoft Entra ID directory is configured on this server"
)]
fn create_principal_without_directory_is_refused() {
    run("SELECT pgaadauth_create_principal('someone@contoso.com', false, false)");
}

#[pg_test]
fn create_principal_without_directory_points_to_with_oid() {
    let (message, _, hint) =
        error_of("SELECT pgaadauth_create_principal('someone@contoso.com', false, false)");
    assert!(
        message.contains("no Microsoft Entra ID directory"),
        "message: {message}"
    );
    assert!(
        hint.contains("pgaadauth_create_principal_with_oid("),
        "hint: {hint}"
    );
    assert!(!role_exists("someone@contoso.com"));
}

// ---------------------------------------------------------------------------------------------
// pgaadauth_update_principal_with_oid

#[pg_test]
fn update_rebinds_oid_and_keeps_grants() {
    create("upd_uma", OID, "user", false, false);
    let role_oid_before =
        text("SELECT oid::text FROM pg_catalog.pg_roles WHERE rolname = 'upd_uma'");
    run("CREATE TABLE upd_uma_table (x int)");
    run("GRANT SELECT ON upd_uma_table TO upd_uma");
    assert_eq!(
        update("upd_uma", OID2, "service", false, false),
        "Updated role for \"upd_uma\""
    );
    assert_eq!(
        label_of("upd_uma").as_deref(),
        Some(format!("aadauth,oid={OID2},type=service").as_str())
    );
    assert_eq!(
        text("SELECT oid::text FROM pg_catalog.pg_roles WHERE rolname = 'upd_uma'"),
        role_oid_before
    );
    assert!(boolean(
        "SELECT has_table_privilege('upd_uma', 'upd_uma_table', 'SELECT')"
    ));
    assert!(role_flag("upd_uma", "rolcanlogin"));
}

#[pg_test]
fn update_admin_on_then_off() {
    create("upd_ada", OID, "user", false, false);
    assert!(!is_member_of_admin("upd_ada"));
    update("upd_ada", OID, "user", true, false);
    assert_eq!(
        label_of("upd_ada").as_deref(),
        Some(format!("aadauth,oid={OID},type=user,admin").as_str())
    );
    assert!(is_member_of_admin("upd_ada"));
    assert!(role_flag("upd_ada", "rolcreaterole"));
    update("upd_ada", OID, "user", false, false);
    assert_eq!(
        label_of("upd_ada").as_deref(),
        Some(format!("aadauth,oid={OID},type=user").as_str())
    );
    assert!(!is_member_of_admin("upd_ada"));
    assert!(!role_flag("upd_ada", "rolcreaterole"));
    assert!(!role_flag("upd_ada", "rolcreatedb"));
}

#[pg_test]
fn update_admin_true_to_false_removes_membership() {
    create("upd_former_admin", OID, "user", true, false);
    assert!(is_member_of_admin("upd_former_admin"));
    update("upd_former_admin", OID, "user", false, false);
    assert!(!is_member_of_admin("upd_former_admin"));
    assert!(!listed("upd_former_admin", true));
    assert!(listed("upd_former_admin", false));
}

#[pg_test(error = "role \"nobody_here\" does not exist")]
fn update_refuses_missing_role() {
    update("nobody_here", OID, "user", false, false);
}

#[pg_test(error = "objectId \"123\" is not an Entra ID object id")]
fn update_refuses_bad_object_id() {
    create("upd_badoid", OID, "user", false, false);
    update("upd_badoid", "123", "user", false, false);
}

#[pg_test(error = "permission denied to manage role \"su_sam\"")]
fn update_refuses_superuser_target_for_non_superuser_admin() {
    run("CREATE ROLE su_sam SUPERUSER");
    make_admin("upd_admin_al");
    set_role("upd_admin_al");
    update("su_sam", OID, "user", false, false);
}

#[pg_test]
fn update_superuser_target_allowed_for_superuser() {
    run("CREATE ROLE su_sue SUPERUSER");
    assert_eq!(
        update("su_sue", OID, "user", false, false),
        "Updated role for \"su_sue\""
    );
    assert_eq!(
        label_of("su_sue").as_deref(),
        Some(format!("aadauth,oid={OID},type=user").as_str())
    );
}

#[pg_test(error = "permission denied for function pgaadauth_update_principal_with_oid")]
fn update_refused_for_non_admin() {
    create("upd_target", OID, "user", false, false);
    run("CREATE ROLE upd_nobody NOLOGIN");
    set_role("upd_nobody");
    update("upd_target", OID2, "user", false, false);
}

// ---------------------------------------------------------------------------------------------
// pgaadauth_drop_principal

#[pg_test]
fn drop_returns_message_and_removes_role() {
    create("drop_dora", OID, "user", true, true);
    assert_eq!(
        drop_principal("drop_dora"),
        "Dropped role for \"drop_dora\""
    );
    assert!(!role_exists("drop_dora"));
    assert_eq!(label_of("drop_dora"), None);
    assert!(!boolean(&format!(
        "SELECT EXISTS (SELECT 1 FROM pgaadauth_list_principals(false) WHERE objectid = {})",
        lit(OID)
    )));
}

#[pg_test(error = "role \"plain_paul\" is not a Microsoft Entra ID principal")]
fn drop_refuses_ordinary_role() {
    run("CREATE ROLE plain_paul LOGIN");
    drop_principal("plain_paul");
}

#[pg_test]
fn drop_ordinary_role_leaves_it_in_place() {
    run("CREATE ROLE plain_pia LOGIN");
    let (message, _, _) = error_of("SELECT pgaadauth_drop_principal('plain_pia')");
    assert_eq!(
        message,
        "role \"plain_pia\" is not a Microsoft Entra ID principal"
    );
    assert!(role_exists("plain_pia"));
}

#[pg_test(error = "role \"drop_ghost\" does not exist")]
fn drop_refuses_missing_role() {
    drop_principal("drop_ghost");
}

#[pg_test(error = "role \"drop_owner\" cannot be dropped because some objects depend on it")]
fn drop_refuses_role_owning_objects() {
    create("drop_owner", OID, "user", false, false);
    run("CREATE TABLE drop_owner_table (x int)");
    run("ALTER TABLE drop_owner_table OWNER TO drop_owner");
    drop_principal("drop_owner");
}

#[pg_test]
fn drop_role_owning_objects_says_what_it_owns() {
    create("drop_owns", OID, "user", false, false);
    run("CREATE TABLE drop_owns_table (x int)");
    run("ALTER TABLE drop_owns_table OWNER TO drop_owns");
    let (message, detail, _) = error_of("SELECT pgaadauth_drop_principal('drop_owns')");
    assert!(message.contains("depend on it"), "message: {message}");
    assert!(
        detail.contains("owner of table public.drop_owns_table"),
        "detail: {detail}"
    );
    assert!(role_exists("drop_owns"));
    assert!(label_of("drop_owns").is_some());
}

#[pg_test(error = "permission denied to manage role \"su_drop\"")]
fn drop_refuses_superuser_target_for_non_superuser_admin() {
    run("CREATE ROLE su_drop SUPERUSER");
    run(&format!(
        "SECURITY LABEL FOR pgaadauth ON ROLE su_drop IS 'aadauth,oid={OID},type=user'"
    ));
    make_admin("drop_admin_al");
    set_role("drop_admin_al");
    drop_principal("su_drop");
}

#[pg_test(error = "permission denied for function pgaadauth_drop_principal")]
fn drop_refused_for_non_admin() {
    create("drop_target", OID, "user", false, false);
    run("CREATE ROLE drop_nobody NOLOGIN");
    set_role("drop_nobody");
    drop_principal("drop_target");
}

// ---------------------------------------------------------------------------------------------
// pgaadauth_list_principals

#[pg_test]
fn list_all_and_admins_only() {
    create("list_user", OID, "user", false, true);
    create("list_admin", OID2, "group", true, false);
    assert!(listed("list_user", false));
    assert!(listed("list_admin", false));
    assert!(!listed("list_user", true));
    assert!(listed("list_admin", true));
    // Ordinary roles are not principals.
    run("CREATE ROLE list_plain LOGIN");
    assert!(!listed("list_plain", false));
    assert!(!listed("postgres", false));
}

#[pg_test]
fn list_row_values() {
    create("list_row_user", OID_UPPER, "user", false, true);
    create("list_row_admin", OID2, "service", true, false);
    let row = |name: &str| {
        text(&format!(
            "SELECT concat_ws('|', rolname, principaltype, objectid, tenantid, ismfa, isadmin) \
             FROM pgaadauth_list_principals(false) WHERE rolname = {}",
            lit(name)
        ))
    };
    assert_eq!(
        row("list_row_user"),
        Some(format!("list_row_user|user|{OID}|{TENANT}|1|0"))
    );
    assert_eq!(
        row("list_row_admin"),
        Some(format!("list_row_admin|service|{OID2}|{TENANT}|0|1"))
    );
}

#[pg_test]
fn list_result_columns_and_types() {
    assert_eq!(
        text("SELECT pg_get_function_result('pgaadauth_list_principals(boolean)'::regprocedure)").as_deref(),
        Some("TABLE(rolname name, principaltype text, objectid text, tenantid text, ismfa integer, isadmin integer)")
    );
    assert_eq!(
        text(
            "SELECT pg_get_function_arguments('pgaadauth_list_principals(boolean)'::regprocedure)"
        )
        .as_deref(),
        Some("isadminvalue boolean")
    );
    create("list_typed", OID, "user", false, false);
    assert_eq!(
        text(
            "SELECT concat_ws(',', pg_typeof(rolname), pg_typeof(principaltype), pg_typeof(objectid), \
                    pg_typeof(tenantid), pg_typeof(ismfa), pg_typeof(isadmin)) \
             FROM pgaadauth_list_principals(false) WHERE rolname = 'list_typed'"
        )
        .as_deref(),
        Some("name,text,text,text,integer,integer")
    );
}

#[pg_test]
fn list_tenant_is_the_setting() {
    create("list_tenant", OID, "user", false, false);
    assert!(boolean(
        "SELECT tenantid = current_setting('aad_auth.tenant_id') \
         FROM pgaadauth_list_principals(false) WHERE rolname = 'list_tenant'"
    ));
    assert_eq!(
        text("SELECT current_setting('aad_auth.tenant_id')").as_deref(),
        Some(TENANT)
    );
}

#[pg_test]
fn list_skips_roles_with_unparsable_labels() {
    // A label can only be written through the provider, which parses it; one written while
    // aad_auth was not loaded may still be malformed. Simulate it by writing the catalog.
    run("CREATE ROLE list_broken LOGIN");
    run("INSERT INTO pg_catalog.pg_shseclabel VALUES \
         ((SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'list_broken'), \
          'pg_catalog.pg_authid'::regclass, 'pgaadauth', 'garbage')");
    create("list_fine", OID, "user", false, false);
    assert!(!listed("list_broken", false));
    assert!(listed("list_fine", false));
}

#[pg_test(error = "permission denied for function pgaadauth_list_principals")]
fn list_refused_for_non_admin() {
    run("CREATE ROLE list_nobody NOLOGIN");
    set_role("list_nobody");
    run("SELECT * FROM pgaadauth_list_principals(false)");
}

// ---------------------------------------------------------------------------------------------
// a non-superuser admin

#[pg_test]
fn admin_can_create_list_update_and_drop() {
    make_admin("adm_olga");
    set_role("adm_olga");
    assert!(!boolean(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
    ));
    assert_eq!(
        create("by_admin@contoso.com", OID, "user", false, false),
        "Created role for \"by_admin@contoso.com\""
    );
    assert_eq!(
        create("admin_by_admin", OID2, "user", true, false),
        "Created role for \"admin_by_admin\""
    );
    assert!(listed("by_admin@contoso.com", false));
    assert!(listed("admin_by_admin", true));
    assert_eq!(
        update("by_admin@contoso.com", OID2, "user", false, true),
        "Updated role for \"by_admin@contoso.com\""
    );
    assert_eq!(
        drop_principal("by_admin@contoso.com"),
        "Dropped role for \"by_admin@contoso.com\""
    );
    assert_eq!(
        drop_principal("admin_by_admin"),
        "Dropped role for \"admin_by_admin\""
    );
    // The caller's identity is restored after each call.
    assert_eq!(
        text("SELECT current_user::text").as_deref(),
        Some("adm_olga")
    );
    run("RESET ROLE");
    assert!(!role_exists("by_admin@contoso.com"));
    assert!(!role_exists("admin_by_admin"));
}

#[pg_test]
fn admin_principal_can_manage_principals() {
    // A principal created with isAdmin = true is itself an admin.
    create("admin_principal", OID, "user", true, false);
    set_role("admin_principal");
    assert_eq!(
        create("made_by_principal", OID2, "group", false, false),
        "Created role for \"made_by_principal\""
    );
    assert_eq!(
        drop_principal("made_by_principal"),
        "Dropped role for \"made_by_principal\""
    );
}

#[pg_test]
fn admin_membership_without_createrole_is_enough_for_the_functions() {
    run("CREATE ROLE adm_member NOLOGIN");
    run("GRANT azure_pg_admin TO adm_member");
    set_role("adm_member");
    create("by_member", OID, "user", false, false);
    assert_eq!(
        drop_principal("by_member"),
        "Dropped role for \"by_member\""
    );
}

// ---------------------------------------------------------------------------------------------
// the pgaadauth label provider

#[pg_test(
    error = "invalid pgaadauth label: label does not start with \"aadauth\"; expected \"aadauth,oid=<object id>,type=<user|group|service>[,admin][,mfa]\""
)]
fn label_garbage_refused() {
    run("CREATE ROLE lbl_garbage");
    run("SECURITY LABEL FOR pgaadauth ON ROLE lbl_garbage IS 'garbage'");
}

#[pg_test(
    error = "invalid pgaadauth label: \"nope\" is not an object id; an object id is a GUID such as 00000000-0000-0000-0000-000000000000"
)]
fn label_bad_oid_refused() {
    run("CREATE ROLE lbl_badoid");
    run("SECURITY LABEL FOR pgaadauth ON ROLE lbl_badoid IS 'aadauth,oid=nope,type=user'");
}

#[pg_test(
    error = "invalid pgaadauth label: label has no type; expected \"aadauth,oid=<object id>,type=<user|group|service>[,admin][,mfa]\""
)]
fn label_missing_type_refused() {
    run("CREATE ROLE lbl_notype");
    run(&format!(
        "SECURITY LABEL FOR pgaadauth ON ROLE lbl_notype IS 'aadauth,oid={OID}'"
    ));
}

#[pg_test]
fn label_valid_accepted_and_makes_a_principal() {
    run("CREATE ROLE lbl_valid LOGIN");
    let label = format!("aadauth,oid={OID},type=group,admin,mfa");
    run(&format!(
        "SECURITY LABEL FOR pgaadauth ON ROLE lbl_valid IS {}",
        lit(&label)
    ));
    assert_eq!(label_of("lbl_valid"), Some(label));
    assert!(listed("lbl_valid", true));
    assert_eq!(
        drop_principal("lbl_valid"),
        "Dropped role for \"lbl_valid\""
    );
}

#[pg_test]
fn label_removed_with_null() {
    create("lbl_removed", OID, "user", false, false);
    run("SECURITY LABEL FOR pgaadauth ON ROLE lbl_removed IS NULL");
    assert_eq!(label_of("lbl_removed"), None);
    assert!(!listed("lbl_removed", false));
    let (message, _, _) = error_of("SELECT pgaadauth_drop_principal('lbl_removed')");
    assert_eq!(
        message,
        "role \"lbl_removed\" is not a Microsoft Entra ID principal"
    );
}

#[pg_test(error = "pgaadauth labels can be set on roles only")]
fn label_on_table_refused() {
    run("CREATE TABLE lbl_table (x int)");
    run(&format!(
        "SECURITY LABEL FOR pgaadauth ON TABLE lbl_table IS 'aadauth,oid={OID},type=user'"
    ));
}

#[pg_test(error = "permission denied to set or remove a pgaadauth label")]
fn label_refused_for_non_admin() {
    // ADMIN OPTION on the target passes PostgreSQL's own check (CREATEROLE alone does on 15,
    // not from 16 on); the provider still refuses.
    run("CREATE ROLE lbl_target");
    run("CREATE ROLE lbl_nobody NOLOGIN CREATEROLE");
    run("GRANT lbl_target TO lbl_nobody WITH ADMIN OPTION");
    set_role("lbl_nobody");
    run(&format!(
        "SECURITY LABEL FOR pgaadauth ON ROLE lbl_target IS 'aadauth,oid={OID},type=user'"
    ));
}

#[pg_test(error = "permission denied to set or remove a pgaadauth label")]
fn label_removal_refused_for_non_admin() {
    create("lbl_keep", OID, "user", false, false);
    run("CREATE ROLE lbl_remover NOLOGIN CREATEROLE");
    run("GRANT lbl_keep TO lbl_remover WITH ADMIN OPTION");
    set_role("lbl_remover");
    run("SECURITY LABEL FOR pgaadauth ON ROLE lbl_keep IS NULL");
}

#[pg_test]
fn label_set_by_admin() {
    run("CREATE ROLE lbl_by_admin LOGIN");
    make_admin("lbl_admin");
    run("GRANT lbl_by_admin TO lbl_admin WITH ADMIN OPTION");
    set_role("lbl_admin");
    run(&format!(
        "SECURITY LABEL FOR pgaadauth ON ROLE lbl_by_admin IS 'aadauth,oid={OID},type=user'"
    ));
    run("RESET ROLE");
    assert_eq!(
        label_of("lbl_by_admin"),
        Some(format!("aadauth,oid={OID},type=user"))
    );
}

/// `SECURITY LABEL ... ON ROLE` on a superuser by a non-superuser admin is refused by
/// PostgreSQL's own ownership check ("must be superuser" on 15, "permission denied ... must
/// have the SUPERUSER attribute" from 16 on) before the provider's own check runs; either way
/// the superuser stays unbound.
#[pg_test]
fn label_on_superuser_refused_for_admin() {
    run("CREATE ROLE lbl_su SUPERUSER");
    make_admin("lbl_admin_su");
    set_role("lbl_admin_su");
    let (message, detail, _) = error_of(&format!(
        "SECURITY LABEL FOR pgaadauth ON ROLE lbl_su IS 'aadauth,oid={OID},type=user'"
    ));
    run("RESET ROLE");
    let said = format!("{message} {detail}").to_lowercase();
    assert!(said.contains("superuser"), "{message} / {detail}");
    assert_eq!(label_of("lbl_su"), None);
}

// ---------------------------------------------------------------------------------------------
// the aad_auth.* settings

#[pg_test]
fn guc_defaults() {
    let show = |name: &str| text(&format!("SHOW {name}")).unwrap_or_default();
    assert_eq!(show("aad_auth.clock_skew"), "5min");
    assert_eq!(show("aad_auth.jwks_refresh_interval"), "1h");
    assert_eq!(show("aad_auth.jwks_min_refresh_interval"), "5min");
    assert_eq!(show("aad_auth.password_auth"), "on");
    assert_eq!(show("aad_auth.log_logins"), "on");
    assert_eq!(
        show("aad_auth.authority"),
        "https://login.microsoftonline.com"
    );
    assert_eq!(show("aad_auth.issuers"), "");
    assert_eq!(show("aad_auth.jwks_uri"), "");
    let audiences = show("aad_auth.audiences");
    let audiences: Vec<&str> = audiences.split(',').map(str::trim).collect();
    assert!(
        audiences.contains(&"https://ossrdbms-aad.database.windows.net"),
        "{audiences:?}"
    );
    assert!(
        audiences.contains(&"https://ossrdbms-aad.database.windows.net/"),
        "{audiences:?}"
    );
    assert!(
        audiences.contains(&"123cd850-d9df-40bd-94d5-c9f07b7fa203"),
        "{audiences:?}"
    );
    // From the test configuration (lib.rs, pg_test::postgresql_conf_options).
    assert_eq!(show("aad_auth.tenant_id"), TENANT);
    assert_eq!(show("aad_auth.session_lifetime"), "unlimited");
    assert_eq!(show("aad_auth.session_grace"), "5min");
    assert_eq!(show("aad_auth.revoke_live_sessions"), "off");
    assert_eq!(show("aad_auth.sign_in_stats_max"), "1000");
    // Every setting is reloadable, not settable in a session; but the database group sync's
    // worker connects to and the size of the sign-in statistics, which take a restart.
    assert_eq!(
        text(
            "SELECT string_agg(DISTINCT context, ',') FROM pg_catalog.pg_settings \
             WHERE (name LIKE 'aad\\_auth.%' OR name = 'pgaadauth.enable_group_sync') \
               AND name NOT IN ('aad_auth.group_sync_database', 'aad_auth.sign_in_stats_max')"
        )
        .as_deref(),
        Some("sighup")
    );
    assert_eq!(
        text(
            "SELECT string_agg(context, ',') FROM pg_catalog.pg_settings \
             WHERE name IN ('aad_auth.group_sync_database', 'aad_auth.sign_in_stats_max')"
        )
        .as_deref(),
        Some("postmaster,postmaster")
    );
    assert_eq!(
        text("SELECT unit FROM pg_catalog.pg_settings WHERE name = 'aad_auth.clock_skew'")
            .as_deref(),
        Some("s")
    );
}

#[pg_test(error = "parameter \"aad_auth.session_lifetime\" cannot be changed now")]
fn guc_session_lifetime_not_settable_in_session() {
    run("SET aad_auth.session_lifetime = 'unlimited'");
}

#[pg_test]
fn sessions_and_stats_functions_are_for_admins_only() {
    for f in [
        "aad_auth_sign_in_stats()",
        "aad_auth_sign_in_stats_rows()",
        "aad_auth_reset_sign_in_stats()",
        "aad_auth_sessions()",
        "aad_auth_sessions_rows()",
    ] {
        assert!(
            !boolean(&format!(
                "SELECT has_function_privilege('public', 'pg_catalog.{f}', 'EXECUTE')"
            )),
            "{f} is executable by PUBLIC"
        );
        assert!(
            boolean(&format!(
                "SELECT has_function_privilege('azure_pg_admin', 'pg_catalog.{f}', 'EXECUTE')"
            )),
            "{f} is not granted to azure_pg_admin"
        );
    }
    run("CREATE ROLE nosy LOGIN");
    set_role("nosy");
    let (message, _, _) = error_of("SELECT * FROM aad_auth_sessions()");
    assert!(
        message.contains("permission denied for function aad_auth_sessions"),
        "{message}"
    );
    let (message, _, _) = error_of("SELECT aad_auth_reset_sign_in_stats()");
    assert!(
        message.contains("permission denied for function aad_auth_reset_sign_in_stats"),
        "{message}"
    );
}

#[pg_test]
fn sessions_and_stats_result_columns() {
    // RETURNS TABLE yields a record: read the declared columns from proargnames instead.
    let declared = |f: &str| {
        text(&format!(
            "SELECT string_agg(n || ' ' || format_type(t, NULL), ', ' ORDER BY i) \
             FROM pg_catalog.pg_proc p, \
                  unnest(p.proargnames, p.proallargtypes::oid[], p.proargmodes::text[]) \
                  WITH ORDINALITY AS x(n, t, m, i) \
             WHERE p.oid = 'pg_catalog.{f}'::regprocedure AND m = 't'"
        ))
    };
    assert_eq!(
        declared("aad_auth_sign_in_stats()").as_deref(),
        Some("rolname name, accepted bigint, refused bigint, refused_by jsonb, last_accepted timestamp with time zone, last_refused timestamp with time zone")
    );
    assert_eq!(
        declared("aad_auth_sessions()").as_deref(),
        Some("pid integer, rolname name, oid text, principal_type text, name text, tenant text, token_expires timestamp with time zone, method text")
    );
    // This session came in as a skip role over TCP: no token, so not listed.
    assert_eq!(
        text("SELECT count(*)::text FROM aad_auth_sessions()").as_deref(),
        Some("0")
    );
}

#[pg_test(error = "parameter \"aad_auth.tenant_id\" cannot be changed now")]
fn guc_tenant_not_settable_in_session() {
    run("SET aad_auth.tenant_id = 'not-a-guid'");
}

#[pg_test(error = "parameter \"aad_auth.password_auth\" cannot be changed now")]
fn guc_password_auth_not_settable_in_session() {
    run("SET aad_auth.password_auth = off");
}

#[pg_test(error = "invalid configuration parameter name \"aad_auth.bogus\"")]
fn guc_prefix_is_reserved() {
    run("SET aad_auth.bogus = 1");
}

#[pg_test(error = "invalid value for parameter \"aad_auth.tenant_id\": \"not-a-guid\"")]
fn guc_tenant_check_hook_refuses_non_guid() {
    run("SELECT tests.aad_validate_setting('aad_auth.tenant_id', 'not-a-guid')");
}

#[pg_test]
fn guc_check_hooks_detail_and_accept() {
    let validate = |name: &str, value: &str| {
        format!(
            "SELECT tests.aad_validate_setting({}, {})",
            lit(name),
            lit(value)
        )
    };
    let accepts = |name: &str, value: &str| boolean(&validate(name, value));

    let (message, detail, _) = error_of(&validate("aad_auth.tenant_id", "not-a-guid"));
    assert_eq!(
        message,
        "invalid value for parameter \"aad_auth.tenant_id\": \"not-a-guid\""
    );
    assert!(
        detail.contains("must be the tenant's id, a GUID"),
        "detail: {detail}"
    );
    assert!(accepts(
        "aad_auth.tenant_id",
        "00000000-0000-0000-0000-000000000000"
    ));
    assert!(accepts("aad_auth.tenant_id", ""));

    let (message, detail, _) =
        error_of(&validate("aad_auth.authority", "http://login.example.com"));
    assert_eq!(
        message,
        "invalid value for parameter \"aad_auth.authority\": \"http://login.example.com\""
    );
    assert!(detail.contains("https://"), "detail: {detail}");
    assert!(accepts(
        "aad_auth.authority",
        "https://login.microsoftonline.us"
    ));
    assert!(accepts("aad_auth.authority", "http://127.0.0.1:8080"));
    assert!(accepts("aad_auth.jwks_uri", "http://localhost:9999/keys"));
    let (_, detail, _) = error_of(&validate("aad_auth.jwks_uri", "ftp://keys.example.com"));
    assert!(detail.contains("https://"), "detail: {detail}");

    let (message, detail, _) = error_of(&validate("aad_auth.audiences", "a,,b"));
    assert_eq!(
        message,
        "invalid value for parameter \"aad_auth.audiences\": \"a,,b\""
    );
    assert!(
        detail.starts_with("the list has an empty item"),
        "detail: {detail}"
    );
    assert!(accepts(
        "aad_auth.audiences",
        "api://my-app, https://ossrdbms-aad.database.windows.net"
    ));
    let (_, detail, _) = error_of(&validate("aad_auth.issuers", "x,"));
    assert!(
        detail.starts_with("the list has an empty item"),
        "detail: {detail}"
    );

    let (message, detail, _) = error_of(&validate("aad_auth.skip_roles", "a b"));
    assert_eq!(
        message,
        "invalid value for parameter \"aad_auth.skip_roles\": \"a b\""
    );
    assert!(
        detail.starts_with("names must be separated by commas"),
        "detail: {detail}"
    );
    assert!(accepts("aad_auth.skip_roles", "postgres, \"Mixed Case\""));

    // Validation only: nothing changed.
    assert_eq!(text("SHOW aad_auth.tenant_id").as_deref(), Some(TENANT));
}

#[pg_test]
fn guc_durations_take_units() {
    let validate = |name: &str, value: &str| {
        format!(
            "SELECT tests.aad_validate_setting({}, {})",
            lit(name),
            lit(value)
        )
    };
    for value in ["1s", "5min", "1h", "300"] {
        assert!(boolean(&validate("aad_auth.clock_skew", value)), "{value}");
    }
    assert!(boolean(&validate("aad_auth.jwks_refresh_interval", "1h")));
    let (message, _, _) = error_of(&validate("aad_auth.clock_skew", "2h"));
    assert!(
        message.contains("is outside the valid range"),
        "message: {message}"
    );
    let (message, _, _) = error_of(&validate("aad_auth.clock_skew", "soon"));
    assert!(
        message.contains("invalid value for parameter"),
        "message: {message}"
    );
}

// ---- admin power never exceeds PostgreSQL's own (issue #10) --------------------------------

#[pg_test(error = "permission denied to manage role \"adm_repl_t\"")]
fn update_refuses_replication_target_for_admin() {
    run("CREATE ROLE adm_repl_t LOGIN REPLICATION");
    run(&format!(
        "SECURITY LABEL FOR pgaadauth ON ROLE adm_repl_t IS 'aadauth,oid={OID},type=user'"
    ));
    make_admin("adm_repl_admin");
    set_role("adm_repl_admin");
    update("adm_repl_t", OID, "user", false, false);
}

#[pg_test(error = "permission denied to manage role \"adm_bypass_t\"")]
fn drop_refuses_bypassrls_target_for_admin() {
    run("CREATE ROLE adm_bypass_t LOGIN BYPASSRLS");
    run(&format!(
        "SECURITY LABEL FOR pgaadauth ON ROLE adm_bypass_t IS 'aadauth,oid={OID},type=user'"
    ));
    make_admin("adm_bypass_admin");
    set_role("adm_bypass_admin");
    drop_principal("adm_bypass_t");
}

#[pg_test(error = "permission denied to manage role \"adm_member_t\"")]
fn update_refuses_member_of_a_role_the_admin_lacks() {
    create("adm_member_t", OID, "user", false, false);
    run("GRANT pg_execute_server_program TO adm_member_t");
    make_admin("adm_member_admin");
    set_role("adm_member_admin");
    update("adm_member_t", OID, "user", false, false);
}

#[pg_test(error = "permission denied to manage role \"adm_plain_t\"")]
fn update_refuses_unlabelled_role_for_admin_without_admin_option() {
    run("CREATE ROLE adm_plain_t LOGIN");
    make_admin("adm_plain_admin");
    set_role("adm_plain_admin");
    update("adm_plain_t", OID, "user", false, false);
}

#[pg_test]
fn update_binds_unlabelled_role_for_admin_with_admin_option() {
    run("CREATE ROLE adm_opt_t LOGIN PASSWORD 'secret-pw'");
    make_admin("adm_opt_admin");
    run("GRANT adm_opt_t TO adm_opt_admin WITH ADMIN OPTION");
    set_role("adm_opt_admin");
    assert_eq!(
        update("adm_opt_t", OID, "user", false, false),
        "Updated role for \"adm_opt_t\""
    );
    run("RESET ROLE");
    // bound roles sign in with tokens only: the stored password is gone
    assert!(boolean(
        "SELECT rolpassword IS NULL FROM pg_catalog.pg_authid WHERE rolname = 'adm_opt_t'"
    ));
}

#[pg_test]
fn admin_manages_an_ordinary_entra_principal() {
    create("adm_ok_t", OID, "user", false, false);
    make_admin("adm_ok_admin");
    set_role("adm_ok_admin");
    assert_eq!(
        update("adm_ok_t", OID_UPPER, "user", false, true),
        "Updated role for \"adm_ok_t\""
    );
    assert_eq!(drop_principal("adm_ok_t"), "Dropped role for \"adm_ok_t\"");
}

#[pg_test(error = "permission denied to manage role \"adm_self\"")]
fn admin_without_createrole_cannot_make_itself_admin() {
    run("CREATE ROLE adm_self LOGIN");
    run("GRANT azure_pg_admin TO adm_self");
    run(&format!(
        "SECURITY LABEL FOR pgaadauth ON ROLE adm_self IS 'aadauth,oid={OID},type=user'"
    ));
    set_role("adm_self");
    update("adm_self", OID, "user", true, false);
}

#[pg_test(error = "permission denied to manage role \"adm_new_admin\"")]
fn admin_without_createrole_cannot_create_admins() {
    run("CREATE ROLE adm_weak LOGIN");
    run("GRANT azure_pg_admin TO adm_weak");
    set_role("adm_weak");
    create("adm_new_admin", OID, "user", true, false);
}

#[pg_test(error = "permission denied to manage role \"adm_lbl_t\"")]
fn direct_label_on_a_member_of_a_superuser_role_refused_for_admin() {
    run("CREATE ROLE adm_lbl_t LOGIN");
    run("GRANT postgres TO adm_lbl_t");
    make_admin("adm_lbl_admin");
    // PostgreSQL 16+ lets SECURITY LABEL through only with ADMIN OPTION; without membership
    // (INHERIT FALSE, SET FALSE) the admin has none of the target's privileges. On 15
    // CREATEROLE is enough for PostgreSQL's own check.
    if !cfg!(feature = "pg15") {
        run("GRANT adm_lbl_t TO adm_lbl_admin WITH ADMIN OPTION, INHERIT FALSE, SET FALSE");
    }
    set_role("adm_lbl_admin");
    run(&format!(
        "SECURITY LABEL FOR pgaadauth ON ROLE adm_lbl_t IS 'aadauth,oid={OID},type=user'"
    ));
}

#[pg_test]
fn create_and_update_clear_the_password() {
    create("pw_cleared", OID, "user", false, false);
    run("ALTER ROLE pw_cleared PASSWORD 'set-later'");
    update("pw_cleared", OID_UPPER, "user", false, false);
    assert!(boolean(
        "SELECT rolpassword IS NULL FROM pg_catalog.pg_authid WHERE rolname = 'pw_cleared'"
    ));
}

fn validates(name: &str, value: &str) -> bool {
    boolean(&format!(
        "SELECT tests.aad_validate_setting({}, {})",
        lit(name),
        lit(value)
    ))
}

#[pg_test]
fn transport_and_failure_delay_settings_validate() {
    for ok in ["on", "strict", "off"] {
        assert!(validates("aad_auth.require_secure_transport", ok));
    }
    assert!(validates("aad_auth.failure_delay", "2s"));
    assert!(validates("aad_auth.failure_delay", "10000"));
    assert!(validates("aad_auth.jwks_uri", "http://127.0.0.1:8080/keys"));
}

#[pg_test]
fn failure_delay_is_at_most_ten_seconds() {
    // PostgreSQL 18 writes the range with its unit ("0 ms .. 10000 ms"), 15 without.
    let (message, _, _) = error_of(&format!(
        "SELECT tests.aad_validate_setting({}, {})",
        lit("aad_auth.failure_delay"),
        lit("10001ms")
    ));
    assert!(
        message.starts_with(
            "10001 ms is outside the valid range for parameter \"aad_auth.failure_delay\" (0"
        ) && message.contains("10000"),
        "{message}"
    );
}

#[pg_test(error = "invalid value for parameter \"aad_auth.require_secure_transport\": \"maybe\"")]
fn require_secure_transport_refuses_other_values() {
    validates("aad_auth.require_secure_transport", "maybe");
}

#[pg_test(error = "invalid value for parameter \"aad_auth.jwks_uri\": \"http://127.0.0.1@evil.example/\"")]
fn jwks_uri_refuses_userinfo() {
    validates("aad_auth.jwks_uri", "http://127.0.0.1@evil.example/");
}
