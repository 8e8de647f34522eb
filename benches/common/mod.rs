//! Pages for the benches: the development corpus when it is beside the checkout,
//! otherwise the small sample shipped in the repo.

// Shared with the tests; not every bench reads every field.
#[allow(dead_code)]
#[path = "../../tests/common/pages.rs"]
mod pages;

use std::path::{Path, PathBuf};
use zpage::Page;

pub use pages::Named;

pub fn corpus_dir() -> PathBuf {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if shared.is_dir() {
        shared
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
    }
}

/// Every page set of the corpus.
pub fn sets() -> Vec<Named> {
    pages::read_dir(&corpus_dir())
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

/// The store `builder` makes, holding `pages` under ids 0, 1, ... (not every bench
/// builds a store).
#[allow(dead_code)]
pub fn filled(builder: zpage::StoreBuilder, pages: &[Page]) -> zpage::PageStore {
    let store = builder.build();
    for (id, page) in (0..).zip(pages) {
        store.insert(id, page).unwrap();
    }
    store
}
