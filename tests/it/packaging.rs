//! The container image and the Kubernetes example, checked without Docker or a cluster: the
//! Dockerfile's shape (multi-stage, non-root, the daemon as entrypoint), the build context,
//! and `deploy/kubernetes/spark-sidecar.yaml`: its embedded config loads, and its paths
//! (outputs, shared volume, Secret, ConfigMap) agree with each other and with the image.
//!
//! The manifest is read by a small parser for the block YAML it uses (no YAML crate). Where
//! python3 with PyYAML is installed, the parser's result must also equal PyYAML's.

use std::path::{Path, PathBuf};

use crate::harness::{root, rust_files};

use serde_json::Value;
use token_keeper::config::{Config, Env, CONFIG_ENV};

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------------------
// The Dockerfile

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                let (op, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((op.to_ascii_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    assert!(current.is_empty(), "the Dockerfile ends in a continuation");
    out
}

/// The arguments of the last `op` instruction of the final stage.
fn last<'a>(instructions: &'a [(String, String)], op: &str) -> Option<&'a str> {
    let stage = instructions.iter().rposition(|(o, _)| o == "FROM").expect("a FROM");
    instructions[stage..].iter().rev().find(|(o, _)| o == op).map(|(_, a)| a.as_str())
}

/// The image's ENTRYPOINT, in exec form.
fn entrypoint() -> Vec<String> {
    let ins = dockerfile();
    let e = last(&ins, "ENTRYPOINT").expect("an ENTRYPOINT");
    serde_json::from_str(e).unwrap_or_else(|_| panic!("ENTRYPOINT is not in exec (JSON) form: {e}"))
}

/// The value the final stage gives the environment variable `name`.
fn image_env(name: &str) -> Option<String> {
    let ins = dockerfile();
    let stage = ins.iter().rposition(|(o, _)| o == "FROM").unwrap();
    ins[stage..]
        .iter()
        .filter(|(o, _)| o == "ENV")
        .flat_map(|(_, a)| a.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .next_back()
}

#[test]
fn dockerfile_builds_a_static_binary_in_one_stage_and_runs_it_as_non_root_in_another() {
    let ins = dockerfile();
    let froms: Vec<&str> = ins.iter().filter(|(o, _)| o == "FROM").map(|(_, a)| a.as_str()).collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let builder = froms[0].split_whitespace().collect::<Vec<_>>();
    assert!(
        builder.len() == 3 && builder[1].eq_ignore_ascii_case("AS"),
        "the build stage is named: {builder:?}"
    );
    let build = ins.iter().find(|(o, a)| o == "RUN" && a.contains("cargo build")).expect("a cargo build");
    for flag in ["--release", "--locked", "--target x86_64-unknown-linux-musl"] {
        assert!(build.1.contains(flag), "cargo build without {flag}: {}", build.1);
    }
    assert!(ins.iter().any(|(o, a)| o == "RUN" && a.contains("musl-tools")), "musl-gcc builds ring");

    let copy = last(&ins, "COPY").expect("the final stage copies the binary");
    assert!(
        copy.starts_with(&format!("--from={} ", builder[2]))
            && copy.ends_with(" /usr/local/bin/token-keeper"),
        "{copy}"
    );
    let user = last(&ins, "USER").expect("a USER in the final stage");
    let uid = user.split(':').next().unwrap();
    let uid: u32 =
        uid.parse().unwrap_or_else(|_| panic!("USER {user}: numeric, so runAsNonRoot can check it"));
    assert_ne!(uid, 0, "USER {user}");
    assert_eq!(entrypoint(), ["token-keeper", "run"]);
    assert_eq!(image_env(CONFIG_ENV).as_deref(), Some("/etc/token-keeper/config.toml"));
}

#[test]
fn the_docker_build_context_holds_what_cargo_reads() {
    let ignore = read(".dockerignore");
    let patterns: Vec<&str> =
        ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert_eq!(patterns.first(), Some(&"*"), "an allow-list: everything else (target/, .git) stays out");
    for needed in ["!Cargo.toml", "!Cargo.lock", "!src"] {
        assert!(patterns.contains(&needed), ".dockerignore lacks {needed}");
    }
    // So the context must do: no source file may include a file from outside src/.
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let src = root().join("src").canonicalize().unwrap();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("include_").filter(|(i, _)| {
            text[*i..].starts_with("include_str!(\"") || text[*i..].starts_with("include_bytes!(\"")
        }) {
            let arg = &text[i..];
            let start = arg.find('"').unwrap() + 1;
            let rel = &arg[start..start + arg[start..].find('"').unwrap()];
            let target = f.parent().unwrap().join(rel).canonicalize().unwrap();
            assert!(
                target.starts_with(&src),
                "{} includes {rel}, outside the Docker build context",
                f.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// The Kubernetes manifest

const MANIFEST: &str = "deploy/kubernetes/spark-sidecar.yaml";

fn manifest() -> Vec<Value> {
    yaml::parse_documents(&read(MANIFEST)).unwrap_or_else(|e| panic!("{MANIFEST}: {e}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a scalar: {v}"))
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn doc<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let mut of_kind = docs.iter().filter(|d| d["kind"] == kind);
    let d = of_kind.next().unwrap_or_else(|| panic!("no {kind}"));
    assert!(of_kind.next().is_none(), "one {kind}");
    d
}

/// The argv a container runs: `command` (else the image's ENTRYPOINT) then `args`.
fn argv(container: &Value) -> Vec<String> {
    let mut v: Vec<String> = match container.get("command") {
        Some(c) => list(c).iter().map(|a| s(a).to_owned()).collect(),
        None => entrypoint(),
    };
    v.extend(list(&container["args"]).iter().map(|a| s(a).to_owned()));
    v
}

/// Where `container` mounts the volume `volume`, with the mount.
fn mount<'a>(container: &'a Value, volume: &str) -> &'a Value {
    list(&container["volumeMounts"])
        .iter()
        .find(|m| m["name"] == volume)
        .unwrap_or_else(|| panic!("{} does not mount {volume}", container["name"]))
}

fn mount_path<'a>(container: &'a Value, volume: &str) -> &'a Path {
    Path::new(s(&mount(container, volume)["mountPath"]))
}

/// The Pod's volume that satisfies `pred`, by name.
fn volume<'a>(pod: &'a Value, what: &str, pred: impl Fn(&Value) -> bool) -> &'a str {
    let v =
        list(&pod["spec"]["volumes"]).iter().find(|v| pred(v)).unwrap_or_else(|| panic!("no {what} volume"));
    s(&v["name"])
}

#[test]
fn the_manifest_parses_and_its_config_loads() {
    let docs = manifest();
    let kinds: Vec<&str> = docs.iter().map(|d| s(&d["kind"])).collect();
    assert_eq!(kinds, ["ConfigMap", "Secret", "Pod"]);
    for d in &docs {
        assert_eq!(d["apiVersion"], "v1", "{}", d["kind"]);
        assert!(d["metadata"]["name"].is_string(), "{} has a name", d["kind"]);
    }
    let config = embedded_config(&docs);
    assert_eq!(config.clusters.len(), 1);
    assert!(!config.clusters[0].outputs.is_empty());
}

fn embedded_config(docs: &[Value]) -> Config {
    let text = s(&doc(docs, "ConfigMap")["data"]["config.toml"]);
    let env = Env { home: Some(PathBuf::from("/home/nonroot")), ..Env::default() };
    Config::from_toml(text, MANIFEST, &env).unwrap_or_else(|e| panic!("the ConfigMap's config.toml: {e}"))
}

#[test]
fn the_manifests_paths_agree_with_its_config_and_the_image() {
    let docs = manifest();
    let config = embedded_config(&docs);
    let pod = doc(&docs, "Pod");
    let spec = &pod["spec"];
    let inits = list(&spec["initContainers"]);
    let named = |cs: &[Value], n: &str| cs.iter().find(|c| c["name"] == n).cloned().unwrap_or(Value::Null);

    // The init container runs `once` and finishes; then the native sidecar runs `run`.
    assert_eq!(inits.len(), 2, "init and sidecar");
    let (init, sidecar) = (&inits[0], &inits[1]);
    assert!(
        argv(init).iter().any(|a| a == "once") && !argv(init).iter().any(|a| a == "run"),
        "{:?}",
        argv(init)
    );
    assert!(init.get("restartPolicy").is_none(), "the init container must run to completion");
    assert_eq!(argv(sidecar), ["token-keeper", "run"]);
    assert_eq!(sidecar["restartPolicy"], "Always", "a native sidecar");
    assert_eq!(s(&init["image"]), s(&sidecar["image"]));
    // The emptyDir's root is 0777 and not sticky: the keeper accepts it as an ancestor only
    // when told the Pod's containers are trusted.
    for c in [init, sidecar] {
        let env = list(&c["env"]);
        assert!(
            env.iter().any(|e| e["name"] == "TOKEN_KEEPER_SHARED_DIRS" && e["value"] == "/var/run/cde"),
            "{} lists the emptyDir in TOKEN_KEEPER_SHARED_DIRS",
            c["name"]
        );
    }
    let driver = named(list(&spec["containers"]), "spark-driver");
    assert!(driver.is_object(), "a spark-driver container");

    // The shared volume is in memory, and every output lies in a subdirectory of it (the
    // emptyDir's root is 0777, which the sink refuses), as every container sees it.
    let shared = volume(pod, "emptyDir", |v| v.get("emptyDir").is_some());
    let empty_dir = list(&spec["volumes"]).iter().find(|v| v["name"] == shared).unwrap();
    assert_eq!(empty_dir["emptyDir"]["medium"], "Memory");
    let outputs: Vec<&Path> =
        config.clusters.iter().flat_map(|c| &c.outputs).map(|o| o.path.as_path()).collect();
    for c in [init, sidecar, &driver] {
        let at = mount_path(c, shared);
        for p in &outputs {
            assert!(p.starts_with(at), "{} is not under {} in {}", p.display(), at.display(), c["name"]);
            assert_ne!(p.parent(), Some(at), "{} is in the emptyDir's root", p.display());
        }
    }
    assert_eq!(mount(&driver, shared)["readOnly"], "true", "the driver only reads");
    let args = argv(&driver).join(" ");
    assert!(
        outputs.iter().any(|p| args.contains(&*p.to_string_lossy())),
        "the driver reads a token file: {args}"
    );

    // The Secret is mounted where password_file points, read-only, and holds that key.
    let secret = doc(&docs, "Secret");
    let secret_name = s(&secret["metadata"]["name"]);
    let secret_volume = volume(pod, "Secret", |v| v["secret"]["secretName"] == secret_name);
    let token_keeper::config::Auth::Basic { password_file, .. } = &config.clusters[0].auth else {
        panic!("the example authenticates with a password")
    };
    for c in [init, sidecar] {
        assert_eq!(Some(mount_path(c, secret_volume)), password_file.parent(), "{}", c["name"]);
        assert_eq!(mount(c, secret_volume)["readOnly"], "true");
    }
    let key = password_file.file_name().unwrap().to_str().unwrap();
    assert!(secret["stringData"].get(key).or(secret["data"].get(key)).is_some(), "the Secret has no {key:?}");
    assert!(
        list(&driver["volumeMounts"]).iter().all(|m| m["name"] != secret_volume),
        "the driver sees no password"
    );

    // The ConfigMap's directory is mounted where the image looks for its config (no subPath,
    // so that edits reach the file and the sidecar reloads).
    let config_map = s(&doc(&docs, "ConfigMap")["metadata"]["name"]);
    let config_volume = volume(pod, "ConfigMap", |v| v["configMap"]["name"] == config_map);
    let image_config = PathBuf::from(image_env(CONFIG_ENV).expect("the image sets the config path"));
    for c in [init, sidecar] {
        assert_eq!(mount_path(c, config_volume).join("config.toml"), image_config, "{}", c["name"]);
        assert!(mount(c, config_volume).get("subPath").is_none());
    }

    // Hardening: non-root everywhere, and the token-keeper containers locked down.
    assert_eq!(spec["securityContext"]["runAsNonRoot"], "true");
    for c in [init, sidecar, &driver] {
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], "true", "{}", c["name"]);
        assert_eq!(sc["allowPrivilegeEscalation"], "false", "{}", c["name"]);
        assert!(list(&sc["capabilities"]["drop"]).iter().any(|d| d == "ALL"), "{}", c["name"]);
        // One UID for all, set on the Pod: the token directory is 0700 and its files 0600.
        assert!(sc.get("runAsUser").is_none(), "{} overrides the Pod's runAsUser", c["name"]);
    }
    assert!(spec["securityContext"]["runAsUser"].as_str().is_some_and(|u| u != "0"));
    for c in [init, sidecar] {
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], "true", "{}", c["name"]);
    }
}

#[test]
fn the_yaml_reader_agrees_with_pyyaml_where_installed() {
    let text = read(MANIFEST);
    let ours = Value::Array(yaml::parse_documents(&text).unwrap());
    // The reader itself, on the constructs the manifest uses.
    let sample = "a: 1 # c\nb:\n  - x\n  - k: \"v # not a comment\"\n    l: [\"p\", 'q']\n  -\n    m: {}\nc: |\n  one\n\n  two\n# end\nd: {medium: Memory}\n";
    let parsed = yaml::parse_documents(sample).unwrap();
    let expected = serde_json::json!([{
        "a": "1",
        "b": ["x", {"k": "v # not a comment", "l": ["p", "q"]}, {"m": {}}],
        "c": "one\n\ntwo\n",
        "d": {"medium": "Memory"},
    }]);
    assert_eq!(Value::Array(parsed), expected);
    assert!(yaml::parse_documents("a: [unclosed\n").is_err());
    assert!(yaml::parse_documents("a: &anchor x\n").is_err(), "anchors are refused, not misread");

    // PyYAML's BaseLoader keeps every scalar a string, as this reader does.
    let script = "import sys, json, yaml\n\
                  print(json.dumps(list(yaml.load_all(sys.stdin.read(), Loader=yaml.BaseLoader))))";
    for input in [text.as_str(), sample] {
        let Some(theirs) = pyyaml(script, input) else { return };
        let ours = if input == sample { expected.clone() } else { ours.clone() };
        assert_eq!(ours, theirs, "the hand reader and PyYAML disagree");
    }
}

/// PyYAML's reading of `input`, or `None` when python3 or PyYAML is missing.
fn pyyaml(script: &str, input: &str) -> Option<Value> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        assert!(err.contains("No module named"), "PyYAML failed on the manifest: {err}");
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("PyYAML's json"))
}

/// A reader for the block YAML that Kubernetes manifests are written in: mappings,
/// sequences (also of mappings, `- key: value`), `|` literals, flow lists of scalars, `{}`
/// and simple flow mappings, quoted and plain scalars, comments and `---`. Every scalar
/// stays a string (like PyYAML's BaseLoader). Anything else is an error, never a guess.
mod yaml {
    use serde_json::{Map, Value};

    struct Line {
        no: usize,
        indent: usize,
        text: String,
    }

    struct Reader<'a> {
        raw: Vec<&'a str>,
        /// Lines before this document in the file.
        first: usize,
        /// Index into `raw` of the next unread line.
        pos: usize,
        /// A line that was rewritten (the rest of `- key: value`) and is to be read next.
        pushed: Option<Line>,
    }

    pub fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
        // Each document's lines, and how many lines precede it (for line numbers).
        let mut docs = Vec::new();
        let (mut current, mut first) = (Vec::new(), 0);
        for (i, line) in text.lines().enumerate() {
            if line.trim_end() == "---" {
                docs.push((std::mem::take(&mut current), first));
                first = i + 1;
            } else {
                current.push(line);
            }
        }
        docs.push((current, first));
        docs.into_iter()
            .filter(|(d, _)| d.iter().any(|l| significant(l)))
            .map(|(raw, first)| {
                // Tabs are not indentation in YAML: refuse rather than misread.
                if let Some(no) = raw.iter().position(|l| l.trim_start_matches(' ').starts_with('\t')) {
                    return Err(format!("line {}: indented with a tab", first + no + 1));
                }
                let mut r = Reader { raw, first, pos: 0, pushed: None };
                let v = r.block(0)?;
                match r.peek() {
                    Some(l) => Err(format!("line {}: unexpected {:?}", l.no, l.text)),
                    None => Ok(v),
                }
            })
            .collect()
    }

    fn significant(line: &str) -> bool {
        let t = line.trim();
        !t.is_empty() && !t.starts_with('#')
    }

    impl Reader<'_> {
        fn peek(&mut self) -> Option<&Line> {
            if self.pushed.is_none() {
                while self.pos < self.raw.len() && !significant(self.raw[self.pos]) {
                    self.pos += 1;
                }
                let raw = *self.raw.get(self.pos)?;
                let indent = raw.len() - raw.trim_start_matches(' ').len();
                self.pushed =
                    Some(Line { no: self.first + self.pos + 1, indent, text: raw.trim().to_owned() });
                self.pos += 1;
            }
            self.pushed.as_ref()
        }

        fn next(&mut self) -> Line {
            self.peek();
            self.pushed.take().expect("peeked")
        }

        /// A block node whose first line is indented at least `min`.
        fn block(&mut self, min: usize) -> Result<Value, String> {
            let Some(line) = self.peek() else { return Ok(Value::String(String::new())) };
            if line.indent < min {
                return Ok(Value::String(String::new()));
            }
            let indent = line.indent;
            if is_item(&line.text) {
                self.sequence(indent)
            } else {
                self.mapping(indent)
            }
        }

        fn sequence(&mut self, indent: usize) -> Result<Value, String> {
            let mut items = Vec::new();
            while let Some(line) = self.peek() {
                if line.indent != indent || !is_item(&line.text) {
                    break;
                }
                let line = self.next();
                let rest = line.text[1..].trim_start();
                let item = if rest.is_empty() || rest.starts_with('#') {
                    self.block(indent + 1)?
                } else if strip_comment(rest) == "|" {
                    Value::String(self.literal(indent))
                } else if key_value(rest).is_some() {
                    // `- key: value`: a mapping whose keys line up after the dash.
                    let at = indent + (line.text.len() - rest.len());
                    self.pushed = Some(Line { no: line.no, indent: at, text: rest.to_owned() });
                    self.mapping(at)?
                } else {
                    scalar(rest, line.no)?
                };
                items.push(item);
            }
            Ok(Value::Array(items))
        }

        fn mapping(&mut self, indent: usize) -> Result<Value, String> {
            let mut map = Map::new();
            while let Some(line) = self.peek() {
                if line.indent < indent || (line.indent == indent && is_item(&line.text)) {
                    break;
                }
                let line = self.next();
                if line.indent > indent {
                    return Err(format!("line {}: unexpected indentation", line.no));
                }
                let (key, rest) = key_value(&line.text)
                    .ok_or_else(|| format!("line {}: not `key: value`: {:?}", line.no, line.text))?;
                let value = match strip_comment(rest) {
                    "" => match self.peek() {
                        // A sequence may sit at its key's indentation.
                        Some(next) if next.indent == indent && is_item(&next.text) => {
                            self.sequence(indent)?
                        }
                        _ => self.block(indent + 1)?,
                    },
                    "|" => Value::String(self.literal(indent)),
                    other => scalar(other, line.no)?,
                };
                if map.insert(key.to_owned(), value).is_some() {
                    return Err(format!("line {}: duplicate key {key:?}", line.no));
                }
            }
            Ok(Value::Object(map))
        }

        /// The `|` block after a key at `parent` indentation: lines indented further, with
        /// that indentation removed, and one final newline (clip chomping).
        fn literal(&mut self, parent: usize) -> String {
            let mut lines: Vec<&str> = Vec::new();
            let mut indent = None;
            while let Some(&raw) = self.raw.get(self.pos) {
                let this = raw.len() - raw.trim_start().len();
                if !raw.trim().is_empty() {
                    if this <= parent {
                        break;
                    }
                    indent.get_or_insert(this);
                }
                lines.push(raw);
                self.pos += 1;
            }
            while lines.last().is_some_and(|l| l.trim().is_empty()) {
                lines.pop();
            }
            let indent = indent.unwrap_or(0);
            let mut out: String =
                lines.iter().map(|l| l.get(indent..).unwrap_or("")).collect::<Vec<_>>().join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            out
        }
    }

    fn is_item(text: &str) -> bool {
        text == "-" || text.starts_with("- ")
    }

    /// `key: rest` with a plain key, or `None`.
    fn key_value(text: &str) -> Option<(&str, &str)> {
        let (key, rest) = match text.find(": ") {
            Some(i) => (&text[..i], &text[i + 2..]),
            None => (text.strip_suffix(':')?, ""),
        };
        let plain = !key.is_empty() && !key.contains(['"', '\'', '{', '[', '#', ' ']);
        plain.then_some((key, rest))
    }

    /// The text before a ` #` comment that is not inside quotes.
    fn strip_comment(text: &str) -> &str {
        let mut quote = None;
        let mut prev = ' ';
        for (i, c) in text.char_indices() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '#') if prev == ' ' => return text[..i].trim_end(),
                _ => {}
            }
            prev = c;
        }
        text.trim()
    }

    fn scalar(text: &str, no: usize) -> Result<Value, String> {
        let text = strip_comment(text);
        let err = |what: &str| Err(format!("line {no}: {what}: {text:?}"));
        if let Some(inner) = text.strip_prefix('[') {
            let Some(inner) = inner.strip_suffix(']') else { return err("unclosed flow sequence") };
            return split_flow(inner).into_iter().map(|item| quoted_or_plain(item, no)).collect();
        }
        if let Some(inner) = text.strip_prefix('{') {
            let Some(inner) = inner.strip_suffix('}') else { return err("unclosed flow mapping") };
            let mut map = Map::new();
            for pair in split_flow(inner) {
                let Some((k, v)) = pair.split_once(':') else { return err("not `key: value`") };
                map.insert(k.trim().to_owned(), quoted_or_plain(v.trim(), no)?);
            }
            return Ok(Value::Object(map));
        }
        quoted_or_plain(text, no)
    }

    fn split_flow(inner: &str) -> Vec<&str> {
        if inner.trim().is_empty() {
            return Vec::new();
        }
        let mut parts = Vec::new();
        let (mut quote, mut start) = (None, 0);
        for (i, c) in inner.char_indices() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, ',') => {
                    parts.push(inner[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(inner[start..].trim());
        parts
    }

    fn quoted_or_plain(text: &str, no: usize) -> Result<Value, String> {
        let err = |what: &str| Err(format!("line {no}: {what}: {text:?}"));
        if let Some(inner) = text.strip_prefix('"') {
            let Some(inner) = inner.strip_suffix('"') else { return err("unclosed quote") };
            if inner.contains('\\') {
                return err("escapes are not supported");
            }
            return Ok(Value::String(inner.to_owned()));
        }
        if let Some(inner) = text.strip_prefix('\'') {
            let Some(inner) = inner.strip_suffix('\'') else { return err("unclosed quote") };
            return Ok(Value::String(inner.replace("''", "'")));
        }
        if text.starts_with(['&', '*', '!', '|', '>', '[', '{', '@', '`']) || text.contains(": ") {
            return err("unsupported YAML");
        }
        Ok(Value::String(text.to_owned()))
    }
}
