//! Repository hygiene, like rust-analyzer's tidy test: every source file says what it owns,
//! every config key is documented, and the systemd unit keeps its hardening.

use crate::harness::{root, rust_files};

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 20);
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().trim_start().starts_with("//!"))
        .map(|f| f.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a //! header saying what they own: {missing:?}");
}

#[test]
fn only_the_sink_writes_files_in_src() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    for f in files {
        let rel = f.strip_prefix(root()).unwrap().display().to_string();
        if rel.starts_with("src/sink") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for banned in ["fs::write(", "File::create("] {
            assert!(!text.contains(banned), "{rel} uses {banned}: token files go through sink::write_atomic");
        }
    }
}

/// Every key the config parser accepts appears in the example config and the configuration
/// reference (docs/reference.md, where README.md's manual moved).
#[test]
fn every_config_key_is_documented() {
    let src = std::fs::read_to_string(root().join("src/config.rs")).unwrap();
    let example = std::fs::read_to_string(root().join("config/example.toml")).unwrap();
    let reference = std::fs::read_to_string(root().join("docs/reference.md")).unwrap();
    let mut keys = Vec::new();
    let mut in_raw = false;
    for line in src.lines() {
        if line.starts_with("struct Raw") {
            in_raw = true;
        } else if line.starts_with('}') {
            in_raw = false;
        } else if in_raw {
            let l = line.trim();
            if let Some((name, _)) = l.split_once(':') {
                if !name.starts_with("//") && !name.starts_with('#') && !name.contains(' ') {
                    keys.push(match name {
                        "clusters" => "cluster",
                        n => n,
                    });
                }
            }
        }
    }
    assert!(keys.len() >= 15, "parsed keys: {keys:?}");
    for key in keys {
        assert!(example.contains(key), "config/example.toml does not mention `{key}`");
        assert!(reference.contains(&format!("`{key}`")), "docs/reference.md does not document `{key}`");
    }
}

/// `key=value` pairs of a unit file (repeated keys kept in order).
fn unit_keys(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn systemd_units_are_hardened_and_agree_with_their_configs() {
    for (unit, config) in
        [("token-keeper.service", "systemd.toml"), ("token-keeper-user.service", "user.toml")]
    {
        let keys = unit_keys(&std::fs::read_to_string(root().join("systemd").join(unit)).unwrap());
        let get = |k: &str| keys.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("Type"), Some("notify"), "{unit}");
        assert_eq!(get("ExecReload"), Some("kill -HUP $MAINPID"), "{unit}");
        assert_eq!(get("NoNewPrivileges"), Some("yes"), "{unit}");
        assert_eq!(get("ProtectSystem"), Some("strict"), "{unit}");
        assert_eq!(get("Restart"), Some("on-failure"), "{unit}");
        assert_eq!(
            get("RestartPreventExitStatus"),
            Some("2"),
            "{unit}: a config error is not fixed by restarting"
        );
        assert!(get("WatchdogSec").is_some(), "{unit}");
        assert!(get("ExecStart").is_some_and(|v| v.contains("token-keeper") && v.contains(" run")), "{unit}");
        assert!(get("ReadWritePaths").is_some(), "{unit}");
        // The credential the config reads is the one the unit loads.
        let cred = get("LoadCredential").expect("LoadCredential=");
        let name = cred.split(':').next().unwrap();
        let config_text = std::fs::read_to_string(root().join("config").join(config)).unwrap();
        assert!(
            config_text.contains(&format!("/run/credentials/token-keeper.service/{name}\""))
                || config_text.contains(&format!("password_credential = \"{name}\"")),
            "{unit}: {cred} is not what {config} reads"
        );
    }
}

#[test]
fn readme_opens_with_the_two_commands_and_ci_runs_the_tests() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let head: String = readme.lines().take(30).collect::<Vec<_>>().join("\n");
    assert!(head.contains("demo"), "README must open with the demo command");
    assert!(head.contains("cargo test"), "README must open with the test command");
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(ci.contains("cargo test"), ".ci/run runs the README's test command");
}

/// `packaging/deb` rewrites each unit's ExecStart= to /usr/bin/token-keeper and declares what
/// the units run (the real-systemd test, `packaging/systemd-test`, checks the same on a booted
/// system, but CI runs it only when the package is built): keep the units, the script and
/// the install command (README.md and docs/edge-host.md) in step.
#[test]
fn debian_package_matches_the_units() {
    let deb = std::fs::read_to_string(root().join("packaging/deb")).unwrap();
    let depends = deb.lines().find(|l| l.starts_with("DEPENDS=")).expect("packaging/deb: DEPENDS=");
    for (unit, bin) in [
        ("token-keeper.service", "/usr/local/bin/token-keeper"),
        ("token-keeper-user.service", "%h/.cargo/bin/token-keeper"),
    ] {
        let keys = unit_keys(&std::fs::read_to_string(root().join("systemd").join(unit)).unwrap());
        let exec_start = keys.iter().find(|(k, _)| k == "ExecStart").map(|(_, v)| v.as_str());
        assert!(
            exec_start.is_some_and(|v| v.starts_with(&format!("{bin} "))),
            "{unit}: packaging/deb rewrites `ExecStart={bin} ...` to /usr/bin/token-keeper"
        );
        assert!(
            deb.contains(&format!("unit systemd/{unit} ")),
            "packaging/deb does not package systemd/{unit}"
        );
        for (k, v) in keys.iter().filter(|(k, _)| k.starts_with("Exec")) {
            let prog = v.trim_start_matches(['-', '@', ':', '+', '!']).split(' ').next().unwrap();
            let provided = match prog {
                p if p.ends_with("/token-keeper") => true,
                // Essential: yes in Debian.
                "mkdir" | "/bin/mkdir" | "/usr/bin/mkdir" | "/bin/sh" => true,
                "kill" | "/bin/kill" | "/usr/bin/kill" => depends.contains("procps"),
                _ => false,
            };
            assert!(
                provided,
                "{unit}: {k}={v}: add the package providing `{prog}` to DEPENDS in packaging/deb"
            );
        }
    }
    for doc in ["README.md", "docs/edge-host.md"] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        assert!(
            text.contains("sudo apt install ./target/debian/token-keeper_*.deb"),
            "{doc}: the install command"
        );
    }
}
