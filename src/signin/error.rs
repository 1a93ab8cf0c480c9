//! Turning a refusal into a PostgreSQL error, in one place: the client gets the message
//! (what to fix), the server log also gets the detail. Neither ever holds a token, every
//! client-chosen name in them is escaped (`aad_auth_core::escape`), and neither can span two
//! log lines.

use crate::ffi_decls::aad_auth_fatal;
use crate::gucs;
use aad_auth_core::escape::one_line;
use aad_auth_core::TokenError;
use std::ffi::CString;

/// Why a connection is refused. `role` is the role name as [`aad_auth_core::escape::escaped`]
/// shows it.
pub enum Refusal {
    /// A token sign-in failed.
    Token { role: String, error: TokenError },
    /// A password sign-in failed (wrong password, no such role, empty password).
    Password { role: String, detail: String },
    /// Password sign-in is turned off.
    PasswordDisabled { role: String },
    /// A role bound to an Entra principal tried a password method.
    LabelledPassword { role: String },
    /// The role's label is malformed (a configuration problem).
    BadLabel { role: String, detail: String },
    /// A credential would cross the network unencrypted (`aad_auth.require_secure_transport`).
    Transport { role: String, host: String },
}

impl Refusal {
    fn parts(&self) -> (&'static str, String, String) {
        match self {
            Refusal::Token { role, error } => {
                let sqlstate = match error {
                    TokenError::TenantNotConfigured | TokenError::NoKeys => "28000",
                    _ => "28P01",
                };
                (
                    sqlstate,
                    format!("Microsoft Entra ID authentication failed for user \"{role}\": {}", error.client_message(role)),
                    error.log_detail(),
                )
            }
            Refusal::Password { role, detail } => (
                "28P01",
                format!("password authentication failed for user \"{role}\""),
                detail.clone(),
            ),
            Refusal::PasswordDisabled { role } => (
                "28000",
                "password authentication is disabled on this server; sign in with a Microsoft Entra ID token".into(),
                format!("aad_auth.password_auth is off; role \"{role}\" is not bound to an Entra ID principal"),
            ),
            Refusal::LabelledPassword { role } => (
                "28000",
                format!("role \"{role}\" is bound to a Microsoft Entra ID principal and signs in only with an access token, not a password"),
                "a pgaadauth-labelled role signed in with a password method; aad_auth vetoes it on every host line".into(),
            ),
            Refusal::BadLabel { role, detail } => (
                "28000",
                format!("role \"{role}\" has an invalid pgaadauth security label; ask the administrator to fix it"),
                detail.clone(),
            ),
            Refusal::Transport { role, host } => (
                "28000",
                "an encrypted connection is required to send a password or access token to this server; connect with sslmode=require or stronger".into(),
                format!(
                    "aad_auth.require_secure_transport = {}: role \"{role}\" from host \"{host}\" without SSL or GSS encryption",
                    gucs::secure_transport().as_str()
                ),
            ),
        }
    }

    /// Ends the connection with FATAL, after `aad_auth.failure_delay`. Never returns.
    pub fn raise(self) -> ! {
        let (sqlstate, message, detail) = self.parts();
        // A bounded pause (at most 10 s) that authentication_timeout can still end.
        crate::keycache::nap_interruptible(gucs::failure_delay());
        let c = |s: &str| CString::new(one_line(s).replace('\0', "?")).unwrap_or_default();
        let (sqlstate, message, detail) = (c(sqlstate), c(&message), c(&detail));
        // SAFETY: all pointers are valid NUL-terminated strings; ereport(FATAL) exits the
        // process without returning or unwinding.
        unsafe { aad_auth_fatal(sqlstate.as_ptr(), message.as_ptr(), detail.as_ptr()) }
    }
}
