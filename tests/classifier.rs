//! The engine picks the obvious class for clearly patterned pages.

mod common;

use common::Rng;
use zpage::{Class, Engine, Page, Profile};

fn classify(page: &Page) -> [Class; 2] {
    [
        Engine::new(Profile::Fast).classify(page).class,
        Engine::new(Profile::Dense).classify(page).class,
    ]
}

#[test]
fn zero_and_same_filled_are_exact() {
    assert_eq!(classify(&Page::zeroed()), [Class::Zero; 2]);
    assert_eq!(
        classify(&Page::filled(0x0101_0101_0101_0101)),
        [Class::Same; 2]
    );
    let mut almost = *Page::filled(7);
    almost.0[4095] = 8;
    assert!(
        classify(&almost)
            .iter()
            .all(|c| !matches!(c, Class::Zero | Class::Same))
    );
}

#[test]
fn small_integers_and_counters_are_delta() {
    let mut rng = Rng(42);
    let mut small = Page::zeroed();
    small
        .words_mut()
        .iter_mut()
        .for_each(|w| *w = rng.below(1000));
    let mut counter = Page::zeroed();
    counter
        .words_mut()
        .iter_mut()
        .enumerate()
        .for_each(|(i, w)| *w = 1_700_000_000_000 + i as u64 * 1000 + rng.below(8));
    assert_eq!(classify(&small), [Class::Delta; 2]);
    assert_eq!(classify(&counter), [Class::Delta; 2]);
}

#[test]
fn random_bytes_are_incompressible_or_stored_raw() {
    let mut rng = Rng(7);
    let mut page = Page::zeroed();
    page.words_mut().iter_mut().for_each(|w| *w = rng.next());
    let mut out = Vec::new();
    for profile in [Profile::Fast, Profile::Dense] {
        assert_eq!(
            Engine::new(profile).encode(&page, &mut out),
            Class::Incompressible
        );
    }
}

#[test]
fn text_is_compressed_by_a_general_codec() {
    let text = b"GET /index.html HTTP/1.1\r\nHost: example.org\r\nUser-Agent: zpage-test/1.0\r\nAccept: */*\r\n\r\n";
    let mut page = Page::zeroed();
    for (i, b) in page.bytes_mut().iter_mut().enumerate() {
        *b = text[i % text.len()];
    }
    let [fast, dense] = classify(&page);
    assert!(matches!(fast, Class::General | Class::Delta), "{fast}");
    assert!(
        matches!(dense, Class::General | Class::Zstd | Class::Delta),
        "{dense}"
    );
    let mut out = Vec::new();
    assert!(Engine::new(Profile::Dense).encode(&page, &mut out) != Class::Incompressible);
    assert!(out.len() < 1024, "text page stored in {} bytes", out.len());
}

/// A model whose nodes are not a small tree is refused at the boundary, from JSON or
/// built in code: shared children (a DAG; the old depth walk took exponential time), and a
/// chain deeper than `MAX_DEPTH` (200,000 splits used to overflow the stack); a chain at
/// the bound loads and reports its depth.
#[test]
fn model_shapes_that_are_not_small_trees() {
    use zpage::classify::model::{MAX_DEPTH, Model, Node, Provenance};
    let split = |left, right| Node::Split {
        feature: 0,
        threshold: 0.5,
        left,
        right,
    };
    // A valid model's JSON with other nodes.
    let with_nodes = |nodes: &[Node]| {
        let mut v: serde_json::Value =
            serde_json::from_str(&Engine::new(Profile::Fast).model().to_json()).unwrap();
        v["nodes"] = serde_json::to_value(nodes).unwrap();
        v.to_string()
    };
    // Node i's two children are both i + 1: 2^60 paths through 61 nodes.
    let mut dag: Vec<Node> = (0..60).map(|i| split(i + 1, i + 1)).collect();
    dag.push(Node::Leaf(Class::General));
    let Err(err) = Model::from_json(&with_nodes(&dag)) else {
        panic!("a DAG is refused");
    };
    assert!(err.to_string().contains("not a tree"), "{err}");
    let codec = *Engine::new(Profile::Fast).model().codec();
    assert!(Model::new(Profile::Fast, codec, dag, Provenance::default()).is_err());
    // Node 2i splits into the leaf 2i + 1 and the next split 2i + 2.
    let chain = |splits: u32| -> Vec<Node> {
        let mut nodes: Vec<Node> = (0..splits)
            .flat_map(|i| [split(2 * i + 1, 2 * i + 2), Node::Leaf(Class::General)])
            .collect();
        nodes.push(Node::Leaf(Class::General));
        nodes
    };
    let Err(err) = Model::from_json(&with_nodes(&chain(200_000))) else {
        panic!("too deep");
    };
    assert!(err.to_string().contains("levels deep"), "{err}");
    let bound = MAX_DEPTH as u32 - 1;
    let model = Model::from_json(&with_nodes(&chain(bound))).expect("a chain at the bound");
    assert_eq!(model.depth(), MAX_DEPTH);
    let model = Model::new(Profile::Fast, codec, chain(bound), Provenance::default()).unwrap();
    assert_eq!(model.depth(), MAX_DEPTH);
}

/// Model files written before `Class::Dense` became `Class::Zstd` name the leaf `dense`:
/// they still load, to the same class; new files write `zstd`.
#[test]
fn model_files_with_the_old_class_name_still_load() {
    let json = Engine::new(Profile::Dense).model().to_json();
    assert!(json.contains("\"zstd\"") && !json.contains("\"leaf\": \"dense\""));
    let old = json.replace("\"leaf\": \"zstd\"", "\"leaf\": \"dense\"");
    assert_ne!(old, json, "the dense model has zstd leaves");
    let model = zpage::Model::from_json(&old).expect("an old model file loads");
    assert_eq!(model.nodes(), Engine::new(Profile::Dense).model().nodes());
}

#[test]
fn the_words_profile_plans_the_word_form_for_every_page() {
    use zpage::classify::plan::{Plan, Second, WORDS_SECOND_LOOK};
    let words = Engine::new("words".parse().unwrap());
    assert_eq!(words.model().profile(), Profile::Words);
    let expected = Plan {
        class: Class::Words,
        second: Some(Second {
            class: Class::General,
            above: WORDS_SECOND_LOOK,
        }),
    };
    let mut rng = Rng(3);
    for page in common::sample_pages().iter().step_by(50) {
        if page.same_filled_word().is_none() {
            assert_eq!(words.classify(page), expected);
        }
    }
    // The exact scan still decides zero and same-filled pages.
    assert_eq!(words.classify(&Page::zeroed()).class, Class::Zero);
    // Text, which words cannot shrink, comes out as LZ4 saves it.
    let mut text = Page::zeroed();
    let line = b"the quick brown fox jumps over the lazy dog; ";
    for (i, b) in text.0.iter_mut().enumerate() {
        *b = line[(i + rng.below(2) as usize) % line.len()];
    }
    let mut out = Vec::new();
    assert_eq!(words.encode(&text, &mut out), Class::General);
}
