//! zpage: a transparent compressed memory page store.
//!
//! The modules are the stages a page goes through: [`classify`] reads a page's cheap
//! features and a small learned decision tree names its data pattern ([`Class`]) and the
//! forms to try; [`codec`] holds the stored forms; the [`engine`] joins the two; a
//! [`store::PageStore`] keeps the results (table, slab allocator, hot tier), and a
//! [`region::Region`] is memory that pages itself out through a store. See
//! ARCHITECTURE.md for the data flow and module map.
//!
//! # Quick start
//!
//! ```
//! use zpage::{Page, PageStore, Profile};
//!
//! let store = PageStore::builder()
//!     .profile(Profile::Fast) // codecs no slower than LZ4 to compress
//!     .mem_limit(64 << 20)     // compressed memory never exceeds this
//!     .build();
//! let mut page = Page::zeroed();
//! for (i, word) in page.words_mut().iter_mut().enumerate() {
//!     *word = 1_000_000 + 8 * i as u64; // a counter: the delta class
//! }
//! store.insert(7, &page)?;
//! assert!(*store.get(7)?.expect("stored") == page);
//! assert_eq!(store.get(8)?, None);
//! let mm = store.mm_stat(); // zram's mm_stat fields, read without stopping the store
//! assert!(mm.compr_data_size < 4096 / 4);
//! println!("{mm}"); // the line zram prints in /sys/block/zram0/mm_stat
//! # Ok::<(), zpage::StoreError>(())
//! ```
//!
//! The analysis tools (zram simulation, side-by-side baselines, entropy, training, and the
//! page inputs they read) are a crate of their own, `zpage-tools`, behind the `zpage`
//! command: this library depends on none of their crates.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// The building blocks, public for the analysis tools (`zpage-tools`) and for those who
// study the codecs; an embedder needs none of their paths: everything a store, a region
// or a dictionary file takes or gives is re-exported below.
pub mod classify;
pub mod codec;
pub mod engine;
mod file;
pub mod page;
// The region runs real threads and a real userfaultfd: not a loom model.
#[cfg(not(loom))]
pub mod region;
pub mod store;
mod sync;

// The embedder's surface.
pub use classify::model::{Model, ModelError, Profile};
pub use codec::dictset::{DictSetError, DictionarySet, FormatError};
pub use codec::{Class, CodecConfig, DecodeError};
pub use engine::Engine;
pub use file::{SmallFileError, file_kind, read_small};
pub use page::{PAGE_SIZE, Page};
#[cfg(not(loom))]
pub use region::{Region, RegionBuilder, RegionError, RegionStats};
pub use store::{
    Background, Backing, BackingFile, BdStat, ClassStats, IdlePass, IoError, IoStat, MmStat,
    OnFull, PageStore, Recompressed, RemovalCause, Selection, Stats, StoreBuilder, StoreError,
    WrittenBack,
};
#[cfg(feature = "redis")]
pub use store::{RedisBacking, RedisOpenError, RedisOptions};
