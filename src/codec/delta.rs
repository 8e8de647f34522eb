//! Delta pages: numeric words as a base plus transformed residuals.
//!
//! Per page the encoder chooses a word width (8/4/2/1 bytes) and a transform:
//! - `Identity`: residual = word − min (frame of reference; small integers),
//! - `Sub`: residual = zigzag(word − previous word) (counters, timestamps, smooth signals),
//! - `Xor`: residual = word ^ previous word (floats whose sign/exponent/high mantissa repeat),
//! - `Decimal` (8-byte words only): each f64 word that is a short decimal becomes its integer
//!   digits `k` at one exponent per page (see [`super::decimal`]), then `Sub` on the `k`s;
//!   the words that are not (at most [`MAX_EXCEPTIONS`]) are stored verbatim,
//! - `Sub` at a lag: residual = zigzag(word − the word one record earlier), for arrays of
//!   fixed-size records ([`LAG_BYTES`]: 16 or 32 bytes; a database page's rows, an
//!   array of structs), where neighbouring words are different fields but the same field
//!   of the next record barely changes,
//!
//! then stores the residuals either bit-packed at the narrowest width that holds them all
//! (Base-Delta-Immediate style, with bit rather than byte granularity) or byte-shuffled
//! (all byte 0s, then all byte 1s, …) through an entropy backend (LZ4 or zstd).
//!
//! Stored form: `[tag][params][lag][decimal prelude][base: width bytes][body]` where
//! `params` packs bits 0-1 log2(width), bits 2-3 transform, bits 4-5 backend, bit 6 shuffle,
//! bit 7 lagged; `lag` (in words, 2..=[`MAX_LAG`], `Sub` and `Xor` only) is there only when
//! bit 7 is set; body is `[bits][packed residuals]` for bit-packing or the backend's block
//! otherwise. Only `Decimal` has a prelude: `[exponent][n][n positions: u16][n words: u64]`,
//! positions strictly increasing; an exception's slot holds the previous `k` (residual 0).
//! Invariants: `Identity` has one residual per word, `Sub`/`Xor` one per word after the
//! first (the base), each against the word `lag` before it, or the previous word while
//! there is none that far back (a lag of 1 is the plain neighbour form); every count and
//! length is implied by the width, so any disagreement in the payload is corruption,
//! reported, never guessed around.

use super::decimal;
use super::dense::{zstd_append, zstd_exact};
use super::general::{lz4_append, lz4_exact};
use super::{Class, CodecConfig, DecodeError};
use crate::page::{PAGE_SIZE, PAGE_WORDS, Page};
use crate::sync::{RefCell, thread_local};
use bytemuck::Pod;
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
    const ON_WORDS: [Transform; 3] = [Transform::Identity, Transform::Sub, Transform::Xor];
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
    fn write(self, out: &mut Vec<u8>) {
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
    fn parse(payload: &[u8]) -> Option<(Params, &[u8])> {
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

/// An unsigned word of one width, with the arithmetic the transforms need.
trait Word: Pod + Ord {
    const BITS: u32;
    fn wsub(self, o: Self) -> Self;
    fn wadd(self, o: Self) -> Self;
    fn xor(self, o: Self) -> Self;
    fn or(self, o: Self) -> Self;
    fn leading_zeros(self) -> u32;
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
            fn or(self, o: Self) -> Self {
                self | o
            }
            #[inline(always)]
            fn leading_zeros(self) -> u32 {
                <$u>::leading_zeros(self)
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
        Transform::Sub | Transform::Decimal => sub(prev, cur),
        Transform::Xor => cur.xor(prev),
    }
}

/// Writes the residuals of `words` into `res` and returns (base, residual count).
fn forward<W: Word>(words: &[W], t: Transform, lag: usize, res: &mut [W]) -> (W, usize) {
    match t {
        Transform::Identity => {
            // A fold with a plain comparison vectorises (pminu*); `Iterator::min` did not.
            let base = words[1..]
                .iter()
                .fold(words[0], |m, &w| if w < m { w } else { m });
            for (r, &w) in res.iter_mut().zip(words) {
                *r = w.wsub(base);
            }
            (base, words.len())
        }
        Transform::Sub | Transform::Xor | Transform::Decimal => {
            let lag = lag.clamp(1, words.len());
            // The first record against neighbours, then every word against its lag.
            for (r, pair) in res.iter_mut().zip(words[..lag].windows(2)) {
                *r = residual(t, pair[0], pair[1]);
            }
            for (r, (&prev, &cur)) in res[lag - 1..]
                .iter_mut()
                .zip(words.iter().zip(&words[lag..]))
            {
                *r = residual(t, prev, cur);
            }
            (words[0], words.len() - 1)
        }
    }
}

/// Rebuilds `words` from base and residuals; total for any residuals (no invariant to break).
fn inverse<W: Word>(base: W, t: Transform, lag: usize, res: &[W], words: &mut [W]) {
    let undo = |prev: W, r: W| {
        if t != Transform::Xor {
            prev.wadd(r.unzigzag())
        } else {
            prev.xor(r)
        }
    };
    match t {
        Transform::Identity => {
            for (w, &r) in words.iter_mut().zip(res) {
                *w = r.wadd(base);
            }
        }
        Transform::Sub | Transform::Xor | Transform::Decimal if lag <= 1 => {
            // The neighbour form keeps the running word in a register.
            let mut prev = base;
            words[0] = base;
            for (w, &r) in words[1..].iter_mut().zip(res) {
                prev = undo(prev, r);
                *w = prev;
            }
        }
        Transform::Sub | Transform::Xor | Transform::Decimal => {
            let lag = lag.min(words.len());
            words[0] = base;
            for i in 1..lag {
                words[i] = undo(words[i - 1], res[i - 1]);
            }
            // A record at a time: its words depend only on the record before, so each
            // step is `lag` independent lanes.
            let mut at = lag;
            while at < words.len() {
                let end = (at + lag).min(words.len());
                let (done, rest) = words.split_at_mut(at);
                let prev = &done[at - lag..];
                for ((w, &p), &r) in rest[..end - at].iter_mut().zip(prev).zip(&res[at - 1..]) {
                    *w = undo(p, r);
                }
                at = end;
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
/// Where an estimate samples: (runs, bytes per run, offset into each stretch).
type Shape = (usize, usize, usize);

/// An estimate of the bits a page's residuals cost, fed one sampled residual at a time.
trait Estimator {
    fn new(width: usize) -> Self;
    fn add(&mut self, r: u64);
    /// Samples seen.
    fn count(&self) -> usize;
    /// Estimated bits for the page's residuals.
    fn page_bits(&self) -> u64;
    /// The sampling it is made for, for words of `width` bytes.
    fn shape(width: usize) -> Shape;
}

/// For zstd: order-0 entropy of each byte plane of the sampled residuals (what
/// byte-shuffling plus an entropy coder sees), bias-corrected (Miller-Madow), scaled to
/// the page.
struct Entropy {
    clogc: &'static [f32],
    counts: [[u16; 256]; 8],
    sum: [f32; 8],
    distinct: [u32; 8],
    n: usize,
    width: usize,
}

impl Estimator for Entropy {
    fn shape(width: usize) -> Shape {
        (SAMPLE_RUNS, SAMPLE_RUN_WORDS * width, SAMPLE_OFFSET)
    }

    fn new(width: usize) -> Self {
        Entropy {
            clogc: clogc_table(),
            counts: [[0; 256]; 8],
            sum: [0.0; 8],
            distinct: [0; 8],
            n: 0,
            width,
        }
    }

    #[inline(always)]
    fn add(&mut self, r: u64) {
        for (j, plane) in self.counts.iter_mut().enumerate().take(self.width) {
            let c = &mut plane[(r >> (8 * j)) as u8 as usize];
            self.sum[j] += self.clogc[*c as usize + 1] - self.clogc[*c as usize];
            self.distinct[j] += (*c == 0) as u32;
            *c += 1;
        }
        self.n += 1;
    }

    fn count(&self) -> usize {
        self.n
    }

    fn page_bits(&self) -> u64 {
        let nf = self.n.max(1) as f32;
        let bits: f32 = (0..self.width)
            .map(|j| {
                nf * nf.log2() - self.sum[j]
                    + self.distinct[j].saturating_sub(1) as f32 / (2.0 * std::f32::consts::LN_2)
            })
            .sum();
        (bits * (PAGE_SIZE / self.width) as f32 / nf) as u64
    }
}

/// For LZ4: LZ4 gains on byte-shuffled residuals mostly from their all-zero high bytes,
/// so the count of significant bits (plus one per residual) models it well, and it costs a
/// few instructions a residual instead of a histogram update per byte.
struct SignificantBits {
    bits: u64,
    n: usize,
    width: usize,
}

impl Estimator for SignificantBits {
    fn shape(_width: usize) -> Shape {
        (BITS_RUNS, BITS_RUN_BYTES, BITS_OFFSET)
    }

    fn new(width: usize) -> Self {
        SignificantBits {
            bits: 0,
            n: 0,
            width,
        }
    }

    #[inline(always)]
    fn add(&mut self, r: u64) {
        self.bits += (64 - r.leading_zeros()) as u64 + 1;
        self.n += 1;
    }

    fn count(&self) -> usize {
        self.n
    }

    fn page_bits(&self) -> u64 {
        self.bits * (PAGE_SIZE / self.width) as u64 / self.n.max(1) as u64
    }
}

/// The sampled runs of a page as words of type W: `runs` runs of `run_bytes` bytes,
/// spread over the page from `offset` bytes into each stretch, each with the `before`
/// words ahead of it (every shape's offset leaves room for the longest lag).
fn sampled_runs<W: Word>(
    page: &Page,
    (runs, run_bytes, offset): Shape,
    before: usize,
) -> impl Iterator<Item = &[W]> {
    let before = before * std::mem::size_of::<W>();
    debug_assert!(offset >= before);
    (0..runs).map(move |run| {
        let start = run * (PAGE_SIZE / runs) + offset;
        bytemuck::cast_slice(&page.bytes()[start - before..start + run_bytes])
    })
}

/// Estimated bits of a page's residuals under (W, t).
fn word_cost<W: Word, E: Estimator>(page: &Page, t: Transform) -> u64 {
    // One loop per transform: a `match` inside the residual loop was not hoisted.
    match t {
        Transform::Identity => pair_cost::<W, E>(page, 0, 0, |_, cur| cur),
        Transform::Xor => pair_cost::<W, E>(page, 1, 0, |prev, cur| cur.xor(prev)),
        Transform::Sub | Transform::Decimal => pair_cost::<W, E>(page, 1, 0, sub::<W>),
    }
}

/// `Sub`'s residual.
#[inline(always)]
fn sub<W: Word>(prev: W, cur: W) -> W {
    cur.wsub(prev).zigzag()
}

/// Estimated bits of a page's residuals under `Sub` at `lag` words: each sampled word
/// against the word `lag` before it, which may lie ahead of its run.
fn lag_cost<W: Word, E: Estimator>(page: &Page, lag: usize) -> u64 {
    pair_cost::<W, E>(page, lag, lag, sub::<W>)
}

/// Estimated bits of `residual(word lag back, word)` over the sampled runs, each widened
/// by `before` words ahead of it; pairs start `lag` words into the widened run (a lag of
/// 0: the words themselves).
#[inline(always)]
fn pair_cost<W: Word, E: Estimator>(
    page: &Page,
    lag: usize,
    before: usize,
    residual: impl Fn(W, W) -> W,
) -> u64 {
    let width = std::mem::size_of::<W>();
    let mut estimate = E::new(width);
    for words in sampled_runs::<W>(page, E::shape(width), before) {
        for (&prev, &cur) in words.iter().zip(&words[lag..]) {
            estimate.add(residual(prev, cur).to_u64());
        }
    }
    estimate.page_bits()
}

/// The sampled `Decimal` form of a page: its exponent (the most fraction digits a sampled
/// value needs) and the estimated bits of its residuals and exceptions; `None` when more
/// than half the sampled words are exceptions.
fn decimal_cost<E: Estimator>(page: &Page) -> Option<(u8, u64, u64)> {
    let shape = E::shape(8);
    let mut e = 0u8;
    let (mut n, mut exceptions) = (0, 0);
    for words in sampled_runs::<u64>(page, shape, 0) {
        for &w in words {
            n += 1;
            // Most values need no more digits than the ones before: try that first.
            if decimal::integer(w, e).is_none() {
                match decimal::digits(w) {
                    Some(d) => e = e.max(d),
                    None => exceptions += 1,
                }
            }
            if exceptions * 2 > n.max(8) {
                return None;
            }
        }
    }
    let mut estimate = E::new(8);
    for words in sampled_runs::<u64>(page, shape, 0) {
        let mut prev = None;
        for &w in words {
            let k = decimal::integer(w, e).or(prev);
            if let (Some(p), Some(k)) = (prev, k) {
                estimate.add(residual(Transform::Decimal, p as u64, k as u64));
            }
            prev = k;
        }
    }
    let prelude = (exceptions * PAGE_WORDS / n) as u64 * 80;
    Some((e, estimate.page_bits(), prelude)).filter(|_| estimate.count() > 0)
}

/// `c * log2(c)` for every count a sampled plane can reach ([`Entropy`] fetches it once
/// per estimate: it is read twice per sampled residual byte).
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

/// Delta parameters for a page, with the estimated size of its residuals in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Word width in bytes.
    pub width: usize,
    /// How words become residuals.
    pub transform: Transform,
    /// Words back each residual is taken against (1: neighbours).
    pub lag: usize,
    /// The decimal exponent (`Decimal` only).
    pub exponent: u8,
    /// Estimated bytes of the residuals under these parameters.
    pub estimate: usize,
}

/// Picks width and transform for the configured backend by a sampled estimate. Also
/// returns the best choice among the transforms on plain words, the fallback when a
/// `Decimal` page turns out to have too many exceptions.
pub fn choose(page: &Page, backend: Backend) -> (Choice, Choice) {
    if backend == Backend::Zstd {
        choose_by::<Entropy>(page)
    } else {
        choose_by::<SignificantBits>(page)
    }
}

fn choose_by<E: Estimator>(page: &Page) -> (Choice, Choice) {
    let mut best = (8, Transform::Identity, 1, u64::MAX);
    for t in Transform::ON_WORDS {
        let costs = [
            word_cost::<u64, E>(page, t),
            word_cost::<u32, E>(page, t),
            word_cost::<u16, E>(page, t),
            word_cost::<u8, E>(page, t),
        ];
        for (width, cost) in WIDTHS.into_iter().zip(costs) {
            if cost < best.3 {
                best = (width, t, 1, cost);
            }
        }
    }
    // A lag must win clearly: more candidates on a small sample would otherwise often
    // win by sampling noise alone (python-numpy's floats lost 3% that way).
    let neighbours = best.3;
    for record in LAG_BYTES {
        let costs = [
            (8, lag_cost::<u64, E>(page, record / 8)),
            (4, lag_cost::<u32, E>(page, record / 4)),
        ];
        for (width, cost) in costs {
            if cost < best.3 && cost < neighbours - neighbours / 4 {
                best = (width, Transform::Sub, record / width, cost);
            }
        }
    }
    let on_words = Choice {
        width: best.0,
        transform: best.1,
        lag: best.2,
        exponent: 0,
        estimate: best.3.div_ceil(8) as usize,
    };
    // Pages of integers or pointers cost a few exponent checks here: the sampling gives up
    // after its first exceptions.
    let decimal = decimal_cost::<E>(page).and_then(|(e, body, prelude)| {
        (body + prelude < best.3).then(|| Choice {
            width: 8,
            transform: Transform::Decimal,
            lag: 1,
            exponent: e,
            estimate: body.div_ceil(8) as usize,
        })
    });
    (decimal.unwrap_or(on_words), on_words)
}

/// Encodes a page as a delta form with the parameters [`choose`] picks.
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
        Backend::Zstd => zstd_append(bytes, config.zstd_level, out),
        _ => lz4_append(bytes, out),
    }
    if out.len() - head > packed_len {
        bitpack(out);
    }
}

/// Byte-transposes `src` (words of `width` bytes) into `dst`: every word's byte 0, then
/// every byte 1, and so on; returns the filled part. Each width has its own loop, written
/// so that the compiler vectorises it (a plain loop of byte moves became 16 byte inserts
/// per vector register).
fn shuffle_bytes<'a>(src: &[u8], width: usize, dst: &'a mut [u8]) -> &'a [u8] {
    let n = src.len() / width;
    let dst = &mut dst[..n * width];
    match width {
        2 => shuffle2(src, dst),
        4 => shuffle_square::<[u32; 4]>(src, dst),
        _ => shuffle_square::<[u64; 8]>(src, dst),
    }
    dst
}

/// [`shuffle_bytes`] for 2-byte words: each 8 bytes (4 words) as one `u64`, its even
/// and odd bytes gathered by shifts and masks (the compiler keeps this in vector
/// registers; a byte-permutation written as array indexing became scalar byte moves).
fn shuffle2(src: &[u8], dst: &mut [u8]) {
    let n = src.len() / 2;
    let (p0, p1) = dst.split_at_mut(n);
    let blocks = src
        .chunks_exact(8)
        .zip(p0.chunks_exact_mut(4).zip(p1.chunks_exact_mut(4)));
    for (chunk, (a, b)) in blocks {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        a.copy_from_slice(&even_bytes(x).to_le_bytes());
        b.copy_from_slice(&even_bytes(x >> 8).to_le_bytes());
    }
    for i in n / 4 * 4..n {
        (p0[i], p1[i]) = (src[2 * i], src[2 * i + 1]);
    }
}

/// The inverse of [`shuffle2`].
fn unshuffle2(src: &[u8], dst: &mut [u8]) {
    let n = src.len() / 2;
    let (p0, p1) = src.split_at(n);
    let blocks = dst
        .chunks_exact_mut(8)
        .zip(p0.chunks_exact(4).zip(p1.chunks_exact(4)));
    for (chunk, (a, b)) in blocks {
        let a = u32::from_le_bytes(a.try_into().expect("4 bytes"));
        let b = u32::from_le_bytes(b.try_into().expect("4 bytes"));
        chunk.copy_from_slice(&(spread_bytes(a) | spread_bytes(b) << 8).to_le_bytes());
    }
    for i in n / 4 * 4..n {
        (dst[2 * i], dst[2 * i + 1]) = (p0[i], p1[i]);
    }
}

/// Bytes 0, 2, 4 and 6 of `x`.
#[inline(always)]
fn even_bytes(x: u64) -> u32 {
    let x = x & 0x00ff_00ff_00ff_00ff;
    let x = (x | x >> 8) & 0x0000_ffff_0000_ffff;
    (x | x >> 16) as u32
}

/// The inverse of [`even_bytes`]: the bytes of `x` at bytes 0, 2, 4 and 6.
#[inline(always)]
fn spread_bytes(x: u32) -> u64 {
    let x = x as u64;
    let x = (x | x << 16) & 0x0000_ffff_0000_ffff;
    (x | x << 8) & 0x00ff_00ff_00ff_00ff
}

/// An N x N byte matrix held as N little-endian rows: N words of N bytes.
trait ByteSquare: Pod {
    const N: usize;
    /// Transposes the matrix in place (its own inverse).
    fn transpose(&mut self);
}

/// Transposes the byte matrix whose rows are the (little-endian) words of `$x` by
/// swapping 1-, 2-, 4-… byte blocks across the diagonal, `$masks[k]` selecting the
/// blocks of 2^k bytes (a macro: one body for rows of any word type).
macro_rules! transpose_rows {
    ($x:expr, $masks:expr) => {
        for (k, mask) in $masks.into_iter().enumerate() {
            let step = 1 << k;
            let shift = 8 * step;
            for i in (0..$x.len()).filter(|i| i & step == 0) {
                let t = (($x[i] >> shift) ^ $x[i + step]) & mask;
                $x[i + step] ^= t;
                $x[i] ^= t << shift;
            }
        }
    };
}

impl ByteSquare for [u32; 4] {
    const N: usize = 4;
    #[inline(always)]
    fn transpose(&mut self) {
        transpose_rows!(self, [0x00ff_00ffu32, 0x0000_ffff]);
    }
}

impl ByteSquare for [u64; 8] {
    const N: usize = 8;
    #[inline(always)]
    fn transpose(&mut self) {
        let masks = [
            0x00ff_00ff_00ff_00ffu64,
            0x0000_ffff_0000_ffff,
            0x0000_0000_ffff_ffff,
        ];
        transpose_rows!(self, masks);
    }
}

/// [`shuffle_bytes`] for words of N = 4 or 8 bytes: N words at a time as an N x N byte
/// matrix, transposed in registers (for 8-byte words: 8 loads, 24 mask-and-shift steps
/// and 8 stores instead of 64 scattered byte stores). N is a constant, so every copy
/// compiles to plain stores, not `memmove` calls.
fn shuffle_square<M: ByteSquare>(src: &[u8], dst: &mut [u8]) {
    let n = src.len() / M::N;
    for (block, chunk) in src.chunks_exact(M::N * M::N).enumerate() {
        let mut rows: M = bytemuck::pod_read_unaligned(chunk);
        rows.transpose();
        for (j, plane) in bytemuck::bytes_of(&rows).chunks_exact(M::N).enumerate() {
            dst[j * n + M::N * block..][..M::N].copy_from_slice(plane);
        }
    }
    for i in n / M::N * M::N..n {
        for j in 0..M::N {
            dst[j * n + i] = src[i * M::N + j];
        }
    }
}

/// The inverse of [`shuffle_square`].
fn unshuffle_square<M: ByteSquare>(src: &[u8], dst: &mut [u8]) {
    let n = src.len() / M::N;
    for (block, chunk) in dst.chunks_exact_mut(M::N * M::N).enumerate() {
        let mut rows = M::zeroed();
        for (j, row) in bytemuck::bytes_of_mut(&mut rows)
            .chunks_exact_mut(M::N)
            .enumerate()
        {
            row.copy_from_slice(&src[j * n + M::N * block..][..M::N]);
        }
        rows.transpose();
        chunk.copy_from_slice(bytemuck::bytes_of(&rows));
    }
    for i in n / M::N * M::N..n {
        for j in 0..M::N {
            dst[i * M::N + j] = src[j * n + i];
        }
    }
}

/// The inverse of [`shuffle_bytes`].
fn unshuffle_bytes(src: &[u8], width: usize, dst: &mut [u8]) {
    match width {
        2 => unshuffle2(src, dst),
        4 => unshuffle_square::<[u32; 4]>(src, dst),
        _ => unshuffle_square::<[u64; 8]>(src, dst),
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

/// Unpacks `res.len()` values of `bits` bits; `src` must be exactly the packed length
/// (at most a page). Each value is read from a 16-byte window at its own bit offset, so
/// the iterations are independent instead of a byte-at-a-time refill chain.
fn unpack<W: Word>(src: &[u8], bits: u32, res: &mut [W]) {
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut padded = [0u8; PAGE_SIZE + 16];
    padded[..src.len()].copy_from_slice(src);
    let bits = bits as usize;
    for (i, r) in res.iter_mut().enumerate() {
        let at = i * bits;
        let window = u128::from_le_bytes(padded[at / 8..at / 8 + 16].try_into().expect("16"));
        *r = W::from_u64((window >> (at % 8)) as u64 & mask);
    }
}

/// Decodes a delta payload (parameter bytes, then the residuals) into `out`, refusing
/// one that is not well formed.
pub fn decode(payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    let corrupt = |reason| DecodeError::corrupt(Class::Delta, reason);
    if payload.is_empty() {
        return Err(corrupt("missing parameter byte"));
    }
    let (params, rest) = Params::parse(payload).ok_or(corrupt("invalid parameters"))?;
    let (prelude, rest) = split_prelude(params, rest)?;
    match params.width {
        8 => decode_as::<u64>(params, rest, out)?,
        4 => decode_as::<u32>(params, rest, out)?,
        2 => decode_as::<u16>(params, rest, out)?,
        _ => decode_as::<u8>(params, rest, out)?,
    }
    if let Some(prelude) = prelude {
        prelude.apply(out);
    }
    Ok(())
}

/// The backend a stored delta payload (after the tag) uses, if its parameter byte is valid.
pub fn backend_of(payload: &[u8]) -> Option<Backend> {
    Params::parse(payload).map(|(p, _)| p.backend)
}

/// A `Decimal` page's prelude, validated.
struct DecimalPrelude<'a> {
    exponent: u8,
    positions: &'a [u8],
    verbatim: &'a [u8],
}

impl DecimalPrelude<'_> {
    /// Turns the decoded `k`s in `out` into their words and puts the exceptions back.
    fn apply(&self, out: &mut Page) {
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
fn split_prelude(
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
fn residual_count(transform: Transform, width: usize) -> usize {
    match transform {
        Transform::Identity => PAGE_SIZE / width,
        _ => PAGE_SIZE / width - 1,
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
    let n = residual_count(params.transform, width);
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
        params.lag,
        res,
        bytemuck::cast_slice_mut(out.bytes_mut()),
    );
    Ok(())
}

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
    fn shuffle_matches_the_definition_and_inverts() {
        let src: Vec<u8> = (0..8 * 511).map(|i| (i * 7 + i / 13) as u8).collect();
        for width in [8, 4, 2] {
            let src = &src[..src.len() / width * width];
            let n = src.len() / width;
            let mut dst = vec![0; src.len()];
            shuffle_bytes(src, width, &mut dst);
            for i in 0..n {
                for j in 0..width {
                    assert_eq!(dst[j * n + i], src[i * width + j], "width {width}");
                }
            }
            let mut back = vec![0; src.len()];
            unshuffle_bytes(&dst, width, &mut back);
            assert_eq!(back, src);
        }
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
