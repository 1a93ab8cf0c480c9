//! Sign-in statistics: for each role asked for, accepted and refused sign-ins by reason class
//! (`aad_auth_core::sessions::Reason`) and when the last of each happened, for the whole
//! cluster, since server start or `aad_auth_reset_sign_in_stats()`.
//!
//! A table of `aad_auth.sign_in_stats_max` entries in shared memory, found by hashing the role
//! name with a key drawn at each start (open addressing, at most [`MAX_PROBE`] places looked
//! at; entries are removed only by a reset), plus one overflow entry for the roles that found
//! no room, whose filling is logged once. Names that are no role take at most half the table,
//! so that sign-ins as made-up names cannot crowd out real roles; the random key keeps anyone
//! from choosing names that pile up in one place.
//!
//! On the login path a counted role, and every sign-in once there is no room, costs a shared
//! lock (which sign-ins never wait on for each other) and atomic additions; only a role's first
//! sign-in, when it gets an entry, takes the lock exclusively. Counts are not kept across
//! restarts: they live in shared memory only.

use crate::gucs;
use crate::shmem::{Held, Region};
use aad_auth_core::escape::{quoted, shown_name};
use aad_auth_core::sessions::{stats_admits, Reason};
use pgrx::prelude::*;
use pgrx::JsonB;
use std::cell::UnsafeCell;
use std::ffi::CStr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

/// Room for a role name: NAMEDATALEN bytes (PostgreSQL truncates longer names).
const NAME_CAPACITY: usize = 64;
const REASONS: usize = Reason::ALL.len();
/// Most places a name is looked for (and may be put) in the table.
const MAX_PROBE: usize = 128;

#[repr(C)]
struct Header {
    /// Entries in the table, not counting the overflow entry.
    capacity: u32,
    used: AtomicU32,
    non_roles: AtomicU32,
    overflow_logged: AtomicU32,
}

#[repr(C)]
struct Entry {
    /// 1 once claimed (under the exclusive lock); 0 after a reset.
    used: AtomicU32,
    /// Written only under the exclusive lock, while `used` is 0.
    name_len: AtomicU32,
    name: UnsafeCell<[u8; NAME_CAPACITY]>,
    accepted: AtomicU64,
    refused: [AtomicU64; REASONS],
    /// PostgreSQL timestamps (microseconds since 2000), 0 for never.
    last_accepted: AtomicI64,
    last_refused: AtomicI64,
}

static REGION: Region = Region::new(c"aad_auth_sign_in_stats", size, init);

fn size() -> usize {
    std::mem::size_of::<Header>() + (gucs::sign_in_stats_max() + 1) * std::mem::size_of::<Entry>()
}

fn init(base: *mut u8) {
    // SAFETY: base is the zeroed region of size() bytes, aligned by ShmemInitStruct.
    unsafe { (*base.cast::<Header>()).capacity = gucs::sign_in_stats_max() as u32 };
    // A new key with every new table (the postmaster's; every backend is forked from it).
    // SAFETY: runs in the postmaster's shmem_startup_hook, before any backend exists.
    unsafe { KEY = Some(std::hash::RandomState::new()) };
}

/// The hash key of the current table: random, so that names cannot be chosen to collide.
static mut KEY: Option<std::hash::RandomState> = None;

fn hash(name: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    // SAFETY: written only by the postmaster before forking; read-only afterwards.
    match unsafe { &*std::ptr::addr_of!(KEY) } {
        Some(key) => key.hash_one(name),
        None => 0,
    }
}

/// Shared memory for the table; from `_PG_init`.
pub fn init_shmem() {
    crate::shmem::add(&REGION);
}

/// The table, under a held lock.
struct Table<'a> {
    header: &'a Header,
    entries: &'a [Entry],
    _held: Held,
}

impl Table<'_> {
    fn open(exclusive: bool) -> Option<Table<'static>> {
        let held = if exclusive {
            REGION.exclusive()?
        } else {
            REGION.shared()?
        };
        let base = REGION.base();
        // SAFETY: the region holds a Header followed by capacity + 1 entries (Header's size
        // is a multiple of Entry's alignment); they live as long as the process.
        unsafe {
            let header = &*base.cast::<Header>();
            let first = base.add(std::mem::size_of::<Header>()).cast::<Entry>();
            let entries = std::slice::from_raw_parts(first, header.capacity as usize + 1);
            Some(Table {
                header,
                entries,
                _held: held,
            })
        }
    }

    fn capacity(&self) -> usize {
        self.header.capacity as usize
    }

    /// Whether a name not yet in the table may get an entry of its own now.
    fn admits(&self, is_role: bool) -> bool {
        stats_admits(
            self.header.used.load(Ordering::Relaxed) as usize,
            self.capacity(),
            self.header.non_roles.load(Ordering::Relaxed) as usize,
            is_role,
        )
    }

    fn overflow(&self) -> &Entry {
        &self.entries[self.capacity()]
    }

    /// Counts under the overflow row; true the first time since the start or the last reset
    /// (to be logged once the lock is released).
    fn overflow_count(&self, outcome: Result<(), Reason>, now: i64) -> bool {
        self.overflow().count(outcome, now);
        self.header.overflow_logged.swap(1, Ordering::Relaxed) == 0
    }

    /// The entry of `name`, or the free place where it would go (None when neither: full).
    fn probe(&self, name: &[u8]) -> Result<&Entry, Option<&Entry>> {
        let capacity = self.capacity();
        if capacity == 0 {
            return Err(None);
        }
        let start = (hash(name) % capacity as u64) as usize;
        for i in 0..capacity.min(MAX_PROBE) {
            let entry = &self.entries[(start + i) % capacity];
            if entry.used.load(Ordering::Acquire) == 0 {
                return Err(Some(entry));
            }
            if entry.name() == name {
                return Ok(entry);
            }
        }
        Err(None)
    }
}

impl Entry {
    fn name(&self) -> &[u8] {
        let len = (self.name_len.load(Ordering::Relaxed) as usize).min(NAME_CAPACITY);
        // SAFETY: the name is written only under the exclusive lock, which excludes every
        // reader (they hold the lock shared).
        unsafe { &(&*self.name.get())[..len] }
    }

    /// Claims an unused entry for `name`; under the exclusive lock.
    fn claim(&self, name: &[u8]) {
        let len = name.len().min(NAME_CAPACITY);
        // SAFETY: the caller holds the exclusive lock: no other process reads or writes the
        // name meanwhile.
        unsafe { (&mut *self.name.get())[..len].copy_from_slice(&name[..len]) };
        self.name_len.store(len as u32, Ordering::Relaxed);
        self.used.store(1, Ordering::Release);
    }

    fn count(&self, outcome: Result<(), Reason>, now: i64) {
        match outcome {
            Ok(()) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                self.last_accepted.fetch_max(now, Ordering::Relaxed);
            }
            Err(reason) => {
                self.refused[reason.index()].fetch_add(1, Ordering::Relaxed);
                self.last_refused.fetch_max(now, Ordering::Relaxed);
            }
        }
    }

    fn clear(&self) {
        self.accepted.store(0, Ordering::Relaxed);
        for counter in &self.refused {
            counter.store(0, Ordering::Relaxed);
        }
        self.last_accepted.store(0, Ordering::Relaxed);
        self.last_refused.store(0, Ordering::Relaxed);
    }
}

/// Counts one sign-in attempt for the role asked for (its exact bytes): accepted, or refused
/// for `reason`. `is_role` says whether a role of that name exists; it is asked only when the
/// name is not in the table yet, outside the lock.
pub fn count(role: &[u8], is_role: impl FnOnce() -> bool, outcome: Result<(), Reason>) {
    let name = &role[..role.len().min(NAME_CAPACITY)];
    // SAFETY: a plain read of the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    // Under the shared lock: a name already counted, or one that finds no room.
    let shared = |is_role: Option<bool>| -> Option<bool> {
        let table = Table::open(false)?;
        match table.probe(name) {
            Ok(entry) => entry.count(outcome, now),
            Err(free) if free.is_none() || is_role.is_some_and(|r| !table.admits(r)) => {
                let first = table.overflow_count(outcome, now);
                drop(table);
                if first {
                    log_full();
                }
            }
            Err(_) => return Some(false),
        }
        Some(true)
    };
    if shared(None) != Some(false) {
        return;
    }
    let is_role = is_role();
    if shared(Some(is_role)) != Some(false) {
        return;
    }
    // A new entry: the only step under the exclusive lock.
    let overflowed = {
        let Some(table) = Table::open(true) else {
            return;
        };
        let header = table.header;
        let found = match table.probe(name) {
            Ok(entry) => Some(entry),
            Err(Some(free)) if table.admits(is_role) => {
                free.claim(name);
                header.used.fetch_add(1, Ordering::Relaxed);
                if !is_role {
                    header.non_roles.fetch_add(1, Ordering::Relaxed);
                }
                Some(free)
            }
            Err(_) => None,
        };
        match found {
            Some(entry) => {
                entry.count(outcome, now);
                false
            }
            None => table.overflow_count(outcome, now),
        }
    };
    if overflowed {
        log_full();
    }
}

fn log_full() {
    log!(
        "aad_auth: the sign-in statistics are full (aad_auth.sign_in_stats_max = {}): sign-ins of roles not yet counted are counted under the row with a null rolname; raise the setting (at a restart) or call aad_auth_reset_sign_in_stats()",
        gucs::sign_in_stats_max()
    );
}

/// Zeroes every count and forgets every role (an admin's `aad_auth_reset_sign_in_stats()`).
fn reset() {
    let Some(table) = Table::open(true) else {
        return;
    };
    for entry in table.entries {
        entry.clear();
        entry.used.store(0, Ordering::Release);
    }
    table.header.used.store(0, Ordering::Relaxed);
    table.header.non_roles.store(0, Ordering::Relaxed);
    table.header.overflow_logged.store(0, Ordering::Relaxed);
}

type Row = (
    Option<String>,
    i64,
    i64,
    JsonB,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
);

fn row(name: Option<String>, entry: &Entry) -> Option<Row> {
    let refused: Vec<u64> = entry
        .refused
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    let accepted = entry.accepted.load(Ordering::Relaxed);
    let refused_total: u64 = refused.iter().sum();
    if accepted == 0 && refused_total == 0 {
        return None;
    }
    let by: serde_json::Map<String, serde_json::Value> = Reason::ALL
        .iter()
        .zip(&refused)
        .map(|(r, n)| (r.as_str().to_owned(), (*n).into()))
        .collect();
    let time = |t: &AtomicI64| {
        let t = t.load(Ordering::Relaxed);
        (t != 0)
            .then(|| TimestampWithTimeZone::try_from(t).ok())
            .flatten()
    };
    Some((
        name,
        accepted as i64,
        refused_total as i64,
        JsonB(serde_json::Value::Object(by)),
        time(&entry.last_accepted),
        time(&entry.last_refused),
    ))
}

/// The statistics, one row per role with a count (and the overflow row, with a null
/// `rolname`, when it has one). `aad_auth_sign_in_stats()` wraps this with `rolname name`.
#[allow(clippy::type_complexity)]
#[pg_extern]
fn aad_auth_sign_in_stats_rows() -> TableIterator<
    'static,
    (
        name!(rolname, Option<String>),
        name!(accepted, i64),
        name!(refused, i64),
        name!(refused_by, JsonB),
        name!(last_accepted, Option<TimestampWithTimeZone>),
        name!(last_refused, Option<TimestampWithTimeZone>),
    ),
> {
    let mut rows = Vec::new();
    if let Some(table) = Table::open(false) {
        for entry in &table.entries[..table.capacity()] {
            if entry.used.load(Ordering::Acquire) != 0 {
                // Hidden characters and bytes that are not UTF-8 shown escaped, never lossily.
                rows.extend(row(Some(shown_name(entry.name())), entry));
            }
        }
        rows.extend(row(None, table.overflow()));
    }
    TableIterator::new(rows)
}

/// Zeroes the sign-in statistics and forgets the roles in them; logged with who did it.
#[pg_extern]
fn aad_auth_reset_sign_in_stats() {
    reset();
    // Who: the current role, and the session's own role (SET ROLE azure_pg_admin must not
    // hide the person behind it), whose identity log_connections records.
    // SAFETY: catalog look-ups of the calling session's roles, inside its transaction.
    let (current, session) = unsafe {
        (
            CStr::from_ptr(pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false)),
            CStr::from_ptr(pg_sys::GetUserNameFromId(pg_sys::GetSessionUserId(), false)),
        )
    };
    log!(
        "aad_auth: sign-in statistics reset by role {} (session user {})",
        quoted(current.to_bytes()),
        quoted(session.to_bytes())
    );
}

extension_sql!(
    r#"
CREATE FUNCTION aad_auth_sign_in_stats()
RETURNS TABLE(rolname name, accepted bigint, refused bigint, refused_by jsonb,
              last_accepted timestamptz, last_refused timestamptz)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT s.rolname::name, s.accepted, s.refused, s.refused_by, s.last_accepted, s.last_refused
    FROM @extschema@.aad_auth_sign_in_stats_rows() AS s
    ORDER BY s.rolname NULLS LAST
$fn$;
-- Who tries to sign in, and how often it fails: for superusers and Entra ID admins.
REVOKE EXECUTE ON FUNCTION aad_auth_sign_in_stats_rows() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION aad_auth_sign_in_stats() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION aad_auth_reset_sign_in_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aad_auth_sign_in_stats_rows() TO azure_pg_admin;
GRANT EXECUTE ON FUNCTION aad_auth_sign_in_stats() TO azure_pg_admin;
GRANT EXECUTE ON FUNCTION aad_auth_reset_sign_in_stats() TO azure_pg_admin;
"#,
    name = "sign_in_stats",
    requires = [
        aad_auth_sign_in_stats_rows,
        aad_auth_reset_sign_in_stats,
        "list_principals"
    ]
);
