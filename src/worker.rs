//! The key refresher: a background worker, the only code that makes HTTP requests.
//!
//! It fetches the tenant's key set when due (at start-up, every
//! `aad_auth.jwks_refresh_interval`, sooner after a failure, at once when the address changes
//! or a sign-in asks), publishes it to the cluster's key store and saves it under the data
//! directory. It needs no database connection, so it also runs on a hot standby, and it never
//! writes to a catalog. With `aad_auth.jwks_file` it only watches the file.

use crate::{directory, gucs, http, keycache};
use aad_auth_core::jwks::MAX_JWKS_BYTES;
use aad_auth_core::KeySet;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;
use std::time::Duration;

/// Longest sleep between looks at the configuration and the file.
const MAX_SLEEP: Duration = Duration::from_secs(10);

/// Registers the worker; called once from `_PG_init`.
pub fn init() {
    BackgroundWorkerBuilder::new("aad_auth key refresher")
        .set_type("aad_auth key refresher")
        .set_library("aad_auth")
        .set_function("aad_auth_worker_main")
        .enable_shmem_access(None)
        .set_start_time(BgWorkerStartTime::PostmasterStart)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn aad_auth_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // SAFETY: MyLatch is this process's latch, in shared memory for a worker with shmem access.
    keycache::register_worker(unsafe { pg_sys::MyLatch });
    log!("aad_auth: key refresher started");
    loop {
        let sleep = cycle();
        if !BackgroundWorker::wait_latch(Some(sleep)) {
            break; // SIGTERM, or the postmaster died
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: re-reads postgresql.conf, as any process does on SIGHUP.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
    keycache::register_worker(std::ptr::null_mut());
    // Exit code 1: the postmaster restarts the worker after its restart time (code 0 would
    // unregister it). At shutdown nothing is restarted either way.
    // SAFETY: ends this worker process.
    unsafe { pg_sys::proc_exit(1) };
}

/// One look at the directory requests and the key sources; returns how long to sleep.
fn cycle() -> Duration {
    directory::serve();
    match keycache::Source::configured() {
        Some(keycache::Source::File(path)) => {
            keycache::refresh_from_file(&path);
            MAX_SLEEP
        }
        Some(keycache::Source::Uri(uri)) => {
            let (due, state) = keycache::fetch_due(&uri);
            if due {
                keycache::fetch_started(&uri);
                keycache::fetch_finished(&uri, fetch(&uri));
                return Duration::from_millis(10); // look again at once: a request may be waiting
            }
            let next = gucs::refresh_policy().next_scheduled(&state) - keycache::now();
            Duration::from_secs(next.clamp(1, MAX_SLEEP.as_secs() as i64) as u64)
        }
        None => MAX_SLEEP,
    }
}

/// Fetches and parses a key set, bounded in time and size.
fn fetch(uri: &str) -> Result<KeySet, String> {
    http::check_address(uri)?;
    let (status, body) = http::read(
        http::agent()
            .get(uri)
            .header("Accept", "application/json")
            .call(),
        MAX_JWKS_BYTES,
    )?;
    if status != 200 {
        return Err(format!("HTTP status {status}"));
    }
    keycache::parse_keys("the key set", &body)
}
