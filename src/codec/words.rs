//! Word pages: each 8-byte word coded against a small dictionary of recent words, in the
//! manner of WKdm (Wilson and Kaplan's memory compressor, which XNU runs on every page it
//! compresses), widened to 64-bit words. It is the store's fastest form for data made of
//! words: a page costs one pass of a few operations per word, several times less than an
//! LZ4 parse, so a tiered store's way in ([`crate::Profile::Words`]) can keep up with the
//! kernel and leave the ratio to the idle pass.
//!
//! Each word is one of: zero; *exact*, equal to dictionary entry `h`; *partial*, equal to
//! entry `h` above its low bits (pointers into one region, small integers); or a
//! *miss*, stored whole. The dictionary starts all zero on every page; a word's entry is
//! a hash of its high bits, and partial and missed words replace theirs, so the decoder,
//! replaying the same updates, holds the same dictionary at every word.
//!
//! Two widths, chosen per page: 8-byte words (64 entries, 16 low bits), and 4-byte words
//! (256 entries, 8 low bits), as WKdm codes them, for memory of 32-bit values: compressed
//! pointers (a JVM's, V8's), `int` arrays, 32-bit tagged values. The width is chosen from
//! what 512 bytes from the page's middle cost each way ([`probe`]), so a page is coded once;
//! a page neither width codes well is left to LZ4 without being coded as words at all.
//!
//! Invariant: the payload is a width byte (0 wide, 1 narrow), then, in this order,
//! - 2-bit tags, word `i`'s at bits `2 * (i % 4)` of byte `i / 4` (0 zero, 1 exact,
//!   2 partial, 3 miss): 128 bytes wide, 256 narrow;
//! - the entry of each exact or partial word, in word order: wide, 6 bits each, packed
//!   from the low bit of each byte up, unused high bits of the last byte zero; narrow, a
//!   byte each;
//! - the low bits of each partial word: wide, 16 bits little-endian; narrow, a byte;
//! - each missed word, little-endian: 8 bytes wide, 4 narrow;
//!
//! and its length is exactly what its width and tags imply: anything else is refused.
//!
//! Hand-written, not a crate: no maintained crate implements a WK coder, and the form is
//! small enough to check whole (round trips here and the codec suite's fuzzer).

use super::{Class, DecodeError};
use crate::page::{PAGE_SIZE, Page};

const WIDE: u8 = 0;
const NARROW: u8 = 1;

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

/// Appends this form (its class tag, then the payload) to `out`, at the width that
/// [`probe`] picks from a sample of the page's bytes, and returns `true`; or, where the probe
/// finds neither width saving a quarter of those bytes (text, code, noise: repeats a word
/// dictionary cannot see), appends nothing and returns `false`. At most `2 + 256 + 4096`
/// bytes (every word missed); the caller's huge-page fallback stores such a page raw.
pub fn encode(page: &Page, out: &mut Vec<u8>) -> bool {
    let width = probe(page);
    if width == Width::Neither {
        return false;
    }
    encode_as(page, width, out);
    true
}

/// Appends the form at `width` (wide for [`Width::Neither`]).
fn encode_as(page: &Page, width: Width, out: &mut Vec<u8>) {
    out.push(Class::Words.tag());
    if width == Width::Narrow {
        let mut narrow = Narrow::new();
        let len = narrow.encode(page);
        out.extend_from_slice(&narrow.buffer[..len]);
    } else {
        encode_wide(page, out);
    }
}

/// The probe leaves a page to LZ4 where [`lz_bits`] is under this many tenths of the
/// word form's bits. Above one because the estimate overprices LZ4 (a match's length
/// rides in its token, and long matches end off the 4-byte steps): chosen on the
/// development corpus, where 10 left a redis heap's records and a sqlite's rows in the
/// word form 1-3% larger than LZ4 would store them, and 16 sent word arrays to LZ4.
const LZ_MARGIN: u32 = 13;

/// The bits LZ4 would spend on the probed bytes, estimated: 8-byte repeats found at
/// 4-byte steps through a table of 256 positions and extended 8 bytes at a time cost 24
/// bits each (a token and an offset), every 4 bytes in none 32 (literals). LZ4 finds what the
/// word form cannot: runs of words that recur together (records, objects of one shape)
/// and values that straddle words.
fn lz_bits(page: &Page) -> u32 {
    let bytes = &page.bytes()[8 * PROBE_AT..8 * (PROBE_AT + PROBE_WORDS)];
    let at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    // Per hash of 8 bytes, where they were last seen, plus one (0: not yet).
    let mut table = [0u16; 256];
    let (mut bits, mut i) = (0, 0);
    while i + 8 <= bytes.len() {
        let value = at(i);
        let h = (value.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize;
        let seen = usize::from(table[h]);
        table[h] = (i + 1) as u16;
        if seen > 0 && at(seen - 1) == value {
            let from = seen - 1;
            // Extended 8 bytes at a time: runs of zeros or of one record are long.
            let mut len = 8;
            while i + len + 8 <= bytes.len() {
                let differ = at(from + len) ^ at(i + len);
                if differ != 0 {
                    len += differ.trailing_zeros() as usize / 8;
                    break;
                }
                len += 8;
            }
            bits += 24;
            i = (i + len).next_multiple_of(4);
        } else {
            bits += 32;
            i += 4;
        }
    }
    bits
}

/// Words of the page that [`probe`] codes both ways.
const PROBE_WORDS: usize = 64;
/// The first of them: the middle of the page. Its start is where an allocator puts
/// headers and a page ends one object and starts the next: probed there, a perl heap sent
/// pages of words to LZ4, and no program measured was better for it (the README has the
/// figures).
const PROBE_AT: usize = (WORDS - PROBE_WORDS) / 2;

/// The width [`probe`] picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 8-byte words.
    Wide,
    /// 4-byte words.
    Narrow,
    /// Neither saves a quarter of the probed bytes, or LZ4 is expected to do better.
    Neither,
}

/// Codes 64 words from the page's middle both ways, counting the bits each coder
/// would spend from fresh dictionaries: narrow where it costs at least a tenth less than
/// wide; neither where the cheaper one keeps more than three quarters of the bits, or
/// where LZ4 is expected to store them smaller (an estimate of LZ4's bits on them under
/// 1.3x the word form's).
pub fn probe(page: &Page) -> Width {
    let (mut wide, mut narrow) = (0u32, 0u32);
    let mut dict = [0u64; ENTRIES];
    let mut small = [0u32; 256];
    for &word in &page.words()[PROBE_AT..PROBE_AT + PROBE_WORDS] {
        wide += 2;
        if word != 0 {
            let h = entry(word);
            let known = dict[h];
            wide += if known == word {
                ENTRY_BITS
            } else if (known ^ word) <= LOW_MASK {
                dict[h] = word;
                ENTRY_BITS + LOW_BITS
            } else {
                dict[h] = word;
                64
            };
        }
        for half in [word as u32, (word >> 32) as u32] {
            narrow += 2;
            if half != 0 {
                let h = narrow_entry(half);
                let known = small[h];
                narrow += if known == half {
                    8
                } else if (known ^ half) >> NARROW_LOW_BITS == 0 {
                    small[h] = half;
                    16
                } else {
                    small[h] = half;
                    32
                };
            }
        }
    }
    let raw = 64 * PROBE_WORDS as u32;
    let words = wide.min(narrow);
    if words * 4 > raw * 3 || lz_bits(page) * 10 < words * LZ_MARGIN {
        Width::Neither
    } else if narrow * 10 < wide * 9 {
        Width::Narrow
    } else {
        Width::Wide
    }
}

/// Appends the wide payload.
fn encode_wide(page: &Page, out: &mut Vec<u8>) {
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
    out.push(WIDE);
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
/// // Pointers into one region: each word a dictionary entry and its low bits.
/// for (i, word) in page.words_mut().iter_mut().enumerate() {
///     *word = 0x7f12_3400_0000 + (i as u64 * 40) % 4096;
/// }
/// let mut form = Vec::new();
/// assert!(words::encode(&page, &mut form));
/// let mut out = Page::zeroed();
/// words::decode(&form[1..], &mut out)?;
/// assert!(out == page);
/// # Ok::<(), zpage::DecodeError>(())
/// ```
pub fn decode(payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    match payload.split_first() {
        Some((&WIDE, rest)) => decode_wide(rest, out),
        Some((&NARROW, rest)) => decode_narrow(rest, out),
        Some(_) => Err(DecodeError::corrupt(Class::Words, "unknown word width")),
        None => Err(DecodeError::corrupt(Class::Words, "empty")),
    }
}

fn decode_wide(payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
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
            1 + TAG_BYTES + entry_len + low_len + miss_len,
            1 + payload.len(),
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

const NARROW_WORDS: usize = PAGE_SIZE / 4;
const NARROW_TAG_BYTES: usize = NARROW_WORDS / 4;
const NARROW_LOW_BITS: u32 = 8;
/// The narrow payload's bound: width, tags, and every word missed.
const NARROW_MAX: usize = 1 + NARROW_TAG_BYTES + PAGE_SIZE;

/// A narrow word's entry (of 256): a multiplicative hash of its high 24 bits.
#[inline]
fn narrow_entry(word: u32) -> usize {
    ((word >> NARROW_LOW_BITS).wrapping_mul(0x9E37_79B1) >> 24) as usize
}

/// The narrow coder's streams, on the stack (a page's worth each at most).
struct Narrow {
    buffer: [u8; NARROW_MAX],
    named: [u8; NARROW_WORDS],
    lows: [u8; NARROW_WORDS],
}

impl Narrow {
    fn new() -> Narrow {
        Narrow {
            buffer: [0; NARROW_MAX],
            named: [0; NARROW_WORDS],
            lows: [0; NARROW_WORDS],
        }
    }

    /// Codes `page` narrow into `buffer`; returns the payload's length. Missed words go
    /// straight to their place after the tags and are moved up once the entries and
    /// lows, whose counts are known only at the end, are placed before them.
    fn encode(&mut self, page: &Page) -> usize {
        let mut dict = [0u32; 256];
        let (mut named, mut low_count, mut miss_count) = (0usize, 0usize, 0usize);
        let miss_at = 1 + NARROW_TAG_BYTES;
        let bytes = page.bytes();
        for (t, group) in bytes.chunks_exact(64).enumerate() {
            let mut bits = 0u32;
            for (j, word) in group.chunks_exact(4).enumerate() {
                let word = u32::from_le_bytes(word.try_into().expect("chunks of 4"));
                if word == 0 {
                    continue;
                }
                let h = narrow_entry(word);
                let known = dict[h];
                let tag = if known == word {
                    self.named[named] = h as u8;
                    named += 1;
                    EXACT
                } else if (known ^ word) >> NARROW_LOW_BITS == 0 {
                    self.named[named] = h as u8;
                    named += 1;
                    self.lows[low_count] = word as u8;
                    low_count += 1;
                    dict[h] = word;
                    PARTIAL
                } else {
                    let at = miss_at + 4 * miss_count;
                    self.buffer[at..at + 4].copy_from_slice(&word.to_le_bytes());
                    miss_count += 1;
                    dict[h] = word;
                    MISS
                };
                bits |= u32::from(tag) << (2 * j);
            }
            self.buffer[1 + 4 * t..1 + 4 * t + 4].copy_from_slice(&bits.to_le_bytes());
        }
        self.buffer[0] = NARROW;
        // Entries and lows go between the tags and the misses.
        let gap = named + low_count;
        let misses = 4 * miss_count;
        self.buffer
            .copy_within(miss_at..miss_at + misses, miss_at + gap);
        self.buffer[miss_at..miss_at + named].copy_from_slice(&self.named[..named]);
        self.buffer[miss_at + named..miss_at + gap].copy_from_slice(&self.lows[..low_count]);
        miss_at + gap + misses
    }
}

fn decode_narrow(payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    let Some((tags, rest)) = payload.split_first_chunk::<NARROW_TAG_BYTES>() else {
        return Err(DecodeError::corrupt(Class::Words, "shorter than its tags"));
    };
    let mut count = [0usize; 4];
    for &byte in tags {
        for shift in [0, 2, 4, 6] {
            count[usize::from((byte >> shift) & 3)] += 1;
        }
    }
    let named = count[usize::from(EXACT)] + count[usize::from(PARTIAL)];
    let (low_len, miss_len) = (count[usize::from(PARTIAL)], 4 * count[usize::from(MISS)]);
    if rest.len() != named + low_len + miss_len {
        return Err(DecodeError::length(
            Class::Words,
            1 + NARROW_TAG_BYTES + named + low_len + miss_len,
            1 + payload.len(),
        ));
    }
    let (entries, rest) = rest.split_at(named);
    let (lows, misses) = rest.split_at(low_len);
    let (mut entries, mut lows, mut misses) = (entries.iter(), lows.iter(), misses.chunks_exact(4));
    let mut dict = [0u32; 256];
    // The counts above guarantee each stream holds exactly what the tags take from it.
    for (i, word) in out.bytes_mut().chunks_exact_mut(4).enumerate() {
        let value = match (tags[i / 4] >> (2 * (i % 4))) & 3 {
            ZERO => 0,
            EXACT => dict[usize::from(*entries.next().expect("counted"))],
            PARTIAL => {
                let h = usize::from(*entries.next().expect("counted"));
                let value = (dict[h] & !0xff) | u32::from(*lows.next().expect("counted"));
                dict[h] = value;
                value
            }
            _ => {
                let bytes = misses.next().expect("counted");
                let value = u32::from_le_bytes(bytes.try_into().expect("chunks of 4"));
                dict[narrow_entry(value)] = value;
                value
            }
        };
        word.copy_from_slice(&value.to_le_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(page: &Page) -> usize {
        let mut out = Vec::new();
        encode_as(page, probe(page), &mut out);
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
        assert_eq!(round_trip(&Page::zeroed()), 2 + TAG_BYTES);
    }

    #[test]
    fn word_data_comes_out_small_and_noise_whole() {
        // Pointers into one region share an entry: each costs its tag, entry and low bits.
        let pointers = page_of(|i| 0x5555_0000_0000 + (i as u64 % 40) * 24);
        assert!(round_trip(&pointers) <= 2 + TAG_BYTES + 8 + WORDS * 6 / 8 + 2 * WORDS);
        let small = page_of(|i| (i as u64 * 7) % 1000);
        assert!(round_trip(&small) < PAGE_SIZE / 2);
        let mut x = 99u64;
        let noise = page_of(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x
        });
        assert_eq!(round_trip(&noise), 2 + TAG_BYTES + PAGE_SIZE);
        // The probe leaves noise to LZ4 (and the huge fallback) without coding it.
        let mut form = Vec::new();
        assert!(!encode(&noise, &mut form));
        assert!(form.is_empty());
    }

    /// 32-bit values (compressed pointers into one heap, small ints): the narrow width
    /// codes them at least a tenth smaller than the wide one.
    #[test]
    fn thirty_two_bit_data_is_coded_narrow() {
        let mut page = Page::zeroed();
        let mut x = 7u32;
        for (i, word) in page.bytes_mut().chunks_exact_mut(4).enumerate() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let value = match i % 4 {
                0 | 1 => 0x0040_0000 + (x >> 25) * 8,
                2 => i as u32 % 200,
                _ => 0x0041_0000 + (x >> 28),
            };
            word.copy_from_slice(&value.to_le_bytes());
        }
        let mut wide = Vec::new();
        encode_wide(&page, &mut wide);
        let len = round_trip(&page);
        let mut form = Vec::new();
        assert!(encode(&page, &mut form));
        assert_eq!(
            form[1],
            NARROW,
            "coded narrow: {len} against wide {}",
            wide.len()
        );
        assert!(
            len * 10 < wide.len() * 9,
            "narrow {len} against wide {}",
            wide.len()
        );
    }

    #[test]
    fn malformed_narrow_payloads_are_refused() {
        let mut page = Page::zeroed();
        for (i, word) in page.bytes_mut().chunks_exact_mut(4).enumerate() {
            word.copy_from_slice(
                &(0x0100_0000u32 + (i as u32).wrapping_mul(2_654_435_761) % 4096).to_le_bytes(),
            );
        }
        let mut out = Vec::new();
        assert!(encode(&page, &mut out));
        assert_eq!(out[1], NARROW);
        let payload = &out[1..];
        let mut back = Page::zeroed();
        assert!(decode(&payload[..payload.len() - 1], &mut back).is_err());
        assert!(decode(&payload[..NARROW_TAG_BYTES], &mut back).is_err());
        let mut longer = payload.to_vec();
        longer.push(0);
        assert!(decode(&longer, &mut back).is_err());
        let mut width = payload.to_vec();
        width[0] = 2;
        assert!(decode(&width, &mut back).is_err());
        assert!(decode(&[], &mut back).is_err());
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let page = page_of(|i| 0x5555_4000_0000 + i as u64 * 3);
        let mut out = Vec::new();
        assert!(encode(&page, &mut out));
        assert_eq!(out[1], WIDE);
        let payload = &out[1..];
        let mut back = Page::zeroed();
        assert!(decode(&payload[..payload.len() - 1], &mut back).is_err());
        assert!(decode(&payload[..TAG_BYTES], &mut back).is_err());
        let mut longer = payload.to_vec();
        longer.push(0);
        assert!(decode(&longer, &mut back).is_err());
        // 511 partial words and one zero: entries end mid-byte, so a stray bit shows.
        let mut stray = payload.to_vec();
        let named = (0..WORDS)
            .filter(|&i| matches!((stray[1 + i / 4] >> (2 * (i % 4))) & 3, EXACT | PARTIAL))
            .count();
        let used = named * ENTRY_BITS as usize;
        if !used.is_multiple_of(8) {
            stray[1 + TAG_BYTES + used / 8] |= 0x80;
            assert!(decode(&stray, &mut back).is_err());
        }
    }
}
