//! The module graph: the crate's top-level modules form a DAG. Reads every `crate::`
//! path in `src/**/*.rs` (test code left out: `#[cfg(test)]` items, `tests.rs`, `tests/`
//! folders) and fails on any cycle between top-level modules, naming it and the lines
//! that make it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Cycles allowed for now, each as its sorted module names; empty: the graph is a DAG.
const KNOWN_CYCLES: &[&[&str]] = &[];

/// An edge `from → to` and the first place that makes it.
type Edges = BTreeMap<(String, String), String>;

#[test]
fn top_level_modules_form_a_dag() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = top_level_modules(&src);
    let mut edges = Edges::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap_or(&file);
        let Some(from) = module_of(rel) else {
            continue;
        };
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (line, to) in crate_paths(&text) {
            if to != from && modules.contains(&to) {
                edges
                    .entry((from.clone(), to))
                    .or_insert_with(|| format!("src/{}:{line}", rel.display()));
            }
        }
    }
    assert!(
        edges.contains_key(&("daemon".into(), "engine".into())),
        "the scan found no edges: {edges:?}"
    );

    let mut problems = Vec::new();
    for cycle in cycles(&edges) {
        let mut names: Vec<&str> = cycle.iter().map(String::as_str).collect();
        names.sort_unstable();
        if KNOWN_CYCLES.contains(&names.as_slice()) {
            continue;
        }
        let mut path = cycle.clone();
        path.push(cycle[0].clone());
        let witnesses: Vec<String> = path
            .windows(2)
            .map(|w| {
                format!(
                    "  {} → {} ({})",
                    w[0],
                    w[1],
                    edges[&(w[0].clone(), w[1].clone())]
                )
            })
            .collect();
        problems.push(format!("{}\n{}", path.join(" → "), witnesses.join("\n")));
    }
    assert!(
        problems.is_empty(),
        "import cycles between top-level modules:\n{}",
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
                use crate::engine::ShardEvaluator;\n";
    let found: Vec<(usize, String)> = crate_paths(text);
    let names: Vec<&str> = found.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(names, ["alert", "clock", "store", "engine"]);
    assert_eq!(found[3].0, 9);

    let edges = Edges::from([
        (("a".into(), "b".into()), "x".into()),
        (("b".into(), "c".into()), "y".into()),
        (("c".into(), "a".into()), "z".into()),
        (("c".into(), "d".into()), "w".into()),
    ]);
    assert_eq!(cycles(&edges), [["a", "b", "c"]]);
}

/// The names of `src/*.rs` and `src/*/`, without `lib` and `main`.
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    fs::read_dir(src)
        .unwrap_or_else(|e| panic!("{}: {e}", src.display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_stem()?.to_str()?.to_string();
            (path.is_dir() || path.extension()? == "rs").then_some(name)
        })
        .filter(|name| name != "lib" && name != "main")
        .collect()
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

/// The top-level module a file under `src/` belongs to; `None` for the crate root and
/// the binary.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// `(line, first segment)` of every `crate::` path in code, test items and comments
/// left out.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let code = without_test_items(text);
    let mut found = Vec::new();
    for (index, line) in code.lines().enumerate() {
        let line = strip_comment(line);
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.push((index + 1, name));
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push((index + 1, name));
                }
            }
        }
    }
    found
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

/// The cycles of the graph, one per set of modules: the shortest way back from the
/// set's first module (by name), found breadth first.
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    let mut seen: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    let mut found = Vec::new();
    for start in next.keys() {
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([*start]);
        let mut closed = None;
        while let Some(at) = queue.pop_front() {
            for to in next.get(at).into_iter().flatten() {
                if to == start {
                    closed = Some(at);
                    break;
                }
                if !parent.contains_key(to) {
                    parent.insert(to, at);
                    queue.push_back(to);
                }
            }
            if closed.is_some() {
                break;
            }
        }
        let Some(mut at) = closed else {
            continue;
        };
        let mut cycle = vec![at.to_string()];
        while at != *start {
            at = parent[at];
            cycle.push(at.to_string());
        }
        cycle.reverse();
        let set: BTreeSet<String> = cycle.iter().cloned().collect();
        if seen.insert(set) {
            found.push(cycle);
        }
    }
    found
}
