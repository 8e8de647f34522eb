//! `zpage cold`: the cold tier's coders side by side on the same held-out pages of each
//! input: zstd-19 with the cluster dictionaries a store would train on the input's
//! pages, xz (raw LZMA2, preset 9e) per page, and the mixed form from those
//! dictionaries' primers (and from none), coded whole (without the store's decision
//! budget, which keeps a page mixed only where it decodes in time). Bytes, ratios to
//! zstd-19 with dictionaries, encode and decode MB/s, and the primed state's memory.
//!
//! Invariants: every mixed form is decoded and compared with its page (a mismatch is an
//! error, not a figure); memory is bounded whatever the input's size (pages are sampled
//! as they stream, at most [`SAMPLE_PAGES`] kept); same-filled pages are left out (no
//! coder stores them).

use super::compare;
use super::pagefile::{PageFile, PageFileError};
use super::source::PageSource;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};
use zpage::codec;
use zpage::codec::dict::{self, Dictionary};
use zpage::codec::dictset::{self, DictionarySet, TrainTarget};
use zpage::page::{PAGE_SIZE, Page};

/// Pages kept from an input, at most: every `k`-th as it streams, `k` doubling as the
/// sample fills.
pub const SAMPLE_PAGES: usize = 8192;
/// The zstd level the baseline and the dictionaries run at.
const ZSTD_LEVEL: i32 = 19;
/// Dictionary bytes the baseline's training may spend (zstd's usual 110 KiB, for one).
const DICT_BUDGET: usize = 112 << 10;

/// One input's figures.
#[derive(Clone, Debug, Serialize)]
pub struct ColdRow {
    pub name: String,
    /// Held-out pages coded (not same-filled).
    pub pages: usize,
    /// Bytes of each coder over those pages.
    pub zstd19_dict_bytes: usize,
    pub xz_bytes: usize,
    pub mixed_bytes: usize,
    pub mixed_unprimed_bytes: usize,
    /// Each coder's bytes over zstd-19 with dictionaries.
    pub xz_vs_zstd: f64,
    pub mixed_vs_zstd: f64,
    pub mixed_unprimed_vs_zstd: f64,
    pub mixed_encode_mb_s: f64,
    pub mixed_decode_mb_s: f64,
    pub zstd19_dict_decode_mb_s: f64,
    pub xz_decode_mb_s: f64,
    /// Dictionaries trained, and the memory of their bytes and of their primers.
    pub dictionaries: usize,
    pub dictionary_bytes: usize,
    pub primer_bytes: usize,
}

/// Why an input could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum ColdError {
    #[error(transparent)]
    Input(#[from] PageFileError),
    #[error("{0}: no page that is not same-filled")]
    Empty(String),
    #[error("{name}: the mixed form of page {page} decodes to other bytes")]
    Mismatch { name: String, page: usize },
    #[error("xz: {0}")]
    Xz(String),
}

/// Reads a page file as it streams, keeping a spread sample of its pages.
pub fn sample(path: &Path, pad: bool) -> Result<(String, Vec<Page>), ColdError> {
    let mut file = PageFile::open(path, pad)?;
    let (mut kept, mut chunk, mut stride, mut seen) = (Vec::new(), Vec::new(), 1usize, 0usize);
    while file.read_chunk(&mut chunk)? {
        for page in chunk.drain(..) {
            if page.same_filled_word().is_none() {
                if seen % stride == 0 {
                    kept.push(page);
                    if kept.len() == SAMPLE_PAGES {
                        kept = kept.into_iter().step_by(2).collect();
                        stride *= 2;
                    }
                }
                seen += 1;
            }
        }
    }
    Ok((file.name().to_string(), kept))
}

fn mb_s(pages: usize, time: Duration) -> f64 {
    compare::mb_s((pages * PAGE_SIZE) as u64, time)
}

fn xz_error(e: liblzma::stream::Error) -> ColdError {
    ColdError::Xz(e.to_string())
}

/// Raw LZMA2 at preset 9e (no container: its headers are not the coder's).
fn lzma2() -> Result<liblzma::stream::Filters, ColdError> {
    use liblzma::stream::{Filters, LzmaOptions, PRESET_EXTREME};
    let options = LzmaOptions::new_preset(9 | PRESET_EXTREME).map_err(xz_error)?;
    let mut filters = Filters::new();
    filters.lzma2(&options);
    Ok(filters)
}

/// xz per page.
fn xz(page: &Page) -> Result<Vec<u8>, ColdError> {
    use liblzma::stream::{Action, Stream};
    let mut stream = Stream::new_raw_encoder(&lzma2()?).map_err(xz_error)?;
    let mut out = Vec::with_capacity(2 * PAGE_SIZE);
    stream
        .process_vec(page.bytes(), &mut out, Action::Finish)
        .map_err(xz_error)?;
    Ok(out)
}

fn unxz(coded: &[u8], out: &mut Vec<u8>) -> Result<(), ColdError> {
    use liblzma::stream::{Action, Stream};
    let mut stream = Stream::new_raw_decoder(&lzma2()?).map_err(xz_error)?;
    out.clear();
    out.reserve(PAGE_SIZE);
    stream
        .process_vec(coded, out, Action::Finish)
        .map_err(xz_error)?;
    Ok(())
}

/// Compares the coders on `test` held-out pages of `pages` (the rest train the
/// dictionaries and primers, as a store's idle pass would on its own pages).
pub fn compare(name: &str, pages: &[Page], test: usize) -> Result<ColdRow, ColdError> {
    if pages.is_empty() {
        return Err(ColdError::Empty(name.to_string()));
    }
    let test = test.clamp(1, pages.len().div_ceil(2));
    let step = pages.len() / test;
    let held: Vec<&Page> = (0..test).map(|i| &pages[i * step + step / 2]).collect();
    let train: Vec<&Page> = (0..pages.len())
        .filter(|i| i % step != step / 2)
        .map(|i| &pages[i])
        .collect();
    let set = DictionarySet::train(
        &train,
        TrainTarget {
            budget_bytes: DICT_BUDGET,
            level: ZSTD_LEVEL,
            plain_level: ZSTD_LEVEL,
            first_id: 1,
            served_pages: pages.len() as u64,
            max_clusters: dictset::MAX_TRAINED_CLUSTERS,
        },
    );
    let dict_of = |page: &Page| -> Option<&Dictionary> {
        set.as_ref()
            .map(|s| &**s.dictionary_for(&zpage::classify::features::extract(page)))
    };
    let mut row = ColdRow {
        name: name.to_string(),
        pages: held.len(),
        zstd19_dict_bytes: 0,
        xz_bytes: 0,
        mixed_bytes: 0,
        mixed_unprimed_bytes: 0,
        xz_vs_zstd: 0.0,
        mixed_vs_zstd: 0.0,
        mixed_unprimed_vs_zstd: 0.0,
        mixed_encode_mb_s: 0.0,
        mixed_decode_mb_s: 0.0,
        zstd19_dict_decode_mb_s: 0.0,
        xz_decode_mb_s: 0.0,
        dictionaries: set.as_ref().map_or(0, |s| s.dictionaries().len()),
        dictionary_bytes: set.as_ref().map_or(0, |s| {
            s.dictionaries().iter().map(|d| d.bytes().len()).sum()
        }),
        primer_bytes: set.as_ref().map_or(0, |s| {
            s.dictionaries()
                .iter()
                .filter_map(|d| d.primer())
                .map(|p| p.memory_bytes())
                .sum()
        }),
    };
    let (mut enc, mut dec, mut zdec, mut xdec) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let (mut out, mut back, mut scratch) = (Vec::new(), Page::boxed(), Vec::new());
    let registry = set.as_ref();
    for (i, &page) in held.iter().enumerate() {
        let dict = dict_of(page);
        out.clear();
        match dict {
            Some(d) => dict::encode(page, d, ZSTD_LEVEL, &mut out),
            None => codec::zstd::encode(page, ZSTD_LEVEL, &mut out),
        }
        // Without the tag byte, which every form stores in the page's metadata.
        row.zstd19_dict_bytes += codec::stored_size(codec::Class::Zstd, out.len());
        let t = Instant::now();
        decode_any(&out, registry, &mut back);
        zdec += t.elapsed();
        let coded = xz(page)?;
        row.xz_bytes += coded.len();
        let t = Instant::now();
        unxz(&coded, &mut scratch)?;
        xdec += t.elapsed();
        out.clear();
        let t = Instant::now();
        codec::mixed::encode(
            page,
            dict.and_then(|d| Some((d.id(), d.primer()?))),
            u32::MAX,
            &mut out,
        );
        enc += t.elapsed();
        row.mixed_bytes += out.len() - 1;
        let t = Instant::now();
        let ok = decode_any(&out, registry, &mut back);
        dec += t.elapsed();
        if !ok || back.bytes() != page.bytes() {
            return Err(ColdError::Mismatch {
                name: name.to_string(),
                page: i,
            });
        }
        out.clear();
        codec::mixed::encode(page, None, u32::MAX, &mut out);
        row.mixed_unprimed_bytes += out.len() - 1;
    }
    let z = row.zstd19_dict_bytes.max(1) as f64;
    row.xz_vs_zstd = row.xz_bytes as f64 / z;
    row.mixed_vs_zstd = row.mixed_bytes as f64 / z;
    row.mixed_unprimed_vs_zstd = row.mixed_unprimed_bytes as f64 / z;
    row.mixed_encode_mb_s = mb_s(held.len(), enc);
    row.mixed_decode_mb_s = mb_s(held.len(), dec);
    row.zstd19_dict_decode_mb_s = mb_s(held.len(), zdec);
    row.xz_decode_mb_s = mb_s(held.len(), xdec);
    Ok(row)
}

/// Decodes a stored form with the set's dictionaries (and primers); whether it did.
fn decode_any(stored: &[u8], set: Option<&DictionarySet>, out: &mut Page) -> bool {
    let Ok(class) = codec::stored_class(stored) else {
        return false;
    };
    match set {
        Some(set) => codec::decode_payload_with(class, &stored[1..], set, out).is_ok(),
        None => codec::decode(stored, out).is_ok(),
    }
}
