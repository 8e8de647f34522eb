//! The engine picks the obvious class for clearly patterned pages.

mod common;

use common::Rng;
use zpage::{Class, Engine, Page, Profile};

fn classify(page: &Page) -> [Class; 2] {
    [
        Engine::new(Profile::Fast).classify(page),
        Engine::new(Profile::Dense).classify(page),
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
        matches!(dense, Class::General | Class::Dense | Class::Delta),
        "{dense}"
    );
    let mut out = Vec::new();
    assert!(Engine::new(Profile::Dense).encode(&page, &mut out) != Class::Incompressible);
    assert!(out.len() < 1024, "text page stored in {} bytes", out.len());
}

/// A model file whose nodes share children (a DAG: the old depth walk took exponential
/// time) is refused; a valid chain of 200,000 splits (the old walk overflowed the stack)
/// loads and reports its depth.
#[test]
fn model_shapes_that_are_not_small_trees() {
    use zpage::model::Node;
    let base = Engine::new(Profile::Fast).model().clone();
    let split = |left, right| Node::Split {
        feature: 0,
        threshold: 0.5,
        left,
        right,
    };
    let mut dag = base.clone();
    // Node i's two children are both i + 1: 2^60 paths through 61 nodes.
    dag.nodes = (0..60).map(|i| split(i + 1, i + 1)).collect();
    dag.nodes.push(Node::Leaf(Class::General));
    let Err(err) = zpage::Model::from_json(&dag.to_json()) else {
        panic!("a DAG is refused");
    };
    assert!(err.to_string().contains("not a tree"), "{err}");
    let mut chain = base;
    let n = 200_000u32;
    // Node 2i splits into the leaf 2i + 1 and the next split 2i + 2.
    chain.nodes = (0..n)
        .flat_map(|i| [split(2 * i + 1, 2 * i + 2), Node::Leaf(Class::General)])
        .collect();
    chain.nodes.push(Node::Leaf(Class::General));
    let model = zpage::Model::from_json(&chain.to_json()).expect("a deep chain is a valid tree");
    assert_eq!(model.depth(), n as usize + 1);
}
