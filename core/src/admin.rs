//! Admin power never exceeds PostgreSQL's own: whether a caller may rebind, drop or label a
//! role. Any Entra admin manages any ordinary Entra principal (as on Azure), but a caller that
//! is not a superuser may not take over a role that could do more than the caller can.

use crate::escape::quoted;

/// What the decision needs to know about the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub superuser: bool,
    pub replication: bool,
    pub bypassrls: bool,
    pub createrole: bool,
    pub createdb: bool,
    /// PostgreSQL itself would let the caller set the target's password, in 16's rule (which
    /// aad_auth applies on 15 too): CREATEROLE with ADMIN OPTION on it, or the target is the
    /// caller.
    pub may_set_password: bool,
}

/// What the decision needs to know about the target role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub superuser: bool,
    pub replication: bool,
    pub bypassrls: bool,
    /// It carries a `pgaadauth` label (it is an Entra principal already).
    pub principal: bool,
    /// A role the target is a member of (directly or not, inherited or not) whose privileges
    /// the caller does not have, if any.
    pub role_caller_lacks: Option<String>,
}

/// Why a caller may not manage a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    Superuser,
    Attribute(&'static str),
    Privileges(String),
    NotPrincipal,
    /// Making a role an admin gives it CREATEROLE and CREATEDB, which the caller lacks.
    GrantAdmin,
}

impl Denied {
    /// The detail of the 42501 error, for role `name`.
    pub fn detail(&self, name: &[u8]) -> String {
        let role = quoted(name);
        match self {
            Denied::Superuser => format!("Role {role} is a superuser; only a superuser may manage it."),
            Denied::Attribute(attr) => {
                format!("Role {role} has the {attr} attribute, which you do not have.")
            }
            Denied::Privileges(other) => format!(
                "Role {role} has the privileges of role {}, which you do not have.",
                quoted(other.as_bytes())
            ),
            Denied::NotPrincipal => format!(
                "Role {role} is not a Microsoft Entra ID principal; binding it is for a role that may set its password (a superuser, or a CREATEROLE role with ADMIN OPTION on it)."
            ),
            Denied::GrantAdmin => format!(
                "Making role {role} a Microsoft Entra ID admin gives it CREATEROLE and CREATEDB, which you do not have."
            ),
        }
    }
}

/// Whether `caller` may rebind, drop, label or unlabel `target`.
pub fn may_manage(caller: &Caller, target: &Target) -> Result<(), Denied> {
    if caller.superuser {
        return Ok(());
    }
    if target.superuser {
        return Err(Denied::Superuser);
    }
    if target.replication && !caller.replication {
        return Err(Denied::Attribute("REPLICATION"));
    }
    if target.bypassrls && !caller.bypassrls {
        return Err(Denied::Attribute("BYPASSRLS"));
    }
    if let Some(role) = &target.role_caller_lacks {
        return Err(Denied::Privileges(role.clone()));
    }
    if !target.principal && !caller.may_set_password {
        return Err(Denied::NotPrincipal);
    }
    Ok(())
}

/// Whether `caller` may make a role an Entra ID admin (isAdmin, or a label with `admin`):
/// that gives the role CREATEROLE and CREATEDB, so the caller must have both itself.
pub fn may_grant_admin(caller: &Caller) -> Result<(), Denied> {
    if caller.superuser || (caller.createrole && caller.createdb) {
        Ok(())
    } else {
        Err(Denied::GrantAdmin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Caller {
        Caller::default()
    }

    fn principal() -> Target {
        Target {
            principal: true,
            ..Target::default()
        }
    }

    #[test]
    fn any_admin_manages_an_ordinary_entra_principal() {
        assert_eq!(may_manage(&admin(), &principal()), Ok(()));
    }

    #[test]
    fn a_superuser_manages_anything() {
        let su = Caller {
            superuser: true,
            ..Caller::default()
        };
        let worst = Target {
            superuser: true,
            replication: true,
            bypassrls: true,
            principal: false,
            role_caller_lacks: Some("postgres".into()),
        };
        assert_eq!(may_manage(&su, &worst), Ok(()));
    }

    #[test]
    fn superuser_targets_are_for_superusers() {
        let t = Target {
            superuser: true,
            ..principal()
        };
        assert_eq!(may_manage(&admin(), &t), Err(Denied::Superuser));
    }

    #[test]
    fn replication_and_bypassrls_targets_need_the_caller_to_have_them() {
        let repl = Target {
            replication: true,
            ..principal()
        };
        let bypass = Target {
            bypassrls: true,
            ..principal()
        };
        assert_eq!(
            may_manage(&admin(), &repl),
            Err(Denied::Attribute("REPLICATION"))
        );
        assert_eq!(
            may_manage(&admin(), &bypass),
            Err(Denied::Attribute("BYPASSRLS"))
        );
        let strong = Caller {
            replication: true,
            bypassrls: true,
            ..Caller::default()
        };
        assert_eq!(may_manage(&strong, &repl), Ok(()));
        assert_eq!(may_manage(&strong, &bypass), Ok(()));
    }

    #[test]
    fn targets_with_privileges_the_caller_lacks_are_refused() {
        let t = Target {
            role_caller_lacks: Some("pg_execute_server_program".into()),
            ..principal()
        };
        assert_eq!(
            may_manage(&admin(), &t),
            Err(Denied::Privileges("pg_execute_server_program".into()))
        );
    }

    #[test]
    fn binding_an_ordinary_role_needs_the_power_to_set_its_password() {
        let plain = Target::default();
        assert_eq!(may_manage(&admin(), &plain), Err(Denied::NotPrincipal));
        let createrole = Caller {
            may_set_password: true,
            ..Caller::default()
        };
        assert_eq!(may_manage(&createrole, &plain), Ok(()));
    }

    #[test]
    fn making_an_admin_needs_createrole_and_createdb() {
        assert_eq!(may_grant_admin(&admin()), Err(Denied::GrantAdmin));
        let half = Caller {
            createrole: true,
            ..Caller::default()
        };
        assert_eq!(may_grant_admin(&half), Err(Denied::GrantAdmin));
        let half = Caller {
            createdb: true,
            ..Caller::default()
        };
        assert_eq!(may_grant_admin(&half), Err(Denied::GrantAdmin));
        let entra_admin = Caller {
            createrole: true,
            createdb: true,
            ..Caller::default()
        };
        assert_eq!(may_grant_admin(&entra_admin), Ok(()));
        let su = Caller {
            superuser: true,
            ..Caller::default()
        };
        assert_eq!(may_grant_admin(&su), Ok(()));
    }

    #[test]
    fn details_name_the_reason_and_quote_the_role() {
        assert_eq!(
            Denied::Superuser.detail(b"ops"),
            "Role \"ops\" is a superuser; only a superuser may manage it."
        );
        assert_eq!(
            Denied::Attribute("REPLICATION").detail(b"repl"),
            "Role \"repl\" has the REPLICATION attribute, which you do not have."
        );
        assert_eq!(
            Denied::Privileges("postgres".into()).detail(b"a\"b"),
            "Role \"a\\\"b\" has the privileges of role \"postgres\", which you do not have."
        );
        assert!(Denied::NotPrincipal
            .detail(b"plain")
            .starts_with("Role \"plain\" is not a Microsoft Entra ID principal"));
    }
}
