//! Cheap page features for the classifier, read from a fixed sample of the page.
//!
//! Invariants: every feature is a finite `f32` in `[0, 1]`, computed from the same three
//! 64-byte cache lines of the page (24 words, 21 neighbouring pairs): whole lines, because
//! on a page that is not in cache each line touched is a memory round trip, and few, because
//! the budget (features + tree <= 100 ns at 2.1 GHz) is about 200 cycles. Same-filled and
//! zero pages never reach the features: the engine's exact scan takes them first.
//! The order of [`NAMES`] is part of the model file format.

use crate::page::{PAGE_WORDS, Page};

/// Number of features.
pub const COUNT: usize = 12;

/// Feature names, in vector order (stored in model files and checked on load).
pub const NAMES: [&str; COUNT] = [
    "zero_words",
    "equal_neighbours",
    "delta8_bits",
    "value8_bits",
    "delta4_small",
    "delta2_small",
    "delta1_small",
    "zero_bytes",
    "high_bit_bytes",
    "high16_shared",
    "high32_shared",
    "record_small",
];

/// Index of `record_small` in the feature vector.
pub const RECORD_SMALL: usize = 11;

/// A page's feature vector.
pub type Features = [f32; COUNT];

const LINES: usize = 3;
const LINE_WORDS: usize = 8;
const PAIRS: usize = LINES * (LINE_WORDS - 1);
/// The sampled lines are centred in equal thirds of the page (away from the page start,
/// where allocator headers make the first words unrepresentative), cache-line aligned.
const fn line_start(line: usize) -> usize {
    ((2 * line + 1) * PAGE_WORDS / (2 * LINES)) & !(LINE_WORDS - 1)
}

#[inline(always)]
fn bits(v: u64) -> u32 {
    64 - v.leading_zeros()
}

#[inline(always)]
fn zigzag64(v: u64) -> u64 {
    ((v as i64) << 1 ^ ((v as i64) >> 63)) as u64
}

/// Counts the pairs of `words` `lag` apart (1 if not given: neighbours) whose wrapping
/// difference, offset by `half`, is below `2 * half` (a delta in `-half..half`). Written
/// over plain slices so the compiler vectorises it (SSE: a subtract, an add, a compare per
/// 16 bytes).
macro_rules! small_deltas {
    ($words:expr, $t:ty, $half:expr) => {
        small_deltas!($words, $t, $half, 1)
    };
    ($words:expr, $t:ty, $half:expr, $lag:expr) => {{
        let words: &[$t] = $words;
        words
            .iter()
            .zip(&words[$lag..])
            .map(|(&a, &b)| (b.wrapping_sub(a).wrapping_add($half) < 2 * $half) as $t)
            .fold(0 as $t, |acc, x| acc.wrapping_add(x)) as u32
    }};
}

/// Extracts the feature vector of a page.
pub fn extract(page: &Page) -> Features {
    let words = page.words();
    let (mut zero_w, mut equal, mut d8, mut v8) = (0u32, 0u32, 0u32, 0u32);
    let (mut high16, mut high32) = (0u32, 0u32);
    let (mut zero_b, mut high_b) = (0u8, 0u8);
    for line in 0..LINES {
        let run = &words[line_start(line)..line_start(line) + LINE_WORDS];
        let mut any = 0u64;
        for &w in run {
            zero_w += (w == 0) as u32;
            any |= w;
        }
        v8 += bits(any);
        // Byte counts: at most 64 per line, 192 in all, so u8 lanes never overflow.
        for &b in bytemuck::cast_slice::<u64, u8>(run) {
            zero_b += (b == 0) as u8;
            high_b += b >> 7;
        }
        let mut deltas = 0u64;
        for pair in run.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            equal += (a == b) as u32;
            deltas |= zigzag64(b.wrapping_sub(a));
            high16 += (a >> 48 == b >> 48) as u32;
            high32 += (a >> 32 == b >> 32) as u32;
        }
        d8 += bits(deltas);
    }
    // Narrow-width deltas describe pages that are uniform arrays: the middle line is enough.
    let middle = &words[line_start(LINES / 2)..line_start(LINES / 2) + LINE_WORDS];
    let d4_small = small_deltas!(bytemuck::cast_slice(middle), u32, 1 << 15);
    let d2_small = small_deltas!(bytemuck::cast_slice(middle), u16, 128);
    let d1_small = small_deltas!(bytemuck::cast_slice(middle), u8, 8);
    // Rows and arrays of structs: 4-byte fields that barely change one record (16 or
    // 32 bytes) later, which the delta codec's lagged difference stores well.
    let record16 = small_deltas!(bytemuck::cast_slice(middle), u32, 128, 4);
    let record32 = small_deltas!(bytemuck::cast_slice(middle), u32, 128, 8);
    // Normalise by multiplying with constant reciprocals: a division per feature would
    // cost more than the rest of the tail.
    const WORDS: f32 = 1.0 / (LINES * LINE_WORDS) as f32;
    const PAIRS_F: f32 = 1.0 / PAIRS as f32;
    const LINE_BYTES: usize = LINE_WORDS * 8;
    // The record features compare u32s 4 and 8 apart (16- and 32-byte records).
    const U32S: usize = LINE_BYTES / 4;
    [
        zero_w as f32 * WORDS,
        equal as f32 * PAIRS_F,
        d8 as f32 * (1.0 / (LINES * 64) as f32),
        v8 as f32 * (1.0 / (LINES * 64) as f32),
        d4_small as f32 * (1.0 / (U32S - 1) as f32),
        d2_small as f32 * (1.0 / (LINE_BYTES / 2 - 1) as f32),
        d1_small as f32 * (1.0 / (LINE_BYTES - 1) as f32),
        zero_b as f32 * (WORDS / 8.0),
        high_b as f32 * (WORDS / 8.0),
        high16 as f32 * PAIRS_F,
        high32 as f32 * PAIRS_F,
        (record16 as f32 * (1.0 / (U32S - 4) as f32))
            .max(record32 as f32 * (1.0 / (U32S - 8) as f32)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_small_is_where_its_name_is() {
        assert_eq!(NAMES[RECORD_SMALL], "record_small");
    }

    #[test]
    fn features_are_in_unit_range() {
        let mut page = Page::zeroed();
        for (i, b) in page.bytes_mut().iter_mut().enumerate() {
            *b = ((i * 2654435761usize) >> 7) as u8;
        }
        for f in [
            extract(&page),
            extract(&Page::zeroed()),
            extract(&Page::filled(u64::MAX)),
        ] {
            assert!(
                f.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
                "{f:?}"
            );
        }
    }

    #[test]
    fn narrow_delta_features_see_their_width() {
        let feature =
            |name: &str, page: &Page| extract(page)[NAMES.iter().position(|n| *n == name).unwrap()];
        let mut bytes_ramp = Page::zeroed();
        for (i, b) in bytes_ramp.bytes_mut().iter_mut().enumerate() {
            *b = (i / 3) as u8;
        }
        assert_eq!(feature("delta1_small", &bytes_ramp), 1.0);
        let mut u32_ramp = Page::zeroed();
        for (i, w) in u32_ramp.words_mut().iter_mut().enumerate() {
            let v = 0x1234_0000u64 + 1000 * 2 * i as u64;
            *w = v | (v + 1000) << 32;
        }
        assert_eq!(feature("delta4_small", &u32_ramp), 1.0);
        assert_eq!(feature("delta2_small", &u32_ramp), 0.0);
        let mut noise = Page::zeroed();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for w in noise.words_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *w = x;
        }
        for name in ["delta1_small", "delta2_small", "delta4_small"] {
            assert!(feature(name, &noise) < 0.2, "{name}");
        }
    }
}
