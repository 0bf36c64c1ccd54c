//! `check -c FILE`: validates the config (and, through [`check_rules`], every rule) and
//! prints a summary; exit 1 with one message naming the file, line, column and key on any
//! error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::CheckArgs;
use crate::config::{Config, ConfigError};
use crate::dispatch::Dispatcher;
use crate::rules::RuleSet;

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            let text = std::fs::read_to_string(&args.config).unwrap_or_default();
            eprintln!("error: {}", describe(&e, &text));
            return Ok(ExitCode::from(1));
        }
    };
    let rule_files = match rule_files(&config) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let rules = match check_rules(&config) {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    print!("{}", summary(&config, &rule_files, rules.as_deref()));
    Ok(ExitCode::SUCCESS)
}

/// The rule and channel check: compiles every rule file the config names and builds
/// every route and channel. Returns the rule set's summary for the report, or every error
/// found, one per line (file, rule, position).
pub fn check_rules(config: &Config) -> Result<Option<String>, String> {
    let rules = RuleSet::load(config).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\nerror: ")
    })?;
    crate::dispatch::channels::validate(config)?;
    check_channels(config)?;
    Ok(Some(rules.summary().to_string()))
}

/// Builds every route and channel as `run` would. Some channels' clients (SMTP's pool)
/// belong to an async runtime from the moment they are built, so outside of one (`check`
/// is a plain command) they are built inside a small runtime of their own.
pub fn check_channels(config: &Config) -> Result<(), String> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Dispatcher::check(config).map_err(|e| e.to_string());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime to check the channels: {e}"))?;
    let _inside = runtime.enter();
    Dispatcher::check(config).map_err(|e| e.to_string())
}

/// Each `rules:` entry with the files it matches. An entry without wildcards must exist.
pub fn rule_files(config: &Config) -> Result<Vec<(String, Vec<PathBuf>)>, String> {
    config
        .rules
        .iter()
        .map(|pattern| {
            let resolved = config.resolve(pattern);
            let files = if has_wildcards(pattern) {
                expand_glob(&resolved)
            } else if resolved.is_file() {
                vec![resolved.clone()]
            } else {
                return Err(format!(
                    "{}: rules: `{pattern}` does not exist ({})",
                    config.path.display(),
                    resolved.display()
                ));
            };
            Ok((pattern.clone(), files))
        })
        .collect()
}

fn has_wildcards(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expands `*` and `?` in any path component (`rules/*.yaml`, `rules/*/fuel.yaml`),
/// sorted; `**` is read as `*` (one level).
pub fn expand_glob(pattern: &Path) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::new()];
    for component in pattern.components() {
        let part = component.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for base in &current {
            if has_wildcards(&part) {
                let dir = if base.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    base.as_path()
                };
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    // Hidden files only when the pattern asks for them, as shells do.
                    if name.starts_with('.') && !part.starts_with('.') {
                        continue;
                    }
                    if wildcard_match(part.as_bytes(), name.as_bytes()) {
                        next.push(base.join(&*name));
                    }
                }
            } else {
                next.push(base.join(component.as_os_str()));
            }
        }
        current = next;
    }
    let mut files: Vec<PathBuf> = current.into_iter().filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// `*` any run of characters, `?` one character; other bytes match themselves.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                while pattern.get(p) == Some(&b'*') {
                    p += 1;
                }
                star = Some((p, n));
            }
            Some(b'?') => {
                p += 1;
                n += 1;
            }
            Some(c) if *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// The report printed on success.
fn summary(config: &Config, rule_files: &[(String, Vec<PathBuf>)], rules: Option<&str>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}: ok", config.path.display());
    for entry in config.sources() {
        // The shorthand's source reads as before; each of several says its name.
        let source = if config.sources().len() == 1 && entry.name() == crate::config::DEFAULT_SOURCE
        {
            "source".to_string()
        } else {
            format!("source {}", entry.name())
        };
        match (&entry.navixy, &entry.simulator) {
            (Some(n), _) => {
                let subscribe: Vec<String> = n
                    .subscribe
                    .iter()
                    .map(|e| {
                        serde_json::to_value(e)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default()
                    })
                    .collect();
                let trackers = match &n.trackers {
                    crate::config::TrackerSelection::All => "all".to_string(),
                    crate::config::TrackerSelection::Selected(ids) => {
                        format!("{} selected", ids.len())
                    }
                };
                let auth = if n.hash.as_ref().is_some_and(|h| !h.is_empty()) {
                    "hash"
                } else {
                    "login + password"
                };
                let _ = writeln!(
                    s,
                    "{source}: navixy {} (auth: {auth}, trackers: {trackers}, subscribe: {}, timezone: {})",
                    n.api_url,
                    subscribe.join(", "),
                    n.timezone
                );
            }
            (None, Some(sim)) => {
                let _ = writeln!(
                    s,
                    "{source}: simulator ({} trackers, seed {}, speed {}x)",
                    sim.trackers, sim.seed, sim.speed
                );
            }
            (None, None) => {}
        }
    }
    let total: usize = rule_files.iter().map(|(_, f)| f.len()).sum();
    let _ = writeln!(s, "rules: {total} file(s)");
    for (pattern, files) in rule_files {
        let note = if files.is_empty() {
            " (warning: matches no file)"
        } else {
            ""
        };
        let _ = writeln!(s, "  {pattern}: {} file(s){note}", files.len());
    }
    if let Some(rules) = rules {
        for line in rules.lines().filter(|l| !l.trim().is_empty()) {
            let _ = writeln!(s, "  {line}");
        }
    }
    let _ = writeln!(
        s,
        "engine: {} worker(s), eval_interval {}, max_event_age {}",
        config.engine.worker_count(),
        human(config.engine.eval_interval),
        human(config.engine.max_event_age)
    );
    let mut zones: Vec<String> = config.zones.local.keys().cloned().collect();
    if let Some(file) = &config.zones.file {
        zones.push(format!("those of {file}"));
    }
    let _ = writeln!(s, "zones: {}", list(&zones));
    let channels: Vec<String> = config
        .channels
        .iter()
        .map(|(name, c)| format!("{name} ({})", c.kind()))
        .collect();
    let _ = writeln!(s, "channels: {}", list(&channels));
    let _ = writeln!(s, "routes: {}", config.routes.len());
    for (i, route) in config.routes.iter().enumerate() {
        let matchers: Vec<String> = config.routes[i]
            .matchers
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            s,
            "  {i}: {} -> {}{}",
            if matchers.is_empty() {
                "any".to_string()
            } else {
                matchers.join(", ")
            },
            route.channels.join(", "),
            if route.continue_matching {
                " (continue)"
            } else {
                ""
            }
        );
    }
    if !config.inhibit_rules.is_empty() {
        let _ = writeln!(s, "inhibit_rules: {}", config.inhibit_rules.len());
    }
    if !config.time_intervals.is_empty() {
        let _ = writeln!(s, "time_intervals: {}", config.time_interval_names());
    }
    let storage = match &config.storage.postgres {
        Some(pg) => crate::store::redact_url(&pg.url),
        None => config.storage.path.clone(),
    };
    let _ = writeln!(s, "storage: {storage}");
    let _ = writeln!(
        s,
        "server: {}",
        if config.server.listen.is_empty() {
            "off"
        } else {
            &config.server.listen
        }
    );
    s
}

fn list<T: AsRef<str>>(items: &[T]) -> String {
    let names: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    match names.len() {
        0 => "0".into(),
        n => format!("{n} ({})", names.join(", ")),
    }
}

fn human(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() != 0 || secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// One line for a config error: `file:line:column: key: what is wrong`.
pub fn describe(error: &ConfigError, text: &str) -> String {
    match error {
        ConfigError::Read { .. } => error.to_string(),
        ConfigError::Parse {
            path,
            line,
            column,
            message,
        } => {
            // The YAML library's message repeats the position and adds a source snippet
            // after the first line: keep the first line, without the position.
            let first = message.lines().next().unwrap_or_default();
            let first = strip_position(first);
            let key = key_path_at(text, *line as usize, *column as usize);
            let key = key.map(|k| format!("{k}: ")).unwrap_or_default();
            format!("{}:{line}:{column}: {key}{first}", path.display())
        }
        ConfigError::Invalid { path, message } => {
            let (line, column, message) = locate(text, message);
            let key = line
                .and_then(|l| key_path_at(text, l, column.unwrap_or(1)))
                .filter(|k| !message.starts_with(k.split('.').next().unwrap_or(k)))
                .map(|k| format!("{k}: "))
                .unwrap_or_default();
            match (line, column) {
                (Some(l), Some(c)) => format!("{}:{l}:{c}: {key}{message}", path.display()),
                _ => format!("{}: {message}", path.display()),
            }
        }
    }
}

/// `error: line 5 column 3: unknown field` -> `unknown field`.
fn strip_position(s: &str) -> &str {
    let s = s.strip_prefix("error: ").unwrap_or(s);
    if s.starts_with("line ")
        && let Some(i) = s.find(": ")
    {
        return &s[i + 2..];
    }
    s
}

/// Where a validation message points in the text: `line N: ...` from interpolation, or
/// the first backquoted name of the message (an unknown channel, a variable).
fn locate(text: &str, message: &str) -> (Option<usize>, Option<usize>, String) {
    if let Some(rest) = message.strip_prefix("line ")
        && let Some((n, rest)) = rest.split_once(": ")
        && let Ok(n) = n.parse::<usize>()
    {
        let column = text
            .lines()
            .nth(n.saturating_sub(1))
            .and_then(|l| l.find("${"))
            .map(|c| c + 1);
        return (Some(n), column.or(Some(1)), rest.to_string());
    }
    // `channels.ops.secret: too short`: the line of that key.
    if let Some((path, _)) = message.split_once(": ")
        && path.contains('.')
        && !path.contains([' ', '[', '`'])
        && let Some((line, column)) = find_key_path(text, path)
    {
        return (Some(line), Some(column), message.to_string());
    }
    // `routes[0]: unknown channel `pager``: search the named section for the name.
    let section = message.split(['[', '.', ':']).next().unwrap_or_default();
    let token = message.split('`').nth(1).filter(|t| !t.is_empty());
    if let Some(token) = token {
        let mut in_section = section.is_empty();
        for (i, line) in text.lines().enumerate() {
            if !line.starts_with([' ', '\t', '-']) && !line.trim().is_empty() {
                in_section = section.is_empty() || line.starts_with(&format!("{section}:"));
            }
            if in_section
                && !line.trim_start().starts_with('#')
                && let Some(c) = find_word(line, token)
            {
                return (Some(i + 1), Some(c + 1), message.to_string());
            }
        }
    }
    (None, None, message.to_string())
}

/// The line and column (1-based) of the key at a dotted path (`channels.ops.secret`), in
/// block or flow style: the inverse of [`key_path_at`].
fn find_key_path(text: &str, path: &str) -> Option<(usize, usize)> {
    let last = path.rsplit('.').next()?;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for (c, _) in line.match_indices(last) {
            let after = line[c + last.len()..].trim_start_matches(['"', '\'']);
            let before_ok = line[..c]
                .chars()
                .next_back()
                .is_none_or(|ch| matches!(ch, ' ' | '{' | ',' | '-' | '"' | '\''));
            if !before_ok || !after.starts_with(':') {
                continue;
            }
            let column = c + last.len() + 2;
            if key_path_at(text, i + 1, column).as_deref() == Some(path) {
                return Some((i + 1, c + 1));
            }
        }
    }
    None
}

fn find_word(line: &str, word: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    line.match_indices(word).map(|(i, _)| i).find(|&i| {
        let before = line[..i].chars().next_back().is_none_or(|c| !is_ident(c));
        let after = line[i + word.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_ident(c));
        before && after
    })
}

/// The dotted key path of the entry at `line` (1-based), from indentation: `engine.workers`.
/// Flow mappings on one line (`simulator: { trackers: x }`) add the key left of `column`.
pub fn key_path_at(text: &str, line: usize, column: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let target = *lines.get(line.checked_sub(1)?)?;
    let indent_of = |l: &str| l.len() - l.trim_start_matches([' ', '-']).len();
    let key_of = |l: &str| -> Option<String> {
        let t = l.trim_start_matches([' ', '-']).trim_start();
        let (k, _) = t.split_once(':')?;
        let k = k.trim().trim_matches(['"', '\'']);
        (!k.is_empty() && !k.starts_with('#') && !k.contains([' ', '{', '[']))
            .then(|| k.to_string())
    };
    let mut path = Vec::new();
    // Keys inside a flow mapping before the error column.
    let before = &target[..column.saturating_sub(1).min(target.len())];
    if let Some(own) = key_of(target) {
        path.push(own);
    }
    if let Some(brace) = before.rfind('{')
        && let Some(k) = before[brace + 1..]
            .rsplit(',')
            .next()
            .and_then(|seg| seg.split_once(':'))
            .map(|(k, _)| k.trim())
        && !k.is_empty()
    {
        path.push(k.to_string());
    }
    let mut indent = indent_of(target);
    for l in lines[..line - 1].iter().rev() {
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let i = indent_of(l);
        if i < indent
            && let Some(k) = key_of(l)
        {
            path.insert(0, k);
            indent = i;
            if indent == 0 {
                break;
            }
        }
    }
    (!path.is_empty()).then(|| path.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"*.yaml", b"fuel.yaml"));
        assert!(wildcard_match(b"f?el*.yaml", b"fuel_drain.yaml"));
        assert!(!wildcard_match(b"*.yaml", b"fuel.yml"));
        assert!(wildcard_match(b"*", b""));
        assert!(!wildcard_match(b"a*b", b"acbd"));
    }

    #[test]
    fn key_paths() {
        let text = "source:\n  simulator: { trackers: x }\nengine:\n  workers: 2\n  eval_interval: 10 parsecs\n";
        assert_eq!(
            key_path_at(text, 5, 18).as_deref(),
            Some("engine.eval_interval")
        );
        assert_eq!(
            key_path_at(text, 2, 27).as_deref(),
            Some("source.simulator.trackers")
        );
    }
}
