//! Cold units: several neighbouring pages compressed as one zstd frame, so that a page's
//! repeats in its neighbours are found (a page alone has only itself and a dictionary).
//!
//! Invariants: a unit's frame is a magicless zstd frame of exactly `pages * PAGE_SIZE`
//! bytes (no magic, checksum or content size: the store keeps the page count), naming the
//! dictionary it was encoded with (0: none), as a page's zstd form does; decoding it
//! needs only that dictionary. A frame that does not decode to exactly its pages is an
//! error, never a short or padded unit. The store keeps the frame's CRC and each page's
//! own CRC, so a read checks both.

use super::DecodeError;
use super::dict::{self, Dictionaries, Dictionary};
use super::zstd::{Search, zstd_append};
use crate::codec::Class;
use crate::page::PAGE_SIZE;

/// The most pages one unit holds (the store's unit size is at most this).
pub const MAX_UNIT_PAGES: usize = 32;

/// zstd's search for units at [`LIMITED_FROM`] and above, limited: at level 16 (the
/// optimal parser) a shallow search and a parse that takes a 32-byte match as it comes
/// cost little ratio for much speed, and beat a lower level at the same speed; tables
/// sized for a unit of 16 pages and its dictionary (measured: the README's "Cold units").
pub const SEARCH: Search = Search {
    search_log: 2,
    target_length: 32,
    hash_log: 15,
    chain_log: 16,
};

/// The lowest level whose search [`SEARCH`] limits: below, zstd's own parameters (which
/// at the fast levels read a target length as how far to skip, not how long a match
/// suffices).
pub const LIMITED_FROM: i32 = 16;

/// Appends the frame of `pages` (concatenated whole pages) to `out` at zstd `level` (its
/// search limited to [`SEARCH`] from [`LIMITED_FROM`]), with `dict` if given.
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
    let search = (level >= LIMITED_FROM).then_some(SEARCH);
    match dict {
        Some(dict) => dict::encode_bytes(pages, dict, level, search, out),
        None => zstd_append(pages, level, search, out),
    }
}

/// Decodes a unit's frame into `out`, which it must fill exactly (the unit's pages).
///
/// # Errors
/// [`DecodeError::MissingDictionary`] if the frame names a dictionary `dicts` lacks; a
/// corrupt-form error for a frame that does not decode to exactly `out.len()` bytes.
pub fn decode(
    frame: &[u8],
    dicts: &(impl Dictionaries + ?Sized),
    out: &mut [u8],
) -> Result<(), DecodeError> {
    if out.is_empty() || !out.len().is_multiple_of(PAGE_SIZE) {
        return Err(DecodeError::corrupt(
            Class::Zstd,
            "a unit holds whole pages",
        ));
    }
    dict::decode_frame(frame, dicts, out)
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

    #[test]
    fn units_round_trip_with_and_without_a_dictionary() {
        let src = pages(8);
        let samples: Vec<&[u8]> = src.chunks(PAGE_SIZE / 4).collect();
        let dict = Dictionary::train(&samples, 4096, 7, 3).unwrap();
        for d in [None, Some(&dict)] {
            let mut frame = Vec::new();
            encode(&src, d, 14, &mut frame);
            assert_eq!(dict::frame_dict_id(&frame), Some(d.map_or(0, |d| d.id())));
            let mut out = vec![0; src.len()];
            decode(&frame, &dict, &mut out).unwrap();
            assert_eq!(out, src);
        }
    }

    #[test]
    fn only_the_levels_measured_are_limited() {
        let src = pages(16);
        for level in [1, 3, LIMITED_FROM - 1, LIMITED_FROM, 19] {
            let mut frame = Vec::new();
            encode(&src, None, level, &mut frame);
            let mut own = Vec::new();
            zstd_append(&src, level, None, &mut own);
            // Below the limits' first level a unit is zstd's own frame; from it, not.
            assert_eq!(frame == own, level < LIMITED_FROM, "level {level}");
            let mut out = vec![0; src.len()];
            decode(&frame, &NoDictionaries, &mut out).unwrap();
            assert_eq!(out, src);
        }
    }

    #[test]
    fn wrong_sizes_missing_dictionaries_and_damage_are_errors() {
        let src = pages(4);
        let samples: Vec<&[u8]> = src.chunks(PAGE_SIZE / 4).collect();
        let dict = Dictionary::train(&samples, 4096, 9, 3).unwrap();
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
    }
}
