//! Group sync's decisions (Azure's `pgaadauth.enable_group_sync`): given the group principals,
//! their members as the directory lists them, and the roles as they are, what to change so
//! that every member has its own LOGIN role granted its groups' roles.
//!
//! The sync only ever undoes what it did. It leaves a mark on the roles it touches (the
//! `aad_auth_sync` security label: whether it created the role, and which group roles it
//! granted), and it revokes only grants it made and removes LOGIN only from roles it created.
//! A name that is taken by a role not bound to the member is skipped, never taken over.

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
    pub oid: Guid,
    pub role: String,
}

/// The sync's mark on a role: `created=<yes|no>,groups=<oid> <oid> ...`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mark {
    /// The sync created the role (and so may take its LOGIN away).
    pub created: bool,
    /// The group roles (by object id) the sync granted it.
    pub groups: BTreeSet<Guid>,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups: Vec<String> = self.groups.iter().map(Guid::to_string).collect();
        write!(
            f,
            "created={},groups={}",
            if self.created { "yes" } else { "no" },
            groups.join(" ")
        )
    }
}

impl std::str::FromStr for Mark {
    type Err = String;

    fn from_str(text: &str) -> Result<Mark, String> {
        let (created, groups) = text
            .split_once(',')
            .ok_or("expected created=<yes|no>,groups=<object ids>")?;
        let created = match created {
            "created=yes" => true,
            "created=no" => false,
            _ => return Err("expected created=yes or created=no".into()),
        };
        let groups = groups
            .strip_prefix("groups=")
            .ok_or("expected groups=<object ids separated by spaces>")?
            .split(' ')
            .filter(|g| !g.is_empty())
            .map(|g| {
                g.parse::<Guid>()
                    .map_err(|_| format!("\"{g}\" is not an object id"))
            })
            .collect::<Result<BTreeSet<Guid>, String>>()?;
        Ok(Mark { created, groups })
    }
}

/// A role as it is now: those that are Entra principals or carry the sync's mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    /// The object id and type of its `pgaadauth` label, if any.
    pub principal: Option<(Guid, PrincipalType)>,
    pub mark: Option<Mark>,
    pub login: bool,
    /// The group principals (by object id) whose roles it is a member of.
    pub member_of: BTreeSet<Guid>,
}

/// One change to make, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `CREATE ROLE role LOGIN` and its `pgaadauth` label.
    Create {
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
            Step::Grant { role, group } => Some((role, group, "granted".into())),
            Step::Revoke { role, group } => Some((role, group, "revoked".into())),
            Step::Login { role, on: true } => Some((role, "", "login restored".into())),
            Step::Login { role, on: false } => Some((role, "", "login removed".into())),
            Step::Mark { .. } => None,
            Step::Skip { role, group, why } => Some((role, group, format!("skipped: {why}"))),
        }
    }
}

/// What to change. `members` maps each group's object id to its members (users and service
/// principals; nested groups already flattened into their members by the directory). Every
/// group in `groups` must have an entry: a group whose members could not be read must stop
/// the whole sync before this is called (an outage changes nothing). `roles` are the roles
/// that are Entra principals or carry the sync's mark; `taken` is every role name of the
/// cluster (a new role is never made under a name in use).
pub fn plan(
    groups: &[Group],
    members: &BTreeMap<Guid, Vec<Member>>,
    roles: &[Role],
    taken: &BTreeSet<String>,
) -> Vec<Step> {
    let group_role: BTreeMap<Guid, &str> =
        groups.iter().map(|g| (g.oid, g.role.as_str())).collect();
    let by_name: BTreeMap<&str, &Role> = roles.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut steps = Vec::new();
    // The role each member signs in with, and the groups it should be in.
    let mut wanted: BTreeMap<String, BTreeSet<Guid>> = BTreeMap::new();
    let mut to_create: BTreeMap<String, (Guid, PrincipalType)> = BTreeMap::new();
    let mut sorted: Vec<&Group> = groups.iter().collect();
    sorted.sort_by(|a, b| a.role.cmp(&b.role));
    for group in sorted {
        let mut seen = BTreeSet::new();
        for member in members.get(&group.oid).map(Vec::as_slice).unwrap_or(&[]) {
            if member.kind == PrincipalType::Group || !seen.insert(member.oid) {
                continue;
            }
            let bound = roles
                .iter()
                .filter(|r| r.principal == Some((member.oid, member.kind)))
                .map(|r| r.name.as_str())
                .min();
            let role = match bound {
                Some(name) => name.to_owned(),
                None if member.name.is_empty() || member.name.len() > MAX_ROLE_NAME => {
                    steps.push(Step::Skip {
                        role: member.name.clone(),
                        group: group.role.clone(),
                        why: format!(
                            "the directory name of {} is empty or longer than {MAX_ROLE_NAME} bytes",
                            member.oid
                        ),
                    });
                    continue;
                }
                None if by_name.contains_key(member.name.as_str())
                    || taken.contains(&member.name) =>
                {
                    steps.push(Step::Skip {
                        role: member.name.clone(),
                        group: group.role.clone(),
                        why: format!(
                            "a role of that name exists and is not bound to {} {}",
                            member.kind.as_str(),
                            member.oid
                        ),
                    });
                    continue;
                }
                None => match to_create.get(&member.name) {
                    Some((oid, _)) if *oid != member.oid => {
                        steps.push(Step::Skip {
                            role: member.name.clone(),
                            group: group.role.clone(),
                            why: format!("two members share that name; {} got it", oid),
                        });
                        continue;
                    }
                    _ => {
                        to_create.insert(member.name.clone(), (member.oid, member.kind));
                        member.name.clone()
                    }
                },
            };
            wanted.entry(role).or_default().insert(group.oid);
        }
    }
    let name_of = |oid: &Guid| group_role.get(oid).copied();
    // New roles: created, granted their groups, marked.
    for (role, (oid, kind)) in &to_create {
        steps.push(Step::Create {
            role: role.clone(),
            oid: *oid,
            kind: *kind,
        });
        let groups = wanted.get(role).cloned().unwrap_or_default();
        for g in &groups {
            if let Some(group) = name_of(g) {
                steps.push(Step::Grant {
                    role: role.clone(),
                    group: group.to_owned(),
                });
            }
        }
        steps.push(Step::Mark {
            role: role.clone(),
            mark: Some(Mark {
                created: true,
                groups,
            }),
        });
    }
    // Existing roles: grant what is missing, revoke what the sync granted and is no longer
    // wanted, and give LOGIN back to, or take it from, the roles the sync created.
    let mut existing: Vec<&Role> = roles.iter().collect();
    existing.sort_by(|a, b| a.name.cmp(&b.name));
    for role in existing {
        if to_create.contains_key(&role.name) {
            continue;
        }
        let want = wanted.get(&role.name).cloned().unwrap_or_default();
        let old = role.mark.clone().unwrap_or_default();
        let mut mark = old.clone();
        for g in &want {
            if !role.member_of.contains(g) {
                if let Some(group) = name_of(g) {
                    steps.push(Step::Grant {
                        role: role.name.clone(),
                        group: group.to_owned(),
                    });
                    mark.groups.insert(*g);
                }
            }
        }
        for g in old.groups.difference(&want) {
            if role.member_of.contains(g) {
                if let Some(group) = name_of(g) {
                    steps.push(Step::Revoke {
                        role: role.name.clone(),
                        group: group.to_owned(),
                    });
                }
            }
            mark.groups.remove(g);
        }
        if mark.created && role.login == want.is_empty() {
            steps.push(Step::Login {
                role: role.name.clone(),
                on: !want.is_empty(),
            });
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

    fn group(n: u8, role: &str) -> Group {
        Group {
            oid: guid(n),
            role: role.into(),
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

    fn role(name: &str) -> Role {
        Role {
            name: name.into(),
            principal: None,
            mark: None,
            login: true,
            member_of: BTreeSet::new(),
        }
    }

    fn bound(name: &str, n: u8, kind: PrincipalType) -> Role {
        Role {
            principal: Some((guid(n), kind)),
            ..role(name)
        }
    }

    fn group_role(name: &str, n: u8) -> Role {
        bound(name, n, PrincipalType::Group)
    }

    fn marked(mut r: Role, created: bool, groups: &[u8], member_of: &[u8]) -> Role {
        r.mark = Some(Mark {
            created,
            groups: groups.iter().map(|n| guid(*n)).collect(),
        });
        r.member_of = member_of.iter().map(|n| guid(*n)).collect();
        r
    }

    fn members(list: &[(u8, Vec<Member>)]) -> BTreeMap<Guid, Vec<Member>> {
        list.iter().map(|(n, m)| (guid(*n), m.clone())).collect()
    }

    fn names(roles: &[Role]) -> BTreeSet<String> {
        roles.iter().map(|r| r.name.clone()).collect()
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

    #[test]
    fn each_member_gets_its_own_role_granted_its_groups() {
        let groups = [group(1, "dbas"), group(2, "readers")];
        let m = members(&[
            (1, vec![user(10, "bob@contoso.com"), app(11, "billing-app")]),
            (2, vec![user(10, "bob@contoso.com")]),
        ]);
        let roles = [group_role("dbas", 1), group_role("readers", 2)];
        let steps = plan(&groups, &m, &roles, &names(&roles));
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
        assert!(steps.contains(&Step::Create {
            role: "bob@contoso.com".into(),
            oid: guid(10),
            kind: PrincipalType::User
        }));
        assert!(steps.contains(&Step::Mark {
            role: "bob@contoso.com".into(),
            mark: Some(Mark {
                created: true,
                groups: [guid(1), guid(2)].into()
            })
        }));
    }

    #[test]
    fn a_synced_state_changes_nothing() {
        let groups = [group(1, "dbas")];
        let m = members(&[(1, vec![user(10, "bob@contoso.com")])]);
        let roles = [
            group_role("dbas", 1),
            marked(
                bound("bob@contoso.com", 10, PrincipalType::User),
                true,
                &[1],
                &[1],
            ),
        ];
        assert_eq!(plan(&groups, &m, &roles, &names(&roles)), vec![]);
    }

    #[test]
    fn a_member_who_left_every_group_loses_the_grant_and_login_but_keeps_the_role() {
        let groups = [group(1, "dbas")];
        let m = members(&[(1, vec![])]);
        let roles = [
            group_role("dbas", 1),
            marked(
                bound("bob@contoso.com", 10, PrincipalType::User),
                true,
                &[1],
                &[1],
            ),
        ];
        let steps = plan(&groups, &m, &roles, &names(&roles));
        assert_eq!(
            changes(&steps),
            vec![
                row("bob@contoso.com", "dbas", "revoked"),
                row("bob@contoso.com", "", "login removed"),
            ]
        );
        assert!(!steps.iter().any(|s| matches!(s, Step::Create { .. })));
        assert!(steps.contains(&Step::Mark {
            role: "bob@contoso.com".into(),
            mark: Some(Mark {
                created: true,
                groups: BTreeSet::new()
            })
        }));
    }

    #[test]
    fn a_returning_member_gets_login_back() {
        let groups = [group(1, "dbas")];
        let m = members(&[(1, vec![user(10, "bob@contoso.com")])]);
        let mut bob = marked(
            bound("bob@contoso.com", 10, PrincipalType::User),
            true,
            &[],
            &[],
        );
        bob.login = false;
        let roles = [group_role("dbas", 1), bob];
        assert_eq!(
            changes(&plan(&groups, &m, &roles, &names(&roles))),
            vec![
                row("bob@contoso.com", "dbas", "granted"),
                row("bob@contoso.com", "", "login restored"),
            ]
        );
    }

    #[test]
    fn a_name_taken_by_another_role_is_skipped_never_taken_over() {
        let groups = [group(1, "dbas")];
        let m = members(&[(1, vec![user(10, "ops"), user(11, "carol@contoso.com")])]);
        let roles = [
            group_role("dbas", 1),
            role("ops"),
            bound("carol@contoso.com", 99, PrincipalType::User),
        ];
        let steps = plan(&groups, &m, &roles, &names(&roles));
        assert!(
            steps.iter().all(|s| matches!(s, Step::Skip { .. })),
            "{steps:?}"
        );
        // a role that is neither a principal nor marked (so not among `roles`) holds its name too
        let roles = [group_role("dbas", 1)];
        let taken: BTreeSet<String> = ["ops".to_string(), "carol@contoso.com".to_string()].into();
        let steps = plan(&groups, &m, &roles, &taken);
        assert!(
            steps.iter().all(|s| matches!(s, Step::Skip { .. })),
            "{steps:?}"
        );
        assert_eq!(steps.len(), 2);
    }

    #[test]
    fn an_existing_principal_of_the_member_is_reused_and_never_loses_login() {
        let groups = [group(1, "dbas")];
        let alice = bound("alice", 10, PrincipalType::User);
        let roles = [group_role("dbas", 1), alice];
        let m = members(&[(1, vec![user(10, "alice@contoso.com")])]);
        let steps = plan(&groups, &m, &roles, &names(&roles));
        assert_eq!(changes(&steps), vec![row("alice", "dbas", "granted")]);
        // She leaves: the grant the sync made goes, her login stays (the sync did not create her).
        let alice = marked(bound("alice", 10, PrincipalType::User), false, &[1], &[1]);
        let roles = [group_role("dbas", 1), alice];
        let steps = plan(&groups, &members(&[(1, vec![])]), &roles, &names(&roles));
        assert_eq!(changes(&steps), vec![row("alice", "dbas", "revoked")]);
        assert!(steps.contains(&Step::Mark {
            role: "alice".into(),
            mark: None
        }));
    }

    #[test]
    fn grants_the_sync_did_not_make_are_never_revoked() {
        let groups = [group(1, "dbas")];
        let mut alice = bound("alice", 10, PrincipalType::User);
        alice.member_of = [guid(1)].into();
        let roles = [group_role("dbas", 1), alice];
        assert_eq!(
            plan(&groups, &members(&[(1, vec![])]), &roles, &names(&roles)),
            vec![]
        );
        // and a grant that exists already is not re-made or claimed
        let m = members(&[(1, vec![user(10, "alice@contoso.com")])]);
        assert_eq!(plan(&groups, &m, &roles, &names(&roles)), vec![]);
    }

    #[test]
    fn a_dropped_group_role_releases_its_members() {
        let bob = marked(
            bound("bob@contoso.com", 10, PrincipalType::User),
            true,
            &[1],
            &[],
        );
        let roles = [bob];
        let steps = plan(&[], &BTreeMap::new(), &roles, &names(&roles));
        assert_eq!(
            changes(&steps),
            vec![row("bob@contoso.com", "", "login removed")]
        );
    }

    #[test]
    fn members_are_matched_by_object_id_and_kind_not_by_name() {
        let groups = [group(1, "dbas")];
        // an app whose display name is a user's UPN does not get the user's role
        let roles = [
            group_role("dbas", 1),
            bound("bob@contoso.com", 10, PrincipalType::User),
        ];
        let m = members(&[(1, vec![app(12, "bob@contoso.com")])]);
        let steps = plan(&groups, &m, &roles, &names(&roles));
        assert!(matches!(steps.as_slice(), [Step::Skip { .. }]), "{steps:?}");
    }

    #[test]
    fn nested_groups_duplicates_and_overlong_names() {
        let groups = [group(1, "dbas")];
        let long = "x".repeat(64);
        let m = members(&[(
            1,
            vec![
                Member {
                    oid: guid(5),
                    kind: PrincipalType::Group,
                    name: "nested".into(),
                },
                user(10, "bob@contoso.com"),
                user(10, "bob@contoso.com"),
                user(13, &long),
                user(14, ""),
            ],
        )]);
        let steps = plan(&groups, &m, &[group_role("dbas", 1)], &BTreeSet::new());
        let c = changes(&steps);
        assert!(
            c.contains(&row("bob@contoso.com", "", "created (user)")),
            "{c:?}"
        );
        assert!(
            c.contains(&row("bob@contoso.com", "dbas", "granted")),
            "{c:?}"
        );
        assert_eq!(c.iter().filter(|r| r.2.starts_with("skipped")).count(), 2);
        assert_eq!(
            steps
                .iter()
                .filter(|s| matches!(s, Step::Create { .. }))
                .count(),
            1
        );
    }

    #[test]
    fn two_members_with_one_name_the_first_gets_it() {
        let groups = [group(1, "dbas")];
        let m = members(&[(1, vec![app(20, "worker"), app(21, "worker")])]);
        let steps = plan(&groups, &m, &[group_role("dbas", 1)], &BTreeSet::new());
        assert_eq!(
            steps
                .iter()
                .filter(|s| matches!(s, Step::Create { .. }))
                .count(),
            1
        );
        assert!(steps.iter().any(|s| matches!(s, Step::Skip { .. })));
    }

    #[test]
    fn the_mark_reads_back() {
        let mark = Mark {
            created: true,
            groups: [guid(1), guid(2)].into(),
        };
        assert_eq!(mark.to_string().parse::<Mark>(), Ok(mark));
        assert_eq!("created=no,groups=".parse::<Mark>(), Ok(Mark::default()));
        for bad in [
            "",
            "created=maybe,groups=",
            "created=yes",
            "created=yes,groups=x",
            "groups=,created=yes",
        ] {
            assert!(bad.parse::<Mark>().is_err(), "{bad}");
        }
    }
}
