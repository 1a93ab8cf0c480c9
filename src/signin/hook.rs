//! The authentication hook: where a sign-in is decided.
//!
//! PostgreSQL calls it after the pg_hba.conf method has run. On host-type `trust` lines aad_auth
//! performs the whole exchange itself: it asks for a password and checks it — as an Entra ID
//! access token for roles with a `pgaadauth` label, as the role's password otherwise — but
//! only over an encrypted or loopback connection (`aad_auth.require_secure_transport`). On
//! lines whose method takes a password (password, md5, scram-sha-256, ldap, pam, radius, bsd)
//! it can only veto: always for a labelled role (it signs in with tokens only), and for every
//! role with `aad_auth.password_auth = off`. Unix-socket connections are never touched: they
//! are the break-glass path.
//!
//! Names are bytes: the role is looked up by exactly the bytes PostgreSQL received, and every
//! name that reaches a message or the log is escaped.

use crate::directory::{self, Answer, Question};
use crate::error::Refusal;
use crate::ffi_decls::{
    self, AadPortInfo, ClientAuthenticationHook, METHOD_PASSWORD, METHOD_TRUST,
};
use crate::sessions::{self, Method};
use crate::{gucs, keycache, seclabel, stats};
use aad_auth_core::escape::{escaped, quoted};
use aad_auth_core::sessions::{session_over, Reason};
use aad_auth_core::{transport, Label, Outcome, TokenError};
use pgrx::prelude::*;
use std::ffi::{c_char, c_int, CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

static mut PREVIOUS_HOOK: Option<ClientAuthenticationHook> = None;

/// Installs the hook, keeping the one installed before us.
pub fn init() {
    // SAFETY: called once from _PG_init in the postmaster, before any connection exists.
    unsafe {
        PREVIOUS_HOOK = ffi_decls::ClientAuthentication_hook;
        ffi_decls::ClientAuthentication_hook = Some(client_authentication);
    }
}

/// What the hook needs from `Port`, owned; names as the exact bytes the client sent.
pub(crate) struct Connection {
    pub(crate) role: CString,
    database: Vec<u8>,
    remote_host: Vec<u8>,
    unix_socket: bool,
    method: c_int,
    /// SSL or GSS encryption is in use.
    encrypted: bool,
    /// The client's IP address (none for a unix socket).
    peer: Option<IpAddr>,
}

impl Connection {
    /// # Safety
    /// `port` is the live `Port` PostgreSQL handed to the hook.
    pub(crate) unsafe fn read(port: *mut pg_sys::Port) -> Connection {
        let mut info = AadPortInfo {
            user_name: std::ptr::null(),
            database_name: std::ptr::null(),
            remote_host: std::ptr::null(),
            is_unix_socket: 0,
            method: 0,
            hba_line: 0,
            encrypted: 0,
            addr_family: 0,
            addr: [0; 16],
        };
        // SAFETY: port is valid (caller); info is a local the shim fills.
        unsafe { ffi_decls::aad_auth_port_info(port, &mut info) };
        let bytes = |p: *const c_char| {
            if p.is_null() {
                CString::default()
            } else {
                // SAFETY: the pointers are Port's NUL-terminated strings, alive for the call.
                unsafe { CStr::from_ptr(p) }.to_owned()
            }
        };
        let a = info.addr;
        let peer = match info.addr_family {
            4 => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            6 => Some(IpAddr::V6(Ipv6Addr::from(a))),
            _ => None,
        };
        Connection {
            role: bytes(info.user_name),
            database: bytes(info.database_name).into_bytes(),
            remote_host: bytes(info.remote_host).into_bytes(),
            unix_socket: info.is_unix_socket != 0,
            method: info.method,
            encrypted: info.encrypted != 0,
            peer,
        }
    }

    /// The role name as messages show it (escaped, without quotes).
    pub(crate) fn role_display(&self) -> String {
        escaped(self.role.to_bytes())
    }

    /// Whether a password or token may be asked for on this connection.
    pub(crate) fn transport_allowed(&self) -> bool {
        transport::credential_allowed(gucs::secure_transport(), self.encrypted, self.peer)
    }

    /// Counts a sign-in as accepted, or refused for `reason` (`aad_auth_sign_in_stats()`).
    pub(crate) fn count(&self, outcome: Result<(), Reason>) {
        stats::count(
            self.role.to_bytes(),
            || seclabel::role_oid(&self.role).is_some(),
            outcome,
        );
    }

    /// Counts the refusal and ends the connection with it.
    pub(crate) fn refuse(&self, reason: Reason, refusal: Refusal) -> ! {
        self.count(Err(reason));
        refusal.raise()
    }

    pub(crate) fn transport_refusal(&self) -> Refusal {
        Refusal::Transport {
            role: self.role_display(),
            host: escaped(&self.remote_host),
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn client_authentication(port: *mut pg_sys::Port, status: c_int) {
    // SAFETY: PREVIOUS_HOOK is written once in _PG_init, before any connection.
    if let Some(previous) = unsafe { PREVIOUS_HOOK } {
        // SAFETY: same arguments PostgreSQL gave us.
        unsafe { previous(port, status) };
    }
    if status != pg_sys::STATUS_OK as c_int {
        return; // already refused by the pg_hba.conf method
    }
    // SAFETY: port is the live Port of this connection.
    let conn = unsafe { Connection::read(port) };
    if conn.unix_socket {
        return;
    }
    if gucs::skips(&conn.role) {
        // Admitted unchallenged; on a governed line that is a sign-in the statistics show.
        if conn.method == METHOD_TRUST {
            conn.count(Ok(()));
        }
        return;
    }
    match conn.method {
        METHOD_TRUST => governed(port, &conn),
        METHOD_PASSWORD => {
            // A labelled role has no password of its own to sign in with (it was cleared when
            // it was bound; one set since must not open it).
            if seclabel::role_label(&conn.role).is_some() {
                conn.refuse(
                    Reason::Password,
                    Refusal::LabelledPassword {
                        role: conn.role_display(),
                    },
                )
            }
            if !gucs::password_auth() {
                conn.refuse(
                    Reason::Password,
                    Refusal::PasswordDisabled {
                        role: conn.role_display(),
                    },
                )
            }
        }
        _ => {}
    }
}

/// A host-type `trust` line: ask for a credential (over a secure transport only) and decide.
fn governed(port: *mut pg_sys::Port, conn: &Connection) {
    if !conn.transport_allowed() {
        conn.refuse(Reason::Transport, conn.transport_refusal());
    }
    match seclabel::role_label(&conn.role) {
        Some(label) => token_sign_in(port, conn, &label),
        None if !gucs::password_auth() => conn.refuse(
            Reason::Password,
            Refusal::PasswordDisabled {
                role: conn.role_display(),
            },
        ),
        None => password_sign_in(port, conn),
    }
}

/// Records the signed-in identity: the token's object id, or the role for a password.
fn set_identity(port: *mut pg_sys::Port, id: &[u8]) {
    let Ok(id) = CString::new(id) else { return };
    // SAFETY: port is live; the shim copies the string (set_authn_id pstrdup's it).
    unsafe { ffi_decls::aad_auth_set_identity(port, id.as_ptr()) };
}

/// Asks the client for a password; returns it as bytes (valid until the end of authentication).
fn receive_password(port: *mut pg_sys::Port) -> &'static [u8] {
    let mut len: c_int = 0;
    // SAFETY: port is live; the shim returns a palloc'd buffer of `len` bytes (plus NUL) in the
    // authentication memory context, which outlives the hook; or exits the process.
    unsafe {
        let data = ffi_decls::aad_auth_recv_password(port, &mut len);
        std::slice::from_raw_parts(data.cast::<u8>(), usize::try_from(len).unwrap_or(0))
    }
}

fn token_sign_in(port: *mut pg_sys::Port, conn: &Connection, label: &Result<Label, String>) {
    let token = receive_password(port);
    let label = match label {
        Ok(label) => label,
        Err(detail) => conn.refuse(
            Reason::Other,
            Refusal::BadLabel {
                role: conn.role_display(),
                detail: detail.clone(),
            },
        ),
    };
    let outcome = decide(token, label);
    if gucs::log_logins() {
        audit(conn, label, &outcome);
    }
    match outcome.result {
        Err(error) => conn.refuse(
            error.reason(),
            Refusal::Token {
                role: conn.role_display(),
                error,
            },
        ),
        Ok(principal) => {
            conn.count(Ok(()));
            sessions::register(&conn.role, label, &principal, Method::Trust);
            if let Some(id) = principal.oid.or(principal.appid) {
                set_identity(port, id.as_bytes());
            }
        }
    }
}

/// Whether `token` may sign in as the role carrying `label`: the core's rules with the current
/// settings and keys, one key refresh for an unknown key id, and the directory's answer for a
/// group-overage token. Shared by the `trust`-line exchange and the OAuth validator.
pub(crate) fn decide(token: &[u8], label: &Label) -> Outcome {
    let mut outcome = check_token(token, label, None);
    if matches!(
        outcome.result,
        Err(TokenError::UnknownKey { .. } | TokenError::NoKeys)
    ) && keycache::refresh_and_wait()
    {
        outcome = check_token(token, label, None);
    }
    if matches!(outcome.result, Err(TokenError::GroupOverage)) && gucs::directory().is_some() {
        outcome = match overage_membership(&outcome, label) {
            Ok(member) => check_token(token, label, Some(member)),
            Err(why) => Outcome {
                result: Err(TokenError::DirectoryUnavailable(why)),
                ..outcome
            },
        };
    }
    // With aad_auth.session_lifetime = token, a session the monitor would end at once is not
    // opened (a token within clock_skew of its expiry, past exp + session_grace).
    if let Ok(principal) = &outcome.result {
        let now = now();
        if session_over(
            gucs::session_lifetime(),
            now,
            principal.expires,
            gucs::session_grace(),
        ) {
            outcome.result = Err(TokenError::Expired {
                exp: principal.expires,
                now,
            });
        }
    }
    outcome
}

/// Asks the directory whether the principal of an overage token is a member of the role's group.
fn overage_membership(outcome: &Outcome, label: &Label) -> Result<bool, String> {
    let member = outcome.audit.oid.clone().ok_or("the token has no oid")?;
    let question = Question::Member {
        member,
        is_app: outcome.audit.kind == Some("app"),
        group: label.oid,
    };
    match directory::ask(&question, keycache::sign_in_wait())? {
        Answer::Member(yes) => Ok(yes),
        Answer::Resolved { .. } => Err("unexpected directory answer".into()),
    }
}

/// The whole token check with the current settings and keys.
fn check_token(token: &[u8], label: &Label, overage_member: Option<bool>) -> Outcome {
    match (gucs::policy(), keycache::current()) {
        (Err(e), _) => Outcome {
            result: Err(e),
            audit: Default::default(),
        },
        (Ok(_), Err(keycache::KeysUnavailable(why))) => {
            log!("aad_auth: no signing keys: {why}");
            Outcome {
                result: Err(TokenError::NoKeys),
                audit: Default::default(),
            }
        }
        (Ok(policy), Ok(keys)) => {
            aad_auth_core::validate_with(token, &keys, &policy, label, now(), overage_member)
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One log line per Entra sign-in, accepted or refused. Every client-chosen text is quoted
/// and escaped, so that no field can end early and no line can be forged.
pub(crate) fn audit(conn: &Connection, label: &Label, outcome: &Outcome) {
    let a = &outcome.audit;
    let field = |v: &Option<String>| {
        v.as_ref()
            .map_or_else(|| "-".into(), |v| quoted(v.as_bytes()))
    };
    let who = format!(
        "role={} database={} host={} label_type={} token_type={} oid={} name={} appid={} tenant={} kid={}",
        quoted(conn.role.to_bytes()),
        quoted(&conn.database),
        quoted(&conn.remote_host),
        label.kind.as_str(),
        a.kind.unwrap_or("-"),
        field(&a.oid),
        field(&a.name),
        field(&a.appid),
        field(&a.tid),
        field(&a.kid),
    );
    match &outcome.result {
        Ok(_) => log!("aad_auth: sign-in accepted: {who}"),
        Err(e) => log!(
            "aad_auth: sign-in refused: {who} reason={}",
            quoted(e.log_detail().as_bytes())
        ),
    }
}

/// An ordinary role (or one that does not exist) on a governed line: its password, checked
/// against the stored SCRAM or MD5 secret. A missing role gets the same exchange, the same
/// work and the same message as a wrong password.
fn password_sign_in(port: *mut pg_sys::Port, conn: &Connection) {
    let password = receive_password(port);
    let role = &conn.role;
    let refuse = |detail: String| {
        conn.refuse(
            Reason::Password,
            Refusal::Password {
                role: conn.role_display(),
                detail,
            },
        )
    };
    if password.is_empty() {
        refuse("empty password".into());
    }
    // The password buffer is NUL-terminated by the shim and has no interior NUL.
    let client_pass = password.as_ptr().cast::<c_char>();
    let mut logdetail: *const c_char = std::ptr::null();
    // SAFETY: role and client_pass are NUL-terminated; logdetail is an out-parameter (its
    // text, which quotes the role raw, is not used: the detail below escapes it).
    let (ok, known) = unsafe {
        let shadow = pg_sys::get_role_password(role.as_ptr(), &mut logdetail);
        let known = !shadow.is_null();
        let shadow = if known {
            shadow
        } else {
            DUMMY_SECRET.as_ptr().cast_mut()
        };
        let status = pg_sys::plain_crypt_verify(role.as_ptr(), shadow, client_pass, &mut logdetail);
        (status == pg_sys::STATUS_OK as c_int && known, known)
    };
    if !ok {
        let who = quoted(role.to_bytes());
        refuse(if known {
            format!("password does not match for role {who}")
        } else if seclabel::role_oid(role).is_some() {
            format!("role {who} has no valid password")
        } else {
            format!("role {who} does not exist")
        });
    }
    conn.count(Ok(()));
    set_identity(port, conn.role.to_bytes());
}

/// A well-formed SCRAM secret no password matches, verified when the role has no password or
/// does not exist, so that such a sign-in costs what a wrong password costs.
static DUMMY_SECRET: &CStr = c"SCRAM-SHA-256$4096:YWFkX2F1dGhkdW1teXNhbHQ=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
