//! Side-by-side measurement on one set of pages: zpage's engine against single-codec
//! baselines (LZ4 for every page, zstd-3 for every page) and the oracle (per page the
//! smallest of every codec), with ratio and throughput measured in the same run.
//!
//! Invariants: every scheme sees the same pages in the same order; stored bytes follow
//! the store's accounting ([`codec::stored_size`]: zero/same pages cost metadata only,
//! huge pages cost a page); every encoded page is decoded and compared, and a mismatch is
//! an error, so a reported ratio is always of verified data.

use crate::codec::{self, Class, CodecConfig};
use crate::engine::Engine;
use crate::page::{PAGE_SIZE, Page};
use serde::Serialize;
use std::time::{Duration, Instant};

/// One scheme's result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SchemeResult {
    pub compr_data_size: u64,
    pub compress_mb_s: f64,
    pub decompress_mb_s: f64,
}

impl SchemeResult {
    fn new(bytes: u64, input: u64, enc: Duration, dec: Duration) -> SchemeResult {
        let mb_s = |d: Duration| input as f64 / 1e6 / d.as_secs_f64().max(1e-9);
        SchemeResult {
            compr_data_size: bytes,
            compress_mb_s: mb_s(enc),
            decompress_mb_s: mb_s(dec),
        }
    }

    pub fn ratio(&self, input: u64) -> f64 {
        input as f64 / self.compr_data_size.max(1) as f64
    }
}

/// Results of every scheme on one page set.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub pages: u64,
    pub input_bytes: u64,
    pub auto: SchemeResult,
    pub lz4: SchemeResult,
    pub zstd3: SchemeResult,
    pub oracle: SchemeResult,
}

/// Encodes every page with one fixed class (or the engine when `class` is None), times
/// encode and decode separately, verifies, and returns (stored bytes, encode, decode).
pub fn run_scheme(
    pages: &[Page],
    engine: &Engine,
    class: Option<Class>,
    config: &CodecConfig,
) -> Result<(u64, Duration, Duration), String> {
    let mut arena = Vec::with_capacity(pages.len() * 1024);
    let mut spans = Vec::with_capacity(pages.len());
    let mut out = Vec::with_capacity(PAGE_SIZE + 64);
    let mut bytes = 0u64;
    let start = Instant::now();
    for page in pages {
        let stored = match class {
            None => engine.encode(page, &mut out),
            Some(c) => codec::encode(c, page, config, &mut out),
        };
        bytes += codec::stored_size(stored, out.len()) as u64;
        spans.push(arena.len()..arena.len() + out.len());
        arena.extend_from_slice(&out);
    }
    let enc = start.elapsed();
    let mut back = Page::zeroed();
    let mut dec = Duration::ZERO;
    for (i, (page, span)) in pages.iter().zip(&spans).enumerate() {
        let start = Instant::now();
        codec::decode(&arena[span.clone()], &mut back).map_err(|e| format!("page {i}: {e}"))?;
        dec += start.elapsed();
        if &back != page {
            return Err(format!("page {i}: decoded page differs from the original"));
        }
    }
    Ok((bytes, enc, dec))
}

/// Runs zpage, LZ4-all, zstd-3-all and the oracle on `pages`.
pub fn compare(pages: &[Page], engine: &Engine) -> Result<Comparison, String> {
    let input = (pages.len() * PAGE_SIZE) as u64;
    let (bytes, enc, dec) = run_scheme(pages, engine, None, engine.codec())?;
    let auto = SchemeResult::new(bytes, input, enc, dec);
    let Baselines { lz4, zstd3, oracle } = baselines(pages)?;
    Ok(Comparison {
        pages: pages.len() as u64,
        input_bytes: input,
        auto,
        lz4,
        zstd3,
        oracle,
    })
}

/// The single-codec baselines and the oracle on one page set.
#[derive(Clone, Debug, Default)]
pub struct Baselines {
    pub lz4: SchemeResult,
    pub zstd3: SchemeResult,
    pub oracle: SchemeResult,
}

/// Runs LZ4-all, zstd-3-all and the oracle on `pages`.
pub fn baselines(pages: &[Page]) -> Result<Baselines, String> {
    let input = (pages.len() * PAGE_SIZE) as u64;
    let engine = Engine::default();
    let scheme = |class: Class, config: &CodecConfig| -> Result<SchemeResult, String> {
        let (bytes, enc, dec) = run_scheme(pages, &engine, Some(class), config)?;
        Ok(SchemeResult::new(bytes, input, enc, dec))
    };
    let lz4 = scheme(Class::General, &CodecConfig::FAST)?;
    let zstd3 = scheme(Class::Dense, &CodecConfig::DENSE)?;
    // The oracle: every class per page (zero/same by the exact scan), smallest kept.
    let mut out = Vec::new();
    let (mut bytes, mut enc) = (0u64, Duration::ZERO);
    let mut choices = Vec::with_capacity(pages.len());
    for page in pages {
        let start = Instant::now();
        let best = match page.same_filled_word() {
            Some(_) => (0, Class::Same, CodecConfig::FAST),
            None => [
                (Class::General, CodecConfig::FAST),
                (Class::Dense, CodecConfig::DENSE),
                (Class::Delta, CodecConfig::FAST),
                (Class::Delta, CodecConfig::DENSE),
                (Class::Incompressible, CodecConfig::FAST),
            ]
            .into_iter()
            .map(|(c, cfg)| {
                let stored = codec::encode(c, page, &cfg, &mut out);
                (codec::stored_size(stored, out.len()), c, cfg)
            })
            .min_by_key(|b| b.0)
            .expect("candidates"),
        };
        enc += start.elapsed();
        bytes += best.0 as u64;
        choices.push((best.1, best.2));
    }
    // Oracle decode speed: decode each page's chosen form.
    let stored: Vec<Vec<u8>> = pages
        .iter()
        .zip(&choices)
        .map(|(p, (c, cfg))| {
            let mut o = Vec::new();
            codec::encode(*c, p, cfg, &mut o);
            o
        })
        .collect();
    let mut back = Page::zeroed();
    let start = Instant::now();
    for s in &stored {
        codec::decode(s, &mut back).map_err(|e| e.to_string())?;
    }
    let oracle = SchemeResult::new(bytes, input, enc, start.elapsed());
    Ok(Baselines { lz4, zstd3, oracle })
}
