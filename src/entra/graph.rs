//! Microsoft Graph: the client-credentials token, name resolution, group membership (asked by
//! the background worker for backends), and the transitive members of groups (read by group
//! sync). The client secret is read from its file when a token is needed and never logged;
//! neither is the Graph token.

use crate::directory::{Answer, Question};
use crate::gucs::Directory;
use crate::http;
use aad_auth_core::groupsync::Member;
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
    let url = format!("{}/v1.0/{path}", directory.graph);
    call_url(directory, &url, post).map(|(status, json, _)| (status, json))
}

/// [`call`] for a whole address; also returns `Retry-After` (seconds), if the answer had one.
fn call_url(
    directory: &Directory,
    url: &str,
    post: Option<&Value>,
) -> Result<(u16, Value, Option<u64>), String> {
    let token = token(directory)?;
    let url = url.to_owned();
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
    let retry_after = response.as_ref().ok().and_then(|r| {
        r.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    let (status, body) =
        http::read(response, MAX_RESPONSE).map_err(|e| format!("Graph request failed: {e}"))?;
    if status == 401 || status == 403 {
        TOKEN.with_borrow_mut(|t| *t = None);
        return Err(format!(
            "Graph refused the request (HTTP {status}); the application needs the User.Read.All, GroupMember.Read.All and Application.Read.All permissions"
        ));
    }
    Ok((
        status,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        retry_after,
    ))
}

/// Most pages read for one group (999 members a page: about a hundred thousand members).
const MAX_PAGES: usize = 100;
/// Longest one group's members are read for, throttling included.
const MAX_GROUP_READ: Duration = Duration::from_secs(300);
/// Most answers "429 Too Many Requests" waited out for one group.
const MAX_THROTTLES: usize = 5;
/// Longest `Retry-After` honoured, in seconds.
const MAX_RETRY_AFTER: u64 = 30;

/// The users and service principals (managed identities included) in `group`, directly or
/// through nested groups: `transitiveMembers`, every page (`@odata.nextLink`, which must stay
/// on Graph), throttling (429 with `Retry-After`) waited out a few times. Any other failure
/// is an error: a group whose members could not be read must change nothing.
pub fn transitive_members(directory: &Directory, group: &Guid) -> Result<Vec<Member>, String> {
    http::check_address(&directory.graph)?;
    http::check_address(&directory.token_endpoint)?;
    let mut url = format!(
        "{}/v1.0/groups/{group}/transitiveMembers?$select=id,userPrincipalName,displayName,appId,servicePrincipalType&$top=999",
        directory.graph
    );
    let mut members = Vec::new();
    let (mut pages, mut throttles) = (0, 0);
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + MAX_GROUP_READ;
    loop {
        // Between requests: cancel and statement_timeout (a session), shutdown (the worker).
        pgrx::check_for_interrupts!();
        // SAFETY: a plain read of a server global.
        let in_worker =
            unsafe { pgrx::pg_sys::MyBackendType } == pgrx::pg_sys::BackendType::B_BG_WORKER;
        if in_worker && pgrx::bgworkers::BackgroundWorker::sigterm_received() {
            return Err("the server is shutting down".into());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "reading the members of group {group} took longer than {} s",
                MAX_GROUP_READ.as_secs()
            ));
        }
        if !seen.insert(url.clone()) {
            return Err(format!(
                "Graph's pages for group {group} go round in a loop"
            ));
        }
        let (status, json, retry_after) = call_url(directory, &url, None)?;
        match status {
            200 => {}
            429 if throttles < MAX_THROTTLES => {
                throttles += 1;
                seen.remove(&url);
                let wait = retry_after.unwrap_or(5).clamp(1, MAX_RETRY_AFTER);
                pgrx::log!("aad_auth: group sync: Graph is throttling (429); waiting {wait} s");
                crate::keycache::nap_interruptible(Duration::from_secs(wait));
                continue;
            }
            404 => return Err(format!("group {group} is not in the directory (HTTP 404)")),
            _ => {
                return Err(format!(
                    "Graph answered HTTP {status} when reading the members of group {group}"
                ))
            }
        }
        for item in json
            .get("value")
            .and_then(Value::as_array)
            .ok_or("Graph's member list has no \"value\"")?
        {
            let kind = match item.get("@odata.type").and_then(Value::as_str) {
                Some("#microsoft.graph.user") => PrincipalType::User,
                Some("#microsoft.graph.servicePrincipal") => PrincipalType::Service,
                _ => continue, // nested groups (their members are listed too), devices, contacts
            };
            let text = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let name = match kind {
                PrincipalType::User => text("userPrincipalName"),
                _ => text("displayName"),
            };
            members.push(Member {
                oid: guid(&text("id"))?,
                kind,
                name,
            });
        }
        pages += 1;
        match json.get("@odata.nextLink").and_then(Value::as_str) {
            None => return Ok(members),
            Some(_) if pages >= MAX_PAGES => {
                return Err(format!(
                    "group {group} has more than {MAX_PAGES} pages of members"
                ))
            }
            Some(next) if next.starts_with(&format!("{}/", directory.graph)) => {
                url = next.to_owned();
            }
            Some(_) => return Err("Graph's next page is not on Graph".into()),
        }
    }
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
