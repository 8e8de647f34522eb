//! Reading raw page files: concatenated 4 KiB pages, nothing else.
//!
//! Invariants: a file is accepted only if its size is a whole number of pages, unless the
//! caller asks for zero-padding of the tail; directories are walked recursively for
//! `*.pages` files in name order, so runs are reproducible.

use crate::page::{PAGE_SIZE, Page};
use std::io::Read;
use std::path::{Path, PathBuf};

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
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The pages of one input, named for reports.
pub struct PageSet {
    pub name: String,
    pub pages: Vec<Page>,
}

/// Expands paths (files as given, directories walked for `*.pages`) into a file list.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, PageFileError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PageFileError::Missing { path: path.clone() },
            _ => PageFileError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            let before = files.len();
            walk(path, &mut files)?;
            if files.len() == before {
                return Err(PageFileError::EmptyDir { path: path.clone() });
            }
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), PageFileError> {
    let io = |source| PageFileError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "pages") {
            files.push(path);
        }
    }
    Ok(())
}

/// Reads one page file; `pad` zero-fills a partial last page instead of refusing it.
pub fn read(path: &Path, pad: bool) -> Result<PageSet, PageFileError> {
    let io = |source| PageFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PageFileError::Missing {
            path: path.to_path_buf(),
        },
        _ => io(e),
    })?;
    let size = file.metadata().map_err(io)?.len();
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
    let count = size.div_ceil(PAGE_SIZE as u64) as usize;
    let mut pages = vec![Page::zeroed(); count];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut pages);
    file.read_exact(&mut bytes[..size as usize]).map_err(io)?;
    let name = path
        .file_stem()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned();
    Ok(PageSet { name, pages })
}

/// Reads every file that `paths` expands to.
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
}
