//! Whether a cleartext credential (an access token or a password) may be asked for on this
//! connection: `aad_auth.require_secure_transport`. A token is a bearer credential valid on
//! every server of its audience, so it must not cross a network in the clear.

use std::net::IpAddr;

/// `aad_auth.require_secure_transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureTransport {
    /// Encrypted (SSL or GSS) or from a loopback address (the default).
    On,
    /// Encrypted only, loopback included.
    Strict,
    /// Any connection (unsafe: documented as such).
    Off,
}

impl SecureTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            SecureTransport::On => "on",
            SecureTransport::Strict => "strict",
            SecureTransport::Off => "off",
        }
    }
}

/// Whether the credential may be asked for: `encrypted` is SSL or GSS encryption in use,
/// `peer` the client's address (`None` when it is not an IP address).
pub fn credential_allowed(mode: SecureTransport, encrypted: bool, peer: Option<IpAddr>) -> bool {
    match mode {
        SecureTransport::Off => true,
        SecureTransport::Strict => encrypted,
        SecureTransport::On => encrypted || peer.is_some_and(is_loopback),
    }
}

/// 127.0.0.0/8, `::1`, and IPv4-mapped loopback (`::ffff:127.x.y.z`).
pub fn is_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SecureTransport::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn on_allows_encrypted_or_loopback() {
        assert!(credential_allowed(On, false, ip("127.0.0.1")));
        assert!(credential_allowed(On, false, ip("127.255.0.9")));
        assert!(credential_allowed(On, false, ip("::1")));
        assert!(credential_allowed(On, false, ip("::ffff:127.0.0.1")));
        assert!(credential_allowed(On, true, ip("203.0.113.5")));
        assert!(!credential_allowed(On, false, ip("203.0.113.5")));
        assert!(!credential_allowed(On, false, ip("10.1.2.3")));
        assert!(!credential_allowed(On, false, ip("::ffff:10.1.2.3")));
        assert!(!credential_allowed(On, false, ip("::2")));
        assert!(!credential_allowed(On, false, None));
    }

    #[test]
    fn strict_allows_encrypted_only_loopback_included() {
        assert!(!credential_allowed(Strict, false, ip("127.0.0.1")));
        assert!(!credential_allowed(Strict, false, ip("::1")));
        assert!(credential_allowed(Strict, true, ip("127.0.0.1")));
        assert!(credential_allowed(Strict, true, ip("198.51.100.1")));
    }

    #[test]
    fn off_allows_anything() {
        assert!(credential_allowed(Off, false, ip("198.51.100.1")));
        assert!(credential_allowed(Off, false, None));
    }

    #[test]
    fn modes_are_named_as_the_setting_spells_them() {
        assert_eq!(
            [On.as_str(), Strict.as_str(), Off.as_str()],
            ["on", "strict", "off"]
        );
    }
}
