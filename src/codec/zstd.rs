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

/// Compressors kept per thread (the least recently used dropped): a page's level, and a
/// cold unit's probe and its own level, alternate within one pass.
const COMPRESSORS_PER_THREAD: usize = 4;

thread_local! {
    static COMPRESSORS: RefCell<Contexts<Effort, Compressor<'static>>> = RefCell::new(contexts(COMPRESSORS_PER_THREAD));
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// A compressor's level and search limits.
type Effort = (i32, Option<Search>);

/// Limits on zstd's search below what its level would do, for frames compressed at a
/// high level where the optimal parser's time, not the ratio, is what the level buys
/// (units: the README's "Cold units" has the figures). The parser and the shortest match
/// are pinned too (btopt, 3 bytes): zstd picks its level's parameters by the size of the
/// input and dictionary together (past 256 KiB its level 16 is btopt with 5-byte
/// matches), and btopt, which prices in whole bits and skips positions a literal
/// already reaches cheaply, buys a longer target length for btultra's time.
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
    pub(crate) fn parameters(self) -> [CParameter; 6] {
        [
            CParameter::Strategy(::zstd::zstd_safe::Strategy::ZSTD_btopt),
            CParameter::MinMatch(3),
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
        compressors
            .get_or_insert_mut((level, search), || new_compressor(level, search))
            .compress_to_buffer(src, &mut out[start..])
            .expect("output sized by compress_bound")
    });
    out.truncate(start + written);
}

/// Per-thread zstd contexts by what they were made for, least recently used dropped
/// beyond `capacity` (making one costs more than compressing a page).
pub(crate) type Contexts<K, V> = lru::LruCache<K, V>;

/// An empty [`Contexts`] of `capacity` (at least 1).
pub(crate) fn contexts<K: std::hash::Hash + Eq, V>(capacity: usize) -> Contexts<K, V> {
    lru::LruCache::new(std::num::NonZeroUsize::new(capacity).unwrap_or(std::num::NonZeroUsize::MIN))
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
