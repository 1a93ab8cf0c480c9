//! The HTTP client the background worker uses (and only it): https verified against the
//! system's certificate store, plain http only to loopback addresses, no redirects, no proxy,
//! bounded in time and in the size of what it reads.

use std::time::Duration;

/// Time allowed to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a whole request, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Refuses addresses that are neither https nor loopback http, or that carry user
/// information or anything a URL parser could read two ways (`aad_auth_core::url`).
pub fn check_address(url: &str) -> Result<(), String> {
    aad_auth_core::url::check(url).map_err(|e| format!("refusing the address: {e}"))
}

pub fn agent() -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(REQUEST_TIMEOUT))
        .max_redirects(0)
        // Never a proxy from the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY): it would
        // carry loopback requests elsewhere and let whoever runs it serve the signing keys.
        .proxy(None)
        .http_status_as_error(false)
        .tls_config(tls)
        .user_agent("aad_auth")
        .build()
        .into()
}

/// Reads a response: its status and at most `limit` bytes of body.
pub fn read(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    limit: usize,
) -> Result<(u16, Vec<u8>), String> {
    let mut response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(limit as u64)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved characters pass).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
