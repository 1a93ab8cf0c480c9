//! The `pgaadauth` security label provider: the grammar, and who may bind which role.
//!
//! Admin power never exceeds PostgreSQL's own: a caller that is not a superuser may set or
//! remove a label only on a role it could not gain anything from (`aad_auth_core::admin`).
//! The SQL API (`api.rs`) applies the same rule before it does its catalog work.

pub use aad_auth_core::admin::may_grant_admin;
use aad_auth_core::admin::{self, Caller, Denied, Target};
use aad_auth_core::escape::quoted;
use aad_auth_core::Label;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::ffi::{c_char, CStr};

/// The provider name Azure uses, so labels written there read the same here.
pub const PROVIDER: &CStr = c"pgaadauth";

/// The role that marks aad_auth admins (created by the extension if missing), as on Azure.
pub const ADMIN_ROLE: &CStr = c"azure_pg_admin";

/// Group sync's own provider: its mark on the roles it created or granted (`groupsync.rs`).
pub const SYNC_PROVIDER: &CStr = c"aad_auth_sync";

/// Registers the providers; called once from `_PG_init`.
pub fn init() {
    // SAFETY: the names are static C strings; the checks have the provider hook's signature.
    unsafe {
        pg_sys::register_label_provider(PROVIDER.as_ptr(), Some(check_label));
        pg_sys::register_label_provider(SYNC_PROVIDER.as_ptr(), Some(check_sync_label));
    }
}

/// The group sync's mark may be set by superusers only (the sync runs as one); it must parse.
#[pg_guard]
unsafe extern "C-unwind" fn check_sync_label(
    object: *const pg_sys::ObjectAddress,
    seclabel: *const c_char,
) {
    // SAFETY: PostgreSQL passes a valid object address; GetUserId needs a transaction.
    let (object, caller) = unsafe { (&*object, pg_sys::GetUserId()) };
    if object.classId != pg_sys::AuthIdRelationId {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "aad_auth_sync labels can be set on roles only"
        );
    }
    if !is_superuser(caller) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied to set or remove an aad_auth_sync label",
            "Only group sync (and superusers) mark the roles it manages."
        );
    }
    if !seclabel.is_null() {
        // SAFETY: a non-null label is a NUL-terminated string.
        let text = unsafe { CStr::from_ptr(seclabel) }.to_string_lossy();
        if let Err(e) = text.parse::<aad_auth_core::groupsync::Mark>() {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "invalid aad_auth_sync label: {}",
                    aad_auth_core::escape::one_line(&e)
                )
            );
        }
    }
}

fn role_address(role: pg_sys::Oid) -> pg_sys::ObjectAddress {
    pg_sys::ObjectAddress {
        classId: pg_sys::AuthIdRelationId,
        objectId: role,
        objectSubId: 0,
    }
}

/// The role's oid, if it exists: looked up by its exact bytes.
pub fn role_oid(name: &CStr) -> Option<pg_sys::Oid> {
    // SAFETY: name is NUL-terminated; missing_ok = true makes a missing role return InvalidOid.
    let oid = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The raw `pgaadauth` label of a role, if it has one.
pub fn label_text(role: pg_sys::Oid) -> Option<String> {
    let address = role_address(role);
    // SAFETY: address is a valid ObjectAddress; GetSecurityLabel returns a palloc'd string or null.
    let text = unsafe { pg_sys::GetSecurityLabel(&address, PROVIDER.as_ptr()) };
    // SAFETY: a non-null result is a NUL-terminated string.
    (!text.is_null()).then(|| {
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    })
}

/// The parsed label of the role named `name`: `None` for an ordinary (or missing) role,
/// `Some(Err)` for a label that does not parse.
pub fn role_label(name: &CStr) -> Option<Result<Label, String>> {
    let text = label_text(role_oid(name)?)?;
    Some(
        text.parse::<Label>()
            .map_err(|e| format!("label {}: {e}", quoted(text.as_bytes()))),
    )
}

/// Whether `role` may manage Entra ID principals: a superuser, or — in a database where the
/// extension is created — a member (with its privileges) of `azure_pg_admin`. Before
/// CREATE EXTENSION has checked (or made) `azure_pg_admin`, a role of that name that someone
/// else created confers nothing.
pub fn is_admin(role: pg_sys::Oid) -> bool {
    // SAFETY: plain catalog look-ups on valid oids and a static name.
    unsafe {
        pg_sys::superuser_arg(role)
            || (pg_sys::get_extension_oid(c"aad_auth".as_ptr(), true) != pg_sys::InvalidOid
                && role_oid(ADMIN_ROLE).is_some_and(|admin| pg_sys::has_privs_of_role(role, admin)))
    }
}

pub fn is_superuser(role: pg_sys::Oid) -> bool {
    // SAFETY: catalog look-up on a valid oid.
    unsafe { pg_sys::superuser_arg(role) }
}

/// A role the target is a member of (directly or not, inherited or not) whose privileges the
/// caller does not have: taking the target over would give the caller more than it has.
/// (Runs in the caller's session, with its search_path: every name is schema-qualified.)
/// `pg_database_owner` is left out: its membership is the ownership of the current database,
/// and ownership of objects, like any other grant on objects, is not a role's privilege here
/// (an admin manages the principals that own objects, as on Azure), nor should the answer
/// depend on the database the function is called from. Superuser roles are named first.
fn role_caller_lacks(caller: pg_sys::Oid, target: pg_sys::Oid) -> Option<String> {
    Spi::get_one_with_args::<String>(
        "SELECT r.rolname::text FROM pg_catalog.pg_roles r \
         WHERE r.oid OPERATOR(pg_catalog.<>) $1 \
         AND r.oid OPERATOR(pg_catalog.<>) 'pg_database_owner'::pg_catalog.regrole \
         AND pg_catalog.pg_has_role($1, r.oid, 'MEMBER') \
         AND NOT pg_catalog.pg_has_role($2, r.oid, 'USAGE') \
         ORDER BY r.rolsuper DESC, r.rolname LIMIT 1",
        &[target.into(), caller.into()],
    )
    .ok()
    .flatten()
}

/// Whether PostgreSQL itself would let `caller` set `target`'s password, in the rule of 16 and
/// later: itself, or CREATEROLE with ADMIN OPTION on the target. (Superusers are decided before
/// this.) On 15 the same rule applies, narrower than 15's own CREATEROLE, which reaches every
/// non-superuser role.
fn may_set_password(caller: pg_sys::Oid, target: pg_sys::Oid) -> bool {
    // SAFETY: catalog look-ups on valid oids.
    caller == target
        || unsafe {
            pg_sys::has_createrole_privilege(caller) && pg_sys::is_admin_of_role(caller, target)
        }
}

/// What the admin rules need to know about `caller`.
pub fn caller_facts(caller: pg_sys::Oid) -> Caller {
    // SAFETY: catalog look-ups on a valid oid.
    unsafe {
        Caller {
            superuser: is_superuser(caller),
            replication: pg_sys::has_rolreplication(caller),
            bypassrls: pg_sys::has_bypassrls_privilege(caller),
            createrole: pg_sys::has_createrole_privilege(caller),
            createdb: has_createdb(caller),
            may_set_password: false,
        }
    }
}

/// CREATEDB (rolcreatedb) of `role`.
fn has_createdb(role: pg_sys::Oid) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT r.rolcreatedb FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) $1",
        &[role.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// Whether `caller` may rebind, drop, label or unlabel `target` (see `aad_auth_core::admin`).
pub fn may_manage(caller: pg_sys::Oid, target: pg_sys::Oid) -> Result<(), Denied> {
    if is_superuser(caller) {
        return Ok(());
    }
    let mut caller_facts = caller_facts(caller);
    caller_facts.may_set_password = may_set_password(caller, target);
    // SAFETY: catalog look-ups on valid oids.
    let mut target_facts = unsafe {
        Target {
            superuser: is_superuser(target),
            replication: pg_sys::has_rolreplication(target),
            bypassrls: pg_sys::has_bypassrls_privilege(target),
            principal: label_text(target).is_some(),
            role_caller_lacks: None,
        }
    };
    if !target_facts.superuser {
        target_facts.role_caller_lacks = role_caller_lacks(caller, target);
    }
    admin::may_manage(&caller_facts, &target_facts)
}

/// Raises the 42501 error for a refused [`may_manage`].
pub fn refuse_manage(name: &[u8], denied: &Denied) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("permission denied to manage role {}", quoted(name)),
        "aad_auth",
    )
    .set_detail(denied.detail(name))
    .report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) returned")
}

/// The role's name, as its bytes.
fn role_name(role: pg_sys::Oid) -> Vec<u8> {
    // SAFETY: noerr = true returns null for a missing role; otherwise a palloc'd C string.
    let name = unsafe { pg_sys::GetUserNameFromId(role, true) };
    if name.is_null() {
        format!("{}", role.to_u32()).into_bytes()
    } else {
        // SAFETY: non-null and NUL-terminated.
        unsafe { CStr::from_ptr(name) }.to_bytes().to_vec()
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn check_label(
    object: *const pg_sys::ObjectAddress,
    seclabel: *const c_char,
) {
    // SAFETY: PostgreSQL passes a valid object address.
    let object = unsafe { &*object };
    if object.classId != pg_sys::AuthIdRelationId {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "pgaadauth labels can be set on roles only"
        );
    }
    // SAFETY: GetUserId has no preconditions inside a transaction.
    let caller = unsafe { pg_sys::GetUserId() };
    if !is_admin(caller) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied to set or remove a pgaadauth label",
            "Only a superuser or a Microsoft Entra ID admin (a member of azure_pg_admin) may bind roles to Entra ID principals."
        );
    }
    if let Err(denied) = may_manage(caller, object.objectId) {
        refuse_manage(&role_name(object.objectId), &denied);
    }
    if seclabel.is_null() {
        return; // removing the label
    }
    // SAFETY: a non-null label is a NUL-terminated string.
    let text = unsafe { CStr::from_ptr(seclabel) }.to_string_lossy();
    match text.parse::<Label>() {
        Err(e) => {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "invalid pgaadauth label: {}",
                    aad_auth_core::escape::one_line(&e.to_string())
                )
            );
        }
        Ok(label) if label.admin => {
            if let Err(denied) = may_grant_admin(&caller_facts(caller)) {
                refuse_manage(&role_name(object.objectId), &denied);
            }
        }
        Ok(_) => {}
    }
}
