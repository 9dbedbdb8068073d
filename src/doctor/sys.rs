//! What doctor asks the system: the effective user, whether it may write to a directory,
//! the names of users and groups (through NSS), and which filesystem holds a path
//! (`/proc/self/mountinfo`).

use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// The effective user id.
pub(super) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether this process may create entries in `dir` (write and search permission for the
/// effective user, as the kernel would decide).
pub(super) fn writable(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK | libc::X_OK, libc::AT_EACCESS) == 0 }
}

/// The user's name (through NSS, so LDAP users resolve too), else the number; "(you)" marks
/// the effective user.
pub(super) fn user_name(uid: u32) -> String {
    let you = if uid == euid() { " (you)" } else { "" };
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: all-zero is a valid `passwd` (null pointers and zero ids).
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: the pointers are valid for the call and `buf.len()` is the buffer's size.
        let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len().saturating_mul(4), 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return format!("{uid}{you}");
        }
        // SAFETY: on success `pw_name` points to a NUL-terminated string inside `buf`.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) }.to_string_lossy().into_owned();
        return format!("{name}{you}");
    }
}

/// The group's name (through NSS), else the number.
pub(super) fn group_name(gid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: all-zero is a valid `group` (null pointers and a zero id).
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: the pointers are valid for the call and `buf.len()` is the buffer's size.
        let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len().saturating_mul(4), 0);
            continue;
        }
        if rc != 0 || result.is_null() || grp.gr_name.is_null() {
            return gid.to_string();
        }
        // SAFETY: on success `gr_name` points to a NUL-terminated string inside `buf`.
        return unsafe { CStr::from_ptr(grp.gr_name) }.to_string_lossy().into_owned();
    }
}

/// One line of `/proc/self/mountinfo`: where a filesystem is mounted, and its type.
pub(super) struct Mount {
    /// The mount point.
    pub(super) point: PathBuf,
    /// The filesystem type (`ext4`, `tmpfs`, `nfs4`, ...).
    pub(super) fstype: String,
}

/// The mount that holds `path`: the longest mount point that is a prefix of it in
/// `/proc/self/mountinfo` (the last one wins when mounts are stacked).
pub(super) fn mount_of(path: &Path) -> io::Result<Option<Mount>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    let path = path.canonicalize()?;
    let mut best: Option<Mount> = None;
    for line in text.lines() {
        // `id parent major:minor root mount-point options [optional...] - fstype source super`
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let Some(point) = pre.split(' ').nth(4) else { continue };
        let point = PathBuf::from(unescape_mount(point));
        let fstype = post.split(' ').next().unwrap_or("?").to_owned();
        let longer = best.as_ref().is_none_or(|b| point.as_os_str().len() >= b.point.as_os_str().len());
        if path.starts_with(&point) && longer {
            best = Some(Mount { point, fstype });
        }
    }
    Ok(best)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on). An escape above `\377`
/// (which the kernel never writes) is kept as it is.
fn unescape_mount(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        let escaped = match (first, tail) {
            (b'\\', [a, b, c, ..]) => octal_byte([*a, *b, *c]),
            _ => None,
        };
        match (escaped, tail.get(3..)) {
            (Some(byte), Some(after)) => {
                out.push(byte);
                rest = after;
            }
            _ => {
                out.push(first);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Three octal digits as a byte, if they are octal digits and the value fits.
fn octal_byte(digits: [u8; 3]) -> Option<u8> {
    let mut n = 0u32;
    for d in digits {
        n = n.checked_mul(8)?.checked_add(char::from(d).to_digit(8)?)?;
    }
    u8::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        let check = |s: &str, want: &str| assert_eq!(unescape_mount(s), want, "{s}");
        check("/", "/");
        check("/mnt/with\\040space", "/mnt/with space");
        check("/a\\134b", "/a\\b");
        check("/trailing\\04", "/trailing\\04");
        check("/mnt/end\\040", "/mnt/end ");
        // Not a byte: kept as written (old code overflowed u8 here).
        check("/odd\\777", "/odd\\777");
    }

    #[test]
    fn the_root_mount_holds_everything() {
        let m = mount_of(Path::new("/")).unwrap().expect("/ is mounted");
        assert_eq!(m.point, Path::new("/"));
    }
}
