//! The `aad_auth.*` settings: private statics, typed getters, and check hooks that refuse a
//! malformed value when it is set (a bad value in postgresql.conf is reported at reload and the
//! old value kept).

use aad_auth_core::policy::{DEFAULT_AUDIENCES, DEFAULT_AUTHORITY};
use aad_auth_core::refresh::RefreshPolicy;
use aad_auth_core::transport::SecureTransport;
use aad_auth_core::{list, Guid, Policy, TokenError};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};
use pgrx::pg_sys;
use pgrx::{pg_guard, warning};
use std::ffi::{c_char, c_void, CStr, CString};

static TENANT_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static AUTHORITY: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"https://login.microsoftonline.com"));
static AUDIENCES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(
    c"https://ossrdbms-aad.database.windows.net,https://ossrdbms-aad.database.windows.net/,123cd850-d9df-40bd-94d5-c9f07b7fa203",
));
static ISSUERS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static JWKS_URI: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static JWKS_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static JWKS_REFRESH_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(3600);
static JWKS_MIN_REFRESH_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(300);
static CLOCK_SKEW: GucSetting<i32> = GucSetting::<i32>::new(300);
static PASSWORD_AUTH: GucSetting<bool> = GucSetting::<bool>::new(true);
static SKIP_ROLES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static LOG_LOGINS: GucSetting<bool> = GucSetting::<bool>::new(true);
static GRAPH_CLIENT_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static GRAPH_CLIENT_SECRET_FILE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
static GRAPH_ENDPOINT: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"https://graph.microsoft.com"));
static REQUIRE_SECURE_TRANSPORT: GucSetting<Transport> =
    GucSetting::<Transport>::new(Transport::On);
static FAILURE_DELAY: GucSetting<i32> = GucSetting::<i32>::new(0);
static GROUP_SYNC: GucSetting<bool> = GucSetting::<bool>::new(false);
/// Azure's name for the same switch.
static AZURE_GROUP_SYNC: GucSetting<bool> = GucSetting::<bool>::new(false);
static GROUP_SYNC_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(1800);
static GROUP_SYNC_DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
static SIGN_IN_STATS_MAX: GucSetting<i32> = GucSetting::<i32>::new(1000);
static SESSION_LIFETIME: GucSetting<SessionLifetime> =
    GucSetting::<SessionLifetime>::new(SessionLifetime::Unlimited);
static SESSION_GRACE: GucSetting<i32> = GucSetting::<i32>::new(300);
static REVOKE_LIVE_SESSIONS: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `aad_auth.session_lifetime`, as PostgreSQL sees it.
#[derive(Clone, Copy, PartialEq, Eq, PostgresGucEnum)]
pub enum SessionLifetime {
    #[name = c"unlimited"]
    Unlimited,
    #[name = c"token"]
    Token,
}

/// Bounds of `aad_auth.sign_in_stats_max` (entries of about 200 bytes each).
pub const SIGN_IN_STATS_MAX_RANGE: (i32, i32) = (16, 100_000);

/// `aad_auth.require_secure_transport`, as PostgreSQL sees it.
#[derive(Clone, Copy, PartialEq, Eq, PostgresGucEnum)]
pub enum Transport {
    #[name = c"on"]
    On,
    #[name = c"strict"]
    Strict,
    #[name = c"off"]
    Off,
}

/// Longest `aad_auth.failure_delay`, in milliseconds.
const MAX_FAILURE_DELAY_MS: i32 = 10_000;

/// Every setting, with what Entra sign-in does while its value in postgresql.conf is invalid
/// at server start (PostgreSQL then keeps the default).
const MEANWHILE: &[(&CStr, &str)] = &[
    (c"aad_auth.tenant_id", "Entra ID sign-in refuses every token"),
    (c"aad_auth.authority", "the public cloud's authority, https://login.microsoftonline.com, is used for v2 issuers and the default key address"),
    (c"aad_auth.audiences", "only the default audiences are accepted (the Azure Database for PostgreSQL resource and its app id)"),
    (c"aad_auth.issuers", "only the tenant's own v1 and v2 issuers are accepted"),
    (c"aad_auth.jwks_uri", "the signing keys are fetched from {authority}/{tenant}/discovery/v2.0/keys"),
    (c"aad_auth.jwks_file", "the signing keys are fetched from the tenant's key address"),
    (c"aad_auth.jwks_refresh_interval", "the signing keys are refreshed every hour"),
    (c"aad_auth.jwks_min_refresh_interval", "an unknown key id causes a refresh at most every 5 minutes"),
    (c"aad_auth.clock_skew", "nbf and exp are checked with 300 s of tolerance"),
    (c"aad_auth.password_auth", "ordinary roles sign in with their passwords (on)"),
    (c"aad_auth.skip_roles", "no role passes aad_auth's checks unchallenged"),
    (c"aad_auth.log_logins", "every Entra ID sign-in is logged (on)"),
    (c"aad_auth.graph_client_id", "no directory is used: pgaadauth_create_principal cannot resolve names and group-overage tokens are refused"),
    (c"aad_auth.graph_client_secret_file", "no directory is used"),
    (c"aad_auth.graph_endpoint", "Microsoft Graph is asked at https://graph.microsoft.com"),
    (c"aad_auth.require_secure_transport", "credentials are asked for only over encrypted or loopback connections (on)"),
    (c"aad_auth.failure_delay", "refusals are not delayed (0)"),
    (c"aad_auth.group_sync", "group members are not synced (off)"),
    (c"pgaadauth.enable_group_sync", "group members are not synced (off)"),
    (c"aad_auth.group_sync_interval", "group members are synced every 30 minutes"),
    (c"aad_auth.group_sync_database", "group sync connects to the database postgres"),
    (c"aad_auth.sign_in_stats_max", "sign-in statistics keep 1000 roles"),
    (c"aad_auth.session_lifetime", "sessions signed in with a token last until they end (unlimited)"),
    (c"aad_auth.session_grace", "a session outlives its token by 5 minutes when aad_auth.session_lifetime = token"),
    (c"aad_auth.revoke_live_sessions", "dropping or rebinding a principal does not end its live sessions (off)"),
];

/// The values postgresql.conf gives the settings before they are defined (PostgreSQL holds
/// them as placeholders until the library defines them).
pub fn configured_values() -> Vec<(&'static CStr, CString)> {
    MEANWHILE
        .iter()
        .filter_map(|(name, _)| {
            // SAFETY: name is NUL-terminated; missing_ok returns null for an unset name.
            let value = unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) };
            // SAFETY: a non-null result is a NUL-terminated string.
            (!value.is_null()).then(|| (*name, unsafe { CStr::from_ptr(value) }.to_owned()))
        })
        .collect()
}

/// Whether `value` is valid for the setting `name`, as a reload of postgresql.conf or ALTER
/// SYSTEM judges it: a dry run (changeVal = false) of PostgreSQL's own parsing and our check
/// hooks, reporting a bad value at `elevel`.
pub fn validates(name: &CStr, value: &CStr, elevel: i32) -> bool {
    // SAFETY: valid C strings; changeVal = false only validates. A dry run answers -1 for a
    // good value and 0 for a bad one.
    let rc = unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SIGHUP,
            pg_sys::GucSource::PGC_S_FILE,
            pg_sys::GucAction::GUC_ACTION_SET,
            false,
            elevel,
            false,
        )
    };
    rc != 0
}

/// Reports each value of `configured` that PostgreSQL refused when the settings were defined:
/// at WARNING, naming the setting and what sign-in does meanwhile (never silently defaulted).
pub fn report_invalid(configured: &[(&'static CStr, CString)]) {
    for (name, value) in configured {
        // Its own report goes to DEBUG5; ours follows.
        let valid = validates(name, value, pg_sys::DEBUG5 as i32);
        if !valid {
            let meanwhile = MEANWHILE
                .iter()
                .find(|(n, _)| n == name)
                .map_or("its default applies", |(_, m)| m);
            warning!(
                "aad_auth: {} = {} in postgresql.conf is invalid and ignored; meanwhile {meanwhile}",
                name.to_string_lossy(),
                aad_auth_core::escape::quoted(value.to_bytes())
            );
        }
    }
}

/// Registers every setting; called once from `_PG_init`.
pub fn init() {
    use GucContext::Sighup as ctx;
    // SAFETY: the check hooks are #[pg_guard] functions with PostgreSQL's check-hook signature.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"aad_auth.tenant_id",
            c"Microsoft Entra ID tenant (directory) id whose tokens are accepted.",
            c"A GUID. Tokens whose tid claim differs are refused. Empty: Entra sign-in is refused.",
            &TENANT_ID,
            ctx,
            GucFlags::default(),
            Some(check_tenant_id),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"aad_auth.authority",
            c"Entra ID authority (cloud) for v2 issuers and the default key-set address.",
            c"Default https://login.microsoftonline.com.",
            &AUTHORITY,
            ctx,
            GucFlags::default(),
            Some(check_url),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"aad_auth.audiences",
            c"Comma-separated aud values accepted in tokens.",
            c"Default: the Azure Database for PostgreSQL resource (with and without a trailing slash) and its app id.",
            &AUDIENCES,
            ctx,
            GucFlags::default(),
            Some(check_values),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"aad_auth.issuers",
            c"Comma-separated iss values accepted; empty means the tenant's v1 and v2 issuers.",
            c"",
            &ISSUERS,
            ctx,
            GucFlags::default(),
            Some(check_values),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"aad_auth.jwks_uri",
            c"Address of the tenant's signing keys; empty means {authority}/{tenant}/discovery/v2.0/keys.",
            c"",
            &JWKS_URI,
            ctx,
            GucFlags::default(),
            Some(check_url),
            None,
            None,
        );
        GucRegistry::define_string_guc(
            c"aad_auth.jwks_file",
            c"A JWKS file with the signing keys (offline key set); relative to the data directory.",
            c"",
            &JWKS_FILE,
            ctx,
            GucFlags::default(),
        );
        GucRegistry::define_string_guc_with_hooks(
            c"aad_auth.skip_roles",
            c"Roles that pass aad_auth's checks unchallenged (break-glass; use with care).",
            c"Comma-separated role names; unquoted names are folded to lower case.",
            &SKIP_ROLES,
            ctx,
            GucFlags::default(),
            Some(check_identifiers),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"aad_auth.graph_client_id",
            c"Application (client) id used to look names and group memberships up in Microsoft Graph.",
            c"Empty: no directory; pgaadauth_create_principal refuses and group-overage tokens are refused.",
            &GRAPH_CLIENT_ID,
            ctx,
            GucFlags::default(),
            Some(check_optional_guid),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"aad_auth.graph_endpoint",
            c"Microsoft Graph address.",
            c"Default https://graph.microsoft.com.",
            &GRAPH_ENDPOINT,
            ctx,
            GucFlags::default(),
            Some(check_url),
            None,
            None,
        );
    }
    GucRegistry::define_string_guc(
        c"aad_auth.graph_client_secret_file",
        c"File holding the client secret of aad_auth.graph_client_id; relative to the data directory.",
        c"The secret is read by the background worker only when it needs a Graph token, and never logged.",
        &GRAPH_CLIENT_SECRET_FILE,
        ctx,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"aad_auth.jwks_refresh_interval",
        c"How often the signing keys are refreshed.",
        c"",
        &JWKS_REFRESH_INTERVAL,
        1,
        7 * 24 * 3600,
        ctx,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"aad_auth.jwks_min_refresh_interval",
        c"Least time between key refreshes caused by unknown key ids.",
        c"",
        &JWKS_MIN_REFRESH_INTERVAL,
        1,
        24 * 3600,
        ctx,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"aad_auth.clock_skew",
        c"Tolerance for the nbf and exp claims.",
        c"",
        &CLOCK_SKEW,
        0,
        3600,
        ctx,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"aad_auth.password_auth",
        c"Whether ordinary roles may sign in with passwords over TCP.",
        c"Off: only Entra ID tokens are accepted on host connections; unix-socket connections are never refused.",
        &PASSWORD_AUTH,
        ctx,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"aad_auth.require_secure_transport",
        c"Over which connections aad_auth asks for a password or access token.",
        c"on: encrypted (SSL or GSS) or from a loopback address; strict: encrypted only; off: any (unsafe: tokens are bearer credentials).",
        &REQUIRE_SECURE_TRANSPORT,
        ctx,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"aad_auth.failure_delay",
        c"Pause before a refused sign-in on a governed line is answered.",
        c"Slows password and token guessing; PostgreSQL's auth_delay cannot act on these refusals.",
        &FAILURE_DELAY,
        0,
        MAX_FAILURE_DELAY_MS,
        ctx,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_bool_guc(
        c"aad_auth.group_sync",
        c"Give each member of a group principal its own LOGIN role, granted the group's role.",
        c"Members are read from Microsoft Graph (a directory must be configured) every aad_auth.group_sync_interval. Azure's pgaadauth.enable_group_sync is the same switch.",
        &GROUP_SYNC,
        ctx,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pgaadauth.enable_group_sync",
        c"Azure's name for aad_auth.group_sync: either one turns group sync on.",
        c"",
        &AZURE_GROUP_SYNC,
        ctx,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"aad_auth.group_sync_interval",
        c"How often group members are read from the directory.",
        c"",
        &GROUP_SYNC_INTERVAL,
        1,
        7 * 24 * 3600,
        ctx,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"aad_auth.group_sync_database",
        c"The database group sync's background worker connects to (roles are cluster-wide).",
        c"",
        &GROUP_SYNC_DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"aad_auth.sign_in_stats_max",
        c"How many roles aad_auth_sign_in_stats() keeps counts for.",
        c"Roles beyond it are counted under one row with a null rolname; names that are no role take at most half of the table.",
        &SIGN_IN_STATS_MAX,
        SIGN_IN_STATS_MAX_RANGE.0,
        SIGN_IN_STATS_MAX_RANGE.1,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"aad_auth.session_lifetime",
        c"Whether a session signed in with a token ends when the token expires.",
        c"unlimited: sessions last until they end (as on Azure); token: a token session ends once exp + aad_auth.session_grace has passed.",
        &SESSION_LIFETIME,
        ctx,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"aad_auth.session_grace",
        c"How long a session outlives its token with aad_auth.session_lifetime = token.",
        c"",
        &SESSION_GRACE,
        0,
        7 * 24 * 3600,
        ctx,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"aad_auth.revoke_live_sessions",
        c"End the live sessions of a principal whose role is dropped, rebound or unlabelled.",
        c"Checked every second by the aad_auth session monitor.",
        &REVOKE_LIVE_SESSIONS,
        ctx,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"aad_auth.log_logins",
        c"Log one line per Entra ID sign-in, accepted or refused.",
        c"",
        &LOG_LOGINS,
        ctx,
        GucFlags::default(),
    );
}

fn text(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting
        .get()
        .map(|s| s.to_string_lossy().trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The token rules as configured. Fails when no tenant is configured.
pub fn policy() -> Result<Policy, TokenError> {
    let tenant = text(&TENANT_ID)
        .and_then(|t| t.parse::<Guid>().ok())
        .ok_or(TokenError::TenantNotConfigured)?;
    let mut policy = Policy::for_tenant(tenant);
    policy.authority = text(&AUTHORITY).unwrap_or_else(|| DEFAULT_AUTHORITY.into());
    let audiences = list::parse_values(&text(&AUDIENCES).unwrap_or_default()).unwrap_or_default();
    if !audiences.is_empty() {
        policy.audiences = audiences;
    } else {
        policy.audiences = DEFAULT_AUDIENCES.iter().map(|s| s.to_string()).collect();
    }
    policy.issuers = list::parse_values(&text(&ISSUERS).unwrap_or_default()).unwrap_or_default();
    policy.clock_skew = i64::from(CLOCK_SKEW.get());
    Ok(policy)
}

/// The configured tenant, for display.
pub fn tenant_id() -> Option<String> {
    text(&TENANT_ID)
}

pub fn jwks_file() -> Option<String> {
    text(&JWKS_FILE)
}

/// The tenant's key address: `aad_auth.jwks_uri`, else `{authority}/{tenant}/discovery/v2.0/keys`
/// when a tenant is configured.
pub fn jwks_uri() -> Option<String> {
    text(&JWKS_URI).or_else(|| {
        let tenant = text(&TENANT_ID)?.parse::<Guid>().ok()?;
        let authority = text(&AUTHORITY).unwrap_or_else(|| DEFAULT_AUTHORITY.into());
        Some(format!(
            "{}/{tenant}/discovery/v2.0/keys",
            authority.trim_end_matches('/')
        ))
    })
}

/// Where and how to ask Microsoft Graph, when a directory is configured.
pub struct Directory {
    pub client_id: String,
    pub secret_file: String,
    /// The client-credentials token endpoint, `{authority}/{tenant}/oauth2/v2.0/token`.
    pub token_endpoint: String,
    /// Graph's address, without a trailing slash.
    pub graph: String,
}

/// The directory settings, when `aad_auth.graph_client_id` and the secret file are set.
pub fn directory() -> Option<Directory> {
    let tenant = text(&TENANT_ID)?.parse::<Guid>().ok()?;
    let authority = text(&AUTHORITY).unwrap_or_else(|| DEFAULT_AUTHORITY.into());
    Some(Directory {
        client_id: text(&GRAPH_CLIENT_ID)?,
        secret_file: text(&GRAPH_CLIENT_SECRET_FILE)?,
        token_endpoint: format!(
            "{}/{tenant}/oauth2/v2.0/token",
            authority.trim_end_matches('/')
        ),
        graph: text(&GRAPH_ENDPOINT)
            .unwrap_or_else(|| "https://graph.microsoft.com".into())
            .trim_end_matches('/')
            .to_owned(),
    })
}

/// The key refresh settings.
pub fn refresh_policy() -> RefreshPolicy {
    RefreshPolicy {
        interval: i64::from(JWKS_REFRESH_INTERVAL.get()),
        min_interval: i64::from(JWKS_MIN_REFRESH_INTERVAL.get()),
    }
}

pub fn password_auth() -> bool {
    PASSWORD_AUTH.get()
}

pub fn log_logins() -> bool {
    LOG_LOGINS.get()
}

/// Group sync is on: `aad_auth.group_sync` or Azure's `pgaadauth.enable_group_sync`.
pub fn group_sync() -> bool {
    GROUP_SYNC.get() || AZURE_GROUP_SYNC.get()
}

pub fn group_sync_interval() -> std::time::Duration {
    std::time::Duration::from_secs(u64::try_from(GROUP_SYNC_INTERVAL.get()).unwrap_or(1800))
}

pub fn group_sync_database() -> String {
    text(&GROUP_SYNC_DATABASE).unwrap_or_else(|| "postgres".into())
}

pub fn secure_transport() -> SecureTransport {
    match REQUIRE_SECURE_TRANSPORT.get() {
        Transport::On => SecureTransport::On,
        Transport::Strict => SecureTransport::Strict,
        Transport::Off => SecureTransport::Off,
    }
}

/// `aad_auth.sign_in_stats_max` (fixed at server start).
pub fn sign_in_stats_max() -> usize {
    usize::try_from(SIGN_IN_STATS_MAX.get()).unwrap_or(1000)
}

/// `aad_auth.session_lifetime`.
pub fn session_lifetime() -> aad_auth_core::sessions::Lifetime {
    match SESSION_LIFETIME.get() {
        SessionLifetime::Unlimited => aad_auth_core::sessions::Lifetime::Unlimited,
        SessionLifetime::Token => aad_auth_core::sessions::Lifetime::Token,
    }
}

/// `aad_auth.session_grace`, in seconds.
pub fn session_grace() -> i64 {
    i64::from(SESSION_GRACE.get())
}

pub fn revoke_live_sessions() -> bool {
    REVOKE_LIVE_SESSIONS.get()
}

/// `aad_auth.failure_delay`.
pub fn failure_delay() -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(FAILURE_DELAY.get()).unwrap_or(0))
}

/// True when `role` (its exact bytes) is listed in `aad_auth.skip_roles`.
pub fn skips(role: &CStr) -> bool {
    // A list that is not valid UTF-8 matches nothing (never a lossy look-alike).
    SKIP_ROLES
        .get()
        .and_then(|t| t.to_str().ok().map(str::to_owned))
        .and_then(|t| list::parse_identifiers(t.trim()).ok())
        .is_some_and(|names| names.iter().any(|n| n.as_bytes() == role.to_bytes()))
}

/// Runs `check` on a string GUC's proposed value; on failure, sets the detail PostgreSQL
/// reports with "invalid value for parameter".
///
/// # Safety
/// `newval` is the check hook's argument: a pointer to a (possibly null) C string.
unsafe fn check_with(newval: *mut *mut c_char, check: impl Fn(&str) -> Result<(), String>) -> bool {
    // SAFETY: PostgreSQL passes a valid pointer to the proposed value (which may be null).
    let value = unsafe {
        match *newval {
            p if p.is_null() => return true,
            p => CStr::from_ptr(p).to_string_lossy().into_owned(),
        }
    };
    match check(value.trim()) {
        Ok(()) => true,
        Err(detail) => {
            let detail = CString::new(detail).unwrap_or_default();
            // SAFETY: GUC_check_errdetail_string is read by guc.c right after the hook returns;
            // the copy lives in ErrorContext, which guc.c's reporting uses.
            unsafe {
                pg_sys::GUC_check_errcode(
                    pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE as i32,
                );
                pg_sys::GUC_check_errdetail_string =
                    pg_sys::MemoryContextStrdup(pg_sys::ErrorContext, detail.as_ptr());
            }
            false
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn check_tenant_id(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: called by PostgreSQL as a string check hook.
    unsafe {
        check_with(newval, |v| {
            match v {
            "" => Ok(()),
            v if v.parse::<Guid>().is_ok() => Ok(()),
            _ => Err("aad_auth.tenant_id must be the tenant's id, a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47.".into()),
        }
        })
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn check_optional_guid(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: called by PostgreSQL as a string check hook.
    unsafe {
        check_with(newval, |v| match v {
            "" => Ok(()),
            v if v.parse::<Guid>().is_ok() => Ok(()),
            _ => {
                Err("The value must be a GUID such as 00000000-0000-0000-0000-000000000000.".into())
            }
        })
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn check_url(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: called by PostgreSQL as a string check hook.
    unsafe {
        check_with(newval, |v| {
            if v.is_empty() {
                Ok(())
            } else {
                aad_auth_core::url::check(v).map_err(|e| format!("{e}."))
            }
        })
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn check_values(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: called by PostgreSQL as a string check hook.
    unsafe { check_with(newval, |v| list::parse_values(v).map(drop)) }
}

#[pg_guard]
unsafe extern "C-unwind" fn check_identifiers(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: called by PostgreSQL as a string check hook.
    unsafe { check_with(newval, |v| list::parse_identifiers(v).map(drop)) }
}
