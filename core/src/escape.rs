//! Quoting client-chosen text for log lines and messages: whatever bytes a client sends as a
//! role, database, host or claim, the quoted form can neither end its field nor start a line.

/// `text` between double quotes, escaped: `"` → `\"`, `\` → `\\`, newline → `\n`, carriage
/// return → `\r`, tab → `\t`; any other control character, invisible format character (line
/// separators, bidirectional controls, zero-width characters), and any byte that is not part of
/// valid UTF-8, → `\xNN` per byte. Everything else (printable UTF-8) is kept as is.
pub fn quoted(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    push_escaped(&mut out, text);
    out.push('"');
    out
}

/// [`quoted`] without the surrounding quotes: for a whole message whose fields are already
/// quoted, so that it still fits on one line.
pub fn escaped(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    push_escaped(&mut out, text);
    out
}

/// A name (role) as SQL output shows it: exactly as it is when it is valid UTF-8 with no
/// backslash, control or invisible character; otherwise [`escaped`], so that a name with hidden
/// characters cannot pass for another, and a shown backslash always starts an escape.
pub fn shown_name(text: &[u8]) -> String {
    match std::str::from_utf8(text) {
        Ok(s) if !s.chars().any(|c| c == '\\' || c.is_control() || hidden(c)) => s.to_owned(),
        _ => escaped(text),
    }
}

/// `text` with only its control characters escaped (`\n`, `\r`, `\t`, `\xNN`): for details
/// that hold quoted fields already, so that they stay on one line.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hidden(c) => push_bytes(&mut out, c.to_string().as_bytes()),
            c => out.push(c),
        }
    }
    out
}

fn push_escaped(out: &mut String, mut text: &[u8]) {
    while !text.is_empty() {
        let (valid, rest) = match std::str::from_utf8(text) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (ok, bad) = text.split_at(e.valid_up_to());
                // SAFETY-free: `ok` is valid UTF-8 by construction of `valid_up_to`.
                (std::str::from_utf8(ok).unwrap_or_default(), bad)
            }
        };
        for c in valid.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if hidden(c) => push_bytes(out, c.to_string().as_bytes()),
                c => out.push(c),
            }
        }
        // `rest` starts with an invalid sequence: escape its first byte and go on after it.
        if let Some((&bad, after)) = rest.split_first() {
            push_bytes(out, &[bad]);
            text = after;
        } else {
            text = rest;
        }
    }
}

/// Control characters, and the characters that break or reorder a line without being seen:
/// line and paragraph separators, bidirectional controls, zero-width and other format
/// characters.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

fn push_bytes(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push_str(&format!("\\x{b:02x}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_name_is_exact_unless_it_hides_something() {
        assert_eq!(shown_name(b"alice@contoso.com"), "alice@contoso.com");
        assert_eq!(shown_name("Müller \"Ops\"".as_bytes()), "Müller \"Ops\"");
        assert_eq!(shown_name(b"caf\xe9"), "caf\\xe9");
        assert_eq!(
            shown_name("alice\u{200b}@contoso.com".as_bytes()),
            "alice\\xe2\\x80\\x8b@contoso.com"
        );
        assert_eq!(shown_name(b"a\\xe9"), "a\\\\xe9");
        assert_eq!(shown_name(b"tab\there"), "tab\\there");
    }

    #[test]
    fn quoting_keeps_printable_text() {
        assert_eq!(quoted(b"alice@contoso.com"), "\"alice@contoso.com\"");
        assert_eq!(quoted("Zoë #EXT# 名".as_bytes()), "\"Zoë #EXT# 名\"");
        assert_eq!(quoted(b""), "\"\"");
    }

    #[test]
    fn quoting_escapes_quotes_backslashes_and_line_breaks() {
        assert_eq!(quoted(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quoted(b"x\ny\rz\tw"), r#""x\ny\rz\tw""#);
        let forged = quoted(b"x\" \n2026-01-01 LOG:  aad_auth: sign-in accepted: role=\"v\"");
        assert!(!forged.contains('\n'));
        // the only unescaped quotes are the two that delimit the field
        let inner = &forged[1..forged.len() - 1];
        assert!(inner
            .char_indices()
            .filter(|(_, c)| *c == '"')
            .all(|(i, _)| inner.as_bytes()[i - 1] == b'\\'));
    }

    #[test]
    fn quoting_escapes_control_characters_and_invalid_utf8_as_bytes() {
        assert_eq!(quoted(b"m\xfcller"), r#""m\xfcller""#);
        assert_eq!(quoted(b"a\x00b\x1bc\x7f"), r#""a\x00b\x1bc\x7f""#);
        assert_eq!(quoted("\u{85}".as_bytes()), r#""\xc2\x85""#);
        assert_eq!(quoted(b"\xff\xfe"), r#""\xff\xfe""#);
        // the replacement character is itself valid UTF-8 and stays distinct from a raw byte
        assert_ne!(quoted("m\u{fffd}ller".as_bytes()), quoted(b"m\xfcller"));
        assert_eq!(escaped(b"a\nb"), "a\\nb");
        // invisible characters that reorder or break a line are escaped too
        assert_eq!(
            quoted("a\u{202e}b\u{2028}c\u{200b}".as_bytes()),
            r#""a\xe2\x80\xaeb\xe2\x80\xa8c\xe2\x80\x8b""#
        );
        assert_eq!(one_line("x\u{2029}y"), "x\\xe2\\x80\\xa9y");
        assert_eq!(
            one_line("Role \"a\nb\" does not exist.\x1b"),
            "Role \"a\\nb\" does not exist.\\x1b"
        );
    }
}
