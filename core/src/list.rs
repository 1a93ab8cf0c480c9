//! Comma-separated list settings (`aad_auth.audiences`, `aad_auth.issuers`, `aad_auth.skip_roles`).

/// Splits a list of plain values: items trimmed, empty list for empty text; an empty item
/// (`a,,b`) is an error.
pub fn parse_values(text: &str) -> Result<Vec<String>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|item| match item.trim() {
            "" => Err("the list has an empty item".to_owned()),
            v => Ok(v.to_owned()),
        })
        .collect()
}

/// Splits a list of role names the way PostgreSQL reads identifier lists: unquoted names are
/// folded to lower case, double-quoted names are kept as written (`""` is a quote). As in
/// PostgreSQL (multibyte encodings), only ASCII letters are folded and only ASCII white space
/// separates: `Ü` stays `Ü`, and the Kelvin sign is not a `k`.
pub fn parse_identifiers(text: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars
            .next_if(|c| c.is_ascii_whitespace() || *c == '\x0b')
            .is_some()
        {}
        if chars.peek().is_none() {
            if names.is_empty() {
                return Ok(names);
            }
            return Err("the list ends with a comma".into());
        }
        let mut name = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => return Err("a quoted name is not closed".into()),
                    Some('"') if chars.next_if_eq(&'"').is_some() => name.push('"'),
                    Some('"') => break,
                    Some(c) => name.push(c),
                }
            }
        } else {
            while let Some(c) =
                chars.next_if(|&c| c != ',' && !c.is_ascii_whitespace() && c != '\x0b')
            {
                if c == '"' {
                    return Err("a quote inside an unquoted name".into());
                }
                name.push(c.to_ascii_lowercase());
            }
        }
        if name.is_empty() {
            return Err("the list has an empty name".into());
        }
        names.push(name);
        while chars
            .next_if(|c| c.is_ascii_whitespace() || *c == '\x0b')
            .is_some()
        {}
        match chars.next() {
            None => return Ok(names),
            Some(',') => continue,
            Some(_) => return Err("names must be separated by commas".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_values_trim_and_refuse_empty_items() {
        assert_eq!(parse_values(" a , b/ ").unwrap(), vec!["a", "b/"]);
        assert_eq!(parse_values("  ").unwrap(), Vec::<String>::new());
        assert!(parse_values("a,,b").is_err());
        assert!(parse_values("a,").is_err());
    }

    #[test]
    fn list_identifiers_fold_ascii_letters_only() {
        assert_eq!(
            parse_identifiers("Übermon, ÜBER, \u{212a}elvin").unwrap(),
            vec!["Übermon", "Über", "\u{212a}elvin"]
        );
        // only ASCII white space separates names
        assert_eq!(parse_identifiers("a\u{a0}b").unwrap(), vec!["a\u{a0}b"]);
    }

    #[test]
    fn list_identifiers_fold_unquoted_and_keep_quoted() {
        assert_eq!(
            parse_identifiers(r#"Postgres, "Mixed Case", "a""b""#).unwrap(),
            vec!["postgres", "Mixed Case", "a\"b"]
        );
        assert_eq!(parse_identifiers("").unwrap(), Vec::<String>::new());
        for bad in ["a,", ",a", "a b", "\"open", "a\"b", "a,,b"] {
            assert!(parse_identifiers(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn list_identifiers_allow_white_space_around_the_commas() {
        assert_eq!(
            parse_identifiers("monitor , \"Backup Tool\"\t,\x0bops ").unwrap(),
            vec!["monitor", "Backup Tool", "ops"]
        );
    }
}
