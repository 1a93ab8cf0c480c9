//! The signing keys: one store for the whole cluster, in shared memory.
//!
//! The store holds the last good key set as a compact JWKS document, a generation number and
//! where it came from. Each backend keeps the parsed keys of one generation and re-parses only
//! when the generation moves. With `aad_auth.jwks_file`, a sign-in costs one `stat`: when the
//! file's identity (path, size, inode, modification time) differs from the one the store was
//! loaded from, the file is read and, if valid, published; if not, the last good keys stay and
//! the failure is recorded once (not per sign-in).

use crate::gucs;
use aad_auth_core::jwks::MAX_JWKS_BYTES;
use aad_auth_core::KeySet;
use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;

/// Room for the compact key set: 64 keys of 4096 bits take about 50 KB.
const DOC_CAPACITY: usize = 128 * 1024;
const ERROR_CAPACITY: usize = 512;

/// Identity of a key source as last seen (a file's, for now).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Stamp {
    path_hash: u64,
    size: u64,
    inode: u64,
    mtime_ns: i128,
}

#[derive(Clone, Copy)]
pub struct KeyStore {
    /// Bumped on every publish; 0 while nothing was ever loaded.
    generation: u64,
    /// The source the current keys came from.
    good: Stamp,
    /// The last source state that failed to load (so it is not retried per sign-in).
    bad: Stamp,
    loaded_at: i64,
    failed_at: i64,
    loads: u64,
    failures: u64,
    left_out: u32,
    doc_len: u32,
    doc: [u8; DOC_CAPACITY],
    error_len: u32,
    error: [u8; ERROR_CAPACITY],
}

impl Default for KeyStore {
    fn default() -> Self {
        KeyStore {
            generation: 0,
            good: Stamp::default(),
            bad: Stamp::default(),
            loaded_at: 0,
            failed_at: 0,
            loads: 0,
            failures: 0,
            left_out: 0,
            doc_len: 0,
            doc: [0; DOC_CAPACITY],
            error_len: 0,
            error: [0; ERROR_CAPACITY],
        }
    }
}

// SAFETY: KeyStore is plain old data (no pointers), valid in any process that maps it.
unsafe impl PGRXSharedMemory for KeyStore {}

// SAFETY: the name is a static C string; the lock is initialised by pg_shmem_init!.
static STORE: PgLwLock<KeyStore> = unsafe { PgLwLock::new(c"aad_auth_keys") };

struct Local {
    generation: u64,
    keys: Rc<KeySet>,
}

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
    // In the postmaster: load the keys so that every backend starts with them.
    match current() {
        Ok(keys) => {
            let kids: Vec<&str> = keys.keys().iter().map(|k| k.kid.as_str()).collect();
            log!(
                "aad_auth: {} signing key(s) loaded: {}",
                kids.len(),
                kids.join(", ")
            );
        }
        Err(KeysUnavailable(why)) => log!("aad_auth: no signing keys loaded: {why}"),
    }
}

/// Why no keys are available.
pub struct KeysUnavailable(pub String);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The file's identity now; a file that cannot be stat'ed has a stamp of its own.
fn stamp(path: &str) -> Result<Stamp, (Stamp, String)> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut hasher);
    let path_hash = hasher.finish();
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

fn read(path: &str, size: u64) -> Result<KeySet, String> {
    if size > MAX_JWKS_BYTES as u64 {
        return Err(format!(
            "key set file \"{path}\" is {size} bytes, more than the limit of {MAX_JWKS_BYTES}"
        ));
    }
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read key set file \"{path}\": {e}"))?;
    let keys = KeySet::parse(&bytes).map_err(|e| format!("key set file \"{path}\": {e}"))?;
    for skipped in &keys.skipped {
        warning!("aad_auth: key set file \"{path}\": {skipped}");
    }
    if keys.is_empty() {
        return Err(format!(
            "key set file \"{path}\" has no usable RS256 signing key"
        ));
    }
    Ok(keys)
}

fn publish(source: Stamp, keys: &KeySet) {
    let (doc, left_out) = keys.to_compact_json(DOC_CAPACITY);
    if left_out > 0 {
        warning!("aad_auth: {left_out} signing key(s) left out: the key set is larger than the cache's capacity of {DOC_CAPACITY} bytes");
    }
    let mut store = STORE.exclusive();
    store.doc[..doc.len()].copy_from_slice(doc.as_bytes());
    store.doc_len = doc.len() as u32;
    store.good = source;
    store.generation += 1;
    store.loaded_at = now();
    store.loads += 1;
    store.left_out = left_out as u32;
}

fn record_failure(source: Stamp, why: &str) {
    let mut store = STORE.exclusive();
    let bytes = why.as_bytes();
    let n = bytes.len().min(ERROR_CAPACITY);
    store.error[..n].copy_from_slice(&bytes[..n]);
    store.error_len = n as u32;
    store.bad = source;
    store.failed_at = now();
    store.failures += 1;
}

/// Loads the file into the store if it changed since the store last looked at it.
fn refresh_from_file(path: &str) {
    let seen = stamp(path);
    let current = match &seen {
        Ok(s) | Err((s, _)) => *s,
    };
    {
        let store = STORE.share();
        if store.good == current || store.bad == current {
            return;
        }
    }
    match seen
        .map_err(|(_, why)| why)
        .and_then(|s| read(path, s.size))
    {
        Ok(keys) => publish(current, &keys),
        Err(why) => {
            let has_keys = STORE.share().generation > 0;
            if has_keys {
                warning!("aad_auth: {why}; keeping the last good key set");
            } else {
                warning!("aad_auth: {why}");
            }
            record_failure(current, &why);
        }
    }
}

/// The keys to verify with: the store's current generation, parsed once per backend.
pub fn current() -> Result<Rc<KeySet>, KeysUnavailable> {
    match gucs::jwks_file() {
        Some(path) => refresh_from_file(&path),
        None => return Err(KeysUnavailable("aad_auth.jwks_file is not set".into())),
    }
    let generation = STORE.share().generation;
    if generation == 0 {
        let store = STORE.share();
        let why = String::from_utf8_lossy(&store.error[..store.error_len as usize]).into_owned();
        return Err(KeysUnavailable(why));
    }
    LOCAL.with_borrow_mut(|local| {
        if let Some(l) = local.as_ref().filter(|l| l.generation == generation) {
            return Ok(l.keys.clone());
        }
        let (generation, doc) = {
            let store = STORE.share();
            (
                store.generation,
                store.doc[..store.doc_len as usize].to_vec(),
            )
        };
        let keys = KeySet::parse(&doc).map_err(|e| KeysUnavailable(format!("key store: {e}")))?;
        let keys = Rc::new(keys);
        *local = Some(Local {
            generation,
            keys: keys.clone(),
        });
        Ok(keys)
    })
}

/// Unix seconds as a timestamptz (PostgreSQL counts microseconds from 2000-01-01).
fn timestamp(unix: i64) -> Option<TimestampWithTimeZone> {
    const PG_EPOCH: i64 = 946_684_800;
    (unix > 0)
        .then(|| TimestampWithTimeZone::try_from((unix - PG_EPOCH) * 1_000_000).ok())
        .flatten()
}

/// What the key store holds: its source, the key ids, when it last loaded and failed, the
/// last error, and how many loads it has done (one per change of the source, not per sign-in).
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
        name!(loads, i64),
        name!(failures, i64),
    ),
> {
    let keys = current().ok();
    let store = STORE.share();
    let error = (store.error_len > 0)
        .then(|| String::from_utf8_lossy(&store.error[..store.error_len as usize]).into_owned());
    let row = (
        gucs::jwks_file().map(|p| format!("file:{p}")),
        keys.map(|k| k.keys().iter().map(|k| k.kid.clone()).collect())
            .unwrap_or_default(),
        store.generation as i64,
        timestamp(store.loaded_at),
        timestamp(store.failed_at),
        error,
        store.loads as i64,
        store.failures as i64,
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
