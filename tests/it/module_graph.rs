//! The library's module graph (issue 12): which top-level module of `src/` names which other (`crate::X` in its
//! code; unit tests after `#[cfg(test)]`, `tests.rs` files and comment lines left out). Data flows one way
//! (stimuli → model → store → manifold → steer → report), so the graph must have no cycle, and no module may
//! reach the crate-level error (`error.rs` wraps every module's error for callers; a module that returned it
//! would depend on every other through it). `scripts/module_graph.py` prints the same graph for people.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level library modules and their files; the binary's `main.rs` and `cli/` are not the library.
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let mut mods = BTreeMap::new();
    for entry in std::fs::read_dir(src()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if ["lib", "main", "cli"].contains(&name.as_str()) {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        } else {
            continue;
        }
        mods.insert(name, files);
    }
    mods
}

/// The non-test, non-comment code of a file.
fn code_of(path: &Path) -> String {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// Every module `code` names through `crate::`: `crate::x::…` paths and the first names of `use crate::{…}`.
fn named(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find(';').unwrap_or(group.len())];
            // Names at the group's top level: the start, and after each comma at brace depth 0.
            let mut depth = 0;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        out.insert(ident_at(&group[j..]).to_string());
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident_at(rest).to_string());
        }
    }
    out
}

fn graph() -> Graph {
    let mods = modules();
    let mut g = Graph::new();
    for (m, files) in &mods {
        let edges = g.entry(m.clone()).or_default();
        for f in files {
            for mut target in named(&code_of(f)) {
                // `crate::Error` and `crate::Result` are error.rs's, re-exported at the crate root.
                if target == "Error" || target == "Result" {
                    target = "error".into();
                }
                if mods.contains_key(&target) && &target != m {
                    edges.insert(target);
                }
            }
        }
    }
    g
}

/// One cycle of `g` as a path `a -> b -> … -> a`, if there is one (depth-first search, colours).
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(v: &str, g: &Graph, state: &mut BTreeMap<String, u8>, path: &mut Vec<String>) -> Option<Vec<String>> {
        state.insert(v.to_string(), 1);
        path.push(v.to_string());
        for w in &g[v] {
            match state.get(w.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = path.iter().position(|p| p == w).unwrap();
                    let mut cycle = path[at..].to_vec();
                    cycle.push(w.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(w, g, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(v.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for v in g.keys() {
        if state.get(v.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(v, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph();
    assert!(g.len() > 10 && g["report"].contains("manifold"), "the scan found too little: {g:?}");
    if let Some(c) = find_cycle(&g) {
        panic!("module cycle: {}\nfull graph: {g:#?}", c.join(" -> "));
    }
}

#[test]
fn no_module_returns_the_crate_level_error() {
    let g = graph();
    let users: Vec<&String> = g.iter().filter(|(_, e)| e.contains("error")).map(|(m, _)| m).collect();
    assert!(
        users.is_empty(),
        "these modules name crate::Error/crate::Result; return the module's own error: {users:?}"
    );
}

#[test]
fn the_scanner_sees_paths_groups_and_ignores_comments_and_tests() {
    let code = "use crate::{fsx, model::{Input, Pooling}, store::Error};\nfn f() -> crate::steer::Result<()> {}";
    let n = named(code);
    assert_eq!(n, ["fsx", "model", "steer", "store"].iter().map(|s| s.to_string()).collect());
    let dir = crate::common::fresh_dir("module-graph", "scanner");
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("x.rs");
    std::fs::write(&f, "// crate::report\nuse crate::colour;\n#[cfg(test)]\nmod tests { use crate::steer; }\n")
        .unwrap();
    assert_eq!(named(&code_of(&f)), ["colour".to_string()].into_iter().collect());
    std::fs::remove_dir_all(&dir).unwrap();
    let cyclic: Graph =
        [("a", "b"), ("b", "a")].iter().map(|(x, y)| (x.to_string(), [y.to_string()].into_iter().collect())).collect();
    assert_eq!(find_cycle(&cyclic), Some(vec!["a".into(), "b".into(), "a".into()]));
}
