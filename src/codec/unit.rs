//! Cold units: several neighbouring pages compressed as one zstd frame, so that a page's
//! repeats in its neighbours are found (a page alone has only itself and a dictionary).
//!
//! A unit is laid out one of two ways, whichever a quick probe finds smaller: its pages
//! in order, or as byte planes ([`super::shuffle`]: byte `k` of every word together),
//! which lines up the high bytes of a heap's pointers and the zero bytes of its small
//! numbers in long runs. Each layout has its own dictionary: the cluster's, or that
//! dictionary's planes twin ([`Dictionary::planes`]).
//!
//! Invariants: a unit's frame is one layout byte, then a magicless zstd frame of exactly
//! `pages * PAGE_SIZE` bytes (no magic, checksum or content size: the store keeps the
//! page count), naming the dictionary it was encoded with (0: none) as a page's zstd form
//! does; decoding it needs only that dictionary (with its planes twin for the planes
//! layout). A frame that does not decode to exactly its pages, or names a layout there
//! is not, is an error, never a short, padded or garbled unit. The store keeps the
//! frame's CRC and each page's own CRC, so a read checks both.

use super::DecodeError;
use super::dict::{self, Dictionaries, Dictionary};
use super::shuffle::{shuffle_bytes, unshuffle_bytes};
use super::zstd::{Search, zstd_append};
use crate::codec::Class;
use crate::page::PAGE_SIZE;
use crate::sync::RefCell;

/// The most pages one unit holds (the store's unit size is at most this).
pub const MAX_UNIT_PAGES: usize = 64;

/// zstd's search for units at [`LIMITED_FROM`] and above, limited: at level 16 (the
/// optimal parser) a shallow search and a parse that takes a 64-byte match as it comes
/// cost little ratio for much speed, and beat a lower level at the same speed; tables
/// sized for a unit of 16 pages and its dictionary, and as good for 32 and 64 (the
/// README's "Cold units").
pub const SEARCH: Search = Search {
    search_log: 2,
    target_length: 64,
    hash_log: 15,
    chain_log: 16,
};

/// The lowest level whose search [`SEARCH`] limits: below, zstd's own parameters (which
/// at the fast levels read a target length as how far to skip, not how long a match
/// suffices).
pub const LIMITED_FROM: i32 = 16;

/// The level both layouts are probed at before the chosen one is compressed at the
/// unit's: a small fraction of a high level's time, and it picks the layout the high
/// level makes smaller on nearly every unit (the README's "Cold units").
const PROBE_LEVEL: i32 = 1;

/// The word the planes layout sees memory as: 8 bytes, a pointer's or a `u64`'s.
pub const PLANE_WORD: usize = 8;

/// `bytes` (whole words) as the planes layout lays them out: byte 0 of every
/// [`PLANE_WORD`]-byte word, then byte 1, and so on.
pub fn planes(bytes: &[u8]) -> Vec<u8> {
    let mut columns = vec![0; bytes.len()];
    shuffle_bytes(bytes, PLANE_WORD, &mut columns);
    columns
}

/// How a unit's pages lie in its frame: the frame's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Layout {
    /// The pages in order.
    Pages = 0,
    /// The pages' 8-byte words as byte planes ([`shuffle_bytes`]).
    Planes = 1,
}

/// The layout a unit's frame names, if any.
pub fn layout(frame: &[u8]) -> Option<Layout> {
    match frame.first() {
        Some(0) => Some(Layout::Pages),
        Some(1) => Some(Layout::Planes),
        _ => None,
    }
}

thread_local! {
    /// A unit as planes: per-thread scratch, a unit's size.
    static COLUMNS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// A probe's output, likewise.
    static PROBE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The dictionaries of a set as their planes twins: what a frame in the planes layout
/// is decoded with.
struct PlanesOf<'a, D: ?Sized>(&'a D);

impl<D: Dictionaries + ?Sized> Dictionaries for PlanesOf<'_, D> {
    fn get(&self, id: u32) -> Option<&Dictionary> {
        self.0.get(id)?.planes()
    }
}

/// Appends a magicless frame of `src` at `level` with `dict` if given.
fn compress(src: &[u8], dict: Option<&Dictionary>, level: i32, out: &mut Vec<u8>) {
    let search = (level >= LIMITED_FROM).then_some(SEARCH);
    match dict {
        Some(dict) => dict::encode_bytes(src, dict, level, search, out),
        None => zstd_append(src, level, search, out),
    }
}

/// The bytes `src` takes at the probe level with `dict` if given: what [`encode`]
/// compares its two layouts by.
pub fn probe(src: &[u8], dict: Option<&Dictionary>) -> usize {
    PROBE.with(|cell| {
        let probe = &mut *cell.borrow_mut();
        probe.clear();
        compress(src, dict, PROBE_LEVEL, probe);
        probe.len()
    })
}

/// Appends the frame of `pages` (concatenated whole pages) to `out` at zstd `level` (its
/// search limited to [`SEARCH`] from [`LIMITED_FROM`]), with `dict` if given, in the
/// layout a probe of both at a low level finds smaller.
///
/// # Examples
/// ```
/// use zpage::codec::dict::NoDictionaries;
/// use zpage::codec::unit;
///
/// let pages: Vec<u8> = (0..4 * 4096u32).map(|i| (i % 4096 / 16) as u8).collect();
/// let mut frame = Vec::new();
/// unit::encode(&pages, None, 14, &mut frame);
/// assert!(frame.len() < 4096 / 4); // the four pages repeat one another
/// let mut out = vec![0; pages.len()];
/// unit::decode(&frame, &NoDictionaries, &mut out)?;
/// assert_eq!(out, pages);
/// # Ok::<(), zpage::DecodeError>(())
/// ```
pub fn encode(pages: &[u8], dict: Option<&Dictionary>, level: i32, out: &mut Vec<u8>) {
    debug_assert!(pages.len().is_multiple_of(PAGE_SIZE));
    COLUMNS.with(|cell| {
        let columns = &mut *cell.borrow_mut();
        columns.resize(pages.len(), 0);
        shuffle_bytes(pages, PLANE_WORD, columns);
        let twin = dict.and_then(Dictionary::planes);
        if probe(columns, twin) < probe(pages, dict) {
            out.push(Layout::Planes as u8);
            compress(columns, twin, level, out);
        } else {
            out.push(Layout::Pages as u8);
            compress(pages, dict, level, out);
        }
    });
}

/// Decodes a unit's frame into `out`, which it must fill exactly (the unit's pages).
///
/// # Errors
/// [`DecodeError::MissingDictionary`] if the frame names a dictionary `dicts` lacks (or,
/// in the planes layout, one without its planes twin); a corrupt-form error for an
/// unknown layout or a frame that does not decode to exactly `out.len()` bytes.
pub fn decode(
    frame: &[u8],
    dicts: &(impl Dictionaries + ?Sized),
    out: &mut [u8],
) -> Result<(), DecodeError> {
    let corrupt = |reason| DecodeError::corrupt(Class::Zstd, reason);
    if out.is_empty() || !out.len().is_multiple_of(PAGE_SIZE) {
        return Err(corrupt("a unit holds whole pages"));
    }
    match layout(frame) {
        Some(Layout::Pages) => dict::decode_frame(&frame[1..], dicts, out),
        Some(Layout::Planes) => COLUMNS.with(|cell| {
            let columns = &mut *cell.borrow_mut();
            columns.resize(out.len(), 0);
            dict::decode_frame(&frame[1..], &PlanesOf(dicts), columns)?;
            unshuffle_bytes(columns, PLANE_WORD, out);
            Ok(())
        }),
        None => Err(corrupt("a unit's frame names no layout")),
    }
}

/// `n` pages of a heap, for tests: 16-byte objects of a pointer into one region and a
/// small count.
#[cfg(test)]
pub(crate) fn heap(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    (0..n * PAGE_SIZE / 16)
        .flat_map(|_| {
            let pointer = 0x7f3a_0000_0000 + (next() & 0xfff8);
            let count = next() % 16;
            [pointer.to_le_bytes(), count.to_le_bytes()].concat()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::dict::NoDictionaries;

    fn pages(n: usize) -> Vec<u8> {
        (0..n * PAGE_SIZE)
            .map(|i| ((i * 2654435761) >> 13) as u8 & 0x0f)
            .collect()
    }

    fn with_twin(src: &[u8], id: u32) -> Dictionary {
        let samples: Vec<&[u8]> = src.chunks(PAGE_SIZE / 4).collect();
        let twin = Dictionary::train_planes(&samples, 4096, id, 3).unwrap();
        Dictionary::train(&samples, 4096, id, 3)
            .unwrap()
            .with_planes(twin)
    }

    #[test]
    fn units_round_trip_in_both_layouts_with_and_without_a_dictionary() {
        for (src, layout_expected) in [(pages(8), Layout::Pages), (heap(8, 1), Layout::Planes)] {
            let dict = with_twin(&src, 7);
            for d in [None, Some(&dict)] {
                let mut frame = Vec::new();
                encode(&src, d, 14, &mut frame);
                assert_eq!(layout(&frame), Some(layout_expected));
                assert_eq!(
                    dict::frame_dict_id(&frame[1..]),
                    Some(d.map_or(0, |d| d.id()))
                );
                let mut out = vec![0; src.len()];
                decode(&frame, &dict, &mut out).unwrap();
                assert_eq!(out, src);
            }
        }
    }

    #[test]
    fn a_heap_of_pointers_is_smaller_as_planes() {
        let src = heap(16, 2);
        let mut frame = Vec::new();
        encode(&src, None, LIMITED_FROM, &mut frame);
        let mut in_order = Vec::new();
        compress(&src, None, LIMITED_FROM, &mut in_order);
        assert_eq!(layout(&frame), Some(Layout::Planes));
        // The pointers' high bytes and the counts' lie in runs (random low bytes are
        // most of what either layout stores).
        assert!(
            frame.len() * 20 < in_order.len() * 19,
            "{} {}",
            frame.len(),
            in_order.len()
        );
    }

    #[test]
    fn only_the_levels_measured_are_limited() {
        let src = pages(16);
        let columns = planes(&src);
        for level in [1, 3, LIMITED_FROM - 1, LIMITED_FROM, 19] {
            let mut frame = Vec::new();
            encode(&src, None, level, &mut frame);
            let laid_out = match layout(&frame) {
                Some(Layout::Pages) => &src,
                _ => &columns,
            };
            let mut own = Vec::new();
            zstd_append(laid_out, level, None, &mut own);
            // Below the limits' first level a unit is zstd's own frame; from it, not.
            assert_eq!(frame[1..] == own, level < LIMITED_FROM, "level {level}");
            let mut out = vec![0; src.len()];
            decode(&frame, &NoDictionaries, &mut out).unwrap();
            assert_eq!(out, src);
        }
    }

    #[test]
    fn wrong_sizes_layouts_missing_dictionaries_and_damage_are_errors() {
        for src in [pages(4), heap(4, 3)] {
            let dict = with_twin(&src, 9);
            let mut frame = Vec::new();
            encode(&src, Some(&dict), 14, &mut frame);
            let mut out = vec![0; src.len()];
            assert_eq!(
                decode(&frame, &NoDictionaries, &mut out),
                Err(DecodeError::MissingDictionary(9))
            );
            let mut short = vec![0; src.len() - PAGE_SIZE];
            assert!(decode(&frame, &dict, &mut short).is_err());
            let mut long = vec![0; src.len() + PAGE_SIZE];
            assert!(decode(&frame, &dict, &mut long).is_err());
            assert!(decode(&frame[..frame.len() / 2], &dict, &mut out).is_err());
            assert!(decode(&[], &dict, &mut out).is_err());
            assert!(decode(&frame, &dict, &mut []).is_err());
            let mut other = frame.clone();
            other[0] = 2;
            assert!(decode(&other, &dict, &mut out).is_err());
            // The other layout's bytes do not pass for this one's.
            other[0] = frame[0] ^ 1;
            assert_ne!(
                decode(&other, &dict, &mut out).map(|()| out == src),
                Ok(true)
            );
        }
        // A planes frame needs the dictionary's planes twin.
        let src = heap(4, 4);
        let dict = with_twin(&src, 9);
        let mut frame = Vec::new();
        encode(&src, Some(&dict), 14, &mut frame);
        assert_eq!(layout(&frame), Some(Layout::Planes));
        let samples: Vec<&[u8]> = src.chunks(PAGE_SIZE / 4).collect();
        let alone = Dictionary::train(&samples, 4096, 9, 3).unwrap();
        let mut out = vec![0; src.len()];
        assert_eq!(
            decode(&frame, &alone, &mut out),
            Err(DecodeError::MissingDictionary(9))
        );
    }
}
