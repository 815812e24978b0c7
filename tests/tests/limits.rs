//! The size limits a reader can rely on: no source file over 400 lines, no Rust function over
//! 80. Past them a file wants splitting and a function wants named steps.

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 400;
const MAX_FN_LINES: usize = 80;
const SOURCE_DIRS: [&str; 7] = [
    "shared",
    "outbox-relay",
    "services",
    "cli",
    "tests",
    "bench",
    "k6",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && name != "target" && name != "node_modules" && name != "results" {
            sources(&path, found);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "rs" || ext == "js")
        {
            found.push(path);
        }
    }
}

/// `(first line, length)` of every function with a body, as rustfmt lays them out: the body
/// ends at the first line that is a lone `}` at the indentation of `fn`.
fn functions(text: &str) -> Vec<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let signature = ["pub(crate) ", "pub ", "const ", "async ", "unsafe "]
            .iter()
            .fold(trimmed, |rest, prefix| {
                rest.strip_prefix(prefix).unwrap_or(rest)
            });
        if !signature.starts_with("fn ") {
            continue;
        }
        let indent = &line[..line.len() - trimmed.len()];
        let Some(open) = (start..lines.len())
            .find(|&i| lines[i].contains('{') || lines[i].trim_end().ends_with(';'))
        else {
            continue;
        };
        let opening = lines[open].trim_end();
        let one_line = opening.matches('{').count() == opening.matches('}').count();
        if !opening.contains('{') || one_line {
            continue;
        }
        let closing = format!("{indent}}}");
        if let Some(end) = (open + 1..lines.len()).find(|&i| lines[i] == closing) {
            found.push((start + 1, end - start + 1));
        }
    }
    found
}

#[test]
fn no_source_file_is_over_400_lines_and_no_function_over_80() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        sources(&root.join(dir), &mut files);
    }
    assert!(
        files.len() > 50,
        "found only {} source files under {}",
        files.len(),
        root.display()
    );
    let mut over = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a source file");
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            over.push(format!("{shown}: {lines} lines"));
        }
        if shown.ends_with(".rs") {
            for (line, length) in functions(&text) {
                if length > MAX_FN_LINES {
                    over.push(format!("{shown}:{line}: a function of {length} lines"));
                }
            }
        }
    }
    assert!(over.is_empty(), "over the limits:\n{}", over.join("\n"));
}

#[test]
fn the_function_measure_sees_bodies_and_skips_declarations() {
    let text = "trait T {\n    fn declared(&self);\n}\n\npub async fn body(\n    a: u8,\n) -> u8 {\n    a\n}\n\nfn short() {}\n";
    assert_eq!(functions(text), vec![(5, 5)]);
}
