//! The delta encoder: the chosen parameters applied, residuals bit-packed or shuffled
//! through the backend, whichever is smaller.
//!
//! Invariants: the form written is always one [`super::decode`] reads back to the page;
//! bit-packing is taken when it is near the estimate or smaller than the backend's block.

use super::decimal;
use super::estimate::{Choice, choose};
use super::format::{Backend, MAX_EXCEPTIONS, Params, Transform};
use super::pack::pack;
use super::word::{Word, forward};
use crate::codec::general::lz4_append;
use crate::codec::shuffle::shuffle_bytes;
use crate::codec::zstd::zstd_append;
use crate::codec::{Class, CodecConfig};
use crate::page::Page;
use crate::sync::{RefCell, thread_local};

/// Encodes a page as a delta form with the parameters its sampled estimate (`choose`) picks.
pub fn encode(page: &Page, config: &CodecConfig, out: &mut Vec<u8>) {
    let (choice, on_words) = choose(page, config.delta_backend);
    if choice.transform == Transform::Decimal
        && encode_decimal(page, choice.exponent, choice.estimate, config, out)
    {
        return;
    }
    let words = page.bytes();
    match on_words.width {
        8 => encode_as::<u64>(cast(words), on_words, &[], config, out),
        4 => encode_as::<u32>(cast(words), on_words, &[], config, out),
        2 => encode_as::<u16>(cast(words), on_words, &[], config, out),
        _ => encode_as::<u8>(words, on_words, &[], config, out),
    }
}

fn cast<W: Word>(bytes: &[u8]) -> &[W] {
    bytemuck::cast_slice(bytes)
}

/// Bytes of the largest `Decimal` prelude: exponent, count, positions and words.
const MAX_PRELUDE: usize = 2 + MAX_EXCEPTIONS * 10;

/// Encodes a page in the `Decimal` form at exponent `e`; false (and `out` untouched) if it
/// has more than [`MAX_EXCEPTIONS`] words that are not decimals at `e`.
fn encode_decimal(
    page: &Page,
    e: u8,
    estimate: usize,
    config: &CodecConfig,
    out: &mut Vec<u8>,
) -> bool {
    let mut ks = Page::zeroed();
    let mut exceptions = [(0u16, 0u64); MAX_EXCEPTIONS];
    let mut n = 0;
    let mut prev = 0i64;
    for (i, (&w, k)) in page.words().iter().zip(ks.words_mut()).enumerate() {
        match decimal::integer(w, e) {
            Some(v) => prev = v,
            None if n == MAX_EXCEPTIONS => return false,
            None => {
                exceptions[n] = (i as u16, w);
                n += 1;
            }
        }
        *k = prev as u64;
    }
    let mut prelude = [0u8; MAX_PRELUDE];
    prelude[..2].copy_from_slice(&[e, n as u8]);
    let (positions, verbatim) = prelude[2..2 + n * 10].split_at_mut(n * 2);
    for (j, &(pos, word)) in exceptions[..n].iter().enumerate() {
        positions[2 * j..2 * j + 2].copy_from_slice(&pos.to_le_bytes());
        verbatim[8 * j..8 * j + 8].copy_from_slice(&word.to_le_bytes());
    }
    let prelude = &prelude[..2 + n * 10];
    let choice = Choice {
        width: 8,
        transform: Transform::Decimal,
        lag: 1,
        exponent: e,
        estimate,
    };
    encode_as::<u64>(ks.words(), choice, prelude, config, out);
    true
}

thread_local! {
    /// Two pages of working space per thread (residuals, shuffled bytes): zeroing two
    /// fresh pages on the stack cost ~5% of a delta page's encode. Every use writes the
    /// part it reads first, so what a previous page left there never matters.
    static SCRATCH: RefCell<Box<[Page; 2]>> = RefCell::new(bytemuck::allocation::zeroed_box());
}

/// Runs `f` on this thread's two scratch pages.
fn with_scratch<R>(f: impl FnOnce(&mut Page, &mut Page) -> R) -> R {
    SCRATCH.with(|pages| {
        let [a, b] = &mut **pages.borrow_mut();
        f(a, b)
    })
}

/// Encodes `words` (a page's worth) under the choice's transform and lag, with `prelude`
/// after the params; the choice's estimate (bytes) steers bit-packing versus the backend.
fn encode_as<W: Word>(
    words: &[W],
    choice: Choice,
    prelude: &[u8],
    config: &CodecConfig,
    out: &mut Vec<u8>,
) {
    with_scratch(|scratch, shuffled| {
        encode_into::<W>(words, choice, prelude, config, out, scratch, shuffled)
    })
}

fn encode_into<W: Word>(
    words: &[W],
    choice: Choice,
    prelude: &[u8],
    config: &CodecConfig,
    out: &mut Vec<u8>,
    scratch: &mut Page,
    shuffled: &mut Page,
) {
    let Choice {
        transform,
        lag,
        estimate,
        ..
    } = choice;
    let res: &mut [W] = bytemuck::cast_slice_mut(scratch.bytes_mut());
    let (base, n) = forward(words, transform, lag, res);
    let res = &res[..n];
    // Fold in the word's own width (widening first took four times the vector lanes).
    let bits = W::BITS
        - res
            .iter()
            .fold(W::from_u64(0), |acc, &r| acc.or(r))
            .leading_zeros();
    let packed_len = 1 + (n * bits as usize).div_ceil(8);

    let header = |out: &mut Vec<u8>, backend: Backend, shuffle: bool| {
        out.clear();
        out.push(Class::Delta.tag());
        Params {
            width: W::BITS as usize / 8,
            transform,
            backend,
            shuffle,
            lag,
        }
        .write(out);
        out.extend_from_slice(prelude);
        out.extend_from_slice(&base.to_u64().to_le_bytes()[..W::BITS as usize / 8]);
    };
    let bitpack = |out: &mut Vec<u8>| {
        header(out, Backend::Bitpack, false);
        out.push(bits as u8);
        pack(res, bits, out);
    };

    // Bit-packing is exact and an order of magnitude faster than any backend: take it
    // outright when it is near the entropy estimate.
    if packed_len <= estimate + estimate / 4 + 16 {
        return bitpack(out);
    }
    let shuffle = W::BITS > 8;
    let bytes: &[u8] = if shuffle {
        shuffle_bytes(
            bytemuck::cast_slice(res),
            W::BITS as usize / 8,
            shuffled.bytes_mut(),
        )
    } else {
        bytemuck::cast_slice(res)
    };
    header(out, config.delta_backend, shuffle);
    let head = out.len();
    match config.delta_backend {
        Backend::Zstd => zstd_append(bytes, config.zstd_level, None, out),
        _ => lz4_append(bytes, out),
    }
    if out.len() - head > packed_len {
        bitpack(out);
    }
}
