//! The only code that writes token files: atomic replacement and the safety checks around it.
//!
//! A file is replaced by writing a temp file in the same directory (mode set exactly, before
//! the first byte), `fsync`, `rename` over the target, then `fsync` of the directory. A reader
//! sees the old file or the new one, never an empty, partial or mixed one, even if the
//! process is killed mid-publish: the temp file has another name, and is swept up at the
//! next start.
//!
//! A directory that others can write to is refused (they could swap the file under a
//! consumer), unless it is sticky (like `/tmp`) and the file in it is ours.

use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::{Cluster, Format};
use crate::output::{render, Published};

/// Temp files start with this, so a sweep removes only ours.
const TEMP_PREFIX: &str = ".token-keeper.";
const TEMP_SUFFIX: &str = ".tmp";

/// A temp file younger than this may belong to a publish in progress (`once` and `run`
/// sharing a directory), so the sweep leaves it.
const SWEEP_MIN_AGE: Duration = Duration::from_secs(60);

/// One output that could not be written.
#[derive(Debug)]
pub struct OutputError {
    /// The output's path.
    pub path: PathBuf,
    /// Why.
    pub error: String,
}

/// Writes every output of `cluster` from `published`. Outputs are independent: one that
/// fails (an unsafe directory, a full disk) is reported and the others are still written.
/// The json output goes last, so a reader of it knows the others are already new.
pub fn publish(cluster: &Cluster, published: &Published) -> Result<(), Vec<OutputError>> {
    publish_where(cluster, published, |_| true)
}

/// Rewrites only the json outputs: the token is the same, its metadata changed (a renewal
/// moved the expiry, or refreshing has gone stale).
pub fn publish_json(cluster: &Cluster, published: &Published) -> Result<(), Vec<OutputError>> {
    publish_where(cluster, published, |f| f == Format::Json)
}

fn publish_where(
    cluster: &Cluster,
    published: &Published,
    wanted: impl Fn(Format) -> bool,
) -> Result<(), Vec<OutputError>> {
    let mut outputs: Vec<_> = cluster.outputs.iter().filter(|o| wanted(o.format)).collect();
    outputs.sort_by_key(|o| o.format == Format::Json);
    let mut errors = Vec::new();
    for o in outputs {
        let bytes = render(o.format, published, &o.env_var);
        let result = check_output(&o.path)
            .and_then(|()| write_atomic(&o.path, &bytes, o.mode).map_err(|e| e.to_string()));
        if let Err(error) = result {
            errors.push(OutputError { path: o.path.clone(), error });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Removes the raw, header, env and shell outputs (`remove_expired`): an expired token in
/// them only turns a clear "no token" into a confusing 401 downstream. The json output stays,
/// saying what expired and why.
pub fn remove_token_files(cluster: &Cluster) -> Result<usize, Vec<OutputError>> {
    let mut removed = 0;
    let mut errors = Vec::new();
    for o in cluster.outputs.iter().filter(|o| o.format != Format::Json) {
        match fs::remove_file(&o.path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => errors.push(OutputError { path: o.path.clone(), error: e.to_string() }),
        }
    }
    if errors.is_empty() {
        Ok(removed)
    } else {
        Err(errors)
    }
}

/// Replaces `path` with `bytes` atomically, with permissions exactly `mode`. Missing parent
/// directories are created 0700.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent(path);
    create_dir(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(TEMP_PREFIX).suffix(TEMP_SUFFIX).tempfile_in(dir)?;
    // tempfile creates it 0600 (less the umask); fchmod sets the configured mode exactly,
    // whatever the umask, before any byte of the token is in it.
    tmp.as_file().set_permissions(Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory is synced (tempfile does not do this).
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents with mode 0700.
fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // DirBuilder's mode is filtered by the umask; the leaf gets 0700 exactly.
    fs::set_permissions(dir, Permissions::from_mode(0o700))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether publishing to `path` is safe: its directory (if it exists yet) is not writable by
/// group or others, unless it is sticky and `path` does not exist or is owned by us.
pub fn check_output(path: &Path) -> Result<(), String> {
    let dir = parent(path);
    let meta = match fs::metadata(dir) {
        Ok(m) => m,
        // Created 0700 at first publish.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot inspect output directory {}: {e}", dir.display())),
    };
    if !meta.is_dir() {
        return Err(format!("output directory {} is not a directory", dir.display()));
    }
    let mode = meta.mode();
    if mode & 0o022 == 0 {
        return Ok(());
    }
    let sticky = mode & 0o1000 != 0;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let ours = match fs::symlink_metadata(path) {
        Ok(m) => m.uid() == uid && !m.file_type().is_symlink(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(_) => false,
    };
    if sticky && ours {
        return Ok(());
    }
    Err(format!(
        "output directory {} is writable by group or others (mode {:04o}){}; another user could \
         replace the token file, so it is refused: run `chmod go-w {}` or publish elsewhere",
        dir.display(),
        mode & 0o7777,
        if sticky { " and the file is not ours" } else { "" },
        dir.display()
    ))
}

/// Removes temp files a killed publish left behind in the directories of `cluster`'s
/// outputs. Returns how many were removed.
pub fn sweep_temp_files(cluster: &Cluster) -> usize {
    let mut removed = 0;
    let mut seen: Vec<&Path> = Vec::new();
    for o in &cluster.outputs {
        let dir = parent(&o.path);
        if seen.contains(&dir) {
            continue;
        }
        seen.push(dir);
        let Ok(entries) = fs::read_dir(dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() >= SWEEP_MIN_AGE);
            if old && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn writes_exact_mode_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/dir/token");
        write_atomic(&p, b"abc", 0o640).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"abc");
        assert_eq!(mode_of(&p), 0o640);
        assert_eq!(mode_of(&dir.path().join("sub/dir")), 0o700);
        write_atomic(&p, b"defg", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"defg");
        assert_eq!(mode_of(&p), 0o600);
        // No temp file is left behind.
        let names: Vec<_> =
            fs::read_dir(dir.path().join("sub/dir")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("token")]);
    }

    #[test]
    fn refuses_group_or_world_writable_directories() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        assert_eq!(check_output(&p), Ok(()));
        fs::set_permissions(dir.path(), Permissions::from_mode(0o770)).unwrap();
        let err = check_output(&p).unwrap_err();
        assert!(err.contains("writable by group or others (mode 0770)"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        fs::set_permissions(dir.path(), Permissions::from_mode(0o777)).unwrap();
        assert!(check_output(&p).is_err());
        // Sticky (like /tmp) and the file is ours (or not there yet): allowed.
        fs::set_permissions(dir.path(), Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(check_output(&p), Ok(()));
        write_atomic(&p, b"x", 0o600).unwrap();
        assert_eq!(check_output(&p), Ok(()));
        // A missing directory is fine: it will be created 0700.
        assert_eq!(check_output(&dir.path().join("new/token")), Ok(()));
    }
}
