//! Side-by-side measurement on one set of pages: zpage's engine against single-codec
//! baselines (LZ4 for every page, zstd-3 for every page) and the oracle (per page the
//! smallest of every codec), with ratio and throughput measured in the same run.
//!
//! Invariants: every scheme sees the same pages in the same order; stored bytes follow
//! the store's accounting ([`codec::stored_size`]: zero/same pages cost metadata only,
//! huge pages cost a page); every encoded page is decoded and compared, and a mismatch is
//! an error, so a reported ratio is always of verified data.

use std::time::{Duration, Instant};
use zpage::codec::dict::{Dictionaries, Dictionary, NoDictionaries};
use zpage::codec::dictset::DictionarySet;
use zpage::codec::{self, Class, CodecConfig};
use zpage::engine::Engine;
use zpage::page::{PAGE_SIZE, Page};

/// One scheme's result: what it stored and how long it took.
#[derive(Clone, Debug, Default)]
pub struct SchemeResult {
    pub compr_data_size: u64,
    pub input_bytes: u64,
    pub compress_time: Duration,
    pub decompress_time: Duration,
}

impl SchemeResult {
    pub fn ratio(&self) -> f64 {
        self.input_bytes as f64 / self.compr_data_size.max(1) as f64
    }

    pub fn compress_mb_s(&self) -> f64 {
        mb_s(self.input_bytes, self.compress_time)
    }

    pub fn decompress_mb_s(&self) -> f64 {
        mb_s(self.input_bytes, self.decompress_time)
    }

    /// Adds another page set's result (sizes and times sum, so rates stay exact).
    pub fn absorb(&mut self, other: &SchemeResult) {
        self.compr_data_size += other.compr_data_size;
        self.input_bytes += other.input_bytes;
        self.compress_time += other.compress_time;
        self.decompress_time += other.decompress_time;
    }
}

/// The geometric mean of ratios (1 for none).
pub fn geomean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v.max(1e-9).ln(), n + 1));
    if n == 0 { 1.0 } else { (sum / n as f64).exp() }
}

/// Megabytes (10^6 bytes) per second.
pub fn mb_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64().max(1e-9)
}

/// Results of every scheme on one page set.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub pages: u64,
    pub auto: SchemeResult,
    pub lz4: SchemeResult,
    pub zstd3: SchemeResult,
    pub oracle: SchemeResult,
}

/// How a scheme encodes each page.
#[derive(Clone, Copy, Debug)]
pub enum Scheme<'a> {
    /// zpage: the engine's classifier picks the class.
    Engine(&'a Engine),
    /// One class for every page.
    Fixed(Class, CodecConfig),
    /// Every codec per page (zero/same by the exact scan), the smallest kept.
    Oracle,
    /// zram's same-page check, then zstd with one dictionary for every page.
    Dictionary(&'a Dictionary),
    /// zpage with a dictionary set: zstd pages encoded with their cluster's dictionary.
    EngineWith(&'a Engine, &'a DictionarySet),
}

const ORACLE_CANDIDATES: [(Class, CodecConfig); 5] = [
    (Class::General, CodecConfig::FAST),
    (Class::Zstd, CodecConfig::DENSE),
    (Class::Delta, CodecConfig::FAST),
    (Class::Delta, CodecConfig::DENSE),
    (Class::Incompressible, CodecConfig::FAST),
];

impl Scheme<'_> {
    /// Encodes `page` into `out`; `spare` is scratch for the oracle's candidates.
    fn encode(&self, page: &Page, out: &mut Vec<u8>, spare: &mut Vec<u8>) -> Class {
        match *self {
            Scheme::Engine(engine) => engine.encode(page, out),
            Scheme::EngineWith(engine, set) => engine.encode_with(page, Some(set), out),
            Scheme::Dictionary(dict) => match page.same_filled_word() {
                Some(word) => codec::encode_filled(word, out),
                None => codec::encode_with_dictionary(
                    page,
                    dict,
                    dict.level(),
                    &CodecConfig::DENSE,
                    out,
                ),
            },
            Scheme::Fixed(class, ref config) => codec::encode(class, page, config, out),
            Scheme::Oracle if page.same_filled_word().is_some() => {
                codec::encode(Class::Same, page, &CodecConfig::FAST, out)
            }
            Scheme::Oracle => {
                let mut best: Option<(usize, Class)> = None;
                for (class, config) in ORACLE_CANDIDATES {
                    let stored = codec::encode(class, page, &config, spare);
                    let size = codec::stored_size(stored, spare.len());
                    if best.is_none_or(|(smallest, _)| size < smallest) {
                        best = Some((size, stored));
                        std::mem::swap(out, spare);
                    }
                }
                best.expect("candidates").1
            }
        }
    }
}

/// Encodes every page with `scheme`, times encode and decode separately, and verifies
/// every page.
pub fn run_scheme(pages: &[Page], scheme: Scheme) -> Result<SchemeResult, String> {
    let mut arena = Vec::with_capacity(pages.len() * 1024);
    let mut spans = Vec::with_capacity(pages.len());
    let (mut out, mut spare) = (Vec::with_capacity(PAGE_SIZE + 64), Vec::new());
    let mut bytes = 0u64;
    let start = Instant::now();
    for page in pages {
        let stored = scheme.encode(page, &mut out, &mut spare);
        bytes += codec::stored_size(stored, out.len()) as u64;
        spans.push(arena.len()..arena.len() + out.len());
        arena.extend_from_slice(&out);
    }
    let compress_time = start.elapsed();
    let mut back = Page::zeroed();
    let mut decompress_time = Duration::ZERO;
    for (i, (page, span)) in pages.iter().zip(&spans).enumerate() {
        let start = Instant::now();
        let stored = &arena[span.clone()];
        let class = codec::stored_class(stored).map_err(|e| format!("page {i}: {e}"))?;
        let dicts: &dyn Dictionaries = match scheme {
            Scheme::Dictionary(dict) => dict,
            Scheme::EngineWith(_, set) => set,
            _ => &NoDictionaries,
        };
        codec::decode_payload_with(class, &stored[1..], dicts, &mut back)
            .map_err(|e| format!("page {i}: {e}"))?;
        decompress_time += start.elapsed();
        if &back != page {
            return Err(format!("page {i}: decoded page differs from the original"));
        }
    }
    Ok(SchemeResult {
        compr_data_size: bytes,
        input_bytes: (pages.len() * PAGE_SIZE) as u64,
        compress_time,
        decompress_time,
    })
}

/// Runs zpage, LZ4-all, zstd-3-all and the oracle on `pages`.
pub fn compare(pages: &[Page], engine: &Engine) -> Result<Comparison, String> {
    let auto = run_scheme(pages, Scheme::Engine(engine))?;
    let Baselines { lz4, zstd3, oracle } = baselines(pages)?;
    Ok(Comparison {
        pages: pages.len() as u64,
        auto,
        lz4,
        zstd3,
        oracle,
    })
}

/// A scheme run beside zpage on the same pages, by the name a user gives it.
#[derive(Clone, Debug)]
pub struct Baseline {
    pub name: String,
    pub kind: BaselineKind,
}

/// How a baseline runs.
#[derive(Clone, Copy, Debug)]
pub enum BaselineKind {
    /// On each chunk as it streams by.
    PerChunk(Scheme<'static>),
    /// zram's best configuration (Linux 6.12+), emulated: per page zstd at
    /// [`ZRAM_BEST_LEVEL`] with one dictionary of [`ZRAM_BEST_DICT_BYTES`] trained on a
    /// tenth of the input's pages. It needs the input twice (to train, then to store).
    ZramBest,
}

/// The zstd level of the emulated zram-best configuration (its authors' best figure).
pub const ZRAM_BEST_LEVEL: i32 = 8;
/// Its dictionary's size (the size zram's documentation trains).
pub const ZRAM_BEST_DICT_BYTES: usize = 110 << 10;
/// Most pages it trains on (a tenth of the input, up to 8 MiB of samples: a tenth of a
/// 80 MiB input; the sample is memory the simulation holds).
pub const ZRAM_BEST_SAMPLES: usize = 2048;

/// zram-best's sample of one input, chunk by chunk: every tenth page that is not
/// same-filled (zram's own check takes those), spread over the whole input where a
/// tenth is more than [`ZRAM_BEST_SAMPLES`].
#[derive(Default)]
pub struct ZramSample {
    pages: Vec<Page>,
    seen: u64,
}

impl ZramSample {
    /// Takes the sample's share of the next `chunk` of an input of `expected` pages.
    pub fn sample(&mut self, chunk: &[Page], expected: u64) {
        let step = (expected / ZRAM_BEST_SAMPLES as u64).max(10);
        // A tenth of the pages zstd will see: same-filled ones are not counted.
        for page in chunk.iter().filter(|p| p.same_filled_word().is_none()) {
            if self.seen.is_multiple_of(step) && self.pages.len() < ZRAM_BEST_SAMPLES {
                self.pages.push(*page);
            }
            self.seen += 1;
        }
    }

    /// The configuration, its dictionary trained on the sample.
    pub fn train(&self) -> ZramBest {
        let samples: Vec<&[u8]> = self.pages.iter().map(|p| &p.bytes()[..]).collect();
        ZramBest {
            dict: Dictionary::train(&samples, ZRAM_BEST_DICT_BYTES, 1, ZRAM_BEST_LEVEL).ok(),
        }
    }
}

/// zram's best configuration with its dictionary trained (see [`BaselineKind::ZramBest`]).
pub struct ZramBest {
    /// `None` where the pages were too few or too uniform to train on: zstd alone then,
    /// as zram would.
    dict: Option<Dictionary>,
}

impl ZramBest {
    /// The dictionary's bytes (`None` where none could be trained).
    pub fn dictionary(&self) -> Option<std::sync::Arc<Vec<u8>>> {
        self.dict
            .as_ref()
            .map(|d| std::sync::Arc::new(d.bytes().to_vec()))
    }

    /// Stores `pages` (verified, timed) as the configuration does.
    pub fn run(&self, pages: &[Page]) -> Result<SchemeResult, String> {
        match &self.dict {
            Some(dict) => run_scheme(pages, Scheme::Dictionary(dict)),
            None => run_scheme(
                pages,
                Scheme::Fixed(
                    Class::Zstd,
                    CodecConfig {
                        zstd_level: ZRAM_BEST_LEVEL,
                        ..CodecConfig::DENSE
                    },
                ),
            ),
        }
    }
}

impl Baseline {
    /// The names `zpage sim --codecs` shows by default.
    pub const DEFAULT: [&'static str; 4] = ["lz4", "zstd-3", "zram-best", "oracle"];

    /// `lz4` (every page), `zstd-N` (every page at level N, 1 to 22), `zram-best` or
    /// `oracle`.
    pub fn parse(name: &str) -> Result<Baseline, String> {
        if name == "zram-best" {
            return Ok(Baseline {
                name: name.to_string(),
                kind: BaselineKind::ZramBest,
            });
        }
        let scheme = match name {
            "lz4" => Scheme::Fixed(Class::General, CodecConfig::FAST),
            "oracle" => Scheme::Oracle,
            _ => match name.strip_prefix("zstd-").map(str::parse::<i32>) {
                Some(Ok(level @ 1..=22)) => Scheme::Fixed(
                    Class::Zstd,
                    CodecConfig {
                        zstd_level: level,
                        ..CodecConfig::DENSE
                    },
                ),
                _ => {
                    return Err(format!(
                        "no codec {name:?}: lz4, zstd-1 to zstd-22, zram-best or oracle"
                    ));
                }
            },
        };
        Ok(Baseline {
            name: name.to_string(),
            kind: BaselineKind::PerChunk(scheme),
        })
    }
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
    Ok(Baselines {
        lz4: run_scheme(pages, Scheme::Fixed(Class::General, CodecConfig::FAST))?,
        zstd3: run_scheme(pages, Scheme::Fixed(Class::Zstd, CodecConfig::DENSE))?,
        oracle: run_scheme(pages, Scheme::Oracle)?,
    })
}
