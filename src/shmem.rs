//! Shared memory sized at server start: the sign-in statistics (`aad_auth.sign_in_stats_max`
//! entries) and the session slots (one per possible backend). Each region is requested in
//! `shmem_request_hook` with one LWLock of its own, and created zeroed in
//! `shmem_startup_hook` by the postmaster, which every server process is forked from; after a
//! crash, shared memory is created anew, and with it every region.

use crate::ffi_decls;
use pgrx::pg_guard;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};

/// One region: its name (also its lock's tranche), its size, and where it lives once created.
pub struct Region {
    name: &'static CStr,
    size: fn() -> usize,
    /// Writes the header of a newly created (zeroed) region.
    init: fn(*mut u8),
    base: AtomicPtr<u8>,
    lock: AtomicPtr<pg_sys::LWLock>,
}

impl Region {
    pub const fn new(name: &'static CStr, size: fn() -> usize, init: fn(*mut u8)) -> Region {
        Region {
            name,
            size,
            init,
            base: AtomicPtr::new(std::ptr::null_mut()),
            lock: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The region's memory, once created (null in a process that was not forked after it).
    pub fn base(&self) -> *mut u8 {
        self.base.load(Ordering::Relaxed)
    }

    /// Holds the region's lock in shared mode until the guard is dropped.
    pub fn shared(&self) -> Option<Held> {
        self.hold(pg_sys::LWLockMode::LW_SHARED)
    }

    /// Holds the region's lock in exclusive mode until the guard is dropped.
    pub fn exclusive(&self) -> Option<Held> {
        self.hold(pg_sys::LWLockMode::LW_EXCLUSIVE)
    }

    fn hold(&self, mode: pg_sys::LWLockMode::Type) -> Option<Held> {
        let lock = self.lock.load(Ordering::Relaxed);
        if lock.is_null() || self.base().is_null() {
            return None;
        }
        // SAFETY: the lock is this region's LWLock in shared memory; LWLockAcquire waits
        // without a deadline only on other holders, who hold it for a few memory accesses.
        unsafe { pg_sys::LWLockAcquire(lock, mode) };
        Some(Held(lock))
    }
}

/// A held region lock, released when dropped.
pub struct Held(*mut pg_sys::LWLock);

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: this process acquired the lock in Region::hold.
        unsafe { pg_sys::LWLockRelease(self.0) };
    }
}

thread_local! {
    static REGIONS: RefCell<Vec<&'static Region>> = const { RefCell::new(Vec::new()) };
}

static mut PREVIOUS_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREVIOUS_STARTUP: pg_sys::shmem_startup_hook_type = None;

/// Registers a region; from `_PG_init` (the hooks are installed with the first one).
pub fn add(region: &'static Region) {
    let first = REGIONS.with_borrow_mut(|regions| {
        regions.push(region);
        regions.len() == 1
    });
    if first {
        // SAFETY: _PG_init runs once, in the postmaster; the previous hooks are chained.
        unsafe {
            PREVIOUS_REQUEST = pg_sys::shmem_request_hook;
            pg_sys::shmem_request_hook = Some(request);
            PREVIOUS_STARTUP = pg_sys::shmem_startup_hook;
            pg_sys::shmem_startup_hook = Some(startup);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn request() {
    // SAFETY: the hook installed before ours, with no arguments.
    if let Some(previous) = unsafe { PREVIOUS_REQUEST } {
        unsafe { previous() };
    }
    REGIONS.with_borrow(|regions| {
        for region in regions {
            // SAFETY: called from shmem_request_hook, as these functions require.
            unsafe {
                pg_sys::RequestAddinShmemSpace((region.size)());
                pg_sys::RequestNamedLWLockTranche(region.name.as_ptr(), 1);
            }
        }
    });
}

#[pg_guard]
unsafe extern "C-unwind" fn startup() {
    // SAFETY: the hook installed before ours, with no arguments.
    if let Some(previous) = unsafe { PREVIOUS_STARTUP } {
        unsafe { previous() };
    }
    REGIONS.with_borrow(|regions| {
        for region in regions {
            let size = (region.size)();
            // SAFETY: the space and the tranche were requested in `request`; the C side takes
            // AddinShmemInitLock and zeroes a region it creates.
            let (base, lock) = unsafe {
                (
                    ffi_decls::aad_auth_shmem_zeroed(region.name.as_ptr(), size).cast::<u8>(),
                    std::ptr::addr_of_mut!(
                        (*pg_sys::GetNamedLWLockTranche(region.name.as_ptr())).lock
                    ),
                )
            };
            (region.init)(base);
            region.base.store(base, Ordering::Relaxed);
            region.lock.store(lock, Ordering::Relaxed);
        }
    });
}

/// Room for a short text kept in shared memory (an error, an address), unless said otherwise.
const TEXT_CAPACITY: usize = 512;

/// A short text kept in shared memory: at most N bytes, cut on a character boundary.
#[derive(Clone, Copy)]
pub(crate) struct Text<const N: usize = TEXT_CAPACITY> {
    len: u32,
    bytes: [u8; N],
}

impl<const N: usize> Text<N> {
    pub(crate) const EMPTY: Self = Text {
        len: 0,
        bytes: [0; N],
    };

    /// `s`, cut at N bytes on a character boundary.
    pub(crate) fn of(s: &str) -> Self {
        let mut text = Self::EMPTY;
        text.set(s);
        text
    }

    /// The first N of `raw` as they are (a name that need not be UTF-8).
    pub(crate) fn of_bytes(raw: &[u8]) -> Self {
        let n = raw.len().min(N);
        let mut text = Self::EMPTY;
        text.bytes[..n].copy_from_slice(&raw[..n]);
        text.len = n as u32;
        text
    }

    pub(crate) fn set(&mut self, s: &str) {
        let mut n = s.len().min(N);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
        self.len = n as u32;
    }

    pub(crate) fn raw(&self) -> &[u8] {
        &self.bytes[..(self.len as usize).min(N)]
    }

    pub(crate) fn get(&self) -> Option<String> {
        (self.len > 0).then(|| String::from_utf8_lossy(self.raw()).into_owned())
    }
}
