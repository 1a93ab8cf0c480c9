//! The claim rules: tenant, issuer, audience, time window, principal kind, and the match
//! between the token's principal and the role's label.

use crate::error::{excerpt, TokenError};
use crate::guid::Guid;
use crate::label::{Label, PrincipalType};
use serde_json::{Map, Value};

/// Audiences accepted when `aad_auth.audiences` is empty: the resource Azure Database for
/// PostgreSQL tokens are issued for (with and without a trailing slash) and its app id.
pub const DEFAULT_AUDIENCES: [&str; 3] = [
    "https://ossrdbms-aad.database.windows.net",
    "https://ossrdbms-aad.database.windows.net/",
    "123cd850-d9df-40bd-94d5-c9f07b7fa203",
];

/// The default authority (public cloud).
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// What the server accepts, from its configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub tenant: Guid,
    /// Authority for v2 issuers, without a trailing slash.
    pub authority: String,
    /// Accepted `aud` values; never empty.
    pub audiences: Vec<String>,
    /// When not empty, the only accepted `iss` values.
    pub issuers: Vec<String>,
    /// Seconds of tolerance on `nbf` and `exp`.
    pub clock_skew: i64,
}

impl Policy {
    /// A policy with the defaults for everything but the tenant.
    pub fn for_tenant(tenant: Guid) -> Policy {
        Policy {
            tenant,
            authority: DEFAULT_AUTHORITY.into(),
            audiences: DEFAULT_AUDIENCES.iter().map(|s| s.to_string()).collect(),
            issuers: Vec::new(),
            clock_skew: 300,
        }
    }

    /// The resource a client should request a token for (named in the audience error).
    pub fn resource(&self) -> &str {
        self.audiences
            .iter()
            .find(|a| a.starts_with("https://"))
            .or(self.audiences.first())
            .map(|s| s.trim_end_matches('/'))
            .unwrap_or(DEFAULT_AUDIENCES[0])
    }

    fn issuer_ok(&self, iss: &str, tid: &str) -> bool {
        if !self.issuers.is_empty() {
            return self.issuers.iter().any(|i| i == iss);
        }
        let authority = self.authority.trim_end_matches('/');
        iss == format!("https://sts.windows.net/{tid}/") || iss == format!("{authority}/{tid}/v2.0")
    }
}

/// Whether the token was issued to a person or to an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    User,
    App,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::User => "user",
            TokenKind::App => "app",
        }
    }
}

/// Group membership as the token states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Groups {
    Listed(Vec<String>),
    /// Too many groups to list (`_claim_names.groups` or `hasgroups`).
    Overage,
}

/// The principal a valid token speaks for: what the label match and the audit log need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: TokenKind,
    /// `oid`, as written in the token.
    pub oid: Option<String>,
    /// `appid` (v1) or `azp` (v2).
    pub appid: Option<String>,
    /// `upn`, `unique_name` or `preferred_username`, for the log only.
    pub name: Option<String>,
    pub tid: String,
    pub groups: Groups,
    pub mfa: bool,
    /// `exp`, Unix seconds (0 until the time window is checked).
    pub expires: i64,
}

/// What is known about a token for the audit line, whether it was accepted or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    pub kid: Option<String>,
    pub kind: Option<&'static str>,
    pub oid: Option<String>,
    pub name: Option<String>,
    pub appid: Option<String>,
    pub tid: Option<String>,
}

impl Audit {
    pub(crate) fn record(&mut self, p: &Principal) {
        self.kind = Some(p.kind.as_str());
        self.oid = p.oid.clone();
        self.name = p.name.clone();
        self.appid = p.appid.clone();
        self.tid = Some(p.tid.clone());
    }
}

fn string<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TokenError::MissingClaim(name)),
    }
}

/// Reads a NumericDate. Integers and finite numbers within ±10^11 seconds are accepted
/// (fractions dropped); anything else is refused.
fn time(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, TokenError> {
    const LIMIT: i64 = 100_000_000_000;
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            // `unsigned_abs`: `i64::MIN.abs()` overflows (a panic on the login path).
            let v = n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite() && f.abs() < LIMIT as f64)
                        .map(|f| f as i64)
                })
                .filter(|v| v.unsigned_abs() < LIMIT as u64);
            v.map(Some).ok_or(TokenError::MissingClaim(name))
        }
        Some(_) => Err(TokenError::MissingClaim(name)),
    }
}

fn string_list(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<Vec<String>>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or(TokenError::MissingClaim(name))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(TokenError::MissingClaim(name)),
    }
}

/// Applies the tenant, issuer, audience and time rules to verified claims and returns the
/// principal. `now` is Unix seconds.
pub fn check_claims(
    claims: &Map<String, Value>,
    policy: &Policy,
    now: i64,
    audit: &mut Audit,
) -> Result<Principal, TokenError> {
    let tid_text = string(claims, "tid")?.ok_or(TokenError::MissingClaim("tid"))?;
    audit.tid = Some(excerpt(tid_text));
    match tid_text.parse::<Guid>() {
        Ok(tid) if tid == policy.tenant => {}
        _ => {
            return Err(TokenError::WrongTenant {
                expected: policy.tenant,
                found: excerpt(tid_text),
            })
        }
    }
    let mut principal = principal(claims, tid_text)?;
    audit.record(&principal);

    // Access tokens only: an ID token is issued to an application for its own sign-in, and
    // must never open the database, whatever `aad_auth.audiences` lists.
    if principal.appid.is_none() || claims.contains_key("nonce") {
        return Err(TokenError::IdToken {
            resource: policy.resource().to_owned(),
        });
    }

    let iss = string(claims, "iss")?.ok_or(TokenError::MissingClaim("iss"))?;
    if !policy.issuer_ok(iss, tid_text) {
        return Err(TokenError::WrongIssuer {
            found: excerpt(iss),
        });
    }

    let auds = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(_)) => string_list(claims, "aud")?.unwrap_or_default(),
        _ => return Err(TokenError::MissingClaim("aud")),
    };
    if !auds.iter().any(|a| policy.audiences.contains(a)) {
        return Err(TokenError::WrongAudience {
            found: excerpt(&auds.join(" ")),
            resource: policy.resource().to_owned(),
        });
    }

    let exp = time(claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    let skew = policy.clock_skew.max(0);
    if now >= exp.saturating_add(skew) {
        return Err(TokenError::Expired { exp, now });
    }
    if let Some(nbf) = time(claims, "nbf")? {
        if now < nbf.saturating_sub(skew) {
            return Err(TokenError::NotYetValid { nbf, now });
        }
    }
    principal.expires = exp;
    Ok(principal)
}

fn principal(claims: &Map<String, Value>, tid: &str) -> Result<Principal, TokenError> {
    let idtyp = string(claims, "idtyp")?;
    let scp = string(claims, "scp")?;
    let upn = string(claims, "upn")?;
    let appid = string(claims, "appid")?.or(string(claims, "azp")?);
    let kind = match idtyp {
        Some("app") => TokenKind::App,
        Some(_) => TokenKind::User,
        None if scp.is_none() && upn.is_none() && appid.is_some() => TokenKind::App,
        None => TokenKind::User,
    };
    let name = upn
        .or(string(claims, "unique_name")?)
        .or(string(claims, "preferred_username")?);
    let overage = claims
        .get("_claim_names")
        .and_then(|n| n.get("groups"))
        .is_some()
        || matches!(claims.get("hasgroups"), Some(Value::Bool(true)));
    let groups = match string_list(claims, "groups")? {
        Some(list) => Groups::Listed(list),
        None if overage => Groups::Overage,
        None => Groups::Listed(Vec::new()),
    };
    let amr = string_list(claims, "amr")?.unwrap_or_default();
    Ok(Principal {
        kind,
        oid: string(claims, "oid")?.map(excerpt),
        appid: appid.map(excerpt),
        name: name.map(excerpt),
        tid: excerpt(tid),
        groups,
        mfa: amr.iter().any(|m| m == "mfa"),
        expires: 0,
    })
}

fn same_guid(a: &Guid, b: Option<&str>) -> bool {
    b.and_then(|s| s.parse::<Guid>().ok()).as_ref() == Some(a)
}

/// Decides whether `principal` may sign in as the role carrying `label`.
pub fn authorize(principal: &Principal, label: &Label) -> Result<(), TokenError> {
    authorize_with(principal, label, None)
}

/// [`authorize`], with the directory's answer on group membership for an overage token.
pub fn authorize_with(
    principal: &Principal,
    label: &Label,
    overage_member: Option<bool>,
) -> Result<(), TokenError> {
    let wrong_kind = || TokenError::WrongPrincipalKind {
        role_kind: label.kind.as_str(),
        token_kind: principal.kind.as_str(),
    };
    let oid_mismatch = || TokenError::OidMismatch {
        label_oid: label.oid,
        token_oid: principal.oid.clone().unwrap_or_else(|| "(none)".into()),
    };
    match label.kind {
        PrincipalType::User => {
            if principal.kind != TokenKind::User {
                return Err(wrong_kind());
            }
            if !same_guid(&label.oid, principal.oid.as_deref()) {
                return Err(oid_mismatch());
            }
        }
        PrincipalType::Service => {
            if principal.kind != TokenKind::App {
                return Err(wrong_kind());
            }
            if !same_guid(&label.oid, principal.oid.as_deref())
                && !same_guid(&label.oid, principal.appid.as_deref())
            {
                return Err(oid_mismatch());
            }
        }
        PrincipalType::Group => match &principal.groups {
            Groups::Overage => match overage_member {
                None => return Err(TokenError::GroupOverage),
                Some(false) => {
                    return Err(TokenError::NotGroupMember {
                        group_oid: label.oid,
                    })
                }
                Some(true) => {}
            },
            Groups::Listed(groups) => {
                if !groups.iter().any(|g| same_guid(&label.oid, Some(g))) {
                    return Err(TokenError::NotGroupMember {
                        group_oid: label.oid,
                    });
                }
            }
        },
    }
    if label.mfa && !principal.mfa {
        return Err(TokenError::MfaRequired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overage_principal(mfa: bool) -> Principal {
        Principal {
            kind: TokenKind::User,
            oid: Some("11111111-1111-1111-1111-111111111111".into()),
            appid: None,
            name: None,
            tid: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            groups: Groups::Overage,
            mfa,
            expires: 0,
        }
    }

    fn group_label(mfa: bool) -> Label {
        Label {
            oid: "22222222-2222-2222-2222-222222222222".parse().unwrap(),
            kind: PrincipalType::Group,
            admin: false,
            mfa,
        }
    }

    #[test]
    fn overage_is_refused_unless_the_directory_answers() {
        let p = overage_principal(false);
        assert_eq!(
            authorize(&p, &group_label(false)),
            Err(TokenError::GroupOverage)
        );
        assert_eq!(authorize_with(&p, &group_label(false), Some(true)), Ok(()));
        assert!(matches!(
            authorize_with(&p, &group_label(false), Some(false)),
            Err(TokenError::NotGroupMember { .. })
        ));
    }

    #[test]
    fn overage_member_still_needs_mfa_when_the_role_does() {
        assert_eq!(
            authorize_with(&overage_principal(false), &group_label(true), Some(true)),
            Err(TokenError::MfaRequired)
        );
        assert_eq!(
            authorize_with(&overage_principal(true), &group_label(true), Some(true)),
            Ok(())
        );
    }

    #[test]
    fn time_claims_reach_but_never_touch_ten_to_the_eleventh() {
        let claims = |v: serde_json::Value| {
            let mut m = Map::new();
            m.insert("exp".into(), v);
            m
        };
        let limit: i64 = 100_000_000_000;
        assert_eq!(
            time(&claims((limit - 1).into()), "exp"),
            Ok(Some(limit - 1))
        );
        assert_eq!(
            time(&claims((-(limit - 1)).into()), "exp"),
            Ok(Some(-(limit - 1)))
        );
        for v in [
            serde_json::json!(limit),
            serde_json::json!(-limit),
            serde_json::json!(1e11),
            serde_json::json!(-1e11),
        ] {
            assert_eq!(
                time(&claims(v.clone()), "exp"),
                Err(TokenError::MissingClaim("exp")),
                "{v}"
            );
        }
        assert_eq!(
            time(&claims(serde_json::json!(99_999_999_999.5)), "exp"),
            Ok(Some(limit - 1))
        );
    }
}
