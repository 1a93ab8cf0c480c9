//! The signing keys a backend verifies with, from `aad_auth.jwks_file`.
//!
//! The postmaster reads the file at start-up, so every backend it forks starts with the keys
//! parsed. A backend re-reads the file only when its path, size, inode or modification time
//! differs from what was parsed (one `stat` per sign-in, no parse). A file that becomes
//! unreadable or invalid keeps the last good keys.

use aad_auth_core::jwks::MAX_JWKS_BYTES;
use aad_auth_core::KeySet;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;

#[derive(Clone, PartialEq, Eq)]
struct Stamp {
    path: String,
    size: u64,
    inode: u64,
    mtime_ns: i128,
}

struct Loaded {
    stamp: Stamp,
    keys: Rc<KeySet>,
}

thread_local! {
    static LOADED: RefCell<Option<Loaded>> = const { RefCell::new(None) };
}

/// Why no keys are available.
pub struct KeysUnavailable(pub String);

fn stamp(path: &str) -> Result<Stamp, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot stat key set file \"{path}\": {e}"))?;
    Ok(Stamp {
        path: path.to_owned(),
        size: meta.len(),
        inode: meta.ino(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    })
}

fn read(stamp: &Stamp) -> Result<KeySet, String> {
    if stamp.size > MAX_JWKS_BYTES as u64 {
        return Err(format!(
            "key set file \"{}\" is {} bytes, more than the limit of {MAX_JWKS_BYTES}",
            stamp.path, stamp.size
        ));
    }
    let bytes = std::fs::read(&stamp.path).map_err(|e| format!("cannot read key set file \"{}\": {e}", stamp.path))?;
    let keys = KeySet::parse(&bytes).map_err(|e| format!("key set file \"{}\": {e}", stamp.path))?;
    for skipped in &keys.skipped {
        warning!("aad_auth: key set file \"{}\": {skipped}", stamp.path);
    }
    Ok(keys)
}

/// The current keys; re-reads the file if it changed since it was parsed.
pub fn current() -> Result<Rc<KeySet>, KeysUnavailable> {
    let Some(path) = crate::gucs::jwks_file() else {
        return Err(KeysUnavailable("aad_auth.jwks_file is not set".into()));
    };
    LOADED.with_borrow_mut(|loaded| {
        let fresh = stamp(&path);
        if let (Some(l), Ok(s)) = (loaded.as_ref(), &fresh) {
            if &l.stamp == s {
                return Ok(l.keys.clone());
            }
        }
        let attempt = fresh.and_then(|s| read(&s).map(|k| (s, k)));
        match (attempt, loaded.as_ref()) {
            (Ok((stamp, keys)), _) => {
                let keys = Rc::new(keys);
                *loaded = Some(Loaded { stamp, keys: keys.clone() });
                Ok(keys)
            }
            (Err(why), Some(l)) if l.stamp.path == path => {
                warning!("aad_auth: {why}; keeping the last good key set");
                Ok(l.keys.clone())
            }
            (Err(why), _) => Err(KeysUnavailable(why)),
        }
    })
}

/// Called in the postmaster at start-up: parse the keys once so that backends inherit them,
/// and say what was loaded.
pub fn load_at_startup() {
    match current() {
        Ok(keys) => {
            let kids: Vec<&str> = keys.keys().iter().map(|k| k.kid.as_str()).collect();
            log!("aad_auth: {} signing key(s) loaded: {}", kids.len(), kids.join(", "));
        }
        Err(KeysUnavailable(why)) => log!("aad_auth: no signing keys loaded: {why}"),
    }
}
