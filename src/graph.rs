//! Microsoft Graph, asked by the background worker only: the client-credentials token, name
//! resolution and group membership. The client secret is read from its file when a token is
//! needed and never logged; neither is the Graph token.

use crate::directory::{Answer, Question};
use crate::gucs::Directory;
use crate::http;
use aad_auth_core::{Guid, PrincipalType};
use serde_json::Value;
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// Largest Graph response read.
const MAX_RESPONSE: usize = 1 << 20;
/// Largest client secret file read.
const MAX_SECRET: u64 = 4096;

thread_local! {
    /// The Graph token and when to stop using it, for this worker process.
    static TOKEN: RefCell<Option<(String, String, Instant)>> = const { RefCell::new(None) };
}

/// Answers one question.
pub fn ask(directory: &Directory, question: &Question) -> Result<Answer, String> {
    http::check_address(&directory.graph)?;
    http::check_address(&directory.token_endpoint)?;
    match question {
        Question::Resolve(name) => resolve(directory, name),
        Question::Member {
            member,
            is_app,
            group,
        } => member_of(directory, member, *is_app, group),
    }
}

fn token(directory: &Directory) -> Result<String, String> {
    let cached = TOKEN.with_borrow(|t| {
        t.as_ref()
            .filter(|(client, _, until)| *client == directory.client_id && Instant::now() < *until)
            .map(|(_, token, _)| token.clone())
    });
    if let Some(token) = cached {
        return Ok(token);
    }
    let secret = read_secret(&directory.secret_file)?;
    let scope = format!("{}/.default", directory.graph);
    let form = [
        ("client_id", directory.client_id.as_str()),
        ("client_secret", secret.as_str()),
        ("scope", scope.as_str()),
        ("grant_type", "client_credentials"),
    ];
    let (status, body) = http::read(
        http::agent()
            .post(&directory.token_endpoint)
            .send_form(form),
        MAX_RESPONSE,
    )
    .map_err(|e| format!("token request to {} failed: {e}", directory.token_endpoint))?;
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status != 200 {
        let code = json
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no error code");
        return Err(format!(
            "token request to {} failed: HTTP {status} ({code}); check aad_auth.graph_client_id and the secret file",
            directory.token_endpoint
        ));
    }
    let token = json
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or("the token response has no access_token")?
        .to_owned();
    let lifetime = json
        .get("expires_in")
        .and_then(Value::as_u64)
        .unwrap_or(300);
    let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(60).max(30));
    TOKEN.with_borrow_mut(|t| *t = Some((directory.client_id.clone(), token.clone(), until)));
    Ok(token)
}

fn read_secret(path: &str) -> Result<String, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the client secret file \"{path}\": {e}"))?;
    if meta.len() > MAX_SECRET {
        return Err(format!(
            "the client secret file \"{path}\" is larger than {MAX_SECRET} bytes"
        ));
    }
    let secret = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the client secret file \"{path}\": {e}"))?;
    let secret = secret.trim().to_owned();
    if secret.is_empty() {
        return Err(format!("the client secret file \"{path}\" is empty"));
    }
    Ok(secret)
}

/// GET or POST `path` (below `/v1.0/`) with the Graph token; returns the status and the JSON.
fn call(directory: &Directory, path: &str, post: Option<&Value>) -> Result<(u16, Value), String> {
    let token = token(directory)?;
    let url = format!("{}/v1.0/{path}", directory.graph);
    let agent = http::agent();
    let bearer = format!("Bearer {token}");
    let response = match post {
        None => agent.get(&url).header("Authorization", &bearer).call(),
        Some(body) => agent
            .post(&url)
            .header("Authorization", &bearer)
            .header("Content-Type", "application/json")
            .send(body.to_string()),
    };
    let (status, body) =
        http::read(response, MAX_RESPONSE).map_err(|e| format!("Graph request failed: {e}"))?;
    if status == 401 || status == 403 {
        TOKEN.with_borrow_mut(|t| *t = None);
        return Err(format!(
            "Graph refused the request (HTTP {status}); the application needs the User.Read.All, GroupMember.Read.All and Application.Read.All permissions"
        ));
    }
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// The objects of `collection` whose display name is exactly `name`: their ids.
fn by_display_name(
    directory: &Directory,
    collection: &str,
    name: &str,
) -> Result<Vec<String>, String> {
    let filter = format!("displayName eq '{}'", name.replace('\'', "''"));
    let path = format!(
        "{collection}?$filter={}&$select=id,displayName",
        http::encode(&filter)
    );
    match call(directory, &path, None)? {
        (200, json) => Ok(json
            .get("value")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter(|o| o.get("displayName").and_then(Value::as_str) == Some(name))
                    .filter_map(|o| o.get("id").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()),
        (status, _) => Err(format!(
            "Graph answered HTTP {status} to a {collection} search"
        )),
    }
}

fn guid(text: &str) -> Result<Guid, String> {
    text.parse()
        .map_err(|_| "Graph returned an object id that is not a GUID".to_string())
}

/// A UPN (contains `@`) resolves to a user; any other name to the one group or service
/// principal with that display name.
fn resolve(directory: &Directory, name: &str) -> Result<Answer, String> {
    if name.contains('@') {
        return match call(
            directory,
            &format!("users/{}?$select=id", http::encode(name)),
            None,
        )? {
            (200, json) => Ok(Answer::Resolved {
                oid: guid(json.get("id").and_then(Value::as_str).unwrap_or(""))?,
                kind: PrincipalType::User,
            }),
            (404, _) => Err(format!(
                "no user with the user principal name \"{name}\" in the directory"
            )),
            (status, _) => Err(format!("Graph answered HTTP {status} to a user look-up")),
        };
    }
    let groups = by_display_name(directory, "groups", name)?;
    let services = by_display_name(directory, "servicePrincipals", name)?;
    match (groups.as_slice(), services.as_slice()) {
        ([oid], []) => Ok(Answer::Resolved { oid: guid(oid)?, kind: PrincipalType::Group }),
        ([], [oid]) => Ok(Answer::Resolved { oid: guid(oid)?, kind: PrincipalType::Service }),
        ([], []) => Err(format!(
            "no group or service principal named \"{name}\" in the directory (users are named by their UPN)"
        )),
        _ => Err(format!(
            "\"{name}\" names {} objects in the directory ({} groups, {} service principals); use pgaadauth_create_principal_with_oid with the object id",
            groups.len() + services.len(),
            groups.len(),
            services.len()
        )),
    }
}

/// Whether the user or service principal `member` belongs to `group` (transitively).
fn member_of(
    directory: &Directory,
    member: &str,
    is_app: bool,
    group: &Guid,
) -> Result<Answer, String> {
    let member = guid(member)?;
    let collection = if is_app { "servicePrincipals" } else { "users" };
    let body = serde_json::json!({ "groupIds": [group.to_string()] });
    match call(
        directory,
        &format!("{collection}/{member}/checkMemberGroups"),
        Some(&body),
    )? {
        (200, json) => Ok(Answer::Member(
            json.get("value")
                .and_then(Value::as_array)
                .is_some_and(|ids| {
                    ids.iter()
                        .filter_map(Value::as_str)
                        .any(|id| id.parse::<Guid>().ok() == Some(*group))
                }),
        )),
        (status, _) => Err(format!(
            "Graph answered HTTP {status} to a membership check"
        )),
    }
}
