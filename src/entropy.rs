//! Order-0 entropy of pages before and after their class transform.
//!
//! For each page: the input is its 4096 bytes; the output is what its class's transform
//! leaves for an entropy coder — nothing for a zero page, the 8-byte word of a
//! same-filled page, the (shuffled) residual stream of a delta page, and the page itself
//! for general, dense and incompressible pages (no transform; their gain is LZ matching,
//! which order-0 entropy does not see).
//!
//! Invariant: every figure is in bits per *input* byte: a page's information is its
//! length times its order-0 entropy, summed over pages and divided by the input bytes, so
//! input and output figures are directly comparable and a shorter output counts as such.

use crate::codec::{Class, delta};
use crate::engine::Engine;
use crate::page::{PAGE_SIZE, Page};
use crate::pagefile::PageSet;
use serde::Serialize;
use std::collections::BTreeMap;

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

pub fn page_entropy(page: &Page, engine: &Engine) -> PageEntropy {
    let class = engine.classify(page);
    let input_bits = information_bits(page.bytes());
    let output_bits = match class {
        Class::Zero => 0.0,
        Class::Same => information_bits(&page.words()[0].to_le_bytes()),
        Class::Delta => information_bits(&delta::transformed_bytes(page)),
        Class::General | Class::Dense | Class::Incompressible => input_bits,
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

impl Figures {
    fn of<'a>(pages: impl Iterator<Item = &'a PageEntropy>) -> Figures {
        let (mut n, mut input, mut output) = (0u64, 0.0, 0.0);
        for p in pages {
            n += 1;
            input += p.input_bits;
            output += p.output_bits;
        }
        let bytes = (n as usize * PAGE_SIZE).max(1) as f64;
        Figures {
            pages: n,
            input_entropy: input / bytes,
            output_entropy: output / bytes,
        }
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
    pub classes: BTreeMap<&'static str, Figures>,
    pub inputs: Vec<InputFigures>,
    /// Per page, for plots (not serialised).
    #[serde(skip)]
    pub per_page: Vec<PageEntropy>,
}

/// Analyses every page of every set; `tick` gets the pages done per set.
pub fn analyse(sets: &[PageSet], engine: &Engine, tick: &mut dyn FnMut(u64)) -> Report {
    let mut per_page = Vec::new();
    let mut inputs = Vec::new();
    for set in sets {
        let start = per_page.len();
        per_page.extend(set.pages.iter().map(|p| page_entropy(p, engine)));
        inputs.push(InputFigures {
            name: set.name.clone(),
            figures: Figures::of(per_page[start..].iter()),
        });
        tick(set.pages.len() as u64);
    }
    let total = Figures::of(per_page.iter());
    let classes = Class::ALL
        .iter()
        .filter(|c| per_page.iter().any(|p| p.class == **c))
        .map(|c| {
            (
                c.name(),
                Figures::of(per_page.iter().filter(|p| p.class == *c)),
            )
        })
        .collect();
    Report {
        schema: SCHEMA,
        pages: total.pages,
        input_bytes: total.pages * PAGE_SIZE as u64,
        input_entropy: total.input_entropy,
        output_entropy: total.output_entropy,
        classes,
        inputs,
        per_page,
    }
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
        let e = page_entropy(&page, &Engine::default());
        assert_eq!(e.class, Class::Delta);
        assert!(e.output_bits < e.input_bits / 4.0, "{e:?}");
    }
}
