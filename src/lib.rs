//! zpage: a transparent compressed memory page store.
//!
//! A page's cheap [`features`] feed a small learned decision tree ([`model`]), which
//! names the page's data pattern ([`codec::Class`]); the [`engine`] encodes the page with
//! the codec specialised for that class, and a [`store::PageStore`] keeps the result. See ARCHITECTURE.md for the data flow and module
//! map.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod cli;
pub mod codec;
pub mod compare;
pub mod engine;
pub mod entropy;
pub mod features;
pub mod model;
pub mod page;
pub mod pagefile;
pub mod procmem;
// The region runs real threads and a real userfaultfd: not a loom model.
#[cfg(not(loom))]
pub mod region;
pub mod sim;
pub mod source;
pub mod store;
pub mod sync;
pub mod train;
pub mod zram;

pub use codec::{Class, CodecConfig, DecodeError};
pub use engine::Engine;
pub use model::{Model, Profile};
pub use page::{PAGE_SIZE, Page};
pub use store::{PageStore, Stats, StoreBuilder, StoreError};
