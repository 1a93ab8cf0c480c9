//! Reading pg_hba.conf well enough to tell the DBA, at start-up, which lines aad_auth governs:
//! host-type lines (`host`, `hostssl`, `hostnossl`, `hostgssenc`, `hostnogssenc`) whose method
//! is `trust`.

/// One governed line: its number and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovernedLine {
    pub number: usize,
    pub text: String,
}

/// The host-type `trust` lines of a pg_hba.conf text.
pub fn governed_lines(conf: &str) -> Vec<GovernedLine> {
    conf.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let line = raw.split('#').next().unwrap_or("").trim();
            let fields: Vec<&str> = line.split_whitespace().collect();
            let conn = *fields.first()?;
            if !conn.starts_with("host") {
                return None;
            }
            // host DATABASE USER ADDRESS [MASK] METHOD [OPTIONS]: the method is the first
            // field after the address that is not an IP mask.
            let method = fields
                .iter()
                .skip(4)
                .find(|f| !f.contains('.') && !f.contains(':') || f.contains('='))
                .or(fields.get(4))?;
            (*method == "trust").then(|| GovernedLine {
                number: i + 1,
                text: line.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hba_governs_host_trust_lines_only() {
        let conf = "# comment\n\
                    local all all trust\n\
                    host all all 127.0.0.1/32 trust\n\
                    hostssl all all 0.0.0.0/0 trust # entra\n\
                    host all all 10.0.0.0 255.0.0.0 trust\n\
                    host all all ::1/128 scram-sha-256\n\
                    hostnossl all all 0.0.0.0/0 reject\n";
        let lines: Vec<usize> = governed_lines(conf).iter().map(|l| l.number).collect();
        assert_eq!(lines, vec![3, 4, 5]);
        assert_eq!(
            governed_lines(conf)[1].text,
            "hostssl all all 0.0.0.0/0 trust"
        );
    }
}
