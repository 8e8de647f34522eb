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
pub const COUNT: usize = 11;

/// Feature names, in vector order (stored in model files and checked on load).
pub const NAMES: [&str; COUNT] = [
    "zero_words",
    "equal_neighbours",
    "delta8_bits",
    "value8_bits",
    "delta4_bits",
    "delta2_small",
    "delta1_small",
    "zero_bytes",
    "high_bit_bytes",
    "high16_shared",
    "high32_shared",
];

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

// The helpers below return lane masks (0x80 in each byte lane, or 0x8000 in each u16
// lane, that matches) rather than counts: the caller adds masks shifted down to 1 per lane
// and sums the lanes once per page. Counting per word would need a POPCNT per call, which
// the portable x86-64 baseline lacks (it becomes ~15 instructions).

const H8: u64 = 0x8080_8080_8080_8080;
const H16: u64 = 0x8000_8000_8000_8000;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// 0x80 in each zero byte lane.
#[inline(always)]
fn zero_lanes(w: u64) -> u64 {
    !(((w & LOW7) + LOW7) | w) & H8
}

/// Lane-wise `y - x` without borrows between lanes whose top bits are `high`.
#[inline(always)]
fn lane_sub(y: u64, x: u64, high: u64) -> u64 {
    ((y | high) - (x & !high)) ^ ((y ^ !x) & high)
}

/// Lane-wise `x + k` without carries between lanes.
#[inline(always)]
fn lane_add(x: u64, k: u64, high: u64) -> u64 {
    ((x & !high) + k) ^ (x & high)
}

/// 0x80 in byte lanes 0..7 whose delta to the next byte of the word lies in -8..=7; the
/// top lane (no next byte) always matches: callers subtract one per word.
#[inline(always)]
fn small_byte_delta_lanes(w: u64) -> u64 {
    let next = (w >> 8) | (w & 0xff00_0000_0000_0000);
    let d = lane_add(lane_sub(next, w, H8), 0x0808_0808_0808_0808, H8);
    zero_lanes(d & 0xf0f0_f0f0_f0f0_f0f0)
}

/// 0x8000 in u16 lanes whose delta to the next u16 lies in -128..=127; the top lane always
/// matches: callers subtract one per word.
#[inline(always)]
fn small_u16_delta_lanes(w: u64) -> u64 {
    let next = (w >> 16) | (w & 0xffff_0000_0000_0000);
    let d = lane_add(lane_sub(next, w, H16), 0x0080_0080_0080_0080, H16) & 0xff00_ff00_ff00_ff00;
    !((((d & 0x7f00_7f00_7f00_7f00) + 0x7f00_7f00_7f00_7f00) | d) & H16) & H16
}

/// Sum of the eight byte lanes (each at most 255).
#[inline(always)]
fn sum_bytes(acc: u64) -> u32 {
    let pairs = (acc & 0x00ff_00ff_00ff_00ff) + ((acc >> 8) & 0x00ff_00ff_00ff_00ff);
    sum_u16s(pairs)
}

/// Sum of the four u16 lanes.
#[inline(always)]
fn sum_u16s(acc: u64) -> u32 {
    (acc.wrapping_mul(0x0001_0001_0001_0001) >> 48) as u32
}

/// Extracts the feature vector of a page.
pub fn extract(page: &Page) -> Features {
    let words = page.words();
    let (mut zero_w, mut equal, mut d8, mut v8) = (0u32, 0u32, 0u32, 0u32);
    let (mut d4, mut high16, mut high32) = (0u32, 0u32, 0u32);
    // Per-lane counters (at most one per sampled word in each lane).
    let (mut zero_b, mut high_b, mut d1_small, mut d2_small) = (0u64, 0u64, 0u64, 0u64);
    for line in 0..LINES {
        let run = &words[line_start(line)..line_start(line) + LINE_WORDS];
        for &w in run {
            zero_w += (w == 0) as u32;
            v8 += bits(w);
            zero_b += zero_lanes(w) >> 7;
            high_b += (w & H8) >> 7;
        }
        // Narrow-width deltas are the costliest features (about 50 operations a word) and
        // describe pages that are uniform arrays: one line, the middle one, is enough. The
        // pass stays inside this loop, while the line is in registers: hoisting it after the
        // loop measured ~10% slower (classify/warm bench).
        if line == LINES / 2 {
            for &w in run {
                d1_small += small_byte_delta_lanes(w) >> 7;
                d2_small += small_u16_delta_lanes(w) >> 15;
                // Deltas between the two u32 halves of the word.
                let d = ((w >> 32) as u32).wrapping_sub(w as u32) as i32;
                d4 += 32 - ((d << 1) ^ (d >> 31)).leading_zeros();
            }
        }
        for pair in run.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            equal += (a == b) as u32;
            d8 += bits(zigzag64(b.wrapping_sub(a)));
            high16 += (a >> 48 == b >> 48) as u32;
            high32 += (a >> 32 == b >> 32) as u32;
        }
    }
    let (zero_b, high_b) = (sum_bytes(zero_b), sum_bytes(high_b));
    let d1_small = sum_bytes(d1_small) - LINE_WORDS as u32;
    let d2_small = sum_u16s(d2_small) - LINE_WORDS as u32;
    // Normalise by multiplying with constant reciprocals: a division per feature would
    // cost more than the rest of the tail.
    const WORDS: f32 = 1.0 / (LINES * LINE_WORDS) as f32;
    const PAIRS_F: f32 = 1.0 / PAIRS as f32;
    const LINE: f32 = 1.0 / LINE_WORDS as f32;
    [
        zero_w as f32 * WORDS,
        equal as f32 * PAIRS_F,
        d8 as f32 * (PAIRS_F / 64.0),
        v8 as f32 * (WORDS / 64.0),
        d4 as f32 * (LINE / 32.0),
        d2_small as f32 * (LINE / 3.0),
        d1_small as f32 * (LINE / 7.0),
        zero_b as f32 * (WORDS / 8.0),
        high_b as f32 * (WORDS / 8.0),
        high16 as f32 * PAIRS_F,
        high32 as f32 * PAIRS_F,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn swar_helpers_match_scalar() {
        let count = |mask: u64| mask.count_ones();
        assert_eq!(count(zero_lanes(0)), 8);
        assert_eq!(count(zero_lanes(u64::MAX)), 0);
        assert_eq!(count(zero_lanes(0x0100_0000_0000_8000)), 6);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for w in [
                x,
                x & 0x0f0f_0f0f_0f0f_0f0f,
                x & 0x0303_0303_0303_0303,
                x & 0x00ff_00ff_00ff_00ff,
            ] {
                let b = w.to_le_bytes();
                let zeros = b.iter().filter(|&&c| c == 0).count() as u32;
                assert_eq!(count(zero_lanes(w)), zeros, "{w:#x}");
                let small1 = b
                    .windows(2)
                    .filter(|p| p[1].wrapping_sub(p[0]).wrapping_add(8) < 16)
                    .count() as u32;
                assert_eq!(count(small_byte_delta_lanes(w)) - 1, small1, "{w:#x}");
                let h: Vec<u16> = (0..4).map(|i| (w >> (16 * i)) as u16).collect();
                let small2 = h
                    .windows(2)
                    .filter(|p| p[1].wrapping_sub(p[0]).wrapping_add(128) < 256)
                    .count() as u32;
                assert_eq!(count(small_u16_delta_lanes(w)) - 1, small2, "{w:#x}");
            }
        }
        assert_eq!(sum_bytes(0x2020_2020_2020_2020), 256);
        assert_eq!(sum_u16s(0x0003_0002_0001_0004), 10);
    }
}
