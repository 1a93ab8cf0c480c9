//! End to end, issue "Every kind of Entra principal Azure supports": users, guests, groups,
//! service principals, user- and system-assigned managed identities, MFA roles, several admins,
//! revocation, and v2 tokens — each signing in over TCP with psql against a real cluster.

mod common;
use common::*;

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Signs `claims` as Entra signs v1 tokens (header with kid and x5t).
fn token(claims: &Value) -> String {
    mint(key(), &header(&key().kid), claims)
}

/// Signs `claims` with a v2 header (kid only, no x5t).
fn token_v2(claims: &Value) -> String {
    mint(
        key(),
        &json!({"typ":"JWT","alg":"RS256","kid":key().kid}),
        claims,
    )
}

fn create_sql(role: &str, oid: &str, kind: &str, admin: bool, mfa: bool) -> String {
    format!(
        "SELECT pgaadauth_create_principal_with_oid({}, '{oid}', '{kind}', {admin}, {mfa})",
        lit(role)
    )
}

/// Creates a principal as the superuser with the given flags.
fn create(c: &Cluster, role: &str, oid: &str, kind: &str, admin: bool, mfa: bool) {
    assert_eq!(
        c.admin(&create_sql(role, oid, kind, admin, mfa)),
        format!("Created role for \"{role}\"")
    );
}

fn update(c: &Cluster, role: &str, oid: &str, kind: &str, admin: bool, mfa: bool) {
    assert_eq!(
        c.admin(&format!(
            "SELECT pgaadauth_update_principal_with_oid({}, '{oid}', '{kind}', {admin}, {mfa})",
            lit(role)
        )),
        format!("Updated role for \"{role}\"")
    );
}

fn listed(c: &Cluster, role: &str) -> bool {
    c.admin("SELECT rolname FROM pgaadauth_list_principals(false)")
        .lines()
        .any(|l| l == role)
}

fn role_exists(c: &Cluster, role: &str) -> bool {
    c.admin(&format!(
        "SELECT count(*) FROM pg_roles WHERE rolname = {}",
        lit(role)
    )) == "1"
}

/// The sign-in is refused with a message containing `needle` that does not echo the token.
fn refused(c: &Cluster, role: &str, token: &str, needle: &str) -> String {
    let err = c
        .sign_in(role, token)
        .expect_err("sign-in should be refused");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains(token), "the refusal echoes the token: {err}");
    err
}

/// Refused because the token's object is not the one `role` is bound to: the message names the
/// token's object id (when given) and never the object id the role is bound to.
fn refused_as_another_object(
    c: &Cluster,
    role: &str,
    token: &str,
    token_oid: Option<&str>,
    bound: &str,
) -> String {
    let phrase = format!(
        "is not the object role \"{}\" is bound to",
        escaped(role.as_bytes())
    );
    let err = refused(c, role, token, &phrase);
    if let Some(token_oid) = token_oid {
        let named = format!("the access token's object id {token_oid} is not");
        assert!(err.contains(&named), "expected {named:?} in: {err}");
    }
    assert!(
        !err.contains(bound),
        "names the bound object id {bound}: {err}"
    );
    err
}

/// Refused because the token does not list the group `role` is bound to, without naming it.
fn refused_outside_the_group(c: &Cluster, role: &str, token: &str, group: &str) {
    let err = refused(
        c,
        role,
        token,
        &format!("the access token does not list the group that role \"{role}\" is bound to"),
    );
    assert!(!err.contains(group), "names the bound group {group}: {err}");
}

fn user_in_groups(oid: &str, upn: &str, groups: &[&str]) -> Value {
    with(Claims::user(TENANT, oid, upn), "groups", json!(groups))
}

fn user_assigned_mirid(name: &str) -> String {
    format!(
        "/subscriptions/{}/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
        new_oid()
    )
}

fn system_assigned_mirid() -> String {
    format!(
        "/subscriptions/{}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
        new_oid()
    )
}

/// psql over TCP as `role` with `token`: the first output line, or the error text.
fn psql_as(c: &Cluster, role: &str, token: &str, sql: &str) -> Result<String, String> {
    let out = c.psql(role, token, sql);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

#[test]
fn group_role_admits_members_of_every_kind() {
    let c = shared();
    let group = new_oid();
    let other_group = new_oid();
    c.principal("db-readers", &group, "group");

    // a user listed in the group signs in as the group role with the user's own token
    let alice = new_oid();
    let t = token(&user_in_groups(
        &alice,
        "alice.group@contoso.com",
        &[&other_group, &group],
    ));
    assert_eq!(c.sign_in("db-readers", &t).unwrap(), "db-readers");

    // a service principal's app token listing the group
    let (sp, sp_app) = (new_oid(), new_oid());
    let claims = with(Claims::app(TENANT, &sp, &sp_app), "groups", json!([group]));
    assert_eq!(
        c.sign_in("db-readers", &token(&claims)).unwrap(),
        "db-readers"
    );

    // a managed identity's token listing the group
    let (mi, mi_client) = (new_oid(), new_oid());
    let claims = with(
        with(
            Claims::app(TENANT, &mi, &mi_client),
            "groups",
            json!([group]),
        ),
        "xms_mirid",
        json!(user_assigned_mirid("reader-mi")),
    );
    assert_eq!(
        c.sign_in("db-readers", &token(&claims)).unwrap(),
        "db-readers"
    );

    // a user not in the group
    let bob = new_oid();
    let t = token(&user_in_groups(&bob, "bob@contoso.com", &[&other_group]));
    refused_outside_the_group(c, "db-readers", &t, &group);
    // a user whose token lists no groups at all
    let t = token(&Claims::user(TENANT, &bob, "bob@contoso.com"));
    refused_outside_the_group(c, "db-readers", &t, &group);
    // the user's own oid being the group's is not membership
    let t = token(&Claims::user(TENANT, &group, "same-oid@contoso.com"));
    refused_outside_the_group(c, "db-readers", &t, &group);

    // group overage: no groups claim, membership would have to come from the directory
    let carol = new_oid();
    let overage = with(
        with(
            Claims::user(TENANT, &carol, "carol@contoso.com"),
            "_claim_names",
            json!({"groups": "src1"}),
        ),
        "_claim_sources",
        json!({"src1": {"endpoint": format!(
            "https://graph.microsoft.com/v1.0/users/{carol}/getMemberObjects"
        )}}),
    );
    refused(c, "db-readers", &token(&overage), "too many");
    let hasgroups = with(
        Claims::user(TENANT, &carol, "carol@contoso.com"),
        "hasgroups",
        json!(true),
    );
    refused(c, "db-readers", &token(&hasgroups), "too many");
    c.assert_no_crash();
}

#[test]
fn service_principal_matches_by_object_id_or_app_id() {
    let c = shared();
    let (oid, appid) = (new_oid(), new_oid());
    c.principal("sp-by-oid", &oid, "service");
    let t = token(&Claims::app(TENANT, &oid, &appid));
    assert_eq!(c.sign_in("sp-by-oid", &t).unwrap(), "sp-by-oid");

    // Azure also binds a service role by the application (client) id
    let (oid2, appid2) = (new_oid(), new_oid());
    c.principal("sp-by-appid", &appid2, "service");
    let t = token(&Claims::app(TENANT, &oid2, &appid2));
    assert_eq!(c.sign_in("sp-by-appid", &t).unwrap(), "sp-by-appid");
    // another application's token is not it
    let t = token(&Claims::app(TENANT, &new_oid(), &new_oid()));
    refused_as_another_object(c, "sp-by-appid", &t, None, &appid2);

    // a user token carrying the service principal's oid
    refused(
        c,
        "sp-by-oid",
        &token(&Claims::user(TENANT, &oid, "sp@contoso.com")),
        "a user token cannot sign in as service role",
    );
}

#[test]
fn managed_identities_sign_in_as_service_roles() {
    let c = shared();

    // user-assigned: appid = client id, oid = principal id
    let (principal_id, client_id) = (new_oid(), new_oid());
    c.principal("mi-user-assigned", &principal_id, "service");
    let claims = with(
        Claims::app(TENANT, &principal_id, &client_id),
        "xms_mirid",
        json!(user_assigned_mirid("orders-api")),
    );
    assert_eq!(
        c.sign_in("mi-user-assigned", &token(&claims)).unwrap(),
        "mi-user-assigned"
    );

    // system-assigned: xms_mirid names the resource it belongs to
    let (vm_principal, vm_client) = (new_oid(), new_oid());
    c.principal("mi-system-assigned", &vm_principal, "service");
    let claims = with(
        Claims::app(TENANT, &vm_principal, &vm_client),
        "xms_mirid",
        json!(system_assigned_mirid()),
    );
    assert_eq!(
        c.sign_in("mi-system-assigned", &token(&claims)).unwrap(),
        "mi-system-assigned"
    );

    // no idtyp at all: app-only by shape (no scp, no upn, has appid)
    let (bare_principal, bare_client) = (new_oid(), new_oid());
    c.principal("mi-no-idtyp", &bare_principal, "service");
    let claims = with(
        with(
            Claims::app(TENANT, &bare_principal, &bare_client),
            "idtyp",
            Value::Null,
        ),
        "xms_mirid",
        json!(user_assigned_mirid("legacy")),
    );
    assert!(claims.get("idtyp").is_none() && claims.get("scp").is_none());
    assert_eq!(
        c.sign_in("mi-no-idtyp", &token(&claims)).unwrap(),
        "mi-no-idtyp"
    );

    // a managed identity's token is not another identity's
    let claims = with(
        Claims::app(TENANT, &new_oid(), &new_oid()),
        "xms_mirid",
        json!(user_assigned_mirid("intruder")),
    );
    refused_as_another_object(c, "mi-user-assigned", &token(&claims), None, &principal_id);
    c.assert_no_crash();
}

#[test]
fn guests_and_odd_names_have_a_full_lifecycle() {
    let c = shared();
    for name in [
        "dana_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "Guest With Spaces AND Capitals",
        "Fergus O'Hara",
        "Quoted \"Nick\" Guest",
    ] {
        let oid = new_oid();
        c.principal(name, &oid, "user");
        let old = token(&Claims::user(TENANT, &oid, name));
        assert_eq!(c.sign_in(name, &old).unwrap(), name, "sign in as {name}");
        assert!(listed(c, name), "{name} is not listed");

        let new = new_oid();
        update(c, name, &new, "user", false, false);
        refused_as_another_object(c, name, &old, Some(&oid), &new);
        let fresh = token(&Claims::user(TENANT, &new, name));
        assert_eq!(c.sign_in(name, &fresh).unwrap(), name, "re-bound {name}");

        assert_eq!(
            c.admin(&format!("SELECT pgaadauth_drop_principal({})", lit(name))),
            format!("Dropped role for \"{name}\"")
        );
        assert!(!listed(c, name), "{name} still listed after drop");
        assert!(!role_exists(c, name), "{name} still exists after drop");
        assert!(
            c.sign_in(name, &fresh).is_err(),
            "{name} signs in after drop"
        );
    }
}

#[test]
fn mfa_roles_require_mfa() {
    let c = shared();
    let oid = new_oid();
    create(c, "mfa-user@contoso.com", &oid, "user", false, true);
    let with_mfa = with(
        Claims::user(TENANT, &oid, "mfa-user@contoso.com"),
        "amr",
        json!(["pwd", "mfa"]),
    );
    assert_eq!(
        c.sign_in("mfa-user@contoso.com", &token(&with_mfa))
            .unwrap(),
        "mfa-user@contoso.com"
    );
    let pwd_only = with(
        Claims::user(TENANT, &oid, "mfa-user@contoso.com"),
        "amr",
        json!(["pwd"]),
    );
    refused(
        c,
        "mfa-user@contoso.com",
        &token(&pwd_only),
        "requires multi-factor authentication",
    );

    // a group role with isMfa
    let group = new_oid();
    create(c, "mfa-group", &group, "group", false, true);
    let member = new_oid();
    let with_mfa = with(
        user_in_groups(&member, "member@contoso.com", &[&group]),
        "amr",
        json!(["rsa", "mfa"]),
    );
    assert_eq!(
        c.sign_in("mfa-group", &token(&with_mfa)).unwrap(),
        "mfa-group"
    );
    let pwd_only = with(
        user_in_groups(&member, "member@contoso.com", &[&group]),
        "amr",
        json!(["pwd"]),
    );
    refused(
        c,
        "mfa-group",
        &token(&pwd_only),
        "requires multi-factor authentication",
    );
}

#[test]
fn several_admins_manage_principals() {
    let c = shared();
    let (a1, a2, g, member, plain) = (new_oid(), new_oid(), new_oid(), new_oid(), new_oid());
    create(c, "admin-one@contoso.com", &a1, "user", true, false);
    create(c, "admin-two@contoso.com", &a2, "user", true, false);
    create(c, "dba-group", &g, "group", true, false);
    create(c, "not-admin@contoso.com", &plain, "user", false, false);
    let admins = [
        (
            "admin-one@contoso.com",
            token(&Claims::user(TENANT, &a1, "admin-one@contoso.com")),
        ),
        (
            "admin-two@contoso.com",
            token(&Claims::user(TENANT, &a2, "admin-two@contoso.com")),
        ),
        (
            "dba-group",
            token(&user_in_groups(&member, "dba@contoso.com", &[&g])),
        ),
    ];

    let can_manage = |role: &str, tok: &str, tag: &str| {
        let made = format!("made-by-{tag}");
        assert_eq!(
            psql_as(
                c,
                role,
                tok,
                &create_sql(&made, &new_oid(), "user", false, false)
            ),
            Ok(format!("Created role for \"{made}\"")),
            "{role} creates a principal"
        );
        assert!(listed(c, &made));
        assert_eq!(
            psql_as(
                c,
                role,
                tok,
                &format!("SELECT pgaadauth_drop_principal({})", lit(&made))
            ),
            Ok(format!("Dropped role for \"{made}\"")),
            "{role} drops a principal"
        );
        assert!(!role_exists(c, &made));
    };
    for (i, (role, tok)) in admins.iter().enumerate() {
        can_manage(role, tok, &format!("{i}-a"));
    }

    // a principal that is not an admin
    let plain_token = token(&Claims::user(TENANT, &plain, "not-admin@contoso.com"));
    assert_eq!(
        c.sign_in("not-admin@contoso.com", &plain_token).unwrap(),
        "not-admin@contoso.com"
    );
    let err = psql_as(
        c,
        "not-admin@contoso.com",
        &plain_token,
        &create_sql("made-by-plain", &new_oid(), "user", false, false),
    )
    .unwrap_err();
    assert!(
        err.contains("permission denied for function pgaadauth_create_principal_with_oid"),
        "{err}"
    );
    assert!(!role_exists(c, "made-by-plain"));
    create(c, "victim-of-plain", &new_oid(), "user", false, false);
    let err = psql_as(
        c,
        "not-admin@contoso.com",
        &plain_token,
        "SELECT pgaadauth_drop_principal('victim-of-plain')",
    )
    .unwrap_err();
    assert!(
        err.contains("permission denied for function pgaadauth_drop_principal"),
        "{err}"
    );
    assert!(role_exists(c, "victim-of-plain"));

    // demote the first admin: it can no longer manage principals, the others still can
    update(c, "admin-one@contoso.com", &a1, "user", false, false);
    let (role, tok) = &admins[0];
    assert_eq!(c.sign_in(role, tok).unwrap(), *role, "still signs in");
    let err = psql_as(
        c,
        role,
        tok,
        &create_sql("made-by-demoted", &new_oid(), "user", false, false),
    )
    .unwrap_err();
    assert!(
        err.contains("permission denied for function pgaadauth_create_principal_with_oid"),
        "{err}"
    );
    assert!(!role_exists(c, "made-by-demoted"));
    let err = psql_as(
        c,
        role,
        tok,
        "SELECT pgaadauth_drop_principal('victim-of-plain')",
    )
    .unwrap_err();
    assert!(
        err.contains("permission denied for function pgaadauth_drop_principal"),
        "{err}"
    );
    for (i, (role, tok)) in admins.iter().enumerate().skip(1) {
        can_manage(role, tok, &format!("{i}-b"));
    }
    c.assert_no_crash();
}

#[test]
fn revoked_and_recreated_principals() {
    let c = shared();
    // dropped: the still-valid token is refused at the next sign-in
    let oid = new_oid();
    c.principal("leaver@contoso.com", &oid, "user");
    let t = token(&Claims::user(TENANT, &oid, "leaver@contoso.com"));
    assert_eq!(
        c.sign_in("leaver@contoso.com", &t).unwrap(),
        "leaver@contoso.com"
    );
    assert_eq!(
        c.admin("SELECT pgaadauth_drop_principal('leaver@contoso.com')"),
        "Dropped role for \"leaver@contoso.com\""
    );
    assert!(c.sign_in("leaver@contoso.com", &t).is_err());

    // deleted and re-created in Entra: same UPN, new oid
    let (old_oid, new_oid_) = (new_oid(), new_oid());
    c.principal("eve@contoso.com", &old_oid, "user");
    let old = token(&Claims::user(TENANT, &old_oid, "eve@contoso.com"));
    let new = token(&Claims::user(TENANT, &new_oid_, "eve@contoso.com"));
    assert_eq!(
        c.sign_in("eve@contoso.com", &old).unwrap(),
        "eve@contoso.com"
    );
    refused_as_another_object(c, "eve@contoso.com", &new, Some(&new_oid_), &old_oid);
    update(c, "eve@contoso.com", &new_oid_, "user", false, false);
    assert_eq!(
        c.sign_in("eve@contoso.com", &new).unwrap(),
        "eve@contoso.com"
    );
    refused_as_another_object(c, "eve@contoso.com", &old, Some(&old_oid), &new_oid_);
}

#[test]
fn v2_tokens_for_group_and_user_roles() {
    let c = shared();
    let user = new_oid();
    c.principal("v2-person@contoso.com", &user, "user");
    let claims = Claims::user_v2(TENANT, &user, "v2-person@contoso.com");
    assert_eq!(
        c.sign_in("v2-person@contoso.com", &token_v2(&claims))
            .unwrap(),
        "v2-person@contoso.com"
    );

    let group = new_oid();
    c.principal("v2-group", &group, "group");
    let member = new_oid();
    let claims = with(
        Claims::user_v2(TENANT, &member, "v2-member@contoso.com"),
        "groups",
        json!([group]),
    );
    assert_eq!(
        c.sign_in("v2-group", &token_v2(&claims)).unwrap(),
        "v2-group"
    );
    let outsider = with(
        Claims::user_v2(TENANT, &member, "v2-member@contoso.com"),
        "groups",
        json!([new_oid()]),
    );
    refused_outside_the_group(c, "v2-group", &token_v2(&outsider), &group);
}
