//! No import cycles between modules, in any library crate of the workspace (issue #16).
//!
//! Every `crate::…` and `super::…` path in a file's code (comments and strings left out) is an
//! edge from the file's module to the module the path names. A module and its own submodules
//! are one unit (a parent declares its children, a child may use its parent's items), so an
//! edge counts between the two children of the paths' deepest common ancestor that hold each
//! end: `app::tasks` -> `agents::wire` is an edge `app` -> `agents`, and `app::tasks` ->
//! `app::clusters` one between those two files. A cycle at any level fails the test with the
//! files that make it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library crates' source roots, relative to the workspace.
const CRATES: &[&str] = &[
    "agent/src",
    "control-plane-stub/src",
    "proto/src",
    "tests/src",
];

type ModPath = Vec<String>;

/// Every module file under `src` with its module path; binaries (their own crates) left out.
fn modules(src: &Path) -> Vec<(ModPath, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel: Vec<String> = path
                .strip_prefix(src)
                .unwrap()
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if rel[0] == "bin" || rel == ["main.rs"] {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Some(last) = rel.last().and_then(|f| f.strip_suffix(".rs")) else {
                continue;
            };
            let mut module: ModPath = rel[..rel.len() - 1].to_vec();
            if !(last == "mod" || (rel.len() == 1 && last == "lib")) {
                module.push(last.to_string());
            }
            out.push((module, path));
        }
    }
    out.sort();
    out
}

/// The code of a Rust file without comments, string and char literals (blanked, so that a path
/// in a doc comment or a message is not an import).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r' && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#')) {
            // A raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(b[i] as char);
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            j += 1;
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            i = j + close.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            i += 3; // 'x'
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths a file names: each `crate::a::b` or `super::…::a::b`, resolved from `module`
/// (a `{…}` group yields every path inside it).
fn named_paths(code: &str, module: &[String]) -> Vec<ModPath> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !is_ident(chars[i - 1]) && chars[i - 1] != ':';
        let rest: String = chars[i..chars.len().min(i + 7)].iter().collect();
        let base: Option<(ModPath, usize)> = if starts_word && rest.starts_with("crate::") {
            Some((Vec::new(), 7))
        } else if starts_word && rest.starts_with("super::") {
            // A file `a/b.rs` or `a/b/mod.rs` is module a::b; its `super` is a.
            let mut base = module.to_vec();
            let mut j = i;
            while chars[j..].iter().collect::<String>().starts_with("super::") {
                base.pop();
                j += 7;
            }
            Some((base, j - i))
        } else {
            None
        };
        let Some((base, skip)) = base else {
            i += 1;
            continue;
        };
        i += skip;
        let (paths, end) = parse_tree(&chars, i, base);
        out.extend(paths);
        i = end;
    }
    out
}

/// A use-tree starting at `i`: `a::b::c`, `a::{b, c::d}`, … Returns the paths and where it ends.
fn parse_tree(chars: &[char], mut i: usize, prefix: ModPath) -> (Vec<ModPath>, usize) {
    let mut path = prefix;
    loop {
        if chars.get(i) == Some(&'{') {
            let mut out = Vec::new();
            i += 1;
            loop {
                while chars.get(i).is_some_and(|c| c.is_whitespace() || *c == ',') {
                    i += 1;
                }
                match chars.get(i) {
                    None => return (out, i),
                    Some('}') => return (out, i + 1),
                    _ => {}
                }
                let (paths, end) = parse_tree(chars, i, path.clone());
                out.extend(paths);
                if end == i {
                    i += 1;
                } else {
                    i = end;
                }
                // Skip `as name` and anything else up to the next item of the group.
                while chars.get(i).is_some_and(|c| *c != ',' && *c != '}') {
                    i += 1;
                }
            }
        }
        let start = i;
        while chars.get(i).is_some_and(|c| is_ident(*c)) {
            i += 1;
        }
        if i == start {
            return (vec![path], i);
        }
        let ident: String = chars[start..i].iter().collect();
        if ident != "self" {
            path.push(ident);
        }
        if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            return (vec![path], i);
        }
    }
}

/// The longest prefix of `path` that is a module.
fn resolve(path: &[String], known: &BTreeSet<ModPath>) -> ModPath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| known.contains(p))
        .unwrap_or_default()
}

/// Edges between sibling units, keyed by the units' parent: parent -> (from, to) -> a witness.
type Edges = BTreeMap<ModPath, BTreeMap<(String, String), String>>;

fn sibling_edges(root: &Path, src: &Path) -> Edges {
    let mods = modules(src);
    let known: BTreeSet<ModPath> = mods.iter().map(|(m, _)| m.clone()).collect();
    let mut edges = Edges::new();
    for (module, file) in &mods {
        let text = std::fs::read_to_string(file).unwrap();
        for path in named_paths(&code_only(&text), module) {
            let target = resolve(&path, &known);
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            // An ancestor and its descendants are one unit.
            if common == module.len() || common == target.len() {
                continue;
            }
            let witness = format!(
                "{} uses {}",
                file.strip_prefix(root).unwrap_or(file).display(),
                if path.is_empty() {
                    "crate".into()
                } else {
                    path.join("::")
                }
            );
            edges
                .entry(module[..common].to_vec())
                .or_default()
                .entry((module[common].clone(), target[common].clone()))
                .or_insert(witness);
        }
    }
    edges
}

/// A cycle among `edges` (as the list of its edges' witnesses), if there is one.
fn find_cycle(edges: &BTreeMap<(String, String), String>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    // Depth-first search with colours: 1 on the stack, 2 finished.
    fn visit<'a>(
        n: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        colour: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        colour.insert(n, 1);
        stack.push(n);
        for m in next.get(n).into_iter().flatten() {
            match colour.get(m) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m);
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, next, colour, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        colour.insert(n, 2);
        None
    }
    let mut colour = BTreeMap::new();
    for n in next.keys() {
        if !colour.contains_key(n) {
            if let Some(c) = visit(n, &next, &mut colour, &mut Vec::new()) {
                return Some(
                    c.windows(2)
                        .map(|w| edges[&(w[0].to_string(), w[1].to_string())].clone())
                        .collect(),
                );
            }
        }
    }
    None
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let root = workspace();
    let mut problems = Vec::new();
    let mut units = 0;
    for krate in CRATES {
        for (parent, edges) in sibling_edges(&root, &root.join(krate)) {
            units += edges.len();
            if let Some(cycle) = find_cycle(&edges) {
                let within = if parent.is_empty() {
                    format!("{krate} (top level)")
                } else {
                    format!("{krate}: {}", parent.join("::"))
                };
                problems.push(format!(
                    "a cycle in {within}:\n    {}",
                    cycle.join("\n    ")
                ));
            }
        }
    }
    assert!(
        units > 50,
        "the walk found only {units} edges: is it reading the sources?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_walk_sees_paths_groups_and_super() {
    let code = code_only(
        "use crate::a::{b::C, d}; // crate::x::y\n\
         fn f() { super::super::e::f(); let s = \"crate::q\"; crate::g::h(); }",
    );
    let paths = named_paths(&code, &["m".into(), "n".into(), "o".into()]);
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(joined, ["a::b::C", "a::d", "m::e::f", "g::h"]);
}

#[test]
fn a_cycle_is_found_with_its_witnesses() {
    let mut edges = BTreeMap::new();
    edges.insert(
        ("a".to_string(), "b".to_string()),
        "a.rs uses b".to_string(),
    );
    edges.insert(
        ("b".to_string(), "c".to_string()),
        "b.rs uses c".to_string(),
    );
    assert_eq!(find_cycle(&edges), None);
    edges.insert(
        ("c".to_string(), "a".to_string()),
        "c.rs uses a".to_string(),
    );
    assert_eq!(
        find_cycle(&edges).unwrap(),
        ["a.rs uses b", "b.rs uses c", "c.rs uses a"]
    );
}

/// berth-cp's production files stay small enough to read in one sitting (issue #16): test
/// modules in files of their own (`tests.rs`) do not count.
#[test]
fn no_control_plane_source_file_is_over_700_lines() {
    let src = workspace().join("control-plane-stub/src");
    let mut long = Vec::new();
    for (_, file) in modules(&src) {
        if file.ends_with("tests.rs") {
            continue;
        }
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        if lines > 700 {
            long.push(format!("{} has {lines} lines", file.display()));
        }
    }
    assert!(
        long.is_empty(),
        "split these by concern:\n{}",
        long.join("\n")
    );
}
