//! End to end: Microsoft's own SQL for Microsoft Entra principals on Azure Database for PostgreSQL
//! Flexible Server, run unchanged. The scripts are in tests/azure/ (each names, at its top, the
//! Microsoft page or repository every statement comes from); this file runs them with psql
//! (`-v ON_ERROR_STOP=1 -f`), byte for byte as checked in, once as the superuser over the unix
//! socket and once as a Microsoft Entra admin signed in with a token (Microsoft's pages say an
//! Entra admin runs them), then signs in as every principal they made, with a token for its object
//! id, and reads back what `pgaadauth_list_principals` and the `pgaadauth` labels say.
//!
//! `pgaadauth_create_principal` resolves names through Microsoft Graph: a stand-in on loopback
//! answers the client-credentials token request and Graph's `users/{upn}`,
//! `groups?$filter=displayName eq '...'` and `servicePrincipals?$filter=...` look-ups (as in
//! tests/directory.rs), and, for group sync, `groups/{id}/transitiveMembers`.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Instant;

const CLIENT_ID: &str = "9a1c7a2e-0b6f-4c55-8e1d-3c2b1a0f9e8d";
const SECRET: &str = "s3cret-client-value";
const GRAPH_TOKEN: &str = "graph-access-token-value";

// The object ids written in tests/azure/*.sql (see the note at the top of manage_entra_roles.sql).
const MARY: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000001";
const ADMIN_DOMAIN: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000002";
const USER_DOMAIN: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000003";
const GUEST: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000004";
/// The user-assigned managed identity's service principal, and its client id.
const UAMI: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000005";
const UAMI_CLIENT: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000105";
const PROD_GROUP: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000006";
const ACCOUNTING: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000007";
const MY_IDENTITY_OLD: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000008";
const MY_IDENTITY_NEW: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000009";
const SC_USER: &str = "7c0a1d2e-3f4b-4a5c-8d6e-00000000000a";
const MFA_USER: &str = "7c0a1d2e-3f4b-4a5c-8d6e-00000000000b";
/// The client id (appId) my-app-identity is bound to.
const APP_CLIENT: &str = "7c0a1d2e-3f4b-4a5c-8d6e-00000000000c";
const ACCOUNTING_READERS: &str = "7c0a1d2e-3f4b-4a5c-8d6e-00000000000d";
const EXISTING_ROLE: &str = "7c0a1d2e-3f4b-4a5c-8d6e-00000000000e";
const EXISTING_ADMIN: &str = "7c0a1d2e-3f4b-4a5c-8d6e-00000000000f";
const EXISTING_GROUP: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000010";
const EXISTING_APP: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000011";
/// The Entra admin that runs the scripts in the second pass (made as the portal makes one).
const DBA: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000012";
const DBA_NAME: &str = "dba@contoso.com";
// Group sync (group_sync.sql).
const DB_READERS: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000021";
const BOB: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000022";
const BILLING: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000023";
const BILLING_APPID: &str = "7c0a1d2e-3f4b-4a5c-8d6e-000000000024";

const GUEST_UPN: &str = "mary_fabrikam.com#EXT#@contoso.onmicrosoft.com";
const EXISTING_PASSWORD: &str = "existing-role-password";

/// The directory as the Graph stand-in knows it.
const USERS: &[(&str, &str)] = &[
    ("mary@contoso.com", MARY),
    ("user@domain.com", USER_DOMAIN),
    ("admin@domain.com", ADMIN_DOMAIN),
    (GUEST_UPN, GUEST),
    ("mfa.user@contoso.com", MFA_USER),
];
const GROUPS: &[(&str, &str)] = &[
    ("Prod DB Readonly", PROD_GROUP),
    ("Database Readers", DB_READERS),
];
const SERVICE_PRINCIPALS: &[(&str, &str)] = &[("my-ua-managed-id", UAMI)];

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/azure")
        .join(name)
}

/// A group's transitive members, in Graph's shape.
fn members(group: &str) -> Option<Value> {
    let bob = json!({"@odata.type": "#microsoft.graph.user", "id": BOB,
        "userPrincipalName": "bob@contoso.com", "displayName": "Bob"});
    let billing = json!({"@odata.type": "#microsoft.graph.servicePrincipal", "id": BILLING,
        "displayName": "billing-app", "appId": BILLING_APPID, "servicePrincipalType": "Application"});
    match group {
        DB_READERS => Some(json!({ "value": [bob, billing] })),
        PROD_GROUP => Some(json!({ "value": [bob] })),
        _ => None,
    }
}

/// Microsoft Graph (and the token endpoint of Entra ID) as far as these scripts need it.
fn graph(request: &Request) -> Reply {
    let json = |status, v: Value| Reply::Respond(status, v.to_string());
    let path = request.target.split('?').next().unwrap_or("");
    if let Some(reply) = graph_token_or_refusal(request, CLIENT_ID, SECRET, GRAPH_TOKEN) {
        return reply;
    }
    let named = |items: &[(&str, &str)]| {
        let name = filtered_name(&request.target);
        let value: Vec<Value> = items
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(n, id)| json!({"id": id, "displayName": n}))
            .collect();
        json(200, json!({ "value": value }))
    };
    let not_found = || json(404, json!({"error":{"code":"Request_ResourceNotFound"}}));
    match (request.method.as_str(), path) {
        ("GET", "/v1.0/groups") => named(GROUPS),
        ("GET", "/v1.0/servicePrincipals") => named(SERVICE_PRINCIPALS),
        ("GET", p) if p.starts_with("/v1.0/users/") => {
            let upn = decode(&p["/v1.0/users/".len()..]);
            match USERS.iter().find(|(u, _)| *u == upn) {
                Some((_, id)) => json(200, json!({"id": id, "userPrincipalName": upn})),
                None => not_found(),
            }
        }
        ("GET", p) if p.starts_with("/v1.0/groups/") && p.ends_with("/transitiveMembers") => {
            let group = &p["/v1.0/groups/".len()..p.len() - "/transitiveMembers".len()];
            members(group).map_or_else(not_found, |v| json(200, v))
        }
        _ => not_found(),
    }
}

struct Fixture {
    cluster: Cluster,
    graph: StubServer,
    secret_file: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.secret_file);
    }
}

/// A cluster with the Graph stand-in as its directory, `extra` postgresql.conf lines, and the
/// extension created in `postgres` (where Microsoft's pages say the functions are called).
fn with_directory(extra: &[&str]) -> Fixture {
    let graph = StubServer::start(graph);
    let secret_file = std::env::temp_dir().join(format!(
        "aad_auth_azure_scripts_secret_{}_{}",
        std::process::id(),
        new_oid()
    ));
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let mut conf = vec![
        format!("aad_auth.authority = '{}'", graph.url()),
        format!("aad_auth.graph_endpoint = '{}'", graph.url()),
        format!("aad_auth.graph_client_id = '{CLIENT_ID}'"),
        format!(
            "aad_auth.graph_client_secret_file = '{}'",
            secret_file.display()
        ),
    ];
    conf.extend(extra.iter().map(|s| s.to_string()));
    let cluster = Cluster::start(Setup {
        conf,
        ..Setup::default()
    });
    cluster.admin("CREATE EXTENSION aad_auth");
    if extra.iter().any(|s| s.contains("group_sync = on")) {
        // Let the worker's first run (at start, before the scripts make any group principal)
        // end, so that the script's own call is the run that makes the changes.
        cluster.wait_for(
            "SELECT last_success IS NOT NULL FROM aad_auth_group_sync_status()",
            "t",
            30,
        );
    }
    Fixture {
        cluster,
        graph,
        secret_file,
    }
}

/// Who runs Microsoft's scripts.
enum Runner {
    /// The superuser over the unix socket.
    Superuser,
    /// An Entra admin (isAdmin), signed in over TCP with its access token.
    EntraAdmin { role: &'static str, token: String },
}

impl Runner {
    fn entra_admin() -> Runner {
        Runner::EntraAdmin {
            role: DBA_NAME,
            token: user_token(DBA, DBA_NAME),
        }
    }

    /// The role name, for the expected listings and labels.
    fn admin_role(&self) -> Option<&'static str> {
        match self {
            Runner::Superuser => None,
            Runner::EntraAdmin { role, .. } => Some(role),
        }
    }

    /// psql as this runner, connected to `db`, with `args` (then the connection).
    fn psql(&self, c: &Cluster, db: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(psql());
        cmd.args(["-X", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1"])
            .args(args)
            .env_remove("PGSERVICE")
            .env_remove("PGSSLMODE")
            .env("PGCONNECT_TIMEOUT", "20")
            .stdin(std::process::Stdio::null());
        match self {
            Runner::Superuser => {
                cmd.arg("-h").arg(&c.dir).args([
                    "-p",
                    &c.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    db,
                ]);
            }
            Runner::EntraAdmin { role, token } => {
                cmd.arg(format!(
                    "host=127.0.0.1 port={} dbname={db} user='{role}'",
                    c.port
                ))
                .env("PGPASSWORD", token);
            }
        }
        cmd.output().expect("run psql")
    }

    /// Runs one of tests/azure/*.sql unchanged in `db`; psql's output (it must succeed).
    fn run_script(&self, c: &Cluster, db: &str, file: &str) -> String {
        let path = script(file);
        let out = self.psql(c, db, &["-f", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{file} failed as {}: {stderr}",
            self.describe()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SQL of the test's own (a prerequisite), as this runner in `db`.
    fn sql(&self, c: &Cluster, db: &str, sql: &str) -> String {
        let out = self.psql(c, db, &["-c", sql]);
        assert!(
            out.status.success(),
            "as {} in {db}: {sql}\n{}",
            self.describe(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn describe(&self) -> String {
        match self {
            Runner::Superuser => "the superuser over the unix socket".into(),
            Runner::EntraAdmin { role, .. } => format!("Entra admin \"{role}\" with a token"),
        }
    }
}

/// Makes the Entra admin that runs the second pass, as the portal's "Add Microsoft Entra Admin"
/// does (here: the superuser calls the function Azure's portal calls).
fn make_entra_admin(c: &Cluster) -> Runner {
    assert_eq!(
        c.admin(&format!(
            "SELECT pgaadauth_create_principal_with_oid('{DBA_NAME}', '{DBA}', 'user', true, false)"
        )),
        format!("Created role for \"{DBA_NAME}\"")
    );
    let runner = Runner::entra_admin();
    if let Runner::EntraAdmin { role, token } = &runner {
        assert_eq!(c.sign_in(role, token).as_deref(), Ok(*role));
    }
    runner
}

/// A user token whose `groups` claim lists `group` (a member signing in with the group's role).
fn group_member_token(group: &str) -> String {
    let claims = with(
        Claims::user(TENANT, &new_oid(), "member@contoso.com"),
        "groups",
        json!([group]),
    );
    mint(key(), &header(&key().kid), &claims)
}

/// A user token with `amr` = pwd + mfa.
fn mfa_token(oid: &str, upn: &str) -> String {
    let claims = with(Claims::user(TENANT, oid, upn), "amr", json!(["pwd", "mfa"]));
    mint(key(), &header(&key().kid), &claims)
}

/// `pgaadauth_list_principals(admins)` as `rolname|principaltype|objectid|tenantid|ismfa|isadmin`
/// lines, sorted.
fn listed(c: &Cluster, admins: bool) -> Vec<String> {
    let out = c.admin(&format!(
        "SELECT * FROM pgaadauth_list_principals({admins})"
    ));
    let mut rows: Vec<String> = out.lines().map(str::to_owned).collect();
    rows.sort();
    rows
}

fn row(role: &str, kind: &str, oid: &str, mfa: u8, admin: u8) -> String {
    format!("{role}|{kind}|{oid}|{TENANT}|{mfa}|{admin}")
}

/// Every `pgaadauth` label, as `role|label` lines, sorted.
fn labels(c: &Cluster) -> Vec<String> {
    let out = c.admin(
        "SELECT r.rolname || '|' || l.label FROM pg_shseclabel l \
         JOIN pg_authid r ON r.oid = l.objoid \
         WHERE l.provider = 'pgaadauth' AND l.classoid = 'pg_authid'::regclass ORDER BY 1",
    );
    let mut rows: Vec<String> = out.lines().map(str::to_owned).collect();
    rows.sort();
    rows
}

fn sorted(mut rows: Vec<String>) -> Vec<String> {
    rows.sort();
    rows
}

/// Signs in as `role` with `token` and runs `sql` in `db`; its output, or psql's error.
fn as_principal(
    c: &Cluster,
    role: &str,
    token: &str,
    db: &str,
    sql: &str,
) -> Result<String, String> {
    c.psql_with(role, token, &format!("dbname={db}"), &[], sql)
}

// ---------------------------------------------------------------------------------------------
// manage_entra_roles.sql, app_database_grants.sql, drop_entra_roles.sql

/// The roles manage_entra_roles.sql makes or labels and keeps (drop_entra_roles.sql drops
/// "user@domain.com" and accounting_application).
const KEPT_ROLES: &[&str] = &[
    "mary@contoso.com",
    "admin@domain.com",
    GUEST_UPN,
    "mfa.user@contoso.com",
    "my-ua-managed-id",
    "Prod DB Readonly",
    "Accounting Readers",
    "my-identity",
    "my-app-identity",
    "aad_postgres_conn",
    "existing_role",
    "existing_admin",
    "existing_group_role",
    "existing_app_role",
];
const EXISTING_ROLES: &[&str] = &[
    "existing_role",
    "existing_admin",
    "existing_group_role",
    "existing_app_role",
];

fn manage_prerequisites(c: &Cluster, runner: &Runner) {
    // Ordinary password roles that exist before Entra authentication is enabled for them.
    for role in EXISTING_ROLES {
        c.admin(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{EXISTING_PASSWORD}'"
        ));
        // On Azure the admin made these roles itself, which from PostgreSQL 16 on gives it ADMIN
        // OPTION on them; aad_auth lets a non-superuser label an ordinary role only with it.
        if let Some(admin) = runner.admin_role() {
            c.admin(&format!("GRANT {role} TO \"{admin}\" WITH ADMIN OPTION"));
        }
    }
    // The databases the documented statements name, made by whoever runs the scripts (the admin
    // has CREATEDB, and owns what it creates, as on Azure).
    runner.sql(c, "postgres", "CREATE DATABASE demo");
    runner.sql(c, "postgres", "CREATE DATABASE restaurants_reviews");
    runner.sql(
        c,
        "restaurants_reviews",
        "CREATE TABLE public.restaurant (name text); INSERT INTO public.restaurant VALUES ('Contoso Diner')",
    );
}

fn clean_up_manage(c: &Cluster) {
    c.admin("DROP DATABASE demo WITH (FORCE)");
    c.admin("DROP DATABASE restaurants_reviews WITH (FORCE)");
    let roles: Vec<String> = KEPT_ROLES.iter().map(|r| format!("\"{r}\"")).collect();
    c.admin(&format!("DROP OWNED BY {} CASCADE", roles.join(", ")));
    c.admin(&format!("DROP ROLE {}", roles.join(", ")));
    assert_eq!(listed(c, false), Vec::<String>::new());
}

fn manage_scenario(c: &Cluster, runner: &Runner) {
    let who = runner.describe();
    manage_prerequisites(c, runner);

    // -- manage_entra_roles.sql, unchanged
    let out = runner.run_script(c, "postgres", "manage_entra_roles.sql");
    for role in [
        "mary@contoso.com",
        "user@domain.com",
        "admin@domain.com",
        GUEST_UPN,
        "mfa.user@contoso.com",
        "my-ua-managed-id",
        "Prod DB Readonly",
        "accounting_application",
        "Accounting Readers",
        "my-identity",
        "my-app-identity",
        "aad_postgres_conn",
    ] {
        assert!(
            out.lines()
                .any(|l| l == format!("Created role for \"{role}\"")),
            "({who}) no \"Created role for \\\"{role}\\\"\" in:\n{out}"
        );
    }
    assert!(
        out.lines().any(|l| l == "Updated role for \"my-identity\""),
        "({who}) no \"Updated role for \\\"my-identity\\\"\" in:\n{out}"
    );
    assert_eq!(out.matches("SECURITY LABEL").count(), 4, "({who}) {out}");

    // -- app_database_grants.sql, unchanged, in the application's database; then the app's next
    // migration adds a table, which the default privileges cover.
    let out = runner.run_script(c, "restaurants_reviews", "app_database_grants.sql");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "GRANT",
            "GRANT",
            "GRANT",
            "GRANT",
            "ALTER DEFAULT PRIVILEGES"
        ],
        "({who})"
    );
    runner.sql(
        c,
        "restaurants_reviews",
        "CREATE TABLE public.review (restaurant text, rating int)",
    );

    // -- what pgaadauth_list_principals shows
    let mut all = vec![
        row("mary@contoso.com", "user", MARY, 0, 0),
        row("user@domain.com", "user", USER_DOMAIN, 0, 0),
        row("admin@domain.com", "user", ADMIN_DOMAIN, 0, 1),
        row(GUEST_UPN, "user", GUEST, 0, 0),
        row("mfa.user@contoso.com", "user", MFA_USER, 1, 0),
        row("my-ua-managed-id", "service", UAMI, 0, 0),
        row("Prod DB Readonly", "group", PROD_GROUP, 0, 0),
        row("accounting_application", "service", ACCOUNTING, 0, 0),
        row("Accounting Readers", "group", ACCOUNTING_READERS, 0, 0),
        row("my-identity", "service", MY_IDENTITY_NEW, 0, 0),
        row("my-app-identity", "service", APP_CLIENT, 0, 0),
        row("aad_postgres_conn", "user", SC_USER, 0, 0),
        row("existing_role", "user", EXISTING_ROLE, 0, 0),
        row("existing_admin", "user", EXISTING_ADMIN, 0, 1),
        row("existing_group_role", "group", EXISTING_GROUP, 0, 0),
        row("existing_app_role", "service", EXISTING_APP, 0, 0),
    ];
    let mut admins = vec![
        row("admin@domain.com", "user", ADMIN_DOMAIN, 0, 1),
        row("existing_admin", "user", EXISTING_ADMIN, 0, 1),
    ];
    if let Some(dba) = runner.admin_role() {
        all.push(row(dba, "user", DBA, 0, 1));
        admins.push(row(dba, "user", DBA, 0, 1));
    }
    assert_eq!(listed(c, false), sorted(all.clone()), "({who}) list(false)");
    assert_eq!(listed(c, true), sorted(admins), "({who}) list(true)");

    // -- the labels read exactly as Azure writes them
    let label = |role: &str, oid: &str, rest: &str| format!("{role}|aadauth,oid={oid},type={rest}");
    let mut expected_labels = vec![
        label("mary@contoso.com", MARY, "user"),
        label("user@domain.com", USER_DOMAIN, "user"),
        label("admin@domain.com", ADMIN_DOMAIN, "user,admin"),
        label(GUEST_UPN, GUEST, "user"),
        label("mfa.user@contoso.com", MFA_USER, "user,mfa"),
        label("my-ua-managed-id", UAMI, "service"),
        label("Prod DB Readonly", PROD_GROUP, "group"),
        label("accounting_application", ACCOUNTING, "service"),
        label("Accounting Readers", ACCOUNTING_READERS, "group"),
        label("my-identity", MY_IDENTITY_NEW, "service"),
        label("my-app-identity", APP_CLIENT, "service"),
        label("aad_postgres_conn", SC_USER, "user"),
        label("existing_role", EXISTING_ROLE, "user"),
        label("existing_admin", EXISTING_ADMIN, "user,admin"),
        label("existing_group_role", EXISTING_GROUP, "group"),
        label("existing_app_role", EXISTING_APP, "service"),
    ];
    if let Some(dba) = runner.admin_role() {
        expected_labels.push(label(dba, DBA, "user,admin"));
    }
    assert_eq!(labels(c), sorted(expected_labels), "({who}) labels");

    // -- every principal signs in with a token for its object id
    let ok = |role: &str, token: &str| {
        assert_eq!(
            c.sign_in(role, token).as_deref(),
            Ok(role),
            "({who}) sign-in as {role}"
        );
    };
    let refused = |role: &str, token: &str, why: &str| {
        let r = c.sign_in(role, token);
        assert!(r.is_err(), "({who}) {role} signed in with {why}: {r:?}");
    };
    ok("mary@contoso.com", &user_token(MARY, "mary@contoso.com"));
    ok(
        "user@domain.com",
        &user_token(USER_DOMAIN, "user@domain.com"),
    );
    ok(
        "admin@domain.com",
        &user_token(ADMIN_DOMAIN, "admin@domain.com"),
    );
    ok(GUEST_UPN, &user_token(GUEST, GUEST_UPN));
    ok(
        "mfa.user@contoso.com",
        &mfa_token(MFA_USER, "mfa.user@contoso.com"),
    );
    refused(
        "mfa.user@contoso.com",
        &user_token(MFA_USER, "mfa.user@contoso.com"),
        "a token without mfa in amr",
    );
    ok("my-ua-managed-id", &app_token(UAMI, UAMI_CLIENT));
    ok("Prod DB Readonly", &group_member_token(PROD_GROUP));
    refused(
        "Prod DB Readonly",
        &group_member_token(ACCOUNTING_READERS),
        "a token of another group's member",
    );
    ok("accounting_application", &app_token(ACCOUNTING, &new_oid()));
    refused(
        "accounting_application",
        &user_token(ACCOUNTING, "accounting@contoso.com"),
        "a user token for a service role",
    );
    ok(
        "Accounting Readers",
        &group_member_token(ACCOUNTING_READERS),
    );
    // rebound: the new object id signs in, the old one no longer does
    ok("my-identity", &app_token(MY_IDENTITY_NEW, &new_oid()));
    refused(
        "my-identity",
        &app_token(MY_IDENTITY_OLD, &new_oid()),
        "the object id it was bound to before the update",
    );
    // bound to the application's client id: an app-only token of that application
    ok("my-app-identity", &app_token(&new_oid(), APP_CLIENT));
    ok("aad_postgres_conn", &user_token(SC_USER, "dev@contoso.com"));
    ok(
        "existing_role",
        &user_token(EXISTING_ROLE, "existing@contoso.com"),
    );
    ok(
        "existing_admin",
        &user_token(EXISTING_ADMIN, "existing.admin@contoso.com"),
    );
    ok("existing_group_role", &group_member_token(EXISTING_GROUP));
    ok("existing_app_role", &app_token(EXISTING_APP, &new_oid()));
    for role in EXISTING_ROLES {
        refused(role, EXISTING_PASSWORD, "its old password");
    }

    // -- what the grants gave
    // admin@domain.com is an admin: azure_pg_admin, CREATEROLE, CREATEDB, and it manages principals
    let admin_token = user_token(ADMIN_DOMAIN, "admin@domain.com");
    assert_eq!(
        as_principal(
            c,
            "admin@domain.com",
            &admin_token,
            "postgres",
            "SELECT pg_has_role(current_user, 'azure_pg_admin', 'MEMBER')::text || rolcreaterole::text || rolcreatedb::text \
             FROM pg_roles WHERE rolname = current_user",
        )
        .as_deref(),
        Ok("truetruetrue"),
        "({who}) admin@domain.com"
    );
    assert_eq!(
        as_principal(
            c,
            "admin@domain.com",
            &admin_token,
            "postgres",
            "SELECT count(*) FROM pg_catalog.pgaadauth_list_principals(true) WHERE rolname = 'admin@domain.com'",
        )
        .as_deref(),
        Ok("1"),
        "({who}) admin@domain.com lists principals"
    );
    // Service Connector's grants on demo
    assert_eq!(
        as_principal(
            c,
            "aad_postgres_conn",
            &user_token(SC_USER, "dev@contoso.com"),
            "demo",
            "SELECT has_database_privilege('demo', 'CREATE')::text || has_database_privilege('demo', 'TEMP')::text",
        )
        .as_deref(),
        Ok("truetrue"),
        "({who}) aad_postgres_conn on demo"
    );
    // the tutorial's grants in restaurants_reviews: existing tables, later tables, CREATE
    let uami_token = app_token(UAMI, UAMI_CLIENT);
    assert_eq!(
        as_principal(
            c,
            "my-ua-managed-id",
            &uami_token,
            "restaurants_reviews",
            "INSERT INTO public.restaurant VALUES ('Fabrikam Grill'); \
             INSERT INTO public.review VALUES ('Fabrikam Grill', 5); \
             CREATE TABLE public.visit (restaurant text); \
             SELECT count(*) FROM public.restaurant JOIN public.review ON review.restaurant = restaurant.name",
        )
        .as_deref(),
        Ok("INSERT 0 1\nINSERT 0 1\nCREATE TABLE\n1"),
        "({who}) my-ua-managed-id in restaurants_reviews"
    );

    // -- drop_entra_roles.sql, unchanged
    let out = runner.run_script(c, "postgres", "drop_entra_roles.sql");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["DROP ROLE", "DROP ROLE"],
        "({who})"
    );
    for role in ["user@domain.com", "accounting_application"] {
        assert_eq!(
            c.admin(&format!(
                "SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"
            )),
            "0",
            "({who}) {role} still exists"
        );
    }
    refused(
        "user@domain.com",
        &user_token(USER_DOMAIN, "user@domain.com"),
        "its token after DROP ROLE",
    );
    refused(
        "accounting_application",
        &app_token(ACCOUNTING, &new_oid()),
        "its token after DROP ROLE",
    );
    all.retain(|r| !r.starts_with("user@domain.com|") && !r.starts_with("accounting_application|"));
    assert_eq!(
        listed(c, false),
        sorted(all),
        "({who}) list(false) after DROP ROLE"
    );
    assert_eq!(
        c.admin(
            "SELECT count(*) FROM pg_shseclabel WHERE provider = 'pgaadauth' \
             AND objoid NOT IN (SELECT oid FROM pg_authid)"
        ),
        "0",
        "({who}) a label outlived its role"
    );
    // the others still sign in
    ok("mary@contoso.com", &user_token(MARY, "mary@contoso.com"));
}

#[test]
fn microsofts_entra_role_scripts_run_unchanged_and_their_principals_sign_in() {
    let started = Instant::now();
    let f = with_directory(&[]);
    let c = &f.cluster;

    manage_scenario(c, &Runner::Superuser);
    clean_up_manage(c);
    let runner = make_entra_admin(c);
    manage_scenario(c, &runner);

    // names were resolved through the directory, one Graph token served every look-up
    let asked = f.graph.requests();
    assert!(asked
        .iter()
        .any(|r| r.target.starts_with("/v1.0/users/mary%40contoso.com")
            || r.target.starts_with("/v1.0/users/mary@contoso.com")));
    assert!(asked
        .iter()
        .any(|r| r.target.starts_with("/v1.0/servicePrincipals")));
    c.assert_no_crash();
    eprintln!("azure scripts: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// group_sync.sql

const SYNC_ROLES: &[&str] = &[
    "bob@contoso.com",
    "billing-app",
    "Database Readers",
    "Prod DB Readonly",
];

fn group_sync_prerequisites(c: &Cluster, runner: &Runner) {
    runner.sql(c, "postgres", "CREATE DATABASE mydb");
    // An application table in postgres's schema public, owned by whoever runs the script (on
    // PostgreSQL 15 only the database owner may create there, so the superuser hands it over).
    c.admin("CREATE TABLE public.reviews (body text); INSERT INTO public.reviews VALUES ('great')");
    if let Some(admin) = runner.admin_role() {
        c.admin(&format!("ALTER TABLE public.reviews OWNER TO \"{admin}\""));
    }
}

fn clean_up_group_sync(c: &Cluster) {
    c.admin("DROP DATABASE mydb WITH (FORCE)");
    c.admin("DROP TABLE public.reviews");
    let roles: Vec<String> = SYNC_ROLES.iter().map(|r| format!("\"{r}\"")).collect();
    c.admin(&format!("DROP OWNED BY {} CASCADE", roles.join(", ")));
    c.admin(&format!("DROP ROLE {}", roles.join(", ")));
    assert_eq!(listed(c, false), Vec::<String>::new());
}

fn group_sync_scenario(c: &Cluster, graph: &StubServer, runner: &Runner) {
    let who = runner.describe();
    group_sync_prerequisites(c, runner);
    let asked_before = graph.requests().len();

    let out = runner.run_script(c, "postgres", "group_sync.sql");
    assert!(
        out.contains("Created role for \"Prod DB Readonly\""),
        "({who}) {out}"
    );
    assert!(
        out.contains("Created role for \"Database Readers\""),
        "({who}) {out}"
    );
    // SELECT * FROM pgaadauth_sync_roles_for_group_members(): one row per change (role, group,
    // action), among them each member's grant of each of its groups
    for (member, group) in [
        ("bob@contoso.com", "Database Readers"),
        ("bob@contoso.com", "Prod DB Readonly"),
        ("billing-app", "Database Readers"),
    ] {
        assert!(
            out.lines().any(|l| {
                l.starts_with(&format!("{member}|{group}|"))
                    && l.len() > member.len() + group.len() + 2
            }),
            "({who}) no sync row for {member} in {group}:\n{out}"
        );
    }
    for group in [DB_READERS, PROD_GROUP] {
        assert!(
            graph.requests()[asked_before..].iter().any(|r| r
                .target
                .starts_with(&format!("/v1.0/groups/{group}/transitiveMembers"))),
            "({who}) the sync did not ask Graph for the members of {group}"
        );
    }

    // what pgaadauth_list_principals shows: the groups and each member's own role
    let mut expected = vec![
        row("Prod DB Readonly", "group", PROD_GROUP, 0, 0),
        row("Database Readers", "group", DB_READERS, 0, 0),
        row("bob@contoso.com", "user", BOB, 0, 0),
        row("billing-app", "service", BILLING, 0, 0),
    ];
    if let Some(dba) = runner.admin_role() {
        expected.push(row(dba, "user", DBA, 0, 1));
    }
    assert_eq!(listed(c, false), sorted(expected), "({who}) list(false)");

    // the labels, as Azure writes them
    let mut expected_labels = vec![
        format!("Prod DB Readonly|aadauth,oid={PROD_GROUP},type=group"),
        format!("Database Readers|aadauth,oid={DB_READERS},type=group"),
        format!("bob@contoso.com|aadauth,oid={BOB},type=user"),
        format!("billing-app|aadauth,oid={BILLING},type=service"),
    ];
    if let Some(dba) = runner.admin_role() {
        expected_labels.push(format!("{dba}|aadauth,oid={DBA},type=user,admin"));
    }
    assert_eq!(labels(c), sorted(expected_labels), "({who}) labels");

    // each member's role is granted its groups' roles
    assert_eq!(
        c.admin(
            "SELECT pg_has_role('bob@contoso.com', 'Database Readers', 'MEMBER')::text || ',' || \
             pg_has_role('bob@contoso.com', 'Prod DB Readonly', 'MEMBER')::text || ',' || \
             pg_has_role('billing-app', 'Database Readers', 'MEMBER')::text || ',' || \
             pg_has_role('billing-app', 'Prod DB Readonly', 'MEMBER')::text"
        ),
        "true,true,true,false",
        "({who}) memberships"
    );

    // members sign in as themselves, with their own tokens, and have the group's privileges
    let bob = user_token(BOB, "bob@contoso.com");
    assert_eq!(
        as_principal(
            c,
            "bob@contoso.com",
            &bob,
            "postgres",
            "SELECT current_user || ' ' || (SELECT count(*) FROM public.reviews)"
        )
        .as_deref(),
        Ok("bob@contoso.com 1"),
        "({who}) bob@contoso.com"
    );
    let billing = app_token(BILLING, BILLING_APPID);
    assert_eq!(
        as_principal(
            c,
            "billing-app",
            &billing,
            "postgres",
            "SELECT current_user || ' ' || (SELECT count(*) FROM public.reviews)"
        )
        .as_deref(),
        Ok("billing-app 1"),
        "({who}) billing-app"
    );
    // a member's token does not open another member's role
    assert!(
        c.sign_in("billing-app", &bob).is_err(),
        "({who}) bob as billing-app"
    );
    // ALTER ROLE "Database Readers" NOLOGIN: that group's login is off, the other group's is not
    let r = c.sign_in("Database Readers", &group_member_token(DB_READERS));
    assert!(r.is_err(), "({who}) group login after NOLOGIN: {r:?}");
    assert_eq!(
        c.sign_in("Prod DB Readonly", &group_member_token(PROD_GROUP))
            .as_deref(),
        Ok("Prod DB Readonly"),
        "({who}) group login"
    );
    // nothing changed in the directory: a second sync changes nothing
    assert_eq!(
        c.admin("SELECT count(*) FROM pgaadauth_sync_roles_for_group_members()"),
        "0",
        "({who}) second sync"
    );
}

#[test]
fn microsofts_group_sync_script_runs_unchanged_and_members_sign_in_as_themselves() {
    let started = Instant::now();
    // Azure's parameter name, as Azure's users set it.
    let f = with_directory(&["pgaadauth.enable_group_sync = on"]);
    let c = &f.cluster;

    group_sync_scenario(c, &f.graph, &Runner::Superuser);
    clean_up_group_sync(c);
    let runner = make_entra_admin(c);
    group_sync_scenario(c, &f.graph, &runner);
    c.assert_no_crash();
    eprintln!("azure group sync script: {:?}", started.elapsed());
}
