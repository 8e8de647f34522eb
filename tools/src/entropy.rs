//! Order-0 entropy of pages before and after their class transform.
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
//! Memory is bounded outright: inputs stream through a chunk at a time, and the per-page
//! distribution is kept as a fixed histogram ([`HISTOGRAM_BINS`] bins), not per page.

use crate::source::{CHUNK_PAGES, PageSource};
use serde::Serialize;
use std::collections::BTreeMap;
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

/// One page: its class and its information before and after, in bits.
#[derive(Clone, Copy, Debug)]
pub struct PageEntropy {
    pub class: Class,
    pub input_bits: f64,
    pub output_bits: f64,
}

/// The entropy of one page under the class `engine` stores it as; `scratch` holds the
/// stored form, which tells that class.
pub fn page_entropy(page: &Page, engine: &Engine, scratch: &mut Vec<u8>) -> PageEntropy {
    let class = engine.encode(page, scratch);
    let word = information_bits(&page.words()[0].to_le_bytes());
    let input_bits = match class {
        // A same-filled page's byte counts are its word's, times the 512 words.
        Class::Zero | Class::Same => 512.0 * word,
        _ => information_bits(page.bytes()),
    };
    let output_bits = match class {
        Class::Zero => 0.0,
        Class::Same => word,
        Class::Delta => information_bits(&delta::transformed_bytes(page)),
        // The word form's streams are what it stores: their information is its output.
        Class::Words => information_bits(&scratch[1..]),
        // General forms (and any class this build does not know) keep the bytes as
        // they are before their coder.
        _ => input_bits,
    };
    PageEntropy {
        class,
        input_bits,
        output_bits,
    }
}

/// Entropy figures of a group of pages, in bits per input byte.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    pub pages: u64,
    pub input_entropy: f64,
    pub output_entropy: f64,
}

/// Running sums behind [`Figures`].
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    pages: u64,
    input_bits: f64,
    output_bits: f64,
}

impl Sums {
    fn add(&mut self, page: &PageEntropy) {
        self.pages += 1;
        self.input_bits += page.input_bits;
        self.output_bits += page.output_bits;
    }

    fn figures(&self) -> Figures {
        let bytes = (self.pages as usize * PAGE_SIZE).max(1) as f64;
        Figures {
            pages: self.pages,
            input_entropy: self.input_bits / bytes,
            output_entropy: self.output_bits / bytes,
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
    pub inputs: Vec<InputFigures>,
    /// Per-page entropy histograms, for plots (not serialised).
    #[serde(skip)]
    pub distribution: Distribution,
    /// This process's peak resident memory (0 where unknown).
    pub peak_rss_bytes: u64,
}

/// Analyses every page of every source; `tick` gets the pages done per chunk.
pub fn analyse(
    sources: &mut [Box<dyn PageSource + '_>],
    engine: &Engine,
    tick: &mut dyn FnMut(u64),
) -> Result<Report, String> {
    let mut total = Sums::default();
    let mut classes = [Sums::default(); Class::ALL.len()];
    let mut distribution = Distribution::new();
    let mut inputs = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK_PAGES);
    let mut scratch = Vec::new();
    for source in sources.iter_mut() {
        let mut input = Sums::default();
        while source
            .next_chunk(&mut chunk)
            .map_err(|e| format!("{}: {e}", source.name()))?
        {
            for page in &chunk {
                let e = page_entropy(page, engine, &mut scratch);
                input.add(&e);
                classes[e.class.index()].add(&e);
                distribution.add(&e);
            }
            tick(chunk.len() as u64);
        }
        total.pages += input.pages;
        total.input_bits += input.input_bits;
        total.output_bits += input.output_bits;
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
        inputs,
        distribution,
        peak_rss_bytes: crate::source::peak_rss_bytes(),
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
    fn a_ramp_loses_its_entropy_under_delta() {
        let mut page = Page::zeroed();
        for (i, w) in page.words_mut().iter_mut().enumerate() {
            *w = 1_000_000 + 3 * i as u64;
        }
        let e = page_entropy(&page, &Engine::default(), &mut Vec::new());
        assert_eq!(e.class, Class::Delta);
        assert!(e.output_bits < e.input_bits / 4.0, "{e:?}");
    }
}
