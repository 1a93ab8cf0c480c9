//! The SQL functions Azure Database for PostgreSQL offers to manage Entra ID principals,
//! with Azure's names, signatures and return values.
//!
//! They run as the caller (SECURITY INVOKER), check that the caller is a superuser or an
//! aad_auth admin, and that the caller may manage the target role (admin power never exceeds
//! PostgreSQL's own: `seclabel::may_manage`); then they do the catalog work as the bootstrap
//! superuser for the duration of the statement only: creating roles, labelling them, clearing
//! their passwords and granting `azure_pg_admin`.

use crate::directory::{self, Answer, Question};
use crate::gucs;
use crate::seclabel::{self, ADMIN_ROLE, PROVIDER};
use aad_auth_core::escape::quoted;
use aad_auth_core::{Guid, Label, PrincipalType};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};
use std::ffi::CString;

/// Longest role name PostgreSQL keeps (NAMEDATALEN - 1 bytes); longer ones would be truncated.
const MAX_ROLE_NAME: usize = 63;
/// How long `pgaadauth_create_principal` waits for the directory: a look-up is up to three
/// Graph requests of at most 10 s each, after any key fetch the worker is doing.
const DIRECTORY_WAIT: std::time::Duration = std::time::Duration::from_secs(45);

pub(crate) fn fail(code: PgSqlErrorCode, message: String, hint: &str) -> ! {
    let mut report = ErrorReport::new(code, message, "aad_auth");
    if !hint.is_empty() {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) returned")
}

fn required<T>(value: Option<T>, name: &str) -> T {
    value.unwrap_or_else(|| {
        fail(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{name} must not be null"),
            "",
        )
    })
}

/// The caller's role; refuses unless it is a superuser or an aad_auth admin.
pub(crate) fn require_admin(function: &str) -> pg_sys::Oid {
    // SAFETY: inside a function call, GetUserId is the invoking role.
    let caller = unsafe { pg_sys::GetUserId() };
    if !seclabel::is_admin(caller) {
        fail(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for function {function}"),
            "Only a superuser or a Microsoft Entra ID admin (a member of azure_pg_admin) may manage Entra ID principals.",
        );
    }
    caller
}

/// [`require_admin`] for the functions that change roles, which a hot standby cannot: refused
/// there with PostgreSQL's read-only SQLSTATE (25006) and a hint to use the primary, before
/// anything is attempted.
fn require_admin_on_primary(function: &str) -> pg_sys::Oid {
    let caller = require_admin(function);
    // SAFETY: a plain read of the server's state.
    if unsafe { pg_sys::RecoveryInProgress() } {
        fail(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("cannot execute {function} on a hot standby"),
            "Manage principals on the primary: roles and their labels replicate to the standbys.",
        );
    }
    caller
}

fn check_role_name(name: &str) {
    if name.is_empty() {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_NAME,
            "roleName must not be empty".into(),
            "",
        );
    }
    if name.len() > MAX_ROLE_NAME {
        fail(
            PgSqlErrorCode::ERRCODE_NAME_TOO_LONG,
            format!("role name {} is {} bytes long; PostgreSQL role names are at most {MAX_ROLE_NAME} bytes", quoted(name.as_bytes()), name.len()),
            "Choose a shorter role name; sign-in matches the object id, not the name.",
        );
    }
}

fn parse_label(objectid: &str, objecttype: &str, admin: bool, mfa: bool) -> Label {
    let oid = objectid.trim().parse::<Guid>().unwrap_or_else(|_| {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("objectId {} is not an Entra ID object id", quoted(objectid.as_bytes())),
            "An object id is a GUID such as 00000000-0000-0000-0000-000000000000 (see the object's Overview page in the Entra admin center).",
        )
    });
    let kind = objecttype
        .trim()
        .parse::<PrincipalType>()
        .unwrap_or_else(|e| {
            fail(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "objectType: {}",
                    aad_auth_core::escape::one_line(&e.to_string())
                ),
                "",
            )
        });
    Label {
        oid,
        kind,
        admin,
        mfa,
    }
}

/// Runs `f` as the bootstrap superuser, restoring the caller's identity afterwards (an error
/// restores it too, through transaction abort).
pub(crate) fn as_superuser<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(pg_sys::Oid, i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: restores the identity saved below.
            unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) };
        }
    }
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    // SAFETY: plain reads and a switch of the current user id, as SECURITY DEFINER does.
    let _restore = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        Restore(user, context)
    };
    f()
}

pub(crate) fn run(sql: &str) {
    if let Err(e) = Spi::run(sql) {
        fail(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("aad_auth: {e}"),
            "",
        );
    }
}

/// `azure_pg_admin`, as an SQL identifier.
fn admin_role() -> String {
    quote_identifier(ADMIN_ROLE.to_str().unwrap_or("azure_pg_admin"))
}

fn ensure_admin_role() {
    if seclabel::role_oid(ADMIN_ROLE).is_none() {
        run(&format!("CREATE ROLE {} NOLOGIN", admin_role()));
    }
}

/// A principal signs in with tokens only: no stored password (the hook also vetoes password
/// logins of labelled roles on every host line).
fn clear_password(name: &str) {
    run(&format!(
        "ALTER ROLE {} PASSWORD NULL",
        quote_identifier(name)
    ));
}

fn set_label(name: &str, label: &Label) {
    run(&format!(
        "SECURITY LABEL FOR {} ON ROLE {} IS {}",
        PROVIDER.to_str().unwrap_or("pgaadauth"),
        quote_identifier(name),
        quote_literal(label.to_string())
    ));
}

fn grant_admin(name: &str) {
    ensure_admin_role();
    let role = quote_identifier(name);
    run(&format!("ALTER ROLE {role} CREATEROLE CREATEDB"));
    run(&format!("GRANT {} TO {role}", admin_role()));
}

fn revoke_admin(name: &str) {
    let role = quote_identifier(name);
    run(&format!("ALTER ROLE {role} NOCREATEROLE NOCREATEDB"));
    if seclabel::role_oid(ADMIN_ROLE).is_some() {
        run(&format!("REVOKE {} FROM {role}", admin_role()));
    }
}

fn lookup(name: &str) -> Option<pg_sys::Oid> {
    seclabel::role_oid(&CString::new(name).ok()?)
}

/// The role to change: it must exist.
fn existing_role(name: &str) -> pg_sys::Oid {
    lookup(name).unwrap_or_else(|| {
        fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("role {} does not exist", quoted(name.as_bytes())),
            "",
        )
    })
}

/// Refuses to make `name` an admin (CREATEROLE, CREATEDB, azure_pg_admin) for a caller that
/// lacks CREATEROLE or CREATEDB itself.
fn ensure_may_grant_admin(name: &str, label: &Label) {
    if !label.admin {
        return;
    }
    // SAFETY: inside a function call, GetUserId is the invoking role.
    let caller = unsafe { pg_sys::GetUserId() };
    if let Err(denied) = seclabel::may_grant_admin(&seclabel::caller_facts(caller)) {
        seclabel::refuse_manage(name.as_bytes(), &denied);
    }
}

/// Refuses unless `caller` may manage `role` (`seclabel::may_manage`).
fn ensure_may_manage(caller: pg_sys::Oid, role: pg_sys::Oid, name: &str) {
    if let Err(denied) = seclabel::may_manage(caller, role) {
        seclabel::refuse_manage(name.as_bytes(), &denied);
    }
}

/// Creates a LOGIN role bound to the Entra object `objectId` of type `objectType`
/// (`user`, `group` or `service`).
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn pgaadauth_create_principal_with_oid(
    rolename: Option<&str>,
    objectid: Option<&str>,
    objecttype: Option<&str>,
    isadmin: Option<bool>,
    ismfa: Option<bool>,
) -> String {
    require_admin_on_primary("pgaadauth_create_principal_with_oid");
    let name = required(rolename, "roleName");
    let label = parse_label(
        required(objectid, "objectId"),
        required(objecttype, "objectType"),
        required(isadmin, "isAdmin"),
        required(ismfa, "isMfa"),
    );
    check_role_name(name);
    create(name, &label)
}

/// Refuses a role name that is already taken.
fn ensure_new(name: &str) {
    if lookup(name).is_some() {
        fail(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("role {} already exists", quoted(name.as_bytes())),
            "Use pgaadauth_update_principal_with_oid to bind an existing role to another object id.",
        );
    }
}

/// Creates the LOGIN role `name` bound by `label`.
fn create(name: &str, label: &Label) -> String {
    ensure_new(name);
    ensure_may_grant_admin(name, label);
    // SAFETY: inside a function call, GetUserId is the invoking role.
    let caller = unsafe { pg_sys::GetUserId() };
    as_superuser(|| {
        run(&format!("CREATE ROLE {} LOGIN", quote_identifier(name)));
        set_label(name, label);
        clear_password(name);
        if label.admin {
            grant_admin(name);
        }
        creator_keeps_admin_option(name, caller);
    });
    format!("Created role for \"{name}\"")
}

/// From PostgreSQL 16 on, a CREATEROLE role that creates a role gets ADMIN OPTION on it (not
/// its privileges), and needs it to ALTER or DROP the role. The functions create roles as the
/// bootstrap superuser, so an admin that is not a superuser is given what CREATE ROLE would
/// have given it — so that Azure's `DROP ROLE "<principal>"` and `ALTER ROLE` work for the
/// admin who created the principal, and no more than PostgreSQL's own rule gives.
fn creator_keeps_admin_option(name: &str, caller: pg_sys::Oid) {
    if cfg!(feature = "pg15") || seclabel::is_superuser(caller) {
        return;
    }
    // SAFETY: noerr = true; the caller's role exists (it is running this function).
    let creator = unsafe { pg_sys::GetUserNameFromId(caller, true) };
    if creator.is_null() {
        return;
    }
    // SAFETY: non-null and NUL-terminated.
    let creator = unsafe { std::ffi::CStr::from_ptr(creator) }.to_string_lossy();
    run(&format!(
        "GRANT {} TO {} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE",
        quote_identifier(name),
        quote_identifier(&creator)
    ));
}

/// Creates a role by Entra name: a user's UPN, or a group's or service principal's display
/// name (unique in the tenant), resolved through Microsoft Graph when a directory is configured.
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn pgaadauth_create_principal(
    rolename: Option<&str>,
    isadmin: Option<bool>,
    ismfa: Option<bool>,
) -> String {
    require_admin_on_primary("pgaadauth_create_principal");
    let name = required(rolename, "roleName");
    let (admin, mfa) = (required(isadmin, "isAdmin"), required(ismfa, "isMfa"));
    check_role_name(name);
    if gucs::directory().is_none() {
        fail(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "pgaadauth_create_principal cannot resolve names: no Microsoft Entra ID directory is configured on this server".into(),
            "Use pgaadauth_create_principal_with_oid(roleName, objectId, objectType, isAdmin, isMfa) with the object id from the Entra admin center or `az ad user show --id <upn> --query id`, or configure aad_auth.graph_client_id and aad_auth.graph_client_secret_file.",
        );
    }
    ensure_new(name);
    match directory::ask(&Question::Resolve(name.to_owned()), DIRECTORY_WAIT) {
        Ok(Answer::Resolved { oid, kind }) => create(
            name,
            &Label {
                oid,
                kind,
                admin,
                mfa,
            },
        ),
        Ok(Answer::Member(_)) => fail(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "unexpected directory answer".into(),
            "",
        ),
        Err(why) => fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!(
                "could not resolve {} in Microsoft Entra ID: {}",
                quoted(name.as_bytes()),
                aad_auth_core::escape::one_line(&why)
            ),
            "Use pgaadauth_create_principal_with_oid with the object id.",
        ),
    }
}

/// Rebinds an existing role to another Entra object, keeping its grants.
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn pgaadauth_update_principal_with_oid(
    rolename: Option<&str>,
    objectid: Option<&str>,
    objecttype: Option<&str>,
    isadmin: Option<bool>,
    ismfa: Option<bool>,
) -> String {
    let caller = require_admin_on_primary("pgaadauth_update_principal_with_oid");
    let name = required(rolename, "roleName");
    let label = parse_label(
        required(objectid, "objectId"),
        required(objecttype, "objectType"),
        required(isadmin, "isAdmin"),
        required(ismfa, "isMfa"),
    );
    let role = existing_role(name);
    ensure_may_manage(caller, role, name);
    ensure_may_grant_admin(name, &label);
    let was_admin = seclabel::label_text(role)
        .and_then(|t| t.parse::<Label>().ok())
        .is_some_and(|l| l.admin);
    as_superuser(|| {
        set_label(name, &label);
        clear_password(name);
        if label.admin {
            grant_admin(name);
        } else if was_admin {
            revoke_admin(name);
        }
    });
    format!("Updated role for \"{name}\"")
}

/// Drops a role bound to an Entra object; ordinary roles are refused.
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn pgaadauth_drop_principal(rolename: Option<&str>) -> String {
    let caller = require_admin_on_primary("pgaadauth_drop_principal");
    let name = required(rolename, "roleName");
    let role = existing_role(name);
    if seclabel::label_text(role).is_none() {
        fail(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!(
                "role {} is not a Microsoft Entra ID principal",
                quoted(name.as_bytes())
            ),
            "Drop ordinary roles with DROP ROLE.",
        );
    }
    ensure_may_manage(caller, role, name);
    as_superuser(|| run(&format!("DROP ROLE {}", quote_identifier(name))));
    format!("Dropped role for \"{name}\"")
}

/// The Entra ID principals: all of them, or only the admins when `isAdminValue` is true.
/// `pgaadauth_list_principals` wraps this with Azure's column types.
#[allow(clippy::type_complexity)]
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn aad_auth_principals(
    isadminvalue: Option<bool>,
) -> TableIterator<
    'static,
    (
        name!(rolname, String),
        name!(principaltype, String),
        name!(objectid, String),
        name!(tenantid, Option<String>),
        name!(ismfa, i32),
        name!(isadmin, i32),
    ),
> {
    require_admin("pgaadauth_list_principals");
    let only_admins = isadminvalue.unwrap_or(false);
    let tenant = gucs::tenant_id();
    let rows: Vec<(String, String)> = Spi::connect(|client| {
        client
            .select(
                "SELECT r.rolname::text, l.label FROM pg_catalog.pg_shseclabel l \
                 JOIN pg_catalog.pg_roles r ON r.oid = l.objoid \
                 WHERE l.provider = 'pgaadauth' AND l.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass \
                 ORDER BY 1",
                None,
                &[],
            )?
            .map(|row| Ok((row.get::<String>(1)?.unwrap_or_default(), row.get::<String>(2)?.unwrap_or_default())))
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("aad_auth: {e}"), ""));
    let principals: Vec<_> = rows
        .into_iter()
        .filter_map(|(role, text)| text.parse::<Label>().ok().map(|l| (role, l)))
        .filter(|(_, l)| l.admin || !only_admins)
        .map(|(role, l)| {
            (
                role,
                l.kind.as_str().to_owned(),
                l.oid.to_string(),
                tenant.clone(),
                i32::from(l.mfa),
                i32::from(l.admin),
            )
        })
        .collect();
    TableIterator::new(principals)
}

extension_sql!(
    r#"
-- The role that marks Entra ID admins, as on Azure. Its members manage Entra principals, so an
-- existing role of that name is adopted only when it is what this extension would have made:
-- NOLOGIN, no attributes, and no members but superusers and Entra admin principals (as after
-- DROP EXTENSION and CREATE EXTENSION again). Anything else was made by someone else, for
-- something else: refuse rather than hand its members admin power.
DO $$
DECLARE
    r pg_catalog.pg_roles%ROWTYPE;
    stranger name;
BEGIN
    SELECT * INTO r FROM pg_catalog.pg_roles WHERE rolname = 'azure_pg_admin';
    IF NOT FOUND THEN
        CREATE ROLE azure_pg_admin NOLOGIN;
        RETURN;
    END IF;
    IF r.rolcanlogin OR r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication
        OR r.rolbypassrls THEN
        RAISE EXCEPTION 'role "azure_pg_admin" already exists and is not one aad_auth can adopt'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'It can log in or has SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS; aad_auth makes its members Microsoft Entra ID admins.',
                  HINT = 'Rename or drop that role (or remove its attributes), then run CREATE EXTENSION aad_auth again.';
    END IF;
    SELECT a.rolname INTO stranger
    FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles a ON a.oid = m.member
    WHERE m.roleid = r.oid AND NOT a.rolsuper
      AND NOT EXISTS (
          SELECT 1 FROM pg_catalog.pg_shseclabel l
          WHERE l.objoid = a.oid AND l.provider = 'pgaadauth'
            AND l.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass
            AND l.label ~ ',admin(,|$)')
    ORDER BY 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'role "azure_pg_admin" already exists and is not one aad_auth can adopt'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = pg_catalog.format('Role %I is a member of it but is not a Microsoft Entra ID admin principal; aad_auth makes every member of azure_pg_admin an admin.', stranger),
                  HINT = 'Revoke azure_pg_admin from the roles that should not manage Entra ID principals (or rename the role), then run CREATE EXTENSION aad_auth again.';
    END IF;
END
$$;

CREATE FUNCTION pgaadauth_list_principals(isAdminValue boolean)
RETURNS TABLE(rolname name, principaltype text, objectid text, tenantid text, ismfa int, isadmin int)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT p.rolname::name, p.principaltype, p.objectid, p.tenantid, p.ismfa, p.isadmin
    FROM @extschema@.aad_auth_principals(isAdminValue) AS p
$fn$;
"#,
    name = "list_principals",
    requires = [aad_auth_principals]
);
