//! Turning a refusal into a PostgreSQL error, in one place: the client gets the message
//! (what to fix), the server log also gets the detail. Neither ever holds a token.

use crate::ffi_decls::aad_auth_fatal;
use aad_auth_core::TokenError;
use std::ffi::CString;

/// Why a connection is refused.
pub enum Refusal {
    /// A token sign-in failed.
    Token { role: String, error: TokenError },
    /// A password sign-in failed (wrong password, no such role, empty password).
    Password { role: String, detail: String },
    /// Password sign-in is turned off.
    PasswordDisabled { role: String },
    /// The role's label is malformed (a configuration problem).
    BadLabel { role: String, detail: String },
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
            Refusal::BadLabel { role, detail } => (
                "28000",
                format!("role \"{role}\" has an invalid pgaadauth security label; ask the administrator to fix it"),
                detail.clone(),
            ),
        }
    }

    /// Ends the connection with FATAL. Never returns.
    pub fn raise(self) -> ! {
        let (sqlstate, message, detail) = self.parts();
        let c = |s: &str| CString::new(s.replace('\0', "?")).unwrap_or_default();
        let (sqlstate, message, detail) = (c(sqlstate), c(&message), c(&detail));
        // SAFETY: all pointers are valid NUL-terminated strings; ereport(FATAL) exits the
        // process without returning or unwinding.
        unsafe { aad_auth_fatal(sqlstate.as_ptr(), message.as_ptr(), detail.as_ptr()) }
    }
}
