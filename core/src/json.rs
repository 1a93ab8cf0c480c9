//! Strict JSON objects: duplicate keys at the top level are refused rather than
//! silently resolved (a token with two `aud` claims must not mean whichever one we read).

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

struct StrictObject(Map<String, Value>);

const DUPLICATE: &str = "duplicate key";

impl<'de> serde::Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictObject, A::Error> {
                let mut map = Map::new();
                while let Some(key) = access.next_key::<String>()? {
                    if map.contains_key(&key) {
                        return Err(serde::de::Error::custom(format_args!(
                            "{DUPLICATE} \"{}\"",
                            crate::error::excerpt(&key)
                        )));
                    }
                    let value: Value = access.next_value()?;
                    map.insert(key, value);
                }
                Ok(StrictObject(map))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses `bytes` as one JSON object with unique top-level keys. The error text is safe to log:
/// it says what and where, never echoes the input.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    serde_json::from_slice::<StrictObject>(bytes)
        .map(|o| o.0)
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                // Only our own text (duplicate key) is safe to pass on: serde's "invalid type"
                // errors quote the input (`invalid type: string "…"`).
                let text = e.to_string();
                let text = text.split(" at line").next().unwrap_or_default();
                if text.starts_with(DUPLICATE) {
                    text.to_owned()
                } else {
                    "not a JSON object".to_owned()
                }
            }
            _ => format!("not valid JSON (column {})", e.column()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_duplicate_top_level_key_is_refused() {
        let e = parse_object(br#"{"aud":"a","aud":"b"}"#).unwrap_err();
        assert!(e.contains("duplicate key \"aud\""), "{e}");
    }

    #[test]
    fn json_must_be_an_object() {
        assert!(parse_object(b"[1,2]").is_err());
        assert!(parse_object(b"\"x\"").is_err());
        let e = parse_object(b"\"secret-text\"").unwrap_err();
        assert!(!e.contains("secret-text"), "{e}");
        assert!(parse_object(b"{").is_err());
        assert!(parse_object(b"{} trailing").is_err());
        assert!(parse_object(b"{\"a\":1}").is_ok());
    }
}
