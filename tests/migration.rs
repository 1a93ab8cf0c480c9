//! End to end, issue 11 item 4 ("Migration from Azure"): the roles of a server that stands in
//! for Azure Database for PostgreSQL Flexible Server, dumped with `pg_dumpall` and restored with
//! psql into a fresh server, keep every Entra principal working. docs/migrating-from-azure.md
//! describes the same steps for a DBA.
//!
//! The source has aad_auth preloaded and created, and holds what an Azure server holds: an Entra
//! admin (made "in the portal", here by the superuser), principals the admin made with Azure's
//! function (a user, a guest, a managed identity, a group, an MFA user), Azure's "server admin"
//! (an ordinary role with a password and CREATEROLE, CREATEDB, a member of `azure_pg_admin`), an
//! ordinary group role granted to an Entra user, and a database with table privileges.
//!
//! Clusters: the source (dumped once, then stopped); a target that preloads aad_auth, restored
//! from `pg_dumpall --roles-only` and then the database from `pg_dump --create`; and a server that
//! does not preload it, restored from a full `pg_dumpall --no-role-passwords` (as Azure allows)
//! and then put right.

mod common;

use common::*;
use std::path::PathBuf;
use std::sync::OnceLock;

const ALICE: &str = "alice@contoso.com";
const DBA: &str = "dba@contoso.com";
const API: &str = "orders-api";
const READERS: &str = "DB Readers";
const MFA: &str = "mfa-user@contoso.com";
const GUEST: &str = "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com";
/// Azure's "server admin": the password login made with the server.
const PGADMIN: &str = "pgadmin";
const PGADMIN_PASSWORD: &str = "Server-admin-pw1";
/// The number of roles with a pgaadauth label on the source.
const LABELLED: usize = 6;

/// What the source held, and its dumps.
struct Source {
    alice: String,
    dba: String,
    api: String,
    api_app: String,
    readers: String,
    mfa: String,
    guest: String,
    /// `pg_dumpall --roles-only`, as a superuser takes it (passwords included).
    roles: String,
    /// `pg_dumpall --no-role-passwords`: every database too, without passwords, as on Azure.
    full: String,
    /// `pg_dump --create appdb`.
    appdb: String,
    labels: String,
    members: String,
    attributes: String,
    principals: String,
}

/// Every pgaadauth label, role by role.
const LABELS: &str = "SELECT r.rolname || ' ' || l.label FROM pg_catalog.pg_shseclabel l \
     JOIN pg_catalog.pg_roles r ON r.oid = l.objoid \
     WHERE l.provider = 'pgaadauth' AND l.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass \
     ORDER BY r.rolname";
/// Every membership in a role that is not predefined (grantors left out).
const MEMBERS: &str = "SELECT g.rolname || ' > ' || m.rolname FROM pg_catalog.pg_auth_members a \
     JOIN pg_catalog.pg_roles g ON g.oid = a.roleid JOIN pg_catalog.pg_roles m ON m.oid = a.member \
     WHERE g.rolname !~ '^pg_' ORDER BY 1";
/// Every role's attributes and password (the stored secret, or `-`).
const ATTRIBUTES: &str = "SELECT rolname || ' ' || concat_ws(',', rolsuper, rolinherit, \
     rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, \
     coalesce(rolpassword, '-')) FROM pg_catalog.pg_authid WHERE rolname !~ '^pg_' ORDER BY 1";
const PRINCIPALS: &str = "SELECT rolname || ' ' || principaltype || ' ' || objectid || ' ' || \
     tenantid || ' ' || ismfa || ' ' || isadmin FROM pgaadauth_list_principals(false) ORDER BY 1";

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn create_sql(role: &str, oid: &str, kind: &str, admin: bool, mfa: bool) -> String {
    format!(
        "SELECT pgaadauth_create_principal_with_oid({}, '{oid}', '{kind}', {admin}, {mfa})",
        lit(role)
    )
}

fn token(claims: &Value) -> String {
    mint(key(), &header(&key().kid), claims)
}

fn source() -> &'static Source {
    static SOURCE: OnceLock<Source> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let c = Cluster::start(Setup::default());
        c.admin("CREATE EXTENSION aad_auth");
        let s = Source {
            alice: new_oid(),
            dba: new_oid(),
            api: new_oid(),
            api_app: new_oid(),
            readers: new_oid(),
            mfa: new_oid(),
            guest: new_oid(),
            roles: String::new(),
            full: String::new(),
            appdb: String::new(),
            labels: String::new(),
            members: String::new(),
            attributes: String::new(),
            principals: String::new(),
        };
        // The Entra admin, as the portal makes it.
        assert_eq!(
            c.admin(&create_sql(DBA, &s.dba, "user", true, false)),
            format!("Created role for \"{DBA}\"")
        );
        // Azure's server admin: a password login with CREATEROLE and CREATEDB in azure_pg_admin.
        c.admin(&format!(
            "CREATE ROLE {PGADMIN} LOGIN CREATEROLE CREATEDB PASSWORD '{PGADMIN_PASSWORD}'; \
             GRANT azure_pg_admin TO {PGADMIN}"
        ));
        // The admin makes the other principals, signed in with a token.
        let dba_token = user_token(&s.dba, DBA);
        for (role, oid, kind, mfa) in [
            (ALICE, &s.alice, "user", false),
            (GUEST, &s.guest, "user", false),
            (API, &s.api, "service", false),
            (READERS, &s.readers, "group", false),
            (MFA, &s.mfa, "user", true),
        ] {
            assert_eq!(
                c.psql_with(
                    DBA,
                    &dba_token,
                    "",
                    &[],
                    &create_sql(role, oid, kind, false, mfa)
                ),
                Ok(format!("Created role for \"{role}\"")),
                "the admin creates {role}"
            );
        }
        // Ordinary roles and grants, made by the server admin with its password.
        let as_pgadmin = |db: &str, sql: &str| {
            c.psql_with(PGADMIN, PGADMIN_PASSWORD, &format!("dbname={db}"), &[], sql)
                .unwrap_or_else(|e| panic!("{PGADMIN}: {sql}: {e}"))
        };
        as_pgadmin(
            "postgres",
            &format!("CREATE ROLE app_readers NOLOGIN; GRANT app_readers TO \"{ALICE}\""),
        );
        as_pgadmin("postgres", "CREATE DATABASE appdb");
        as_pgadmin(
            "appdb",
            &format!(
                "CREATE TABLE orders (id int PRIMARY KEY, item text); \
                 INSERT INTO orders VALUES (1, 'tea'), (2, 'milk'); \
                 GRANT SELECT ON orders TO app_readers, \"{READERS}\", \"{GUEST}\"; \
                 GRANT SELECT, INSERT ON orders TO \"{API}\""
            ),
        );
        let roles = c.dump("pg_dumpall", &["--roles-only"]);
        let full = c.dump("pg_dumpall", &["--no-role-passwords"]);
        let appdb = c.dump("pg_dump", &["--create", "appdb"]);
        for (name, dump) in [("roles-only", &roles), ("full", &full)] {
            assert_eq!(
                dump.matches("\nSECURITY LABEL FOR pgaadauth ON ROLE ")
                    .count(),
                LABELLED,
                "the {name} dump carries every label:\n{dump}"
            );
        }
        assert!(roles.contains("SCRAM-SHA-256$"), "{roles}");
        assert!(!full.contains("SCRAM-SHA-256$"), "{full}");
        if std::env::var_os("AAD_TEST_SHOW_DUMP").is_some() {
            eprintln!(
                "---- pg_dumpall --roles-only\n{roles}\n---- pg_dump --create appdb\n{appdb}"
            );
        }
        let labels = c.admin(LABELS);
        assert_eq!(labels.lines().count(), LABELLED, "{labels}");
        Source {
            roles,
            full,
            appdb,
            labels,
            members: c.admin(MEMBERS),
            attributes: c.admin(ATTRIBUTES),
            principals: c.admin(PRINCIPALS),
            ..s
        }
        // the source stops here
    })
}

/// Writes `text` to `name` in the cluster's directory, as a DBA copies a dump over.
fn file(c: &Cluster, name: &str, text: &str) -> PathBuf {
    let path = c.dir.join(name);
    std::fs::write(&path, text).expect("write the dump");
    path
}

/// Signs in as `role` with `password` and runs `sql` in `db`.
fn run(c: &Cluster, role: &str, password: &str, db: &str, sql: &str) -> Result<String, String> {
    c.psql_with(role, password, &format!("dbname={db}"), &[], sql)
}

fn refused(c: &Cluster, role: &str, password: &str, needle: &str) {
    let err = c
        .sign_in(role, password)
        .expect_err(&format!("{role} signed in with a wrong credential"));
    assert!(
        err.contains(needle),
        "{role}: expected {needle:?} in: {err}"
    );
}

fn member_token(s: &Source) -> String {
    token(&with(
        Claims::user(TENANT, &new_oid(), "carol@contoso.com"),
        "groups",
        json!([s.readers]),
    ))
}

fn mfa_token(s: &Source, amr: Value) -> String {
    token(&with(Claims::user(TENANT, &s.mfa, MFA), "amr", amr))
}

/// Every Entra principal of the source signs in with a token for its object id, and only so.
fn principals_sign_in(c: &Cluster, s: &Source) {
    for (role, password) in [
        (ALICE, user_token(&s.alice, ALICE)),
        (DBA, user_token(&s.dba, DBA)),
        (GUEST, user_token(&s.guest, GUEST)),
        (API, app_token(&s.api, &s.api_app)),
        (READERS, member_token(s)),
        (MFA, mfa_token(s, json!(["pwd", "mfa"]))),
    ] {
        assert_eq!(c.sign_in(role, &password), Ok(role.to_owned()), "{role}");
    }
    refused(
        c,
        MFA,
        &mfa_token(s, json!(["pwd"])),
        "requires multi-factor authentication",
    );
    // a token for another object, an app token for a user role, a user token for the service
    // role, a token outside the group, a non-token
    refused(
        c,
        ALICE,
        &user_token(&s.guest, GUEST),
        "is not the object role",
    );
    refused(
        c,
        ALICE,
        &app_token(&s.api, &s.api_app),
        "Service Principals cannot sign in as user role",
    );
    refused(
        c,
        API,
        &user_token(&s.api, "someone@contoso.com"),
        "a user token cannot sign in as service role",
    );
    refused(
        c,
        READERS,
        &token(&with(
            Claims::user(TENANT, &new_oid(), "dave@contoso.com"),
            "groups",
            json!([new_oid()]),
        )),
        "does not list the group",
    );
    refused(
        c,
        DBA,
        "not a token",
        "not a valid Microsoft Entra ID access token",
    );
}

/// The roles-only dump restored into a fresh server that preloads aad_auth: every principal signs
/// in before anything else is done; `CREATE EXTENSION aad_auth` adopts the restored
/// `azure_pg_admin` once Azure's server admin is no longer a member; the admin manages
/// principals; then the database arrives with its privileges.
#[test]
fn roles_only_dump_restored_into_a_preloaded_server() {
    let s = source();
    let c = Cluster::start(Setup::default());
    let errors = c.restore(&file(&c, "roles.sql", &s.roles), "postgres");
    assert_eq!(
        errors,
        ["role \"postgres\" already exists"],
        "the only error is the superuser the target already has"
    );
    assert_eq!(c.admin(LABELS), s.labels, "labels restored as they were");
    assert_eq!(c.admin(MEMBERS), s.members, "memberships restored");
    assert_eq!(
        c.admin(ATTRIBUTES),
        s.attributes,
        "attributes and passwords restored"
    );
    assert_eq!(
        c.admin(
            "SELECT count(*) FROM pg_authid a JOIN pg_shseclabel l ON l.objoid = a.oid \
             AND l.provider = 'pgaadauth' WHERE a.rolpassword IS NOT NULL"
        ),
        "0",
        "no labelled role has a password"
    );

    // Sign-in needs only the preloaded library: before CREATE EXTENSION.
    principals_sign_in(&c, s);
    assert_eq!(c.sign_in(PGADMIN, PGADMIN_PASSWORD), Ok(PGADMIN.to_owned()));
    refused(
        &c,
        PGADMIN,
        "wrong-password",
        "password authentication failed",
    );
    // Managing principals needs the extension: until then an admin's azure_pg_admin is no power.
    // (A role the admin made itself, which PostgreSQL 16 and later let it label.)
    let err = run(
        &c,
        DBA,
        &user_token(&s.dba, DBA),
        "postgres",
        &format!(
            "CREATE ROLE made_by_dba; \
             SECURITY LABEL FOR pgaadauth ON ROLE made_by_dba IS 'aadauth,oid={},type=user'",
            new_oid()
        ),
    )
    .expect_err("an admin labelled a role before CREATE EXTENSION");
    assert!(
        err.contains("permission denied to set or remove a pgaadauth label"),
        "{err}"
    );

    // Azure's server admin is a member of azure_pg_admin but no Entra admin: not adopted.
    let err = c
        .try_admin_verbose("CREATE EXTENSION aad_auth")
        .expect_err("azure_pg_admin adopted with an ordinary role in it");
    assert!(
        err.contains("55000")
            && err.contains(
                "role \"azure_pg_admin\" already exists and is not one aad_auth can adopt"
            )
            && err.contains("Role pgadmin is a member of it"),
        "{err}"
    );
    c.admin(&format!("REVOKE azure_pg_admin FROM {PGADMIN}"));
    c.admin("CREATE EXTENSION aad_auth");
    assert_eq!(
        c.admin(&format!(
            "SELECT pg_has_role({}, 'azure_pg_admin', 'MEMBER')",
            lit(DBA)
        )),
        "t"
    );
    assert_eq!(
        c.admin(PRINCIPALS),
        s.principals,
        "the same principals are listed"
    );

    // The admin manages principals on the new server.
    let dba = user_token(&s.dba, DBA);
    let (made, made_oid) = ("made-on-target@contoso.com", new_oid());
    assert_eq!(
        run(
            &c,
            DBA,
            &dba,
            "postgres",
            &create_sql(made, &made_oid, "user", false, false)
        ),
        Ok(format!("Created role for \"{made}\""))
    );
    assert_eq!(
        c.sign_in(made, &user_token(&made_oid, made)),
        Ok(made.to_owned())
    );
    // Rebinding (a guest deleted and invited again gets a new object id).
    let new_guest = new_oid();
    let rebind = |role: &str, oid: &str| {
        run(
            &c,
            DBA,
            &dba,
            "postgres",
            &format!(
                "SELECT pgaadauth_update_principal_with_oid({}, '{oid}', 'user', false, false)",
                lit(role)
            ),
        )
    };
    assert_eq!(
        rebind(GUEST, &new_guest),
        Ok(format!("Updated role for \"{GUEST}\""))
    );
    refused(
        &c,
        GUEST,
        &user_token(&s.guest, GUEST),
        "is not the object role",
    );
    assert_eq!(
        c.sign_in(GUEST, &user_token(&new_guest, GUEST)),
        Ok(GUEST.to_owned())
    );
    // Unlike on Azure, an admin does not rebind a role that has the privileges of a role the
    // admin lacks (README, "SQL functions"): alice is in app_readers, the admin is not.
    let err = rebind(ALICE, &new_oid()).expect_err("the admin took over a member of app_readers");
    assert!(
        err.contains("has the privileges of role \"app_readers\", which you do not have"),
        "{err}"
    );

    // Then the database, with its privileges on the restored roles.
    let errors = c.restore(&file(&c, "appdb.sql", &s.appdb), "postgres");
    assert!(errors.is_empty(), "{errors:?}");
    let alice = user_token(&s.alice, ALICE);
    let count = "SELECT count(*) FROM orders";
    assert_eq!(
        run(&c, ALICE, &alice, "appdb", count),
        Ok("2".into()),
        "via app_readers"
    );
    assert_eq!(
        run(&c, READERS, &member_token(s), "appdb", count),
        Ok("2".into())
    );
    assert_eq!(
        run(&c, GUEST, &user_token(&new_guest, GUEST), "appdb", count),
        Ok("2".into())
    );
    let api = app_token(&s.api, &s.api_app);
    assert_eq!(
        run(
            &c,
            API,
            &api,
            "appdb",
            "WITH i AS (INSERT INTO orders VALUES (3, 'jam') RETURNING id) SELECT id FROM i"
        ),
        Ok("3".into())
    );
    let err = run(&c, MFA, &mfa_token(s, json!(["mfa"])), "appdb", count)
        .expect_err("a role without a grant read the table");
    assert!(err.contains("permission denied for table orders"), "{err}");
    assert_eq!(
        run(
            &c,
            PGADMIN,
            PGADMIN_PASSWORD,
            "appdb",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'"
        ),
        Ok(PGADMIN.into())
    );
    c.assert_no_crash();
}

/// A full `pg_dumpall --no-role-passwords` restored into a server that does not preload aad_auth:
/// every SECURITY LABEL statement fails, the Entra roles arrive as ordinary roles without
/// passwords, and the `trust` lines admit them with no credential at all. Putting it right:
/// preload, restart, run the dump's SECURITY LABEL statements again, CREATE EXTENSION.
#[test]
fn full_dump_into_a_server_without_aad_auth_loses_the_labels() {
    let s = source();
    let c = Cluster::start(Setup {
        preload: false,
        ..Setup::default()
    });
    let dump = file(&c, "all.sql", &s.full);
    let mut errors = c.restore(&dump, "postgres");
    errors.sort();
    let mut expected = vec!["role \"postgres\" already exists".to_owned()];
    expected.extend(std::iter::repeat_n(
        "security label provider \"pgaadauth\" is not loaded".to_owned(),
        LABELLED,
    ));
    expected.push("aad_auth must be loaded via shared_preload_libraries".into());
    expected.push("extension \"aad_auth\" does not exist".into());
    expected.sort();
    assert_eq!(errors, expected, "what psql prints");
    assert_eq!(c.admin(LABELS), "", "no label arrived");
    assert_eq!(c.admin(MEMBERS), s.members, "roles and memberships arrived");
    assert!(!c.log().contains("aad_auth: governs"), "{}", c.log());
    // The CAUTION: a trust line without aad_auth admits anyone, with any password.
    assert_eq!(c.sign_in(ALICE, "not a token"), Ok(ALICE.to_owned()));
    assert_eq!(c.sign_in(DBA, ""), Ok(DBA.to_owned()));

    // Putting it right.
    c.admin("ALTER SYSTEM SET shared_preload_libraries = 'aad_auth'");
    c.restart();
    assert!(c.log().contains("aad_auth: governs"), "{}", c.log());
    let labels: String = s
        .full
        .lines()
        .filter(|l| l.starts_with("SECURITY LABEL FOR pgaadauth ON ROLE "))
        .map(|l| format!("{l}\n"))
        .collect();
    let errors = c.restore(&file(&c, "labels.sql", &labels), "postgres");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(c.admin(LABELS), s.labels);
    c.admin(&format!("REVOKE azure_pg_admin FROM {PGADMIN}"));
    c.admin("CREATE EXTENSION aad_auth");
    assert_eq!(c.admin(PRINCIPALS), s.principals);

    refused(
        &c,
        ALICE,
        "not a token",
        "not a valid Microsoft Entra ID access token",
    );
    principals_sign_in(&c, s);
    assert_eq!(
        run(
            &c,
            ALICE,
            &user_token(&s.alice, ALICE),
            "appdb",
            "SELECT count(*) FROM orders"
        ),
        Ok("2".into())
    );
    // --no-role-passwords: the server admin has no password until one is set.
    assert_eq!(
        c.admin(&format!(
            "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = '{PGADMIN}'"
        )),
        "t"
    );
    refused(
        &c,
        PGADMIN,
        PGADMIN_PASSWORD,
        "password authentication failed",
    );
    c.admin(&format!(
        "ALTER ROLE {PGADMIN} PASSWORD '{PGADMIN_PASSWORD}'"
    ));
    assert_eq!(c.sign_in(PGADMIN, PGADMIN_PASSWORD), Ok(PGADMIN.to_owned()));
    c.assert_no_crash();
}
