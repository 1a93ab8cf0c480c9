//! Entra object and tenant ids: GUIDs in their canonical 8-4-4-4-12 form.

use std::fmt;
use std::str::FromStr;

/// A GUID, compared by value; displayed lower case and hyphenated, as Entra writes them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid([u8; 16]);

impl Guid {
    /// 00000000-0000-0000-0000-000000000000.
    pub const NIL: Guid = Guid([0; 16]);
}

/// The text was not a GUID in `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAGuid;

impl FromStr for Guid {
    type Err = NotAGuid;

    fn from_str(s: &str) -> Result<Self, NotAGuid> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return Err(NotAGuid);
        }
        let mut out = [0u8; 16];
        let mut nibbles = 0usize;
        for (i, &c) in b.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return Err(NotAGuid);
                }
                continue;
            }
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(NotAGuid),
            };
            out[nibbles / 2] |= if nibbles.is_multiple_of(2) { v << 4 } else { v };
            nibbles += 1;
        }
        Ok(Guid(out))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_the_canonical_form() {
        let g: Guid = "5D7C1F3E-2A4B-4C8D-9E0F-A1B2C3D4E5F6".parse().unwrap();
        assert_eq!(format!("{g:?}"), "5d7c1f3e-2a4b-4c8d-9e0f-a1b2c3d4e5f6");
    }

    #[test]
    fn guid_round_trips_lower_case() {
        let g: Guid = "0E1F2A3B-4C5D-6E7F-8091-A2B3C4D5E6F7".parse().unwrap();
        assert_eq!(g.to_string(), "0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7");
        assert_eq!(g, "0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7".parse().unwrap());
    }

    #[test]
    fn guid_rejects_other_shapes() {
        for bad in [
            "",
            "0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7",
            "{0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7}",
            "0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f",
            "0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6fg",
            "0e1f2a3b-4c5d-6e7f+8091-a2b3c4d5e6f7",
            "0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7 ",
            "0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6é",
        ] {
            assert_eq!(bad.parse::<Guid>(), Err(NotAGuid), "{bad:?}");
        }
    }
}
