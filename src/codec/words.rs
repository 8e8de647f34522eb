//! Word pages: each 8-byte word coded against a small dictionary of recent words, in the
//! manner of WKdm (Wilson and Kaplan's memory compressor, which XNU runs on every page it
//! compresses), widened to 64-bit words. It is the store's fastest form for data made of
//! words: a page costs one pass of a few operations per word, several times less than an
//! LZ4 parse, so a tiered store's way in ([`crate::Profile::Words`]) can keep up with the
//! kernel and leave the ratio to the idle pass.
//!
//! Each word is one of: zero; *exact*, equal to dictionary entry `h`; *partial*, equal to
//! entry `h` above its low 16 bits (pointers into one region, small integers); or a
//! *miss*, stored whole. The dictionary has 64 entries, all zero at the start of a page;
//! a word's entry is `hash(word >> 16)`, and partial and missed words replace theirs, so
//! the decoder, replaying the same updates, holds the same dictionary at every word.
//!
//! Invariant: the payload is, in this order,
//! - 128 bytes of 2-bit tags, word `i`'s at bits `2 * (i % 4)` of byte `i / 4`
//!   (0 zero, 1 exact, 2 partial, 3 miss);
//! - the 6-bit entry of each exact or partial word, in word order, packed from the low
//!   bit of each byte up, unused high bits of the last byte zero;
//! - the low 16 bits of each partial word, little-endian;
//! - each missed word, 8 bytes little-endian;
//!
//! and its length is exactly what its tags imply: anything else is refused.
//!
//! Hand-written, not a crate: no maintained crate implements a WK coder, and the form is
//! small enough to check whole (round trips here and the codec suite's fuzzer).

use super::{Class, DecodeError};
use crate::page::{PAGE_SIZE, Page};

const WORDS: usize = PAGE_SIZE / 8;
const TAG_BYTES: usize = WORDS / 4;
const ENTRY_BITS: u32 = 6;
const ENTRIES: usize = 1 << ENTRY_BITS;
const LOW_BITS: u32 = 16;
const LOW_MASK: u64 = (1 << LOW_BITS) - 1;
/// Entry bytes when every word names one.
const MAX_ENTRY_BYTES: usize = WORDS * ENTRY_BITS as usize / 8;

const ZERO: u8 = 0;
const EXACT: u8 = 1;
const PARTIAL: u8 = 2;
const MISS: u8 = 3;

/// A word's dictionary entry: a multiplicative hash of the bits a partial match shares.
#[inline]
fn entry(word: u64) -> usize {
    ((word >> LOW_BITS).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - ENTRY_BITS)) as usize
}

/// Appends the payload of this form to `out`. At most `1 + 128 + 4096` bytes (every word
/// missed); the caller's huge-page fallback stores such a page raw.
pub fn encode(page: &Page, out: &mut Vec<u8>) {
    let mut dict = [0u64; ENTRIES];
    let mut tags = [0u8; TAG_BYTES];
    // Tags gather in a register, 32 words at a time, and each stream in its own array:
    // a byte store per tag would make every word wait on the last one's.
    let mut named = [0u8; WORDS];
    let mut lows = [0u8; 2 * WORDS];
    let mut misses = [0u8; PAGE_SIZE];
    let (mut named_count, mut low_count, mut miss_count) = (0usize, 0usize, 0usize);
    for (group, words) in tags.chunks_exact_mut(8).zip(page.words().chunks_exact(32)) {
        let mut bits = 0u64;
        for (j, &word) in words.iter().enumerate() {
            if word == 0 {
                continue;
            }
            let h = entry(word);
            let known = dict[h];
            let tag = if known == word {
                named[named_count] = h as u8;
                named_count += 1;
                EXACT
            } else if (known ^ word) <= LOW_MASK {
                named[named_count] = h as u8;
                named_count += 1;
                lows[2 * low_count..2 * low_count + 2]
                    .copy_from_slice(&(word as u16).to_le_bytes());
                low_count += 1;
                dict[h] = word;
                PARTIAL
            } else {
                misses[8 * miss_count..8 * miss_count + 8].copy_from_slice(&word.to_le_bytes());
                miss_count += 1;
                dict[h] = word;
                MISS
            };
            bits |= u64::from(tag) << (2 * j);
        }
        group.copy_from_slice(&bits.to_le_bytes());
    }
    // Eight 6-bit entries to six bytes (written as eight: the array has room).
    let mut entries = [0u8; MAX_ENTRY_BYTES + 2];
    for (g, group) in named[..named_count].chunks(8).enumerate() {
        let bits = group.iter().enumerate().fold(0u64, |acc, (k, &h)| {
            acc | u64::from(h) << (k as u32 * ENTRY_BITS)
        });
        entries[6 * g..6 * g + 8].copy_from_slice(&bits.to_le_bytes());
    }
    let entry_len = (named_count * ENTRY_BITS as usize).div_ceil(8);

    out.reserve(1 + TAG_BYTES + entry_len + 2 * low_count + 8 * miss_count);
    out.push(Class::Words.tag());
    out.extend_from_slice(&tags);
    out.extend_from_slice(&entries[..entry_len]);
    out.extend_from_slice(&lows[..2 * low_count]);
    out.extend_from_slice(&misses[..8 * miss_count]);
}

/// Decodes a word-form payload into `out`, refusing one that is not well formed.
///
/// # Errors
/// [`crate::DecodeError`] for a payload that is not a well-formed form of
/// this class (never a panic, never a page of other bytes).
///
/// # Examples
/// ```
/// use zpage::Page;
/// use zpage::codec::words;
///
/// let mut page = Page::zeroed();
/// for (i, word) in page.words_mut().iter_mut().enumerate() {
///     *word = (i as u64 / 3) * 0x0101 + 7;
/// }
/// let mut form = Vec::new();
/// words::encode(&page, &mut form);
/// let mut out = Page::zeroed();
/// words::decode(&form[1..], &mut out)?;
/// assert!(out == page);
/// # Ok::<(), zpage::DecodeError>(())
/// ```
pub fn decode(payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    let corrupt = |reason| DecodeError::corrupt(Class::Words, reason);
    let Some((tags, rest)) = payload.split_first_chunk::<TAG_BYTES>() else {
        return Err(corrupt("shorter than its tags"));
    };
    // What the tags imply, before any word is written.
    let mut count = [0usize; 4];
    for &byte in tags {
        for shift in [0, 2, 4, 6] {
            count[usize::from((byte >> shift) & 3)] += 1;
        }
    }
    let named = count[usize::from(EXACT)] + count[usize::from(PARTIAL)];
    let entry_len = (named * ENTRY_BITS as usize).div_ceil(8);
    let (low_len, miss_len) = (
        2 * count[usize::from(PARTIAL)],
        8 * count[usize::from(MISS)],
    );
    if rest.len() != entry_len + low_len + miss_len {
        return Err(DecodeError::length(
            Class::Words,
            TAG_BYTES + entry_len + low_len + miss_len,
            payload.len(),
        ));
    }
    let (entry_bytes, rest) = rest.split_at(entry_len);
    let (lows, misses) = rest.split_at(low_len);
    let used_bits = named * ENTRY_BITS as usize;
    if !used_bits.is_multiple_of(8) && entry_bytes[entry_len - 1] >> (used_bits % 8) != 0 {
        return Err(corrupt("stray bits after the last entry"));
    }
    // One spare byte, so an entry's two-byte read never leaves the array.
    let mut padded = [0u8; MAX_ENTRY_BYTES + 1];
    padded[..entry_len].copy_from_slice(entry_bytes);

    let mut dict = [0u64; ENTRIES];
    let (mut bit, mut lows, mut misses) = (0usize, lows.chunks_exact(2), misses.chunks_exact(8));
    let mut next_entry = || {
        let pair = u16::from_le_bytes([padded[bit / 8], padded[bit / 8 + 1]]);
        bit += ENTRY_BITS as usize;
        usize::from(pair >> ((bit - ENTRY_BITS as usize) % 8)) & (ENTRIES - 1)
    };
    // The counts above guarantee each stream holds exactly what the tags take from it.
    for (i, word) in out.words_mut().iter_mut().enumerate() {
        *word = match (tags[i / 4] >> (2 * (i % 4))) & 3 {
            ZERO => 0,
            EXACT => dict[next_entry()],
            PARTIAL => {
                let h = next_entry();
                let low = lows.next().expect("counted");
                let value = (dict[h] & !LOW_MASK) | u64::from(u16::from_le_bytes([low[0], low[1]]));
                dict[h] = value;
                value
            }
            _ => {
                let bytes = misses.next().expect("counted");
                let value = u64::from_le_bytes(bytes.try_into().expect("chunks of 8"));
                dict[entry(value)] = value;
                value
            }
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(page: &Page) -> usize {
        let mut out = Vec::new();
        encode(page, &mut out);
        assert_eq!(out[0], Class::Words.tag());
        let mut back = Page::zeroed();
        decode(&out[1..], &mut back).expect("its own form decodes");
        assert_eq!(&back, page);
        out.len()
    }

    fn page_of(mut word: impl FnMut(usize) -> u64) -> Page {
        let mut page = Page::zeroed();
        for (i, w) in page.words_mut().iter_mut().enumerate() {
            *w = word(i);
        }
        page
    }

    #[test]
    fn every_kind_of_word_round_trips() {
        // Zeros, repeats, pointers into one region, small integers and noise, mixed.
        let mut x = 0x1234_5678_9abc_def0u64;
        let page = page_of(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match i % 5 {
                0 => 0,
                1 => 0x7f00_1234_0000 + (i as u64 % 7) * 64,
                2 => i as u64 % 300,
                3 => 0xdead_beef,
                _ => x,
            }
        });
        round_trip(&page);
        assert_eq!(round_trip(&Page::zeroed()), 1 + TAG_BYTES);
    }

    #[test]
    fn word_data_comes_out_small_and_noise_whole() {
        // Pointers into one region share an entry: each costs its tag, entry and low bits.
        let pointers = page_of(|i| 0x5555_0000_0000 + (i as u64 % 40) * 24);
        assert!(round_trip(&pointers) <= 1 + TAG_BYTES + 8 + WORDS * 6 / 8 + 2 * WORDS);
        let small = page_of(|i| (i as u64 * 7) % 1000);
        assert!(round_trip(&small) < PAGE_SIZE / 2);
        let mut x = 99u64;
        let noise = page_of(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x
        });
        assert_eq!(round_trip(&noise), 1 + TAG_BYTES + PAGE_SIZE);
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let page = page_of(|i| 0x4000_0000 + i as u64);
        let mut out = Vec::new();
        encode(&page, &mut out);
        let payload = &out[1..];
        let mut back = Page::zeroed();
        assert!(decode(&payload[..payload.len() - 1], &mut back).is_err());
        assert!(decode(&payload[..TAG_BYTES - 1], &mut back).is_err());
        let mut longer = payload.to_vec();
        longer.push(0);
        assert!(decode(&longer, &mut back).is_err());
        // 511 partial words and one zero: entries end mid-byte, so a stray bit shows.
        let mut stray = payload.to_vec();
        let named = (0..WORDS)
            .filter(|&i| matches!((stray[i / 4] >> (2 * (i % 4))) & 3, EXACT | PARTIAL))
            .count();
        let used = named * ENTRY_BITS as usize;
        if !used.is_multiple_of(8) {
            stray[TAG_BYTES + used / 8] |= 0x80;
            assert!(decode(&stray, &mut back).is_err());
        }
    }
}
