//! Reading raw page files: concatenated 4 KiB pages, nothing else.
//!
//! Invariants: a file is accepted only if it is a regular file (a FIFO, device or socket
//! is refused before anything reads it: opening never blocks) whose size is a whole
//! number of pages, unless the caller asks for zero-padding of the tail; directories are
//! walked recursively for `*.pages` files in name order, so runs are reproducible;
//! symbolic links are followed, but a link back to an ancestor is not walked again, and
//! every file (by device and inode) is read once however many paths lead to it. A
//! [`PageFile`] holds one chunk at a time, whatever the file's size, and opens its file
//! only when first read (a directory of many files does not hold a descriptor each); the
//! holes of a sparse file (`SEEK_DATA`) are zero pages it yields without reading them.

use crate::source::{CHUNK_PAGES, PageSource, SourceError};
use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zpage::page::{PAGE_SIZE, Page};

/// Why page input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PageFileError {
    #[error("{path}: no such file or directory")]
    Missing { path: PathBuf },
    #[error(
        "{path}: size {size} bytes is not a whole number of 4096-byte pages ({rem} bytes over); pass --pad to zero-fill the last page"
    )]
    Partial { path: PathBuf, size: u64, rem: u64 },
    #[error("{path}: empty, no pages")]
    Empty { path: PathBuf },
    #[error("{path}: no *.pages files in this directory")]
    EmptyDir { path: PathBuf },
    #[error("{path}: not a regular file (a {kind}): zpage reads page files")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path}: the file changed while it was read ({detail})")]
    Changed { path: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_error(path: &Path, source: std::io::Error) -> PageFileError {
    match source.kind() {
        std::io::ErrorKind::NotFound => PageFileError::Missing {
            path: path.to_path_buf(),
        },
        _ => PageFileError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Expands paths (files as given, directories walked for `*.pages`) into a file list in
/// which every file appears once.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, PageFileError> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |path: PathBuf, meta: &std::fs::Metadata| -> Result<(), PageFileError> {
        if !meta.file_type().is_file() {
            return Err(PageFileError::NotRegular {
                path,
                kind: zpage::file_kind(meta.file_type()),
            });
        }
        if seen.insert((meta.dev(), meta.ino())) {
            files.push(path);
        }
        Ok(())
    };
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
        if !meta.is_dir() {
            add(path.clone(), &meta)?;
            continue;
        }
        let mut found = false;
        let walk = walkdir::WalkDir::new(path)
            .follow_links(true)
            .sort_by_file_name();
        for entry in walk {
            let entry = match entry {
                Ok(entry) => entry,
                // A link back to an ancestor: its files are walked through the ancestor.
                Err(e) if e.loop_ancestor().is_some() => continue,
                Err(e) => {
                    let at = e.path().unwrap_or(path).to_path_buf();
                    let source = e
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("directory walk failed"));
                    return Err(io_error(&at, source));
                }
            };
            let is_pages = entry.path().extension().is_some_and(|e| e == "pages");
            if entry.file_type().is_dir() || !is_pages {
                continue;
            }
            let meta = entry
                .metadata()
                .map_err(|e| io_error(entry.path(), e.into()))?;
            add(entry.into_path(), &meta)?;
            found = true;
        }
        if !found {
            return Err(PageFileError::EmptyDir { path: path.clone() });
        }
    }
    Ok(files)
}

/// One page file, checked, read a chunk at a time.
pub struct PageFile {
    name: String,
    path: PathBuf,
    /// Opened on the first read.
    file: Option<File>,
    size: u64,
    read: u64,
    /// Where the next data lies at or after `read` (bytes before it are a hole).
    data: u64,
}

impl PageFile {
    /// Checks `path` (it must be a regular file of whole pages; `pad` accepts a partial
    /// last page, read zero-filled), without opening it yet.
    pub fn open(path: &Path, pad: bool) -> Result<PageFile, PageFileError> {
        let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
        if !meta.file_type().is_file() {
            return Err(PageFileError::NotRegular {
                path: path.to_path_buf(),
                kind: zpage::file_kind(meta.file_type()),
            });
        }
        let size = meta.len();
        let rem = size % PAGE_SIZE as u64;
        if rem != 0 && !pad {
            return Err(PageFileError::Partial {
                path: path.to_path_buf(),
                size,
                rem,
            });
        }
        if size == 0 {
            return Err(PageFileError::Empty {
                path: path.to_path_buf(),
            });
        }
        let name = path
            .file_stem()
            .unwrap_or(path.as_os_str())
            .to_string_lossy()
            .into_owned();
        Ok(PageFile {
            name,
            path: path.to_path_buf(),
            file: None,
            size,
            read: 0,
            data: 0,
        })
    }

    /// Opens the file (never blocking, whatever it has become) and checks that it is the
    /// regular file of the size it had.
    fn file(&mut self) -> Result<&mut File, PageFileError> {
        if self.file.is_none() {
            let path = &self.path;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(|e| io_error(path, e))?;
            let meta = file.metadata().map_err(|e| io_error(path, e))?;
            if !meta.file_type().is_file() || meta.len() != self.size {
                return Err(PageFileError::Changed {
                    path: path.clone(),
                    detail: format!(
                        "it was a file of {} bytes, now a {} of {} bytes",
                        self.size,
                        if meta.is_file() {
                            "file"
                        } else {
                            zpage::file_kind(meta.file_type())
                        },
                        meta.len()
                    ),
                });
            }
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// [`PageSource::next_chunk`], with this module's error.
    pub fn read_chunk(&mut self, out: &mut Vec<Page>) -> Result<bool, PageFileError> {
        let left = self.size - self.read;
        let count = left.div_ceil(PAGE_SIZE as u64).min(CHUNK_PAGES as u64) as usize;
        out.clear();
        out.resize(count, Page::zeroed());
        let bytes = (left as usize).min(count * PAGE_SIZE);
        let (size, at) = (self.size, self.read);
        self.file()?;
        let file = self.file.as_ref().expect("opened above");
        if self.data <= at {
            self.data = match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(at)) {
                Ok(data) => data,
                // No data after `at`: the rest is a hole.
                Err(rustix::io::Errno::NXIO) => size,
                // A filesystem without SEEK_DATA: read everything.
                Err(_) => at,
            };
        }
        // Whole pages of hole are already zero in `out`; the rest is read.
        let hole = ((self.data - at) as usize / PAGE_SIZE * PAGE_SIZE).min(bytes);
        let buffer: &mut [u8] = bytemuck::cast_slice_mut(out);
        file.read_exact_at(&mut buffer[hole..bytes], at + hole as u64)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => PageFileError::Changed {
                    path: self.path.clone(),
                    detail: format!("it ended before the {size} bytes it had"),
                },
                _ => io_error(&self.path, e),
            })?;
        // A hole may be where the file ended early, and a read succeeds on a file that
        // grew: the size must still be the one it had.
        let now = file.metadata().map_err(|e| io_error(&self.path, e))?.len();
        if now != size {
            return Err(PageFileError::Changed {
                path: self.path.clone(),
                detail: format!("it had {size} bytes, now {now}"),
            });
        }
        self.read += bytes as u64;
        Ok(count > 0)
    }
}

impl PageSource for PageFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn expected_pages(&self) -> u64 {
        self.size.div_ceil(PAGE_SIZE as u64)
    }

    fn next_chunk(&mut self, out: &mut Vec<Page>) -> Result<bool, SourceError> {
        Ok(self.read_chunk(out)?)
    }

    /// The file is read again from its start (and checked again for a change of size).
    fn rewind(&mut self) -> Result<bool, SourceError> {
        self.file = None;
        (self.read, self.data) = (0, 0);
        Ok(true)
    }
}

/// The pages of one input, named for reports, all in memory.
pub struct PageSet {
    pub name: String,
    pub pages: Vec<Page>,
}

/// Reads one page file whole; `pad` zero-fills a partial last page instead of refusing
/// it. Memory grows with the file: the streaming tools read through [`PageFile`].
pub fn read(path: &Path, pad: bool) -> Result<PageSet, PageFileError> {
    let mut file = PageFile::open(path, pad)?;
    let mut pages = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK_PAGES);
    while file.read_chunk(&mut chunk)? {
        pages.extend_from_slice(&chunk);
    }
    Ok(PageSet {
        name: file.name,
        pages,
    })
}

/// Reads every file that `paths` expands to, whole.
pub fn read_all(paths: &[PathBuf], pad: bool) -> Result<Vec<PageSet>, PageFileError> {
    expand(paths)?.iter().map(|p| read(p, pad)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_file_is_named_or_padded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial.pages");
        std::fs::write(&path, [1u8; 5000]).unwrap();
        let err = read(&path, false).err().unwrap().to_string();
        assert!(
            err.contains("partial.pages") && err.contains("5000"),
            "{err}"
        );
        let set = read(&path, true).unwrap();
        assert_eq!(set.pages.len(), 2);
        assert_eq!(set.pages[1].0[903], 1);
        assert_eq!(set.pages[1].0[904], 0);
    }

    #[test]
    fn missing_path_is_reported() {
        let err = expand(&[PathBuf::from("/no/such/zpage/file")])
            .err()
            .unwrap();
        assert!(matches!(err, PageFileError::Missing { .. }));
    }

    #[test]
    fn a_file_that_shrinks_while_read_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shrinks.pages");
        std::fs::write(&path, vec![7u8; (CHUNK_PAGES + 10) * PAGE_SIZE]).unwrap();
        let mut file = PageFile::open(&path, false).unwrap();
        let mut chunk = Vec::new();
        assert!(file.next_chunk(&mut chunk).unwrap());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(CHUNK_PAGES as u64 * PAGE_SIZE as u64 + 100)
            .unwrap();
        let err = file.next_chunk(&mut chunk).unwrap_err().to_string();
        assert!(
            err.contains("shrinks.pages") && err.contains("changed"),
            "{err}"
        );
        // Cut at a chunk's end: what is left would look like a hole (zero pages).
        std::fs::write(&path, vec![7u8; (CHUNK_PAGES + 10) * PAGE_SIZE]).unwrap();
        let mut file = PageFile::open(&path, false).unwrap();
        assert!(file.next_chunk(&mut chunk).unwrap());
        let cut = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        cut.set_len(CHUNK_PAGES as u64 * PAGE_SIZE as u64).unwrap();
        let err = file.next_chunk(&mut chunk).unwrap_err().to_string();
        assert!(err.contains("changed"), "{err}");
        // Grown while read: refused as well, not read as the size it had.
        std::fs::write(&path, vec![7u8; (CHUNK_PAGES + 10) * PAGE_SIZE]).unwrap();
        let mut file = PageFile::open(&path, false).unwrap();
        cut.set_len((CHUNK_PAGES as u64 + 20) * PAGE_SIZE as u64)
            .unwrap();
        let err = file.next_chunk(&mut chunk).unwrap_err().to_string();
        assert!(err.contains("changed"), "{err}");
        // Changed between the check and the first read: refused too.
        std::fs::write(&path, vec![7u8; PAGE_SIZE]).unwrap();
        let mut file = PageFile::open(&path, false).unwrap();
        std::fs::write(&path, vec![7u8; 2 * PAGE_SIZE]).unwrap();
        let err = file.next_chunk(&mut chunk).unwrap_err().to_string();
        assert!(err.contains("changed"), "{err}");
    }

    #[test]
    fn a_file_is_read_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.pages");
        let pages = CHUNK_PAGES * 2 + 3;
        let bytes: Vec<u8> = (0..pages * PAGE_SIZE)
            .map(|i| (i / PAGE_SIZE) as u8)
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut file = PageFile::open(&path, false).unwrap();
        assert_eq!(file.expected_pages(), pages as u64);
        let (mut chunk, mut sizes, mut next) = (Vec::new(), Vec::new(), 0u8);
        while file.next_chunk(&mut chunk).unwrap() {
            sizes.push(chunk.len());
            for page in &chunk {
                assert!(page.0.iter().all(|&b| b == next));
                next = next.wrapping_add(1);
            }
        }
        assert_eq!(sizes, [CHUNK_PAGES, CHUNK_PAGES, 3]);
    }
}
