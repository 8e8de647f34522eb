//! Mixed pages: the cold tier's form. A page is coded one binary decision at a time by an
//! arithmetic coder, each decision's probability predicted by mixing four context models
//! and a match model (lpaq/paq8 style): the densest form the store has, and the slowest,
//! for pages read rarely whose bytes cost memory every second.
//!
//! The model, rebuilt identically by the decoder from what it has decoded:
//! - per byte, at most three steps: "is it the predicted byte?" (the byte that last
//!   followed the longest of the preceding eight, four, two or one bytes seen before in
//!   the page; asked only where that byte is not zero), "is it zero?", then its eight
//!   bits, most significant first, in two nibbles. Most bytes of memory are zero or
//!   repeat what followed the same context, so most bytes cost one decision instead of
//!   eight, which is most of the coder's speed;
//! - four hashed contexts: the preceding byte, the preceding two at this position in
//!   the page's 8-byte words, and two that see the page as words (the bytes at this
//!   position in the last one and two words, and that of the last word with the
//!   previous byte); each context's statistics for a
//!   nibble sit in one 64-byte bucket with a check byte, so a collision resets rather
//!   than shares;
//! - a match model (the byte that followed the last occurrence of the preceding six);
//! - two mixers (one-layer networks of 16-bit weights, SSE2 through `wide`), their weight
//!   sets chosen by the partial byte (or the predicted byte's source) and by (match
//!   length, position in the word, decision), averaged in the logistic domain. (An
//!   adaptive probability map after them saved 1.4% of the bytes for 8% of the time.)
//!
//! Every table starts fresh on every page except the mixers' weights, which start from a
//! [`Primer`]: the state the model reaches coding a sample of the
//! cluster's own pages, trained with its zstd dictionary and kept beside it
//! ([`super::dict::Dictionary::primer`]). So a page decodes alone, given its primer.
//!
//! Invariants:
//! - The payload is the id of the dictionary whose primer it was coded with (u32
//!   little-endian, 0 for none), then the coder's bytes; the decoder must consume exactly
//!   those bytes (plus the three zeros a final flush implies), or the form is refused.
//!   Any bytes are a well-formed code, though: an altered form that passes decodes to
//!   another page, which the store's CRC-32 catches (as for the other forms).
//! - Integer arithmetic only, no table built from floating point, no dependence on the
//!   platform's word size: a form decodes to the same page on every target and thread.
//! - Decoding never reads outside its input (past the end it reads zeros, and stops
//!   there: the form is refused), always stops within one page, and never panics.
//!
//! Hand-written, not a crate: no maintained Rust crate offers a context-mixing coder
//! (the lpaq and paq8 sources are C++ archivers), and this one is small enough to check
//! whole (round trips here, the codec suite's fuzzer).

use super::{Class, DecodeError};
use crate::page::{PAGE_SIZE, Page};
use crate::sync::RefCell;
use wide::i16x8;

/// Hashed contexts.
const MODELS: usize = 4;
/// Mixer inputs: the models, the match model, a bias; padded to a vector width.
const INPUTS: usize = 8;
/// Mixer errors below which the weights stay as they are.
const SKIP: i32 = 48;
/// Buckets per model, as a power of two: 2^11 of 64 bytes, 128 KiB a model.
const BUCKET_BITS: u32 = 11;
const BUCKETS: usize = 1 << BUCKET_BITS;
/// Where the predicted byte comes from: the last successor of the preceding eight
/// bytes, of four, of two, of one.
const SOURCES: usize = 4;
/// Weight sets of the first mixer: the partial byte (1..=255), 0 for the zero flag,
/// 256 + source for the predicted byte's.
const SETS_1: usize = 256 + SOURCES;
/// A byte's kinds of decision: bits 0 to 7, 8 the zero flag, 9 + source the predicted
/// byte's.
const DECISIONS: usize = 9 + SOURCES;
/// Weight sets of the second mixer: match-length bucket x word position x decision.
const SETS_2: usize = 4 * 8 * DECISIONS;
/// Entries of the order-8 and order-4 successor tables (hashed, with a check).
const SUCCESSORS: usize = 1 << 12;
/// Mixer learning rate.
const RATE: i32 = 24;
/// Counts at which a context's adaptation rate stops slowing.
const COUNT_LIMIT: u32 = 127;
/// Match-model statistics: length (to 63) x expected bit x bit index (to 15).
const MATCH_SLOTS: usize = 64 * 2 * 16;
/// Bytes hashed to find a match.
const MATCH_ORDER: u64 = 0xffff_ffff_ffff;
/// Match-table entries: sixteen per position of a page, so that few of the page's
/// positions are lost to collisions (the README's "Context mixing" has what a larger
/// table saves).
const MATCH_TABLE: usize = 1 << 16;
/// Primer bytes: both mixers' weights.
pub const PRIMER_BYTES: usize = (SETS_1 + SETS_2) * INPUTS * 2;
/// Pages a primer is trained on, at most.
pub const PRIMER_PAGES: usize = 64;
/// Bytes the coder's fixed preamble takes: the primer id.
const ID_BYTES: usize = 4;
/// Decisions a form the store keeps may cost its decoder, at most: four a byte (a page of
/// memory takes one to three a byte where this form wins, ten for a byte of noise). The
/// decoder spends about the same time on every decision, so this bounds a cold read.
pub const DECISION_BUDGET: u32 = 4 * PAGE_SIZE as u32;

/// The logistic function on the stretch domain (8 fractional bits, ±2047) to a 12-bit
/// probability, interpolated from 33 points (lpaq1's table).
fn squash(d: i32) -> i32 {
    const T: [i32; 33] = [
        1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047, 2549, 2994,
        3348, 3607, 3785, 3901, 3975, 4022, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094,
    ];
    if d > 2047 {
        return 4095;
    }
    if d < -2047 {
        return 1;
    }
    let w = d & 127;
    let i = ((d >> 7) + 16) as usize;
    (T[i] * (128 - w) + T[i + 1] * w + 64) >> 7
}

/// Fixed tables: squash, its inverse, the adaptation rates.
struct Tables {
    squash: [u16; 4096],
    stretch: [i16; 4096],
    rate: [u32; COUNT_LIMIT as usize + 1],
}

impl Tables {
    fn new() -> Tables {
        let mut squash_t = [0u16; 4096];
        for (i, v) in squash_t.iter_mut().enumerate() {
            *v = squash(i as i32 - 2048) as u16;
        }
        let mut stretch = [0i16; 4096];
        let mut next = 0usize;
        for x in -2047..=2047 {
            let v = squash(x) as usize;
            for s in &mut stretch[next..=v] {
                *s = x as i16;
            }
            next = v + 1;
        }
        for s in &mut stretch[next..] {
            *s = 2047;
        }
        let mut rate = [0u32; COUNT_LIMIT as usize + 1];
        for (n, r) in rate.iter_mut().enumerate() {
            *r = 2 * 32768 / (2 * n as u32 + 3);
        }
        Tables {
            squash: squash_t,
            stretch,
            rate,
        }
    }
}

/// The state a page's model starts from: the mixers' weights, learned on sampled pages
/// ([`Primer::train`]). Read-only once made.
#[derive(Clone, PartialEq, Eq)]
pub struct Primer {
    weights_1: Box<[[i16; INPUTS]; SETS_1]>,
    weights_2: Box<[[i16; INPUTS]; SETS_2]>,
}

impl std::fmt::Debug for Primer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Primer").finish_non_exhaustive()
    }
}

impl Primer {
    /// The untrained state: equal weights.
    pub fn untrained() -> Primer {
        let mut w = [0i16; INPUTS];
        // Models and match model equally, summing to about 3 (the sharpening the models'
        // early, uncertain probabilities need).
        for x in &mut w[..=MODELS] {
            *x = ((1 << 14) / (MODELS as i16 + 1)) * 3;
        }
        Primer {
            weights_1: Box::new([w; SETS_1]),
            weights_2: Box::new([w; SETS_2]),
        }
    }

    /// Learns a primer by coding `pages` (at most [`PRIMER_PAGES`] are used, spread
    /// over them) one after another, each with fresh context tables, carrying the
    /// mixers from page to page.
    pub fn train(pages: &[&[u8]]) -> Primer {
        let step = pages.len().div_ceil(PRIMER_PAGES).max(1);
        with_coder(|coder| {
            coder.start(&Primer::untrained());
            for page in pages.iter().step_by(step) {
                coder.reset_page();
                let mut sink = Encoder::new(Vec::new());
                coder.encode(page, u32::MAX, &mut sink);
            }
            coder.primer()
        })
    }

    /// Memory it takes.
    pub fn memory_bytes(&self) -> usize {
        PRIMER_BYTES
    }

    /// Its bytes, little-endian, as saved beside its dictionary.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PRIMER_BYTES);
        for w in self.weights_1.iter().chain(self.weights_2.iter()).flatten() {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// A primer from [`Primer::to_bytes`]' form; `None` if the length is wrong. Any
    /// values are safe to decode with (weights saturate).
    pub fn from_bytes(bytes: &[u8]) -> Option<Primer> {
        if bytes.len() != PRIMER_BYTES {
            return None;
        }
        let mut p = Primer::untrained();
        let mut halves = bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]));
        for w in p
            .weights_1
            .iter_mut()
            .chain(p.weights_2.iter_mut())
            .flatten()
        {
            *w = halves.next()? as i16;
        }
        Some(p)
    }
}

/// 16 probability slots for one context's nibble: slot 0 holds the check byte (low 8
/// bits), the predicted byte's flag's probability (the next 12) and the zero flag's (high
/// 12; both used in the first nibble's bucket only), slots 1..16 the nibble's bit tree
/// (16-bit probability, 16-bit count).
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
struct Bucket([u32; 16]);

const HALF: u32 = 1 << 31;
/// Where slot 0 keeps the zero flag's and the predicted byte's flag's probabilities.
const ZERO_SHIFT: u32 = 20;
const PREDICTED_SHIFT: u32 = 8;

/// One decision of a byte: where its models keep its probability (slot, and the bit
/// field within it), its index among the byte's decisions (0-7 the bits, 8 the zero flag,
/// 9 + source the predicted byte's), its first mixer's weight set, and what the match model
/// predicts for it (`None`: the match says nothing about it).
#[derive(Clone, Copy)]
struct Question {
    slot: usize,
    shift: u32,
    bit: usize,
    set_1: usize,
    agrees: Option<u32>,
}

/// Where coded decisions go (the encoder) or come from (the decoder).
trait Endpoint {
    /// Codes a decision whose probability of being 1 is `p` (12 bits): the encoder codes
    /// `truth()`, the decoder reads it from the form.
    fn decide(&mut self, p: u32, truth: impl FnOnce() -> u32) -> u32;
}

/// A coder's working state, reused page after page by one thread.
struct Coder {
    tables: Tables,
    buckets: Box<[[Bucket; BUCKETS]; MODELS]>,
    weights_1: Box<[[i16; INPUTS]; SETS_1]>,
    weights_2: Box<[[i16; INPUTS]; SETS_2]>,
    history: [u8; PAGE_SIZE],
    len: usize,
    /// The last eight bytes, most recent lowest.
    last: u64,
    /// The eight before them.
    older: u64,
    /// Per two-byte context, the byte that last followed it, with a leading 1.
    order2: Box<[u16; 1 << 16]>,
    /// Likewise per byte, and per hashed four and eight bytes (a 16-bit check above
    /// the byte).
    order1: [u16; 256],
    order4: Box<[u32; SUCCESSORS]>,
    order8: Box<[u32; SUCCESSORS]>,
    match_table: Box<[u16; MATCH_TABLE]>,
    match_at: usize,
    match_len: u32,
    match_stats: Box<[u32; MATCH_SLOTS]>,
    /// The byte the match predicted for the last byte, with a leading 1 (0: none).
    expected: u32,
}

fn hash(x: u64, k: u64) -> u32 {
    (x.wrapping_add(k << 58).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// Moves a slot's probability toward bit `y` at a rate falling with its count.
#[inline(always)]
fn adapt(slot: &mut u32, y: u32, rate: &[u32; COUNT_LIMIT as usize + 1]) {
    let s = *slot;
    let n = s & 0xffff;
    let p = (s >> 16) as i32;
    let target = (y << 16) as i32 - y as i32;
    // At most 65535 * 21845: the product fits an i32.
    // Counts never pass the limit, so the mask only spares a bounds check.
    let step = ((target - p) * rate[(n & COUNT_LIMIT) as usize] as i32) >> 15;
    *slot = ((p + step) as u32) << 16 | (n + u32::from(n < COUNT_LIMIT));
}

/// The mixer's sum of products (wrapping, as it can only in theory: 16 products of two
/// `i16`): `pmaddwd` on x86-64, through `wide`, which computes the same integers
/// everywhere (a portable fallback where the target has no such instruction).
#[inline(always)]
fn dot(w: &[i16; INPUTS], x: &[i16; INPUTS]) -> i32 {
    i16x8::from(*w).dot(i16x8::from(*x)).reduce_add()
}

/// Moves each weight by `x * err >> 16`, saturating (`pmulhw`, `paddsw`).
#[inline(always)]
fn train(w: &mut [i16; INPUTS], x: &[i16; INPUTS], err: i16) {
    let step = i16x8::from(*x).mul_keep_high(i16x8::splat(err));
    *w = i16x8::from(*w).saturating_add(step).to_array();
}

/// Finds (or claims) each model's bucket for the nibble that follows `high`.
#[inline(always)]
fn select_buckets(
    buckets: &mut [[Bucket; BUCKETS]; MODELS],
    hashes: &[u32; MODELS],
    high: u32,
) -> [usize; MODELS] {
    let mut at = [0; MODELS];
    for ((model, &hash), at) in buckets.iter_mut().zip(hashes).zip(&mut at) {
        let h = (hash ^ high.wrapping_mul(0x2545_F491)).wrapping_mul(0x9E37_79B1);
        *at = (h >> (32 - BUCKET_BITS)) as usize;
        let check = (h & 0xff) | 1;
        let b = &mut model[*at];
        if b.0[0] & 0xff != check {
            b.0 = [HALF; 16];
            b.0[0] = check | 2048 << ZERO_SHIFT | 2048 << PREDICTED_SHIFT;
        }
    }
    at
}

/// A byte's model, borrowed from its [`Coder`] while the byte is coded: what it needs
/// to predict and learn each of the byte's decisions, held where the compiler can keep
/// it in registers.
struct ByteModel<'a> {
    t: &'a Tables,
    buckets: &'a mut [[Bucket; BUCKETS]; MODELS],
    weights_1: &'a mut [[i16; INPUTS]; SETS_1],
    weights_2: &'a mut [[i16; INPUTS]; SETS_2],
    match_stats: &'a mut [u32; MATCH_SLOTS],
    /// Each model's bucket for the current nibble.
    at: [usize; MODELS],
    /// The byte the match predicts, with a leading 1 (0: none), and its length.
    expected: u32,
    match_len: u32,
    /// The byte's position in its 8-byte word.
    pos: usize,
}

impl ByteModel<'_> {
    /// Predicts decision `q`, codes it at `end`, learns it; returns it.
    #[inline(always)]
    fn decide(&mut self, end: &mut impl Endpoint, q: Question, truth: impl FnOnce() -> u32) -> u32 {
        let t = self.t;
        let mut inputs = [0i16; INPUTS];
        for (input, (model, &at)) in inputs.iter_mut().zip(self.buckets.iter().zip(&self.at)) {
            *input = t.stretch[((model[at].0[q.slot] >> q.shift) & 0xfff) as usize];
        }
        let (expect, len) = match q.agrees {
            Some(expect) if self.expected != 0 => (expect, self.match_len.min(63)),
            _ => (0, 0),
        };
        let match_slot = (len as usize * 2 + expect as usize) << 4 | q.bit;
        if len > 0 {
            inputs[MODELS] = t.stretch[(self.match_stats[match_slot] >> 20) as usize];
        }
        inputs[MODELS + 1] = 256;
        let len_bucket = match len {
            0 => 0,
            1..=7 => 1,
            8..=15 => 2,
            _ => 3,
        };
        let set_2 = (len_bucket * 8 + self.pos) * DECISIONS + q.bit;
        let d1 = (dot(&self.weights_1[q.set_1], &inputs) >> 14).clamp(-2047, 2047);
        let d2 = (dot(&self.weights_2[set_2], &inputs) >> 14).clamp(-2047, 2047);
        let mixed = [
            i32::from(t.squash[(d1 + 2048) as usize]),
            i32::from(t.squash[(d2 + 2048) as usize]),
        ];
        let p = t.squash[(((d1 + d2) >> 1) + 2048) as usize];
        let y = end.decide(u32::from(p), truth);

        if q.slot == 0 {
            for (model, &at) in self.buckets.iter_mut().zip(&self.at) {
                let b = &mut model[at].0;
                let s = b[0];
                let p = ((s >> q.shift) & 0xfff) as i32;
                let p = p + ((((y << 12) as i32 - y as i32) - p) >> 3);
                b[0] = (p as u32) << q.shift | (s & !(0xfff << q.shift));
            }
        } else {
            for (model, &at) in self.buckets.iter_mut().zip(&self.at) {
                adapt(&mut model[at].0[q.slot], y, &t.rate);
            }
        }
        if inputs[MODELS] != 0 {
            adapt(&mut self.match_stats[match_slot], y, &t.rate);
        }
        let mut shifted = [0i16; INPUTS];
        for (s, &x) in shifted.iter_mut().zip(&inputs) {
            *s = x << 4;
        }
        for (m, weights) in [
            (mixed[0], &mut self.weights_1[q.set_1]),
            (mixed[1], &mut self.weights_2[set_2]),
        ] {
            let e = ((y as i32) << 12) - m;
            if e.abs() < SKIP {
                continue;
            }
            // |e| < 4096, so the error fits an i16.
            let err = ((e * RATE) >> 2) as i16;
            train(weights, &shifted, err);
        }
        y
    }
}

impl Coder {
    fn new() -> Coder {
        let primer = Primer::untrained();
        Coder {
            tables: Tables::new(),
            buckets: vec![[Bucket([0; 16]); BUCKETS]; MODELS]
                .into_boxed_slice()
                .try_into()
                .expect("MODELS tables"),
            weights_1: primer.weights_1,
            weights_2: primer.weights_2,
            history: [0; PAGE_SIZE],
            len: 0,
            last: 0,
            older: 0,
            order2: Box::new([0; 1 << 16]),
            order1: [0; 256],
            order4: Box::new([0; SUCCESSORS]),
            order8: Box::new([0; SUCCESSORS]),
            match_table: Box::new([0; MATCH_TABLE]),
            match_at: 0,
            match_len: 0,
            match_stats: Box::new([HALF; MATCH_SLOTS]),
            expected: 0,
        }
    }

    /// Starts a page from `primer`.
    fn start(&mut self, primer: &Primer) {
        self.weights_1.clone_from(&primer.weights_1);
        self.weights_2.clone_from(&primer.weights_2);
        self.reset_page();
    }

    /// Clears everything a page learns for itself.
    fn reset_page(&mut self) {
        for b in self.buckets.iter_mut().flatten() {
            b.0[0] = 0;
        }
        self.match_stats.fill(HALF);
        self.match_table.fill(0);
        self.order2.fill(0);
        self.order1.fill(0);
        self.order4.fill(0);
        self.order8.fill(0);
        self.match_len = 0;
        self.match_at = 0;
        self.expected = 0;
        self.len = 0;
        self.last = 0;
        self.older = 0;
    }

    fn primer(&self) -> Primer {
        Primer {
            weights_1: self.weights_1.clone(),
            weights_2: self.weights_2.clone(),
        }
    }

    /// Codes the next byte (`byte`, when encoding; the decoder's is ignored) at `end`;
    /// returns it.
    #[inline(always)]
    fn code_byte(&mut self, end: &mut impl Endpoint, byte: u8) -> u8 {
        let (c, n) = (self.last, self.len);
        // The bytes 8 and 16 back (0 before the page's start).
        let (b8, b16) = (c >> 56, self.older >> 56);
        let pos = n & 7;
        let hashes = [
            hash(c & 0xff, 1),
            hash(pos as u64 | b8 << 8 | b16 << 16, 4),
            hash(pos as u64 | b8 << 8 | (c & 0xff) << 16, 5),
            hash(pos as u64 | (c & 0xffff) << 8, 8),
        ];
        // The match continues if its prediction came true, else is looked up afresh.
        if self.match_len > 0 && self.expected == (c & 0xff) as u32 | 256 && self.match_at + 1 < n {
            self.match_len += 1;
            self.match_at += 1;
        } else {
            self.match_len = 0;
        }
        if n >= 6 {
            let h = ((c & MATCH_ORDER).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                >> (64 - MATCH_TABLE.trailing_zeros())) as usize;
            if self.match_len == 0 {
                let at = usize::from(self.match_table[h]);
                if at > 0 && at < n {
                    self.match_at = at;
                    self.match_len = 1;
                }
            }
            self.match_table[h] = n as u16;
        }
        let expected = if self.match_len > 0 {
            u32::from(self.history[self.match_at]) | 256
        } else {
            0
        };
        self.expected = expected;
        // The byte the longest context predicts, with a leading 1 (0: none): the one
        // that last followed the preceding four bytes, else two, else one.
        let h4 = hash(c & 0xffff_ffff, 3);
        let (at4, check4) = ((h4 as usize) & (SUCCESSORS - 1), h4 >> 16);
        let o4 = self.order4[at4];
        let h8 = hash(c, 9);
        let (at8, check8) = ((h8 as usize) & (SUCCESSORS - 1), h8 >> 16);
        let o8 = self.order8[at8];
        let candidates = [
            if o8 >> 16 == check8 { o8 & 0x1ff } else { 0 },
            if o4 >> 16 == check4 { o4 & 0x1ff } else { 0 },
            u32::from(self.order2[(c & 0xffff) as usize]),
            u32::from(self.order1[(c & 0xff) as usize]),
        ];
        let source = candidates
            .iter()
            .position(|&v| v != 0)
            .unwrap_or(SOURCES - 1);
        let predicted = candidates[source];
        let mut model = ByteModel {
            t: &self.tables,
            at: select_buckets(&mut self.buckets, &hashes, 0),
            buckets: &mut self.buckets,
            weights_1: &mut self.weights_1,
            weights_2: &mut self.weights_2,
            match_stats: &mut self.match_stats,
            expected,
            match_len: self.match_len,
            pos,
        };
        let byte = 'byte: {
            if predicted > 256 {
                let q = Question {
                    slot: 0,
                    shift: PREDICTED_SHIFT,
                    bit: 9 + source,
                    set_1: 256 + source,
                    agrees: Some(u32::from(expected == predicted)),
                };
                if model.decide(end, q, || u32::from(u32::from(byte) | 256 == predicted)) == 1 {
                    break 'byte predicted as u8;
                }
            }
            let q = Question {
                slot: 0,
                shift: ZERO_SHIFT,
                bit: 8,
                set_1: 0,
                agrees: Some(u32::from(expected == 256)),
            };
            if model.decide(end, q, || u32::from(byte == 0)) == 1 {
                break 'byte 0;
            }
            // The partial byte: 1, then the bits so far below a leading 1.
            let mut partial = 1u32;
            for bit in 0..8 {
                if bit == 4 {
                    model.at = select_buckets(model.buckets, &hashes, partial);
                }
                let q = Question {
                    // The partial nibble, likewise.
                    slot: (partial & ((1 << (bit % 4)) - 1) | 1 << (bit % 4)) as usize,
                    shift: 20,
                    bit,
                    set_1: partial as usize,
                    agrees: (expected >> (8 - bit) == partial).then(|| (expected >> (7 - bit)) & 1),
                };
                let y = model.decide(end, q, || u32::from(byte) >> (7 - bit) & 1);
                partial = partial << 1 | y;
            }
            partial as u8
        };
        self.order2[(c & 0xffff) as usize] = u16::from(byte) | 256;
        self.order1[(c & 0xff) as usize] = u16::from(byte) | 256;
        self.order4[at4] = check4 << 16 | u32::from(byte) | 256;
        self.order8[at8] = check8 << 16 | u32::from(byte) | 256;
        self.history[n] = byte;
        self.len = n + 1;
        self.older = self.older << 8 | c >> 56;
        self.last = c << 8 | u64::from(byte);
        byte
    }

    /// Codes `page` into `out`; false once it takes more than `budget` decisions.
    fn encode(&mut self, page: &[u8], budget: u32, out: &mut Encoder) -> bool {
        for &byte in page {
            self.code_byte(out, byte);
            if out.decisions > budget {
                return false;
            }
        }
        true
    }

    fn decode(&mut self, src: &[u8], out: &mut [u8; PAGE_SIZE]) -> bool {
        let mut input = Decoder::new(src);
        let end = src.len() + 3;
        for byte in out.iter_mut() {
            *byte = self.code_byte(&mut input, 0);
            // Past the end the form is refused anyway: corrupt input (which decodes to
            // noise, a byte of input a byte or so) stops early.
            if input.consumed() > end {
                return false;
            }
        }
        input.consumed() == end
    }
}

/// lpaq1's carry-less binary arithmetic coder, 32-bit, 12-bit probabilities.
struct Encoder {
    low: u32,
    high: u32,
    out: Vec<u8>,
    decisions: u32,
}

impl Encoder {
    fn new(out: Vec<u8>) -> Encoder {
        Encoder {
            low: 0,
            high: u32::MAX,
            out,
            decisions: 0,
        }
    }

    #[inline(always)]
    fn code(&mut self, p: u32, y: u32) {
        self.decisions += 1;
        let mid = self.low + ((self.high - self.low) >> 12) * p;
        if y == 1 {
            self.high = mid;
        } else {
            self.low = mid + 1;
        }
        while (self.low ^ self.high) & 0xff00_0000 == 0 {
            self.out.push((self.high >> 24) as u8);
            self.low <<= 8;
            self.high = self.high << 8 | 255;
        }
    }

    /// One byte settles the interval: the top byte of `low` plus one lies within it
    /// (the two top bytes differ), and the decoder reads zeros after it.
    fn finish(mut self) -> Vec<u8> {
        self.out.push((self.low >> 24) as u8 + 1);
        self.out
    }
}

struct Decoder<'a> {
    low: u32,
    high: u32,
    x: u32,
    src: &'a [u8],
    at: usize,
}

impl Decoder<'_> {
    fn new(src: &[u8]) -> Decoder<'_> {
        let mut d = Decoder {
            low: 0,
            high: u32::MAX,
            x: 0,
            src,
            at: 0,
        };
        for _ in 0..4 {
            d.x = d.x << 8 | d.next();
        }
        d
    }

    #[inline(always)]
    fn next(&mut self) -> u32 {
        let b = self.src.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        u32::from(b)
    }

    #[inline(always)]
    fn decode(&mut self, p: u32) -> u32 {
        let mid = self.low + ((self.high - self.low) >> 12) * p;
        let y = u32::from(self.x <= mid);
        if y == 1 {
            self.high = mid;
        } else {
            self.low = mid + 1;
        }
        while (self.low ^ self.high) & 0xff00_0000 == 0 {
            self.low <<= 8;
            self.high = self.high << 8 | 255;
            self.x = self.x << 8 | self.next();
        }
        y
    }

    fn consumed(&self) -> usize {
        self.at
    }
}

impl Endpoint for Encoder {
    #[inline(always)]
    fn decide(&mut self, p: u32, truth: impl FnOnce() -> u32) -> u32 {
        let y = truth();
        self.code(p, y);
        y
    }
}

impl Endpoint for Decoder<'_> {
    #[inline(always)]
    fn decide(&mut self, p: u32, _: impl FnOnce() -> u32) -> u32 {
        self.decode(p)
    }
}

thread_local! {
    /// A coder per thread: its tables (about 1.1 MiB) are reused, not reallocated.
    static CODER: RefCell<Option<Box<Coder>>> = const { RefCell::new(None) };
}

fn with_coder<R>(f: impl FnOnce(&mut Coder) -> R) -> R {
    CODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        f(slot.get_or_insert_with(|| Box::new(Coder::new())))
    })
}

/// Appends the form of `page` coded from `primer`, named `id` (0: the untrained primer),
/// to `out`; false (and `out` as it was) if its decoder would take more than `budget`
/// decisions ([`DECISION_BUDGET`] where the store keeps the form).
pub fn encode(page: &Page, primer: Option<(u32, &Primer)>, budget: u32, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    out.push(Class::Mixed.tag());
    let id = primer.map_or(0, |(id, _)| id);
    out.extend_from_slice(&id.to_le_bytes());
    let body = std::mem::take(out);
    let (coded, within) = with_coder(|coder| {
        match primer {
            Some((_, p)) => coder.start(p),
            None => coder.start(&Primer::untrained()),
        }
        let mut sink = Encoder::new(body);
        let within = coder.encode(page.bytes(), budget, &mut sink);
        (sink.finish(), within)
    });
    *out = coded;
    if !within {
        out.truncate(start);
    }
    within
}

/// The id of the dictionary whose primer a payload was coded with (0: none).
pub fn primer_id(payload: &[u8]) -> Option<u32> {
    payload
        .get(..ID_BYTES)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// Decodes a payload coded from `primer` (the one its id names) into `out`.
///
/// # Errors
/// [`crate::DecodeError`] for a payload that is not a well-formed form of
/// this class (never a panic, never a page of other bytes).
///
/// # Examples
/// ```
/// use zpage::Page;
/// use zpage::codec::mixed;
///
/// let mut page = Page::zeroed();
/// for (i, word) in page.words_mut().iter_mut().enumerate() {
///     *word = (i as u64 / 3) * 0x0101 + 7;
/// }
/// let mut form = Vec::new();
/// assert!(mixed::encode(&page, None, mixed::DECISION_BUDGET, &mut form));
/// let mut out = Page::zeroed();
/// mixed::decode(&form[1..], None, &mut out)?;
/// assert!(out == page);
/// # Ok::<(), zpage::DecodeError>(())
/// ```
pub fn decode(payload: &[u8], primer: Option<&Primer>, out: &mut Page) -> Result<(), DecodeError> {
    let corrupt = |reason| DecodeError::corrupt(Class::Mixed, reason);
    if payload.len() <= ID_BYTES {
        return Err(corrupt("shorter than its header"));
    }
    let body = &payload[ID_BYTES..];
    let ok = with_coder(|coder| {
        match primer {
            Some(p) => coder.start(p),
            None => coder.start(&Primer::untrained()),
        }
        coder.decode(body, out.bytes_mut())
    });
    if ok {
        Ok(())
    } else {
        Err(corrupt("its length is not the coded length"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_pages() -> Vec<Page> {
        (0..12u64)
            .map(|k| {
                let mut page = Page::zeroed();
                for (i, w) in page.bytes_mut().chunks_exact_mut(8).enumerate() {
                    let i = i as u64;
                    let v = match (i + k) % 4 {
                        0 => 0x0000_7f12_3400_0000 + (i * 64 + k) % 4096 * 16,
                        1 => i * k % 97,
                        2 => 0,
                        _ => u64::from_le_bytes(*b"key:abc\0") ^ (i % 7) << 40,
                    };
                    w.copy_from_slice(&v.to_le_bytes());
                }
                page
            })
            .collect()
    }

    /// A page of xorshift bytes from `seed`.
    fn noise(seed: u64) -> Page {
        let mut page = Page::zeroed();
        let mut x = seed;
        for b in page.bytes_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        page
    }

    fn round_trip(page: &Page, primer: Option<(u32, &Primer)>) -> usize {
        let mut out = Vec::new();
        assert!(encode(page, primer, u32::MAX, &mut out));
        assert_eq!(out[0], Class::Mixed.tag());
        assert_eq!(primer_id(&out[1..]), Some(primer.map_or(0, |(id, _)| id)));
        let mut back = Page::boxed();
        decode(&out[1..], primer.map(|(_, p)| p), &mut back).expect("decodes");
        assert_eq!(back.bytes(), page.bytes());
        out.len()
    }

    #[test]
    fn pages_round_trip_and_a_primer_makes_them_smaller() {
        let pages = sample_pages();
        let refs: Vec<&[u8]> = pages[..8].iter().map(|p| &p.bytes()[..]).collect();
        let primer = Primer::train(&refs);
        let (mut fresh, mut primed) = (0, 0);
        for page in &pages[8..] {
            fresh += round_trip(page, None);
            primed += round_trip(page, Some((7, &primer)));
        }
        assert!(primed < fresh, "primed {primed} fresh {fresh}");
        for page in [Page::zeroed(), noise(0x2545_F491)] {
            round_trip(&page, None);
        }
    }

    #[test]
    fn the_same_page_codes_the_same_whatever_was_coded_before() {
        let pages = sample_pages();
        let mut first = Vec::new();
        assert!(encode(&pages[3], None, u32::MAX, &mut first));
        for page in &pages {
            let mut scratch = Vec::new();
            assert!(encode(page, None, u32::MAX, &mut scratch));
        }
        let mut again = Vec::new();
        assert!(encode(&pages[3], None, u32::MAX, &mut again));
        assert_eq!(first, again);
    }

    #[test]
    fn a_form_past_the_budget_is_refused_whole() {
        let mut out = vec![1, 2, 3];
        assert!(!encode(
            &noise(0x9E37_79B9),
            None,
            DECISION_BUDGET,
            &mut out
        ));
        assert_eq!(out, [1, 2, 3]);
        // Memory-like pages fit, and the budget does not change their form.
        for page in &sample_pages() {
            let (mut within, mut unlimited) = (Vec::new(), Vec::new());
            assert!(encode(page, None, DECISION_BUDGET, &mut within));
            assert!(encode(page, None, u32::MAX, &mut unlimited));
            assert_eq!(within, unlimited);
        }
    }

    #[test]
    fn a_primer_saves_and_loads() {
        let pages = sample_pages();
        let refs: Vec<&[u8]> = pages.iter().map(|p| &p.bytes()[..]).collect();
        let primer = Primer::train(&refs);
        let bytes = primer.to_bytes();
        assert_eq!(bytes.len(), PRIMER_BYTES);
        assert_eq!(Primer::from_bytes(&bytes), Some(primer));
        assert_eq!(Primer::from_bytes(&bytes[1..]), None);
    }

    #[test]
    fn altered_forms_and_the_wrong_primer_are_refused_or_differ() {
        let pages = sample_pages();
        let refs: Vec<&[u8]> = pages.iter().map(|p| &p.bytes()[..]).collect();
        let other = Primer::train(&refs);
        let mut out = Vec::new();
        assert!(encode(&pages[1], None, u32::MAX, &mut out));
        let payload = &out[1..];
        let mut back = Page::boxed();
        assert!(decode(&payload[..3], None, &mut back).is_err());
        let mut longer = payload.to_vec();
        longer.push(0);
        let mut flipped = payload.to_vec();
        flipped[payload.len() / 2] ^= 0x10;
        let mut refused = 0;
        for (bad, primer) in [
            (&payload[..payload.len() - 1], None),
            (&payload[..payload.len() - 9], None),
            (&longer[..], None),
            (&flipped[..], None),
            (payload, Some(&other)),
        ] {
            match decode(bad, primer, &mut back) {
                Err(_) => refused += 1,
                Ok(()) => assert_ne!(back.bytes(), pages[1].bytes()),
            }
        }
        assert!(refused >= 3, "{refused} of 5 refused");
    }
}
