//! aad_auth's pure core: everything that decides whether a Microsoft Entra ID access token
//! may sign in as a role, with no PostgreSQL in it. Time is passed in; errors are
//! [`TokenError`]s that carry both the client's message and the log's detail.

#![forbid(unsafe_code)]

pub mod admin;
pub mod error;
pub mod escape;
pub mod groupsync;
pub mod guid;
pub mod hba;
mod json;
pub mod jwks;
pub mod label;
pub mod list;
pub mod policy;
pub mod refresh;
pub mod sessions;
pub mod token;
pub mod transport;
pub mod url;

pub use error::TokenError;
pub use guid::Guid;
pub use jwks::{Jwk, JwksError, KeySet};
pub use label::{Label, LabelError, PrincipalType};
pub use policy::{Audit, Policy, Principal, TokenKind};

/// The result of checking one sign-in: the decision and what the audit log should say.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<Principal, TokenError>,
    pub audit: Audit,
}

/// Checks `token` (the password as sent) against the key set, the policy and the role's label,
/// at Unix time `now`. This is the whole rule; the server only supplies the inputs.
pub fn validate(token: &[u8], keys: &KeySet, policy: &Policy, label: &Label, now: i64) -> Outcome {
    validate_with(token, keys, policy, label, now, None)
}

/// [`validate`], with the directory's answer for a group-overage token: whether the token's
/// principal is a member of the label's group (`None`: not asked, and the token is refused as
/// [`TokenError::GroupOverage`]).
pub fn validate_with(
    token: &[u8],
    keys: &KeySet,
    policy: &Policy,
    label: &Label,
    now: i64,
    overage_member: Option<bool>,
) -> Outcome {
    let mut audit = Audit::default();
    let result = check(token, keys, policy, label, now, overage_member, &mut audit);
    Outcome { result, audit }
}

fn check(
    token: &[u8],
    keys: &KeySet,
    policy: &Policy,
    label: &Label,
    now: i64,
    overage_member: Option<bool>,
    audit: &mut Audit,
) -> Result<Principal, TokenError> {
    let parsed = token::parse(token)?;
    audit.kid = Some(parsed.kid.clone());
    let claims = parsed.verify(keys)?;
    let principal = policy::check_claims(&claims, policy, now, audit)?;
    policy::authorize_with(&principal, label, overage_member)?;
    Ok(principal)
}
