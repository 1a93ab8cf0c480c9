//! Questions for the directory (Microsoft Graph), asked by backends and answered by the
//! background worker, the only process that makes HTTP requests: a name to resolve for
//! `pgaadauth_create_principal`, and a group membership to check for a group-overage token.
//!
//! One request slot in shared memory serves the cluster: a backend waits for the slot, writes
//! its question, wakes the worker and waits (bounded) for the answer.

use crate::keycache;
use crate::shmem::Text;
use crate::{graph, gucs};
use aad_auth_core::{Guid, PrincipalType};
use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::time::{Duration, Instant};

/// A question for the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// A user's UPN, or a group's or service principal's display name.
    Resolve(String),
    /// Whether the object (a user, or a service principal when `is_app`) is a member of `group`,
    /// directly or through nested groups.
    Member {
        member: String,
        is_app: bool,
        group: Guid,
    },
}

/// The directory's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Resolved { oid: Guid, kind: PrincipalType },
    Member(bool),
}

#[derive(Clone, Copy)]
pub struct Slot {
    next_ticket: u64,
    /// The ticket of the question waiting or being answered; 0: the slot is free.
    pending: u64,
    /// The ticket of the last question answered.
    done: u64,
    /// 1 resolve, 2 member.
    kind: u8,
    is_app: bool,
    arg: Text,
    group: Text,
    ok: bool,
    answer: Text,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            next_ticket: 0,
            pending: 0,
            done: 0,
            kind: 0,
            is_app: false,
            arg: Text::EMPTY,
            group: Text::EMPTY,
            ok: false,
            answer: Text::EMPTY,
        }
    }
}

// SAFETY: Slot is plain data with no pointers.
unsafe impl PGRXSharedMemory for Slot {}

// SAFETY: the name is a static C string; the lock is initialised by pg_shmem_init!.
static SLOT: PgLwLock<Slot> = unsafe { PgLwLock::new(c"aad_auth_directory") };

/// Requests the slot's shared memory; from `_PG_init`.
pub fn init() {
    pg_shmem_init!(SLOT);
}

/// Asks the worker `question` and waits for the answer at most `wait`. The wait answers
/// cancel requests and `statement_timeout` (an ERROR that gives the slot back).
pub fn ask(question: &Question, wait: Duration) -> Result<Answer, String> {
    if gucs::directory().is_none() {
        return Err("no directory is configured (aad_auth.graph_client_id, aad_auth.graph_client_secret_file)".into());
    }
    let deadline = Instant::now() + wait;
    let ticket = loop {
        {
            let mut slot = SLOT.exclusive();
            if slot.pending == 0 {
                slot.next_ticket += 1;
                let ticket = slot.next_ticket;
                slot.pending = ticket;
                match question {
                    Question::Resolve(name) => {
                        slot.kind = 1;
                        slot.arg.set(name);
                    }
                    Question::Member {
                        member,
                        is_app,
                        group,
                    } => {
                        slot.kind = 2;
                        slot.arg.set(member);
                        slot.is_app = *is_app;
                        slot.group.set(&group.to_string());
                    }
                }
                break ticket;
            }
        }
        if Instant::now() >= deadline {
            return Err("the directory is busy with another question".into());
        }
        keycache::nap(20);
    };
    // Gives the slot back however this function is left: answered, timed out, or by an
    // ERROR (cancel, statement_timeout) unwinding through it.
    struct Release(u64);
    impl Drop for Release {
        fn drop(&mut self) {
            cancel(self.0);
        }
    }
    let _release = Release(ticket);
    if !keycache::wake_worker() {
        return Err("the aad_auth background worker is not running".into());
    }
    while Instant::now() < deadline {
        keycache::nap(20);
        let slot = SLOT.share();
        if slot.done == ticket {
            let text = slot.answer.get().unwrap_or_default();
            return if slot.ok { decode(&text) } else { Err(text) };
        }
    }
    Err(format!(
        "the directory did not answer within {} s",
        wait.as_secs()
    ))
}

fn cancel(ticket: u64) {
    let mut slot = SLOT.exclusive();
    if slot.pending == ticket {
        slot.pending = 0;
    }
}

fn encode(answer: &Answer) -> String {
    match answer {
        Answer::Resolved { oid, kind } => format!("{oid} {}", kind.as_str()),
        Answer::Member(yes) => yes.to_string(),
    }
}

fn decode(text: &str) -> Result<Answer, String> {
    match text {
        "true" => Ok(Answer::Member(true)),
        "false" => Ok(Answer::Member(false)),
        _ => {
            let (oid, kind) = text.split_once(' ').ok_or("malformed directory answer")?;
            Ok(Answer::Resolved {
                oid: oid.parse().map_err(|_| "malformed directory answer")?,
                kind: kind.parse().map_err(|_| "malformed directory answer")?,
            })
        }
    }
}

/// The worker's side: answers the waiting question, if any.
pub fn serve() {
    let (ticket, question) = {
        let slot = SLOT.share();
        if slot.pending == 0 || slot.pending == slot.done {
            return;
        }
        let arg = slot.arg.get().unwrap_or_default();
        let question = match slot.kind {
            1 => Question::Resolve(arg),
            _ => Question::Member {
                member: arg,
                is_app: slot.is_app,
                group: slot
                    .group
                    .get()
                    .and_then(|g| g.parse().ok())
                    .unwrap_or(Guid::NIL),
            },
        };
        (slot.pending, question)
    };
    let result = match gucs::directory() {
        Some(directory) => graph::ask(&directory, &question),
        None => Err("no directory is configured".into()),
    };
    if let Err(why) = &result {
        warning!("aad_auth: directory: {why}");
    }
    let mut slot = SLOT.exclusive();
    slot.done = ticket;
    match &result {
        Ok(answer) => {
            slot.ok = true;
            slot.answer.set(&encode(answer));
        }
        Err(why) => {
            slot.ok = false;
            slot.answer.set(why);
        }
    }
    if slot.pending == ticket {
        slot.pending = 0;
    }
}
