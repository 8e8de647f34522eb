//! Shared test helpers: the sample pages shipped in `data/` and page generators.
#![allow(dead_code)]

use std::path::Path;
use zpage::Page;

pub mod pages;
pub mod redis_server;

/// Skips a test whose environment lacks what it needs (userfaultfd, O_DIRECT, root),
/// saying why; where `ZPAGE_REQUIRE_ALL` is set (CI, on a machine that has them all) a
/// skip is a failure instead, so a test can never pass there without running.
pub fn skip(reason: &str) {
    assert!(
        std::env::var_os("ZPAGE_REQUIRE_ALL").is_none(),
        "ZPAGE_REQUIRE_ALL is set, but this test would skip: {reason}"
    );
    eprintln!("skipped: {reason}");
}

/// Every page of the shipped sample.
pub fn sample_pages() -> Vec<Page> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    pages::read_dir(&data)
        .into_iter()
        .flat_map(|file| file.pages)
        .collect()
}

/// Deterministic xorshift generator (tests must not depend on a seed from the clock).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn from_words(f: impl Fn(usize) -> u64) -> Page {
    let mut p = Page::zeroed();
    for (i, w) in p.words_mut().iter_mut().enumerate() {
        *w = f(i);
    }
    p
}

/// A page of short decimals (a slow signal in steps of 0.005), where every
/// `exception_every`-th word (if non-zero) is a NaN, a -0.0 or 1/3 instead.
pub fn decimal_page(exception_every: usize) -> Page {
    from_words(|i| {
        if exception_every != 0 && i % exception_every == 0 {
            return [f64::NAN, -0.0, 1.0 / 3.0][i % 3].to_bits();
        }
        let k = ((i as f64 * 0.05).sin() * 200.0).round() as i64;
        (k as f64 / 200.0).to_bits()
    })
}

/// Pages built to break codecs: extremes, alternations, NaNs, lone bytes.
pub fn adversarial_pages() -> Vec<(&'static str, Page)> {
    let mut v = vec![
        ("all zero", Page::zeroed()),
        ("all 0xff", *Page::filled(u64::MAX)),
        (
            "alternating words",
            from_words(|i| if i % 2 == 0 { 0 } else { u64::MAX }),
        ),
        (
            "alternating 0x55/0xaa",
            from_words(|i| {
                if i % 2 == 0 {
                    0x5555_5555_5555_5555
                } else {
                    0xaaaa_aaaa_aaaa_aaaa
                }
            }),
        ),
        (
            "extreme deltas",
            from_words(|i| {
                if i % 2 == 0 {
                    i64::MIN as u64
                } else {
                    i64::MAX as u64
                }
            }),
        ),
        ("ramp", from_words(|i| i as u64)),
        ("descending ramp", from_words(|i| u64::MAX - i as u64 * 3)),
        (
            "NaNs and infinities",
            from_words(|i| match i % 4 {
                0 => f64::NAN.to_bits(),
                1 => f64::INFINITY.to_bits(),
                2 => f64::NEG_INFINITY.to_bits(),
                _ => (-0.0f64).to_bits(),
            }),
        ),
        ("floats", from_words(|i| (i as f64 * 0.1).sin().to_bits())),
        (
            // Two 32-bit values a word, as a JVM's compressed pointers lie: the word
            // form's narrow width.
            "compressed pointers",
            from_words(|i| {
                let pointer = |k: u64| 0x0040_0000 + (k * 2_654_435_761 % 600) * 8;
                pointer(2 * i as u64) | pointer(2 * i as u64 + 1) << 32
            }),
        ),
        ("decimals", decimal_page(0)),
        ("decimals with NaNs and -0", decimal_page(7)),
        ("decimals, every other word not", decimal_page(2)),
        (
            "decimals at the widest exponent",
            from_words(|i| (i as f64 * 1e-12 + 0.5).to_bits()),
        ),
        ("u32 ramp", {
            let mut p = Page::zeroed();
            for (i, w) in bytemuck::cast_slice_mut::<u8, u32>(p.bytes_mut())
                .iter_mut()
                .enumerate()
            {
                *w = i as u32 * 7;
            }
            p
        }),
        ("u16 saw", {
            let mut p = Page::zeroed();
            for (i, w) in bytemuck::cast_slice_mut::<u8, u16>(p.bytes_mut())
                .iter_mut()
                .enumerate()
            {
                *w = (i % 300) as u16;
            }
            p
        }),
        ("16-byte records of u32 fields", {
            // A row array: an offset stepping down, a length, a key counting up, flags.
            let mut p = Page::zeroed();
            for (i, r) in bytemuck::cast_slice_mut::<u8, u32>(p.bytes_mut())
                .chunks_exact_mut(4)
                .enumerate()
            {
                let i = i as u32;
                r.copy_from_slice(&[0x9000 - 16 * i, 40, 7_000_000 + i, (i % 5) << 24]);
            }
            p
        }),
        (
            "32-byte records of u64 fields",
            from_words(|i| match i % 4 {
                0 => 0x7f3a_0000_1000 + 32 * i as u64,
                1 => 0x0d00_10b7_2300_0000,
                2 => 1_000_000 - i as u64,
                _ => (i as u64 * 2654435761) % 7,
            }),
        ),
        ("byte gradient", {
            let mut p = Page::zeroed();
            for (i, b) in p.bytes_mut().iter_mut().enumerate() {
                *b = (i / 16) as u8;
            }
            p
        }),
    ];
    let mut last = Page::zeroed();
    last.0[4095] = 1;
    v.push(("single non-zero byte at the end", last));
    let mut first = Page::zeroed();
    first.0[0] = 0x80;
    v.push(("single non-zero byte at the start", first));
    let mut rng = Rng(0x1234_5678_9abc_def1);
    v.push(("random", from_words(|_| 0)));
    for w in v.last_mut().unwrap().1.words_mut() {
        *w = rng.next();
    }
    v
}

/// A region, or None (with the reason printed) where userfaultfd is unavailable.
pub fn region(pages: usize, resident: usize) -> Option<zpage::region::Region> {
    match zpage::region::Region::builder(pages * zpage::PAGE_SIZE)
        .resident_pages(resident)
        .build()
    {
        Ok(region) => Some(region),
        Err(zpage::region::RegionError::Unavailable(e)) => {
            skip(&format!("userfaultfd unavailable here: {e}"));
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Inserts `pages` under ids 0, 1, 2, ...
pub fn insert_all(store: &zpage::PageStore, pages: &[Page]) {
    for (id, page) in (0..).zip(pages) {
        store.insert(id, page).unwrap();
    }
}

/// Every page of `pages` reads back as inserted by [`insert_all`].
pub fn assert_holds(store: &zpage::PageStore, pages: &[Page]) {
    for (id, page) in (0..).zip(pages) {
        assert!(*store.get(id).unwrap().unwrap() == *page, "page {id}");
    }
}
