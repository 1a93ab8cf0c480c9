//! The `pgaadauth` security label: `aadauth,oid=<guid>,type=<user|group|service>[,admin][,mfa]`.

use crate::guid::Guid;
use std::fmt;
use std::str::FromStr;

/// What kind of Entra object a role is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalType {
    /// A person (member or invited guest): signs in with a user token carrying this `oid`.
    User,
    /// A security group: any member signs in with a token whose `groups` claim lists this `oid`.
    Group,
    /// A service principal or managed identity: signs in with an app-only token.
    Service,
}

impl PrincipalType {
    /// The word used in labels, in `pgaadauth_create_principal_with_oid`'s `objectType`
    /// and in `pgaadauth_list_principals`.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::User => "user",
            PrincipalType::Group => "group",
            PrincipalType::Service => "service",
        }
    }
}

impl FromStr for PrincipalType {
    type Err = LabelError;

    /// Accepts the label words case-insensitively, as Azure's functions do for `objectType`.
    fn from_str(s: &str) -> Result<Self, LabelError> {
        match s.to_ascii_lowercase().as_str() {
            "user" => Ok(PrincipalType::User),
            "group" => Ok(PrincipalType::Group),
            "service" => Ok(PrincipalType::Service),
            _ => Err(LabelError::BadType(sanitize(s))),
        }
    }
}

/// A parsed `pgaadauth` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub oid: Guid,
    pub kind: PrincipalType,
    pub admin: bool,
    pub mfa: bool,
}

/// Why a label was refused; the text is what the DBA sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelError {
    NoPrefix,
    MissingOid,
    BadOid(String),
    MissingType,
    BadType(String),
    Duplicate(String),
    UnknownItem(String),
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHAPE: &str =
            "expected \"aadauth,oid=<object id>,type=<user|group|service>[,admin][,mfa]\"";
        match self {
            LabelError::NoPrefix => write!(f, "label does not start with \"aadauth\"; {SHAPE}"),
            LabelError::MissingOid => write!(f, "label has no oid; {SHAPE}"),
            LabelError::BadOid(v) => write!(
                f,
                "\"{v}\" is not an object id; an object id is a GUID such as 00000000-0000-0000-0000-000000000000"
            ),
            LabelError::MissingType => write!(f, "label has no type; {SHAPE}"),
            LabelError::BadType(v) => write!(
                f,
                "\"{v}\" is not a principal type; use user, group or service"
            ),
            LabelError::Duplicate(v) => write!(f, "label repeats \"{v}\"; {SHAPE}"),
            LabelError::UnknownItem(v) => write!(f, "label item \"{v}\" is not known; {SHAPE}"),
        }
    }
}

impl std::error::Error for LabelError {}

/// Keeps a piece of user input printable and short for an error message.
fn sanitize(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl FromStr for Label {
    type Err = LabelError;

    fn from_str(s: &str) -> Result<Self, LabelError> {
        let mut items = s.split(',').map(str::trim);
        if items.next() != Some("aadauth") {
            return Err(LabelError::NoPrefix);
        }
        let (mut oid, mut kind, mut admin, mut mfa) = (None, None, false, false);
        for item in items {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            let seen = match (key, value) {
                ("oid", Some(v)) => {
                    let parsed = v.parse().map_err(|_| LabelError::BadOid(sanitize(v)))?;
                    oid.replace(parsed).is_some()
                }
                ("type", Some(v)) => kind.replace(v.parse()?).is_some(),
                ("admin", None) => std::mem::replace(&mut admin, true),
                ("mfa", None) => std::mem::replace(&mut mfa, true),
                _ => return Err(LabelError::UnknownItem(sanitize(item))),
            };
            if seen {
                return Err(LabelError::Duplicate(key.to_string()));
            }
        }
        Ok(Label {
            oid: oid.ok_or(LabelError::MissingOid)?,
            kind: kind.ok_or(LabelError::MissingType)?,
            admin,
            mfa,
        })
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "aadauth,oid={},type={}", self.oid, self.kind.as_str())?;
        if self.admin {
            f.write_str(",admin")?;
        }
        if self.mfa {
            f.write_str(",mfa")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "8f0c3c4e-6b0a-4b2f-9d55-0d6c1e2f3a4b";

    #[test]
    fn label_parses_azure_forms() {
        let l: Label = format!("aadauth,oid={OID},type=user,admin")
            .parse()
            .unwrap();
        assert_eq!(l.oid.to_string(), OID);
        assert_eq!(l.kind, PrincipalType::User);
        assert!(l.admin && !l.mfa);
        let l: Label = format!("aadauth,oid={},type=group,mfa", OID.to_uppercase())
            .parse()
            .unwrap();
        assert_eq!(l.kind, PrincipalType::Group);
        assert!(l.mfa && !l.admin);
        let l: Label = format!("aadauth,type=service,oid={OID}").parse().unwrap();
        assert_eq!(l.kind, PrincipalType::Service);
    }

    #[test]
    fn label_formats_canonically() {
        let l: Label = format!("aadauth, oid={},type=USER ,mfa,admin", OID.to_uppercase())
            .parse()
            .unwrap();
        assert_eq!(
            l.to_string(),
            format!("aadauth,oid={OID},type=user,admin,mfa")
        );
    }

    #[test]
    fn label_rejects_malformed() {
        let cases = [
            ("", LabelError::NoPrefix),
            (
                &format!("oid={OID},type=user") as &str,
                LabelError::NoPrefix,
            ),
            ("aadauth,type=user", LabelError::MissingOid),
            (&format!("aadauth,oid={OID}"), LabelError::MissingType),
            (
                "aadauth,oid=alice,type=user",
                LabelError::BadOid("alice".into()),
            ),
            (
                &format!("aadauth,oid={OID},type=robot"),
                LabelError::BadType("robot".into()),
            ),
            (
                &format!("aadauth,oid={OID},type=user,type=group"),
                LabelError::Duplicate("type".into()),
            ),
            (
                &format!("aadauth,oid={OID},oid={OID},type=user"),
                LabelError::Duplicate("oid".into()),
            ),
            (
                &format!("aadauth,oid={OID},type=user,admin,admin"),
                LabelError::Duplicate("admin".into()),
            ),
            (
                &format!("aadauth,oid={OID},type=user,superuser"),
                LabelError::UnknownItem("superuser".into()),
            ),
            (
                &format!("aadauth,oid={OID},type=user,admin=yes"),
                LabelError::UnknownItem("admin=yes".into()),
            ),
            (
                &format!("aadauth,oid={OID},type=user,"),
                LabelError::UnknownItem("".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Label>(), Err(want), "{text:?}");
        }
    }

    #[test]
    fn label_error_messages_say_the_shape() {
        let e = "nonsense".parse::<Label>().unwrap_err().to_string();
        assert!(
            e.contains("aadauth,oid=<object id>,type=<user|group|service>"),
            "{e}"
        );
    }
}
