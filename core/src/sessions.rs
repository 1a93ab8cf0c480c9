//! Sign-in statistics and live sessions: the decisions, as pure functions.
//!
//! - Which reason class a refusal is counted under (`aad_auth_sign_in_stats().refused_by`).
//! - Whether a name not yet in the bounded statistics table gets an entry of its own.
//! - When a session signed in with a token is over (`aad_auth.session_lifetime = token`).
//! - Whether a session's role still binds the principal it signed in as
//!   (`aad_auth.revoke_live_sessions`).

use crate::error::TokenError;
use crate::guid::Guid;
use crate::label::{Label, PrincipalType};

/// Why a sign-in was refused, as the statistics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The token is outside its validity window (`exp`, `nbf`).
    Expired,
    /// The token was issued for another resource, or is an ID token.
    Audience,
    /// The token (or its signing key) belongs to another tenant, or its issuer is not accepted.
    Tenant,
    /// The token's signing key is not in the key set, or the server has no keys.
    UnknownKey,
    /// The token is of another principal than the role's: another object id, the wrong kind
    /// (app token for a user role, user token for a service role), or a role with no label.
    Principal,
    /// The role requires MFA and the token was issued without it.
    Mfa,
    /// The token does not show membership of the role's group (not listed, overage).
    Group,
    /// Not a valid token: not a JWT, bad encoding, an algorithm other than RS256, no key id,
    /// a signature that does not verify, a claim missing or of the wrong type.
    Malformed,
    /// A password sign-in (an ordinary role, or a password for a role bound to a principal).
    Password,
    /// A credential that would have crossed the network unencrypted.
    Transport,
    /// Anything else (no tenant configured, an invalid label).
    Other,
}

impl Reason {
    /// Every class, in the order the statistics store their counters.
    pub const ALL: [Reason; 11] = [
        Reason::Expired,
        Reason::Audience,
        Reason::Tenant,
        Reason::UnknownKey,
        Reason::Principal,
        Reason::Mfa,
        Reason::Group,
        Reason::Malformed,
        Reason::Password,
        Reason::Transport,
        Reason::Other,
    ];

    /// The key in `refused_by`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Expired => "expired",
            Reason::Audience => "audience",
            Reason::Tenant => "tenant",
            Reason::UnknownKey => "unknown_key",
            Reason::Principal => "principal",
            Reason::Mfa => "mfa",
            Reason::Group => "group",
            Reason::Malformed => "malformed",
            Reason::Password => "password",
            Reason::Transport => "transport",
            Reason::Other => "other",
        }
    }

    /// The counter's position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl TokenError {
    /// The class a refusal with this error is counted under.
    pub fn reason(&self) -> Reason {
        use TokenError::*;
        match self {
            Expired { .. } | NotYetValid { .. } => Reason::Expired,
            WrongAudience { .. } | IdToken { .. } => Reason::Audience,
            WrongTenant { .. } | WrongIssuer { .. } | KeyIssuerMismatch { .. } => Reason::Tenant,
            UnknownKey { .. } | NoKeys => Reason::UnknownKey,
            OidMismatch { .. } | WrongPrincipalKind { .. } => Reason::Principal,
            MfaRequired => Reason::Mfa,
            NotGroupMember { .. } | GroupOverage | DirectoryUnavailable(_) => Reason::Group,
            Empty
            | TooLarge { .. }
            | NotAJwt
            | Malformed(_)
            | UnsupportedAlgorithm(_)
            | MissingKeyId
            | BadSignature
            | MissingClaim(_) => Reason::Malformed,
            TenantNotConfigured => Reason::Other,
        }
    }
}

/// Whether a name not yet in the statistics table gets an entry of its own (else it is
/// counted under the one overflow row): while the table has room and, for a name that is no
/// role, while such names hold less than half of it. Anyone who can reach the port can sign
/// in as made-up names; they must not crowd out the server's own roles.
pub fn stats_admits(used: usize, capacity: usize, non_roles: usize, is_role: bool) -> bool {
    used < capacity && (is_role || non_roles < capacity / 2)
}

/// `aad_auth.session_lifetime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Sessions last until they end (what Azure does).
    Unlimited,
    /// A session signed in with a token ends once the token has expired, plus the grace.
    Token,
}

/// Whether a session signed in with a token that expires at `exp` (Unix seconds) is over at
/// `now`: with [`Lifetime::Token`], once `now > exp + grace`. `aad_auth.clock_skew` does not
/// extend it. A negative grace counts as none.
pub fn session_over(lifetime: Lifetime, now: i64, exp: i64, grace: i64) -> bool {
    lifetime == Lifetime::Token && now > exp.saturating_add(grace.max(0))
}

/// Whether the role a session signed in as still binds the principal it signed in for:
/// a label of the same type with the same object id. `current` is the role's label now:
/// `None` when the role is gone or has no label, `Some(Err)` when its label does not parse.
/// Flags (`admin`, `mfa`) may change without ending the session.
pub fn still_bound(
    kind: PrincipalType,
    oid: Guid,
    current: Option<&Result<Label, String>>,
) -> bool {
    matches!(current, Some(Ok(label)) if label.kind == kind && label.oid == oid)
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`, for messages (proleptic Gregorian calendar).
pub fn utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> Guid {
        format!("00000000-0000-0000-0000-0000000000{n:02x}")
            .parse()
            .unwrap()
    }

    fn label(kind: PrincipalType, n: u8) -> Result<Label, String> {
        Ok(Label {
            oid: oid(n),
            kind,
            admin: false,
            mfa: false,
        })
    }

    #[test]
    fn reason_names_are_the_documented_keys_in_counter_order() {
        let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "expired",
                "audience",
                "tenant",
                "unknown_key",
                "principal",
                "mfa",
                "group",
                "malformed",
                "password",
                "transport",
                "other"
            ]
        );
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn reason_of_every_token_error() {
        use TokenError::*;
        let g = oid(1);
        let cases: Vec<(TokenError, Reason)> = vec![
            (Expired { exp: 1, now: 2 }, Reason::Expired),
            (NotYetValid { nbf: 2, now: 1 }, Reason::Expired),
            (
                WrongAudience {
                    found: "a".into(),
                    resource: "r".into(),
                },
                Reason::Audience,
            ),
            (
                IdToken {
                    resource: "r".into(),
                },
                Reason::Audience,
            ),
            (
                WrongTenant {
                    expected: g,
                    found: "t".into(),
                },
                Reason::Tenant,
            ),
            (WrongIssuer { found: "i".into() }, Reason::Tenant),
            (KeyIssuerMismatch { kid: "k".into() }, Reason::Tenant),
            (UnknownKey { kid: "k".into() }, Reason::UnknownKey),
            (NoKeys, Reason::UnknownKey),
            (
                OidMismatch {
                    label_oid: g,
                    token_oid: "o".into(),
                },
                Reason::Principal,
            ),
            (
                WrongPrincipalKind {
                    role_kind: "user",
                    token_kind: "app",
                },
                Reason::Principal,
            ),
            (MfaRequired, Reason::Mfa),
            (NotGroupMember { group_oid: g }, Reason::Group),
            (GroupOverage, Reason::Group),
            (DirectoryUnavailable("x".into()), Reason::Group),
            (Empty, Reason::Malformed),
            (TooLarge { len: 1 }, Reason::Malformed),
            (NotAJwt, Reason::Malformed),
            (Malformed("x".into()), Reason::Malformed),
            (UnsupportedAlgorithm("HS256".into()), Reason::Malformed),
            (MissingKeyId, Reason::Malformed),
            (BadSignature, Reason::Malformed),
            (MissingClaim("exp"), Reason::Malformed),
            (TenantNotConfigured, Reason::Other),
        ];
        for (error, reason) in cases {
            assert_eq!(error.reason(), reason, "{error:?}");
        }
    }

    #[test]
    fn stats_admit_roles_until_the_table_is_full() {
        assert!(stats_admits(0, 4, 0, true));
        assert!(stats_admits(3, 4, 3, true));
        assert!(!stats_admits(4, 4, 0, true));
        assert!(!stats_admits(5, 4, 0, true));
    }

    #[test]
    fn stats_admit_names_that_are_no_role_into_half_the_table_only() {
        assert!(stats_admits(0, 4, 0, false));
        assert!(stats_admits(1, 4, 1, false));
        assert!(!stats_admits(2, 4, 2, false));
        // ... and a role still finds room after them.
        assert!(stats_admits(2, 4, 2, true));
        assert!(!stats_admits(0, 1, 0, false));
    }

    #[test]
    fn lifetime_unlimited_never_ends_a_session() {
        assert!(!session_over(Lifetime::Unlimited, i64::MAX, 0, 0));
    }

    #[test]
    fn lifetime_token_ends_a_session_after_exp_plus_grace_never_before() {
        assert!(!session_over(Lifetime::Token, 1300, 1000, 300));
        assert!(session_over(Lifetime::Token, 1301, 1000, 300));
        assert!(!session_over(Lifetime::Token, 1000, 1000, 0));
        assert!(session_over(Lifetime::Token, 1001, 1000, 0));
        // A negative grace is none; a huge one never overflows into the past.
        assert!(session_over(Lifetime::Token, 1001, 1000, -50));
        assert!(!session_over(Lifetime::Token, i64::MAX, 1000, i64::MAX));
    }

    #[test]
    fn still_bound_when_the_label_names_the_same_principal() {
        let user = PrincipalType::User;
        assert!(still_bound(user, oid(1), Some(&label(user, 1))));
        let mut flags = label(user, 1);
        if let Ok(l) = flags.as_mut() {
            l.admin = true;
            l.mfa = true;
        }
        assert!(still_bound(user, oid(1), Some(&flags)));
    }

    #[test]
    fn not_bound_when_dropped_unlabelled_rebound_retyped_or_corrupt() {
        let user = PrincipalType::User;
        assert!(!still_bound(user, oid(1), None));
        assert!(!still_bound(user, oid(1), Some(&label(user, 2))));
        assert!(!still_bound(
            user,
            oid(1),
            Some(&label(PrincipalType::Service, 1))
        ));
        assert!(!still_bound(user, oid(1), Some(&Err("bad".into()))));
    }

    #[test]
    fn utc_formats_unix_seconds() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_306_645), "2026-12-03 14:04:05 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
        // Around the century and 400-year leap rules of the calendar.
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59 UTC");
        assert_eq!(utc(4_107_542_400), "2100-03-01 00:00:00 UTC");
        assert_eq!(utc(13_574_606_400), "2400-02-29 12:00:00 UTC");
        assert_eq!(utc(-2_203_891_200), "1900-03-01 00:00:00 UTC");
        assert_eq!(utc(951_868_800), "2000-03-01 00:00:00 UTC");
        assert_eq!(utc(7_289_654_399), "2200-12-31 23:59:59 UTC");
    }
}
