//! Address settings (`aad_auth.authority`, `aad_auth.jwks_uri`, `aad_auth.graph_endpoint`):
//! parsed, not pattern-matched. `https://` to any host name; plain `http://` only when the
//! host is exactly `localhost`, an address in 127.0.0.0/8 or `[::1]`; never user information,
//! and nothing a URL parser could read two ways (backslashes, percent signs or odd characters
//! in the host, white space, control characters, fragments).

use std::net::Ipv4Addr;

/// The parts of an accepted address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url<'a> {
    pub https: bool,
    /// The host as written (`[::1]` keeps its brackets).
    pub host: &'a str,
    pub port: Option<u16>,
}

/// Parses `url` and applies the rules above.
pub fn parse(url: &str) -> Result<Url<'_>, String> {
    if let Some(c) = url
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '\\' | '#'))
    {
        return Err(format!(
            "the address contains {}, which is not allowed",
            match c {
                '\\' => "a backslash".to_owned(),
                '#' => "a fragment (#)".to_owned(),
                c if c.is_whitespace() => "white space".to_owned(),
                c => format!("the control character U+{:04X}", c as u32),
            }
        ));
    }
    let (https, rest) = if let Some(rest) = strip_prefix_ignore_case(url, "https://") {
        (true, rest)
    } else if let Some(rest) = strip_prefix_ignore_case(url, "http://") {
        (false, rest)
    } else {
        return Err(
            "the address must start with https:// (or http:// to a loopback address)".into(),
        );
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(
            "the address must not contain user information (user@ or user:password@)".into(),
        );
    }
    let (host, port) = split_host_port(authority)?;
    if !https && !is_loopback_host(host) {
        return Err(format!(
            "plain http:// is allowed only to localhost, 127.0.0.0/8 or [::1], not to \"{host}\"; use https://"
        ));
    }
    Ok(Url { https, host, port })
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or("the address has an unterminated [IPv6] host")?;
        let (host, after) = authority.split_at(end + 1);
        let inner = &host[1..host.len() - 1];
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("\"{host}\" is not an IPv6 address"));
        }
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or("unexpected text after the [IPv6] host")?,
                ),
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the address has no host".into());
    }
    if !host.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(format!(
            "the host \"{host}\" may contain only letters, digits, '-' and '.'"
        ));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("the port \"{p}\" is not a number from 1 to 65535")),
        },
    };
    Ok((host, port))
}

/// `localhost`, a dotted-quad address in 127.0.0.0/8, or `[::1]`: exactly those.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host == "[::1]"
        || host.parse::<Ipv4Addr>().is_ok_and(|a| a.octets()[0] == 127)
}

/// Whether `url` is an acceptable address (see [`parse`]).
pub fn check(url: &str) -> Result<(), String> {
    parse(url).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_to_any_host_and_http_to_loopback_are_accepted() {
        for ok in [
            "https://login.microsoftonline.com",
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/discovery/v2.0/keys",
            "HTTPS://graph.microsoft.com/",
            "https://login.microsoftonline.us:443/x?y=1",
            "http://127.0.0.1:8080/keys",
            "http://127.1.2.3/k",
            "http://localhost/k",
            "http://LOCALHOST:9",
            "http://[::1]:9/k",
            "http://[::1]",
            "http://127.0.0.1",
        ] {
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
        }
    }

    #[test]
    fn userinfo_lookalike_hosts_and_odd_characters_are_refused() {
        for bad in [
            "http://127.0.0.1@evil.example/",
            "http://localhost:1@evil.example/",
            "http://127.0.0.1.evil.example/",
            "https://user:pw@login.microsoftonline.com",
            "https://@login.microsoftonline.com",
            "http://127.0.0.1\\@evil.example/",
            "http://127.0.0.1%2f@evil.example/",
            "http://127.0.0.1%40evil.example/",
            "http://127.0.0.1#@evil.example/",
            "http://128.0.0.1/",
            "http://10.0.0.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://127.1/",
            "http://localhost.evil.example/",
            "http://[::2]/",
            "http://[::ffff:8.8.8.8]/",
            "http://[::1/",
            "http://[::1]x/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:65536/",
            "http://127.0.0.1:+80/",
            "http://127.0.0.1:/",
            "ftp://127.0.0.1/",
            "https:///keys",
            "https://exa mple.com/",
            "https://example.com/\n",
            "//example.com",
            "example.com",
            "",
        ] {
            assert!(check(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn parsed_parts() {
        assert_eq!(
            parse("http://[::1]:9/k"),
            Ok(Url {
                https: false,
                host: "[::1]",
                port: Some(9)
            })
        );
        assert_eq!(
            parse("https://login.microsoftonline.com/x").map(|u| (u.https, u.host, u.port)),
            Ok((true, "login.microsoftonline.com", None))
        );
    }

    #[test]
    fn white_space_controls_backslashes_and_fragments_are_refused_anywhere_with_a_reason() {
        for (bad, why) in [
            ("https://login.microsoftonline.com/a b", "white space"),
            (
                "https://login.microsoftonline.com/a\u{7}",
                "control character U+0007",
            ),
            ("https://login.microsoftonline.com/a\\b", "a backslash"),
            (
                "https://login.microsoftonline.com/keys#frag",
                "a fragment (#)",
            ),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn host_names_may_hold_hyphens_and_dots() {
        assert_eq!(
            parse("https://my-tenant.login-proxy.example/keys").map(|u| u.host),
            Ok("my-tenant.login-proxy.example")
        );
        assert!(parse("https://my_host.example/").is_err());
    }
}
