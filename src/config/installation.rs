//! Who this keeper is, for the labels every acquisition sends to Knox (docs/knox.md §2.1): the
//! installation id and the host name.
//!
//! `installation_id` is set in the file, or derived: the first 16 hex digits of SHA-256 over
//! `token-keeper`, the machine id (`/etc/machine-id`, else `/var/lib/dbus/machine-id`, else
//! the host name), the effective uid and the absolute path of the config file, separated by
//! NUL bytes. Nothing is stored, so a restart or wiped output files keep the id, while two
//! keepers on one host (a system unit and a user unit, or two config files) differ. A
//! container without a machine id gets one derived from its host name, which changes with
//! every Pod: such setups set `installation_id` (docs/reference.md).
//!
//! Nothing here fails: each fact that cannot be read falls back to the next, and the host
//! name falls back to `unknown`.

use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::limits::{MAX_HOST_LABEL, MAX_INSTALLATION_ID};
use super::read_regular_file;

/// Where the machine id is looked for, in this order: systemd's, then D-Bus's older copy.
pub const MACHINE_ID_FILES: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

/// The host name when the kernel's reduces to nothing.
const UNKNOWN_HOST: &str = "unknown";

/// What this machine and process contribute to the installation id and the labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The first usable machine id of [`MACHINE_ID_FILES`], if any.
    pub machine_id: Option<String>,
    /// The kernel's host name, reduced by [`host_label`].
    pub host: String,
    /// The effective uid.
    pub uid: u32,
}

impl Default for Machine {
    /// No machine id, host `unknown`, uid 0: for tests that parse configs without a machine.
    fn default() -> Machine {
        Machine { machine_id: None, host: UNKNOWN_HOST.to_owned(), uid: 0 }
    }
}

impl Machine {
    /// This machine and process.
    pub fn from_process() -> Machine {
        Machine {
            machine_id: machine_id(&MACHINE_ID_FILES.map(Path::new)),
            host: host_label(&rustix::system::uname().nodename().to_string_lossy()),
            uid: rustix::process::geteuid().as_raw(),
        }
    }
}

/// This keeper installation as Knox is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `installation_id`: `[A-Za-z0-9._-]`, 1 to [`MAX_INSTALLATION_ID`] characters.
    pub installation_id: String,
    /// The host name, `[A-Za-z0-9._-]`, 1 to [`MAX_HOST_LABEL`] characters.
    pub host: String,
}

/// The first file of `files` that holds a plausible machine id (one line of 1 to 128 ASCII
/// letters and digits, not systemd's `uninitialized` placeholder), trimmed. Unreadable,
/// special or oversized files are skipped.
pub(super) fn machine_id(files: &[&Path]) -> Option<String> {
    files.iter().find_map(|f| {
        let bytes = read_regular_file(f, 1024).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let id = text.trim();
        let plausible = (1..=128).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric())
            && id != "uninitialized";
        plausible.then(|| id.to_owned())
    })
}

/// A host name reduced to what a label may hold: surrounding whitespace trimmed, at most
/// [`MAX_HOST_LABEL`] characters, each outside `[A-Za-z0-9._-]` replaced by `_`; `unknown`
/// if nothing is left.
pub fn host_label(raw: &str) -> String {
    let label: String =
        raw.trim().chars().take(MAX_HOST_LABEL).map(|c| if is_label_char(c) { c } else { '_' }).collect();
    if label.is_empty() {
        UNKNOWN_HOST.to_owned()
    } else {
        label
    }
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// The derived installation id (see the module docs) for `machine` and the config file at
/// `config_path` (absolute, as bytes: a path need not be UTF-8).
pub(super) fn derive_id(machine: &Machine, config_path: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"token-keeper\0");
    hash.update(machine.machine_id.as_deref().unwrap_or(&machine.host).as_bytes());
    hash.update(b"\0");
    hash.update(machine.uid.to_string().as_bytes());
    hash.update(b"\0");
    hash.update(config_path);
    hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A configured `installation_id`: 1 to [`MAX_INSTALLATION_ID`] characters of
/// `[A-Za-z0-9._-]`. It is not a secret, so it is quoted when short enough to read.
pub(super) fn check_id(value: &str) -> Result<String, String> {
    let ok = (1..=MAX_INSTALLATION_ID).contains(&value.len()) && value.chars().all(is_label_char);
    if ok {
        return Ok(value.to_owned());
    }
    let shown = if value.chars().count() <= MAX_INSTALLATION_ID {
        format!("{value:?}")
    } else {
        format!("(a value of {} characters)", value.chars().count())
    };
    Err(format!(
        "installation_id: {shown} must be 1 to {MAX_INSTALLATION_ID} characters of [A-Za-z0-9._-] \
         (it labels this keeper's tokens in Knox)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_id_comes_from_the_first_usable_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            use std::io::Write as _;
            let p = dir.path().join(name);
            let mut f = std::fs::File::options().write(true).create_new(true).open(&p).unwrap();
            f.write_all(text.as_bytes()).unwrap();
            p
        };
        let etc = file("etc", "0123456789abcdef0123456789abcdef\n");
        let dbus = file("dbus", "fedcba9876543210fedcba9876543210\n");
        let empty = file("empty", "\n");
        let uninit = file("uninit", "uninitialized\n");
        let odd = file("odd", "not a machine id\n");
        let missing = dir.path().join("missing");
        let want = |s: &str| Some(s.to_owned());
        // (files in lookup order, expected)
        let cases: Vec<(Vec<&Path>, Option<String>)> = vec![
            (vec![&etc, &dbus], want("0123456789abcdef0123456789abcdef")),
            (vec![&missing, &dbus], want("fedcba9876543210fedcba9876543210")),
            (vec![&empty, &dbus], want("fedcba9876543210fedcba9876543210")),
            (vec![&uninit, &dbus], want("fedcba9876543210fedcba9876543210")),
            (vec![&odd, &dbus], want("fedcba9876543210fedcba9876543210")),
            (vec![dir.path(), &dbus], want("fedcba9876543210fedcba9876543210")),
            (vec![&missing, &empty], None),
            (vec![], None),
        ];
        for (files, expected) in cases {
            assert_eq!(machine_id(&files), expected, "{files:?}");
        }
    }

    #[test]
    fn host_names_are_reduced_to_label_characters() {
        let long = "h".repeat(100);
        for (raw, want) in [
            ("edge-1.example.com", "edge-1.example.com"),
            ("edge-1\n", "edge-1"),
            ("my host", "my_host"),
            ("bad\u{1b}[31m", "bad__31m"),
            ("héte", "h_te"),
            ("a/b&c=d", "a_b_c_d"),
            ("", "unknown"),
            ("  \n", "unknown"),
            (long.as_str(), &long[..64]),
        ] {
            assert_eq!(host_label(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn the_derived_id_depends_on_machine_uid_and_path_and_on_nothing_else() {
        let m = Machine { machine_id: Some("0123456789abcdef".into()), host: "edge-1".into(), uid: 1000 };
        let path = b"/etc/token-keeper/config.toml";
        let id = derive_id(&m, path);
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
        assert_eq!(derive_id(&m, path), id, "stable");
        // With a machine id, the host name does not count: a renamed host keeps its id.
        assert_eq!(derive_id(&Machine { host: "renamed".into(), ..m.clone() }, path), id);
        for other in [
            derive_id(&Machine { uid: 0, ..m.clone() }, path),
            derive_id(&Machine { machine_id: Some("ffff".into()), ..m.clone() }, path),
            derive_id(&m, b"/home/alice/.config/token-keeper/config.toml"),
            derive_id(&Machine { machine_id: None, ..m.clone() }, path),
        ] {
            assert_ne!(other, id);
        }
        // Without a machine id the host name stands in.
        let by_host = Machine { machine_id: None, ..m.clone() };
        assert_ne!(
            derive_id(&by_host, path),
            derive_id(&Machine { host: "other".into(), ..by_host.clone() }, path)
        );
        // The fields are separated, so moving bytes between them changes the id.
        let a = Machine { machine_id: Some("ab".into()), host: String::new(), uid: 1 };
        assert_ne!(
            derive_id(&a, b"0/x"),
            derive_id(&Machine { machine_id: Some("ab1".into()), ..a.clone() }, b"0/x")
        );
    }

    #[test]
    fn configured_ids_are_label_characters_of_bounded_length() {
        for ok in ["a", "edge-1.keeper_2", &"x".repeat(64)] {
            assert_eq!(check_id(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "has space", "a/b", "é", "tab\t", &"x".repeat(65)] {
            let err = check_id(bad).unwrap_err();
            assert!(err.starts_with("installation_id: "), "{err}");
            assert!(err.contains("[A-Za-z0-9._-]"), "{err}");
        }
        assert!(check_id(&"x".repeat(500)).unwrap_err().contains("500 characters"));
    }
}
