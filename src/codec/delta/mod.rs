//! Delta pages: numeric words as a base plus transformed residuals.
//!
//! Per page the encoder chooses a word width (8/4/2/1 bytes) and a transform:
//! - `Identity`: residual = word − min (frame of reference; small integers),
//! - `Sub`: residual = zigzag(word − previous word) (counters, timestamps, smooth signals),
//! - `Xor`: residual = word ^ previous word (floats whose sign/exponent/high mantissa repeat),
//! - `Decimal` (8-byte words only): each f64 word that is a short decimal becomes its integer
//!   digits `k` at one exponent per page (see `decimal`), then `Sub` on the `k`s;
//!   the words that are not (at most `MAX_EXCEPTIONS`) are stored verbatim,
//! - `Sub` at a lag: residual = zigzag(word − the word one record earlier), for arrays of
//!   fixed-size records (`LAG_BYTES`: 16 or 32 bytes; a database page's rows, an
//!   array of structs), where neighbouring words are different fields but the same field
//!   of the next record barely changes,
//!
//! then stores the residuals either bit-packed at the narrowest width that holds them all
//! (Base-Delta-Immediate style, with bit rather than byte granularity) or byte-shuffled
//! (all byte 0s, then all byte 1s, …) through an entropy backend (LZ4 or zstd).
//!
//! Stored form: `[tag][params][lag][decimal prelude][base: width bytes][body]` where
//! `params` packs bits 0-1 log2(width), bits 2-3 transform, bits 4-5 backend, bit 6 shuffle,
//! bit 7 lagged; `lag` (in words, 2..=`MAX_LAG`, `Sub` and `Xor` only) is there only when
//! bit 7 is set; body is `[bits][packed residuals]` for bit-packing or the backend's block
//! otherwise. Only `Decimal` has a prelude: `[exponent][n][n positions: u16][n words: u64]`,
//! positions strictly increasing; an exception's slot holds the previous `k` (residual 0).
//! Invariants: `Identity` has one residual per word, `Sub`/`Xor` one per word after the
//! first (the base), each against the word `lag` before it, or the previous word while
//! there is none that far back (a lag of 1 is the plain neighbour form); every count and
//! length is implied by the width, so any disagreement in the payload is corruption,
//! reported, never guessed around.
//!
//! One job per file: `format` the layout, `word` the arithmetic and transforms,
//! `estimate` the sampled parameter choice, `encode` and `decode`, `shuffle` the byte
//! planes, `pack` bit-packing, `decimal` the f64 ↔ decimal mapping.

pub(crate) mod decimal;
mod decode;
mod encode;
mod estimate;
mod format;
mod pack;
mod word;

pub use decode::decode;
pub use encode::encode;
pub use format::{Backend, backend_of};
// The parameter choice and the format's fields are the codec's own business.
#[cfg(test)]
use estimate::choose;
use format::Params;
#[cfg(test)]
use format::Transform;

use crate::codec::CodecConfig;
use crate::codec::zstd::zstd_exact;
use crate::page::Page;
use format::{residual_count, split_prelude};

/// The output of the delta transform for entropy analysis: for a page the dense codec
/// bit-packs, the packed form itself (narrow residuals are the transform's point, and
/// nothing further codes them); otherwise the form with its backend block expanded: the
/// residual bytes as the entropy coder sees them (shuffled for multi-byte words), after
/// the prelude and base.
pub fn transformed_bytes(page: &Page) -> Vec<u8> {
    let config = CodecConfig::DENSE;
    let mut stored = Vec::new();
    encode(page, &config, &mut stored);
    let (params, rest) = Params::parse(&stored[1..]).expect("the encoder writes valid parameters");
    let mut out = stored.split_off(stored.len() - rest.len());
    if params.backend == Backend::Bitpack {
        return out;
    }
    let (_, rest) = split_prelude(params, &out).expect("the encoder writes a valid prelude");
    let body_start = out.len() - rest.len() + params.width;
    let mut residuals = vec![0; residual_count(params.transform, params.width) * params.width];
    zstd_exact(&out[body_start..], &mut residuals).expect("the encoder's block decodes");
    out.truncate(body_start);
    out.extend_from_slice(&residuals);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::Page;

    #[test]
    fn record_arrays_take_a_lag_and_round_trip() {
        // 32-byte records: a key counting down, a constant tag, a growing pointer and a
        // flag word.
        let mut page = Page::zeroed();
        for (i, record) in page.bytes_mut().chunks_exact_mut(32).enumerate() {
            record[..8].copy_from_slice(&(90_000 - i as u64).to_le_bytes());
            record[8..16].copy_from_slice(&0x0d00_10b7_2300_0000u64.to_le_bytes());
            record[16..24].copy_from_slice(&(0x7f00_0000_0000 + 64 * i as u64).to_le_bytes());
            record[24..32].copy_from_slice(&((i as u64 % 3) << 40 | 0xff).to_le_bytes());
        }
        for config in [CodecConfig::FAST, CodecConfig::DENSE] {
            let (choice, _) = choose(&page, config.delta_backend);
            assert_eq!(
                (choice.transform, choice.width * choice.lag),
                (Transform::Sub, 32)
            );
            let mut out = Vec::new();
            encode(&page, &config, &mut out);
            assert!(out.len() < 400, "{} bytes", out.len());
            let mut back = Page::zeroed();
            decode(&out[1..], &mut back).unwrap();
            assert_eq!(back, page);
        }
    }

    #[test]
    fn small_integers_bitpack_to_their_width() {
        let mut page = Page::zeroed();
        for (i, w) in page.words_mut().iter_mut().enumerate() {
            *w = (i as u64 * 7919) % 1000;
        }
        let mut out = Vec::new();
        encode(&page, &CodecConfig::FAST, &mut out);
        // 512 values of 10 bits = 640 bytes, plus a few header bytes.
        assert!(out.len() <= 640 + 12, "{} bytes", out.len());
        let mut back = Page::zeroed();
        decode(&out[1..], &mut back).unwrap();
        assert_eq!(back, page);
    }
}
