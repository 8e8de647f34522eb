//! Pages for the benches: the shared corpus when it is beside the checkout, otherwise
//! the small sample shipped in the repo.

use std::path::{Path, PathBuf};
use zpage::Page;
use zpage::pagefile::{self, PageSet};

pub fn corpus_dir() -> PathBuf {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if shared.is_dir() {
        shared
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
    }
}

/// Every page set of the corpus.
pub fn sets() -> Vec<PageSet> {
    pagefile::read_all(&[corpus_dir()], true).expect("corpus readable")
}

/// Up to `per_set` pages from each set, spread evenly.
#[allow(dead_code)]
pub fn mixed(per_set: usize) -> Vec<Page> {
    let mut out = Vec::new();
    for set in sets() {
        let step = (set.pages.len() / per_set).max(1);
        out.extend(set.pages.iter().step_by(step).take(per_set).copied());
    }
    out
}
