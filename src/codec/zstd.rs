//! Zstd pages: zstd at a configurable level, for pages where its extra ratio pays.
//!
//! Invariants: the payload is a magicless zstd frame (no magic, checksum, dictionary id or
//! content size: the page size is implied; this saves 6-8 bytes a page) that must decode to
//! exactly one page. Compression and decompression contexts are reused per thread, because
//! creating one costs more than compressing a page.

use super::{Class, DecodeError};
use crate::page::Page;
use crate::sync::RefCell;
use ::zstd::bulk::{Compressor, Decompressor};
use ::zstd::zstd_safe::{CParameter, DParameter, FrameFormat};

/// Appends the payload of this form to `out`: a zstd frame (magicless) of the page at `level`.
pub fn encode(page: &Page, level: i32, out: &mut Vec<u8>) {
    out.push(Class::Zstd.tag());
    zstd_append(page.bytes(), level, None, out);
}

/// Decodes a zstd frame payload into `out`, refusing one that is not well formed.
///
/// # Errors
/// [`crate::DecodeError`] for a payload that is not a well-formed form of
/// this class (never a panic, never a page of other bytes).
///
/// # Examples
/// ```
/// use zpage::Page;
/// use zpage::codec::zstd;
///
/// let mut page = Page::zeroed();
/// for (i, word) in page.words_mut().iter_mut().enumerate() {
///     *word = (i as u64 / 3) * 0x0101 + 7;
/// }
/// let mut form = Vec::new();
/// zstd::encode(&page, 3, &mut form);
/// let mut out = Page::zeroed();
/// zstd::decode(&form[1..], &mut out)?;
/// assert!(out == page);
/// # Ok::<(), zpage::DecodeError>(())
/// ```
pub fn decode(payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    zstd_exact(payload, out.bytes_mut()).map_err(|reason| DecodeError::corrupt(Class::Zstd, reason))
}

/// Compressors kept per thread, most recent first: a page's level, and a cold unit's
/// probe and its own level, alternate within one pass.
const COMPRESSORS_PER_THREAD: usize = 4;

thread_local! {
    static COMPRESSORS: RefCell<Vec<(Effort, Compressor<'static>)>> = const { RefCell::new(Vec::new()) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// A compressor's level and search limits.
type Effort = (i32, Option<Search>);

/// Limits on zstd's search below what its level would do, for frames compressed at a
/// high level where the optimal parser's time, not the ratio, is what the level buys
/// (units: the README's "Cold units" has the figures).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Search {
    /// Candidates compared per position, as a power of two.
    pub search_log: u32,
    /// A match at least this long is taken without looking for a better parse.
    pub target_length: u32,
    /// The hash table's entries, as a power of two.
    pub hash_log: u32,
    /// The search tree's entries, as a power of two (positions further back are found
    /// through the hash table only).
    pub chain_log: u32,
}

impl Search {
    /// The parameters to set after the level (which sets them all first).
    pub(crate) fn parameters(self) -> [CParameter; 4] {
        [
            CParameter::SearchLog(self.search_log),
            CParameter::TargetLength(self.target_length),
            CParameter::HashLog(self.hash_log),
            CParameter::ChainLog(self.chain_log),
        ]
    }
}

fn new_compressor(level: i32, search: Option<Search>) -> Compressor<'static> {
    let mut c = Compressor::new(level).expect("zstd context allocation");
    for param in search.iter().flat_map(|s| s.parameters()) {
        c.set_parameter(param).expect("valid zstd parameter");
    }
    for param in [
        CParameter::Format(FrameFormat::Magicless),
        CParameter::ContentSizeFlag(false),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(false),
    ] {
        c.set_parameter(param).expect("valid zstd parameter");
    }
    c
}

/// Appends a magicless zstd frame of `src` to `out` at `level`, its search limited as
/// `search` says if given.
pub(crate) fn zstd_append(src: &[u8], level: i32, search: Option<Search>, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + ::zstd::zstd_safe::compress_bound(src.len()), 0);
    let written = COMPRESSORS.with(|cell| {
        let mut compressors = cell.borrow_mut();
        most_recent(
            &mut compressors,
            (level, search),
            COMPRESSORS_PER_THREAD,
            || new_compressor(level, search),
        )
        .compress_to_buffer(src, &mut out[start..])
        .expect("output sized by compress_bound")
    });
    out.truncate(start + written);
}

/// The value of `key` in `list` (most recently used first, at most `capacity` long),
/// moved to the front, or made by `make` there (the least recent dropped).
pub(crate) fn most_recent<K: PartialEq, V>(
    list: &mut Vec<(K, V)>,
    key: K,
    capacity: usize,
    make: impl FnOnce() -> V,
) -> &mut V {
    match list.iter().position(|(k, _)| *k == key) {
        Some(0) => {}
        Some(at) => {
            let entry = list.remove(at);
            list.insert(0, entry);
        }
        None => {
            list.truncate(capacity - 1);
            list.insert(0, (key, make()));
        }
    }
    &mut list[0].1
}

/// Decodes a magicless zstd frame that must fill `dst` exactly.
pub(crate) fn zstd_exact(src: &[u8], dst: &mut [u8]) -> Result<(), &'static str> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = slot.get_or_insert_with(|| {
            let mut d = Decompressor::new().expect("zstd context allocation");
            d.set_parameter(DParameter::Format(FrameFormat::Magicless))
                .expect("valid zstd parameter");
            d
        });
        match d.decompress_to_buffer(src, dst) {
            Ok(n) if n == dst.len() => Ok(()),
            Ok(_) => Err("zstd frame decodes to fewer bytes than expected"),
            Err(_) => Err("invalid zstd frame"),
        }
    })
}
