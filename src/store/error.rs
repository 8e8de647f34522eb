//! What a store operation can fail with: one typed error, every variant saying what
//! changed (nothing, unless it says otherwise).

use super::slab::AllocError;
use crate::codec::DecodeError;
use crate::page::PAGE_SIZE;

/// What can go wrong with a store operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store holds no page of this id.
    #[error("page {0} is not in the store")]
    NotFound(u64),
    /// Storing would take the compressed memory over the limit and the store's
    /// [`OnFull`](crate::OnFull) policy could not make room; nothing changed.
    #[error(
        "memory limit reached: storing needs {needed} bytes of compressed memory, the limit is {limit}"
    )]
    MemoryLimit {
        /// What `mem_used_total` would have become.
        needed: u64,
        /// The store's memory limit.
        limit: u64,
    },
    /// The kernel refused memory for a new slab; nothing changed.
    #[error("out of memory: the kernel refused a new slab")]
    OutOfMemory,
    /// The page's stored bytes match their checksum but do not decode.
    #[error("page {id}: stored form is corrupt: {source}")]
    Corrupt {
        /// The page.
        id: u64,
        /// Why it does not decode.
        source: DecodeError,
    },
    /// The page's stored bytes changed since they were stored.
    #[error("page {id}: stored bytes do not match their checksum")]
    Checksum {
        /// The page.
        id: u64,
    },
    /// Bytes given as a page are not one page long.
    #[error("a page is {PAGE_SIZE} bytes, not {len}")]
    PageLength {
        /// Their length.
        len: usize,
    },
    /// The backing store failed to read a written-back page (it stays where it is).
    #[error("page {id}: backing store read failed: {source}")]
    BackingRead {
        /// The page.
        id: u64,
        /// The backing store's error.
        source: IoError,
    },
    /// Writeback was asked of a store without a backing store.
    #[error("the store has no backing store")]
    NoBacking,
}

/// An I/O error of the backing store, shareable (a [`StoreError`] is `Clone`) and
/// comparable by its kind and message.
#[derive(Clone, Debug)]
pub struct IoError(std::sync::Arc<std::io::Error>);

impl IoError {
    /// The error's kind.
    pub fn kind(&self) -> std::io::ErrorKind {
        self.0.kind()
    }

    /// The error itself.
    pub fn get(&self) -> &std::io::Error {
        &self.0
    }
}

impl From<std::io::Error> for IoError {
    fn from(error: std::io::Error) -> Self {
        IoError(std::sync::Arc::new(error))
    }
}

impl PartialEq for IoError {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl Eq for IoError {}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl From<AllocError> for StoreError {
    fn from(error: AllocError) -> Self {
        match error {
            AllocError::Limit { needed, limit } => StoreError::MemoryLimit { needed, limit },
            AllocError::OutOfMemory => StoreError::OutOfMemory,
        }
    }
}
