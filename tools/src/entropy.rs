//! Order-0 entropy of pages before and after their class transform, and the ladder
//! below it: the order-1 and order-2 conditional entropy of the transformed bytes, and
//! the bits the stored forms really take (fast, dense, dense with dictionaries trained on
//! the input, and the cold tier's mixed form or that, whichever is smaller, as the store
//! keeps them).
//!
//! For each page: the input is its 4096 bytes; the output is what its class's transform
//! leaves for an entropy coder — nothing for a zero page, the 8-byte word of a
//! same-filled page, the (shuffled) residual stream of a delta page, and the page itself
//! for general, zstd and incompressible pages (no transform; their gain is LZ matching,
//! which order-0 entropy does not see). A page's class is the one the store stores it as
//! (the engine's plan carried out), so these classes are `zpage sim`'s.
//!
//! Invariants: every figure is in bits per *input* byte: a page's information is its
//! length times its order-0 entropy, summed over pages and divided by the input bytes, so
//! input and output figures are directly comparable and a shorter output counts as such.
//! The conditional entropies are per page too (the plug-in estimate from the page's own
//! counts: what a coder that learned each page's statistics for free would spend, so
//! with 4 KiB of samples the order-2 figure is far below any real coder's, most of a
//! page's two-byte contexts being seen once), and the first one or two bytes of a page
//! count 8 bits each.
//! Memory is bounded outright: inputs stream through a chunk at a time, and the per-page
//! distribution is kept as a fixed histogram ([`HISTOGRAM_BINS`] bins), not per page.

use crate::source::{CHUNK_PAGES, PageSource};
use serde::Serialize;
use std::collections::BTreeMap;
use zpage::codec::dictset::{self, DictionarySet, TrainTarget};
use zpage::codec::{Class, delta};
use zpage::engine::Engine;
use zpage::page::{PAGE_SIZE, Page};

/// The JSON schema name and version of [`Report`].
pub const SCHEMA: &str = "zpage-entropy/1";

/// Order-0 information of `bytes`, in bits (length × entropy in bits per byte).
pub fn information_bits(bytes: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let c = f64::from(c);
            -c * (c / n).log2()
        })
        .sum()
}

/// Order-`order` conditional information of `bytes`, in bits: each byte after the
/// first `order` costs `-log2 p(byte | the order bytes before it)`, with `p` the page's
/// own counts (the plug-in estimate); the first `order` bytes cost 8 bits each. `keys` is
/// scratch space.
pub fn conditional_bits(bytes: &[u8], order: usize, keys: &mut Vec<u32>) -> f64 {
    if bytes.len() <= order {
        return 8.0 * bytes.len() as f64;
    }
    keys.clear();
    keys.extend((order..bytes.len()).map(|i| {
        let context = (1..=order).fold(0u32, |key, j| key << 8 | u32::from(bytes[i - j]));
        context << 8 | u32::from(bytes[i])
    }));
    keys.sort_unstable();
    // Sum over contexts c and bytes x of n(c,x) log2(n(c) / n(c,x)):
    // the sum of n(c) log2 n(c) less that of n(c,x) log2 n(c,x).
    let n_log_n = |run: usize| {
        let n = run as f64;
        n * n.log2()
    };
    let runs = |shift: u32| {
        keys.chunk_by(|a, b| a >> shift == b >> shift)
            .map(|run| n_log_n(run.len()))
            .sum::<f64>()
    };
    runs(8) - runs(0) + 8.0 * order as f64
}

/// The stored forms the ladder measures, in its order.
pub const PROFILES: [&str; 4] = ["fast", "dense", "dense_dictionaries", "mixed"];

/// One page: its class and its information before and after, in bits, and the ladder.
#[derive(Clone, Copy, Debug)]
pub struct PageEntropy {
    pub class: Class,
    pub input_bits: f64,
    pub output_bits: f64,
    /// Order-1 and order-2 conditional information of the transformed bytes.
    pub order1_bits: f64,
    pub order2_bits: f64,
    /// Bits of the stored form under each of [`PROFILES`] (zero where not measured).
    pub stored_bits: [f64; 4],
}

/// What the ladder's stored rungs are coded with.
pub struct Coders<'a> {
    pub fast: Engine,
    pub dense: Engine,
    /// A set trained on the input (`None`: the dictionary rungs are not measured).
    pub dictionaries: Option<&'a DictionarySet>,
}

impl Coders<'_> {
    /// Bits of `page`'s form under each of [`PROFILES`]. Without dictionaries (none paid
    /// for its memory, or the input could not be read twice) the dictionary rung is the
    /// dense form, as a store keeps it then, and the mixed form is unprimed.
    fn stored(&self, page: &Page, scratch: &mut Vec<u8>) -> [f64; 4] {
        // Every profile stores a same-filled page as its word.
        if let Some(word) = page.same_filled_word() {
            scratch.clear();
            zpage::codec::encode_filled(word, scratch);
            return [8.0 * scratch.len() as f64; 4];
        }
        let mut bits = [0.0; 4];
        self.fast.encode(page, scratch);
        bits[0] = 8.0 * scratch.len() as f64;
        self.dense.encode(page, scratch);
        bits[1] = 8.0 * scratch.len() as f64;
        bits[2] = match self.dictionaries {
            Some(set) => {
                self.dense.encode_with(page, Some(set), scratch);
                8.0 * scratch.len() as f64
            }
            None => bits[1],
        };
        // The cold tier keeps the smaller of its forms: mixed, or the one it had.
        let dict = (self.dictionaries)
            .map(|set| &**set.dictionary_for(&zpage::classify::features::extract(page)));
        zpage::codec::encode_mixed(page, dict, self.dense.codec(), scratch);
        bits[3] = bits[2].min(8.0 * scratch.len() as f64);
        bits
    }
}

/// The entropy of one page under the class `engine` stores it as; `scratch` holds the
/// stored form, which tells that class, and `keys` the conditional counts.
pub fn page_entropy(
    page: &Page,
    engine: &Engine,
    coders: Option<&Coders<'_>>,
    scratch: &mut Vec<u8>,
    keys: &mut Vec<u32>,
) -> PageEntropy {
    let class = engine.encode(page, scratch);
    let word = page.words()[0].to_le_bytes();
    let transformed;
    let (input_bits, output): (f64, &[u8]) = match class {
        // A same-filled page's byte counts are its word's, times the 512 words.
        Class::Zero => (512.0 * information_bits(&word), &[]),
        Class::Same => (512.0 * information_bits(&word), &word),
        Class::Delta => {
            transformed = delta::transformed_bytes(page);
            (information_bits(page.bytes()), &transformed)
        }
        // The word form's streams are what it stores: their information is its output.
        Class::Words => {
            transformed = scratch[1..].to_vec();
            (information_bits(page.bytes()), &transformed)
        }
        // General forms (and any class this build does not know) keep the bytes as
        // they are before their coder.
        _ => (information_bits(page.bytes()), page.bytes()),
    };
    let output_bits = match class {
        Class::Zero => 0.0,
        _ => information_bits(output),
    };
    let (order1_bits, order2_bits) = match class {
        Class::Zero => (0.0, 0.0),
        _ => (
            conditional_bits(output, 1, keys).min(output_bits),
            conditional_bits(output, 2, keys).min(output_bits),
        ),
    };
    PageEntropy {
        class,
        input_bits,
        output_bits,
        order1_bits,
        order2_bits,
        stored_bits: coders.map_or([0.0; 4], |c| c.stored(page, scratch)),
    }
}

/// Entropy figures of a group of pages, in bits per input byte.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    pub pages: u64,
    /// Order-0 entropy before the class transforms.
    pub input_entropy: f64,
    /// Order-0 entropy after them (the ladder's first rung, also `order0`).
    pub output_entropy: f64,
    pub order0: f64,
    /// Order-1 and order-2 conditional entropy of the transformed bytes.
    pub order1: f64,
    pub order2: f64,
    /// Bits per input byte of the stored forms, by profile ([`PROFILES`]).
    pub stored: BTreeMap<&'static str, f64>,
}

/// Running sums behind [`Figures`].
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    pages: u64,
    input_bits: f64,
    output_bits: f64,
    order1_bits: f64,
    order2_bits: f64,
    stored_bits: [f64; 4],
}

impl Sums {
    fn add(&mut self, page: &PageEntropy) {
        self.pages += 1;
        self.input_bits += page.input_bits;
        self.output_bits += page.output_bits;
        self.order1_bits += page.order1_bits;
        self.order2_bits += page.order2_bits;
        for (sum, bits) in self.stored_bits.iter_mut().zip(page.stored_bits) {
            *sum += bits;
        }
    }

    fn absorb(&mut self, other: &Sums) {
        self.pages += other.pages;
        self.input_bits += other.input_bits;
        self.output_bits += other.output_bits;
        self.order1_bits += other.order1_bits;
        self.order2_bits += other.order2_bits;
        for (sum, bits) in self.stored_bits.iter_mut().zip(other.stored_bits) {
            *sum += bits;
        }
    }

    fn figures(&self) -> Figures {
        let bytes = (self.pages as usize * PAGE_SIZE).max(1) as f64;
        Figures {
            pages: self.pages,
            input_entropy: self.input_bits / bytes,
            output_entropy: self.output_bits / bytes,
            order0: self.output_bits / bytes,
            order1: self.order1_bits / bytes,
            order2: self.order2_bits / bytes,
            stored: PROFILES
                .iter()
                .zip(self.stored_bits)
                .map(|(&name, bits)| (name, bits / bytes))
                .collect(),
        }
    }
}

/// Bins of the per-page entropy histograms, over 0..=8 bits per byte.
pub const HISTOGRAM_BINS: usize = 800;

/// How many pages have each per-page entropy (bits per input byte), before and after the
/// transforms: bin `i` counts pages in `[8i/BINS, 8(i+1)/BINS)`, the last bin includes 8.
#[derive(Clone, Debug)]
pub struct Distribution {
    pub before: Vec<u64>,
    pub after: Vec<u64>,
}

impl Distribution {
    fn new() -> Distribution {
        Distribution {
            before: vec![0; HISTOGRAM_BINS],
            after: vec![0; HISTOGRAM_BINS],
        }
    }

    fn add(&mut self, page: &PageEntropy) {
        let bin = |bits: f64| {
            let per_byte = bits / PAGE_SIZE as f64;
            ((per_byte / 8.0 * HISTOGRAM_BINS as f64) as usize).min(HISTOGRAM_BINS - 1)
        };
        self.before[bin(page.input_bits)] += 1;
        self.after[bin(page.output_bits)] += 1;
    }

    /// The upper edge of bin `i`, in bits per input byte.
    pub fn edge(i: usize) -> f64 {
        8.0 * (i + 1) as f64 / HISTOGRAM_BINS as f64
    }
}

/// One input's totals.
#[derive(Clone, Debug, Serialize)]
pub struct InputFigures {
    pub name: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub pages: u64,
    pub input_bytes: u64,
    /// Bits per input byte over every page, before the class transforms.
    pub input_entropy: f64,
    /// Bits per input byte over every page, after them.
    pub output_entropy: f64,
    /// Per class (only classes that occur).
    pub classes: BTreeMap<Class, Figures>,
    /// Over every page: the same figures as a class's.
    pub total: Figures,
    /// Why the dictionary rungs have no dictionaries, where they have none.
    pub stored_note: Option<String>,
    pub inputs: Vec<InputFigures>,
    /// Per-page entropy histograms, for plots (not serialised).
    #[serde(skip)]
    pub distribution: Distribution,
    /// This process's peak resident memory (0 where unknown).
    pub peak_rss_bytes: u64,
}

/// Most pages the dictionaries of the ladder train on (spread over the input).
const TRAIN_SAMPLES: usize = 2048;

/// Analyses every page of every source; `tick` gets the pages done per chunk (twice
/// over where the sources can be read again: a first read samples the pages the
/// ladder's dictionaries train on).
pub fn analyse(
    sources: &mut [Box<dyn PageSource + '_>],
    engine: &Engine,
    tick: &mut dyn FnMut(u64),
) -> Result<Report, String> {
    let mut chunk = Vec::with_capacity(CHUNK_PAGES);
    let (dictionaries, stored_note) = train(sources, &mut chunk, tick)?;
    let coders = Coders {
        fast: Engine::new(zpage::Profile::Fast),
        dense: Engine::new(zpage::Profile::Dense),
        dictionaries: dictionaries.as_ref(),
    };
    let mut total = Sums::default();
    let mut classes = [Sums::default(); Class::ALL.len()];
    let mut distribution = Distribution::new();
    let mut inputs = Vec::new();
    let (mut scratch, mut keys) = (Vec::new(), Vec::new());
    for source in sources.iter_mut() {
        let mut input = Sums::default();
        while source
            .next_chunk(&mut chunk)
            .map_err(|e| format!("{}: {e}", source.name()))?
        {
            for page in &chunk {
                let e = page_entropy(page, engine, Some(&coders), &mut scratch, &mut keys);
                input.add(&e);
                classes[e.class.index()].add(&e);
                distribution.add(&e);
            }
            tick(chunk.len() as u64);
        }
        total.absorb(&input);
        inputs.push(InputFigures {
            name: source.name().to_string(),
            figures: input.figures(),
        });
    }
    let total = total.figures();
    let classes = Class::ALL
        .iter()
        .filter(|c| classes[c.index()].pages > 0)
        .map(|&c| (c, classes[c.index()].figures()))
        .collect();
    Ok(Report {
        schema: SCHEMA,
        pages: total.pages,
        input_bytes: total.pages * PAGE_SIZE as u64,
        input_entropy: total.input_entropy,
        output_entropy: total.output_entropy,
        classes,
        total,
        stored_note,
        inputs,
        distribution,
        peak_rss_bytes: crate::source::peak_rss_bytes(),
    })
}

/// A first read of every source samples the pages a dictionary set trains on (as the
/// store's idle pass would train it), then rewinds them; no set, and why, where a source
/// cannot be read twice or the pages do not train one.
fn train(
    sources: &mut [Box<dyn PageSource + '_>],
    chunk: &mut Vec<Page>,
    tick: &mut dyn FnMut(u64),
) -> Result<(Option<DictionarySet>, Option<String>), String> {
    for source in sources.iter_mut() {
        if !source
            .rewind()
            .map_err(|e| format!("{}: {e}", source.name()))?
        {
            return Ok((
                None,
                Some(format!(
                    "{}: a live process is not the same twice, and the dictionaries are trained on a first read: the dictionary rung is the dense form, the mixed form unprimed (capture it with zpage capture for dictionaries)",
                    source.name()
                )),
            ));
        }
    }
    let expected: u64 = sources.iter().map(|s| s.expected_pages()).sum();
    let step = (expected / TRAIN_SAMPLES as u64).max(1);
    let (mut sample, mut seen) = (Vec::new(), 0u64);
    for source in sources.iter_mut() {
        while source
            .next_chunk(chunk)
            .map_err(|e| format!("{}: {e}", source.name()))?
        {
            for page in chunk.iter().filter(|p| p.same_filled_word().is_none()) {
                if seen.is_multiple_of(step) && sample.len() < TRAIN_SAMPLES {
                    sample.push(*page);
                }
                seen += 1;
            }
            tick(chunk.len() as u64);
        }
        source
            .rewind()
            .map_err(|e| format!("{}: {e}", source.name()))?;
    }
    let refs: Vec<&Page> = sample.iter().collect();
    let target = TrainTarget {
        budget_bytes: ((expected * PAGE_SIZE as u64 / 64) as usize).clamp(16 << 10, 512 << 10),
        level: zpage::store::DICTIONARY_LEVEL,
        plain_level: Engine::new(zpage::Profile::Dense).codec().zstd_level,
        first_id: 1,
        served_pages: seen,
        max_clusters: dictset::MAX_TRAINED_CLUSTERS,
    };
    Ok(match DictionarySet::train(&refs, target) {
        Some(set) => (Some(set), None),
        None => (
            None,
            Some(format!(
                "no dictionary pays for its memory on these {seen} pages: the dictionary rung is the dense form, the mixed form unprimed"
            )),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn information_of_known_distributions() {
        assert_eq!(information_bits(&[7; 100]), 0.0);
        let two: Vec<u8> = (0..100).map(|i| (i % 2) as u8).collect();
        assert!((information_bits(&two) - 100.0).abs() < 1e-9);
        let all: Vec<u8> = (0..=255).collect();
        assert!((information_bits(&all) - 256.0 * 8.0).abs() < 1e-9);
    }

    #[test]
    fn conditional_information_sees_context() {
        let mut keys = Vec::new();
        // Alternating bytes: order-0 one bit each, but each byte follows from the last.
        let two: Vec<u8> = (0..1000).map(|i| (i % 2) as u8).collect();
        assert!((information_bits(&two) - 1000.0).abs() < 1e-9);
        assert!(
            (conditional_bits(&two, 1, &mut keys) - 8.0).abs() < 1e-9,
            "only the first"
        );
        // A fixed order-1 map seen once each: order-2 learns nothing more than order-1.
        let all: Vec<u8> = (0..=255).collect();
        assert!((conditional_bits(&all, 1, &mut keys) - 8.0).abs() < 1e-9);
        assert!((conditional_bits(&all, 2, &mut keys) - 16.0).abs() < 1e-9);
        assert_eq!(conditional_bits(&[9], 2, &mut keys), 8.0);
    }

    #[test]
    fn a_ramp_loses_its_entropy_under_delta() {
        let mut page = Page::zeroed();
        for (i, w) in page.words_mut().iter_mut().enumerate() {
            *w = 1_000_000 + 3 * i as u64;
        }
        let e = page_entropy(
            &page,
            &Engine::default(),
            None,
            &mut Vec::new(),
            &mut Vec::new(),
        );
        assert_eq!(e.class, Class::Delta);
        assert!(e.output_bits < e.input_bits / 4.0, "{e:?}");
    }
}
