//! The signing keys: one store for the whole cluster, in shared memory.
//!
//! The store holds the last good key set in a compact binary form, a generation number, where
//! the keys came from and the fetch bookkeeping. Each backend keeps the parsed keys of one
//! generation and re-parses only when the generation moves; a sign-in with a cached key makes
//! no network call.
//!
//! Shared memory is created anew after a backend crash, and generations count from 1 again:
//! each creation gets a new epoch, and a parsed copy is used only for its own (epoch,
//! generation). The postmaster's own copy (which new backends inherit) is dropped at each
//! creation, so no key from before a crash is ever used after it.
//!
//! Two sources:
//! - `aad_auth.jwks_file`: a sign-in costs one `stat`; when the file's identity (path, size,
//!   inode, modification time) differs from the one loaded, it is read and, if valid,
//!   published; if not, the last good keys stay and the failure is recorded once.
//! - otherwise the tenant's JWKS address (`aad_auth.jwks_uri`, or the one derived from the
//!   authority and tenant): only the background worker (`worker.rs`) fetches it. A sign-in
//!   with an unknown key id may ask for one early refresh (at most one per
//!   `aad_auth.jwks_min_refresh_interval` for the whole cluster) and waits a bounded time for
//!   it. Fetched keys are saved under the data directory and loaded at start-up, so a restart
//!   during an identity-provider outage still authenticates.

use crate::gucs;
use crate::shmem::Text;
use aad_auth_core::jwks::MAX_JWKS_BYTES;
use aad_auth_core::refresh::{RefreshState, UnknownKey};
use aad_auth_core::KeySet;
use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Room for the compact key set: 64 keys of 4096 bits take about 50 KB.
const DOC_CAPACITY: usize = 128 * 1024;
/// Where fetched keys are saved, relative to the data directory.
pub const SAVED_KEYS: &str = "aad_auth_jwks.json";
/// Longest a sign-in waits for a refresh it asked for (also bounded by authentication_timeout).
const REFRESH_WAIT: Duration = Duration::from_secs(3);

/// Where keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(String),
    Uri(String),
}

impl Source {
    /// The configured source: the file when set, else the tenant's key address.
    pub fn configured() -> Option<Source> {
        if let Some(file) = gucs::jwks_file() {
            return Some(Source::File(file));
        }
        gucs::jwks_uri().map(Source::Uri)
    }

    fn describe(&self) -> String {
        match self {
            Source::File(p) => format!("file:{p}"),
            Source::Uri(u) => u.clone(),
        }
    }

    /// The identity of a URI source (files use [`file_stamp`]).
    fn uri_stamp(uri: &str) -> Stamp {
        Stamp {
            path_hash: hash(&format!("uri:{uri}")),
            ..Stamp::default()
        }
    }
}

/// Identity of a key source as last seen.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Stamp {
    path_hash: u64,
    size: u64,
    inode: u64,
    mtime_ns: i128,
}

fn hash(text: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

#[derive(Clone, Copy)]
pub struct KeyStore {
    /// Set anew each time the shared memory is initialised (start-up, crash restart).
    epoch: u64,
    /// Bumped on every publish; 0 while nothing was ever loaded.
    generation: u64,
    /// The source state the current keys came from.
    good: Stamp,
    /// The last source state that failed to load (a file is not retried per sign-in).
    bad: Stamp,
    /// The source of the last fetch attempt (a changed address is fetched at once).
    attempted: Stamp,
    source: Text,
    last_success: i64,
    last_failure: i64,
    last_attempt: i64,
    /// A sign-in asked for a refresh not attempted yet.
    requested: bool,
    /// When a sign-in's refresh request was last granted.
    last_forced: i64,
    fetches: u64,
    failures: u64,
    /// Completed fetch attempts, for sign-ins waiting on one.
    attempts: u64,
    left_out: u32,
    /// The worker's latch (a pointer into shared memory), 0 while no worker runs.
    worker_latch: usize,
    /// The worker's process id, 0 while no worker runs.
    worker_pid: i32,
    error: Text,
    doc_len: u32,
    doc: [u8; DOC_CAPACITY],
}

impl Default for KeyStore {
    fn default() -> Self {
        KeyStore {
            epoch: 0,
            generation: 0,
            good: Stamp::default(),
            bad: Stamp::default(),
            attempted: Stamp::default(),
            source: Text::EMPTY,
            last_success: 0,
            last_failure: 0,
            last_attempt: 0,
            requested: false,
            last_forced: 0,
            fetches: 0,
            failures: 0,
            attempts: 0,
            left_out: 0,
            worker_latch: 0,
            worker_pid: 0,
            error: Text::EMPTY,
            doc_len: 0,
            doc: [0; DOC_CAPACITY],
        }
    }
}

// SAFETY: KeyStore is plain data; its one address (the worker's latch) points into shared
// memory, which every process of the cluster maps at the same address.
unsafe impl PGRXSharedMemory for KeyStore {}

// SAFETY: the name is a static C string; the lock is initialised by pg_shmem_init!.
static STORE: PgLwLock<KeyStore> = unsafe { PgLwLock::new(c"aad_auth_keys") };

struct Local {
    epoch: u64,
    generation: u64,
    keys: Rc<KeySet>,
}

/// The postmaster's count of shared-memory initialisations (it survives crash restarts, which
/// re-create shared memory but not the postmaster).
static INITIALISATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

static mut PREVIOUS_SHMEM_STARTUP: Option<unsafe extern "C-unwind" fn()> = None;

/// Requests the store's shared memory and loads the keys once it exists; from `_PG_init`.
pub fn init() {
    pg_shmem_init!(STORE);
    // SAFETY: runs once in _PG_init in the postmaster; chains the hook installed before.
    unsafe {
        PREVIOUS_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: the previous hook (pgrx's, which initialises STORE) runs first.
    if let Some(previous) = unsafe { PREVIOUS_SHMEM_STARTUP } {
        unsafe { previous() };
    }
    // A new epoch, and no parsed copy from before: backends inherit the postmaster's memory.
    let n = INITIALISATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    STORE.exclusive().epoch = n;
    LOCAL.with_borrow_mut(|local| *local = None);
    // In the postmaster: load the keys so that every backend starts with them.
    if let Some(Source::Uri(uri)) = Source::configured() {
        load_saved(&uri);
    }
    match current() {
        Ok(keys) => {
            let kids: Vec<&str> = keys.keys().iter().map(|k| k.kid.as_str()).collect();
            log!(
                "aad_auth: {} signing key(s) loaded: {}",
                kids.len(),
                kids.join(", ")
            );
        }
        Err(KeysUnavailable(why)) => log!("aad_auth: no signing keys loaded yet: {why}"),
    }
}

/// Why no keys are available.
pub struct KeysUnavailable(pub String);

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The file's identity now; a file that cannot be stat'ed has a stamp of its own.
fn file_stamp(path: &str) -> Result<Stamp, (Stamp, String)> {
    let path_hash = hash(path);
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Stamp {
            path_hash,
            size: meta.len(),
            inode: meta.ino(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }),
        Err(e) => Err((
            Stamp {
                path_hash,
                mtime_ns: -1,
                ..Stamp::default()
            },
            format!("cannot open key set file \"{path}\": {e}"),
        )),
    }
}

/// Parses a key set document, logging the keys left out; an empty set is an error.
pub fn parse_keys(what: &str, bytes: &[u8]) -> Result<KeySet, String> {
    let keys = KeySet::parse(bytes).map_err(|e| format!("{what}: {e}"))?;
    for skipped in &keys.skipped {
        warning!("aad_auth: {what}: {skipped}");
    }
    if keys.is_empty() {
        return Err(format!("{what} has no usable RS256 signing key"));
    }
    Ok(keys)
}

fn read_file(path: &str, size: u64) -> Result<KeySet, String> {
    if size > MAX_JWKS_BYTES as u64 {
        return Err(format!(
            "key set file \"{path}\" is {size} bytes, more than the limit of {MAX_JWKS_BYTES}"
        ));
    }
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read key set file \"{path}\": {e}"))?;
    parse_keys(&format!("key set file \"{path}\""), &bytes)
}

/// Makes `keys` the cluster's current key set (in the binary form backends read back without
/// parsing JSON).
fn publish(source: &Source, stamp: Stamp, keys: &KeySet, fetched_at: i64) {
    let (bytes, left_out) = keys.to_bytes(DOC_CAPACITY);
    if left_out > 0 {
        warning!("aad_auth: {left_out} signing key(s) left out: the key set is larger than the cache's capacity of {DOC_CAPACITY} bytes");
    }
    let mut store = STORE.exclusive();
    store.doc[..bytes.len()].copy_from_slice(&bytes);
    store.doc_len = bytes.len() as u32;
    store.good = stamp;
    store.source.set(&source.describe());
    store.generation += 1;
    store.last_success = fetched_at;
    store.left_out = left_out as u32;
}

fn record_failure(stamp: Stamp, why: &str) {
    let mut store = STORE.exclusive();
    store.error.set(why);
    store.bad = stamp;
    store.last_failure = now();
    store.failures += 1;
}

/// Loads the file into the store if it changed since the store last looked at it.
pub fn refresh_from_file(path: &str) {
    let seen = file_stamp(path);
    let stamp = match &seen {
        Ok(s) | Err((s, _)) => *s,
    };
    {
        let store = STORE.share();
        if store.good == stamp || store.bad == stamp {
            return;
        }
    }
    STORE.exclusive().fetches += 1;
    match seen
        .map_err(|(_, why)| why)
        .and_then(|s| read_file(path, s.size))
    {
        Ok(keys) => {
            publish(&Source::File(path.to_owned()), stamp, &keys, now());
        }
        Err(why) => {
            if STORE.share().generation > 0 {
                warning!("aad_auth: {why}; keeping the last good key set");
            } else {
                warning!("aad_auth: {why}");
            }
            record_failure(stamp, &why);
        }
    }
}

/// The keys to verify with: the store's current generation, parsed once per backend.
pub fn current() -> Result<Rc<KeySet>, KeysUnavailable> {
    match Source::configured() {
        Some(Source::File(path)) => refresh_from_file(&path),
        Some(Source::Uri(_)) => {} // the worker fetches
        None => return Err(KeysUnavailable(
            "no key source: set aad_auth.tenant_id (keys from the tenant) or aad_auth.jwks_file"
                .into(),
        )),
    }
    let (epoch, generation) = {
        let store = STORE.share();
        (store.epoch, store.generation)
    };
    if generation == 0 {
        let why = STORE
            .share()
            .error
            .get()
            .unwrap_or_else(|| "the signing keys have not been fetched yet".into());
        return Err(KeysUnavailable(why));
    }
    LOCAL.with_borrow_mut(|local| {
        if let Some(l) = local
            .as_ref()
            .filter(|l| (l.epoch, l.generation) == (epoch, generation))
        {
            return Ok(l.keys.clone());
        }
        let (epoch, generation, doc) = {
            let store = STORE.share();
            (
                store.epoch,
                store.generation,
                store.doc[..store.doc_len as usize].to_vec(),
            )
        };
        let keys =
            KeySet::from_bytes(&doc).map_err(|e| KeysUnavailable(format!("key store: {e}")))?;
        let keys = Rc::new(keys);
        *local = Some(Local {
            epoch,
            generation,
            keys: keys.clone(),
        });
        Ok(keys)
    })
}

/// For a sign-in whose key id is not cached (or with no keys at all): asks the worker for one
/// refresh, unless one was granted less than `aad_auth.jwks_min_refresh_interval` ago, and
/// waits for it, a few seconds at most and always less than `authentication_timeout`. A sign-in
/// that comes while another's refresh is under way waits for that one (asking for nothing).
/// Returns true when new keys were published meanwhile.
pub fn refresh_and_wait() -> bool {
    if !matches!(Source::configured(), Some(Source::Uri(_))) {
        return false;
    }
    let policy = gucs::refresh_policy();
    let wait = sign_in_wait();
    let (generation, attempts, asked) = {
        let mut store = STORE.exclusive();
        if store.worker_latch == 0 {
            return false;
        }
        let now = now();
        let wait_secs = i64::try_from(wait.as_secs()).unwrap_or(0) + 1;
        match policy.on_unknown_key(store.last_forced, now, wait_secs) {
            UnknownKey::Refuse => return false,
            UnknownKey::JoinRefresh => (store.generation, store.attempts, false),
            UnknownKey::Refresh => {
                store.last_forced = now;
                store.requested = true;
                (store.generation, store.attempts, true)
            }
        }
    };
    if asked {
        wake_worker();
    }
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        nap(20);
        let store = STORE.share();
        if store.attempts != attempts || store.generation != generation {
            // A joined refresh may have ended just before this sign-in looked: check again.
            return store.generation != generation || !asked;
        }
    }
    !asked
}

/// Sleeps up to `ms` milliseconds on this process's latch, then answers pending interrupts
/// (cancel, `statement_timeout`, termination); exits at once if the postmaster died.
pub fn nap(ms: i64) {
    // SAFETY: MyLatch is this backend's own latch; WaitLatch with a timeout returns within it.
    unsafe {
        let events = pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms,
            pg_sys::PG_WAIT_EXTENSION,
        );
        if events & pg_sys::WL_LATCH_SET as i32 != 0 {
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
    }
    pgrx::check_for_interrupts!();
}

/// Sleeps `wait` in naps of at most a second, answering interrupts between them.
pub fn nap_interruptible(wait: Duration) {
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        nap(left.as_millis().clamp(1, 1000) as i64);
    }
}

// ---- the worker's side -------------------------------------------------------------------

/// Wakes the background worker; false when none is running.
pub fn wake_worker() -> bool {
    let latch = STORE.share().worker_latch;
    if latch != 0 {
        // SAFETY: the worker stored its own latch, which lives in shared memory for the
        // cluster's lifetime; SetLatch may be called from any process.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
    latch != 0
}

/// How long a sign-in may wait for the worker: a few seconds, and always well inside
/// `authentication_timeout` (at most half of it when it is short).
pub fn sign_in_wait() -> Duration {
    // SAFETY: a plain read of a server global.
    let timeout_ms = u64::try_from(unsafe { pg_sys::AuthenticationTimeout })
        .unwrap_or(1)
        .max(1)
        * 1000;
    let inside = (timeout_ms / 2).max(timeout_ms.saturating_sub(1000));
    REFRESH_WAIT.min(Duration::from_millis(inside))
}

/// Registers the calling worker's latch, so that sign-ins can wake it.
pub fn register_worker(latch: *mut pg_sys::Latch) {
    let mut store = STORE.exclusive();
    store.worker_latch = latch as usize;
    // SAFETY: a plain read of this process's id.
    store.worker_pid = if latch.is_null() {
        0
    } else {
        unsafe { pg_sys::MyProcPid }
    };
}

/// Whether a fetch of `uri` is due now (scheduled, asked for, or a new address).
pub fn fetch_due(uri: &str) -> (bool, RefreshState) {
    let store = STORE.share();
    let state = RefreshState {
        last_attempt: store.last_attempt,
        last_success: if store.good == Source::uri_stamp(uri) {
            store.last_success
        } else {
            0
        },
        requested: store.requested,
    };
    let changed = store.attempted != Source::uri_stamp(uri);
    (
        gucs::refresh_policy().fetch_due(&state, now(), changed),
        state,
    )
}

/// Records the start of a fetch attempt.
pub fn fetch_started(uri: &str) {
    let mut store = STORE.exclusive();
    store.requested = false;
    store.last_attempt = now();
    store.attempted = Source::uri_stamp(uri);
    store.fetches += 1;
}

/// Records the end of a fetch attempt: publishes and saves the keys, or keeps the last good
/// ones and records why.
pub fn fetch_finished(uri: &str, result: Result<KeySet, String>) {
    let stamp = Source::uri_stamp(uri);
    match result {
        Ok(keys) => {
            publish(&Source::Uri(uri.to_owned()), stamp, &keys, now());
            let (doc, _) = keys.to_compact_json(DOC_CAPACITY);
            if let Err(e) = save(uri, &doc) {
                warning!("aad_auth: could not save the signing keys to {SAVED_KEYS}: {e}");
            }
        }
        Err(why) => {
            let has_keys = STORE.share().generation > 0;
            warning!(
                "aad_auth: could not fetch the signing keys from {uri}: {why}{}",
                if has_keys {
                    "; keeping the last good key set"
                } else {
                    ""
                }
            );
            record_failure(
                stamp,
                &format!("could not fetch the signing keys from {uri}: {why}"),
            );
        }
    }
    STORE.exclusive().attempts += 1;
}

/// Saves the key set atomically (write, fsync, rename) under the data directory.
fn save(uri: &str, doc: &str) -> std::io::Result<()> {
    use std::io::Write;
    let body = format!(
        "{{\"source\":{},{}",
        serde_json::Value::from(uri),
        &doc[1..]
    );
    let tmp = format!("{SAVED_KEYS}.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(body.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, SAVED_KEYS)?;
    if let Ok(dir) = std::fs::File::open(".") {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// At start-up: loads the keys saved from `uri`, if any (the worker fetches fresh ones next).
fn load_saved(uri: &str) {
    let Ok(bytes) = std::fs::read(SAVED_KEYS) else {
        return;
    };
    let saved_from = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("source").and_then(|s| s.as_str()).map(str::to_owned));
    if saved_from.as_deref() != Some(uri) {
        log!("aad_auth: ignoring {SAVED_KEYS}: saved from another key source");
        return;
    }
    match parse_keys(SAVED_KEYS, &bytes) {
        Ok(keys) => {
            publish(
                &Source::Uri(uri.to_owned()),
                Source::uri_stamp(uri),
                &keys,
                0,
            );
            log!("aad_auth: signing keys loaded from {SAVED_KEYS} (saved from {uri})");
        }
        Err(why) => warning!("aad_auth: ignoring {why}"),
    }
}

/// Unix seconds as a timestamptz (PostgreSQL counts microseconds from 2000-01-01).
pub(crate) fn timestamp(unix: i64) -> Option<TimestampWithTimeZone> {
    const PG_EPOCH: i64 = 946_684_800;
    (unix > 0)
        .then(|| TimestampWithTimeZone::try_from((unix - PG_EPOCH) * 1_000_000).ok())
        .flatten()
}

/// What the key store holds: where the keys came from, the key ids, when the last fetch
/// succeeded and failed, the last error, and how many fetches (or file loads) there were —
/// one per refresh, not one per sign-in — and the key refresher's process id.
#[allow(clippy::type_complexity)]
#[pg_extern]
fn aad_auth_jwks_status() -> TableIterator<
    'static,
    (
        name!(source, Option<String>),
        name!(key_ids, Vec<String>),
        name!(generation, i64),
        name!(last_success, Option<TimestampWithTimeZone>),
        name!(last_failure, Option<TimestampWithTimeZone>),
        name!(last_error, Option<String>),
        name!(fetches, i64),
        name!(failures, i64),
        name!(worker_pid, Option<i32>),
    ),
> {
    let keys = current().ok();
    let store = STORE.share();
    let row = (
        store
            .source
            .get()
            .or_else(|| Source::configured().map(|s| s.describe())),
        keys.map(|k| k.keys().iter().map(|k| k.kid.clone()).collect())
            .unwrap_or_default(),
        store.generation as i64,
        timestamp(store.last_success),
        timestamp(store.last_failure),
        store.error.get(),
        store.fetches as i64,
        store.failures as i64,
        (store.worker_pid != 0).then_some(store.worker_pid),
    );
    TableIterator::once(row)
}

extension_sql!(
    r#"
-- The key store's status names the key source: for superusers and Entra ID admins.
REVOKE EXECUTE ON FUNCTION aad_auth_jwks_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aad_auth_jwks_status() TO azure_pg_admin;
"#,
    name = "jwks_status_privileges",
    requires = [aad_auth_jwks_status, "list_principals"]
);
