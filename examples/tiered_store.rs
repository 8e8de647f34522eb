//! A tiered store as an application would run it: pages arrive on the fast path, the idle
//! pass re-encodes the ones left idle with the dense profile and the dictionaries it
//! trains on them, and a quarter of them go on to a backing file. Every
//! page is read back and compared at the end, wherever it then lives. (An application
//! would let `StoreBuilder::background` run the pass on a worker thread; here it is
//! called, so the figures after it are deterministic.)
//!
//! Run: `cargo run --release --example tiered_store [PAGE_FILE [redis://HOST:PORT]]`
//! (default: the sample in `data/`, a backing file in a temporary directory; with a
//! Valkey/Redis URL, that server, which needs `--features redis`).

use std::sync::Arc;
use std::time::Instant;
use zpage::store::{Backing, BackingFile, Selection};
use zpage::{PAGE_SIZE, Page, PageStore, Profile};

/// The backing store the second argument names: a Valkey/Redis server, or else a file in
/// `dir` with room for `pages` pages.
fn backing(
    url: Option<String>,
    dir: &std::path::Path,
    pages: usize,
) -> Result<Arc<dyn Backing>, Box<dyn std::error::Error>> {
    match url {
        #[cfg(feature = "redis")]
        Some(url) => {
            let options = zpage::RedisOptions::new(pages as u64);
            Ok(Arc::new(zpage::RedisBacking::open(&url, options)?))
        }
        #[cfg(not(feature = "redis"))]
        Some(url) => Err(format!("{url}: build the example with --features redis").into()),
        None => Ok(Arc::new(BackingFile::open(
            &dir.join("backing"),
            (pages * PAGE_SIZE) as u64,
        )?)),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/data/redis-mixed.pages").to_string()
    });
    let bytes = std::fs::read(&path)?;
    let pages: Vec<Box<Page>> = bytes
        .chunks_exact(PAGE_SIZE)
        .filter_map(Page::from_slice)
        .collect();
    let dir = std::env::temp_dir().join(format!("zpage-tiered-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = PageStore::builder()
        .profile(Profile::Words)
        .idle_profile(Profile::Dense)
        .auto_dictionaries(64)
        .backing(backing(std::env::args().nth(2), &dir, pages.len())?)
        .build();
    let start = Instant::now();
    for (id, page) in (0..).zip(&pages) {
        store.insert(id, page)?;
    }
    let inserted = start.elapsed();
    let fast = store.stats();
    // Every page is idle here; a worker would mark those untouched for a while.
    store.mark_idle(None);
    let start = Instant::now();
    let pass = store.recompress_selected(Selection::all().idle());
    let pass_time = start.elapsed();
    let idle = store.stats();
    // The coldest pages go to the backing store (here all are equally cold: a quarter).
    let quarter = pages.len() as u64 / 4;
    let written = store.writeback(Selection::all().idle().max_pages(quarter))?;
    for (id, page) in (0..).zip(&pages) {
        assert!(
            *store.read(id)? == **page,
            "page {id} reads back as written"
        );
    }
    let end = store.stats();
    println!(
        "{} pages from {path}: inserted at {:.0} MB/s",
        pages.len(),
        (pages.len() * PAGE_SIZE) as f64 / inserted.as_secs_f64() / 1e6
    );
    println!(
        "  after inserts:    effective ratio {:.3}",
        fast.effective_ratio()
    );
    println!(
        "  after idle pass:  effective ratio {:.3} ({} dictionaries; {} pages rewritten in {:.2} s)",
        idle.effective_ratio(),
        idle.dictionaries,
        pass.rewritten,
        pass_time.as_secs_f64()
    );
    println!(
        "  after writeback:  {} pages written back; effective ratio {:.3}",
        written.written,
        end.effective_ratio()
    );
    println!("  mm_stat {}", store.mm_stat());
    println!("  bd_stat {}   io_stat {}", end.bd, end.io);
    println!("  every page read back and compared");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
