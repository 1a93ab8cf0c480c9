//! Group sync (Azure's `pgaadauth.enable_group_sync`): each member of a group principal —
//! user, service principal or managed identity — gets its own LOGIN role, named as Azure names
//! it (UPN, display name), bound to its own object id and granted the group's role, so that
//! people sign in as themselves. The decisions are `aad_auth_core::groupsync::plan`'s; this
//! module reads the roles, asks Microsoft Graph for the members and applies the plan.
//!
//! A background worker ("aad_auth group sync", connected to `aad_auth.group_sync_database`)
//! syncs every `aad_auth.group_sync_interval` while `aad_auth.group_sync` is on. It starts
//! only once recovery has finished, so it never runs on a hot standby (roles replicate from
//! the primary). `pgaadauth_sync_roles_for_group_members()` syncs at once in the caller's
//! session and returns the changes. A group whose members cannot be read stops the whole run
//! before anything is changed: an outage revokes nothing.

use crate::api::{as_superuser, fail, require_admin, run};
use crate::keycache::{nap, timestamp};
use crate::seclabel::{PROVIDER, SYNC_PROVIDER};
use crate::shmem::Text;
use crate::{graph, gucs};
use aad_auth_core::escape::quoted;
use aad_auth_core::groupsync::{self, Bound, Group, Mark, Role, Step};
use aad_auth_core::{Guid, Label, PrincipalType};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use pgrx::spi::{quote_identifier, quote_literal};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Longest sleep between looks at the settings.
const MAX_SLEEP: Duration = Duration::from_secs(10);
/// Longest a call of the SQL function waits for a run already under way.
const WAIT_FOR_RUNNING: Duration = Duration::from_secs(60);

/// What admins see of group sync (`aad_auth_group_sync_status()`).
#[derive(Clone, Copy)]
pub struct Status {
    worker_pid: i32,
    /// The process running a sync now, 0 when none.
    running_pid: i32,
    runs: u64,
    failures: u64,
    last_started: i64,
    last_success: i64,
    last_failure: i64,
    groups: u32,
    members: u32,
    changes: u32,
    error: Text,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            worker_pid: 0,
            running_pid: 0,
            runs: 0,
            failures: 0,
            last_started: 0,
            last_success: 0,
            last_failure: 0,
            groups: 0,
            members: 0,
            changes: 0,
            error: Text::EMPTY,
        }
    }
}

// SAFETY: Status is plain data with no pointers.
unsafe impl PGRXSharedMemory for Status {}

// SAFETY: the name is a static C string; the lock is initialised by pg_shmem_init!.
static STATUS: PgLwLock<Status> = unsafe { PgLwLock::new(c"aad_auth_group_sync") };

/// Shared memory and the worker; from `_PG_init`.
pub fn init() {
    pg_shmem_init!(STATUS);
    BackgroundWorkerBuilder::new("aad_auth group sync")
        .set_type("aad_auth group sync")
        .set_library("aad_auth")
        .set_function("aad_auth_group_sync_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

fn now() -> i64 {
    crate::keycache::now()
}

fn this_pid() -> i32 {
    // SAFETY: a plain read of this process's id.
    unsafe { pg_sys::MyProcPid }
}

/// Marks this process as the one syncing, for as long as it lives (an ERROR unwinding
/// through the run releases it too).
struct Running;

impl Running {
    /// Waits up to `wait` for another run to end.
    fn claim(wait: Duration) -> Result<Running, String> {
        let deadline = Instant::now() + wait;
        loop {
            {
                let mut status = STATUS.exclusive();
                // SAFETY: kill with signal 0 only asks whether the process exists.
                let alive = status.running_pid != 0
                    && unsafe { crate::ffi_decls::kill(status.running_pid, 0) } == 0;
                if !alive {
                    status.running_pid = this_pid();
                    status.last_started = now();
                    status.runs += 1;
                    return Ok(Running);
                }
            }
            if Instant::now() >= deadline {
                return Err("another group sync is running; try again in a moment".into());
            }
            nap(200);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut status = STATUS.exclusive();
        if status.running_pid == this_pid() {
            status.running_pid = 0;
        }
    }
}

/// What the sync reads of the catalogs: the group principals, the roles it may touch, and
/// every role (PostgreSQL oid to name).
type State = (Vec<Group>, Vec<Role>, BTreeMap<u32, String>);

/// The group principals, the roles the sync may touch, and every role, from the catalogs.
fn read_state() -> State {
    // (pg oid, name, LOGIN, pgaadauth label, aad_auth_sync label, roles it is a member of,
    // a role other than a superuser holds ADMIN OPTION on it)
    type Row = (
        i64,
        String,
        bool,
        Option<String>,
        Option<String>,
        Vec<i64>,
        bool,
    );
    let spi_failed = |e: pgrx::spi::Error| -> ! {
        fail(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("aad_auth: {e}"),
            "",
        )
    };
    // `update` rather than `select`: a fresh snapshot for each read (`select` would reuse the
    // calling statement's, taken before a run under way was waited for, and miss its roles).
    let rows: Vec<Row> = Spi::connect_mut(|client| {
        client
            .update(
                "SELECT r.oid::pg_catalog.int8, r.rolname::pg_catalog.text, r.rolcanlogin, \
                 (SELECT l.label FROM pg_catalog.pg_shseclabel l WHERE l.objoid = r.oid \
                    AND l.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND l.provider = 'pgaadauth'), \
                 (SELECT l.label FROM pg_catalog.pg_shseclabel l WHERE l.objoid = r.oid \
                    AND l.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND l.provider = 'aad_auth_sync'), \
                 ARRAY(SELECT m.roleid::pg_catalog.int8 FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid), \
                 EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles a ON a.oid = m.member \
                    WHERE m.roleid = r.oid AND m.admin_option AND NOT a.rolsuper) \
                 FROM pg_catalog.pg_roles r \
                 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_shseclabel l WHERE l.objoid = r.oid \
                    AND l.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass \
                    AND l.provider IN ('pgaadauth', 'aad_auth_sync')) \
                 ORDER BY 2",
                None,
                &[],
            )?
            .map(|row| {
                Ok((
                    row.get::<i64>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<bool>(3)?.unwrap_or_default(),
                    row.get::<String>(4)?,
                    row.get::<String>(5)?,
                    row.get::<Vec<i64>>(6)?.unwrap_or_default(),
                    row.get::<bool>(7)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_else(|e| spi_failed(e));
    let names: BTreeMap<u32, String> = Spi::connect_mut(|client| {
        client
            .update(
                "SELECT r.oid::pg_catalog.int8, r.rolname::pg_catalog.text FROM pg_catalog.pg_roles r",
                None,
                &[],
            )?
            .map(|row| {
                Ok((
                    row.get::<i64>(1)?.unwrap_or_default() as u32,
                    row.get::<String>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<BTreeMap<_, _>, pgrx::spi::Error>>()
    })
    .unwrap_or_else(|e| spi_failed(e));
    let label = |text: &Option<String>| text.as_deref().and_then(|t| t.parse::<Label>().ok());
    let mut groups = Vec::new();
    let mut roles = Vec::new();
    for (id, name, login, principal, mark, member_of, foreign_admins) in rows {
        let id = id as u32;
        match label(&principal) {
            Some(l) if l.kind == PrincipalType::Group => groups.push(Group {
                oid: l.oid,
                id,
                role: name,
                mfa: l.mfa,
            }),
            l => roles.push(Role {
                name,
                id,
                principal: l.map(|l| Bound {
                    oid: l.oid,
                    kind: l.kind,
                    mfa: l.mfa,
                }),
                mark: mark.as_deref().and_then(|m| m.parse::<Mark>().ok()),
                login,
                member_of: member_of
                    .iter()
                    .map(|m| *m as u32)
                    .collect::<BTreeSet<u32>>(),
                foreign_admins,
            }),
        }
    }
    (groups, roles, names)
}

/// Labels `role` as the principal `oid` of type `kind`.
fn bind(role: &str, oid: Guid, kind: PrincipalType, mfa: bool) {
    let label = Label {
        oid,
        kind,
        admin: false,
        mfa,
    };
    run(&format!(
        "SECURITY LABEL FOR {} ON ROLE {} IS {}",
        PROVIDER.to_str().unwrap_or("pgaadauth"),
        quote_identifier(role),
        quote_literal(label.to_string())
    ));
}

/// Makes the changes (as the bootstrap superuser in a backend; the worker is one).
fn apply(steps: &[Step]) {
    let id = |name: &str| quote_identifier(name);
    for step in steps {
        match step {
            Step::Create {
                role,
                oid,
                kind,
                mfa,
            } => {
                run(&format!("CREATE ROLE {} LOGIN", id(role)));
                bind(role, *oid, *kind, *mfa);
            }
            Step::RequireMfa { role, oid, kind } => bind(role, *oid, *kind, true),
            Step::Grant { role, group } => run(&format!("GRANT {} TO {}", id(group), id(role))),
            Step::Revoke { role, group } => run(&format!("REVOKE {} FROM {}", id(group), id(role))),
            Step::Login { role, on } => run(&format!(
                "ALTER ROLE {} {}",
                id(role),
                if *on { "LOGIN" } else { "NOLOGIN" }
            )),
            Step::Mark { role, mark } => run(&format!(
                "SECURITY LABEL FOR {} ON ROLE {} IS {}",
                SYNC_PROVIDER.to_str().unwrap_or("aad_auth_sync"),
                id(role),
                mark.as_ref()
                    .map_or_else(|| "NULL".to_owned(), |m| quote_literal(m.to_string()))
            )),
            Step::Skip { .. } => {}
        }
        if let Some((role, group, action)) = step.change() {
            let level_is_warning = matches!(step, Step::Skip { .. });
            let line = format!(
                "aad_auth: group sync: role={} group={} {action}",
                quoted(role.as_bytes()),
                quoted(group.as_bytes())
            );
            if level_is_warning {
                warning!("{line}");
            } else {
                log!("{line}");
            }
        }
    }
}

/// One run. `in_transaction` runs its argument inside a transaction: the worker opens one
/// for reading and one for writing; the SQL function is inside its caller's. Nothing is
/// changed unless the members of every group were read.
fn sync_once(
    in_transaction: &dyn Fn(&mut dyn FnMut()),
    wait_for_running: Duration,
) -> Result<Vec<Step>, String> {
    let directory = gucs::directory().ok_or("no directory is configured")?;
    let _running = Running::claim(wait_for_running)?;
    let mut state = None;
    in_transaction(&mut || state = Some(read_state()));
    let (groups, roles, names) = state.ok_or("the roles could not be read")?;
    let mut members = BTreeMap::new();
    let mut count = 0;
    for group in &groups {
        match graph::transitive_members(&directory, &group.oid) {
            Ok(list) => {
                count += list.len();
                members.insert(group.oid, list);
            }
            Err(why) => {
                let why = format!(
                    "could not read the members of group role {} ({}): {why}; nothing was changed",
                    quoted(group.role.as_bytes()),
                    group.oid
                );
                let mut status = STATUS.exclusive();
                status.failures += 1;
                status.last_failure = now();
                status.error.set(&why);
                return Err(why);
            }
        }
    }
    let steps = groupsync::plan(&groups, &members, &roles, &names);
    // An ERROR while applying (a role dropped or created meanwhile) rolls the whole run back;
    // it is recorded on the way out, and the next run starts from the catalogs again.
    struct Applying;
    impl Drop for Applying {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let mut status = STATUS.exclusive();
                status.failures += 1;
                status.last_failure = now();
                status
                    .error
                    .set("applying the changes failed and was rolled back; see the server log");
            }
        }
    }
    let applying = Applying;
    in_transaction(&mut || apply(&steps));
    drop(applying);
    let mut status = STATUS.exclusive();
    status.last_success = now();
    status.groups = groups.len() as u32;
    status.members = count as u32;
    status.changes = steps.iter().filter(|s| s.change().is_some()).count() as u32;
    status.error = Text::EMPTY;
    Ok(steps)
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn aad_auth_group_sync_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(Some(&gucs::group_sync_database()), None);
    STATUS.exclusive().worker_pid = this_pid();
    let mut last_run: Option<Instant> = None;
    let mut sleep = Duration::from_millis(100);
    while BackgroundWorker::wait_latch(Some(sleep)) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: re-reads postgresql.conf, as any process does on SIGHUP.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        sleep = MAX_SLEEP;
        if !gucs::group_sync() || gucs::directory().is_none() {
            continue;
        }
        let interval = gucs::group_sync_interval();
        let due = last_run.is_none_or(|t| t.elapsed() >= interval);
        if !due {
            let left = interval.saturating_sub(last_run.map_or(interval, |t| t.elapsed()));
            sleep = left.clamp(Duration::from_millis(100), MAX_SLEEP);
            continue;
        }
        last_run = Some(Instant::now());
        let in_transaction = |f: &mut dyn FnMut()| {
            BackgroundWorker::transaction(std::panic::AssertUnwindSafe(|| {
                // Never wait without a deadline on a role an admin's open transaction holds.
                run("SET LOCAL lock_timeout = '10s'");
                f()
            }));
        };
        match sync_once(&in_transaction, Duration::ZERO) {
            Ok(steps) => log!(
                "aad_auth: group sync: done, {} change(s)",
                steps.iter().filter(|s| s.change().is_some()).count()
            ),
            Err(why) => warning!("aad_auth: group sync: {why}"),
        }
        sleep = interval.clamp(Duration::from_millis(100), MAX_SLEEP);
    }
    STATUS.exclusive().worker_pid = 0;
    // Exit code 1: restarted after its restart time unless the server is shutting down.
    // SAFETY: ends this worker process.
    unsafe { pg_sys::proc_exit(1) };
}

/// Syncs the members of every group principal now; one row per change (role, group, action).
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
fn pgaadauth_sync_roles_for_group_members() -> TableIterator<
    'static,
    (
        name!(role, String),
        name!(group, String),
        name!(action, String),
    ),
> {
    require_admin("pgaadauth_sync_roles_for_group_members");
    // SAFETY: a plain read of the server's state.
    if unsafe { pg_sys::RecoveryInProgress() } {
        fail(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            "group sync does not run on a hot standby".into(),
            "Run it on the primary: the roles it makes replicate here.",
        );
    }
    if !gucs::group_sync() {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "group sync is off on this server".into(),
            "Set aad_auth.group_sync = on (Azure's pgaadauth.enable_group_sync = on works too) in postgresql.conf and reload.",
        );
    }
    if gucs::directory().is_none() {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "group sync needs a Microsoft Entra ID directory, and none is configured".into(),
            "Set aad_auth.graph_client_id and aad_auth.graph_client_secret_file (an application allowed GroupMember.Read.All, User.Read.All and Application.Read.All).",
        );
    }
    let in_transaction = |f: &mut dyn FnMut()| as_superuser(f);
    match sync_once(&in_transaction, WAIT_FOR_RUNNING) {
        Ok(steps) => TableIterator::new(
            steps
                .iter()
                .filter_map(|s| s.change())
                .map(|(r, g, a)| (r.to_owned(), g.to_owned(), a))
                .collect::<Vec<_>>(),
        ),
        Err(why) => fail(
            PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
            format!(
                "group sync failed: {}",
                aad_auth_core::escape::one_line(&why)
            ),
            "See aad_auth_group_sync_status() and the server log.",
        ),
    }
}

/// Group sync as it stands: whether it is on, the worker, the last run and its result.
#[allow(clippy::type_complexity)]
#[pg_extern]
fn aad_auth_group_sync_status() -> TableIterator<
    'static,
    (
        name!(enabled, bool),
        name!(worker_pid, Option<i32>),
        name!(running_pid, Option<i32>),
        name!(runs, i64),
        name!(failures, i64),
        name!(last_started, Option<TimestampWithTimeZone>),
        name!(last_success, Option<TimestampWithTimeZone>),
        name!(last_failure, Option<TimestampWithTimeZone>),
        name!(last_error, Option<String>),
        name!(groups, i32),
        name!(members, i32),
        name!(changes, i32),
    ),
> {
    let s = *STATUS.share();
    TableIterator::once((
        gucs::group_sync(),
        (s.worker_pid != 0).then_some(s.worker_pid),
        (s.running_pid != 0).then_some(s.running_pid),
        s.runs as i64,
        s.failures as i64,
        timestamp(s.last_started),
        timestamp(s.last_success),
        timestamp(s.last_failure),
        s.error.get(),
        s.groups as i32,
        s.members as i32,
        s.changes as i32,
    ))
}

extension_sql!(
    r#"
-- Group sync's status names groups and errors: for superusers and Entra ID admins.
REVOKE EXECUTE ON FUNCTION aad_auth_group_sync_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aad_auth_group_sync_status() TO azure_pg_admin;
"#,
    name = "group_sync_status_privileges",
    requires = [aad_auth_group_sync_status, "list_principals"]
);
