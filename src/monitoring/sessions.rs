//! Live Entra sessions: one slot in shared memory per backend that signed in with a token,
//! what `aad_auth_sessions()` lists, and the ending of sessions whose token has expired
//! (`aad_auth.session_lifetime = token`) or whose principal was revoked
//! (`aad_auth.revoke_live_sessions`).
//!
//! A backend fills its slot when its token is accepted (on a `trust` line or by the OAuth
//! validator) and empties it when it exits; after a crash, shared memory and every slot are
//! created anew. The session monitor, a background worker connected to no database (it reads
//! only the shared catalog of security labels, so it runs on hot standbys too), looks at the
//! slots every second while either setting is on. To end a session it marks the slot with
//! the reason and sends SIGTERM, which PostgreSQL acts on wherever the backend is — idle, idle
//! in a transaction, or in a long query. The backend's FATAL (SQLSTATE 57P01) then carries
//! aad_auth's message instead of "terminating connection due to administrator command"
//! (an `emit_log_hook` that rewrites only that error of a marked backend).

use crate::ffi_decls::{self, SIGTERM};
use crate::shmem::{Region, Text};
use crate::{gucs, keycache, seclabel};
use aad_auth_core::escape::{escaped, quoted, shown_name};
use aad_auth_core::sessions::{session_over, still_bound, utc};
use aad_auth_core::{Guid, Label, Principal, PrincipalType};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;
use std::cell::UnsafeCell;
use std::collections::BTreeMap;
use std::ffi::{c_char, CStr, CString};
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

/// How the session signed in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A token as the password on a host-type `trust` line.
    Trust = 1,
    /// PostgreSQL 18's `oauth` method, with aad_auth as the validator.
    #[cfg_attr(not(feature = "pg18"), allow(dead_code))]
    OAuth = 2,
}

/// Why the monitor ends a session (kept in the slot for the backend's message).
const ENDING_EXPIRED: u32 = 1;
const ENDING_REVOKED: u32 = 2;

/// What a slot says about its session: plain data, written by its backend only.
#[derive(Clone, Copy)]
struct Info {
    role: pg_sys::Oid,
    method: u8,
    /// The label's type at sign-in (PrincipalType as 0, 1, 2) and its object id.
    kind: u8,
    label_oid: Guid,
    /// The token's `exp`, Unix seconds.
    expires: i64,
    rolname: Text<64>,
    token_oid: Text<64>,
    name: Text<256>,
    tenant: Text<64>,
}

#[repr(C)]
struct Slot {
    /// The backend's process id, 0 for a free slot; set and cleared under the exclusive lock.
    pid: AtomicI32,
    /// ENDING_* once the monitor ends the session, else 0.
    ending: AtomicU32,
    /// Written under the exclusive lock by the backend claiming the slot.
    info: UnsafeCell<Info>,
}

#[repr(C)]
struct Header {
    slots: u32,
    /// The session monitor's process id while it runs, else 0.
    monitor_pid: AtomicI32,
    /// When the monitor last looked (Unix seconds).
    monitor_seen: AtomicI64,
    /// When a sign-in last logged that the monitor is not running (Unix seconds).
    warned: AtomicI64,
    /// When this shared memory was created (Unix seconds): the monitor gets time to start.
    created: AtomicI64,
    /// Consecutive looks at which the labels' catalog was locked.
    locked_looks: AtomicI64,
}

static REGION: Region = Region::new(c"aad_auth_sessions", size, init);

/// One slot per process that can sign in (max_connections, autovacuum, background workers
/// and WAL senders).
fn slot_count() -> usize {
    // SAFETY: a plain read of a server global, set before shared memory is requested.
    usize::try_from(unsafe { pg_sys::MaxBackends }).unwrap_or(0)
}

fn size() -> usize {
    std::mem::size_of::<Header>() + slot_count() * std::mem::size_of::<Slot>()
}

fn init(base: *mut u8) {
    // SAFETY: base is the zeroed region of size() bytes.
    let header = unsafe { &mut *base.cast::<Header>() };
    header.slots = slot_count() as u32;
    header.created.store(keycache::now(), Ordering::Relaxed);
}

/// This backend's slot, usize::MAX when it has none.
static MY_SLOT: AtomicUsize = AtomicUsize::new(usize::MAX);

static mut PREVIOUS_EMIT_LOG_HOOK: pg_sys::emit_log_hook_type = None;

/// Shared memory, the message hook and the monitor; from `_PG_init`.
pub fn init_shmem_and_worker() {
    crate::shmem::add(&REGION);
    // SAFETY: _PG_init runs once in the postmaster; the previous hook is chained.
    unsafe {
        PREVIOUS_EMIT_LOG_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(emit_log);
    }
    BackgroundWorkerBuilder::new("aad_auth session monitor")
        .set_type("aad_auth session monitor")
        .set_library("aad_auth")
        .set_function("aad_auth_session_monitor_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// The header: the slot count, and the monitor's heartbeat (atomics, read without the lock).
fn header() -> Option<&'static Header> {
    let base = REGION.base();
    // SAFETY: the region starts with the Header and lives as long as the process.
    (!base.is_null()).then(|| unsafe { &*base.cast::<Header>() })
}

/// The slots (the lock must be held while they are read or written).
fn slots() -> &'static [Slot] {
    let base = REGION.base();
    if base.is_null() {
        return &[];
    }
    // SAFETY: the region holds a Header (40 bytes, a multiple of Slot's alignment) and then
    // `slots` slots; it lives as long as the process.
    unsafe {
        let header = &*base.cast::<Header>();
        std::slice::from_raw_parts(
            base.add(std::mem::size_of::<Header>()).cast::<Slot>(),
            header.slots as usize,
        )
    }
}

fn my_pid() -> i32 {
    // SAFETY: a plain read of this process's id.
    unsafe { pg_sys::MyProcPid }
}

fn kind_code(kind: PrincipalType) -> u8 {
    match kind {
        PrincipalType::User => 0,
        PrincipalType::Group => 1,
        PrincipalType::Service => 2,
    }
}

fn kind_of(code: u8) -> PrincipalType {
    match code {
        0 => PrincipalType::User,
        1 => PrincipalType::Group,
        _ => PrincipalType::Service,
    }
}

/// Records this backend's token session: from the hook or the validator, once the token was
/// accepted for `role` (the name as asked for), bound by `label`.
pub fn register(role: &CStr, label: &Label, principal: &Principal, method: Method) {
    let info = Info {
        role: seclabel::role_oid(role).unwrap_or(pg_sys::InvalidOid),
        method: method as u8,
        kind: kind_code(label.kind),
        label_oid: label.oid,
        expires: principal.expires,
        rolname: Text::of_bytes(role.to_bytes()),
        token_oid: Text::of(
            principal
                .oid
                .as_deref()
                .or(principal.appid.as_deref())
                .unwrap_or(""),
        ),
        name: Text::of(
            principal
                .name
                .as_deref()
                .or(principal.appid.as_deref())
                .unwrap_or(""),
        ),
        tenant: Text::of(&principal.tid),
    };
    let pid = my_pid();
    let claimed = {
        let Some(_held) = REGION.exclusive() else {
            return;
        };
        let slots = slots();
        let mine = MY_SLOT.load(Ordering::Relaxed);
        let index = if mine < slots.len() && slots[mine].pid.load(Ordering::Relaxed) == pid {
            Some(mine)
        } else {
            slots
                .iter()
                .position(|s| s.pid.load(Ordering::Relaxed) == 0)
        };
        if let Some(i) = index {
            // SAFETY: the exclusive lock is held: no other process reads the slot meanwhile.
            unsafe { *slots[i].info.get() = info };
            slots[i].ending.store(0, Ordering::Relaxed);
            slots[i].pid.store(pid, Ordering::Relaxed);
            MY_SLOT.store(i, Ordering::Relaxed);
        }
        index.is_some() && mine == usize::MAX
    };
    warn_if_no_monitor();
    if claimed {
        // SAFETY: registers a plain function to run when this process exits.
        unsafe { pg_sys::before_shmem_exit(Some(release), pg_sys::Datum::from(0)) };
    } else if MY_SLOT.load(Ordering::Relaxed) == usize::MAX {
        // Cannot happen (a slot per possible backend); the session is then neither listed
        // nor ended by the monitor, and the DBA must know.
        warning!("aad_auth: no free session slot for pid {pid}: this session is not listed in aad_auth_sessions() and not ended by aad_auth.session_lifetime or aad_auth.revoke_live_sessions");
    }
}

/// Seconds without a look by the monitor after which sign-ins say it is not running.
const MONITOR_STALE: i64 = 30;

/// Logs (at most once a minute, server log only) that sessions will not be ended as configured
/// because the session monitor is not running: it could not be registered (every one of
/// max_worker_processes taken) or keeps failing.
fn warn_if_no_monitor() {
    if gucs::session_lifetime() == aad_auth_core::sessions::Lifetime::Unlimited
        && !gucs::revoke_live_sessions()
    {
        return;
    }
    let Some(header) = header() else { return };
    let now = keycache::now();
    let starting = now - header.created.load(Ordering::Relaxed) <= MONITOR_STALE;
    let running = header.monitor_pid.load(Ordering::Relaxed) != 0
        && now - header.monitor_seen.load(Ordering::Relaxed) <= MONITOR_STALE;
    let last = header.warned.load(Ordering::Relaxed);
    if running
        || starting
        || now - last < 60
        || header
            .warned
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    log!("aad_auth: the session monitor is not running, so aad_auth.session_lifetime and aad_auth.revoke_live_sessions end no session; check the log for \"aad_auth session monitor\" (max_worker_processes must leave room for aad_auth's three background workers)");
}

/// Frees this backend's slot as it exits.
#[pg_guard]
unsafe extern "C-unwind" fn release(_code: std::ffi::c_int, _arg: pg_sys::Datum) {
    let mine = MY_SLOT.swap(usize::MAX, Ordering::Relaxed);
    let Some(_held) = REGION.exclusive() else {
        return;
    };
    if let Some(slot) = slots().get(mine) {
        if slot.pid.load(Ordering::Relaxed) == my_pid() {
            slot.pid.store(0, Ordering::Relaxed);
            slot.ending.store(0, Ordering::Relaxed);
        }
    }
}

/// Rewrites the FATAL of a backend the monitor ended (SIGTERM: "terminating connection due to
/// administrator command", 57P01) into the reason, for the client and the log alike.
#[pg_guard]
unsafe extern "C-unwind" fn emit_log(edata: *mut pg_sys::ErrorData) {
    let mine = MY_SLOT.load(Ordering::Relaxed);
    if mine != usize::MAX && !edata.is_null() {
        // SAFETY: PostgreSQL passes the error being reported.
        let e = unsafe { &mut *edata };
        if e.elevel == pg_sys::FATAL as i32
            && e.sqlerrcode == PgSqlErrorCode::ERRCODE_ADMIN_SHUTDOWN as i32
        {
            if let Some(slot) = slots().get(mine) {
                let why = slot.ending.load(Ordering::Relaxed);
                if why != 0 && slot.pid.load(Ordering::Relaxed) == my_pid() {
                    // SAFETY: only this backend writes its slot's info, and it is not
                    // writing it now.
                    let info = unsafe { *slot.info.get() };
                    let (message, hint) = ending_texts(why, &info);
                    let c = |s: String| CString::new(s.replace('\0', "?")).unwrap_or_default();
                    let (message, hint) = (c(message), c(hint));
                    // SAFETY: pstrdup copies into the current memory context (ErrorContext
                    // while an error is reported), as ErrorData's strings must live there.
                    unsafe {
                        e.message = pg_sys::pstrdup(message.as_ptr());
                        e.hint = pg_sys::pstrdup(hint.as_ptr());
                    }
                }
            }
        }
    }
    // SAFETY: the hook installed before ours, with the same argument.
    if let Some(previous) = unsafe { PREVIOUS_EMIT_LOG_HOOK } {
        unsafe { previous(edata) };
    }
}

/// The message and hint a session ended by the monitor gets.
fn ending_texts(why: u32, info: &Info) -> (String, String) {
    let role = escaped(info.rolname.raw());
    if why == ENDING_EXPIRED {
        (
            format!("terminating connection because the Microsoft Entra ID access token of role \"{role}\" expired at {} (aad_auth.session_lifetime = token)", utc(info.expires)),
            "Acquire a new access token (az account get-access-token --resource-type oss-rdbms) and connect again.".into(),
        )
    } else {
        (
            format!("terminating connection because role \"{role}\" is no longer bound to the Microsoft Entra ID principal this session signed in as (aad_auth.revoke_live_sessions = on)"),
            "An administrator dropped the role, bound it to another object or removed its label.".into(),
        )
    }
}

// ---- the list ----------------------------------------------------------------------------

/// The live token sessions: (pid, role oid, info).
fn live() -> Vec<(usize, i32, u32, Info)> {
    let Some(_held) = REGION.shared() else {
        return Vec::new();
    };
    slots()
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let pid = s.pid.load(Ordering::Relaxed);
            // SAFETY: the lock is held shared: no backend writes a slot's info meanwhile.
            (pid != 0).then(|| {
                (i, pid, s.ending.load(Ordering::Relaxed), unsafe {
                    *s.info.get()
                })
            })
        })
        .collect()
}

/// The live sessions signed in with a token. `aad_auth_sessions()` wraps this with
/// `rolname name`.
#[allow(clippy::type_complexity)]
#[pg_extern]
fn aad_auth_sessions_rows() -> TableIterator<
    'static,
    (
        name!(pid, i32),
        name!(rolname, Option<String>),
        name!(oid, Option<String>),
        name!(principal_type, String),
        name!(name, Option<String>),
        name!(tenant, Option<String>),
        name!(token_expires, Option<TimestampWithTimeZone>),
        name!(method, String),
    ),
> {
    let rows: Vec<_> = live()
        .into_iter()
        // SAFETY: looks a process id up in the process array (under its own lock).
        .filter(|(_, pid, _, _)| !unsafe { pg_sys::BackendPidGetProc(*pid) }.is_null())
        .map(|(_, pid, _, info)| {
            // The role's name now (it may have been renamed), else as it was signed in as.
            // SAFETY: a catalog look-up by oid that returns null for a missing role.
            let now_named = unsafe { pg_sys::GetUserNameFromId(info.role, true) };
            // Hidden characters and bytes that are not UTF-8 shown escaped, never lossily.
            let rolname = if now_named.is_null() {
                Some(shown_name(info.rolname.raw()))
            } else {
                // SAFETY: a non-null result is a NUL-terminated, palloc'd name.
                Some(shown_name(unsafe { CStr::from_ptr(now_named) }.to_bytes()))
            };
            (
                pid,
                rolname,
                info.token_oid.get(),
                kind_of(info.kind).as_str().to_owned(),
                info.name.get(),
                info.tenant.get(),
                keycache::timestamp(info.expires),
                if info.method == Method::OAuth as u8 {
                    "oauth"
                } else {
                    "trust"
                }
                .to_owned(),
            )
        })
        .collect();
    TableIterator::new(rows)
}

extension_sql!(
    r#"
CREATE FUNCTION aad_auth_sessions()
RETURNS TABLE(pid int, rolname name, oid text, principal_type text, name text, tenant text,
              token_expires timestamptz, method text)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT s.pid, s.rolname::name, s.oid, s.principal_type, s.name, s.tenant, s.token_expires,
           s.method
    FROM @extschema@.aad_auth_sessions_rows() AS s
    ORDER BY s.pid
$fn$;
-- Who is signed in, as which object: for superusers and Entra ID admins.
REVOKE EXECUTE ON FUNCTION aad_auth_sessions_rows() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION aad_auth_sessions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aad_auth_sessions_rows() TO azure_pg_admin;
GRANT EXECUTE ON FUNCTION aad_auth_sessions() TO azure_pg_admin;
"#,
    name = "sessions",
    requires = [aad_auth_sessions_rows, "list_principals"]
);

// ---- the monitor -------------------------------------------------------------------------

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn aad_auth_session_monitor_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // No database: the labels are in a shared catalog (and no database need exist by name).
    BackgroundWorker::connect_worker_to_spi(None, None);
    if let Some(header) = header() {
        header.monitor_pid.store(my_pid(), Ordering::Relaxed);
    }
    log!("aad_auth: session monitor started");
    loop {
        let active = gucs::session_lifetime() == aad_auth_core::sessions::Lifetime::Token
            || gucs::revoke_live_sessions();
        if active {
            check();
        }
        // After a look that went through: a monitor that keeps failing is not seen as alive.
        if let Some(header) = header() {
            header
                .monitor_seen
                .store(keycache::now(), Ordering::Relaxed);
        }
        let sleep = Duration::from_secs(if active { 1 } else { 10 });
        if !BackgroundWorker::wait_latch(Some(sleep)) {
            break; // SIGTERM, or the postmaster died
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: re-reads postgresql.conf, as any process does on SIGHUP.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
    if let Some(header) = header() {
        header.monitor_pid.store(0, Ordering::Relaxed);
    }
    // Exit code 1: restarted after its restart time, unless the server is shutting down.
    // SAFETY: ends this worker process.
    unsafe { pg_sys::proc_exit(1) };
}

/// One look at the live sessions: ends those whose token has expired (plus the grace) and,
/// with revocation on, those whose role no longer binds the principal they signed in as.
fn check() {
    let mut sessions = live();
    if sessions.is_empty() {
        return;
    }
    let now = keycache::now();
    let (lifetime, grace) = (gucs::session_lifetime(), gucs::session_grace());
    // Expiry first: it needs no catalog, so nothing there can hold it up.
    sessions.retain(|(index, pid, ending, info)| {
        if *ending != 0 {
            // Already ended: signal again in case the first one came before the backend
            // could act on it (PostgreSQL acts on it once).
            signal(*index, *pid, *ending, info, false);
            false
        } else if session_over(lifetime, now, info.expires, grace) {
            signal(*index, *pid, ENDING_EXPIRED, info, true);
            false
        } else {
            true
        }
    });
    if !gucs::revoke_live_sessions() || sessions.is_empty() {
        return;
    }
    let roles: Vec<pg_sys::Oid> = sessions.iter().map(|(_, _, _, i)| i.role).collect();
    let Some(labels) = labels_of(&roles) else {
        // The catalog is locked (VACUUM FULL, LOCK TABLE): look again in a second, and say so
        // when it lasts.
        if let Some(header) = header() {
            let looks = header.locked_looks.fetch_add(1, Ordering::Relaxed) + 1;
            if looks % 10 == 0 {
                log!("aad_auth: revocation of live sessions is waiting: pg_shseclabel has been locked for {looks} s (aad_auth.revoke_live_sessions = on)");
            }
        }
        return;
    };
    if let Some(header) = header() {
        header.locked_looks.store(0, Ordering::Relaxed);
    }
    for (index, pid, _, info) in sessions {
        let current = labels.get(&info.role.to_u32()).and_then(Option::as_ref);
        if !still_bound(kind_of(info.kind), info.label_oid, current) {
            signal(index, pid, ENDING_REVOKED, &info, true);
        }
    }
}

/// Marks the slot and sends SIGTERM, if the slot still holds the same backend.
fn signal(index: usize, pid: i32, why: u32, info: &Info, first: bool) {
    {
        let Some(_held) = REGION.exclusive() else {
            return;
        };
        let Some(slot) = slots().get(index) else {
            return;
        };
        if slot.pid.load(Ordering::Relaxed) != pid {
            return; // it ended meanwhile
        }
        slot.ending.store(why, Ordering::Relaxed);
        // SAFETY: asks the kernel to deliver SIGTERM to a backend of this cluster (same user).
        unsafe { ffi_decls::kill(pid, SIGTERM) };
    }
    if first {
        let who = format!(
            "pid={pid} role={} oid={}",
            quoted(info.rolname.raw()),
            quoted(info.token_oid.raw())
        );
        if why == ENDING_EXPIRED {
            log!(
                "aad_auth: ending session {who}: its access token expired at {} (aad_auth.session_lifetime = token, aad_auth.session_grace = {} s)",
                utc(info.expires),
                gucs::session_grace()
            );
        } else {
            log!("aad_auth: ending session {who}: its role is no longer bound to the principal it signed in as (dropped, rebound or unlabelled; aad_auth.revoke_live_sessions = on)");
        }
    }
}

/// The `pgaadauth` labels of `roles` now, parsed (None: no label, or no such role); None
/// when the catalog is locked.
#[allow(clippy::type_complexity)]
fn labels_of(roles: &[pg_sys::Oid]) -> Option<BTreeMap<u32, Option<Result<Label, String>>>> {
    BackgroundWorker::transaction(|| {
        let mut texts: Vec<*mut c_char> = vec![std::ptr::null_mut(); roles.len()];
        // SAFETY: inside a transaction; the arrays have roles.len() elements; the labels are
        // palloc'd in the transaction's memory, copied out before it ends.
        let read = unsafe {
            ffi_decls::aad_auth_labels_of(
                seclabel::PROVIDER.as_ptr(),
                roles.as_ptr(),
                roles.len() as i32,
                texts.as_mut_ptr(),
            )
        };
        if !read {
            return None;
        }
        let labels = roles
            .iter()
            .zip(texts)
            .map(|(role, text)| {
                let label = (!text.is_null()).then(|| {
                    // SAFETY: a non-null label is a NUL-terminated string.
                    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
                    text.parse::<Label>().map_err(|e| e.to_string())
                });
                (role.to_u32(), label)
            })
            .collect();
        Some(labels)
    })
}
