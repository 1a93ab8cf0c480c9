//! Declarations pgrx's bindings lack: the authentication hook variable (exported by the server)
//! and the functions of src/shim.c.

use pgrx::pg_guard;
use pgrx::pg_sys;
use std::ffi::{c_char, c_int};

pub type ClientAuthenticationHook = unsafe extern "C-unwind" fn(*mut pg_sys::Port, c_int);

extern "C-unwind" {
    /// `libpq/auth.h`: called after the built-in method with its status.
    pub static mut ClientAuthentication_hook: Option<ClientAuthenticationHook>;
}

/// `AadPortInfo` of src/shim.c.
#[repr(C)]
pub struct AadPortInfo {
    pub user_name: *const c_char,
    pub database_name: *const c_char,
    pub remote_host: *const c_char,
    pub is_unix_socket: c_int,
    pub method: c_int,
    pub hba_line: c_int,
    pub encrypted: c_int,
    pub addr_family: c_int,
    pub addr: [u8; 16],
}

pub const METHOD_TRUST: c_int = 1;
pub const METHOD_PASSWORD: c_int = 2;

extern "C" {
    /// ereport(FATAL): exits the process, never unwinds or returns.
    pub fn aad_auth_fatal(
        sqlstate: *const c_char,
        message: *const c_char,
        detail_log: *const c_char,
    ) -> !;
}

#[pg_guard]
unsafe extern "C-unwind" {
    pub fn aad_auth_port_info(port: *mut pg_sys::Port, out: *mut AadPortInfo);
    pub fn aad_auth_recv_password(port: *mut pg_sys::Port, len: *mut c_int) -> *mut c_char;
    pub fn aad_auth_set_identity(port: *mut pg_sys::Port, id: *const c_char);
    pub fn aad_auth_shmem_zeroed(name: *const c_char, size: usize) -> *mut std::ffi::c_void;
    pub fn aad_auth_labels_of(
        provider: *const c_char,
        roles: *const pg_sys::Oid,
        n: c_int,
        labels: *mut *mut c_char,
    ) -> bool;
}

extern "C" {
    /// POSIX `kill(2)`.
    pub fn kill(pid: i32, sig: i32) -> i32;
}

/// `SIGTERM` on Linux.
pub const SIGTERM: i32 = 15;
