//! The module graph: the crate's top-level modules form a DAG, and so do the submodules
//! of every folder module (`dispatch`'s `dispatcher`, `outbox`, `group`, ...), but for
//! the cycles listed in [`KNOWN_CYCLES`]. Reads every `crate::`, `super::` and `self::`
//! path in `src/**/*.rs` (test code left out: `#[cfg(test)]` items and the modules they
//! declare, `tests.rs`, `tests/` folders), resolves it to the module it names, and fails
//! on any other cycle, naming its modules and the file:line of each edge between them.
//!
//! A path through a re-export (`use super::Notification` where `mod.rs` re-exports it)
//! counts as an edge to the folder, not to the submodule that defines the item.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Cycles allowed for now: the folder module (`""` for the crate's top level) and the
/// sorted names of the submodules that reach each other. A cycle that grows, or a new
/// one, fails the test; removing one is welcome (then drop its line).
const KNOWN_CYCLES: &[(&str, &[&str])] = &[
    (
        "dispatch",
        &["ack", "escalation", "group", "routes", "silence", "stages"],
    ),
    ("navixy", &["context", "rest"]),
    ("navixy", &["decode", "messages"]),
    ("rules", &["load", "render", "script", "set"]),
    ("rules::script", &["engine", "spec"]),
    ("server", &["api", "openapi"]),
];

/// A module's path from the crate root: `["dispatch", "outbox"]`.
type ModPath = Vec<String>;

/// An edge `from → to` between two submodules of one folder, and the first place that
/// makes it.
type Edges = BTreeMap<(String, String), String>;

/// What a path starts from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Root {
    Crate,
    /// `super::` this many times.
    Super(usize),
    /// `self::`.
    Current,
}

/// The crate's modules and the edges between siblings, per folder module.
struct Graph {
    /// Each module's child modules; the crate root's under `[]`.
    children: BTreeMap<ModPath, BTreeSet<String>>,
    /// Per folder module, the edges between its children.
    edges: BTreeMap<ModPath, Edges>,
}

fn graph() -> Graph {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap_or(&file).to_path_buf();
        let Some(module) = module_of(&rel) else {
            continue;
        };
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        sources.push((rel, module, text));
    }
    // Modules that `#[cfg(test)] mod x;` declares, and everything below them.
    let test_modules: Vec<ModPath> = sources
        .iter()
        .flat_map(|(_, module, text)| {
            test_module_names(text).into_iter().map(move |name| {
                let mut path = module.clone();
                path.push(name);
                path
            })
        })
        .collect();
    sources.retain(|(_, module, _)| !test_modules.iter().any(|t| module.starts_with(t)));

    let mut children: BTreeMap<ModPath, BTreeSet<String>> = BTreeMap::new();
    for (_, module, _) in &sources {
        for depth in 0..module.len() {
            children
                .entry(module[..depth].to_vec())
                .or_default()
                .insert(module[depth].clone());
        }
    }
    let mut edges: BTreeMap<ModPath, Edges> = BTreeMap::new();
    for (rel, module, text) in &sources {
        for (line, root, segments) in paths(text) {
            let Some(target) = resolve(module, root, &segments) else {
                continue;
            };
            // The folder both sit in, and the sibling on each side.
            let Some(depth) = (0..module.len().min(target.len())).find(|&d| module[d] != target[d])
            else {
                continue;
            };
            let folder = module[..depth].to_vec();
            if children
                .get(&folder)
                .is_some_and(|c| c.contains(&target[depth]))
            {
                edges
                    .entry(folder)
                    .or_default()
                    .entry((module[depth].clone(), target[depth].clone()))
                    .or_insert_with(|| format!("src/{}:{line}", rel.display()));
            }
        }
    }
    Graph { children, edges }
}

/// The cycles of every folder's graph not in [`KNOWN_CYCLES`], each with the edges that
/// make it.
fn unknown_cycles(graph: &Graph, top_level: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for (folder, edges) in &graph.edges {
        if folder.is_empty() != top_level {
            continue;
        }
        let name = folder.join("::");
        for component in components(edges) {
            let members: Vec<&str> = component.iter().map(String::as_str).collect();
            if KNOWN_CYCLES.contains(&(name.as_str(), members.as_slice())) {
                continue;
            }
            let witnesses: Vec<String> = edges
                .iter()
                .filter(|((from, to), _)| component.contains(from) && component.contains(to))
                .map(|((from, to), at)| format!("  {from} → {to} ({at})"))
                .collect();
            let place = if top_level {
                "the crate"
            } else {
                name.as_str()
            };
            problems.push(format!(
                "in {place}: {} reach each other:\n{}",
                members.join(", "),
                witnesses.join("\n")
            ));
        }
    }
    problems
}

#[test]
fn top_level_modules_form_a_dag() {
    let graph = graph();
    let top = graph.edges.get(&Vec::new()).cloned().unwrap_or_default();
    assert!(
        top.contains_key(&("daemon".into(), "engine".into())),
        "the scan found no edges: {top:?}"
    );
    let problems = unknown_cycles(&graph, true);
    assert!(
        problems.is_empty(),
        "import cycles between top-level modules:\n{}",
        problems.join("\n")
    );
}

#[test]
fn submodules_of_each_folder_form_a_dag() {
    let graph = graph();
    let dispatch = &graph.edges[&vec!["dispatch".to_string()]];
    assert!(
        dispatch.contains_key(&("dispatcher".into(), "outbox".into())),
        "the scan found no edges in dispatch: {dispatch:?}"
    );
    assert!(
        graph.children[&vec!["dispatch".to_string()]].contains("stages"),
        "dispatch's folder submodules are missing: {:?}",
        graph.children
    );
    let problems = unknown_cycles(&graph, false);
    assert!(
        problems.is_empty(),
        "import cycles between the submodules of a folder module (break one edge, e.g. \
         move what both use into the lower module):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_scan_sees_paths_and_skips_test_code() {
    let text = "use crate::{alert::AlertStatus, clock};\n\
                // use crate::daemon;\n\
                fn f() { crate::store::open(\"{\"); }\n\
                #[cfg(test)]\n\
                mod tests {\n    use crate::server;\n    fn g() { let _ = '}'; }\n}\n\
                use crate::engine::ShardEvaluator;\n\
                use super::{\n    group::{after, Undelivered},\n    outbox,\n};\n\
                _ = super::super::dispatcher::stopped(&mut s);\n\
                use self::inner::*;\n\
                #[cfg(test)]\n\
                mod event_tests;\n";
    let found = paths(text);
    let written: Vec<(usize, Root, String)> = found
        .iter()
        .map(|(line, root, segments)| (*line, *root, segments.join("::")))
        .collect();
    assert_eq!(
        written,
        [
            (1, Root::Crate, "alert::AlertStatus".to_string()),
            (1, Root::Crate, "clock".into()),
            (3, Root::Crate, "store::open".into()),
            (9, Root::Crate, "engine::ShardEvaluator".into()),
            (11, Root::Super(1), "group::after".into()),
            (11, Root::Super(1), "group::Undelivered".into()),
            (12, Root::Super(1), "outbox".into()),
            (14, Root::Super(2), "dispatcher::stopped".into()),
            (15, Root::Current, "inner".into()),
        ]
    );
    assert_eq!(test_module_names(text), ["event_tests"]);

    let outbox: ModPath = vec!["dispatch".into(), "outbox".into()];
    let stages_mute: ModPath = vec!["dispatch".into(), "stages".into(), "mute".into()];
    let of = |segments: &str| segments.split("::").map(String::from).collect::<Vec<_>>();
    assert_eq!(
        resolve(&outbox, Root::Super(1), &of("group::after")),
        Some(of("dispatch::group::after"))
    );
    assert_eq!(
        resolve(&stages_mute, Root::Super(2), &of("routes::Settings")),
        Some(of("dispatch::routes::Settings"))
    );
    assert_eq!(
        resolve(&outbox, Root::Current, &of("Sender")),
        Some(of("dispatch::outbox::Sender"))
    );
    assert_eq!(resolve(&outbox, Root::Super(3), &of("x")), None);

    let edges = Edges::from([
        (("a".into(), "b".into()), "x".into()),
        (("b".into(), "c".into()), "y".into()),
        (("c".into(), "a".into()), "z".into()),
        (("c".into(), "d".into()), "w".into()),
        (("d".into(), "e".into()), "v".into()),
        (("e".into(), "d".into()), "u".into()),
    ]);
    let found: Vec<Vec<String>> = components(&edges)
        .into_iter()
        .map(|c| c.into_iter().collect())
        .collect();
    assert_eq!(found, [of("a::b::c"), of("d::e")]);
}

/// Every `.rs` file under `dir`, test files and folders left out.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() && name != "tests" {
            files.extend(rust_files(&path));
        } else if name.ends_with(".rs") && name != "tests.rs" {
            files.push(path);
        }
    }
    files
}

/// The module a file under `src/` is (`dispatch/stages/mod.rs`: `dispatch::stages`);
/// `None` for the crate root and the binary.
fn module_of(rel: &Path) -> Option<ModPath> {
    let mut path: ModPath = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    (path != ["lib"] && path != ["main"]).then_some(path)
}

/// The names of the modules a file declares as test code: `#[cfg(test)]` then `mod x;`.
fn test_module_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut after_cfg_test = false;
    for line in text.lines().map(str::trim) {
        if line == "#[cfg(test)]" {
            after_cfg_test = true;
            continue;
        }
        if after_cfg_test && line.starts_with("#[") {
            continue;
        }
        if after_cfg_test {
            let declared = line
                .strip_prefix("pub(crate) ")
                .or_else(|| line.strip_prefix("pub "))
                .unwrap_or(line);
            if let Some(name) = declared
                .strip_prefix("mod ")
                .and_then(|r| r.strip_suffix(';'))
            {
                names.push(name.trim().to_string());
            }
        }
        after_cfg_test = false;
    }
    names
}

/// The module (or item) a path names, from the module it is written in; `None` for a
/// `super::` above the crate root.
fn resolve(module: &[String], root: Root, segments: &[String]) -> Option<ModPath> {
    let base = match root {
        Root::Crate => &[][..],
        Root::Current => module,
        Root::Super(up) => module.get(..module.len().checked_sub(up)?)?,
    };
    Some(base.iter().chain(segments).cloned().collect())
}

/// `(line, root, segments)` of every `crate::`, `super::` and `self::` path in code, a
/// `use` group (`super::{a::b, c}`) giving one path per leaf; test items and comments
/// left out.
fn paths(text: &str) -> Vec<(usize, Root, Vec<String>)> {
    let code: String = without_test_items(text)
        .lines()
        .map(strip_comment)
        .collect::<Vec<_>>()
        .join("\n");
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(code.match_indices('\n').map(|(at, _)| at + 1))
        .collect();
    let line_of = |at: usize| line_starts.partition_point(|&start| start <= at);
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while at < code.len() {
        let preceded = at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b':');
        let rest = &code[at..];
        let root = if preceded {
            None
        } else if rest.starts_with("crate::") {
            Some((Root::Crate, "crate::".len()))
        } else if rest.starts_with("self::") {
            Some((Root::Current, "self::".len()))
        } else if rest.starts_with("super::") {
            let mut up = 0;
            while rest[up * "super::".len()..].starts_with("super::") {
                up += 1;
            }
            Some((Root::Super(up), up * "super::".len()))
        } else {
            None
        };
        let Some((root, len)) = root else {
            at += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        let mut leaves = Vec::new();
        at = tree(&code, at + len, &[], &mut leaves);
        found.extend(
            leaves
                .into_iter()
                .map(|(end, segments)| (line_of(end), root, segments)),
        );
    }
    found
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Reads a path's tail from `at` (`a::b`, `a::{b, c::d}`, `*`), pushing each leaf's end
/// and segments after `prefix`; returns where it stopped.
fn tree(
    code: &str,
    mut at: usize,
    prefix: &[String],
    leaves: &mut Vec<(usize, Vec<String>)>,
) -> usize {
    let bytes = code.as_bytes();
    let mut segments = prefix.to_vec();
    loop {
        if bytes.get(at) == Some(&b'{') {
            at += 1;
            loop {
                while bytes
                    .get(at)
                    .is_some_and(|b| b.is_ascii_whitespace() || *b == b',')
                {
                    at += 1;
                }
                match bytes.get(at) {
                    None => return at,
                    Some(b'}') => return at + 1,
                    _ => {}
                }
                let before = at;
                at = tree(code, at, &segments, leaves);
                if at == before {
                    // Not a path (`*`, `self as x`'s `as`): step over it.
                    at += 1;
                }
            }
        }
        let name_len = bytes[at..].iter().take_while(|b| is_ident(**b)).count();
        if name_len == 0 {
            if segments.len() > prefix.len() || prefix.is_empty() {
                leaves.push((at, segments));
            }
            return at;
        }
        segments.push(code[at..at + name_len].to_string());
        at += name_len;
        if code[at..].starts_with("::") {
            at += 2;
            continue;
        }
        leaves.push((at, segments));
        return at;
    }
}

fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with("//") {
        return "";
    }
    // A `//` inside a string literal would cut too early; paths never follow one.
    match line.find(" // ") {
        Some(at) => &line[..at],
        None => line,
    }
}

/// `text` with each `#[cfg(test)]` item blanked (lines kept, so line numbers hold).
fn without_test_items(text: &str) -> String {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "#[cfg(test)]" {
            out.push(line);
            continue;
        }
        out.push("");
        let mut depth = 0i64;
        let mut opened = false;
        for line in lines.by_ref() {
            out.push("");
            let (open, close) = braces(line);
            depth += open - close;
            opened |= open > 0;
            if (opened && depth <= 0) || (!opened && line.trim_end().ends_with(';')) {
                break;
            }
        }
    }
    out.join("\n")
}

/// Counts `{` and `}` outside string and char literals and comments.
fn braces(line: &str) -> (i64, i64) {
    let (mut open, mut close) = (0, 0);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => break,
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '\'' => {
                // A char literal ('{', '\''), or a lifetime ('a): skip a literal only.
                let mut ahead = chars.clone();
                let first = ahead.next();
                let literal = match first {
                    Some('\\') => true,
                    Some(_) => ahead.next() == Some('\''),
                    None => false,
                };
                if literal {
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                    }
                }
            }
            '{' => open += 1,
            '}' => close += 1,
            _ => {}
        }
    }
    (open, close)
}

/// The strongly connected components of more than one module: the sets of modules that
/// reach each other, each sorted, in order of their first module.
fn components(edges: &Edges) -> Vec<BTreeSet<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    let reach = |start: &str| -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(at) = stack.pop() {
            for to in next.get(at).into_iter().flatten() {
                if seen.insert(*to) {
                    stack.push(to);
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&str, BTreeSet<&str>> =
        next.keys().map(|&module| (module, reach(module))).collect();
    let mut found: Vec<BTreeSet<String>> = Vec::new();
    for (module, from_it) in &reached {
        if !from_it.contains(module) || found.iter().any(|c| c.contains(*module)) {
            continue;
        }
        let component = from_it
            .iter()
            .filter(|other| reached.get(*other).is_some_and(|r| r.contains(module)))
            .map(|m| m.to_string())
            .collect();
        found.push(component);
    }
    found
}
