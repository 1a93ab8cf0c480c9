//! The documentation (issue 12, item 3) stays true:
//! - every relative link and anchor in README.md, SECURITY.md, CHANGELOG.md and docs/ resolves;
//! - docs/configuration.md's settings table is what `pg_settings` of a running server says (the
//!   test writes it with AAD_AUTH_BLESS_DOCS=1), every setting has exactly one section, whose
//!   `Type:` and `Change:` lines agree with the server, and no section names a setting that
//!   does not exist;
//! - the README's minimal configuration, first principal and connection work as written: its
//!   postgresql.conf and pg_hba.conf blocks configure a cluster, its SQL block runs as the
//!   superuser over the `peer` socket line, and the principal it creates signs in with a token
//!   over SSL (only the key set is local: the README's server fetches it from Entra ID);
//! - every Python block compiles, every shell block parses (`bash -n`) and every JavaScript
//!   block parses (`node --check`).

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pages: README.md, SECURITY.md, CHANGELOG.md and docs/*.md.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = ["README.md", "SECURITY.md", "CHANGELOG.md"]
        .iter()
        .map(|p| repo_root().join(p))
        .collect();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

struct Block {
    info: String,
    text: String,
    line: usize,
}

/// A page split into its prose lines (code blocks blanked) and its fenced code blocks.
fn parse(text: &str) -> (Vec<String>, Vec<Block>) {
    let mut prose = Vec::new();
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut open, fence) {
            (None, true) => {
                open = Some(Block {
                    info: line.trim_start().trim_start_matches('`').trim().to_owned(),
                    text: String::new(),
                    line: n + 1,
                });
                prose.push(String::new());
            }
            (Some(_), true) => {
                blocks.extend(open.take());
                prose.push(String::new());
            }
            (Some(b), false) => {
                b.text.push_str(line);
                b.text.push('\n');
                prose.push(String::new());
            }
            (None, false) => prose.push(line.to_owned()),
        }
    }
    (prose, blocks)
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces to `-`, link syntax reduced to its text.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut chars = heading.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ']' && chars.peek() == Some(&'(') {
            for d in chars.by_ref() {
                if d == ')' {
                    break;
                }
            }
            continue;
        }
        text.push(c);
    }
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(page: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(page).unwrap_or_default();
    let (prose, _) = parse(&text);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for line in prose {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let s = slug(line[hashes..].trim().trim_end_matches('#'));
            let n = seen.entry(s.clone()).or_insert(0);
            out.insert(if *n == 0 {
                s.clone()
            } else {
                format!("{s}-{n}")
            });
            *n += 1;
        }
    }
    out
}

/// The targets of `[text](target)` links in prose, outside inline code.
fn links(prose: &[String]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose.iter().enumerate() {
        let mut plain = String::new();
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                plain.push(c);
            }
        }
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let end = after.find([')', ' ']).unwrap_or(after.len());
            out.push((n + 1, after[..end].to_owned()));
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut bad = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read a page");
        let (prose, _) = parse(&text);
        for (line, target) in links(&prose) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let dest = if path.is_empty() {
                page.clone()
            } else {
                page.parent().expect("parent").join(path)
            };
            let shown = page
                .strip_prefix(repo_root())
                .unwrap_or(&page)
                .display()
                .to_string();
            if !dest.exists() {
                bad.push(format!("{shown}:{line}: no such file: {target}"));
            } else if !fragment.is_empty()
                && dest.extension().is_some_and(|x| x == "md")
                && !anchors(&dest).contains(fragment)
            {
                bad.push(format!("{shown}:{line}: no such heading: {target}"));
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn the_readme_is_short_and_links_every_page() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines: keep it under about 200"
    );
    for page in pages()
        .iter()
        .filter(|p| p.parent() == Some(&repo_root().join("docs")))
    {
        let name = format!(
            "docs/{}",
            page.file_name().unwrap_or_default().to_string_lossy()
        );
        assert!(
            readme.contains(&format!("]({name}")),
            "README.md does not link {name}"
        );
    }
}

/// The aad_auth settings as the server reports them.
struct Setting {
    name: String,
    vartype: String,
    boot_val: String,
    min_val: String,
    max_val: String,
    enumvals: String,
    unit: String,
    context: String,
    short_desc: String,
}

fn settings(c: &Cluster) -> Vec<Setting> {
    let rows = c.admin(
        "SELECT concat_ws(E'\\x1f', name, vartype, coalesce(boot_val, ''), coalesce(min_val, ''), \
         coalesce(max_val, ''), coalesce(array_to_string(enumvals, ', '), ''), \
         coalesce(unit, ''), context, short_desc) FROM pg_settings \
         WHERE name LIKE 'aad\\_auth.%' OR name LIKE 'pgaadauth.%' ORDER BY name",
    );
    rows.lines()
        .map(|row| {
            let f: Vec<&str> = row.split('\x1f').collect();
            assert_eq!(f.len(), 9, "{row}");
            Setting {
                name: f[0].into(),
                vartype: f[1].into(),
                boot_val: f[2].into(),
                min_val: f[3].into(),
                max_val: f[4].into(),
                enumvals: f[5].into(),
                unit: f[6].into(),
                context: f[7].into(),
                short_desc: f[8].into(),
            }
        })
        .collect()
}

fn change(context: &str) -> &'static str {
    match context {
        "sighup" => "reload",
        "postmaster" => "restart",
        "superuser" => "SET (superusers)",
        "user" => "SET",
        _ => "see below",
    }
}

/// The settings table of docs/configuration.md, generated.
fn table(settings: &[Setting]) -> String {
    let cell = |s: &str| {
        if s.is_empty() {
            "".to_owned()
        } else {
            format!("`{}`", s.replace('|', "\\|"))
        }
    };
    let mut out = String::from(
        "| setting | type | default | range or values | unit | takes effect | what it does |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for s in settings {
        let range = match s.vartype.as_str() {
            "integer" | "real" => format!("{} to {}", s.min_val, s.max_val),
            "enum" => s.enumvals.clone(),
            "bool" => "on, off".into(),
            _ => String::new(),
        };
        out.push_str(&format!(
            "| [{name}](#{anchor}) | {vartype} | {default} | {range} | {unit} | {change} | {desc} |\n",
            name = s.name,
            anchor = slug(&s.name),
            vartype = s.vartype,
            default = if s.boot_val.is_empty() { "(empty)".into() } else { cell(&s.boot_val) },
            unit = s.unit,
            change = change(&s.context),
            desc = s.short_desc.replace('|', "\\|"),
        ));
    }
    out
}

const BEGIN: &str = "<!-- settings-table:begin -->\n";
const END: &str = "<!-- settings-table:end -->";

#[test]
fn the_configuration_reference_matches_the_server() {
    let c = Cluster::start(Setup::default());
    let settings = settings(&c);
    assert!(settings.len() >= 20, "the server reports its settings");
    let path = repo_root().join("docs/configuration.md");
    let doc = std::fs::read_to_string(&path).expect("docs/configuration.md");
    let start = doc.find(BEGIN).expect("the table's begin marker") + BEGIN.len();
    let end = doc.find(END).expect("the table's end marker");
    let want = table(&settings);
    if std::env::var_os("AAD_AUTH_BLESS_DOCS").is_some() {
        let mut new = doc.clone();
        new.replace_range(start..end, &want);
        std::fs::write(&path, new).expect("write docs/configuration.md");
    } else {
        assert_eq!(
            &doc[start..end],
            want,
            "docs/configuration.md's settings table is not what the server says: \
             AAD_AUTH_BLESS_DOCS=1 make test-e2e E2E_TESTS=docs rewrites it"
        );
    }

    // One section per setting, agreeing with the server; no section for a setting that is not.
    let (prose, _) = parse(&doc);
    let sections: Vec<(String, Vec<String>)> = prose
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.strip_prefix("### ").map(|h| (i, h.trim().to_owned())))
        .filter(|(_, h)| h.starts_with("aad_auth.") || h.starts_with("pgaadauth."))
        .map(|(i, h)| {
            let body = prose[i + 1..]
                .iter()
                .take_while(|l| !l.starts_with('#'))
                .cloned()
                .collect();
            (h, body)
        })
        .collect();
    let known: BTreeSet<&str> = settings.iter().map(|s| s.name.as_str()).collect();
    for (heading, _) in &sections {
        assert!(
            known.contains(heading.as_str()),
            "a section for an unknown setting: {heading}"
        );
    }
    for s in &settings {
        let found: Vec<&Vec<String>> = sections
            .iter()
            .filter(|(h, _)| *h == s.name)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(found.len(), 1, "exactly one `### {}` section", s.name);
        let field = |name: &str| {
            found[0]
                .iter()
                .find_map(|l| l.strip_prefix(&format!("- {name}: ")))
                .unwrap_or_else(|| panic!("`- {name}:` in the section of {}", s.name))
                .to_owned()
        };
        let change_line = field("Change");
        assert!(
            change_line
                .trim_start_matches("**")
                .starts_with(change(&s.context)),
            "{}: the section says `Change: {change_line}`, the server's context is {}",
            s.name,
            s.context
        );
        let default_line = field("Default");
        let default_ok = if s.boot_val.is_empty() {
            default_line.contains("empty")
        } else {
            default_line.contains(&s.boot_val)
        };
        assert!(
            default_ok,
            "{}: the section says `Default: {default_line}`, the server's default is {:?}",
            s.name, s.boot_val
        );
        if s.vartype == "integer" {
            let range_line = field("Range");
            let numbers: Vec<&str> = range_line
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty())
                .collect();
            assert!(
                numbers.contains(&s.min_val.as_str()) && numbers.contains(&s.max_val.as_str()),
                "{}: the section says `Range: {range_line}`, the server's range is {} to {}",
                s.name,
                s.min_val,
                s.max_val
            );
        }
        let type_line = field("Type");
        let word = match s.vartype.as_str() {
            "bool" => "boolean",
            other => other,
        };
        assert!(
            type_line.starts_with(word),
            "{}: the section says `Type: {type_line}`, the server says {}",
            s.name,
            s.vartype
        );
    }
}

/// The one block of `info` in the README's section `heading`.
fn readme_block(heading: &str, info: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("README.md has a section `## {heading}`"));
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let (_, blocks) = parse(section);
    let found: Vec<&Block> = blocks.iter().filter(|b| b.info == info).collect();
    assert_eq!(found.len(), 1, "one ```{info} block in README's {heading}");
    found[0].text.clone()
}

/// psql as the `postgres` operating-system user over the socket, as `sudo -u postgres psql`.
fn psql_as_postgres(c: &Cluster, sql: &str) -> Result<String, String> {
    psql_as_os_postgres(&c.dir, c.port, sql)
}

#[test]
fn the_readme_configuration_signs_a_principal_in() {
    if !server_has_ssl() {
        eprintln!("skipped: this server build has no SSL, and the README's lines are hostssl");
        return;
    }
    assert!(
        is_root(),
        "the README's `local ... peer` line needs the postgres OS user: run as root"
    );
    let conf = readme_block("Minimal configuration", "ini");
    let hba = readme_block("Minimal configuration", "conf");
    let sql = readme_block("First principal", "sql");
    let connect = readme_block("Connecting", "sh");

    // The README's postgresql.conf lines, last, so they win; the cluster provides the
    // certificate files `ssl = on` needs and the key set file.
    let c = Cluster::start(Setup {
        ssl: true,
        conf: vec![conf.clone()],
        ..Setup::default()
    });
    std::fs::write(c.data().join("pg_hba.conf"), &hba).expect("pg_hba.conf");
    c.restart();
    assert!(
        c.log().contains("aad_auth: governs")
            && c.log()
                .contains("hostssl  all       all   0.0.0.0/0   trust"),
        "the README's trust lines are governed: {}",
        c.log()
    );
    let tenant = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("aad_auth.tenant_id = '"))
        .and_then(|v| v.split('\'').next())
        .expect("the README sets aad_auth.tenant_id")
        .to_owned();
    assert_eq!(
        psql_as_postgres(&c, "SHOW aad_auth.tenant_id").as_deref(),
        Ok(tenant.as_str())
    );
    psql_as_postgres(&c, &sql).unwrap_or_else(|e| panic!("the README's SQL: {e}"));

    // The README's psql connection, with its host replaced by this cluster.
    let conninfo = connect
        .lines()
        .find_map(|l| l.strip_prefix("psql \"").and_then(|r| r.strip_suffix('"')))
        .expect("the README connects with psql \"...\"")
        .to_owned();
    let role = conninfo
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("user="))
        .expect("user=")
        .to_owned();
    let oid = sql
        .split('\'')
        .find(|s| s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4)
        .expect("the README's principal has an object id")
        .to_owned();
    // It verifies the server before sending a token; here the server is this cluster, named
    // localhost by its self-signed certificate, which stands in for the system's CAs.
    assert!(
        conninfo.contains("sslmode=verify-full") && conninfo.contains("sslrootcert=system"),
        "the README connects with sslmode=verify-full sslrootcert=system: {conninfo}"
    );
    let conninfo = conninfo
        .replace(
            "host=db.example.com",
            &format!("host=localhost hostaddr=127.0.0.1 port={}", c.port),
        )
        .replace(
            "sslrootcert=system",
            &format!("sslrootcert={}", c.dir.join("server.crt").display()),
        );
    let sign_in = |token: &str| {
        outcome(psql_at(
            &conninfo,
            token,
            "SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
    };
    let token = mint(
        key(),
        &header(&key().kid),
        &Claims::user(&tenant, &oid, &role),
    );
    assert_eq!(
        sign_in(&token).as_deref(),
        Ok(format!("{role} true").as_str())
    );
    let other = mint(
        key(),
        &header(&key().kid),
        &Claims::user(TENANT, &oid, &role),
    );
    assert!(
        sign_in(&other).is_err(),
        "a token of another tenant is refused"
    );
    assert!(sign_in("not a token").is_err());
    // The harness's own socket line is back for its crash check.
    std::fs::write(
        c.data().join("pg_hba.conf"),
        format!("local all postgres trust\n{hba}"),
    )
    .expect("pg_hba.conf");
    psql_as_postgres(&c, "SELECT pg_reload_conf()").expect("reload");
    std::thread::sleep(std::time::Duration::from_millis(300));
    c.assert_no_crash();
}

/// Runs `check` on every block of one of `infos` in every page: Ok, or what it printed.
fn check_blocks(infos: &[&str], check: impl Fn(&Path) -> Result<(), String>) -> usize {
    let dir = fresh_dir("doc_blocks");
    let mut bad = Vec::new();
    let mut n = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read");
        let (_, blocks) = parse(&text);
        for b in blocks.iter().filter(|b| infos.contains(&b.info.as_str())) {
            n += 1;
            let ext = match b.info.as_str() {
                "python" => "py",
                "js" | "javascript" => "js",
                _ => "sh",
            };
            let file = dir.join(format!("block{n}.{ext}"));
            std::fs::write(&file, &b.text).expect("write a block");
            if let Err(e) = check(&file) {
                let shown = page
                    .strip_prefix(repo_root())
                    .unwrap_or(&page)
                    .display()
                    .to_string();
                bad.push(format!("{shown}:{}: {e}\n{}", b.line, b.text));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    n
}

fn ran(mut cmd: Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn every_code_sample_parses() {
    let python = check_blocks(&["python"], |f| {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"])
            .arg(f);
        ran(cmd)
    });
    let shell = check_blocks(&["sh", "bash", "shell"], |f| {
        let mut cmd = Command::new("bash");
        cmd.arg("-n").arg(f);
        ran(cmd)
    });
    let js = check_blocks(&["js", "javascript"], |f| {
        let mut cmd = Command::new("node");
        cmd.arg("--check").arg(f);
        ran(cmd)
    });
    eprintln!("parsed {python} Python, {shell} shell and {js} JavaScript blocks");
    assert!(python > 0 && shell > 0 && js > 0);
}
