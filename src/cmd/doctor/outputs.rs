//! Doctor's output rows, per directory: the safety rule of `sink::check_output`, a trial
//! temp file renamed in place, the filesystem (from `/proc/self/mountinfo`); then per output
//! file: its mode and owner, and what group and others get.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use super::sys::{euid, group_name, mount_of, user_name, writable};
use super::{Mark, Row};
use crate::config::{Cluster, Output};
use crate::sink;

/// Prefix of the trial temp file, beside the keeper's own `.token-keeper.*.tmp` files.
const TRIAL_PREFIX: &str = ".token-keeper.doctor.";

/// Per directory: the safety rule, a trial write and rename, the filesystem; then per output
/// file: its mode and owner, and what group and others get.
pub(super) fn output_rows(c: &Cluster) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut dirs: Vec<(PathBuf, Vec<&Output>)> = Vec::new();
    for o in &c.outputs {
        let dir = parent(&o.path).to_owned();
        match dirs.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, list)) => list.push(o),
            None => dirs.push((dir, vec![o])),
        }
    }
    for (dir, outputs) in &dirs {
        let meta = fs::metadata(dir).ok().filter(Metadata::is_dir);
        rows.push(dir_row(dir, outputs));
        rows.push(write_row(dir, meta.is_some()));
        rows.push(fs_row(dir));
        for o in outputs {
            rows.push(file_row(o, dir, meta.as_ref()));
        }
    }
    rows
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn dir_row(dir: &Path, outputs: &[&Output]) -> Row {
    const NAME: &str = "output-dir";
    let shown = dir.display();
    match fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Row::new(Mark::Fail, NAME, format!("{shown} is not a directory")),
        Ok(m) => {
            if let Some(e) = outputs.iter().find_map(|o| sink::check_output(&o.path).err()) {
                return Row::new(Mark::Fail, NAME, e);
            }
            let mode = m.mode() & 0o7777;
            let who = if mode & 0o022 == 0 {
                "only the owner can write"
            } else {
                "sticky and writable by others, like /tmp; the files in it are ours"
            };
            Row::new(
                Mark::Pass,
                NAME,
                format!(
                    "{shown}: mode {mode:04o}, owner {}, group {}; {who}",
                    user_name(m.uid()),
                    group_name(m.gid())
                ),
            )
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let Some(ancestor) = dir.ancestors().skip(1).find(|a| a.exists()) else {
                return Row::new(Mark::Fail, NAME, format!("{shown} does not exist, nor does any parent"));
            };
            if ancestor.is_dir() && writable(ancestor) {
                Row::new(
                    Mark::Pass,
                    NAME,
                    format!(
                        "{shown} does not exist yet; the keeper will create it mode 0700 under {} (writable)",
                        ancestor.display()
                    ),
                )
            } else {
                Row::new(
                    Mark::Fail,
                    NAME,
                    format!(
                        "{shown} does not exist and {} is not a directory this user (uid {}) can write to: \
                         create it, e.g. `install -d -m 0750 {shown}`, or set StateDirectory= in the unit",
                        ancestor.display(),
                        euid()
                    ),
                )
            }
        }
        Err(e) => Row::new(Mark::Fail, NAME, format!("cannot inspect {shown}: {e}")),
    }
}

/// Creates a temp file in `dir` and renames it there, as the sink does for every publish.
/// Same directory means same filesystem, so the rename is atomic; this proves we may do it.
fn write_row(dir: &Path, exists: bool) -> Row {
    const NAME: &str = "atomic-write";
    if !exists {
        return Row::new(Mark::Skip, NAME, format!("{} does not exist yet", dir.display()));
    }
    let trial = || -> io::Result<()> {
        let tmp = tempfile::Builder::new().prefix(TRIAL_PREFIX).suffix(".tmp").tempfile_in(dir)?;
        let renamed = dir.join(format!("{TRIAL_PREFIX}{:016x}.renamed", fastrand::u64(..)));
        tmp.persist_noclobber(&renamed).map_err(|e| e.error)?;
        fs::remove_file(&renamed)
    };
    match trial() {
        Ok(()) => Row::new(
            Mark::Pass,
            NAME,
            format!("{}: created a temp file and renamed it in place, as each publish does", dir.display()),
        ),
        Err(e) => Row::new(
            Mark::Fail,
            NAME,
            format!("{}: cannot create and rename a temp file there: {e}", dir.display()),
        ),
    }
}

fn fs_row(dir: &Path) -> Row {
    const NAME: &str = "filesystem";
    let Some(existing) = dir.ancestors().find(|a| a.exists()) else {
        return Row::new(Mark::Skip, NAME, format!("{} has no existing parent", dir.display()));
    };
    let mount = match mount_of(existing) {
        Ok(Some(m)) => m,
        Ok(None) => return Row::new(Mark::Skip, NAME, format!("no mount found for {}", existing.display())),
        Err(e) => return Row::new(Mark::Skip, NAME, format!("cannot read /proc/self/mountinfo: {e}")),
    };
    let at = format!("{}: {} mounted at {}", dir.display(), mount.fstype, mount.point.display());
    match mount.fstype.as_str() {
        "tmpfs" | "ramfs" => Row::new(
            Mark::Pass,
            NAME,
            format!("{at} (in memory: tokens vanish at reboot, and the keeper acquires new ones at start)"),
        ),
        t if NETWORK_FS.contains(&t) || t.starts_with("fuse.sshfs") => Row::new(
            Mark::Warn,
            NAME,
            format!("{at} (a network filesystem: readers on other hosts may see the old file for a while)"),
        ),
        _ => Row::new(Mark::Pass, NAME, format!("{at} (persistent)")),
    }
}

const NETWORK_FS: &[&str] = &["nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre"];

fn file_row(o: &Output, dir: &Path, dir_meta: Option<&Metadata>) -> Row {
    const NAME: &str = "output";
    let head = format!("{} ({})", o.path.display(), o.format.as_str());
    let mut warnings = Vec::new();
    // Consumers in the group (or others) reach the file only through the directory's x bit.
    let needs = |class_read: u32| o.mode & class_read != 0;
    match dir_meta {
        Some(d) => {
            let dmode = d.mode() & 0o7777;
            if needs(0o040) && dmode & 0o011 == 0 {
                warnings.push(format!(
                    "the group may read it but cannot enter {} (mode {dmode:04o}): add g+x",
                    dir.display()
                ));
            }
            if needs(0o004) && dmode & 0o001 == 0 {
                warnings.push(format!(
                    "others may read it but cannot enter {} (mode {dmode:04o}): add o+x",
                    dir.display()
                ));
            }
        }
        None if needs(0o044) => warnings.push(format!(
            "the keeper would create {} mode 0700, so only the owner could reach the file: create it \
             first with group access (`install -d -m 0750`, or StateDirectory=)",
            dir.display()
        )),
        None => {}
    }
    let configured = format!("mode {:04o} ({})", o.mode, classes(o.mode));
    let (mark, detail) = match fs::symlink_metadata(&o.path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            (Mark::Pass, format!("{head}: not published yet; it will be {configured}"))
        }
        Err(e) => (Mark::Fail, format!("{head}: cannot inspect it: {e}")),
        Ok(m) if m.file_type().is_symlink() => {
            let target =
                fs::read_link(&o.path).map(|t| t.display().to_string()).unwrap_or_else(|_| "?".into());
            warnings.push("publishing replaces the link itself with a regular file".to_owned());
            (Mark::Warn, format!("{head}: is a symlink to {target}"))
        }
        Ok(m) if !m.is_file() => (Mark::Fail, format!("{head}: is not a regular file")),
        Ok(m) if dir_meta.is_some_and(|d| d.dev() != m.dev()) => (
            Mark::Fail,
            format!(
                "{head}: is a mount point (a bind-mounted file?), so renaming a new file over it fails; \
                 mount the directory instead"
            ),
        ),
        Ok(m) => {
            let mode = m.mode() & 0o777;
            let owner = user_name(m.uid());
            let group = group_name(m.gid());
            let base = format!("{head}: mode {mode:04o}, owner {owner}, group {group} ({})", classes(mode));
            if mode & 0o400 == 0 {
                (Mark::Fail, format!("{base}: its owner cannot read it"))
            } else {
                if mode != o.mode {
                    warnings.push(format!("the config says {:04o}, which the next publish sets", o.mode));
                }
                (Mark::Pass, base)
            }
        }
    };
    if o.mode & 0o400 == 0 {
        return Row::new(
            Mark::Fail,
            NAME,
            format!("{detail}; mode {:04o} in the config denies its owner read", o.mode),
        );
    }
    let mark = if mark == Mark::Pass && !warnings.is_empty() { Mark::Warn } else { mark };
    let detail = if warnings.is_empty() { detail } else { format!("{detail}; {}", warnings.join("; ")) };
    Row::new(mark, NAME, detail)
}

/// "group: read, others: nothing" for a file mode.
fn classes(mode: u32) -> String {
    let what = |bits: u32| match (bits & 4 != 0, bits & 2 != 0) {
        (true, true) => "read and write",
        (true, false) => "read",
        (false, true) => "write only",
        (false, false) => "nothing",
    };
    format!("group: {}, others: {}", what(mode >> 3), what(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_classes() {
        let check = |mode: u32, want: &str| assert_eq!(classes(mode), want, "{mode:o}");
        check(0o600, "group: nothing, others: nothing");
        check(0o640, "group: read, others: nothing");
        check(0o664, "group: read and write, others: read");
    }
}
