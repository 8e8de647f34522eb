//! The one place zpage takes its locks, atomics and cells from.
//!
//! Under `cfg(loom)` every primitive is loom's model-checked twin, so the loom tests
//! (`tests/loom.rs`) explore all interleavings of the real store code. Nothing else in
//! the crate may import `std::sync`, `parking_lot` or `std::cell` for shared state.

#[cfg(not(loom))]
mod imp {
    pub use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
    /// Per-thread scratch only (codec contexts, encode buffers in `thread_local!`), never
    /// shared state.
    pub use std::cell::{Cell, RefCell};
    pub use std::sync::Arc;
    pub use std::sync::atomic::{AtomicU64, Ordering};
    pub use std::thread_local;
}

#[cfg(loom)]
mod imp {
    pub use loom::sync::Arc;
    pub use loom::sync::RwLockWriteGuard;
    pub use loom::sync::atomic::{AtomicU64, Ordering};
    use loom::sync::{MutexGuard, RwLockReadGuard};
    pub use loom::thread_local;
    pub use std::cell::{Cell, RefCell};

    /// loom's rwlock behind parking_lot's panic-free signatures.
    #[derive(Debug, Default)]
    pub struct RwLock<T>(loom::sync::RwLock<T>);

    /// loom's mutex behind parking_lot's panic-free signatures.
    #[derive(Debug, Default)]
    pub struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }
        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().expect("loom mutex poisoned")
        }
        pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.0.try_lock().ok()
        }
    }

    impl<T> RwLock<T> {
        pub fn new(value: T) -> Self {
            Self(loom::sync::RwLock::new(value))
        }
        pub fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0.read().expect("loom rwlock poisoned")
        }
        pub fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0.write().expect("loom rwlock poisoned")
        }
    }
}

pub use imp::*;

/// A relaxed hint kept per page (the tiers' access stamps): it never decides what a
/// page holds, only which pages the tiers look at first, so loom does not model it and
/// both configurations use the plain atomic.
pub type Hint = std::sync::atomic::AtomicU32;

/// A number no earlier call in this process returned: names for immutable things (a
/// dictionary's per-thread contexts are found by it). Not shared state a model checks,
/// so the same plain atomic in both configurations.
pub fn unique_serial() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
