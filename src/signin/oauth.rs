//! PostgreSQL 18's OAuth validator interface: with `oauth_validator_libraries = 'aad_auth'`
//! and pg_hba method `oauth`, clients that speak OAUTHBEARER sign in with the same token rules
//! and the same object-id-to-label mapping as on `trust` lines, without those lines.
//!
//! The hba line should set `delegate_ident_mapping=1`: aad_auth decides which role the token
//! may use (by the role's label), and reports the token's object id as the authenticated
//! identity (`SYSTEM_USER`).

use crate::hook::{self, Connection};
use crate::sessions::{self, Method};
use crate::{gucs, seclabel};
use aad_auth_core::escape::quoted;
use aad_auth_core::sessions::Reason;
use pgrx::prelude::*;
use std::ffi::{c_char, c_int, c_void, CStr, CString};

/// `ValidatorModuleState` of libpq/oauth.h.
#[repr(C)]
pub struct ValidatorModuleState {
    sversion: c_int,
    private_data: *mut c_void,
}

/// `ValidatorModuleResult` of libpq/oauth.h.
#[repr(C)]
pub struct ValidatorModuleResult {
    authorized: bool,
    authn_id: *mut c_char,
}

type ValidateCallback = unsafe extern "C-unwind" fn(
    *const ValidatorModuleState,
    *const c_char,
    *const c_char,
    *mut ValidatorModuleResult,
) -> bool;

/// `OAuthValidatorCallbacks` of libpq/oauth.h.
#[repr(C)]
pub struct OAuthValidatorCallbacks {
    magic: u32,
    startup_cb: Option<unsafe extern "C-unwind" fn(*mut ValidatorModuleState)>,
    shutdown_cb: Option<unsafe extern "C-unwind" fn(*mut ValidatorModuleState)>,
    validate_cb: Option<ValidateCallback>,
}

// SAFETY: the table is immutable and holds only function pointers.
unsafe impl Sync for OAuthValidatorCallbacks {}

/// `PG_OAUTH_VALIDATOR_MAGIC`.
const MAGIC: u32 = 0x2025_0220;

static CALLBACKS: OAuthValidatorCallbacks = OAuthValidatorCallbacks {
    magic: MAGIC,
    startup_cb: None,
    shutdown_cb: None,
    validate_cb: Some(validate),
};

/// Called by PostgreSQL when it loads the library as a validator.
#[no_mangle]
pub extern "C-unwind" fn _PG_oauth_validator_module_init() -> *const OAuthValidatorCallbacks {
    &CALLBACKS
}

#[pg_guard]
unsafe extern "C-unwind" fn validate(
    _state: *const ValidatorModuleState,
    token: *const c_char,
    role: *const c_char,
    result: *mut ValidatorModuleResult,
) -> bool {
    // SAFETY: PostgreSQL passes NUL-terminated strings and a result to fill.
    let (token, role, result) = unsafe {
        (
            CStr::from_ptr(token).to_bytes(),
            CStr::from_ptr(role),
            &mut *result,
        )
    };
    result.authorized = false;
    // SAFETY: MyProcPort is this connection's Port during authentication.
    let conn = unsafe { Connection::read(pg_sys::MyProcPort) };
    let shown = quoted(role.to_bytes());
    if !conn.transport_allowed() {
        conn.count(Err(Reason::Transport));
        log!("aad_auth: OAuth sign-in refused: role={shown}: a token arrived over a connection that is neither encrypted nor from loopback (aad_auth.require_secure_transport = {}); connect with sslmode=require or stronger", gucs::secure_transport().as_str());
        return true;
    }
    let label = match seclabel::role_label(role) {
        Some(Ok(label)) => label,
        Some(Err(detail)) => {
            conn.count(Err(Reason::Other));
            log!("aad_auth: OAuth sign-in refused: role={shown} has an invalid pgaadauth label: {detail}");
            return true;
        }
        None => {
            conn.count(Err(Reason::Principal));
            log!("aad_auth: OAuth sign-in refused: role={shown} is not bound to a Microsoft Entra ID principal");
            return true;
        }
    };
    let outcome = hook::decide(token, &label);
    if gucs::log_logins() {
        hook::audit(&conn, &label, &outcome);
    }
    if let Some(oid) = outcome.audit.oid.as_ref().or(outcome.audit.appid.as_ref()) {
        let oid = CString::new(oid.as_str()).unwrap_or_default();
        // SAFETY: a palloc'd copy in the current (authentication) memory context, as required.
        result.authn_id = unsafe { pg_sys::pstrdup(oid.as_ptr()) };
    }
    match &outcome.result {
        Ok(principal) => {
            conn.count(Ok(()));
            sessions::register(role, &label, principal, Method::OAuth);
        }
        Err(error) => conn.count(Err(error.reason())),
    }
    result.authorized = outcome.result.is_ok();
    true
}
