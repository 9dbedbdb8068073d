//! The only code that writes token files: atomic replacement and the safety checks around it.
//!
//! A file is replaced by writing a temp file in the same directory (mode set exactly, before
//! the first byte), `fsync`, `rename` over the target, then `fsync` of the directory. A reader
//! sees the old file or the new one, never an empty, partial or mixed one, even if the
//! process is killed mid-publish: the temp file has another name, and is swept up at the
//! next start.
//!
//! A path that another user could tamper with is refused before every write: each directory
//! from `/` down must belong to root or to the daemon's user and be writable only by its
//! owner (a sticky ancestor like `/tmp` is fine), and symlinks on the way must belong to root
//! or to us ([`check_output`]). Otherwise another user could replace the token file under a
//! consumer, or swap a directory so that the daemon writes where they choose.

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
        // write_atomic checks the directory (check_output) before it writes.
        if let Err(e) = write_atomic(&o.path, &bytes, o.mode) {
            errors.push(OutputError { path: o.path.clone(), error: e.to_string() });
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
    // In a directory another user controls, the name could lead anywhere. All are checked
    // first, so the removals follow one another closely.
    let mut safe = Vec::new();
    for o in cluster.outputs.iter().filter(|o| o.format != Format::Json) {
        match check_output(&o.path) {
            Ok(()) => safe.push(o),
            Err(error) => errors.push(OutputError { path: o.path.clone(), error }),
        }
    }
    for o in safe {
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
/// directories are created 0700. The directory is checked first ([`check_output`]), and again
/// after creating it, so a directory that another user slipped in meanwhile is refused too.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent(path);
    if !safe_dir(path)? {
        create_dir(dir)?;
        safe_dir(path)?;
    }
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

/// [`check_output`] as an `io::Error`; `Ok(true)` when the directory already exists.
fn safe_dir(path: &Path) -> io::Result<bool> {
    check_path(path, euid()).map_err(|m| io::Error::new(io::ErrorKind::PermissionDenied, m))
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

/// The daemon's effective user id. Directories on the way to an output must belong to it or
/// to root.
fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Symlinks followed while checking one path, at most: the kernel's own limit (`ELOOP`).
const MAX_SYMLINKS: usize = 40;

/// Whether publishing to `path` is safe: no other user can replace the file, or swap the
/// directory it is in, or any directory above it.
///
/// - Every directory from `/` down to the output's directory belongs to root or to us (the
///   daemon's effective uid), and group and others cannot write to it. An ancestor that is
///   sticky (like `/tmp`) may be writable by all: others cannot rename or remove what is ours
///   in it.
/// - The output's directory itself may be sticky and writable by all only if the file in it
///   is ours (or not there yet), as `/tmp` is.
/// - A symlink on the way is followed only if it belongs to root or to us, and the directories
///   it leads to are checked the same way.
/// - The part of the path that does not exist yet is fine: it is created 0700, ours.
///
/// The message names the offending directory, its owner and mode, and the fix.
pub fn check_output(path: &Path) -> Result<(), String> {
    check_path(path, euid()).map(|_| ())
}

/// [`check_output`] for the daemon's uid `euid`; `Ok(true)` when the directory exists.
fn check_path(path: &Path, euid: u32) -> Result<bool, String> {
    let configured = parent(path);
    let Some(dir) = resolve_checked(configured, euid)? else { return Ok(false) };
    let meta = fs::symlink_metadata(&dir)
        .map_err(|e| format!("cannot inspect output directory {}: {e}", dir.display()))?;
    let (mode, uid) = (meta.mode(), meta.uid());
    if mode & 0o022 == 0 {
        return Ok(true);
    }
    // Sticky and writable by others (the ancestor check let it through): only if the file is
    // ours. A symlink in its place would be followed by readers: not ours.
    let ours = match fs::symlink_metadata(path) {
        Ok(m) => m.uid() == euid && !m.file_type().is_symlink(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(_) => false,
    };
    if mode & 0o1000 != 0 && ours {
        return Ok(true);
    }
    Err(format!(
        "output directory {} is writable by group or others (owner uid {uid}, mode {:04o}){}; \
         another user could replace the token file, so it is refused: run `chmod go-w {}` or \
         publish elsewhere",
        dir.display(),
        mode & 0o7777,
        if mode & 0o1000 != 0 { " and the file is not ours" } else { "" },
        dir.display()
    ))
}

/// One step of a path being resolved.
enum Step {
    Root,
    Up,
    Name(std::ffi::OsString),
}

/// The steps of `path`, last first (to be popped).
fn steps(path: &Path) -> Vec<Step> {
    use std::path::Component;
    let mut steps: Vec<Step> = path
        .components()
        .filter_map(|c| match c {
            Component::RootDir => Some(Step::Root),
            Component::ParentDir => Some(Step::Up),
            Component::Normal(n) => Some(Step::Name(n.to_owned())),
            Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    steps.reverse();
    steps
}

/// The real directory `dir` leads to, with every directory and symlink on the way checked
/// ([`check_ancestor`], [`check_symlink`]); `None` if part of it does not exist yet.
fn resolve_checked(dir: &Path, euid: u32) -> Result<Option<PathBuf>, String> {
    let absolute = std::path::absolute(dir)
        .map_err(|e| format!("cannot resolve output directory {}: {e}", dir.display()))?;
    let mut todo = steps(&absolute);
    let mut current = PathBuf::from("/");
    let mut links = 0;
    while let Some(step) = todo.pop() {
        let next = match step {
            Step::Root => PathBuf::from("/"),
            // `current` is a real path (symlinks resolved), so `..` is its parent.
            Step::Up => current.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
            Step::Name(name) => current.join(name),
        };
        let meta = match fs::symlink_metadata(&next) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot inspect {}: {e}", next.display())),
        };
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(format!("output directory {}: too many symlinks", dir.display()));
            }
            check_symlink(&next, &meta, dir, euid)?;
            let target =
                fs::read_link(&next).map_err(|e| format!("cannot read symlink {}: {e}", next.display()))?;
            todo.extend(steps(&target));
            continue;
        }
        if !meta.is_dir() {
            return Err(format!("output directory {}: {} is not a directory", dir.display(), next.display()));
        }
        check_ancestor(&next, &meta, dir, euid)?;
        current = next;
    }
    Ok(Some(current))
}

/// Whether `uid` may own what an output's path goes through: root, or the daemon's user.
///
/// In a user namespace that does not map root (a `systemd --user` unit with
/// `PrivateUsers=yes`: an unprivileged manager maps only the user's own uid), root's
/// directories (`/`, `/home`) show as the kernel's overflow uid, so that uid stands for root
/// there. Another user's directory shows as the same uid; the mode bits are still checked.
fn trusted(uid: u32, euid: u32) -> bool {
    uid == 0 || uid == euid || Some(uid) == *ROOT_SHOWS_AS
}

/// The uid that root's files show as here: `None` where root is mapped (the usual case),
/// else the kernel's overflow uid. Read once: a process does not change user namespace.
static ROOT_SHOWS_AS: std::sync::LazyLock<Option<u32>> = std::sync::LazyLock::new(|| {
    let map = fs::read_to_string("/proc/self/uid_map").ok()?;
    if maps_root(&map) {
        return None;
    }
    let overflow = fs::read_to_string("/proc/sys/kernel/overflowuid").ok();
    Some(overflow.and_then(|o| o.trim().parse().ok()).unwrap_or(65534))
});

/// Whether a `/proc/self/uid_map` maps uid 0 of this namespace to anything. An unreadable
/// or empty map counts as mapped: the strict rule then applies.
fn maps_root(uid_map: &str) -> bool {
    let ranges: Vec<(u64, u64)> = uid_map
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(str::parse::<u64>);
            let (inside, _outside, count) = (f.next()?.ok()?, f.next()?.ok()?, f.next()?.ok()?);
            Some((inside, count))
        })
        .collect();
    ranges.is_empty() || ranges.iter().any(|&(inside, count)| inside == 0 && count > 0)
}

/// A directory on the way to `output_dir` (or the output directory itself): it belongs to root
/// or to us, and only its owner can write to it, unless it is sticky.
fn check_ancestor(dir: &Path, meta: &fs::Metadata, output_dir: &Path, euid: u32) -> Result<(), String> {
    let (mode, uid) = (meta.mode(), meta.uid());
    let what = if dir == output_dir {
        format!("output directory {}", dir.display())
    } else {
        format!("output directory {}: its ancestor {}", output_dir.display(), dir.display())
    };
    if !trusted(uid, euid) {
        return Err(format!(
            "{what} belongs to uid {uid} (mode {:04o}), neither root nor this daemon's user (uid \
             {euid}); that user could swap it and replace the token files, so it is refused: \
             publish under directories that belong to root or uid {euid}, or run token-keeper as \
             uid {uid}",
            mode & 0o7777
        ));
    }
    if mode & 0o022 != 0 && mode & 0o1000 == 0 && !(dir != output_dir && is_shared_dir(dir)) {
        return Err(format!(
            "{what} is writable by group or others and not sticky (owner uid {uid}, mode {:04o}); \
             another user could swap the directories under it and replace the token files, so it \
             is refused: run `chmod go-w {}` (or `chmod +t` for a shared directory), publish \
             elsewhere, or, for a volume every user of which is trusted (a Pod's emptyDir), list \
             it in ${SHARED_DIRS_ENV}",
            mode & 0o7777,
            dir.display()
        ));
    }
    Ok(())
}

/// The variable that lists directories (absolute paths, separated by `:`) accepted as an
/// ancestor although writable by others without the sticky bit. A Kubernetes emptyDir's root
/// is 0777 and no non-root container can change that; every container of the Pod can write
/// there anyway, so the Pod is the trust boundary. Never exempts the output directory itself.
pub const SHARED_DIRS_ENV: &str = "TOKEN_KEEPER_SHARED_DIRS";

/// Whether `dir` is listed in [`SHARED_DIRS_ENV`].
fn is_shared_dir(dir: &Path) -> bool {
    std::env::var_os(SHARED_DIRS_ENV)
        .is_some_and(|v| std::env::split_paths(&v).any(|p| p.is_absolute() && p == dir))
}

/// A symlink on the way: followed only if it belongs to root or to us (its directory, checked
/// before, keeps others from replacing it).
fn check_symlink(link: &Path, meta: &fs::Metadata, output_dir: &Path, euid: u32) -> Result<(), String> {
    let uid = meta.uid();
    if trusted(uid, euid) {
        return Ok(());
    }
    Err(format!(
        "output directory {}: {} is a symlink that belongs to uid {uid}, neither root nor this \
         daemon's user (uid {euid}); that user could point it elsewhere, so it is not followed: \
         configure the real path",
        output_dir.display(),
        link.display()
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
        if check_output(&o.path).is_err() {
            continue;
        }
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
        assert!(err.contains("writable by group or others"), "{err}");
        assert!(err.contains("mode 0770"), "{err}");
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

    /// Tests that need files of another user run as root (as CI and the dev container do).
    fn root() -> bool {
        euid() == 0
    }

    const NOBODY: u32 = 65534;

    /// `tmp/shared` (1777, like /tmp) holding `theirs`, a 0755 directory of another user.
    fn shared_with_theirs() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, Permissions::from_mode(0o1777)).unwrap();
        let theirs = shared.join("theirs");
        fs::create_dir(&theirs).unwrap();
        fs::set_permissions(&theirs, Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
        (tmp, theirs)
    }

    #[test]
    fn refuses_a_directory_that_belongs_to_another_user() {
        if !root() {
            return;
        }
        let (_tmp, theirs) = shared_with_theirs();
        let err = check_output(&theirs.join("token")).unwrap_err();
        assert!(
            err.contains(&format!("output directory {} belongs to uid 65534", theirs.display())),
            "{err}"
        );
        assert!(err.contains("mode 0755") && err.contains("neither root nor"), "{err}");
        // Below it, too: its owner could swap the whole subtree.
        fs::create_dir(theirs.join("sub")).unwrap();
        let err = check_output(&theirs.join("sub/token")).unwrap_err();
        assert!(err.contains(&format!("its ancestor {} belongs to uid 65534", theirs.display())), "{err}");
        // And write_atomic refuses without creating or writing anything there.
        let e = write_atomic(&theirs.join("new/token"), b"x", 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(!theirs.join("new").exists());
    }

    #[test]
    fn root_is_unmapped_only_in_a_namespace_that_maps_some_other_uid_alone() {
        for (map, mapped) in [
            ("         0          0 4294967295\n", true), // the initial namespace
            ("         0       1000          1\n      1002       1002          1\n", true),
            ("      1002       1002          1\n", false), // systemd --user, PrivateUsers=yes
            ("", true),                                    // unreadable: stay strict
            ("garbage\n", true),
        ] {
            assert_eq!(maps_root(map), mapped, "{map:?}");
        }
    }

    #[test]
    fn refuses_a_world_writable_ancestor_unless_it_is_sticky() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        let p = shared.join("mine/token");
        write_atomic(&p, b"x", 0o600).unwrap();
        assert_eq!(check_output(&p), Ok(()));
        fs::set_permissions(&shared, Permissions::from_mode(0o777)).unwrap();
        let err = check_output(&p).unwrap_err();
        assert!(
            err.contains(&format!("its ancestor {} is writable by group or others", shared.display())),
            "{err}"
        );
        assert!(err.contains("not sticky") && err.contains("mode 0777"), "{err}");
        assert!(write_atomic(&p, b"y", 0o600).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"x");
        fs::set_permissions(&shared, Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(check_output(&p), Ok(()));
        // Group-writable is no better than world-writable.
        fs::set_permissions(&shared, Permissions::from_mode(0o775)).unwrap();
        assert!(check_output(&p).is_err());
    }

    #[test]
    fn symlinks_on_the_way_are_followed_only_if_ours_and_their_targets_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(check_output(&link.join("token")), Ok(()));
        // A relative link, and `..` after it, resolve from where the link is.
        let rel = tmp.path().join("rel");
        std::os::unix::fs::symlink("real/../real", &rel).unwrap();
        assert_eq!(check_output(&rel.join("token")), Ok(()));
        // The link is ours, but it leads under a world-writable directory: refused there.
        let open = tmp.path().join("open");
        fs::create_dir_all(open.join("out")).unwrap();
        fs::set_permissions(&open, Permissions::from_mode(0o777)).unwrap();
        let to_open = tmp.path().join("to-open");
        std::os::unix::fs::symlink(open.join("out"), &to_open).unwrap();
        let err = check_output(&to_open.join("token")).unwrap_err();
        assert!(err.contains(&format!("its ancestor {} is writable", open.display())), "{err}");
        // A loop is an error, not a hang.
        let a = tmp.path().join("a");
        std::os::unix::fs::symlink(tmp.path().join("b"), &a).unwrap();
        std::os::unix::fs::symlink(&a, tmp.path().join("b")).unwrap();
        assert!(check_output(&a.join("token")).unwrap_err().contains("too many symlinks"));
        if !root() {
            return;
        }
        // Another user's link is not followed, even to a safe place.
        std::os::unix::fs::lchown(&link, Some(NOBODY), Some(NOBODY)).unwrap();
        let err = check_output(&link.join("token")).unwrap_err();
        assert!(err.contains(&format!("{} is a symlink that belongs to uid 65534", link.display())), "{err}");
    }

    #[test]
    fn a_sticky_output_directory_must_belong_to_root_or_us() {
        if !root() {
            return;
        }
        let (_tmp, theirs) = shared_with_theirs();
        fs::set_permissions(&theirs, Permissions::from_mode(0o1777)).unwrap();
        let err = check_output(&theirs.join("token")).unwrap_err();
        assert!(err.contains("belongs to uid 65534"), "{err}");
    }
}
