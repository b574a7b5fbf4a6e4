//! Architecture tests: they keep the rules of `ARCHITECTURE.md` true by
//! reading the sources under `src/` as text (std only, no compiler). Each
//! rule is one `#[test]`, and its failure names the files and lines at fault:
//!
//! | test | rule |
//! |---|---|
//! | `no_import_cycles` | the file-level import graph of `src/server/` has no cycle |
//! | `impl_server_in_at_most_three_files` | `impl Server {` / `impl Server<` in at most 3 files |
//! | `files_under_600_lines` | every `.rs` under `src/` has at most 600 lines |
//! | `server_unit_tests_at_least_80` | at least 80 `#[test]`s under `src/server/` |
//! | `server_exports_at_most_three_public_modules` | at most 3 `pub mod` in `src/server/mod.rs` |
//! | `every_server_module_has_a_header` | every server file opens with a `//!` comment |
//!
//! # The import graph
//!
//! Comments and string/char literals are blanked first. A file's module
//! follows its place: `mod.rs` is `server`, `x.rs` and `x/mod.rs` are
//! `server::x`, `x/y.rs` is `server::x::y`. Every path that starts with
//! `super::`, `self::` or `crate::server::` is a reference: in `use` trees
//! (braces expanded) and inline in code, test modules included. `super` and
//! `self` count from the enclosing module, inline `mod tests { .. }` too (a
//! test module's `use super::*;` is its own file). A re-export of a child
//! (`pub(crate) use close::CloseReason;`) is a reference too; other `crate::`
//! paths and `mod x;` are not. A reference resolves to the longest prefix
//! of its path that is a module file; if the next segment is an item that
//! file does not define but re-exports (`pub use`, globs too), the re-export
//! is followed, hop by hop, to the defining file. Self-references are no edge.
//!
//! # Reading a failure
//!
//! `no_import_cycles` prints each group of files that import each other,
//! one shortest cycle through it (`a.rs -> b.rs -> a.rs`, paths relative to
//! `src/server/`), and the line behind each hop (`a.rs:12 -> b.rs`). Break a
//! hop, typically by moving the shared item down into a module both sides
//! may use, and run again. The other tests list the offending files with
//! their numbers. The `checker_*` tests run the graph code on synthetic
//! sources: if one fails, the checker is wrong, not the server.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;
const MAX_IMPL_SERVER_FILES: usize = 3;
const MIN_SERVER_TESTS: usize = 80;
const MAX_PUB_MODS: usize = 3;
/// Re-export hops followed before a reference stops where it is.
const MAX_HOPS: usize = 8;

/// File → (file it refers to → first line doing so); paths relative to `src/server/`.
type Graph = BTreeMap<String, BTreeMap<String, usize>>;
/// A token's text and line.
type Tok = (String, usize);
/// A path expanded from a use tree: segments, rename, line.
type UsePath = (Vec<String>, Option<String>, usize);
/// Every file by module path: its path relative to `src/server/`, and what it says.
type Files = HashMap<Vec<String>, (String, Parsed)>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `(path relative to dir, contents)` of every `.rs` file under `dir`, sorted.
fn rs_files(dir: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
        let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for path in entries.map(|entry| entry.expect("directory entry").path()) {
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).expect("readable source file");
                let rel = path.strip_prefix(base).expect("under base");
                out.push((rel.to_string_lossy().replace('\\', "/"), text));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn server_files() -> Vec<(String, String)> {
    rs_files(&src_dir().join("server"))
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_ident(token: &str) -> bool {
    token.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

/// End of the comment or string/char literal starting at `i`, if one does.
fn skipped_span_end(c: &[char], i: usize) -> Option<usize> {
    let at = |j: usize| c.get(j).copied().unwrap_or('\0');
    match at(i) {
        '/' if at(i + 1) == '/' => Some((i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len())),
        '/' if at(i + 1) == '*' => {
            let (mut j, mut depth) = (i + 2, 1);
            while j < c.len() && depth > 0 {
                let pair = (at(j), at(j + 1));
                depth = depth + usize::from(pair == ('/', '*')) - usize::from(pair == ('*', '/'));
                j += 1 + usize::from(matches!(pair, ('/', '*') | ('*', '/')));
            }
            Some(j.min(c.len()))
        }
        '"' => {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += 1 + usize::from(c[j] == '\\');
            }
            Some((j + 1).min(c.len()))
        }
        // Raw strings: r"..", r#".."#, br"..". (In b".." and b'.', the quote starts the literal.)
        'r' | 'b' if i == 0 || !is_ident_char(c[i - 1]) => {
            let j = i + 1 + usize::from(at(i) == 'b');
            let hashes = (j..c.len()).take_while(|&k| c[k] == '#').count();
            if at(j - 1) != 'r' || at(j + hashes) != '"' {
                return None;
            }
            let closes = |k: usize| c[k] == '"' && (1..=hashes).all(|h| at(k + h) == '#');
            let close = (j + hashes + 1..c.len()).find(|&k| closes(k));
            Some(close.map_or(c.len(), |k| k + 1 + hashes))
        }
        '\'' if at(i + 1) == '\\' => (i + 3..c.len()).find(|&k| c[k] == '\'').map(|k| k + 1),
        '\'' if at(i + 2) == '\'' => Some(i + 3),
        _ => None, // code, or a lifetime
    }
}

/// `src` with comments and string/char literals blanked (newlines kept, so
/// line numbers hold).
fn blank_comments_and_literals(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let skipped = skipped_span_end(&c, i);
        let end = skipped.unwrap_or(i + 1);
        out.extend(c[i..end].iter().map(|&ch| match ch {
            '\n' => '\n',
            _ if skipped.is_some() => ' ',
            _ => ch,
        }));
        i = end;
    }
    out
}

/// Identifiers (and numbers), `::`, and single punctuation characters.
fn tokenize(src: &str) -> Vec<Tok> {
    let c: Vec<char> = blank_comments_and_literals(src).chars().collect();
    let (mut i, mut line, mut toks) = (0, 1, Vec::new());
    while i < c.len() {
        line += usize::from(c[i] == '\n');
        let len = if is_ident_char(c[i]) {
            c[i..].iter().take_while(|&&ch| is_ident_char(ch)).count()
        } else {
            1 + usize::from(c[i] == ':' && c.get(i + 1) == Some(&':'))
        };
        if !c[i].is_whitespace() {
            toks.push((c[i..i + len].iter().collect(), line));
        }
        i += len;
    }
    toks
}

/// Token `i`'s text, or "" out of range (`i.wrapping_sub(n)` looks back safely).
fn tok(toks: &[Tok], i: usize) -> &str {
    toks.get(i).map_or("", |t| t.0.as_str())
}

/// What one file says about the module graph.
#[derive(Default)]
struct Parsed {
    /// `(line, absolute path)` of each server path the file mentions.
    refs: Vec<(usize, Vec<String>)>,
    /// `(exported name or "*", absolute path)` of each `pub use`.
    reexports: Vec<(String, Vec<String>)>,
    /// Items defined at the file's top level.
    defs: BTreeSet<String>,
}

/// `mod.rs` → `server`; `x.rs`, `x/mod.rs` → `server::x`; `x/y.rs` → `server::x::y`.
fn module_of(rel: &str) -> Vec<String> {
    let mut module = vec!["server"];
    module.extend(rel.trim_end_matches(".rs").split('/'));
    module.retain(|&part| part != "mod");
    module.into_iter().map(String::from).collect()
}

/// The absolute path (`server::..`) that `path`, written in module `cur`,
/// names; `None` when it is not the server's. Paths that start with a plain
/// name are taken relative to `cur` only if `relative` (re-exports).
fn absolute(cur: &[String], path: &[String], relative: bool) -> Option<Vec<String>> {
    let mut abs: Vec<String> = match path.first()?.as_str() {
        "crate" if path.get(1).is_some_and(|s| s == "server") => path[1..].to_vec(),
        "self" => cur.iter().chain(&path[1..]).cloned().collect(),
        "super" => {
            let ups = path.iter().take_while(|s| *s == "super").count();
            let base = cur.len().checked_sub(ups).filter(|&n| n > 0)?;
            cur[..base].iter().chain(&path[ups..]).cloned().collect()
        }
        "crate" => return None,
        _ if relative => cur.iter().chain(path).cloned().collect(),
        _ => return None,
    };
    while abs.len() > 1 && abs.last().is_some_and(|s| s == "self") {
        abs.pop();
    }
    Some(abs)
}

/// Expands the use tree at token `i` under `path` into `out`; returns the
/// index after it.
fn use_tree(toks: &[Tok], mut i: usize, mut path: Vec<String>, out: &mut Vec<UsePath>) -> usize {
    loop {
        match tok(toks, i) {
            "::" => i += 1,
            "{" => loop {
                i += 1;
                match tok(toks, i) {
                    "," => {}
                    "}" => return i + 1,
                    "" | ";" => return i,
                    _ => i = use_tree(toks, i, path.clone(), out) - 1,
                }
            },
            "" | ";" | "," | "}" => return i,
            segment => {
                path.push(segment.to_string());
                i += 1;
                if tok(toks, i) != "::" {
                    let rename = (tok(toks, i) == "as").then(|| tok(toks, i + 1).to_string());
                    let after = i + if rename.is_some() { 2 } else { 0 };
                    out.push((path, rename, toks[i - 1].1));
                    return after;
                }
            }
        }
    }
}

/// Whether the `use` at token `i` is a re-export (`pub`, `pub(crate)`, ..).
fn is_pub_use(toks: &[Tok], i: usize) -> bool {
    let open = (0..i).rev().find(|&j| tok(toks, j) == "(");
    match tok(toks, i.wrapping_sub(1)) {
        "pub" => true,
        ")" => open.is_some_and(|j| tok(toks, j.wrapping_sub(1)) == "pub"),
        _ => false,
    }
}

fn parse(module: &[String], src: &str) -> Parsed {
    let toks = tokenize(src);
    let t = |i: usize| tok(&toks, i);
    let mut parsed = Parsed::default();
    // The module at the current token; inline `mod x {` blocks push onto it.
    let (mut cur, mut inline_depths) = (module.to_vec(), Vec::new());
    let (mut depth, mut i) = (0_usize, 0);
    while i < toks.len() {
        match t(i) {
            "{" => {
                depth += 1;
                if t(i.wrapping_sub(2)) == "mod" {
                    cur.push(t(i - 1).to_string());
                    inline_depths.push(depth);
                }
            }
            "}" => {
                if inline_depths.last() == Some(&depth) {
                    inline_depths.pop();
                    cur.pop();
                }
                depth = depth.saturating_sub(1);
            }
            "use" => {
                let public = is_pub_use(&toks, i);
                let mut paths = Vec::new();
                i = use_tree(&toks, i + 1, Vec::new(), &mut paths);
                for (path, rename, line) in paths {
                    if let Some(abs) = absolute(&cur, &path, public) {
                        if public {
                            let name = rename.or_else(|| abs.last().cloned()).unwrap_or_default();
                            parsed.reexports.push((name, abs.clone()));
                        }
                        parsed.refs.push((line, abs));
                    }
                }
                continue;
            }
            // Inline paths; not the `crate::server` of `pub(in crate::server)`.
            "super" | "self" | "crate" if t(i + 1) == "::" && t(i.wrapping_sub(1)) != "::" => {
                let mut path = vec![t(i).to_string()];
                let mut j = i + 1;
                while t(j) == "::" && is_ident(t(j + 1)) {
                    path.push(t(j + 1).to_string());
                    j += 2;
                }
                let visibility = t(i.wrapping_sub(1)) == "in" && t(i.wrapping_sub(2)) == "(";
                if let Some(abs) = absolute(&cur, &path, false).filter(|_| !visibility) {
                    parsed.refs.push((toks[j - 1].1, abs));
                }
                i = j;
                continue;
            }
            "struct" | "enum" | "fn" | "const" | "static" | "type" | "trait" | "union" | "mod"
                if depth == 0 =>
            {
                parsed.defs.insert(t(i + 1).to_string());
            }
            "macro_rules" if depth == 0 => {
                parsed.defs.insert(t(i + 2).to_string());
            }
            _ => {}
        }
        i += 1;
    }
    parsed
}

/// The file an absolute path leads to, following re-exports of the item it names.
fn resolve(abs: &[String], files: &Files, hops: usize) -> Option<String> {
    let k = (1..=abs.len()).rfind(|&k| files.contains_key(&abs[..k]))?;
    let (file, here) = &files[&abs[..k]];
    let name = match abs.get(k) {
        Some(n) if hops > 0 && n != "*" && !here.defs.contains(n) => n,
        _ => return Some(file.clone()),
    };
    if let Some((_, target)) = here.reexports.iter().find(|(e, _)| e == name) {
        return resolve(target, files, hops - 1);
    }
    for (_, target) in here.reexports.iter().filter(|(e, _)| e == "*") {
        let module = &target[..target.len() - 1];
        let glob = files.get(module).map(|(_, glob)| glob);
        let has = |g: &Parsed| g.defs.contains(name) || g.reexports.iter().any(|(e, _)| e == name);
        if glob.is_some_and(has) {
            let path: Vec<String> = module.iter().chain([name]).cloned().collect();
            return resolve(&path, files, hops - 1);
        }
    }
    Some(file.clone())
}

/// The import graph of `files`: `(path relative to src/server, source)`.
fn build_graph(files: &[(String, String)]) -> Graph {
    let by_module: Files = files
        .iter()
        .map(|(rel, src)| (module_of(rel), (rel.clone(), parse(&module_of(rel), src))))
        .collect();
    let mut graph = Graph::new();
    for (rel, parsed) in by_module.values() {
        let edges = graph.entry(rel.clone()).or_default();
        for (line, abs) in &parsed.refs {
            if let Some(to) = resolve(abs, &by_module, MAX_HOPS).filter(|to| to != rel) {
                let first = edges.entry(to).or_insert(*line);
                *first = (*first).min(*line);
            }
        }
    }
    graph
}

/// Breadth-first from `start`: every file reached in one or more steps →
/// the file it was first reached from (walking back gives shortest paths).
fn bfs<'g>(graph: &'g Graph, start: &'g str) -> BTreeMap<&'g str, &'g str> {
    let (mut parent, mut queue) = (BTreeMap::new(), VecDeque::from([start]));
    while let Some(n) = queue.pop_front() {
        for next in graph.get(n).into_iter().flat_map(BTreeMap::keys) {
            if !parent.contains_key(next.as_str()) {
                parent.insert(next.as_str(), n);
                queue.push_back(next.as_str());
            }
        }
    }
    parent
}

/// Each group of files that depend on each other (a strongly connected
/// component), with a shortest cycle through its first file.
fn find_cycles(graph: &Graph) -> Vec<(Vec<&str>, Vec<&str>)> {
    let trees: BTreeMap<&str, _> = graph.keys().map(|n| (&**n, bfs(graph, n))).collect();
    let (mut grouped, mut out) = (BTreeSet::new(), Vec::new());
    for (&start, tree) in &trees {
        if grouped.contains(start) || !tree.contains_key(start) {
            continue;
        }
        let mut group: Vec<&str> = tree.keys().copied().collect();
        group.retain(|n| trees[n].contains_key(start));
        grouped.extend(group.iter().copied());
        let mut cycle = vec![start, tree[start]];
        while cycle[cycle.len() - 1] != start {
            cycle.push(tree[cycle[cycle.len() - 1]]);
        }
        cycle.reverse();
        out.push((group, cycle));
    }
    out
}

fn describe_cycles(graph: &Graph, cycles: &[(Vec<&str>, Vec<&str>)]) -> String {
    let mut msg = String::from("files in src/server/ that import each other (relative paths):\n");
    for (group, cycle) in cycles {
        msg += &format!("\n{} files: {}\n", group.len(), group.join(", "));
        msg += &format!("  one cycle: {}\n", cycle.join(" -> "));
        for hop in cycle.windows(2) {
            msg += &format!("    {}:{} -> {}\n", hop[0], graph[hop[0]][hop[1]], hop[1]);
        }
    }
    msg
}

/// Fails, listing them one per line, if there are more than `max` `offenders`.
#[track_caller]
fn at_most(max: usize, what: &str, offenders: &[String]) {
    let (n, list) = (offenders.len(), offenders.join("\n  "));
    assert!(n <= max, "{n} {what}, at most {max} allowed:\n  {list}");
}

#[test]
fn no_import_cycles() {
    let graph = build_graph(&server_files());
    let edges: usize = graph.values().map(BTreeMap::len).sum();
    assert!(edges > 0, "found no imports in src/server/");
    let cycles = find_cycles(&graph);
    assert!(cycles.is_empty(), "{}", describe_cycles(&graph, &cycles));
}

#[test]
fn impl_server_in_at_most_three_files() {
    let files: Vec<String> = server_files()
        .iter()
        .filter(|(_, src)| {
            let code = blank_comments_and_literals(src);
            code.contains("impl Server {") || code.contains("impl Server<")
        })
        .map(|(rel, _)| format!("src/server/{rel}"))
        .collect();
    let what = "files with `impl Server` blocks";
    at_most(MAX_IMPL_SERVER_FILES, what, &files);
}

#[test]
fn files_under_600_lines() {
    let long: Vec<String> = rs_files(&src_dir())
        .iter()
        .map(|(rel, src)| (rel, src.lines().count()))
        .filter(|&(_, n)| n > MAX_LINES)
        .map(|(rel, n)| format!("src/{rel}: {n} lines"))
        .collect();
    at_most(0, &format!("files over {MAX_LINES} lines"), &long);
}

#[test]
fn server_unit_tests_at_least_80() {
    let (mut total, mut per_file) = (0, Vec::new());
    for (rel, src) in server_files() {
        let n = blank_comments_and_literals(&src).matches("#[test]").count();
        total += n;
        per_file.push(format!("src/server/{rel}: {n}"));
    }
    let per_file = per_file.join("\n  ");
    let what = format!("{total} #[test]s in src/server/, {MIN_SERVER_TESTS} wanted");
    assert!(total >= MIN_SERVER_TESTS, "{what}; per file:\n  {per_file}");
}

#[test]
fn server_exports_at_most_three_public_modules() {
    let src = fs::read_to_string(src_dir().join("server/mod.rs")).expect("src/server/mod.rs");
    let public: Vec<String> = blank_comments_and_literals(&src)
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("pub mod "))
        .map(|(n, l)| format!("src/server/mod.rs:{}: {}", n + 1, l.trim()))
        .collect();
    let what = "`pub mod`s (make the rest `pub(crate) mod`)";
    at_most(MAX_PUB_MODS, what, &public);
}

#[test]
fn every_server_module_has_a_header() {
    let missing: Vec<String> = server_files()
        .iter()
        .filter(|(_, src)| {
            let first = src.lines().find(|l| !l.trim().is_empty());
            !first.is_some_and(|l| l.trim_start().starts_with("//!"))
        })
        .map(|(rel, _)| format!("src/server/{rel}"))
        .collect();
    let what = "server files without an opening `//!` header (what they own)";
    at_most(0, what, &missing);
}

// The checker's own tests: synthetic sources with known answers.

/// The graph of synthetic files, each introduced by a `== path` line.
fn graph_of(files: &str) -> Graph {
    let files: Vec<(String, String)> = (files.split("== ").skip(1))
        .map(|f| f.split_once('\n').expect("== path, newline, source"))
        .map(|(rel, src)| (rel.to_string(), src.to_string()))
        .collect();
    build_graph(&files)
}

fn edges<'g>(graph: &'g Graph, from: &str) -> Vec<&'g str> {
    graph[from].keys().map(String::as_str).collect()
}

#[test]
fn checker_reports_a_three_file_cycle() {
    let graph = graph_of(
        "== mod.rs\n//! root\nmod a;\nmod b;\nmod c;
== a.rs\nuse super::b::B;\npub struct A;
== b.rs\npub struct B;\nfn f() {\n    crate::server::c::make();\n}
== c.rs\npub fn make() -> super::a::A {\n    super::a::A\n}\n",
    );
    assert!(edges(&graph, "mod.rs").is_empty(), "`mod x;` is no edge");
    let cycles = find_cycles(&graph);
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].0, ["a.rs", "b.rs", "c.rs"]);
    let msg = describe_cycles(&graph, &cycles);
    let want = "cycle: a.rs -> b.rs -> c.rs -> a.rs\n";
    assert!(msg.contains(want), "{msg}");
    assert!(msg.contains("b.rs:3 -> c.rs"), "{msg}");
}

#[test]
fn checker_follows_reexport_chains() {
    let graph = graph_of(
        "== mod.rs\nmod conn;\nmod user;
== conn/mod.rs\nmod close;\npub(crate) use close::CloseReason;\npub type ConnId = usize;
== conn/close.rs\nmod kinds;\npub use self::kinds::*;
== conn/close/kinds.rs\npub enum CloseReason {\n    Timeout,\n}
== user.rs\nuse super::conn::{CloseReason, ConnId};\n",
    );
    let kinds = "conn/close/kinds.rs";
    assert_eq!(edges(&graph, "user.rs"), [kinds, "conn/mod.rs"]);
    // A re-export is an edge to where the item is defined, like any other path.
    assert_eq!(edges(&graph, "conn/mod.rs"), [kinds]);
    assert_eq!(edges(&graph, "conn/close.rs"), [kinds]);
    assert!(find_cycles(&graph).is_empty());
}

#[test]
fn checker_expands_brace_trees_and_skips_comments_and_strings() {
    let graph = graph_of(
        r##"== mod.rs
mod a; mod d; mod user; mod zzz;
== a.rs
mod inner; pub struct B;
== a/inner.rs
pub struct I;
== d.rs
pub struct E;
== zzz.rs
pub struct Q;
== user.rs
//! uses a and d
use super::{
    a::{inner::I, B as Bee},
    d::{self, E},
};
// use super::zzz::Q;
/* super::zzz::Q /* nested */ super::zzz::Q */
const S: &str = "super::zzz::Q \" super::zzz::Q";
const R: &str = r#"crate::server::zzz::Q"#;
fn f<'a>(_: &'a str) -> [char; 2] {
    ['"', '{']
}
"##,
    );
    assert_eq!(edges(&graph, "user.rs"), ["a.rs", "a/inner.rs", "d.rs"]);
    assert_eq!(graph["user.rs"]["a/inner.rs"], 3, "line of the path");
}

#[test]
fn checker_scopes_super_and_self_to_the_enclosing_module() {
    let graph = graph_of(
        "== mod.rs\nmod x;\npub use x::Thing;\npub struct Root;
== x/mod.rs\nmod y;\npub struct Thing;\nfn f() -> super::Root {\n    todo!()\n}
== x/y.rs\nuse super::Thing;\nuse self::deep::D;\nuse crate::protocol::Frame;
pub(in crate::server) fn g() {\n    crate::server::x::y::g();\n}
mod deep {\n    pub struct D;\n}
#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::Thing;\n}\n",
    );
    assert_eq!(edges(&graph, "x/y.rs"), ["x/mod.rs"]);
    assert_eq!(edges(&graph, "x/mod.rs"), ["mod.rs"]);
    assert_eq!(edges(&graph, "mod.rs"), ["x/mod.rs"], "re-export");
    let cycles = find_cycles(&graph);
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].1, ["mod.rs", "x/mod.rs", "mod.rs"]);
}
