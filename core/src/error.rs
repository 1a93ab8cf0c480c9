//! Why a sign-in with a token was refused.
//!
//! Each variant has two texts: [`TokenError::client_message`], which tells the person signing in
//! what to fix, and [`TokenError::log_detail`], which tells the DBA what exactly was seen.
//! Neither ever contains the token or any part of its signature.

use crate::guid::Guid;
use std::fmt;

/// Every reason a token is refused. Strings held here are short, printable excerpts of claims,
/// never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Empty password.
    Empty,
    /// Longer than [`crate::token::MAX_TOKEN_BYTES`].
    TooLarge { len: usize },
    /// Not three base64url parts separated by dots, or not valid text.
    NotAJwt,
    /// A JWT whose header or payload is not valid: what is wrong, in words.
    Malformed(String),
    /// `alg` other than RS256 (the value, sanitized).
    UnsupportedAlgorithm(String),
    /// Neither `kid` nor `x5t` in the header.
    MissingKeyId,
    /// The server holds no signing keys at all.
    NoKeys,
    /// No key with this id in the key set.
    UnknownKey { kid: String },
    /// The key's `issuer` names another tenant.
    KeyIssuerMismatch { kid: String },
    /// Signature does not verify with the key.
    BadSignature,
    /// A claim the rules need is missing or has the wrong JSON type.
    MissingClaim(&'static str),
    /// `tid` is not the configured tenant.
    WrongTenant { expected: Guid, found: String },
    /// `iss` is not an issuer of the configured tenant.
    WrongIssuer { found: String },
    /// `aud` is not one of the accepted audiences; `resource` is what to request instead.
    WrongAudience { found: String, resource: String },
    /// `exp + skew <= now`.
    Expired { exp: i64, now: i64 },
    /// `now < nbf - skew`.
    NotYetValid { nbf: i64, now: i64 },
    /// An ID token (neither `appid` nor `azp`, or a `nonce`), not an access token; `resource`
    /// is what to request an access token for.
    IdToken { resource: String },
    /// The token is of the wrong kind for the role: an app token for a user or group role
    /// that needs a person, or a user token for a service role.
    WrongPrincipalKind {
        role_kind: &'static str,
        token_kind: &'static str,
    },
    /// The token's object id is not the one bound to the role.
    OidMismatch { label_oid: Guid, token_oid: String },
    /// The group role's object id is not in the token's `groups`.
    NotGroupMember { group_oid: Guid },
    /// The token lists no groups because the user is in too many (overage).
    GroupOverage,
    /// Group membership of an overage token could not be checked in the directory.
    DirectoryUnavailable(String),
    /// The role requires MFA and `amr` does not contain `mfa`.
    MfaRequired,
    /// `aad_auth.tenant_id` is not set.
    TenantNotConfigured,
}

impl TokenError {
    /// What the client is told: what went wrong and what to do about it. `role` is the role
    /// name already escaped for display ([`crate::escape::escaped`]).
    pub fn client_message(&self, role: &str) -> String {
        use TokenError::*;
        match self {
            Empty => "no access token was sent; send a Microsoft Entra ID access token as the password".into(),
            TooLarge { .. } | NotAJwt | Malformed(_) => format!(
                "the password for role \"{role}\" is not a valid Microsoft Entra ID access token (a JWT); \
                 acquire one with: az account get-access-token --resource-type oss-rdbms"
            ),
            UnsupportedAlgorithm(_) => "the access token is not signed with RS256, the only algorithm accepted".into(),
            MissingKeyId => "the access token's header names no signing key (kid)".into(),
            NoKeys => "the server has no Microsoft Entra ID signing keys: they could not be fetched from the identity provider (or read from the key set file); ask the administrator to check the server log and aad_auth_jwks_status()".into(),
            UnknownKey { .. } => "the access token's signing key is unknown to this server; acquire a new token, or ask the administrator to refresh the signing keys".into(),
            KeyIssuerMismatch { .. } => "the access token's signing key belongs to another tenant".into(),
            BadSignature => "the access token's signature is not valid".into(),
            MissingClaim(c) => format!("the access token has no valid \"{c}\" claim"),
            WrongTenant { expected, .. } => format!(
                "the access token was issued by another tenant; this server accepts tokens from tenant {expected}"
            ),
            WrongIssuer { .. } => "the access token's issuer is not accepted by this server".into(),
            WrongAudience { resource, .. } => format!(
                "The access token does not have a valid audience claim. Please acquire a new token for the resource \"{resource}\"."
            ),
            Expired { .. } => "the access token has expired; acquire a new one (az account get-access-token --resource-type oss-rdbms)".into(),
            NotYetValid { .. } => "the access token is not valid yet (nbf is in the future); check the clocks".into(),
            WrongPrincipalKind { role_kind, token_kind } => match *token_kind {
                "app" => format!(
                    "Service Principals cannot sign in as {role_kind} role \"{role}\": the token is an app-only token (service principal or managed identity)"
                ),
                _ => format!(
                    "a user token cannot sign in as {role_kind} role \"{role}\": it needs an app-only token of the bound service principal or managed identity"
                ),
            },
            // Never the label's object id: which object a role is bound to is the server's secret.
            OidMismatch { token_oid, .. } => format!(
                "the access token's object id {token_oid} is not the object role \"{role}\" is bound to"
            ),
            NotGroupMember { .. } => format!(
                "the access token does not list the group that role \"{role}\" is bound to"
            ),
            IdToken { resource } => format!(
                "the token is an ID token, not an access token; request an access token for the resource \"{resource}\" (az account get-access-token --resource-type oss-rdbms)"
            ),
            DirectoryUnavailable(_) => "the access token lists no groups (group overage) and the directory could not be asked about group membership; try again, or ask the administrator to check the server log".into(),
            GroupOverage => "the access token lists no groups because its principal is in too many groups (group overage); sign in as a role bound to the principal itself, or ask the administrator to configure a directory (aad_auth.graph_client_id) so that membership is checked there".into(),
            MfaRequired => format!(
                "role \"{role}\" requires multi-factor authentication, and the access token was issued without it; sign in again with MFA"
            ),
            TenantNotConfigured => "Microsoft Entra ID sign-in is not configured on this server (aad_auth.tenant_id is not set)".into(),
        }
    }

    /// What the server log is told, beyond the client's message.
    pub fn log_detail(&self) -> String {
        use TokenError::*;
        match self {
            Empty => "empty password".into(),
            TooLarge { len } => format!("password of {len} bytes is longer than any access token"),
            NotAJwt => "password is not a compact JWS".into(),
            Malformed(what) => format!("malformed token: {what}"),
            UnsupportedAlgorithm(alg) => format!("alg \"{alg}\" refused (only RS256)"),
            MissingKeyId => "header has neither kid nor x5t".into(),
            NoKeys => "no signing keys are loaded".into(),
            UnknownKey { kid } => format!("no signing key with kid \"{kid}\""),
            KeyIssuerMismatch { kid } => format!("key \"{kid}\" has an issuer for another tenant"),
            BadSignature => "signature verification failed".into(),
            MissingClaim(c) => format!("claim \"{c}\" missing or of the wrong type"),
            WrongTenant { expected, found } => format!("tid \"{found}\", expected {expected}"),
            WrongIssuer { found } => format!("iss \"{found}\" not accepted"),
            WrongAudience { found, .. } => format!("aud \"{found}\" not in aad_auth.audiences"),
            Expired { exp, now } => format!("expired: exp {exp}, now {now}"),
            NotYetValid { nbf, now } => format!("not yet valid: nbf {nbf}, now {now}"),
            WrongPrincipalKind {
                role_kind,
                token_kind,
            } => {
                format!("{token_kind} token for a {role_kind} role")
            }
            OidMismatch {
                label_oid,
                token_oid,
            } => {
                format!("token oid {token_oid}, label oid {label_oid}")
            }
            NotGroupMember { group_oid } => format!("group {group_oid} not in groups claim"),
            IdToken { .. } => {
                "ID token (no appid or azp claim, or a nonce claim), not an access token".into()
            }
            DirectoryUnavailable(why) => format!("group overage: directory check failed: {why}"),
            GroupOverage => "group overage token (_claim_names.groups / hasgroups)".into(),
            MfaRequired => "amr lacks mfa".into(),
            TenantNotConfigured => "aad_auth.tenant_id is not set".into(),
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.log_detail())
    }
}

impl std::error::Error for TokenError {}

/// Keeps an attacker-chosen string short and printable for messages and logs.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 80;
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| {
            if c.is_control() || c == '"' || c == '\\' {
                '?'
            } else {
                c
            }
        })
        .collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_log_detail() {
        for e in [
            TokenError::NotAJwt,
            TokenError::MfaRequired,
            TokenError::Expired { exp: 1, now: 2 },
        ] {
            assert_eq!(e.to_string(), e.log_detail());
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn excerpt_replaces_controls_quotes_and_backslashes_and_cuts_at_80_characters() {
        assert_eq!(excerpt("a\nb\"c\\d\u{7}e"), "a?b?c?d?e");
        assert_eq!(excerpt("plain text"), "plain text");
        let long = "é".repeat(81);
        assert_eq!(excerpt(&long), format!("{}…", "é".repeat(80)));
        assert_eq!(excerpt(&"x".repeat(80)), "x".repeat(80));
    }
}
