//! aad_auth: Microsoft Entra ID (Azure AD) sign-in for self-hosted PostgreSQL.
//!
//! The decisions live in the pure crate `aad_auth_core`; this crate is the shell around it,
//! one folder per concern:
//! - `signin/`: where a sign-in is decided — `hook.rs` (the authentication hook), `oauth.rs`
//!   (PostgreSQL 18's OAuth validator, the same decision for OAUTHBEARER clients), `error.rs`
//!   (how a refusal reaches the client and the log);
//! - `admin/`: managing principals — `api.rs` (the `pgaadauth_*` SQL functions), `seclabel.rs`
//!   (the `pgaadauth` label provider);
//! - `entra/`: asking Microsoft Graph — `directory.rs` (backends' questions to the worker),
//!   `graph.rs` (the Graph client), `groupsync.rs` (Azure's group sync and its worker);
//! - `monitoring/`: what admins see and bound — `stats.rs` (`aad_auth_sign_in_stats()`),
//!   `sessions.rs` (the live token sessions, and the session monitor that ends them when the
//!   token expires or the principal is revoked);
//! - at the top: `gucs.rs` (the `aad_auth.*` settings), `keycache.rs` (the signing keys),
//!   `worker.rs` (the key refresher, which also answers the directory questions), `http.rs`,
//!   `shmem.rs` (shared memory sized at start), `ffi_decls.rs` and `shim.c` (what pgrx's
//!   bindings lack).

use pgrx::prelude::*;

mod signin {
    pub(crate) mod error;
    pub(crate) mod hook;
    #[cfg(feature = "pg18")]
    pub(crate) mod oauth;
}
mod admin {
    pub(crate) mod api;
    pub(crate) mod seclabel;
}
mod entra {
    pub(crate) mod directory;
    pub(crate) mod graph;
    pub(crate) mod groupsync;
}
mod monitoring {
    pub(crate) mod sessions;
    pub(crate) mod stats;
}
mod ffi_decls;
mod gucs;
mod http;
mod keycache;
mod shmem;
mod worker;

// The modules by their own names (`crate::hook`, `crate::seclabel`, ...), wherever they live.
use admin::{api, seclabel};
use entra::{directory, graph, groupsync};
use monitoring::{sessions, stats};
use signin::{error, hook};

/// `#[pg_guard]` on our own `extern` blocks expands to `crate::ffi::pg_guard_ffi_boundary`.
pub mod ffi {
    pub use pgrx::pg_sys::ffi::pg_guard_ffi_boundary;
}

::pgrx::pg_module_magic!();

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // Refuse to load anywhere but shared_preload_libraries: the hook must be in the postmaster.
    // SAFETY: a plain read of a server global.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "aad_auth must be loaded via shared_preload_libraries",
            "Add aad_auth to shared_preload_libraries in postgresql.conf (shared_preload_libraries = 'aad_auth') and restart the server."
        );
    }
    // Settings, then reserve the prefix so misspelt aad_auth.* settings are reported, then
    // report the values postgresql.conf gave that PostgreSQL refused (with what sign-in does).
    let configured = gucs::configured_values();
    gucs::init();
    // SAFETY: called once in _PG_init with a static C string.
    unsafe { pg_sys::MarkGUCPrefixReserved(c"aad_auth".as_ptr()) };
    gucs::report_invalid(&configured);
    // Shared memory for the cluster's signing keys (loaded once it exists).
    keycache::init();
    // Shared memory for questions to the directory (Microsoft Graph).
    directory::init();
    // Shared memory for the sign-in statistics.
    stats::init_shmem();
    // Shared memory for the live token sessions, their messages and the session monitor.
    sessions::init_shmem_and_worker();
    // The label provider.
    seclabel::init();
    // The authentication hook.
    hook::init();
    // The background worker that fetches the tenant's signing keys.
    worker::init();
    // Group sync: its status in shared memory and its background worker.
    groupsync::init();
    // Which pg_hba.conf lines aad_auth governs.
    log_governed_lines();
}

/// Logs the host-type `trust` lines of pg_hba.conf: the lines on which aad_auth demands a
/// credential.
fn log_governed_lines() {
    // SAFETY: HbaFileName is a GUC string set before shared_preload_libraries are loaded.
    let path = unsafe { pg_sys::HbaFileName };
    if path.is_null() {
        return;
    }
    // SAFETY: non-null GUC strings are NUL-terminated.
    let path = unsafe { std::ffi::CStr::from_ptr(path) }
        .to_string_lossy()
        .into_owned();
    let Ok(conf) = std::fs::read_to_string(&path) else {
        return;
    };
    let lines = aad_auth_core::hba::governed_lines(&conf);
    if lines.is_empty() {
        log!("aad_auth: no host-type trust line in {path}: aad_auth governs no connection");
    }
    for line in lines {
        log!(
            "aad_auth: governs {path} line {}: {}",
            line.number,
            line.text
        );
    }
}

// `#[pg_schema]` cannot take a file module (`mod tests;`, rust-lang/rust#54727), so the tests'
// file is included into an inline module: the functions land in the SQL schema `tests`.
#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    include!("tests.rs");
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'aad_auth'",
            "aad_auth.tenant_id = '72f988bf-86f1-41af-91ab-2d7cd011db47'",
            // The test runner connects over TCP without a password.
            "aad_auth.skip_roles = 'postgres, root'",
        ]
    }
}
