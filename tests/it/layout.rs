//! The daemon's layout, checked: its modules import downwards only (verbs → daemon → keeper →
//! plan/sink/knox → config → leaves, as docs/ARCHITECTURE.md draws it), and no file or
//! function of `src/` grows past the size at which it starts holding two things.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::{root, rust_files};

/// Each top-level module of `src/` and its layer; a module may use only modules of lower
/// layers. A new module has to be placed here, which is the moment to decide where it sits.
const LAYERS: &[(&str, u8)] = &[
    // Leaves: no imports from the crate.
    ("control", 0),
    ("keys", 0),
    ("scheduler", 0),
    ("secret", 0),
    ("systemd", 0),
    ("text", 0),
    ("time", 0),
    // The validated config (it builds scheduler::Policy).
    ("config", 1),
    // Knox's protocol, then what a token looks like on disk.
    ("knox", 2),
    ("cli", 2),
    ("output", 3),
    // The one writer of token files, and what the keeper reports to and calls out to.
    ("sink", 4),
    ("hooks", 4),
    ("telemetry", 4),
    // The keeper, and the daemon's other inputs and outputs.
    ("keeper", 5),
    ("reload", 5),
    ("signals", 5),
    ("server", 5),
    // The daemon's wiring.
    ("app", 6),
    // The verbs, and the fuzzers' entry points.
    ("cmd", 7),
    ("fuzzing", 7),
];

/// Past this many lines a file is asking to be split.
const MAX_FILE_LINES: usize = 800;
/// Past this many lines a function is.
const MAX_FN_LINES: usize = 80;

/// The top-level module a file of `src/` belongs to (`src/keeper/attempt.rs` → `keeper`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The code of a file without its comments and its `#[cfg(test)]` part.
fn code(text: &str) -> String {
    let before_tests = text.split("#[cfg(test)]").next().unwrap_or_default();
    before_tests.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The crate modules a piece of code names: `crate::x`, and `x` inside `use crate::{x, ...}`.
fn imports(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect::<String>();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(group.split(',').map(|item| ident(item.trim())).filter(|m| !m.is_empty()));
        } else {
            found.push(ident(rest));
        }
    }
    found
}

fn is_test_file(src: &Path, file: &Path) -> bool {
    let rel = file.strip_prefix(src).unwrap().to_string_lossy().into_owned();
    rel.ends_with("tests.rs") || rel.contains("/tests/")
}

#[test]
fn modules_import_downwards_only() {
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files.iter().filter(|f| !is_test_file(&src, f)) {
        let module = module_of(&src, file);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(&layer) = layers.get(module.as_str()) else {
            wrong.push(format!("{}: module `{module}` has no layer in tests/it/layout.rs", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in imports(&code(&text)) {
            if used == module {
                continue;
            }
            match layers.get(used.as_str()) {
                Some(&l) if l < layer => {}
                Some(&l) => wrong.push(format!(
                    "{}: `{module}` (layer {layer}) uses `{used}` (layer {l}), which is not below it",
                    file.display()
                )),
                None => wrong.push(format!("{}: uses `crate::{used}`, which has no layer", file.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "imports that go up or sideways:\n{}", wrong.join("\n"));
}

#[test]
fn the_layer_check_sees_both_import_forms() {
    let code = code(
        "use crate::{config::Cluster, knox};\n// crate::app in a comment\nlet x = crate::time::human(d);",
    );
    assert_eq!(imports(&code), ["config", "knox", "time"]);
}

#[test]
fn files_and_functions_stay_small() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut big = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() > MAX_FILE_LINES {
            big.push(format!("{}: {} lines (at most {MAX_FILE_LINES})", file.display(), lines.len()));
        }
        for (start, len, name) in functions(&lines) {
            if len > MAX_FN_LINES {
                big.push(format!(
                    "{}:{}: fn {name} is {len} lines (at most {MAX_FN_LINES})",
                    file.display(),
                    start + 1
                ));
            }
        }
    }
    assert!(big.is_empty(), "split these:\n{}", big.join("\n"));
}

/// Each function of a rustfmt-formatted file: (first line index, length in lines, name). Its
/// body ends at the first `}` line with the indentation of its `fn` line.
fn functions(lines: &[&str]) -> Vec<(usize, usize, String)> {
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        let Some(pos) = words.iter().position(|w| *w == "fn") else { continue };
        let qualifiers = ["pub", "pub(crate)", "pub(super)", "async", "const", "unsafe"];
        if !words[..pos].iter().all(|w| qualifiers.contains(w)) || trimmed.ends_with(';') {
            continue;
        }
        let name = words.get(pos + 1).map_or("", |w| w.split(['(', '<']).next().unwrap_or(w)).to_owned();
        let closing = format!("{indent}}}");
        if let Some(end) = lines[i..].iter().position(|l| *l == closing) {
            found.push((i, end + 1, name));
        }
    }
    found
}

#[test]
fn the_size_check_measures_functions() {
    let text = "fn a() {\n    let x = 1;\n}\n\n    pub(crate) async fn b<T>(t: T) {\n        if x {\n        }\n    }\nfn c();";
    let lines: Vec<&str> = text.lines().collect();
    let got: Vec<(usize, usize, String)> = functions(&lines);
    assert_eq!(got, [(0, 3, "a".to_owned()), (4, 4, "b".to_owned())]);
}
