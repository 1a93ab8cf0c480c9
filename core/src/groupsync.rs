//! Group sync's decisions (Azure's `pgaadauth.enable_group_sync`): given the group principals,
//! their members as the directory lists them, and the roles as they are, what to change so
//! that every member has its own LOGIN role granted its groups' roles.
//!
//! The directory's names (a user's UPN, an application's display name) are chosen by people
//! other than the DBA, so the sync takes nothing over: a member gets either the role the sync
//! created for it before, or a role of the member's own name already bound to that member (and
//! administered by no one but superusers), or a new role; a name in use otherwise is skipped.
//! The sync only ever undoes what it did: its mark on a role (the `aad_auth_sync` security
//! label) says whether it created the role, whether it removed its LOGIN, and which group roles
//! (by their PostgreSQL oid) it granted; it revokes only those grants, and takes or gives back
//! LOGIN only on roles it created. A member of a group principal that requires MFA signs in
//! with MFA too.

use crate::guid::Guid;
use crate::label::PrincipalType;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Longest role name PostgreSQL keeps (NAMEDATALEN - 1 bytes).
pub const MAX_ROLE_NAME: usize = 63;

/// A member of a group, as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub oid: Guid,
    /// `User`, or `Service` for service principals and managed identities.
    pub kind: PrincipalType,
    /// The role name Azure gives it: a user's UPN, an application's display name.
    pub name: String,
}

/// A group principal: a role labelled `type=group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The directory object id.
    pub oid: Guid,
    /// The role's PostgreSQL oid.
    pub id: u32,
    pub role: String,
    /// The label requires MFA: its members must too.
    pub mfa: bool,
}

/// The sync's mark on a role: `created=<yes|no>,login=<kept|removed>,groups=<oid> <oid> ...`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mark {
    /// The sync created the role (and so may take its LOGIN away and give it back).
    pub created: bool,
    /// The sync took LOGIN away (and so may give it back; a DBA's NOLOGIN is left alone).
    pub login_removed: bool,
    /// The group roles (PostgreSQL oids) the sync granted it.
    pub groups: BTreeSet<u32>,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
        write!(
            f,
            "created={},login={},groups={}",
            if self.created { "yes" } else { "no" },
            if self.login_removed {
                "removed"
            } else {
                "kept"
            },
            groups.join(" ")
        )
    }
}

impl std::str::FromStr for Mark {
    type Err = String;

    fn from_str(text: &str) -> Result<Mark, String> {
        let shape = "expected created=<yes|no>,login=<kept|removed>,groups=<role oids>";
        let mut parts = text.splitn(3, ',');
        let created = match parts.next() {
            Some("created=yes") => true,
            Some("created=no") => false,
            _ => return Err(shape.into()),
        };
        let login_removed = match parts.next() {
            Some("login=removed") => true,
            Some("login=kept") => false,
            _ => return Err(shape.into()),
        };
        let groups = parts
            .next()
            .and_then(|g| g.strip_prefix("groups="))
            .ok_or(shape)?
            .split(' ')
            .filter(|g| !g.is_empty())
            .map(|g| {
                g.parse::<u32>()
                    .map_err(|_| format!("\"{g}\" is not a role oid"))
            })
            .collect::<Result<BTreeSet<u32>, String>>()?;
        Ok(Mark {
            created,
            login_removed,
            groups,
        })
    }
}

/// A role's `pgaadauth` label, as far as the sync cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub oid: Guid,
    pub kind: PrincipalType,
    pub mfa: bool,
}

/// A role as it is now: those that are Entra principals or carry the sync's mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    /// Its PostgreSQL oid.
    pub id: u32,
    pub principal: Option<Bound>,
    pub mark: Option<Mark>,
    pub login: bool,
    /// The roles (PostgreSQL oids) it is a member of.
    pub member_of: BTreeSet<u32>,
    /// A role that is not a superuser holds ADMIN OPTION on it (and could grant it to itself).
    pub foreign_admins: bool,
}

/// One change to make, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `CREATE ROLE role LOGIN` and its `pgaadauth` label.
    Create {
        role: String,
        oid: Guid,
        kind: PrincipalType,
        mfa: bool,
    },
    /// Its `pgaadauth` label gains `mfa` (a role the sync created joins a group requiring MFA).
    RequireMfa {
        role: String,
        oid: Guid,
        kind: PrincipalType,
    },
    Grant {
        role: String,
        group: String,
    },
    Revoke {
        role: String,
        group: String,
    },
    /// `ALTER ROLE role LOGIN` (true) or `NOLOGIN`.
    Login {
        role: String,
        on: bool,
    },
    /// Sets the sync's mark (`None`: removes it).
    Mark {
        role: String,
        mark: Option<Mark>,
    },
    /// Nothing is done for this member of `group`: `why`.
    Skip {
        role: String,
        group: String,
        why: String,
    },
}

impl Step {
    /// The row `pgaadauth_sync_roles_for_group_members()` returns for it: (role, group,
    /// action); `None` for the sync's own bookkeeping.
    pub fn change(&self) -> Option<(&str, &str, String)> {
        match self {
            Step::Create { role, kind, .. } => {
                Some((role, "", format!("created ({})", kind.as_str())))
            }
            Step::RequireMfa { role, .. } => Some((role, "", "mfa required".into())),
            Step::Grant { role, group } => Some((role, group, "granted".into())),
            Step::Revoke { role, group } => Some((role, group, "revoked".into())),
            Step::Login { role, on: true } => Some((role, "", "login restored".into())),
            Step::Login { role, on: false } => Some((role, "", "login removed".into())),
            Step::Mark { .. } => None,
            Step::Skip { role, group, why } => Some((role, group, format!("skipped: {why}"))),
        }
    }
}

/// Why PostgreSQL would refuse `name` for a new role, if it would.
fn unusable_name(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_ROLE_NAME || name.contains('\0') {
        return Some(format!(
            "the directory name is empty or longer than {MAX_ROLE_NAME} bytes"
        ));
    }
    if name == "public" || name == "none" || name.starts_with("pg_") {
        return Some("PostgreSQL reserves that role name".into());
    }
    None
}

/// What to change. `members` maps each group's object id to its members (users and service
/// principals; nested groups already flattened into their members by the directory). Every
/// group in `groups` must have an entry: a group whose members could not be read must stop
/// the whole sync before this is called (an outage changes nothing). `roles` are the roles
/// that are Entra principals or carry the sync's mark; `names` is every role of the cluster
/// (PostgreSQL oid to name): a new role is never made under a name in use.
pub fn plan(
    groups: &[Group],
    members: &BTreeMap<Guid, Vec<Member>>,
    roles: &[Role],
    names: &BTreeMap<u32, String>,
) -> Vec<Step> {
    let taken: BTreeSet<&str> = names.values().map(String::as_str).collect();
    let mut steps = Vec::new();
    // The role each member signs in with, and the group roles it should be in.
    let mut wanted: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    let mut to_create: BTreeMap<String, (Guid, PrincipalType, bool)> = BTreeMap::new();
    let mut needs_mfa: BTreeSet<String> = BTreeSet::new();
    let mut sorted: Vec<&Group> = groups.iter().collect();
    sorted.sort_by(|a, b| a.role.cmp(&b.role));
    for group in sorted {
        let mut seen = BTreeSet::new();
        for member in members.get(&group.oid).map(Vec::as_slice).unwrap_or(&[]) {
            if member.kind == PrincipalType::Group || !seen.insert(member.oid) {
                continue;
            }
            let is_member = |r: &&Role| {
                r.principal
                    .is_some_and(|p| p.oid == member.oid && p.kind == member.kind)
            };
            let skip = |why: String| Step::Skip {
                role: member.name.clone(),
                group: group.role.clone(),
                why,
            };
            // The sync's own role for the member; else the member's own name, bound to it
            // and administered by superusers only; else a new role.
            let existing = roles
                .iter()
                .filter(|r| is_member(r) && r.mark.as_ref().is_some_and(|m| m.created))
                .min_by(|a, b| a.name.cmp(&b.name))
                .or_else(|| {
                    roles
                        .iter()
                        .find(|r| r.name == member.name && is_member(r) && !r.foreign_admins)
                });
            let role = match existing {
                Some(r) => {
                    let mfa = r.principal.is_some_and(|p| p.mfa);
                    if group.mfa && !mfa {
                        if r.mark.as_ref().is_some_and(|m| m.created) {
                            needs_mfa.insert(r.name.clone());
                        } else {
                            steps.push(skip(format!(
                                "group role {} requires MFA and role {} does not",
                                group.role, r.name
                            )));
                            continue;
                        }
                    }
                    r.name.clone()
                }
                None => {
                    if let Some(why) = unusable_name(&member.name) {
                        steps.push(skip(format!(
                            "{why} ({} {})",
                            member.kind.as_str(),
                            member.oid
                        )));
                        continue;
                    }
                    if taken.contains(member.name.as_str()) {
                        steps.push(skip(format!(
                            "a role of that name exists and is not the sync's or bound only to {} {}",
                            member.kind.as_str(),
                            member.oid
                        )));
                        continue;
                    }
                    match to_create.get_mut(&member.name) {
                        Some((oid, _, _)) if *oid != member.oid => {
                            steps.push(skip(format!("two members share that name; {oid} got it")));
                            continue;
                        }
                        Some((_, _, mfa)) => *mfa |= group.mfa,
                        None => {
                            to_create
                                .insert(member.name.clone(), (member.oid, member.kind, group.mfa));
                        }
                    }
                    member.name.clone()
                }
            };
            wanted.entry(role).or_default().insert(group.id);
        }
    }
    let group_name = |id: &u32| names.get(id).cloned();
    // New roles: created, granted their groups, marked.
    for (role, (oid, kind, mfa)) in &to_create {
        steps.push(Step::Create {
            role: role.clone(),
            oid: *oid,
            kind: *kind,
            mfa: *mfa,
        });
        let groups = wanted.get(role).cloned().unwrap_or_default();
        for g in &groups {
            if let Some(group) = group_name(g) {
                steps.push(Step::Grant {
                    role: role.clone(),
                    group,
                });
            }
        }
        steps.push(Step::Mark {
            role: role.clone(),
            mark: Some(Mark {
                created: true,
                login_removed: false,
                groups,
            }),
        });
    }
    // Existing roles: grant what is missing, revoke what the sync granted and is no longer
    // wanted, and take LOGIN from, or give it back to, the roles the sync created.
    let mut existing: Vec<&Role> = roles.iter().collect();
    existing.sort_by(|a, b| a.name.cmp(&b.name));
    for role in existing {
        if to_create.contains_key(&role.name) {
            continue;
        }
        let want = wanted.get(&role.name).cloned().unwrap_or_default();
        let old = role.mark.clone().unwrap_or_default();
        let mut mark = old.clone();
        if needs_mfa.contains(&role.name) {
            if let Some(p) = role.principal {
                steps.push(Step::RequireMfa {
                    role: role.name.clone(),
                    oid: p.oid,
                    kind: p.kind,
                });
            }
        }
        for g in &want {
            if !role.member_of.contains(g) {
                if let Some(group) = group_name(g) {
                    steps.push(Step::Grant {
                        role: role.name.clone(),
                        group,
                    });
                    mark.groups.insert(*g);
                }
            }
        }
        for g in old.groups.difference(&want) {
            if role.member_of.contains(g) {
                if let Some(group) = group_name(g) {
                    steps.push(Step::Revoke {
                        role: role.name.clone(),
                        group,
                    });
                }
            }
            mark.groups.remove(g);
        }
        if mark.created {
            if want.is_empty() && role.login {
                steps.push(Step::Login {
                    role: role.name.clone(),
                    on: false,
                });
                mark.login_removed = true;
            } else if !want.is_empty() && !role.login && mark.login_removed {
                steps.push(Step::Login {
                    role: role.name.clone(),
                    on: true,
                });
                mark.login_removed = false;
            } else if role.login {
                // LOGIN given back by hand: the sync's removal is over.
                mark.login_removed = false;
            }
        }
        let new = (mark.created || !mark.groups.is_empty()).then_some(mark);
        if new != role.mark {
            steps.push(Step::Mark {
                role: role.name.clone(),
                mark: new,
            });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guid(n: u8) -> Guid {
        format!("{n:08x}-0000-4000-8000-000000000000")
            .parse()
            .unwrap()
    }

    /// Group principal `n`: directory oid `guid(n)`, role oid `1000 + n`.
    fn group(n: u8, role: &str) -> Group {
        Group {
            oid: guid(n),
            id: 1000 + u32::from(n),
            role: role.into(),
            mfa: false,
        }
    }

    fn user(n: u8, name: &str) -> Member {
        Member {
            oid: guid(n),
            kind: PrincipalType::User,
            name: name.into(),
        }
    }

    fn app(n: u8, name: &str) -> Member {
        Member {
            oid: guid(n),
            kind: PrincipalType::Service,
            name: name.into(),
        }
    }

    /// A role with PostgreSQL oid `id`.
    fn role(id: u32, name: &str) -> Role {
        Role {
            name: name.into(),
            id,
            principal: None,
            mark: None,
            login: true,
            member_of: BTreeSet::new(),
            foreign_admins: false,
        }
    }

    fn bound(id: u32, name: &str, n: u8, kind: PrincipalType) -> Role {
        Role {
            principal: Some(Bound {
                oid: guid(n),
                kind,
                mfa: false,
            }),
            ..role(id, name)
        }
    }

    fn group_role(g: &Group) -> Role {
        bound(g.id, &g.role, 0, PrincipalType::Group)
    }

    /// `r` marked by the sync, granted (and a member of) the group roles `groups`.
    fn marked(mut r: Role, created: bool, groups: &[&Group]) -> Role {
        let ids: BTreeSet<u32> = groups.iter().map(|g| g.id).collect();
        r.mark = Some(Mark {
            created,
            login_removed: false,
            groups: ids.clone(),
        });
        r.member_of = ids;
        r
    }

    fn members(list: &[(&Group, Vec<Member>)]) -> BTreeMap<Guid, Vec<Member>> {
        list.iter().map(|(g, m)| (g.oid, m.clone())).collect()
    }

    fn names(roles: &[Role]) -> BTreeMap<u32, String> {
        roles.iter().map(|r| (r.id, r.name.clone())).collect()
    }

    fn run(groups: &[Group], m: &BTreeMap<Guid, Vec<Member>>, roles: &[Role]) -> Vec<Step> {
        plan(groups, m, roles, &names(roles))
    }

    fn changes(steps: &[Step]) -> Vec<(String, String, String)> {
        steps
            .iter()
            .filter_map(Step::change)
            .map(|(r, g, a)| (r.to_owned(), g.to_owned(), a))
            .collect()
    }

    fn row(r: &str, g: &str, a: &str) -> (String, String, String) {
        (r.into(), g.into(), a.into())
    }

    fn skipped(steps: &[Step]) -> usize {
        steps
            .iter()
            .filter(|s| matches!(s, Step::Skip { .. }))
            .count()
    }

    #[test]
    fn each_member_gets_its_own_role_granted_its_groups() {
        let (dbas, readers) = (group(1, "dbas"), group(2, "readers"));
        let m = members(&[
            (
                &dbas,
                vec![user(10, "bob@contoso.com"), app(11, "billing-app")],
            ),
            (&readers, vec![user(10, "bob@contoso.com")]),
        ]);
        let roles = [group_role(&dbas), group_role(&readers)];
        let steps = run(&[dbas.clone(), readers.clone()], &m, &roles);
        assert_eq!(
            changes(&steps),
            vec![
                row("billing-app", "", "created (service)"),
                row("billing-app", "dbas", "granted"),
                row("bob@contoso.com", "", "created (user)"),
                row("bob@contoso.com", "dbas", "granted"),
                row("bob@contoso.com", "readers", "granted"),
            ]
        );
        assert!(steps.contains(&Step::Mark {
            role: "bob@contoso.com".into(),
            mark: Some(Mark {
                created: true,
                login_removed: false,
                groups: [dbas.id, readers.id].into()
            })
        }));
    }

    #[test]
    fn a_synced_state_changes_nothing() {
        let dbas = group(1, "dbas");
        let m = members(&[(&dbas, vec![user(10, "bob@contoso.com")])]);
        let bob = marked(
            bound(50, "bob@contoso.com", 10, PrincipalType::User),
            true,
            &[&dbas],
        );
        assert_eq!(
            run(std::slice::from_ref(&dbas), &m, &[group_role(&dbas), bob]),
            vec![]
        );
    }

    #[test]
    fn a_member_who_left_every_group_loses_the_grant_and_login_but_keeps_the_role() {
        let dbas = group(1, "dbas");
        let bob = marked(
            bound(50, "bob@contoso.com", 10, PrincipalType::User),
            true,
            &[&dbas],
        );
        let steps = run(
            std::slice::from_ref(&dbas),
            &members(&[(&dbas, vec![])]),
            &[group_role(&dbas), bob],
        );
        assert_eq!(
            changes(&steps),
            vec![
                row("bob@contoso.com", "dbas", "revoked"),
                row("bob@contoso.com", "", "login removed"),
            ]
        );
        assert!(steps.contains(&Step::Mark {
            role: "bob@contoso.com".into(),
            mark: Some(Mark {
                created: true,
                login_removed: true,
                groups: BTreeSet::new()
            })
        }));
    }

    #[test]
    fn a_returning_member_gets_back_the_login_the_sync_took() {
        let dbas = group(1, "dbas");
        let m = members(&[(&dbas, vec![user(10, "bob@contoso.com")])]);
        let mut bob = marked(
            bound(50, "bob@contoso.com", 10, PrincipalType::User),
            true,
            &[],
        );
        bob.login = false;
        bob.mark.as_mut().unwrap().login_removed = true;
        assert_eq!(
            changes(&run(
                std::slice::from_ref(&dbas),
                &m,
                &[group_role(&dbas), bob]
            )),
            vec![
                row("bob@contoso.com", "dbas", "granted"),
                row("bob@contoso.com", "", "login restored"),
            ]
        );
    }

    #[test]
    fn a_dbas_nologin_is_never_undone() {
        let dbas = group(1, "dbas");
        let m = members(&[(&dbas, vec![user(10, "bob@contoso.com")])]);
        let mut bob = marked(
            bound(50, "bob@contoso.com", 10, PrincipalType::User),
            true,
            &[&dbas],
        );
        bob.login = false; // ALTER ROLE ... NOLOGIN by a DBA
        assert_eq!(
            run(std::slice::from_ref(&dbas), &m, &[group_role(&dbas), bob]),
            vec![]
        );
    }

    #[test]
    fn a_name_taken_by_another_role_is_skipped_never_taken_over() {
        let dbas = group(1, "dbas");
        let m = members(&[(
            &dbas,
            vec![
                user(10, "ops"),
                user(11, "carol@contoso.com"),
                user(12, "azure_pg_admin"),
            ],
        )]);
        let roles = [
            group_role(&dbas),
            role(60, "ops"),
            bound(61, "carol@contoso.com", 99, PrincipalType::User),
        ];
        let mut all = names(&roles);
        all.insert(62, "azure_pg_admin".into()); // neither a principal nor marked
        let steps = plan(&[dbas], &m, &roles, &all);
        assert_eq!(skipped(&steps), 3, "{steps:?}");
        assert_eq!(steps.len(), 3);
    }

    #[test]
    fn names_postgresql_reserves_are_skipped_and_the_rest_synced() {
        let dbas = group(1, "dbas");
        let long = "x".repeat(64);
        let m = members(&[(
            &dbas,
            vec![
                app(20, "pg_evil"),
                app(21, "public"),
                app(22, "none"),
                user(23, &long),
                user(24, ""),
                user(26, "nul\0byte"),
                user(25, "carol@contoso.com"),
            ],
        )]);
        let steps = run(std::slice::from_ref(&dbas), &m, &[group_role(&dbas)]);
        assert_eq!(skipped(&steps), 6, "{steps:?}");
        assert!(changes(&steps).contains(&row("carol@contoso.com", "dbas", "granted")));
    }

    #[test]
    fn the_sync_reuses_only_its_own_role_or_the_members_own_name() {
        let dbas = group(1, "dbas");
        let m = members(&[(&dbas, vec![user(10, "alice@contoso.com")])]);
        // An admin's role "x" bound to the member's oid under another name is not used: the
        // member gets a role of its own name.
        let x = bound(70, "x", 10, PrincipalType::User);
        let steps = run(
            std::slice::from_ref(&dbas),
            &m,
            &[group_role(&dbas), x.clone()],
        );
        assert!(changes(&steps).contains(&row("alice@contoso.com", "", "created (user)")));
        assert!(!changes(&steps).iter().any(|c| c.0 == "x"));
        // A role of the member's own name bound to it is reused (and keeps its LOGIN when she
        // leaves: the sync did not create it).
        let alice = bound(71, "alice@contoso.com", 10, PrincipalType::User);
        let steps = run(
            std::slice::from_ref(&dbas),
            &m,
            &[group_role(&dbas), alice.clone()],
        );
        assert_eq!(
            changes(&steps),
            vec![row("alice@contoso.com", "dbas", "granted")]
        );
        let alice = marked(alice, false, &[&dbas]);
        let steps = run(
            std::slice::from_ref(&dbas),
            &members(&[(&dbas, vec![])]),
            &[group_role(&dbas), alice],
        );
        assert_eq!(
            changes(&steps),
            vec![row("alice@contoso.com", "dbas", "revoked")]
        );
        assert!(steps.contains(&Step::Mark {
            role: "alice@contoso.com".into(),
            mark: None
        }));
        // ... unless someone but a superuser could grant it to itself.
        let mut held = bound(72, "alice@contoso.com", 10, PrincipalType::User);
        held.foreign_admins = true;
        let steps = run(std::slice::from_ref(&dbas), &m, &[group_role(&dbas), held]);
        assert_eq!(skipped(&steps), 1, "{steps:?}");
        // The sync's own role wins over another role bound to the same member.
        let own = marked(
            bound(73, "alice@contoso.com", 10, PrincipalType::User),
            true,
            &[&dbas],
        );
        let steps = run(
            std::slice::from_ref(&dbas),
            &m,
            &[group_role(&dbas), x, own],
        );
        assert_eq!(steps, vec![]);
    }

    #[test]
    fn grants_the_sync_did_not_make_are_never_revoked() {
        let dbas = group(1, "dbas");
        let mut alice = bound(71, "alice@contoso.com", 10, PrincipalType::User);
        alice.member_of = [dbas.id].into();
        let roles = [group_role(&dbas), alice];
        assert_eq!(
            run(
                std::slice::from_ref(&dbas),
                &members(&[(&dbas, vec![])]),
                &roles
            ),
            vec![]
        );
        let m = members(&[(&dbas, vec![user(10, "alice@contoso.com")])]);
        assert_eq!(run(std::slice::from_ref(&dbas), &m, &roles), vec![]);
    }

    #[test]
    fn grants_are_tracked_by_group_role_so_rebinding_and_shared_oids_revoke_exactly() {
        // The group role dbas is rebound to another directory group: bob is not in it. The
        // grant the sync made (to the role dbas) is revoked, whatever dbas is bound to now.
        let rebound = Group {
            oid: guid(2),
            ..group(1, "dbas")
        };
        let bob = marked(
            bound(50, "bob@contoso.com", 10, PrincipalType::User),
            true,
            &[&rebound],
        );
        let steps = run(
            std::slice::from_ref(&rebound),
            &members(&[(&rebound, vec![])]),
            &[group_role(&rebound), bob],
        );
        assert!(changes(&steps).contains(&row("bob@contoso.com", "dbas", "revoked")));
        // Two group roles bound to one directory group: the sync revokes only its own grant.
        let (a, b) = (
            group(3, "a_grp"),
            Group {
                id: 2000,
                role: "b_grp".into(),
                ..group(3, "b_grp")
            },
        );
        let mut carol = marked(
            bound(51, "carol@contoso.com", 11, PrincipalType::User),
            true,
            &[&a],
        );
        carol.member_of.insert(b.id); // granted b_grp by a DBA
        let steps = run(
            &[a.clone(), b.clone()],
            &members(&[(&a, vec![])]),
            &[group_role(&a), group_role(&b), carol],
        );
        let c = changes(&steps);
        assert!(
            c.contains(&row("carol@contoso.com", "a_grp", "revoked")),
            "{c:?}"
        );
        assert!(
            !c.contains(&row("carol@contoso.com", "b_grp", "revoked")),
            "{c:?}"
        );
    }

    #[test]
    fn a_dropped_group_role_releases_its_members() {
        let bob = Role {
            mark: Some(Mark {
                created: true,
                login_removed: false,
                groups: [1001].into(),
            }),
            ..bound(50, "bob@contoso.com", 10, PrincipalType::User)
        };
        let roles = [bob];
        let steps = run(&[], &BTreeMap::new(), &roles);
        assert_eq!(
            changes(&steps),
            vec![row("bob@contoso.com", "", "login removed")]
        );
    }

    #[test]
    fn members_of_a_group_requiring_mfa_require_it_too() {
        let secure = Group {
            mfa: true,
            ..group(1, "secure_dbas")
        };
        let m = members(&[(
            &secure,
            vec![user(10, "bob@contoso.com"), user(11, "alice@contoso.com")],
        )]);
        let alice = bound(71, "alice@contoso.com", 11, PrincipalType::User);
        let steps = run(
            std::slice::from_ref(&secure),
            &m,
            &[group_role(&secure), alice],
        );
        assert!(steps.contains(&Step::Create {
            role: "bob@contoso.com".into(),
            oid: guid(10),
            kind: PrincipalType::User,
            mfa: true
        }));
        // a role the DBA bound without MFA is not granted the group
        assert_eq!(skipped(&steps), 1, "{steps:?}");
        assert!(!changes(&steps).contains(&row("alice@contoso.com", "secure_dbas", "granted")));
        // a role the sync created gains MFA when it joins such a group
        let bob = marked(
            bound(50, "bob@contoso.com", 10, PrincipalType::User),
            true,
            &[],
        );
        let steps = run(
            std::slice::from_ref(&secure),
            &m,
            &[group_role(&secure), bob],
        );
        assert!(changes(&steps).contains(&row("bob@contoso.com", "", "mfa required")));
        assert!(changes(&steps).contains(&row("bob@contoso.com", "secure_dbas", "granted")));
    }

    #[test]
    fn members_are_matched_by_object_id_and_kind_not_by_name() {
        let dbas = group(1, "dbas");
        let roles = [
            group_role(&dbas),
            bound(50, "bob@contoso.com", 10, PrincipalType::User),
        ];
        let m = members(&[(&dbas, vec![app(12, "bob@contoso.com")])]);
        let steps = run(std::slice::from_ref(&dbas), &m, &roles);
        assert!(matches!(steps.as_slice(), [Step::Skip { .. }]), "{steps:?}");
    }

    #[test]
    fn nested_groups_and_duplicates_are_read_once() {
        let dbas = group(1, "dbas");
        let m = members(&[(
            &dbas,
            vec![
                Member {
                    oid: guid(5),
                    kind: PrincipalType::Group,
                    name: "nested".into(),
                },
                user(10, "bob@contoso.com"),
                user(10, "bob@contoso.com"),
            ],
        )]);
        let steps = run(std::slice::from_ref(&dbas), &m, &[group_role(&dbas)]);
        assert_eq!(
            changes(&steps),
            vec![
                row("bob@contoso.com", "", "created (user)"),
                row("bob@contoso.com", "dbas", "granted")
            ]
        );
    }

    #[test]
    fn two_members_with_one_name_the_first_gets_it() {
        let dbas = group(1, "dbas");
        let m = members(&[(&dbas, vec![app(20, "worker"), app(21, "worker")])]);
        let steps = run(std::slice::from_ref(&dbas), &m, &[group_role(&dbas)]);
        assert_eq!(
            steps
                .iter()
                .filter(|s| matches!(s, Step::Create { .. }))
                .count(),
            1
        );
        assert_eq!(skipped(&steps), 1);
    }

    #[test]
    fn the_mark_reads_back() {
        let mark = Mark {
            created: true,
            login_removed: true,
            groups: [16384, 16400].into(),
        };
        assert_eq!(
            mark.to_string(),
            "created=yes,login=removed,groups=16384 16400"
        );
        assert_eq!(mark.to_string().parse::<Mark>(), Ok(mark));
        assert_eq!(
            "created=no,login=kept,groups=".parse::<Mark>(),
            Ok(Mark::default())
        );
        for bad in [
            "",
            "created=maybe,login=kept,groups=",
            "created=yes,groups=",
            "created=yes,login=kept,groups=x",
            "login=kept,created=yes,groups=",
        ] {
            assert!(bad.parse::<Mark>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_directory_name_of_63_bytes_is_usable_64_is_not() {
        assert_eq!(unusable_name(&"a".repeat(MAX_ROLE_NAME)), None);
        assert!(unusable_name(&"a".repeat(MAX_ROLE_NAME + 1)).is_some());
        assert!(unusable_name("").is_some());
        assert!(unusable_name("a\0b").is_some());
    }

    #[test]
    fn a_member_of_a_plain_and_an_mfa_group_requires_mfa_whatever_the_order() {
        let plain = group(1, "readers");
        let secure = Group {
            mfa: true,
            ..group(2, "secure_dbas")
        };
        let m = members(&[
            (&plain, vec![user(10, "bob@contoso.com")]),
            (&secure, vec![user(10, "bob@contoso.com")]),
        ]);
        for order in [
            [plain.clone(), secure.clone()],
            [secure.clone(), plain.clone()],
        ] {
            let steps = run(&order, &m, &[group_role(&plain), group_role(&secure)]);
            assert!(
                steps.contains(&Step::Create {
                    role: "bob@contoso.com".into(),
                    oid: guid(10),
                    kind: PrincipalType::User,
                    mfa: true
                }),
                "{steps:?}"
            );
        }
    }
}
