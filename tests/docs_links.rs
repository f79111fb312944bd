//! The documents hold together and stand alone.
//!
//! - Every relative link in `README.md` and `docs/*.md` names a file of the repository
//!   and, with a `#fragment`, a heading of that page (GitHub's anchor rules).
//! - A newcomer finds any topic in two clicks: the README links every page of `docs/`, and
//!   each page's table of contents links each of its `## ` sections.
//! - No file names a document outside the repository (the product contract is stated in
//!   `docs/`): the documents, `deploy/`, `config/`, and the code and its comments in `src/`,
//!   `dev/`, `tests/`, `benches/`, `fuzz/` and `.ci/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Names that point outside the repository: a user of the repository does not have them.
/// (Spelled in pieces, so that this file does not name them itself.)
const OUTSIDE: [&str; 4] = [
    concat!("..", "/shared"),
    concat!("DESIGN", ".md"),
    concat!("VENDOR_API", ".md"),
    concat!("STYLE", ".md"),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Files directly in `dir` whose name ends with `suffix`, sorted.
fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// Every file under `dir`, at any depth, build output (`target/`) left out.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("target") {
                    pending.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `README.md` and every page of `docs/`.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    pages.extend(files_in(&root().join("docs"), ".md"));
    pages
}

/// The lines outside fenced code blocks.
fn outside_fences(text: &str) -> Vec<&str> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            lines.push(line);
        }
    }
    lines
}

/// GitHub's anchor for a heading: lower case; letters, digits, `-` and `_` kept, spaces
/// made `-`, everything else (punctuation, backticks, emphasis) dropped.
fn slug(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some(vec!['-']),
            '-' | '_' => Some(vec![c]),
            c if c.is_alphanumeric() => Some(c.to_lowercase().collect()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The headings of a page as (level, anchor), in order; a repeated anchor gets `-1`, `-2`…
fn headings(text: &str) -> Vec<(usize, String)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in outside_fences(text) {
        let level = line.chars().take_while(|c| *c == '#').count();
        let Some(title) = line[level..].strip_prefix(' ').filter(|_| level > 0) else {
            continue;
        };
        let base = slug(title.trim());
        let mut anchor = base.clone();
        let mut n = 0;
        while !seen.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        out.push((level, anchor));
    }
    out
}

/// The targets of the inline links `[text](target)` of a page, outside code.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in outside_fences(text) {
        // Inline code spans may hold `](`; drop them first.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let end = rest
                .find(')')
                .unwrap_or_else(|| panic!("unclosed link in {line:?}"));
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn the_slug_follows_githubs_rules() {
    assert_eq!(slug("`Idempotency-Key`"), "idempotency-key");
    assert_eq!(
        slug("Floods: how much they can cost"),
        "floods-how-much-they-can-cost"
    );
    assert_eq!(slug("The vendor's AccessToken"), "the-vendors-accesstoken");
    assert_eq!(
        slug("Sidecar on Kubernetes (`deploy/kubernetes/sidecar.yaml`)"),
        "sidecar-on-kubernetes-deploykubernetessidecaryaml"
    );
    assert_eq!(slug("Several replicas: Redis"), "several-replicas-redis");
    let repeated = headings("# A\n## Notes\n```\n## not a heading\n```\n### Notes\n");
    assert_eq!(
        repeated,
        [(1, "a".into()), (2, "notes".into()), (3, "notes-1".into())]
    );
}

#[test]
fn every_relative_link_resolves_to_a_file_and_a_heading() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = read(&page);
        let name = page.strip_prefix(root()).unwrap().display().to_string();
        for target in links(&text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            if !file.exists() {
                broken.push(format!("{name}: {target}: no such file"));
                continue;
            }
            let Some(fragment) = fragment else { continue };
            if !file.to_string_lossy().ends_with(".md") {
                broken.push(format!(
                    "{name}: {target}: an anchor into a non-Markdown file"
                ));
                continue;
            }
            let anchors: BTreeSet<String> =
                headings(&read(&file)).into_iter().map(|(_, a)| a).collect();
            if !anchors.contains(fragment) {
                broken.push(format!("{name}: {target}: no such heading"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn any_topic_is_two_clicks_from_the_readme() {
    let readme = read(&root().join("README.md"));
    assert!(
        readme.lines().count() <= 250,
        "the README is a front page: at most 250 lines"
    );
    let linked: BTreeSet<String> = links(&readme).into_iter().collect();
    let mut missing = Vec::new();
    for page in files_in(&root().join("docs"), ".md") {
        let file = page.file_name().unwrap().to_string_lossy().into_owned();
        if !linked.contains(&format!("docs/{file}")) {
            missing.push(format!("README.md does not link docs/{file}"));
        }
        // The page's table of contents links each of its `## ` sections.
        let text = read(&page);
        let own: BTreeSet<String> = links(&text).into_iter().collect();
        for (level, anchor) in headings(&text) {
            if level == 2 && !own.contains(&format!("#{anchor}")) {
                missing.push(format!("docs/{file}: no contents entry for #{anchor}"));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn no_file_names_a_document_outside_the_repository() {
    let mut scanned = vec![root().join("README.md"), root().join("openapi.yaml")];
    for dir in [
        "docs", "deploy", "config", "src", "dev", "tests", "benches", "fuzz", ".ci",
    ] {
        scanned.extend(files_under(&root().join(dir)));
    }
    let mut found = Vec::new();
    for file in &scanned {
        // Fuzz seeds may be binary.
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        for (number, line) in text.lines().enumerate() {
            for name in OUTSIDE.iter().filter(|name| line.contains(*name)) {
                found.push(format!(
                    "{}:{}: {name}",
                    file.strip_prefix(root()).unwrap().display(),
                    number + 1
                ));
            }
        }
    }
    assert!(
        scanned.len() > 10,
        "scanned only {} files: {scanned:?}",
        scanned.len()
    );
    assert!(
        found.is_empty(),
        "files that point outside the repository:\n{}",
        found.join("\n")
    );
}
