//! Reading a small file a user names (a model, a dictionary set): a regular file only,
//! of bounded size, opened without blocking, so a FIFO, a device such as `/dev/zero` or
//! a directory is a clear error, never a hang or unbounded memory.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a small file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmallFileError {
    /// Opening or reading it failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// It is not a regular file (what it is instead).
    #[error("not a regular file but a {0}")]
    NotAFile(&'static str),
    /// It is larger than any such file.
    #[error("{size} bytes is more than the {max} such a file may have")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The most read.
        max: u64,
    },
}

/// What kind of file a file that is not a regular one is, as errors name it.
pub fn file_kind(file_type: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_file() {
        "regular file"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

/// The bytes of the regular file at `path`, if it holds at most `max` bytes (checked on
/// the open file, and again by the read, which stops past `max`).
///
/// # Errors
///
/// [`SmallFileError`]: it could not be opened or read, is not a regular file, or is
/// larger than `max`.
pub fn read_small(path: &Path, max: u64) -> Result<Vec<u8>, SmallFileError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(SmallFileError::NotAFile(file_kind(kind)));
    }
    if meta.len() > max {
        return Err(SmallFileError::TooLarge {
            size: meta.len(),
            max,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(SmallFileError::TooLarge {
            size: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}
