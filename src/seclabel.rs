//! The `pgaadauth` security label provider: the grammar and who may set a label.

use aad_auth_core::Label;
use pgrx::prelude::*;
use std::ffi::{c_char, CStr, CString};

/// The provider name Azure uses, so labels written there read the same here.
pub const PROVIDER: &CStr = c"pgaadauth";

/// The role that marks aad_auth admins (created by the extension if missing), as on Azure.
pub const ADMIN_ROLE: &str = "azure_pg_admin";

/// Registers the provider; called once from `_PG_init`.
pub fn init() {
    // SAFETY: PROVIDER is a static C string; check_label has the provider hook's signature.
    unsafe { pg_sys::register_label_provider(PROVIDER.as_ptr(), Some(check_label)) };
}

fn role_address(role: pg_sys::Oid) -> pg_sys::ObjectAddress {
    pg_sys::ObjectAddress {
        classId: pg_sys::AuthIdRelationId,
        objectId: role,
        objectSubId: 0,
    }
}

/// The role's oid, if it exists.
pub fn role_oid(name: &str) -> Option<pg_sys::Oid> {
    let name = CString::new(name).ok()?;
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
pub fn role_label(name: &str) -> Option<Result<Label, String>> {
    let text = label_text(role_oid(name)?)?;
    Some(
        text.parse::<Label>()
            .map_err(|e| format!("label \"{text}\": {e}")),
    )
}

/// Whether `role` may manage Entra ID principals: a superuser, or a member (with its
/// privileges) of `azure_pg_admin`.
pub fn is_admin(role: pg_sys::Oid) -> bool {
    // SAFETY: plain catalog look-ups on valid oids.
    unsafe {
        pg_sys::superuser_arg(role)
            || role_oid(ADMIN_ROLE).is_some_and(|admin| pg_sys::has_privs_of_role(role, admin))
    }
}

pub fn is_superuser(role: pg_sys::Oid) -> bool {
    // SAFETY: catalog look-up on a valid oid.
    unsafe { pg_sys::superuser_arg(role) }
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
    if is_superuser(object.objectId) && !is_superuser(caller) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied to set or remove a pgaadauth label on a superuser role",
            "Only a superuser may bind a superuser role to an Entra ID principal."
        );
    }
    if seclabel.is_null() {
        return; // removing the label
    }
    // SAFETY: a non-null label is a NUL-terminated string.
    let text = unsafe { CStr::from_ptr(seclabel) }.to_string_lossy();
    if let Err(e) = text.parse::<Label>() {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid pgaadauth label: {e}")
        );
    }
}
