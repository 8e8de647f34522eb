//! The parameter choice: width, transform and lag estimated from a sample of the page.
//!
//! Invariants: every width samples the same number of words (so their estimates share
//! their small-sample bias and compare fairly); a lag must beat the neighbour forms by a
//! quarter; the estimate reads a fixed, bounded sample, never the whole page.

use super::decimal;
use super::format::{Backend, LAG_BYTES, Transform, WIDTHS};
use super::word::{Word, residual, sub};
use crate::page::{PAGE_SIZE, PAGE_WORDS, Page};

/// Sample used by the parameter estimate: runs of consecutive words spread over the page,
/// so neighbouring words stay neighbours. Every width samples the same number of words, so
/// every byte plane's entropy estimate has the same small-sample bias and widths compare
/// fairly.
pub(super) const SAMPLE_RUNS: usize = 8;
pub(super) const SAMPLE_RUN_WORDS: usize = 16;
pub(super) const SAMPLE_OFFSET: usize = 256;
/// The LZ4 estimate's cheaper sample: 4 runs of 32 bytes.
pub(super) const BITS_RUNS: usize = 4;
pub(super) const BITS_RUN_BYTES: usize = 32;
pub(super) const BITS_OFFSET: usize = 512;
/// Where an estimate samples: (runs, bytes per run, offset into each stretch).
pub(super) type Shape = (usize, usize, usize);

/// An estimate of the bits a page's residuals cost, fed one sampled residual at a time.
pub(super) trait Estimator {
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
pub(super) struct Entropy {
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
pub(super) struct SignificantBits {
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
pub(super) fn sampled_runs<W: Word>(
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
pub(super) fn word_cost<W: Word, E: Estimator>(page: &Page, t: Transform) -> u64 {
    // One loop per transform: a `match` inside the residual loop was not hoisted.
    match t {
        Transform::Identity => pair_cost::<W, E>(page, 0, 0, |_, cur| cur),
        Transform::Xor => pair_cost::<W, E>(page, 1, 0, |prev, cur| cur.xor(prev)),
        Transform::Sub | Transform::Decimal => pair_cost::<W, E>(page, 1, 0, sub::<W>),
    }
}

/// Estimated bits of a page's residuals under `Sub` at `lag` words: each sampled word
/// against the word `lag` before it, which may lie ahead of its run.
pub(super) fn lag_cost<W: Word, E: Estimator>(page: &Page, lag: usize) -> u64 {
    pair_cost::<W, E>(page, lag, lag, sub::<W>)
}

/// Estimated bits of `residual(word lag back, word)` over the sampled runs, each widened
/// by `before` words ahead of it; pairs start `lag` words into the widened run (a lag of
/// 0: the words themselves).
#[inline(always)]
pub(super) fn pair_cost<W: Word, E: Estimator>(
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
pub(super) fn decimal_cost<E: Estimator>(page: &Page) -> Option<(u8, u64, u64)> {
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
pub(super) fn clogc_table() -> &'static [f32] {
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

pub(super) fn choose_by<E: Estimator>(page: &Page) -> (Choice, Choice) {
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
