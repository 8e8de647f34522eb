//! Codec round-trips and decoder robustness.

mod common;

use common::{Rng, adversarial_pages, decimal_page, sample_pages};
use proptest::prelude::*;
use zpage::classify::plan::{self, Plan, Second};
use zpage::codec::{self, Class, CodecConfig};
use zpage::{Engine, Page, Profile};

const CONFIGS: [CodecConfig; 2] = [CodecConfig::FAST, CodecConfig::DENSE];

fn round_trip(page: &Page, what: &str) {
    let mut out = Vec::new();
    let mut back = Page::zeroed();
    for config in &CONFIGS {
        for class in Class::ALL {
            let stored = codec::encode(class, page, config, &mut out);
            assert!(
                out.len() <= codec::RAW_SIZE,
                "{what}: {class} form of {} bytes",
                out.len()
            );
            assert_eq!(
                codec::decode(&out, &mut back),
                Ok(stored),
                "{what}: {class}"
            );
            assert!(
                back == *page,
                "{what}: {class} (stored as {stored}) decodes to another page"
            );
        }
    }
    for profile in [Profile::Fast, Profile::Dense] {
        Engine::new(profile).encode(page, &mut out);
        Engine::decode(&out, &mut back).unwrap();
        assert!(back == *page, "{what}: engine {profile:?}");
    }
}

#[test]
fn adversarial_pages_round_trip() {
    for (what, page) in adversarial_pages() {
        round_trip(&page, what);
    }
}

#[test]
fn sample_pages_round_trip() {
    for (i, page) in sample_pages().iter().enumerate().step_by(3) {
        round_trip(page, &format!("sample page {i}"));
    }
}

/// A dense-profile delta plan tries zstd on the page when the delta form is not small.
fn delta_plan() -> Plan {
    Plan::for_leaf(
        Class::Delta,
        &[0.0; zpage::classify::features::COUNT],
        Profile::Dense,
        &CodecConfig::DENSE,
    )
}

#[test]
fn dense_delta_forms_that_are_not_small_are_no_larger_than_zstd() {
    let engine = Engine::new(Profile::Dense);
    let (mut stored_form, mut delta, mut zstd) = (Vec::new(), Vec::new(), Vec::new());
    let mut second_opinions = 0;
    for page in sample_pages() {
        let stored = engine.encode_plan(&delta_plan(), &page, &mut stored_form);
        let delta_class = codec::encode(Class::Delta, &page, &CodecConfig::DENSE, &mut delta);
        let zstd_class = codec::encode(Class::Zstd, &page, &CodecConfig::DENSE, &mut zstd);
        if delta_class == Class::Delta && delta.len() <= plan::SECOND_OPINION {
            assert_eq!(
                stored_form, delta,
                "a small delta form is kept without a look"
            );
            continue;
        }
        second_opinions += 1;
        assert_eq!(stored_form.len(), delta.len().min(zstd.len()));
        if stored == Class::Zstd {
            assert_eq!(stored_form, zstd);
        }
        if zstd_class == Class::Zstd {
            assert!(stored_form.len() <= zstd.len());
        }
    }
    assert!(
        second_opinions > 0,
        "the sample has delta pages that need a second opinion"
    );
}

#[test]
fn dense_engine_stores_record_arrays_as_the_better_of_delta_and_zstd() {
    let engine = Engine::new(Profile::Dense);
    let (mut stored, mut delta, mut zstd) = (Vec::new(), Vec::new(), Vec::new());
    for (what, page) in adversarial_pages() {
        if !what.contains("records") {
            continue;
        }
        engine.encode(&page, &mut stored);
        codec::encode(Class::Delta, &page, &CodecConfig::DENSE, &mut delta);
        codec::encode(Class::Zstd, &page, &CodecConfig::DENSE, &mut zstd);
        let best = delta.len().min(zstd.len());
        assert!(stored.len() <= best, "{what}: {} > {best}", stored.len());
    }
}

#[test]
fn a_plan_keeps_its_second_form_only_when_smaller() {
    let engine = Engine::new(Profile::Dense);
    let ramp = adversarial_pages()
        .into_iter()
        .find(|(what, _)| *what == "ramp")
        .expect("a ramp page")
        .1;
    let (mut out, mut delta) = (Vec::new(), Vec::new());
    // Incompressible first, delta always second: the ramp's delta form replaces the copy.
    let plan = Plan {
        class: Class::Incompressible,
        second: Some(Second {
            class: Class::Delta,
            above: 0,
        }),
    };
    assert_eq!(engine.encode_plan(&plan, &ramp, &mut out), Class::Delta);
    codec::encode(Class::Delta, &ramp, &CodecConfig::DENSE, &mut delta);
    assert_eq!(out, delta);
    // The ramp's delta form first and raw second: the first is smaller and kept.
    let plan = Plan {
        class: Class::Delta,
        second: Some(Second {
            class: Class::Incompressible,
            above: 0,
        }),
    };
    assert_eq!(engine.encode_plan(&plan, &ramp, &mut out), Class::Delta);
    assert_eq!(out, delta);
    // A condition that does not hold: the second form is never tried.
    let plan = Plan {
        class: Class::Incompressible,
        second: Some(Second {
            class: Class::Delta,
            above: codec::RAW_SIZE,
        }),
    };
    assert_eq!(
        engine.encode_plan(&plan, &ramp, &mut out),
        Class::Incompressible
    );
}

/// Every page is stored as its plan says: the plan's first form, its second, or (when
/// both reach the huge threshold) the incompressible form; and no larger than the first.
#[test]
fn the_engine_stores_what_classify_reports() {
    for profile in [Profile::Fast, Profile::Dense] {
        let engine = Engine::new(profile);
        let (mut stored, mut first) = (Vec::new(), Vec::new());
        for (i, page) in sample_pages().iter().enumerate() {
            let plan = engine.classify(page);
            let class = engine.encode(page, &mut stored);
            let allowed = [
                Some(plan.class),
                plan.second.map(|s| s.class),
                Some(Class::Incompressible),
            ];
            assert!(
                allowed.contains(&Some(class)),
                "page {i}: {class} from {plan:?}"
            );
            if !matches!(plan.class, Class::Zero | Class::Same) {
                codec::encode(plan.class, page, engine.codec(), &mut first);
                assert!(stored.len() <= first.len(), "page {i} ({profile:?})");
            }
        }
    }
}

#[test]
fn decimal_floats_store_as_their_digits() {
    let mut out = Vec::new();
    let mut back = Page::zeroed();
    for (exceptions, limit) in [(0, 600), (64, 600 + 8 * 10)] {
        let page = decimal_page(exceptions);
        for config in &CONFIGS {
            codec::encode(Class::Delta, &page, config, &mut out);
            // 511 deltas of at most 2 * 0.05 * 200 = 20 steps of 0.005 (6 bits with sign).
            assert!(
                out.len() <= limit,
                "{} bytes ({exceptions}, {config:?})",
                out.len()
            );
            assert_eq!(out[1] >> 2 & 3, 3, "the decimal transform was chosen");
            codec::decode(&out, &mut back).unwrap();
            assert!(back == page);
        }
    }
    // A corrupt prelude is refused: exponent out of range, positions out of order, truncated.
    let page = decimal_page(64);
    codec::encode(Class::Delta, &page, &CodecConfig::DENSE, &mut out);
    let mut bad = out.clone();
    bad[2] = 13;
    assert!(codec::decode(&bad, &mut back).is_err());
    let mut bad = out.clone();
    bad.swap(4, 6);
    bad.swap(5, 7);
    assert!(codec::decode(&bad, &mut back).is_err());
    assert!(codec::decode(&out[..20], &mut back).is_err());
}

/// Pages with structure a codec might mishandle: narrow values at some width and offset,
/// runs, and random bytes sprinkled in.
fn structured_page() -> impl Strategy<Value = Page> {
    (any::<u64>(), 0u32..4, 0u32..65, 0usize..64, any::<bool>()).prop_map(
        |(seed, width_log, bits, noise, xor)| {
            let mut rng = Rng(seed | 1);
            let mut page = Page::zeroed();
            let width = 1usize << width_log;
            let mask = if bits >= 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            let mut acc = rng.next();
            for chunk in page.bytes_mut().chunks_exact_mut(width) {
                acc = if xor {
                    acc ^ (rng.next() & mask)
                } else {
                    acc.wrapping_add(rng.next() & mask)
                };
                chunk.copy_from_slice(&acc.to_le_bytes()[..width]);
            }
            for _ in 0..noise {
                let at = rng.below(4096) as usize;
                page.0[at] = rng.next() as u8;
            }
            page
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn structured_pages_round_trip(page in structured_page()) {
        round_trip(&page, "structured");
    }

    #[test]
    fn arbitrary_pages_round_trip(bytes in proptest::collection::vec(any::<u8>(), 4096)) {
        round_trip(&Page::from_slice(&bytes).unwrap(), "arbitrary");
    }
}

/// Feeds a decoder random, truncated and bit-flipped forms; it must never panic, and a
/// form with a structural error must be refused.
fn fuzz_decoders(cases: u64, classes: &[Class]) {
    fuzz_decoders_from(0xfeed_f00d_dead_beef, cases, classes)
}

fn fuzz_decoders_from(seed: u64, cases: u64, classes: &[Class]) {
    let mut rng = Rng(seed);
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    let mut out = Vec::new();
    let pages: Vec<Page> = sample_pages()
        .into_iter()
        .step_by(37)
        .chain(adversarial_pages().into_iter().map(|p| p.1))
        .collect();
    for page in &pages {
        for config in &CONFIGS {
            for &class in classes {
                codec::encode(class, page, config, &mut out);
                seeds.push(out.clone());
            }
        }
    }
    let tags: Vec<u8> = classes.iter().map(|c| c.tag()).collect();
    let mut back = Page::zeroed();
    for i in 0..cases {
        let seed = &seeds[rng.below(seeds.len() as u64) as usize];
        let mut input = seed.clone();
        match i % 4 {
            0 => input.truncate(rng.below(input.len() as u64) as usize),
            1 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(input.len() as u64) as usize;
                    input[at] ^= 1 << rng.below(8);
                }
            }
            2 => {
                let len = rng.below(5000) as usize;
                input = (0..len).map(|_| rng.next() as u8).collect();
                if let Some(tag) = input.first_mut() {
                    *tag = tags[*tag as usize % tags.len()];
                }
            }
            _ => {
                let extra = 1 + rng.below(16) as usize;
                input.extend((0..extra).map(|_| rng.next() as u8));
                // Trailing bytes after a complete form are corruption for fixed-size forms.
                if matches!(
                    codec::stored_class(seed),
                    Ok(Class::Zero | Class::Same | Class::Incompressible)
                ) {
                    assert!(
                        codec::decode(&input, &mut back).is_err(),
                        "case {i}: trailing bytes accepted"
                    );
                }
            }
        }
        let _ = codec::decode(&input, &mut back);
        // A long campaign says how far it got (seen with --nocapture).
        if (i + 1) % 250_000 == 0 {
            eprintln!("{} of {cases} inputs decoded or refused, no panic", i + 1);
        }
    }
}

#[test]
fn decoders_survive_corrupt_input() {
    fuzz_decoders(30_000, &Class::ALL);
}

/// The cold units' decoder fed random, truncated, bit-flipped and extended frames of
/// both layouts, into buffers of the right and wrong sizes: never a panic, and never a
/// short frame or a wrong size accepted.
#[test]
fn the_unit_decoder_survives_corrupt_input() {
    use zpage::codec::dict::Dictionary;
    use zpage::codec::unit;
    let pages = sample_pages();
    let samples: Vec<&[u8]> = pages.iter().step_by(3).map(|p| &p.bytes()[..]).collect();
    let twin = Dictionary::train_planes(&samples, 16 << 10, 5, 3).unwrap();
    let dict = Dictionary::train(&samples, 16 << 10, 5, 3)
        .unwrap()
        .with_planes(twin);
    let mut seeds: Vec<(Vec<u8>, usize)> = Vec::new();
    for (n, chunk) in pages.chunks(8).enumerate() {
        let bytes: Vec<u8> = chunk.iter().flat_map(|p| p.bytes().to_vec()).collect();
        let mut frame = Vec::new();
        unit::encode(&bytes, (n % 2 == 0).then_some(&dict), 3, &mut frame);
        let mut out = vec![0; bytes.len()];
        unit::decode(&frame, &dict, &mut out).unwrap();
        assert!(out == bytes, "unit {n} round trips");
        seeds.push((frame, chunk.len()));
    }
    for layout in [unit::Layout::Pages, unit::Layout::Planes] {
        assert!(
            seeds
                .iter()
                .any(|(frame, _)| unit::layout(frame) == Some(layout)),
            "{layout:?}"
        );
    }
    let mut rng = Rng(0x5eed_0f01_2345);
    for i in 0..20_000u64 {
        let (seed, pages) = &seeds[rng.below(seeds.len() as u64) as usize];
        let mut input = seed.clone();
        let mut size = pages * zpage::PAGE_SIZE;
        match i % 5 {
            0 => {
                input.truncate(rng.below(input.len() as u64) as usize);
                let mut out = vec![0; size];
                assert!(
                    unit::decode(&input, &dict, &mut out).is_err(),
                    "case {i}: cut frame"
                );
                continue;
            }
            1 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(input.len() as u64) as usize;
                    input[at] ^= 1 << rng.below(8);
                }
            }
            2 => input = (0..rng.below(9000)).map(|_| rng.next() as u8).collect(),
            3 => input.extend((0..1 + rng.below(16)).map(|_| rng.next() as u8)),
            _ => {
                size = (rng.below(40) as usize) * zpage::PAGE_SIZE / 2;
                if size != pages * zpage::PAGE_SIZE {
                    let mut out = vec![0; size];
                    assert!(
                        unit::decode(&input, &dict, &mut out).is_err(),
                        "case {i}: size"
                    );
                    continue;
                }
            }
        }
        let mut out = vec![0; size];
        let _ = unit::decode(&input, &dict, &mut out);
    }
}

/// The long run behind the "one million inputs, no panic" figure:
/// `cargo test --release --test codec -- --ignored a_million`.
#[test]
#[ignore]
fn decoders_survive_a_million_corrupt_inputs() {
    fuzz_decoders(1_000_000, &Class::ALL);
}

/// The mixed decoder alone, whose inputs cost up to a page's decode each:
/// `ZPAGE_FUZZ_CASES=N [ZPAGE_FUZZ_SEED=S] cargo test --release --test codec -- --ignored
/// mixed` (default 100,000 cases; runs with different seeds share the work of a long
/// campaign between cores).
#[test]
#[ignore]
fn the_mixed_decoder_survives_corrupt_input() {
    let var = |name, default| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    fuzz_decoders_from(
        var("ZPAGE_FUZZ_SEED", 0xfeed_f00d_dead_beef),
        var("ZPAGE_FUZZ_CASES", 100_000),
        &[Class::Mixed],
    );
}

/// A page whose mixed form would take its decoder past the budget (noise, ten decisions a
/// byte) is not kept mixed: the cold forms fall back, and still round-trip.
#[test]
fn a_mixed_form_past_the_decoders_budget_is_not_kept() {
    let mut rng = Rng(7);
    let mut noise = Page::zeroed();
    for w in noise.words_mut() {
        *w = rng.next();
    }
    let config = CodecConfig::default();
    let mut out = Vec::new();
    assert_eq!(
        codec::encode_mixed(&noise, None, &config, &mut out),
        Class::Incompressible
    );
    assert_ne!(
        codec::encode(Class::Mixed, &noise, &config, &mut out),
        Class::Mixed
    );
    let mut back = Page::zeroed();
    codec::decode(&out, &mut back).unwrap();
    assert!(back == noise);
    for page in sample_pages().iter().take(64) {
        if codec::encode_mixed(page, None, &config, &mut out) == Class::Mixed {
            codec::decode(&out, &mut back).unwrap();
            assert!(back == *page);
        }
    }
}

#[test]
fn structural_errors_are_reported() {
    let mut back = Page::zeroed();
    assert_eq!(
        codec::decode(&[], &mut back),
        Err(zpage::DecodeError::Empty)
    );
    assert!(matches!(
        codec::decode(&[9], &mut back),
        Err(zpage::DecodeError::UnknownTag(9))
    ));
    assert!(codec::decode(&[Class::Same.tag(), 1, 2, 3], &mut back).is_err());
    assert!(codec::decode(&[Class::Zero.tag(), 0], &mut back).is_err());
    assert!(codec::decode(&[Class::Incompressible.tag(); 100], &mut back).is_err());
    assert!(codec::decode(&[Class::General.tag(), 0xff, 0xff], &mut back).is_err());
    assert!(codec::decode(&[Class::Zstd.tag(), 1, 2, 3, 4], &mut back).is_err());
    assert!(codec::decode(&[Class::Delta.tag(), 0x80], &mut back).is_err());
}

/// Which layer guarantees what: a form altered yet well formed decodes (to another page),
/// so `codec::decode` cannot refuse it; the store's checksum does (its unit test
/// `corrupt_bytes_fail_their_checksum`).
#[test]
fn an_altered_well_formed_form_decodes_to_another_page() {
    let mut rng = Rng(5);
    let mut page = Page::zeroed();
    page.words_mut().iter_mut().for_each(|w| *w = rng.next());
    let mut form = Vec::new();
    assert_eq!(
        codec::encode(Class::Incompressible, &page, &CodecConfig::FAST, &mut form),
        Class::Incompressible
    );
    form[1000] ^= 4;
    let mut back = Page::zeroed();
    codec::decode(&form, &mut back).expect("still well formed");
    assert!(back != page);
}
