//! The delta form's layout: the parameter byte (width, transform, backend, shuffle, lag),
//! the `Decimal` prelude, and the residual count a form implies.
//!
//! Invariants: `Params::parse` accepts exactly what `Params::write` can write (no
//! reserved backend, no shuffled bytes or bit-packed shuffle, `Decimal` only on 8-byte
//! words, a lag byte in 2..=[`MAX_LAG`] only on `Sub`/`Xor`), and [`split_prelude`]
//! refuses an exponent out of range, too many exceptions, positions out of order or
//! beyond the page, and a truncated prelude; so decoding never guesses.

use super::decimal;
use crate::codec::{Class, DecodeError};
use crate::page::{PAGE_SIZE, PAGE_WORDS, Page};
use serde::{Deserialize, Serialize};

/// How residuals are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Each residual in the fewest bits that hold the page's largest one.
    Bitpack = 0,
    /// The (byte-shuffled) residual stream through LZ4.
    Lz4 = 1,
    /// The (byte-shuffled) residual stream through zstd.
    Zstd = 2,
}

/// How words become residuals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transform {
    /// Each word minus the page's minimum (frame of reference).
    Identity = 0,
    /// Each word minus the one `lag` words back (zigzag-coded).
    Sub = 1,
    /// Each word XOR the one `lag` words back (floats whose high bits repeat).
    Xor = 2,
    /// f64 short decimals as their digits `k` (`value = k / 10^e`), then `Sub`.
    Decimal = 3,
}

impl Transform {
    /// Every transform, in parameter-byte order.
    pub const ALL: [Transform; 4] = [
        Transform::Identity,
        Transform::Sub,
        Transform::Xor,
        Transform::Decimal,
    ];
    /// The transforms that apply to words of any width, as they are.
    pub(super) const ON_WORDS: [Transform; 3] =
        [Transform::Identity, Transform::Sub, Transform::Xor];
}

/// Most words a `Decimal` page stores verbatim: past this the prelude costs more than the
/// transform gains.
pub const MAX_EXCEPTIONS: usize = 48;

/// Word widths in bytes, widest first.
pub const WIDTHS: [usize; 4] = [8, 4, 2, 1];

/// Record sizes the estimate tries a lag at, in bytes, as words of 8 and 4 bytes (a record
/// of 24 bytes, or 2-byte words, won on too few corpus pages to pay for their estimates).
pub const LAG_BYTES: [usize; 2] = [16, 32];
/// The longest lag a stored form may name, in words.
pub const MAX_LAG: usize = 32;

/// The parameters recorded in a delta page's `params` byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    /// Word width in bytes: 2, 4 or 8.
    pub width: usize,
    /// How words become residuals.
    pub transform: Transform,
    /// How residuals are stored.
    pub backend: Backend,
    /// Whether residual bytes are grouped by position (byte planes) before the backend.
    pub shuffle: bool,
    /// Words between a word and the one its residual is taken against (1: neighbours).
    pub lag: usize,
}

impl Params {
    /// The params byte, and the lag byte after it when the form is lagged.
    pub(super) fn write(self, out: &mut Vec<u8>) {
        let lagged = self.lag > 1;
        out.push(
            (self.width.trailing_zeros() as u8)
                | (self.transform as u8) << 2
                | (self.backend as u8) << 4
                | (self.shuffle as u8) << 6
                | (lagged as u8) << 7,
        );
        if lagged {
            out.push(self.lag as u8);
        }
    }

    /// Parses the params (and lag) bytes at the start of `payload`; the rest follows.
    pub(super) fn parse(payload: &[u8]) -> Option<(Params, &[u8])> {
        let (&b, rest) = payload.split_first()?;
        let params = Params::from_byte(b & 0x7f)?;
        if b & 0x80 == 0 {
            return Some((params, rest));
        }
        let (&lag, rest) = rest.split_first()?;
        let lag = lag as usize;
        let lags = matches!(params.transform, Transform::Sub | Transform::Xor);
        (lags && (2..=MAX_LAG).contains(&lag)).then_some((Params { lag, ..params }, rest))
    }

    /// The params byte, its lag bit masked off by [`Params::parse`].
    fn from_byte(b: u8) -> Option<Params> {
        let transform = *Transform::ALL.get(((b >> 2) & 3) as usize)?;
        let backend = match (b >> 4) & 3 {
            0 => Backend::Bitpack,
            1 => Backend::Lz4,
            2 => Backend::Zstd,
            _ => return None,
        };
        let shuffle = b & 0x40 != 0;
        let width = 1usize << (b & 3);
        // Shuffling one-byte words is meaningless; bit-packed residuals are never shuffled.
        if (shuffle && (width == 1 || backend == Backend::Bitpack))
            || (transform == Transform::Decimal && width != 8)
        {
            return None;
        }
        Some(Params {
            width,
            transform,
            backend,
            shuffle,
            lag: 1,
        })
    }
}

/// The backend a stored delta payload (after the tag) uses, if its parameter byte is valid.
pub fn backend_of(payload: &[u8]) -> Option<Backend> {
    Params::parse(payload).map(|(p, _)| p.backend)
}

/// A `Decimal` page's prelude, validated.
pub(super) struct DecimalPrelude<'a> {
    exponent: u8,
    positions: &'a [u8],
    verbatim: &'a [u8],
}

impl DecimalPrelude<'_> {
    /// Turns the decoded `k`s in `out` into their words and puts the exceptions back.
    pub(super) fn apply(&self, out: &mut Page) {
        for w in out.words_mut() {
            *w = decimal::value(*w as i64, self.exponent);
        }
        let positions = self.positions.chunks_exact(2);
        for (pos, word) in positions.zip(self.verbatim.chunks_exact(8)) {
            let pos = u16::from_le_bytes([pos[0], pos[1]]) as usize;
            out.words_mut()[pos] = u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
        }
    }
}

/// Splits the prelude off `rest` when the form has one.
pub(super) fn split_prelude(
    params: Params,
    rest: &[u8],
) -> Result<(Option<DecimalPrelude<'_>>, &[u8]), DecodeError> {
    let corrupt = |reason| DecodeError::corrupt(Class::Delta, reason);
    if params.transform != Transform::Decimal {
        return Ok((None, rest));
    }
    let [exponent, n, rest @ ..] = rest else {
        return Err(corrupt("truncated decimal prelude"));
    };
    let n = *n as usize;
    if *exponent > decimal::MAX_EXPONENT {
        return Err(corrupt("decimal exponent out of range"));
    }
    if n > MAX_EXCEPTIONS {
        return Err(corrupt("too many decimal exceptions"));
    }
    if rest.len() < n * 10 {
        return Err(corrupt("truncated decimal prelude"));
    }
    let (positions, rest) = rest.split_at(n * 2);
    let (verbatim, rest) = rest.split_at(n * 8);
    let mut next = 0;
    for pos in positions.chunks_exact(2) {
        let pos = u16::from_le_bytes([pos[0], pos[1]]) as usize;
        if pos < next || pos >= PAGE_WORDS {
            return Err(corrupt("decimal exception positions out of order"));
        }
        next = pos + 1;
    }
    let prelude = DecimalPrelude {
        exponent: *exponent,
        positions,
        verbatim,
    };
    Ok((Some(prelude), rest))
}

/// Residuals a form stores for words of `width` bytes.
pub(super) fn residual_count(transform: Transform, width: usize) -> usize {
    match transform {
        Transform::Identity => PAGE_SIZE / width,
        _ => PAGE_SIZE / width - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip_and_reject_what_no_encoder_writes() {
        for width in WIDTHS {
            for transform in Transform::ALL {
                for backend in [Backend::Bitpack, Backend::Lz4, Backend::Zstd] {
                    for shuffle in [false, true] {
                        for lag in [1, 2, 3, 16, MAX_LAG, MAX_LAG + 1] {
                            let p = Params {
                                width,
                                transform,
                                backend,
                                shuffle,
                                lag,
                            };
                            let valid = !(shuffle && (width == 1 || backend == Backend::Bitpack))
                                && (transform != Transform::Decimal || width == 8)
                                && (lag == 1
                                    || (lag <= MAX_LAG
                                        && matches!(transform, Transform::Sub | Transform::Xor)));
                            let mut bytes = Vec::new();
                            p.write(&mut bytes);
                            bytes.push(0xee);
                            let parsed = Params::parse(&bytes);
                            assert_eq!(parsed, valid.then_some((p, &[0xee][..])), "{p:?}");
                        }
                    }
                }
            }
        }
        assert_eq!(Params::parse(&[0x30]), None, "reserved backend");
        assert_eq!(Params::parse(&[0x84]), None, "lag byte missing");
        assert_eq!(
            Params::parse(&[0x84, 1]),
            None,
            "a lag of 1 is never written"
        );
    }
}
