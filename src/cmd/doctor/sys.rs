//! What doctor asks the system: the effective user, whether it may write to a directory,
//! the names of users and groups (through NSS), and which filesystem holds a path
//! (`/proc/self/mountinfo`).

use std::ffi::CStr;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

use rustix::fs::{accessat, Access, AtFlags, CWD};

/// The effective user id.
pub(super) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Whether this process may create entries in `dir` (write and search permission for the
/// effective user, as the kernel would decide: `faccessat(AT_EACCESS)`).
pub(super) fn writable(dir: &Path) -> bool {
    accessat(CWD, dir, Access::WRITE_OK | Access::EXEC_OK, AtFlags::EACCESS).is_ok()
}

/// The user's name (through NSS, so LDAP users resolve too), else the number; "(you)" marks
/// the effective user.
pub(super) fn user_name(uid: u32) -> String {
    let you = if uid == euid() { " (you)" } else { "" };
    match with_growing_buffer(|buf| getpwuid_name(uid, buf)) {
        Some(name) => format!("{name}{you}"),
        None => format!("{uid}{you}"),
    }
}

/// The group's name (through NSS), else the number.
pub(super) fn group_name(gid: u32) -> String {
    with_growing_buffer(|buf| getgrgid_name(gid, buf)).unwrap_or_else(|| gid.to_string())
}

/// Runs an NSS lookup with a 1 KiB buffer, four times larger each time it answers `ERANGE`
/// (the buffer is too small for the entry), up to 1 MiB. `None` when there is no such entry
/// or the lookup fails.
fn with_growing_buffer(
    lookup: impl Fn(&mut [libc::c_char]) -> Result<Option<String>, i32>,
) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        match lookup(&mut buf) {
            Err(libc::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len().saturating_mul(4), 0),
            Ok(name) => return name,
            Err(_) => return None,
        }
    }
}

// getpwuid_r and getgrgid_r stay on libc, with `unsafe`: they go through NSS (the C
// library's plug-ins for LDAP, sssd, files), which rustix, talking to the kernel directly,
// does not and cannot wrap. Each call is confined to one small function below.

/// `getpwuid_r`: the name of user `uid`, `Ok(None)` if there is no such user, or the error
/// number it returned (`ERANGE`: `buf` is too small).
fn getpwuid_name(uid: u32, buf: &mut [libc::c_char]) -> Result<Option<String>, i32> {
    let mut pwd = MaybeUninit::<libc::passwd>::uninit();
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer passed is valid and writable for the call, and `buf.len()` is the
    // size of `buf`. On success (0) `result` is either null (no such user) or points to `pwd`,
    // now initialized, whose strings point into `buf`, which stays borrowed until the name is
    // copied out; `pw_name` is checked for null before it is read as a C string.
    unsafe {
        let rc = libc::getpwuid_r(uid, pwd.as_mut_ptr(), buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 {
            return Err(rc);
        }
        if result.is_null() || (*result).pw_name.is_null() {
            return Ok(None);
        }
        Ok(Some(CStr::from_ptr((*result).pw_name).to_string_lossy().into_owned()))
    }
}

/// `getgrgid_r`: the name of group `gid`, `Ok(None)` if there is no such group, or the error
/// number it returned (`ERANGE`: `buf` is too small).
fn getgrgid_name(gid: u32, buf: &mut [libc::c_char]) -> Result<Option<String>, i32> {
    let mut grp = MaybeUninit::<libc::group>::uninit();
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `getpwuid_name`: valid pointers and the true size of `buf` go in; on
    // success `result` is null or points to the now initialized `grp`, whose non-null
    // `gr_name` is a NUL-terminated string inside `buf`, still borrowed here.
    unsafe {
        let rc = libc::getgrgid_r(gid, grp.as_mut_ptr(), buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 {
            return Err(rc);
        }
        if result.is_null() || (*result).gr_name.is_null() {
            return Ok(None);
        }
        Ok(Some(CStr::from_ptr((*result).gr_name).to_string_lossy().into_owned()))
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
