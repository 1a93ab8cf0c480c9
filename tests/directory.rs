//! End to end: the directory (Microsoft Graph), against a stand-in served here on loopback —
//! names resolved by pgaadauth_create_principal, and group-overage sign-ins checked there.

mod common;

use common::*;
use std::time::{Duration, Instant};

const CLIENT_ID: &str = "9a1c7a2e-0b6f-4c55-8e1d-3c2b1a0f9e8d";
const SECRET: &str = "s3cret-client-value";
const GRAPH_TOKEN: &str = "graph-access-token-value";
const ALICE: &str = "0a0a0a0a-1111-4222-8333-444444444444";
const GUEST: &str = "0b0b0b0b-1111-4222-8333-444444444444";
const READERS: &str = "0c0c0c0c-1111-4222-8333-444444444444";
const REPORTING: &str = "0d0d0d0d-1111-4222-8333-444444444444";
const MEMBER: &str = "0e0e0e0e-1111-4222-8333-444444444444";
const GUEST_UPN: &str = "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com";

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
    match (request.method.as_str(), path) {
        ("GET", p) if p.starts_with("/v1.0/users/") => {
            match decode(&p["/v1.0/users/".len()..]).as_str() {
                "alice@contoso.com" => json(200, json!({"id": ALICE})),
                GUEST_UPN => json(200, json!({"id": GUEST})),
                _ => json(404, json!({"error":{"code":"Request_ResourceNotFound"}})),
            }
        }
        ("GET", "/v1.0/groups") => named(&[
            ("DB Readers", READERS),
            ("Twin", "1f1f1f1f-1111-4222-8333-444444444444"),
        ]),
        ("GET", "/v1.0/servicePrincipals") => named(&[
            ("reporting-app", REPORTING),
            ("Twin", "2f2f2f2f-1111-4222-8333-444444444444"),
        ]),
        ("POST", p) if p.ends_with("/checkMemberGroups") => {
            let member = p.contains(MEMBER);
            let asked: Value = serde_json_from(&request.body);
            let groups = if member {
                asked["groupIds"].clone()
            } else {
                json!([])
            };
            json(200, json!({ "value": groups }))
        }
        _ => json(404, json!({})),
    }
}

fn serde_json_from(text: &str) -> Value {
    aad_auth_testkit::serde_json::from_str(text).unwrap_or(Value::Null)
}

struct Fixture {
    cluster: Cluster,
    graph: StubServer,
}

fn with_directory(secret: &str) -> Fixture {
    let graph = StubServer::start(graph);
    let secret_file = std::env::temp_dir().join(format!(
        "aad_auth_graph_secret_{}_{}",
        std::process::id(),
        new_oid()
    ));
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let cluster = Cluster::start(Setup {
        conf: vec![
            format!("aad_auth.authority = '{}'", graph.url()),
            format!("aad_auth.graph_endpoint = '{}'", graph.url()),
            format!("aad_auth.graph_client_id = '{CLIENT_ID}'"),
            format!(
                "aad_auth.graph_client_secret_file = '{}'",
                secret_file.display()
            ),
        ],
        ..Setup::default()
    });
    cluster.admin("CREATE EXTENSION aad_auth");
    Fixture { cluster, graph }
}

fn create_by_name(c: &Cluster, name: &str) -> Result<String, String> {
    c.try_admin(&format!(
        "SELECT pgaadauth_create_principal('{}', false, false)",
        name.replace('\'', "''")
    ))
}

fn bound(c: &Cluster, role: &str) -> String {
    c.admin(&format!(
        "SELECT principaltype || ' ' || objectid FROM pgaadauth_list_principals(false) WHERE rolname = '{}'",
        role.replace('\'', "''")
    ))
}

#[test]
fn create_principal_resolves_users_guests_groups_and_service_principals() {
    let f = with_directory(SECRET);
    let c = &f.cluster;
    assert_eq!(
        create_by_name(c, "alice@contoso.com").unwrap(),
        "Created role for \"alice@contoso.com\""
    );
    assert_eq!(bound(c, "alice@contoso.com"), format!("user {ALICE}"));
    assert_eq!(
        c.sign_in("alice@contoso.com", &user_token(ALICE, "alice@contoso.com"))
            .unwrap(),
        "alice@contoso.com"
    );

    assert!(create_by_name(c, GUEST_UPN).is_ok());
    assert_eq!(bound(c, GUEST_UPN), format!("user {GUEST}"));
    assert!(create_by_name(c, "DB Readers").is_ok());
    assert_eq!(bound(c, "DB Readers"), format!("group {READERS}"));
    assert!(create_by_name(c, "reporting-app").is_ok());
    assert_eq!(bound(c, "reporting-app"), format!("service {REPORTING}"));
    assert_eq!(
        c.sign_in("reporting-app", &app_token(REPORTING, &new_oid()))
            .unwrap(),
        "reporting-app"
    );
    // one Graph token served every look-up
    let tokens = f
        .graph
        .requests()
        .iter()
        .filter(|r| r.target.ends_with("/oauth2/v2.0/token"))
        .count();
    assert_eq!(tokens, 1);
}

#[test]
fn unknown_and_ambiguous_names_are_refused_clearly() {
    let f = with_directory(SECRET);
    let c = &f.cluster;
    let err = create_by_name(c, "nobody@contoso.com").unwrap_err();
    assert!(
        err.contains("no user with the user principal name \"nobody@contoso.com\""),
        "{err}"
    );
    let err = create_by_name(c, "No Such Group").unwrap_err();
    assert!(
        err.contains("no group or service principal named \"No Such Group\""),
        "{err}"
    );
    let err = create_by_name(c, "Twin").unwrap_err();
    assert!(err.contains("\"Twin\" names 2 objects"), "{err}");
    assert_eq!(c.admin("SELECT count(*) FROM pg_roles WHERE rolname IN ('nobody@contoso.com', 'No Such Group', 'Twin')"), "0");
}

#[test]
fn a_wrong_client_secret_is_reported_and_never_logged() {
    let f = with_directory("wrong-secret-value");
    let c = &f.cluster;
    let err = create_by_name(c, "alice@contoso.com").unwrap_err();
    assert!(err.contains("HTTP 401 (invalid_client)"), "{err}");
    assert!(!err.contains("wrong-secret-value"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !c.log().contains("wrong-secret-value"),
        "the secret is in the log"
    );
}

fn overage_token(oid: &str, kind_app: bool) -> String {
    let base = if kind_app {
        Claims::app(TENANT, oid, &new_oid())
    } else {
        Claims::user(TENANT, oid, "big@contoso.com")
    };
    let claims = with(
        with(base, "_claim_names", json!({"groups": "src1"})),
        "_claim_sources",
        json!({"src1": {"endpoint": format!("https://graph.microsoft.com/v1.0/users/{oid}/getMemberObjects")}}),
    );
    mint(key(), &header(&key().kid), &claims)
}

#[test]
fn group_overage_tokens_are_checked_in_the_directory() {
    let f = with_directory(SECRET);
    let c = &f.cluster;
    c.principal("big-group", READERS, "group");
    assert_eq!(
        c.sign_in("big-group", &overage_token(MEMBER, false))
            .unwrap(),
        "big-group"
    );
    assert_eq!(
        c.sign_in("big-group", &overage_token(MEMBER, true))
            .unwrap(),
        "big-group"
    );
    let err = c
        .sign_in("big-group", &overage_token(&new_oid(), false))
        .unwrap_err();
    assert!(
        err.contains("does not list the group that role \"big-group\" is bound to"),
        "{err}"
    );
    assert!(!err.contains(READERS), "names the bound group: {err}");
    let asked = f.graph.requests();
    assert!(asked
        .iter()
        .any(|r| r.target == format!("/v1.0/users/{MEMBER}/checkMemberGroups")));
    assert!(asked
        .iter()
        .any(|r| r.target == format!("/v1.0/servicePrincipals/{MEMBER}/checkMemberGroups")));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !c.log().contains(GRAPH_TOKEN) && !c.log().contains(SECRET),
        "a credential is in the log"
    );
    c.assert_no_crash();
}

#[test]
fn an_unreachable_or_silent_directory_refuses_overage_sign_ins_promptly() {
    let mut f = with_directory(SECRET);
    let c = &f.cluster;
    c.principal("quiet-group", READERS, "group");
    f.graph.set_handler(|_| Reply::Hang);
    let started = Instant::now();
    let err = c
        .sign_in("quiet-group", &overage_token(MEMBER, false))
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "waited {:?}",
        started.elapsed()
    );
    assert!(err.contains("the directory could not be asked"), "{err}");

    f.graph.stop();
    std::thread::sleep(Duration::from_millis(500)); // the held connection is closed: the worker moves on
    let err = c
        .sign_in("quiet-group", &overage_token(MEMBER, false))
        .unwrap_err();
    assert!(err.contains("the directory could not be asked"), "{err}");
    c.assert_no_crash();
}
