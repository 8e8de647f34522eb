//! Decimal floats: f64 words that are short decimals (sensor readings, prices, values
//! parsed from text) as integers `k` with `value == k / 10^e`.
//!
//! Such a value's mantissa is a repeating binary fraction that no byte-level transform
//! compresses, but its decimal digits form a small integer that delta-codes well (the idea
//! of ALP, Afroozeh et al., SIGMOD 2024, reduced to one exponent per page).
//!
//! Invariants: [`value`] is the only decoding expression, `k as f64 / 10^e` (a division by
//! an exact power of ten, so correctly rounded: it reproduces any double that is the nearest
//! to a decimal with at most `e` fraction digits); [`integer`] accepts a word only when that
//! expression gives back its exact bits, so the mapping is lossless by construction and
//! anything else (NaN, ±∞, −0, subnormals, long fractions) is left to the caller as an
//! exception. [`value`] is total: any `k` and any `e <= MAX_EXPONENT` give some double.

/// Largest decimal exponent tried: beyond 12 fraction digits `k` needs more bits than the
/// mantissa saves.
pub const MAX_EXPONENT: u8 = 12;

const POW10: [f64; MAX_EXPONENT as usize + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
];

/// Biased f64 exponents of magnitudes in [2^-20, 2^50): outside it a value is either not a
/// short decimal or its integer form is too wide to pay.
const MIN_BIASED: u64 = 1023 - 20;
const MAX_BIASED: u64 = 1023 + 50;

/// The word decoded from `k` at exponent `e` (`e <= MAX_EXPONENT`).
#[inline(always)]
pub fn value(k: i64, e: u8) -> u64 {
    (k as f64 / POW10[e as usize]).to_bits()
}

/// Whether `word` can be a short decimal at all: +0, or a magnitude in range (this
/// refuses NaN, ±∞, −0 and subnormals, such as small integers stored as i64).
#[inline(always)]
fn candidate(word: u64) -> bool {
    word == 0 || (MIN_BIASED..MAX_BIASED).contains(&((word >> 52) & 0x7ff))
}

/// `k` with `value(k, e) == word`, if there is one.
#[inline(always)]
pub fn integer(word: u64, e: u8) -> Option<i64> {
    if !candidate(word) {
        return None;
    }
    let k = (f64::from_bits(word) * POW10[e as usize]).round_ties_even() as i64;
    (value(k, e) == word).then_some(k)
}

/// The fewest fraction digits that represent `word` exactly, if at most [`MAX_EXPONENT`].
#[inline]
pub fn digits(word: u64) -> Option<u8> {
    if !candidate(word) {
        return None;
    }
    (0..=MAX_EXPONENT).find(|&e| integer(word, e).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_decimals_map_to_their_digits() {
        for (v, e, k) in [
            (-0.245f64, 3, -245i64),
            (0.1, 1, 1),
            (1234.5, 1, 12345),
            (3.0, 0, 3),
            (0.0, 0, 0),
        ] {
            assert_eq!(digits(v.to_bits()), Some(e), "{v}");
            assert_eq!(integer(v.to_bits(), e), Some(k));
            assert_eq!(value(k, e), v.to_bits());
            // A longer exponent represents it too (k scaled by ten).
            assert_eq!(integer(v.to_bits(), e + 1), Some(k * 10));
        }
    }

    #[test]
    fn non_decimals_are_rejected() {
        for v in [
            f64::NAN,
            f64::INFINITY,
            -0.0,
            1.0 / 3.0,
            std::f64::consts::PI,
            f64::MIN_POSITIVE / 2.0,
            1e300,
        ] {
            assert_eq!(digits(v.to_bits()), None, "{v}");
        }
        // Small integers stored as i64 look like subnormal doubles.
        assert_eq!(digits(5), None);
    }

    #[test]
    fn value_is_total() {
        for k in [i64::MIN, -1, 0, 1, i64::MAX] {
            for e in 0..=MAX_EXPONENT {
                let _ = value(k, e);
            }
        }
    }
}
