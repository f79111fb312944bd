//! The module structure: no import cycle across the library's top-level modules.
//!
//! Each `src/` file's `crate::…` and `super::…` paths are resolved to the top-level module
//! they name; the resulting graph must have no strongly connected component larger than one
//! module. A cycle (`config` → `audit` → `config`) means neither side can be read, tested or
//! changed without the other; the test names the modules of every cycle it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it refers to (never itself).
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn no_import_cycle_across_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    assert!(
        graph.len() > 5,
        "too few modules found under src/: {graph:?}"
    );
    let cycles: Vec<_> = strongly_connected(&graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles across top-level modules: {cycles:?}\nthe graph: {graph:#?}"
    );
}

#[test]
fn the_resolver_sees_grouped_nested_and_relative_paths() {
    let refs = references(
        "use crate::{audit::chain::MacKey, limits::{Limits, quota}};\n\
         // crate::commented::Out is not a reference\n\
         fn f() { crate::metrics::render(); super::terminal::escape(\"\"); }\n",
        &["gateway".to_owned(), "reply".to_owned()],
    );
    let expected: BTreeSet<String> = ["audit", "limits", "metrics", "gateway"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(refs, expected);
    let top = references("use super::tls::ServerTls;", &["admin".to_owned()]);
    assert_eq!(top, BTreeSet::from(["tls".to_owned()]));
    let mut graph = Graph::new();
    graph.insert("a".into(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".into(), BTreeSet::from(["a".to_owned()]));
    graph.insert("c".into(), BTreeSet::from(["a".to_owned()]));
    let components = strongly_connected(&graph);
    assert!(components.contains(&vec!["a".to_owned(), "b".to_owned()]));
    assert!(components.contains(&vec!["c".to_owned()]));
}

/// The graph of every library module file under `src` (binaries excluded).
fn import_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("under src");
        let path = module_path(relative);
        let Some(top) = path.first().cloned() else {
            continue; // lib.rs, main.rs: the crate root
        };
        if top == "bin" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let refs = graph.entry(top.clone()).or_default();
        refs.extend(references(&text, &path).into_iter().filter(|m| *m != top));
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `audit/writer/trail.rs` → `[audit, writer, trail]`; `audit/mod.rs` → `[audit]`;
/// `lib.rs` → `[]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The top-level modules named by `crate::` and `super::` paths in one file's code
/// (comments stripped), for a file whose module path is `path`.
fn references(text: &str, path: &[String]) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    for (at, _) in code.match_indices("crate::") {
        if at > 0 && is_ident(bytes[at - 1]) {
            continue; // `$crate::`, `sipgw_crate::`
        }
        found.extend(heads(&code[at + "crate::".len()..]));
    }
    for (at, _) in code.match_indices("super::") {
        if at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b':') {
            continue; // counted from the first `super` of a chain
        }
        let mut rest = &code[at..];
        let mut depth = 0;
        while let Some(after) = rest.strip_prefix("super::") {
            depth += 1;
            rest = after;
        }
        // `super` from `[a, b]` is `[a]`; from a top-level module it is the crate root.
        let base = path.len().saturating_sub(depth);
        match path.get(..base).and_then(|p| p.first()) {
            Some(top) => {
                found.insert(top.clone());
            }
            None => found.extend(heads(rest)),
        }
    }
    found
}

/// The first path segment of each path that starts `text`: `audit::x` → `audit`;
/// `{audit::x, limits::{a, b}}` → `audit`, `limits`.
fn heads(text: &str) -> Vec<String> {
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut heads = Vec::new();
        let mut level = 0;
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => level += 1,
                '}' if level == 0 => {
                    heads.extend(first_ident(&group[start..i]));
                    break;
                }
                '}' => level -= 1,
                ',' if level == 0 => {
                    heads.extend(first_ident(&group[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
        heads
    } else {
        first_ident(text).into_iter().collect()
    }
}

fn first_ident(text: &str) -> Option<String> {
    let ident: String = text
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    // `self` in a group is the crate root itself; a capital is a root item (a type), not a module.
    (!ident.is_empty() && ident != "self" && !ident.starts_with(char::is_uppercase))
        .then_some(ident)
}

fn is_ident(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$'
}

/// Tarjan's strongly connected components, each sorted.
fn strongly_connected(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        let n = state.index.len();
        state.index.insert(node, n);
        state.low.insert(node, n);
        state.stack.push(node);
        state.on_stack.insert(node);
        let graph = state.graph;
        for next in graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !state.index.contains_key(next) {
                visit(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(top);
                component.push(top.to_owned());
                if top == node {
                    break;
                }
            }
            component.sort();
            state.components.push(component);
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.components
}
