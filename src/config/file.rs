//! Reading a file that configuration names, without blocking and without limit surprises.
//!
//! The daemon has one async thread, and reload reads the config file on it. A path replaced
//! by a FIFO would block that thread in `open` or `read` until a writer came (refreshing
//! stops, SIGTERM is never handled), and `/dev/zero` would be read until memory runs out. So
//! [`read_regular_file`] opens with `O_NONBLOCK` (which makes opening a FIFO return at once),
//! asks the open file what it is (`fstat`), refuses anything but a regular file, and reads at
//! most a given number of bytes.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// Reads the regular file at `path`, at most `limit` bytes.
///
/// Fails without blocking if `path` is a FIFO, a socket, a device or a directory, and fails
/// if the file holds more than `limit` bytes. The errors say which; they do not name the path
/// (callers do, when the path is not a secret).
pub fn read_regular_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        // O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a
        // writer. O_NOCTTY: a terminal device never becomes our controlling terminal.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?; // fstat of what was opened, not of the path: no race.
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", what(&kind)),
        ));
    }
    if meta.len() > limit {
        return Err(too_large(limit));
    }
    read_bounded(file, limit, meta.len())
}

/// Reads at most `limit` bytes (the file may grow between `fstat` and `read`).
fn read_bounded(file: File, limit: u64, expected: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if !u64::try_from(bytes.len()).is_ok_and(|n| n <= limit) {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("it is larger than the limit of {}", bytes(limit)))
}

/// "1 MiB", "64 KiB" or "100 bytes".
pub(super) fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// What a non-regular file is, for the message.
fn what(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "it is a directory, which"
    } else if kind.is_fifo() {
        "it is a FIFO (named pipe), which"
    } else if kind.is_socket() {
        "it is a socket, which"
    } else if kind.is_char_device() {
        "it is a character device, which"
    } else if kind.is_block_device() {
        "it is a block device, which"
    } else {
        "it"
    }
}
