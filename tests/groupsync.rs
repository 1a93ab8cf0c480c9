//! End to end: group sync (issue 11, item 2) against a Microsoft Graph stand-in on loopback —
//! three groups (one nested in another), a user, a service principal and a managed identity as
//! members, 250 members in one group (paging), a member removed, a 429, a Graph outage, the
//! worker's schedule, Azure's setting name, and the refusals.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const CLIENT_ID: &str = "9a1c7a2e-0b6f-4c55-8e1d-3c2b1a0f9e8d";
const SECRET: &str = "group-sync-secret-value";
const GRAPH_TOKEN: &str = "graph-token-for-group-sync";
const PAGE: usize = 100;

#[derive(Clone)]
struct Obj {
    kind: &'static str,
    id: String,
    name: String,
    sp_type: &'static str,
}

fn user(id: &str, upn: &str) -> Obj {
    Obj {
        kind: "#microsoft.graph.user",
        id: id.into(),
        name: upn.into(),
        sp_type: "",
    }
}

fn service(id: &str, name: &str, sp_type: &'static str) -> Obj {
    Obj {
        kind: "#microsoft.graph.servicePrincipal",
        id: id.into(),
        name: name.into(),
        sp_type,
    }
}

fn nested_group(id: &str, name: &str) -> Obj {
    Obj {
        kind: "#microsoft.graph.group",
        id: id.into(),
        name: name.into(),
        sp_type: "",
    }
}

/// What the stand-in directory holds, and how it misbehaves.
#[derive(Default)]
struct Directory {
    /// Group oid -> transitive members.
    members: BTreeMap<String, Vec<Obj>>,
    /// Group oids answered with 429 (Retry-After: 1) this many more times.
    throttle: BTreeMap<String, usize>,
    /// Group oids answered with 503.
    down: Vec<String>,
    /// Group oids whose every page names itself as the next one.
    looping: Vec<String>,
}

fn json_of(o: &Obj) -> Value {
    match o.kind {
        "#microsoft.graph.user" => {
            json!({"@odata.type": o.kind, "id": o.id, "userPrincipalName": o.name, "displayName": o.name})
        }
        "#microsoft.graph.servicePrincipal" => json!({
            "@odata.type": o.kind, "id": o.id, "displayName": o.name,
            "appId": new_oid(), "servicePrincipalType": o.sp_type
        }),
        _ => json!({"@odata.type": o.kind, "id": o.id, "displayName": o.name}),
    }
}

fn graph(dir: &Arc<Mutex<Directory>>, base: &str, request: &Request) -> Reply {
    let respond = |status, v: Value| Reply::Respond(status, v.to_string());
    let path = request.target.split('?').next().unwrap_or("");
    if let Some(reply) = graph_token_or_refusal(request, CLIENT_ID, SECRET, GRAPH_TOKEN) {
        return reply;
    }
    let Some(group) = path
        .strip_prefix("/v1.0/groups/")
        .and_then(|p| p.strip_suffix("/transitiveMembers"))
    else {
        return respond(404, json!({"error":{"code":"Request_ResourceNotFound"}}));
    };
    let mut d = dir.lock().unwrap();
    if d.down.iter().any(|g| g == group) {
        return respond(503, json!({"error":{"code":"serviceNotAvailable"}}));
    }
    if let Some(n) = d.throttle.get_mut(group).filter(|n| **n > 0) {
        *n -= 1;
        return Reply::RespondWith(
            429,
            vec!["Retry-After: 1".into()],
            json!({"error":{"code":"TooManyRequests"}}).to_string(),
        );
    }
    let Some(all) = d.members.get(group) else {
        return respond(404, json!({"error":{"code":"Request_ResourceNotFound"}}));
    };
    let page: usize = request
        .target
        .split("page=")
        .nth(1)
        .and_then(|p| p.split('&').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let items: Vec<Value> = all
        .iter()
        .skip(page * PAGE)
        .take(PAGE)
        .map(json_of)
        .collect();
    let mut body = json!({ "value": items });
    if d.looping.iter().any(|g| g == group) {
        body["@odata.nextLink"] = json!(format!("{base}{}", request.target));
        return respond(200, body);
    }
    if (page + 1) * PAGE < all.len() {
        body["@odata.nextLink"] = json!(format!(
            "{base}/v1.0/groups/{group}/transitiveMembers?$top={PAGE}&page={}",
            page + 1
        ));
    }
    respond(200, body)
}

struct Fixture {
    cluster: Cluster,
    graph: StubServer,
    dir: Arc<Mutex<Directory>>,
}

fn start(extra: &[&str]) -> Fixture {
    let dir = Arc::new(Mutex::new(Directory::default()));
    let graph = StubServer::start(|_| Reply::Respond(503, String::new()));
    let base = graph.url();
    let shared = dir.clone();
    let handler_base = base.clone();
    graph.set_handler(move |r| self::graph(&shared, &handler_base, r));
    let secret_file = std::env::temp_dir().join(format!(
        "aad_auth_group_sync_secret_{}_{}",
        std::process::id(),
        new_oid()
    ));
    std::fs::write(&secret_file, SECRET).unwrap();
    let mut conf = vec![
        format!("aad_auth.authority = '{base}'"),
        format!("aad_auth.graph_endpoint = '{base}'"),
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
    if extra.contains(&"aad_auth.group_sync = on") {
        // The worker's first run (at start, before any group principal exists) is over: with a
        // long interval, the runs the tests make are then the only ones.
        cluster.wait_for(
            "SELECT last_success IS NOT NULL FROM aad_auth_group_sync_status()",
            "t",
            30,
        );
    }
    Fixture {
        cluster,
        graph,
        dir,
    }
}

impl Fixture {
    fn group(&self, role: &str, oid: &str, members: Vec<Obj>) {
        self.cluster.principal(role, oid, "group");
        self.dir.lock().unwrap().members.insert(oid.into(), members);
    }

    /// `pgaadauth_sync_roles_for_group_members()`'s rows as `role|group|action`.
    fn sync(&self) -> Result<Vec<String>, String> {
        self.cluster
            .try_admin("SELECT * FROM pgaadauth_sync_roles_for_group_members()")
            .map(|out| out.lines().map(str::to_owned).collect())
    }

    fn member(&self, role: &str, group: &str) -> bool {
        self.cluster.admin(&format!(
            "SELECT pg_has_role('{role}', '{group}', 'MEMBER')"
        )) == "t"
    }

    fn login(&self, role: &str) -> bool {
        self.cluster.admin(&format!(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = '{role}'"
        )) == "t"
    }

    fn label(&self, role: &str) -> String {
        self.cluster.admin(&format!(
            "SELECT coalesce((SELECT label FROM pg_shseclabel l JOIN pg_roles r ON r.oid = l.objoid \
             WHERE l.provider = 'pgaadauth' AND r.rolname = '{role}'), '-')"
        ))
    }
}

#[test]
fn group_members_get_their_own_roles_and_follow_the_directory() {
    let f = start(&[
        "aad_auth.group_sync = on",
        "aad_auth.group_sync_interval = '1h'",
    ]);
    let c = &f.cluster;
    let (dbas, readers, bulk, nested) = (new_oid(), new_oid(), new_oid(), new_oid());
    let (bob, carol, app, mi, clash) = (new_oid(), new_oid(), new_oid(), new_oid(), new_oid());
    c.admin("CREATE ROLE \"clash@contoso.com\" LOGIN");
    // dbas holds the nested group "oncall" (Graph lists its members transitively, and the
    // group itself, which is skipped).
    f.group(
        "dbas",
        &dbas,
        vec![
            user(&bob, "bob@contoso.com"),
            nested_group(&nested, "oncall"),
            user(&carol, "carol@contoso.com"),
            service(&app, "billing-app", "Application"),
            user(&clash, "clash@contoso.com"),
        ],
    );
    f.group(
        "readers",
        &readers,
        vec![
            user(&bob, "bob@contoso.com"),
            service(&mi, "inventory-mi", "ManagedIdentity"),
        ],
    );
    let many: Vec<Obj> = (0..250)
        .map(|i| user(&new_oid(), &format!("member{i:03}@contoso.com")))
        .collect();
    f.group("bulk", &bulk, many.clone());
    f.dir.lock().unwrap().throttle.insert(readers.clone(), 1);

    let rows = f.sync().expect("sync");
    for want in [
        "bob@contoso.com||created (user)",
        "bob@contoso.com|dbas|granted",
        "bob@contoso.com|readers|granted",
        "carol@contoso.com|dbas|granted",
        "billing-app||created (service)",
        "billing-app|dbas|granted",
        "inventory-mi||created (service)",
        "inventory-mi|readers|granted",
        "member000@contoso.com|bulk|granted",
        "member249@contoso.com|bulk|granted",
    ] {
        assert!(
            rows.iter().any(|r| r == want),
            "no row {want:?} in {rows:?}"
        );
    }
    assert!(
        rows.iter()
            .any(|r| r.starts_with("clash@contoso.com|dbas|skipped: a role of that name exists")),
        "{rows:?}"
    );
    assert_eq!(
        c.admin("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'member%@contoso.com'"),
        "250",
        "paging: every member of the 250"
    );
    // The throttled group was asked again after its Retry-After.
    let asked = |g: &str| {
        f.graph
            .requests()
            .iter()
            .filter(|r| r.target.contains(&format!("/groups/{g}/")))
            .count()
    };
    assert_eq!(asked(&readers), 2);
    assert!(asked(&bulk) >= 3, "250 members take three pages");
    // The name clash is left alone: no label, no grant.
    assert_eq!(f.label("clash@contoso.com"), "-");
    assert!(!f.member("clash@contoso.com", "dbas"));
    assert_eq!(
        f.label("bob@contoso.com"),
        format!("aadauth,oid={bob},type=user")
    );
    assert_eq!(
        f.label("inventory-mi"),
        format!("aadauth,oid={mi},type=service")
    );

    // Each member signs in as itself, with its own audit trail; the group login still works.
    assert_eq!(
        c.sign_in("bob@contoso.com", &user_token(&bob, "bob@contoso.com"))
            .as_deref(),
        Ok("bob@contoso.com")
    );
    assert_eq!(
        c.sign_in("billing-app", &app_token(&app, &new_oid()))
            .as_deref(),
        Ok("billing-app")
    );
    assert_eq!(
        c.sign_in("inventory-mi", &app_token(&mi, &new_oid()))
            .as_deref(),
        Ok("inventory-mi")
    );
    let group_token = mint(
        key(),
        &header(&key().kid),
        &with(
            Claims::user(TENANT, &carol, "carol@contoso.com"),
            "groups",
            json!([dbas]),
        ),
    );
    assert_eq!(c.sign_in("dbas", &group_token).as_deref(), Ok("dbas"));
    assert!(f.member("bob@contoso.com", "dbas") && f.member("bob@contoso.com", "readers"));

    // A second run with nothing changed changes nothing.
    assert_eq!(
        f.sync().expect("sync").len(),
        1,
        "only the clash is reported again"
    );

    // Bob leaves dbas: that grant goes, he keeps readers and his login.
    f.dir
        .lock()
        .unwrap()
        .members
        .get_mut(&dbas)
        .unwrap()
        .retain(|o| o.id != bob);
    let rows = f.sync().unwrap();
    assert!(
        rows.contains(&"bob@contoso.com|dbas|revoked".to_string()),
        "{rows:?}"
    );
    assert!(!f.member("bob@contoso.com", "dbas") && f.member("bob@contoso.com", "readers"));
    assert!(f.login("bob@contoso.com"));

    // A Graph outage changes nothing: bob leaves readers too, but readers cannot be read.
    f.dir
        .lock()
        .unwrap()
        .members
        .get_mut(&readers)
        .unwrap()
        .retain(|o| o.id != bob);
    f.dir.lock().unwrap().down.push(bulk.clone());
    let err = f
        .sync()
        .expect_err("a sync with a group unreadable must fail");
    assert!(
        err.contains("group sync failed") && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(f.member("bob@contoso.com", "readers") && f.login("bob@contoso.com"));
    assert!(c
        .admin("SELECT last_error FROM aad_auth_group_sync_status()")
        .contains("HTTP 503"));

    // Graph back: bob has left every group: he loses the grant and LOGIN, keeps his role.
    f.dir.lock().unwrap().down.clear();
    let rows = f.sync().unwrap();
    assert!(
        rows.contains(&"bob@contoso.com|readers|revoked".to_string()),
        "{rows:?}"
    );
    assert!(
        rows.contains(&"bob@contoso.com||login removed".to_string()),
        "{rows:?}"
    );
    assert!(!f.login("bob@contoso.com"));
    let refused = c
        .sign_in("bob@contoso.com", &user_token(&bob, "bob@contoso.com"))
        .expect_err("a member who left every group signed in");
    assert!(refused.contains("not permitted to log in"), "{refused}");

    // He comes back (into bulk this time, through the worker's schedule).
    f.dir
        .lock()
        .unwrap()
        .members
        .get_mut(&bulk)
        .unwrap()
        .push(user(&bob, "bob@contoso.com"));
    c.reload_with(&[("aad_auth.group_sync_interval", "1s")]);
    c.wait_for(
        "SELECT rolcanlogin AND pg_has_role('bob@contoso.com', 'bulk', 'MEMBER') FROM pg_roles WHERE rolname = 'bob@contoso.com'",
        "t",
        30,
    );
    assert!(c
        .log()
        .contains("aad_auth: group sync: role=\"bob@contoso.com\" group=\"bulk\" granted"));
    c.assert_no_crash();
}

#[test]
fn group_sync_refuses_clearly_and_answers_to_azures_setting_name() {
    let f = start(&[]);
    let c = &f.cluster;
    let err = f.sync().expect_err("sync with group sync off");
    assert!(
        err.contains("group sync is off") && err.contains("aad_auth.group_sync = on"),
        "{err}"
    );
    // Azure's parameter name turns it on.
    c.reload_with(&[("pgaadauth.enable_group_sync", "on")]);
    let g = new_oid();
    let member = new_oid();
    f.group("azure-group", &g, vec![user(&member, "dan@contoso.com")]);
    let rows = f.sync().expect("sync");
    assert!(
        rows.contains(&"dan@contoso.com|azure-group|granted".to_string()),
        "{rows:?}"
    );
    assert_eq!(
        c.admin("SELECT enabled FROM aad_auth_group_sync_status()"),
        "t"
    );
    // Only admins may sync or read the status.
    c.admin("CREATE ROLE nobody LOGIN");
    let err = c
        .try_admin("SET ROLE nobody; SELECT * FROM pgaadauth_sync_roles_for_group_members()")
        .expect_err("a non-admin synced");
    assert!(err.contains("permission denied"), "{err}");
    let err = c
        .try_admin("SET ROLE nobody; SELECT * FROM aad_auth_group_sync_status()")
        .expect_err("a non-admin read the status");
    assert!(err.contains("permission denied"), "{err}");
    // Without a directory it says what to configure.
    c.reload_with(&[("aad_auth.graph_client_id", "")]);
    let err = f.sync().expect_err("sync without a directory");
    assert!(err.contains("aad_auth.graph_client_id"), "{err}");
    // On a hot standby it does not run (the roles replicate from the primary).
    c.reload_with(&[("aad_auth.graph_client_id", CLIENT_ID)]);
    let standby = c.standby();
    standby.wait_for(
        "SELECT count(*) FROM pg_roles WHERE rolname = 'dan@contoso.com'",
        "1",
        30,
    );
    let err = standby
        .try_admin("SELECT * FROM pgaadauth_sync_roles_for_group_members()")
        .expect_err("group sync ran on a standby");
    assert!(err.contains("hot standby"), "{err}");
    assert_eq!(
        standby.admin("SELECT worker_pid IS NULL FROM aad_auth_group_sync_status()"),
        "t",
        "the sync worker runs on a standby"
    );
}

/// What the directory sends is chosen by people other than the DBA (a user's UPN, an app
/// owner's display name, a group owner's members): none of it may stop the sync, weaken a
/// group's MFA requirement, or undo a DBA's decision.
#[test]
fn group_sync_holds_against_what_the_directory_sends() {
    let f = start(&[
        "aad_auth.group_sync = on",
        "aad_auth.group_sync_interval = '1h'",
    ]);
    let c = &f.cluster;
    let (secure, plain) = (new_oid(), new_oid());
    let (erin, evil, frank) = (new_oid(), new_oid(), new_oid());
    c.admin(&format!(
        "SELECT pgaadauth_create_principal_with_oid('secure_dbas', '{secure}', 'group', false, true)"
    ));
    f.dir.lock().unwrap().members.insert(
        secure.clone(),
        vec![
            user(&erin, "erin@contoso.com"),
            // a name PostgreSQL reserves: skipped, the rest synced
            service(&evil, "pg_evil", "Application"),
        ],
    );
    f.group(
        "plain_group",
        &plain,
        vec![user(&frank, "frank@contoso.com")],
    );
    let rows = f.sync().expect("a reserved name must not stop the sync");
    assert!(
        rows.iter()
            .any(|r| r.starts_with("pg_evil|secure_dbas|skipped: PostgreSQL reserves")),
        "{rows:?}"
    );
    assert!(
        rows.contains(&"erin@contoso.com|secure_dbas|granted".to_string()),
        "{rows:?}"
    );
    // The group requires MFA, so its synced member does too.
    assert_eq!(
        f.label("erin@contoso.com"),
        format!("aadauth,oid={erin},type=user,mfa")
    );
    let no_mfa = mint(
        key(),
        &header(&key().kid),
        &with(
            Claims::user(TENANT, &erin, "erin@contoso.com"),
            "amr",
            json!(["pwd"]),
        ),
    );
    let refused = c
        .sign_in("erin@contoso.com", &no_mfa)
        .expect_err("a synced member of an MFA group signed in without MFA");
    assert!(refused.contains("multi-factor"), "{refused}");
    // A DBA's NOLOGIN on a synced role is not undone by the next run.
    c.admin("ALTER ROLE \"frank@contoso.com\" NOLOGIN");
    let rows = f.sync().unwrap();
    assert!(
        !rows
            .iter()
            .any(|r| r.starts_with("frank@contoso.com||login")),
        "{rows:?}"
    );
    assert!(!f.login("frank@contoso.com"));
    // Pages that go round in a loop end the run with an error, changing nothing.
    f.dir.lock().unwrap().looping.push(plain.clone());
    f.dir
        .lock()
        .unwrap()
        .members
        .get_mut(&secure)
        .unwrap()
        .retain(|o| o.id != erin);
    let err = f.sync().expect_err("a looping directory");
    assert!(err.contains("loop"), "{err}");
    assert!(f.member("erin@contoso.com", "secure_dbas"));
    c.assert_no_crash();
}
