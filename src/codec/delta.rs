//! Delta pages: numeric words as a base plus transformed residuals.
//!
//! Per page the encoder chooses a word width (8/4/2/1 bytes) and a transform:
//! - `Identity`: residual = word − min (frame of reference; small integers),
//! - `Sub`: residual = zigzag(word − previous word) (counters, timestamps, smooth signals),
//! - `Xor`: residual = word ^ previous word (floats whose sign/exponent/high mantissa repeat),
//!
//! then stores the residuals either bit-packed at the narrowest width that holds them all
//! (Base-Delta-Immediate style, with bit rather than byte granularity) or byte-shuffled
//! (all byte 0s, then all byte 1s, …) through an entropy backend (LZ4 or zstd).
//!
//! Stored form: `[tag][params][base: width bytes][body]` where `params` packs
//! bits 0-1 log2(width), bits 2-3 transform, bits 4-5 backend, bit 6 shuffle, bit 7 zero;
//! body is `[bits][packed residuals]` for bit-packing or the backend's block otherwise.
//! Invariants: `Identity` has one residual per word, `Sub`/`Xor` one per word after the
//! first (the base); every count and length is implied by the width, so any disagreement
//! in the payload is corruption, reported, never guessed around.

use super::dense::{zstd_append, zstd_exact};
use super::general::{lz4_append, lz4_exact};
use super::{Class, CodecConfig, DecodeError};
use crate::page::{PAGE_SIZE, Page};
use bytemuck::Pod;
use serde::{Deserialize, Serialize};

/// How residuals are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    Bitpack = 0,
    Lz4 = 1,
    Zstd = 2,
}

/// How words become residuals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transform {
    Identity = 0,
    Sub = 1,
    Xor = 2,
}

impl Transform {
    pub const ALL: [Transform; 3] = [Transform::Identity, Transform::Sub, Transform::Xor];
}

/// Word widths in bytes, widest first.
pub const WIDTHS: [usize; 4] = [8, 4, 2, 1];

/// The parameters recorded in a delta page's `params` byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    pub width: usize,
    pub transform: Transform,
    pub backend: Backend,
    pub shuffle: bool,
}

impl Params {
    fn to_byte(self) -> u8 {
        (self.width.trailing_zeros() as u8)
            | (self.transform as u8) << 2
            | (self.backend as u8) << 4
            | (self.shuffle as u8) << 6
    }

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
        if b & 0x80 != 0 || (shuffle && (width == 1 || backend == Backend::Bitpack)) {
            return None;
        }
        Some(Params {
            width,
            transform,
            backend,
            shuffle,
        })
    }
}

/// An unsigned word of one width, with the arithmetic the transforms need.
trait Word: Pod + Ord {
    const BITS: u32;
    fn wsub(self, o: Self) -> Self;
    fn wadd(self, o: Self) -> Self;
    fn xor(self, o: Self) -> Self;
    fn zigzag(self) -> Self;
    fn unzigzag(self) -> Self;
    fn to_u64(self) -> u64;
    fn from_u64(v: u64) -> Self;
}

macro_rules! word {
    ($u:ty, $i:ty) => {
        impl Word for $u {
            const BITS: u32 = <$u>::BITS;
            #[inline(always)]
            fn wsub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            #[inline(always)]
            fn wadd(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            #[inline(always)]
            fn xor(self, o: Self) -> Self {
                self ^ o
            }
            #[inline(always)]
            fn zigzag(self) -> Self {
                (((self as $i) << 1) ^ ((self as $i) >> (<$u>::BITS - 1))) as $u
            }
            #[inline(always)]
            fn unzigzag(self) -> Self {
                (self >> 1) ^ (0 as $u).wrapping_sub(self & 1)
            }
            #[inline(always)]
            fn to_u64(self) -> u64 {
                self as u64
            }
            #[inline(always)]
            fn from_u64(v: u64) -> Self {
                v as $u
            }
        }
    };
}
word!(u8, i8);
word!(u16, i16);
word!(u32, i32);
word!(u64, i64);

#[inline(always)]
fn residual<W: Word>(t: Transform, prev: W, cur: W) -> W {
    match t {
        Transform::Identity => cur.wsub(prev),
        Transform::Sub => cur.wsub(prev).zigzag(),
        Transform::Xor => cur.xor(prev),
    }
}

/// Writes the residuals of `words` into `res` and returns (base, residual count).
fn forward<W: Word>(words: &[W], t: Transform, res: &mut [W]) -> (W, usize) {
    match t {
        Transform::Identity => {
            let base = *words.iter().min().expect("a page has words");
            for (r, &w) in res.iter_mut().zip(words) {
                *r = w.wsub(base);
            }
            (base, words.len())
        }
        Transform::Sub | Transform::Xor => {
            for (r, pair) in res.iter_mut().zip(words.windows(2)) {
                *r = residual(t, pair[0], pair[1]);
            }
            (words[0], words.len() - 1)
        }
    }
}

/// Rebuilds `words` from base and residuals; total for any residuals (no invariant to break).
fn inverse<W: Word>(base: W, t: Transform, res: &[W], words: &mut [W]) {
    match t {
        Transform::Identity => {
            for (w, &r) in words.iter_mut().zip(res) {
                *w = r.wadd(base);
            }
        }
        Transform::Sub | Transform::Xor => {
            let mut prev = base;
            words[0] = base;
            for (w, &r) in words[1..].iter_mut().zip(res) {
                prev = if t == Transform::Sub {
                    prev.wadd(r.unzigzag())
                } else {
                    prev.xor(r)
                };
                *w = prev;
            }
        }
    }
}

/// Sample used by the parameter estimate: runs of consecutive words spread over the page,
/// so neighbouring words stay neighbours. Every width samples the same number of words, so
/// every byte plane's entropy estimate has the same small-sample bias and widths compare
/// fairly.
const SAMPLE_RUNS: usize = 8;
const SAMPLE_RUN_WORDS: usize = 16;
const SAMPLE_OFFSET: usize = 256;
/// The LZ4 estimate's cheaper sample: 4 runs of 32 bytes.
const BITS_RUNS: usize = 4;
const BITS_RUN_BYTES: usize = 32;
const BITS_OFFSET: usize = 512;

/// Calls `visit` with the residual of every sampled word under (W, t): `runs` runs of
/// `run_words` consecutive words, spread over the page from `offset` bytes into each
/// stretch. Returns how many residuals were visited.
fn for_sampled_residuals<W: Word>(
    page: &Page,
    t: Transform,
    runs: usize,
    run_words: usize,
    offset: usize,
    mut visit: impl FnMut(u64),
) -> u32 {
    let width = std::mem::size_of::<W>();
    let skip = (t != Transform::Identity) as usize;
    let mut n = 0;
    for run in 0..runs {
        let start = run * (PAGE_SIZE / runs) + offset;
        let words: &[W] = bytemuck::cast_slice(&page.bytes()[start..start + run_words * width]);
        for i in skip..words.len() {
            let prev = if skip == 1 {
                words[i - 1]
            } else {
                W::from_u64(0)
            };
            visit(residual(t, prev, words[i]).to_u64());
            n += 1;
        }
    }
    n
}

/// `c * log2(c)` for every count a sampled plane can reach (fetch once per estimate:
/// it is read twice per sampled residual byte).
fn clogc_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=SAMPLE_RUNS * SAMPLE_RUN_WORDS)
            .map(|c| {
                if c == 0 {
                    0.0
                } else {
                    c as f32 * (c as f32).log2()
                }
            })
            .collect()
    })
}

/// Estimated bits a page costs under (W, t) for zstd: order-0 entropy of each byte plane of the
/// sampled residuals (what byte-shuffling plus an entropy coder sees), bias-corrected
/// (Miller-Madow), and scaled to the page.
fn estimate<W: Word>(page: &Page, t: Transform) -> u64 {
    let width = std::mem::size_of::<W>();
    let mut counts = [[0u16; 256]; 8];
    let mut sum = [0f32; 8];
    let mut distinct = [0u32; 8];
    let clogc = clogc_table();
    let n =
        for_sampled_residuals::<W>(page, t, SAMPLE_RUNS, SAMPLE_RUN_WORDS, SAMPLE_OFFSET, |r| {
            for (j, plane) in counts.iter_mut().enumerate().take(width) {
                let c = &mut plane[(r >> (8 * j)) as u8 as usize];
                sum[j] += clogc[*c as usize + 1] - clogc[*c as usize];
                distinct[j] += (*c == 0) as u32;
                *c += 1;
            }
        });
    let nf = n as f32;
    let bits: f32 = (0..width)
        .map(|j| {
            nf * nf.log2() - sum[j] + (distinct[j] - 1) as f32 / (2.0 * std::f32::consts::LN_2)
        })
        .sum();
    (bits * (PAGE_SIZE / width) as f32 / nf) as u64
}

/// Estimated bits a page costs under (W, t) for LZ4: LZ4 gains on byte-shuffled residuals
/// mostly from their all-zero high bytes, so the count of significant bits (plus one per
/// residual) models it well, and it costs a few instructions a residual instead of a
/// histogram update per byte.
fn estimate_bits<W: Word>(page: &Page, t: Transform) -> u64 {
    let mut bits = 0u64;
    let run_words = BITS_RUN_BYTES / std::mem::size_of::<W>();
    let n = for_sampled_residuals::<W>(page, t, BITS_RUNS, run_words, BITS_OFFSET, |r| {
        bits += (64 - r.leading_zeros()) as u64 + 1;
    }) as u64;
    bits * (PAGE_SIZE / std::mem::size_of::<W>()) as u64 / n
}

/// Picks width and transform for the configured backend by a sampled estimate; also
/// returns the estimate in bytes.
pub fn choose(page: &Page, backend: Backend) -> (usize, Transform, usize) {
    let mut best = (8, Transform::Identity, u64::MAX);
    for t in Transform::ALL {
        let costs = if backend == Backend::Zstd {
            [
                estimate::<u64>(page, t),
                estimate::<u32>(page, t),
                estimate::<u16>(page, t),
                estimate::<u8>(page, t),
            ]
        } else {
            [
                estimate_bits::<u64>(page, t),
                estimate_bits::<u32>(page, t),
                estimate_bits::<u16>(page, t),
                estimate_bits::<u8>(page, t),
            ]
        };
        for (width, cost) in WIDTHS.into_iter().zip(costs) {
            if cost < best.2 {
                best = (width, t, cost);
            }
        }
    }
    (best.0, best.1, best.2.div_ceil(8) as usize)
}

/// Encodes a page as a delta form with the parameters [`choose`] picks.
pub fn encode(page: &Page, config: &CodecConfig, out: &mut Vec<u8>) {
    let (width, transform, estimate) = choose(page, config.delta_backend);
    encode_with(page, width, transform, estimate, config, out);
}

/// Encodes with explicit width and transform; `estimate` (bytes) steers bit-packing versus
/// the backend as in [`encode`].
pub fn encode_with(
    page: &Page,
    width: usize,
    transform: Transform,
    estimate: usize,
    config: &CodecConfig,
    out: &mut Vec<u8>,
) {
    match width {
        8 => encode_as::<u64>(page, transform, estimate, config, out),
        4 => encode_as::<u32>(page, transform, estimate, config, out),
        2 => encode_as::<u16>(page, transform, estimate, config, out),
        _ => encode_as::<u8>(page, transform, estimate, config, out),
    }
}

fn encode_as<W: Word>(
    page: &Page,
    transform: Transform,
    estimate: usize,
    config: &CodecConfig,
    out: &mut Vec<u8>,
) {
    let words: &[W] = bytemuck::cast_slice(page.bytes());
    let mut scratch = Page::zeroed();
    let res: &mut [W] = bytemuck::cast_slice_mut(scratch.bytes_mut());
    let (base, n) = forward(words, transform, res);
    let res = &res[..n];
    let bits = W::BITS
        - res
            .iter()
            .fold(0u64, |acc, r| acc | r.to_u64())
            .leading_zeros()
            .saturating_sub(64 - W::BITS);
    let packed_len = 1 + (n * bits as usize).div_ceil(8);

    let header = |out: &mut Vec<u8>, backend: Backend, shuffle: bool| {
        out.clear();
        out.push(Class::Delta.tag());
        out.push(
            Params {
                width: W::BITS as usize / 8,
                transform,
                backend,
                shuffle,
            }
            .to_byte(),
        );
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
    let mut shuffled = Page::zeroed();
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
    match config.delta_backend {
        Backend::Zstd => zstd_append(bytes, config.zstd_level, out),
        _ => lz4_append(bytes, out),
    }
    if out.len() > packed_len + 2 + W::BITS as usize / 8 {
        bitpack(out);
    }
}

/// Byte-transposes `src` (words of `width` bytes) into `dst`; returns the filled part.
fn shuffle_bytes<'a>(src: &[u8], width: usize, dst: &'a mut [u8]) -> &'a [u8] {
    let n = src.len() / width;
    for (i, word) in src.chunks_exact(width).enumerate() {
        for (j, &b) in word.iter().enumerate() {
            dst[j * n + i] = b;
        }
    }
    &dst[..src.len()]
}

fn unshuffle_bytes(src: &[u8], width: usize, dst: &mut [u8]) {
    let n = src.len() / width;
    for (i, word) in dst.chunks_exact_mut(width).enumerate() {
        for (j, b) in word.iter_mut().enumerate() {
            *b = src[j * n + i];
        }
    }
}

/// Appends `res` packed at `bits` bits each, least significant bit first.
fn pack<W: Word>(res: &[W], bits: u32, out: &mut Vec<u8>) {
    if bits == 0 {
        return;
    }
    let mut acc: u128 = 0;
    let mut filled = 0u32;
    for r in res {
        acc |= (r.to_u64() as u128) << filled;
        filled += bits;
        if filled >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            filled -= 64;
        }
    }
    out.extend_from_slice(&acc.to_le_bytes()[..filled.div_ceil(8) as usize]);
}

/// Unpacks `res.len()` values of `bits` bits; `src` must be exactly the packed length.
fn unpack<W: Word>(src: &[u8], bits: u32, res: &mut [W]) {
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut acc: u128 = 0;
    let mut filled = 0u32;
    let mut bytes = src.iter();
    for r in res.iter_mut() {
        while filled < bits {
            acc |= (*bytes.next().unwrap_or(&0) as u128) << filled;
            filled += 8;
        }
        *r = W::from_u64(acc as u64 & mask);
        acc >>= bits;
        filled -= bits;
    }
}

pub fn decode(payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    let corrupt = |reason| DecodeError::corrupt(Class::Delta, reason);
    let (&params, rest) = payload
        .split_first()
        .ok_or(corrupt("missing parameter byte"))?;
    let params = Params::from_byte(params).ok_or(corrupt("invalid parameter byte"))?;
    match params.width {
        8 => decode_as::<u64>(params, rest, out),
        4 => decode_as::<u32>(params, rest, out),
        2 => decode_as::<u16>(params, rest, out),
        _ => decode_as::<u8>(params, rest, out),
    }
}

fn decode_as<W: Word>(params: Params, rest: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    let corrupt = |reason| DecodeError::corrupt(Class::Delta, reason);
    let width = params.width;
    if rest.len() < width {
        return Err(corrupt("truncated base word"));
    }
    let (base, body) = rest.split_at(width);
    let mut base_bytes = [0u8; 8];
    base_bytes[..width].copy_from_slice(base);
    let base = W::from_u64(u64::from_le_bytes(base_bytes));
    let n = match params.transform {
        Transform::Identity => PAGE_SIZE / width,
        _ => PAGE_SIZE / width - 1,
    };
    let mut scratch = Page::zeroed();
    let res_bytes = &mut scratch.bytes_mut()[..n * width];
    match params.backend {
        Backend::Bitpack => {
            let (&bits, packed) = body.split_first().ok_or(corrupt("missing bit width"))?;
            if bits as u32 > W::BITS {
                return Err(corrupt("bit width wider than the word"));
            }
            let expected = (n * bits as usize).div_ceil(8);
            if packed.len() != expected {
                return Err(DecodeError::length(Class::Delta, expected, packed.len()));
            }
            unpack::<W>(packed, bits as u32, bytemuck::cast_slice_mut(res_bytes));
        }
        Backend::Lz4 | Backend::Zstd => {
            let mut shuffled = Page::zeroed();
            let target: &mut [u8] = if params.shuffle {
                &mut shuffled.bytes_mut()[..n * width]
            } else {
                res_bytes
            };
            if params.backend == Backend::Lz4 {
                lz4_exact(body, target).map_err(corrupt)?;
            } else {
                zstd_exact(body, target).map_err(corrupt)?;
            }
            if params.shuffle {
                unshuffle_bytes(&shuffled.bytes()[..n * width], width, res_bytes);
            }
        }
    }
    let res: &[W] = bytemuck::cast_slice(&scratch.bytes()[..n * width]);
    inverse(
        base,
        params.transform,
        res,
        bytemuck::cast_slice_mut(out.bytes_mut()),
    );
    Ok(())
}

/// The output of the delta transform for entropy analysis: for a page the dense codec
/// bit-packs, the packed form itself (narrow residuals are the transform's point, and
/// nothing further codes them); otherwise the residual bytes under the chosen parameters
/// as the entropy coder sees them (shuffled for multi-byte words).
pub fn transformed_bytes(page: &Page) -> Vec<u8> {
    let config = CodecConfig::DENSE;
    let (width, transform, estimate) = choose(page, config.delta_backend);
    let mut stored = Vec::new();
    encode_with(page, width, transform, estimate, &config, &mut stored);
    let packed = stored
        .get(1)
        .and_then(|&b| Params::from_byte(b))
        .is_some_and(|p| p.backend == Backend::Bitpack);
    if packed {
        return stored.split_off(1);
    }
    fn go<W: Word>(page: &Page, t: Transform) -> Vec<u8> {
        let mut scratch = Page::zeroed();
        let res: &mut [W] = bytemuck::cast_slice_mut(scratch.bytes_mut());
        let (base, n) = forward(bytemuck::cast_slice::<u8, W>(page.bytes()), t, res);
        let width = W::BITS as usize / 8;
        let mut out = base.to_u64().to_le_bytes()[..width].to_vec();
        let mut shuffled = Page::zeroed();
        out.extend_from_slice(shuffle_bytes(
            bytemuck::cast_slice(&res[..n]),
            width,
            shuffled.bytes_mut(),
        ));
        out
    }
    match width {
        8 => go::<u64>(page, transform),
        4 => go::<u32>(page, transform),
        2 => go::<u16>(page, transform),
        _ => go::<u8>(page, transform),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_byte_round_trips_and_rejects_reserved() {
        for width in WIDTHS {
            for transform in Transform::ALL {
                for backend in [Backend::Bitpack, Backend::Lz4, Backend::Zstd] {
                    for shuffle in [false, true] {
                        let p = Params {
                            width,
                            transform,
                            backend,
                            shuffle,
                        };
                        let valid = !(shuffle && (width == 1 || backend == Backend::Bitpack));
                        assert_eq!(Params::from_byte(p.to_byte()), valid.then_some(p));
                    }
                }
            }
        }
        assert_eq!(Params::from_byte(0x80), None);
        assert_eq!(Params::from_byte(0x30), None);
    }

    #[test]
    fn zigzag_round_trips() {
        for v in [0u64, 1, 2, u64::MAX, u64::MAX / 2, 1 << 63] {
            assert_eq!(v.zigzag().unzigzag(), v);
        }
        assert_eq!(1u64.wrapping_neg().zigzag(), 1);
        assert_eq!(1u64.zigzag(), 2);
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
