//! Training and evaluating the classifier: the oracle that labels pages, a small
//! cost-sensitive CART, and the regret/accuracy report.
//!
//! Invariants: the oracle encodes every page with every codec the profile allows and
//! records each stored size, so labels, regret and the tree's leaves all come from the
//! same measured bytes. A leaf is priced by the [`Plan`] the model would make for the
//! page with that leaf (the forms the store would try, and the smaller it would keep):
//! a page's cost under a leaf is the plan's stored size plus `speed_weight` × the
//! relative compress cost of every form the plan tries (LZ4 = 1), so a slower codec is
//! chosen only when it saves enough, and the regret reported is that of what the store
//! does. Splits minimise the summed cost of the leaves directly (not Gini), which is
//! exactly what regret measures. Zero and same-filled pages are left to the engine's
//! exact scan and carry no tree label.
//!
//! The store's life cycle goes past the tree: its cold pass packs neighbouring pages into
//! units where smaller than their forms, its coldest pass keeps a unit's pages mixed
//! where smaller still. [`Oracle::price_cold`] measures both on neighbouring test pages
//! (each unit's frame, each page's mixed form), and [`evaluate`] replays the passes'
//! rules over the forms the tree chose and over the oracle's, so regret is reported on
//! the bytes the store keeps after each step, not only on the forms it starts from.

use serde::Serialize;
use std::time::Instant;
use zpage::classify::features::{self, Features};
use zpage::classify::model::{Model, Node, Profile, Provenance};
use zpage::classify::plan::Plan;
use zpage::codec::delta::{self, Backend};
use zpage::codec::dictset::DictionarySet;
use zpage::codec::{self, Class, CodecConfig};
use zpage::engine;
use zpage::page::Page;
use zpage::store::{COLD_LEVEL, DEFAULT_UNIT_PAGES};

const K: usize = Class::ALL.len();

/// Relative compress cost of encoding a page as `requested` (LZ4 on a page = 1), measured
/// with the codec benches on this machine and rounded; only their ratios matter. A codec
/// that fell back to the incompressible form still spent its time: the copy adds to it.
pub fn relative_cost(requested: Class, stored: &[u8], config: &CodecConfig) -> f64 {
    const RAW: f64 = 0.1;
    let stored_class = codec::stored_class(stored).ok();
    let attempt = match requested {
        Class::Zero | Class::Same => 0.0,
        Class::Incompressible => return RAW,
        Class::General => 1.0,
        Class::Zstd => 2.5,
        Class::Words => 0.4,
        Class::Mixed => 160.0,
        // A delta page that fell back to raw tried the configured backend.
        Class::Delta => match stored_class
            .filter(|&c| c == Class::Delta)
            .and_then(|_| delta::backend_of(&stored[1..]))
            .unwrap_or(config.delta_backend)
        {
            Backend::Bitpack => 0.6,
            Backend::Lz4 => 1.2,
            Backend::Zstd => 3.0,
        },
        // A class this build does not price: as LZ4, until measured.
        _ => 1.0,
    };
    match stored_class {
        Some(Class::Incompressible) => attempt + RAW,
        _ => attempt,
    }
}

/// One form of one page as the oracle measured it.
#[derive(Clone, Copy, Debug)]
struct Form {
    /// Bytes the form takes in the store's allocator.
    stored: u32,
    /// Its encoded length, tag included (what a plan's condition looks at).
    encoded: usize,
    /// Relative compress cost of the attempt.
    cost: f64,
}

/// What the oracle measured for one page.
#[derive(Clone, Debug)]
pub struct Sample {
    pub features: Features,
    /// The exact class for zero/same pages (the tree does not see those).
    pub fixed: Option<Class>,
    /// Stored bytes when the tree's leaf is each class (by [`Class::index`]): the smaller
    /// form of the leaf's plan; `u32::MAX` where the profile does not allow the leaf.
    pub sizes: [u32; K],
    /// Cost of each leaf's plan: stored bytes plus the speed weight times the compress
    /// cost of every form the plan tried; `f64::INFINITY` where not allowed.
    pub costs: [f64; K],
    /// Stored bytes of the page's mixed form, where [`Oracle::price_cold`] measured one
    /// within the decoder's budget.
    pub mixed: Option<u32>,
}

impl Sample {
    /// The oracle's choice: the allowed class of least cost.
    pub fn oracle(&self) -> Class {
        if let Some(c) = self.fixed {
            return c;
        }
        let best = (0..K)
            .min_by(|&a, &b| self.costs[a].total_cmp(&self.costs[b]))
            .expect("K > 0");
        Class::ALL[best]
    }

    pub fn size(&self, class: Class) -> u64 {
        if self.fixed.is_some() {
            return 0;
        }
        self.sizes[class.index()] as u64
    }
}

/// How much slower zstd with a dictionary (zpage's default dictionary level, 8, with its
/// per-page context) compresses than the plain zstd-3 form: measured side by side with
/// `zpage sim` (zram-best against zstd-3-all, 4.4-4.6x over the sample and five
/// captured programs), rounded.
pub const DICTIONARY_SLOWDOWN: f64 = 4.5;

/// How pages are labelled.
#[derive(Clone, Debug)]
pub struct Oracle {
    pub profile: Profile,
    pub codec: CodecConfig,
    /// Bytes a codec must save per unit of relative compress cost to be worth it.
    pub speed_weight: f64,
    /// Dictionaries the store will have: the zstd leaf is then priced by the form with
    /// the page's cluster dictionary (as the store encodes it).
    pub dictionaries: Option<DictionarySet>,
}

impl Oracle {
    pub fn new(profile: Profile) -> Oracle {
        let speed_weight = match profile {
            // Fast: a codec must save 1/32 of a page per LZ4-time it adds; at 16, delta
            // won pages by a few bytes and cost 10% of throughput for no ratio.
            Profile::Fast => 128.0,
            Profile::Dense => 48.0,
            // The way in: speed first, as fast's, and a word form that is cheaper still.
            Profile::Words => 128.0,
            // A profile this build does not know: speed first.
            _ => 128.0,
        };
        Oracle {
            profile,
            codec: profile.codec(),
            speed_weight,
            dictionaries: None,
        }
    }

    pub fn label(&self, page: &Page, scratch: &mut Vec<u8>) -> Sample {
        let mut sample = Sample {
            features: [0.0; features::COUNT],
            fixed: None,
            sizes: [u32::MAX; K],
            costs: [f64::INFINITY; K],
            mixed: None,
        };
        if let Some(word) = page.same_filled_word() {
            sample.fixed = Some(if word == 0 { Class::Zero } else { Class::Same });
            return sample;
        }
        sample.features = features::extract(page);
        let mut forms: [Option<Form>; K] = [None; K];
        let mut form = |class: Class| {
            *forms[class.index()].get_or_insert_with(|| {
                let (stored, slowdown) = match (class, &self.dictionaries) {
                    (Class::Zstd, Some(set)) => {
                        let dict = set.dictionary_for(&sample.features);
                        let stored = codec::encode_with_dictionary(
                            page,
                            dict,
                            dict.level(),
                            &self.codec,
                            scratch,
                        );
                        (stored, DICTIONARY_SLOWDOWN)
                    }
                    _ => (codec::encode(class, page, &self.codec, scratch), 1.0),
                };
                Form {
                    stored: codec::stored_size(stored, scratch.len()) as u32,
                    encoded: scratch.len(),
                    cost: relative_cost(class, scratch, &self.codec) * slowdown,
                }
            })
        };
        for leaf in Class::ALL.into_iter().filter(|&c| self.profile.allows(c)) {
            let plan = Plan::for_leaf(leaf, &sample.features, self.profile, &self.codec);
            let first = form(leaf);
            let (stored, cost) = match plan.second_after(first.encoded) {
                Some(second) => {
                    let second = form(second);
                    (first.stored.min(second.stored), first.cost + second.cost)
                }
                None => (first.stored, first.cost),
            };
            sample.sizes[leaf.index()] = stored;
            sample.costs[leaf.index()] = stored as f64 + self.speed_weight * cost;
        }
        sample
    }

    /// Labels pages on all cores (the oracle runs every codec, so it is the slow part).
    pub fn label_all(&self, pages: &[Page]) -> Vec<Sample> {
        on_all_cores(pages, |page, scratch| self.label(page, scratch))
    }
}

/// `f` over `items`, in order, on all cores (each thread with its own scratch buffer).
fn on_all_cores<T: Sync, R: Send>(items: &[T], f: impl Fn(&T, &mut Vec<u8>) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut scratch = Vec::new();
                    part.iter()
                        .map(|item| f(item, &mut scratch))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread"))
            .collect()
    })
}

/// A unit the store's cold pass would form: neighbouring pages, the samples
/// `start..end` of their input (zero and same-filled pages among them are no members, as
/// the store keeps those in metadata), and the stored bytes of its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitPrice {
    pub start: usize,
    pub end: usize,
    pub frame: u32,
}

impl Oracle {
    /// Prices the cold passes on labelled pages: `pages[i]` is labelled `samples[i]`, the
    /// input's sample `first + i`, and each of `runs` (in order, covering `pages`) is a
    /// stretch of neighbours. Each run's pages that are not zero or same-filled are
    /// packed [`DEFAULT_UNIT_PAGES`] at a time, as the store's cold pass packs them (zstd
    /// at [`COLD_LEVEL`], the first page's cluster dictionary, a unit never spanning two
    /// runs), and each gets its mixed form from its cluster's primer (kept only within
    /// the decoder's budget, as the store keeps it). On all cores.
    pub fn price_cold(
        &self,
        pages: &[Page],
        samples: &mut [Sample],
        first: usize,
        runs: &[std::ops::Range<usize>],
    ) -> Vec<UnitPrice> {
        assert_eq!(pages.len(), samples.len(), "a sample per page");
        // Members (indexes into `pages`) of each unit, in order.
        let mut units: Vec<Vec<usize>> = Vec::new();
        for run in runs {
            let stored = run.clone().filter(|&i| samples[i].fixed.is_none());
            let stored: Vec<usize> = stored.collect();
            units.extend(stored.chunks(DEFAULT_UNIT_PAGES).map(<[usize]>::to_vec));
        }
        let samples_ref = &*samples;
        let priced = on_all_cores(&units, |members, scratch| {
            self.price_unit(pages, samples_ref, members, scratch)
        });
        let mut prices = Vec::with_capacity(priced.len());
        for (members, (mut price, mixed)) in units.iter().zip(priced) {
            for (&i, mixed) in members.iter().zip(mixed) {
                samples[i].mixed = mixed;
            }
            price.start += first;
            price.end += first;
            prices.push(price);
        }
        prices
    }

    /// One unit of [`Oracle::price_cold`] (`members` index `pages`, in order): its price
    /// (sample range relative to `pages`) and each member's mixed form's stored bytes.
    fn price_unit(
        &self,
        pages: &[Page],
        samples: &[Sample],
        members: &[usize],
        scratch: &mut Vec<u8>,
    ) -> (UnitPrice, Vec<Option<u32>>) {
        let dict_of = |i: usize| {
            (self.dictionaries.as_ref()).map(|set| &**set.dictionary_for(&samples[i].features))
        };
        let mixed = (members.iter())
            .map(|&i| {
                let class = codec::encode_mixed(&pages[i], dict_of(i), &self.codec, scratch);
                (class == Class::Mixed)
                    .then(|| codec::stored_size(Class::Mixed, scratch.len()) as u32)
            })
            .collect();
        let mut bytes = Vec::with_capacity(members.len() * zpage::PAGE_SIZE);
        for &i in members {
            bytes.extend_from_slice(pages[i].bytes());
        }
        scratch.clear();
        codec::unit::encode(&bytes, dict_of(members[0]), COLD_LEVEL, scratch);
        let price = UnitPrice {
            start: members[0],
            end: members[members.len() - 1] + 1,
            frame: scratch.len() as u32,
        };
        (price, mixed)
    }
}

/// Bytes a store keeps of some pages after each step of its life cycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cycle {
    /// The forms chosen for each page (the idle pass's, with dictionaries where given).
    pub idle: u64,
    /// After the cold pass: a unit where its frame is smaller than its members' forms.
    pub cold: u64,
    /// After the coldest pass: a unit's pages mixed (each in its own form where it has no
    /// mixed one) where together they are smaller than the frame by the store's margin,
    /// and each page of a unit the cold pass did not keep mixed where that is smaller than
    /// its form by the margin, weighed as the store weighs them
    /// ([`engine::mixing_hopeless`]).
    pub coldest: u64,
}

/// The life cycle replayed on priced pages, following the tree and the oracle.
#[derive(Clone, Debug, Serialize)]
pub struct ColdEvaluation {
    pub tree: Cycle,
    pub oracle: Cycle,
    /// Regret after each step, as [`Evaluation::regret`].
    pub regret_cold: f64,
    pub regret_coldest: f64,
    /// Units formed, kept by the cold pass (the tree's forms), and turned mixed.
    pub units: u64,
    pub units_kept: u64,
    pub units_mixed: u64,
}

/// Replays the cold passes' rules over `units` of `samples`, each page in the form
/// `choose` gives; returns the bytes after each step, the units kept and those mixed.
fn replay(
    samples: &[Sample],
    units: &[UnitPrice],
    choose: impl Fn(&Sample) -> Class,
) -> (Cycle, u64, u64) {
    let idle: u64 = samples.iter().map(|s| s.size(choose(s))).sum();
    let (mut cold, mut coldest) = (idle, idle);
    let (mut kept, mut mixed) = (0, 0);
    for unit in units {
        let members: Vec<&Sample> = samples[unit.start..unit.end]
            .iter()
            .filter(|s| s.fixed.is_none())
            .collect();
        let forms: u64 = members.iter().map(|s| s.size(choose(s))).sum();
        let frame = u64::from(unit.frame);
        if frame >= forms {
            // The pages stay alone, and the coldest pass weighs them so: each kept mixed
            // where that pays for its form, until the run is hopeless.
            let (mut alone, mut weighed) = (0, 0);
            for position in engine::mixing_order(members.len()) {
                let s = members[position];
                let form = s.size(choose(s));
                let mixed = s.mixed.map_or(form, u64::from);
                (alone, weighed) = (alone + mixed, weighed + 1);
                if s.mixed.is_some() && engine::mixed_pays(mixed as usize, form as usize) {
                    coldest -= form - mixed;
                }
                if engine::mixing_hopeless(alone as usize, weighed, members.len(), forms as usize) {
                    break;
                }
            }
            continue;
        }
        kept += 1;
        cold -= forms - frame;
        // Each page mixed, or in its own form where it has no mixed one, weighed in the
        // store's order until the unit is hopeless.
        let (mut alone, mut weighed) = (0, 0);
        let hopeless = engine::mixing_order(members.len()).any(|position| {
            let s = members[position];
            alone += s.mixed.map_or_else(|| s.size(choose(s)), u64::from);
            weighed += 1;
            engine::mixing_hopeless(alone as usize, weighed, members.len(), frame as usize)
        });
        let after = if hopeless {
            frame
        } else {
            mixed += 1;
            alone
        };
        coldest -= forms - after;
    }
    (
        Cycle {
            idle,
            cold,
            coldest,
        },
        kept,
        mixed,
    )
}

/// How many more bytes the tree's forms take than the oracle's, as a fraction of the
/// oracle's.
pub fn regret(tree: u64, oracle: u64) -> f64 {
    (tree as f64 - oracle as f64) / oracle.max(1) as f64
}

/// Limits on the tree's growth.
#[derive(Clone, Copy, Debug)]
pub struct TreeLimits {
    pub max_depth: usize,
    pub min_leaf: usize,
    /// A split must lower the node's cost by this fraction of the root's cost.
    pub min_gain: f64,
}

impl TreeLimits {
    /// The limits `scripts/train-models` uses. Depth is chosen by leave-one-file-out
    /// regret (train on nine corpus files, test on the tenth), the estimate for memory
    /// of programs the corpus lacks: deeper trees learn the files, not the patterns
    /// (the figures per depth are in the README).
    pub fn for_profile(profile: Profile) -> TreeLimits {
        TreeLimits {
            max_depth: match profile {
                Profile::Dense => 5,
                _ => 3,
            },
            min_leaf: 24,
            min_gain: 0.0002,
        }
    }
}

/// Levels near the root where the fit looks one split ahead: each feature's best split
/// is grown into a whole subtree and the cheapest subtree wins. Greedy choice alone picked
/// a first split whose subtrees could not recover (fast profile: 2.4% regret where a tree
/// with 1.8% existed).
const LOOKAHEAD_LEVELS: usize = 2;

/// A tree while it is fitted, with the summed cost of the samples it decides.
enum Fitted {
    Leaf(Class, f64),
    Split {
        feature: usize,
        threshold: f32,
        left: Box<Fitted>,
        right: Box<Fitted>,
        cost: f64,
    },
}

impl Fitted {
    fn cost(&self) -> f64 {
        match self {
            Fitted::Leaf(_, cost) | Fitted::Split { cost, .. } => *cost,
        }
    }

    /// Appends the tree to `nodes` in the model's layout (a node before its children);
    /// returns its index.
    fn flatten(&self, nodes: &mut Vec<Node>) -> u32 {
        let me = nodes.len() as u32;
        match self {
            Fitted::Leaf(class, _) => nodes.push(Node::Leaf(*class)),
            Fitted::Split {
                feature,
                threshold,
                left,
                right,
                ..
            } => {
                nodes.push(Node::Leaf(Class::General));
                let left = left.flatten(nodes);
                let right = right.flatten(nodes);
                nodes[me as usize] = Node::Split {
                    feature: *feature as u8,
                    threshold: *threshold,
                    left,
                    right,
                };
            }
        }
        me
    }
}

/// Fits a cost-sensitive CART on the samples the tree must decide (zero/same excluded).
pub fn fit(samples: &[Sample], profile: Profile, limits: TreeLimits) -> Vec<Node> {
    let data: Vec<&Sample> = samples.iter().filter(|s| s.fixed.is_none()).collect();
    let mut nodes = Vec::new();
    if data.is_empty() {
        nodes.push(Node::Leaf(Class::General));
        return nodes;
    }
    let mut idx: Vec<usize> = (0..data.len()).collect();
    let root_cost = best_leaf(&sum_costs(&data, &idx), profile).1;
    let fit = Fit {
        data: &data,
        profile,
        limits: &limits,
        min_gain: limits.min_gain * root_cost,
    };
    fit.grow(&mut idx, 0).flatten(&mut nodes);
    nodes
}

fn sum_costs(data: &[&Sample], idx: &[usize]) -> [f64; K] {
    let mut sum = [0.0; K];
    for &i in idx {
        for (k, s) in sum.iter_mut().enumerate() {
            *s += data[i].costs[k];
        }
    }
    sum
}

fn best_leaf(sum: &[f64; K], profile: Profile) -> (Class, f64) {
    Class::ALL
        .into_iter()
        .filter(|&c| profile.allows(c))
        .map(|c| (c, sum[c.index()]))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("every profile allows general")
}

struct Fit<'a> {
    data: &'a [&'a Sample],
    profile: Profile,
    limits: &'a TreeLimits,
    min_gain: f64,
}

impl Fit<'_> {
    fn grow(&self, idx: &mut [usize], depth: usize) -> Fitted {
        let (leaf_class, leaf_cost) = best_leaf(&sum_costs(self.data, idx), self.profile);
        let leaf = Fitted::Leaf(leaf_class, leaf_cost);
        if depth >= self.limits.max_depth || idx.len() < 2 * self.limits.min_leaf {
            return leaf;
        }
        let mut splits = self.best_splits(idx);
        splits.retain(|&(_, _, cost)| leaf_cost - cost > self.min_gain);
        splits.sort_by(|a, b| a.2.total_cmp(&b.2));
        if depth >= LOOKAHEAD_LEVELS {
            splits.truncate(1);
        }
        let mut best = leaf;
        for (feature, threshold, _) in splits {
            let data = self.data;
            let split = partition_in_place(idx, |&i| data[i].features[feature] <= threshold);
            let (l, r) = idx.split_at_mut(split);
            let (left, right) = (self.grow(l, depth + 1), self.grow(r, depth + 1));
            let cost = left.cost() + right.cost();
            // A split whose children agree is that leaf.
            let agree =
                matches!((&left, &right), (Fitted::Leaf(a, _), Fitted::Leaf(b, _)) if a == b);
            if !agree && cost < best.cost() {
                best = Fitted::Split {
                    feature,
                    threshold,
                    left: Box::new(left),
                    right: Box::new(right),
                    cost,
                };
            }
        }
        best
    }

    /// Each feature's best split of `idx`: (feature, threshold, summed leaf cost).
    fn best_splits(&self, idx: &mut [usize]) -> Vec<(usize, f32, f64)> {
        let (data, profile, min_leaf) = (self.data, self.profile, self.limits.min_leaf);
        let total = sum_costs(data, idx);
        let mut splits = Vec::new();
        for f in 0..features::COUNT {
            idx.sort_unstable_by(|&a, &b| data[a].features[f].total_cmp(&data[b].features[f]));
            let mut best: Option<(usize, f32, f64)> = None;
            let mut left = [0.0; K];
            for p in 1..idx.len() {
                for (k, l) in left.iter_mut().enumerate() {
                    *l += data[idx[p - 1]].costs[k];
                }
                let (lo, hi) = (data[idx[p - 1]].features[f], data[idx[p]].features[f]);
                if lo == hi || p < min_leaf || idx.len() - p < min_leaf {
                    continue;
                }
                let mut right = total;
                for (r, l) in right.iter_mut().zip(&left) {
                    *r -= l;
                }
                let cost = best_leaf(&left, profile).1 + best_leaf(&right, profile).1;
                if best.is_none_or(|b| cost < b.2) {
                    best = Some((f, lo + (hi - lo) / 2.0, cost));
                }
            }
            splits.extend(best);
        }
        splits
    }
}

/// In-place partition; returns how many elements satisfy `pred` (now at the front).
fn partition_in_place(v: &mut [usize], pred: impl Fn(&usize) -> bool) -> usize {
    let mut split = 0;
    for i in 0..v.len() {
        if pred(&v[i]) {
            v.swap(split, i);
            split += 1;
        }
    }
    split
}

/// How a model did on labelled test pages.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub test_pages: u64,
    /// Share of pages where the tree chose the oracle's class.
    pub accuracy: f64,
    /// (bytes stored following the tree − bytes stored by the oracle) / oracle bytes.
    pub regret: f64,
    pub tree_bytes: u64,
    pub oracle_bytes: u64,
    pub input_bytes: u64,
    pub classify_ns_per_page: f64,
    /// Class names, the axis order of `confusion`.
    pub classes: Vec<&'static str>,
    /// `confusion[oracle][tree]` page counts.
    pub confusion: Vec<Vec<u64>>,
    /// The life cycle replayed, where the pages' cold forms were priced.
    pub cold: Option<ColdEvaluation>,
}

/// Test pages kept per input to time classification (the figures use labels only).
pub const TIMING_PAGES: usize = 1024;

/// Evaluates `model` on labelled test pages and, where `units` priced them
/// ([`Oracle::price_cold`]; empty: not priced), on what the store's cold passes keep of
/// them; `timing` (a sample of those pages, at most [`TIMING_PAGES`] per input) times
/// the classifier.
pub fn evaluate(
    model: &Model,
    samples: &[Sample],
    units: &[UnitPrice],
    timing: &[Page],
) -> Evaluation {
    let engine = zpage::engine::Engine::with_model(model.clone());
    let mut confusion = vec![vec![0u64; K]; K];
    let (mut tree_bytes, mut oracle_bytes, mut correct) = (0u64, 0u64, 0u64);
    // Classify on cache-warm pages (a page is compressed right after it was written or
    // faulted), 32 pages at a time: a first pass warms them, the second is timed. Pages
    // streamed from cold memory cost a few memory round trips more.
    let mut timed = std::time::Duration::ZERO;
    for chunk in timing.chunks(32) {
        for p in chunk {
            std::hint::black_box(engine.classify(p));
        }
        let start = Instant::now();
        for p in chunk {
            std::hint::black_box(engine.classify(std::hint::black_box(p)));
        }
        timed += start.elapsed();
    }
    // What the engine's classify gives: the exact scan's class, else the tree's.
    let predicted = samples
        .iter()
        .map(|s| s.fixed.unwrap_or_else(|| model.predict(&s.features)));
    let best_ns = timed.as_nanos() as f64 / timing.len().max(1) as f64;
    for (s, tree) in samples.iter().zip(predicted) {
        let oracle = s.oracle();
        confusion[oracle.index()][tree.index()] += 1;
        correct += (oracle == tree) as u64;
        tree_bytes += s.size(tree);
        oracle_bytes += s.size(oracle);
    }
    let n = samples.len() as u64;
    let cold = (!units.is_empty()).then(|| {
        let tree = |s: &Sample| s.fixed.unwrap_or_else(|| model.predict(&s.features));
        let (tree, units_kept, units_mixed) = replay(samples, units, tree);
        let (oracle, _, _) = replay(samples, units, Sample::oracle);
        ColdEvaluation {
            regret_cold: regret(tree.cold, oracle.cold),
            regret_coldest: regret(tree.coldest, oracle.coldest),
            tree,
            oracle,
            units: units.len() as u64,
            units_kept,
            units_mixed,
        }
    });
    Evaluation {
        test_pages: n,
        accuracy: correct as f64 / n.max(1) as f64,
        regret: regret(tree_bytes, oracle_bytes),
        tree_bytes,
        oracle_bytes,
        input_bytes: n * zpage::PAGE_SIZE as u64,
        classify_ns_per_page: best_ns,
        classes: Class::ALL.iter().map(|c| c.name()).collect(),
        confusion,
        cold,
    }
}

/// A model fitted on already labelled samples.
pub fn model_of(samples: &[Sample], oracle: &Oracle, limits: TreeLimits) -> Model {
    let nodes = fit(samples, oracle.profile, limits);
    let provenance = Provenance {
        train_pages: samples.len() as u64,
        speed_weight: oracle.speed_weight,
        ..Provenance::default()
    };
    Model::new(oracle.profile, oracle.codec, nodes, provenance)
        .expect("a fitted tree within MAX_DEPTH is a valid model")
}

/// One input's figures when the tree is trained on every other input.
#[derive(Clone, Debug, Serialize)]
pub struct HeldOut {
    pub name: String,
    pub pages: u64,
    pub tree_bytes: u64,
    pub oracle_bytes: u64,
    pub regret: f64,
    /// The life cycle replayed, where the pages' cold forms were priced.
    pub cold: Option<ColdEvaluation>,
}

/// One input's labelled pages, the units its cold forms were priced in (if they were)
/// and the sample of its pages kept for timing.
pub struct Labelled {
    pub name: String,
    pub samples: Vec<Sample>,
    pub units: Vec<UnitPrice>,
    pub timing: Vec<Page>,
}

/// The samples and units of several inputs as one (unit ranges moved to match).
pub fn concat(parts: &[Labelled]) -> (Vec<Sample>, Vec<UnitPrice>) {
    let (mut samples, mut units) = (Vec::new(), Vec::new());
    for part in parts {
        let at = samples.len();
        samples.extend(part.samples.iter().cloned());
        units.extend(part.units.iter().map(|u| UnitPrice {
            start: u.start + at,
            end: u.end + at,
            frame: u.frame,
        }));
    }
    (samples, units)
}

/// Leave-one-input-out: for each input, a tree trained on all the others is tested on
/// it, which estimates regret on memory of a program the training set lacks.
pub fn leave_one_out(inputs: &[Labelled], oracle: &Oracle, limits: TreeLimits) -> Vec<HeldOut> {
    (0..inputs.len())
        .map(|out| {
            let train: Vec<Sample> = (0..inputs.len())
                .filter(|&i| i != out)
                .flat_map(|i| inputs[i].samples.iter().cloned())
                .collect();
            let model = model_of(&train, oracle, limits);
            let held = &inputs[out];
            let eval = evaluate(&model, &held.samples, &held.units, &held.timing);
            HeldOut {
                name: held.name.clone(),
                pages: eval.test_pages,
                tree_bytes: eval.tree_bytes,
                oracle_bytes: eval.oracle_bytes,
                regret: eval.regret,
                cold: eval.cold,
            }
        })
        .collect()
}

/// Whether page `index` of an input is held out for testing: pages are split by 64-page
/// runs (neighbouring pages are alike, so a page-level split would leak), and every fifth
/// run of each input is a test run.
pub fn is_test_page(index: u64) -> bool {
    (index / 64) % 5 == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(x: f32, costs: [f64; K]) -> Sample {
        let mut features = [0.0; features::COUNT];
        features[3] = x;
        Sample {
            features,
            fixed: None,
            sizes: costs.map(|c| c as u32),
            costs,
            mixed: None,
        }
    }

    /// A page of one class's leaf costing `bytes` (every other leaf dearer), its mixed
    /// form `mixed`.
    fn priced(class: Class, bytes: u32, mixed: Option<u32>) -> Sample {
        let mut costs = [f64::INFINITY; K];
        costs[class.index()] = f64::from(bytes);
        Sample {
            mixed,
            ..sample(0.0, costs)
        }
    }

    #[test]
    fn the_life_cycle_replays_each_passs_rule() {
        let zero = Sample {
            fixed: Some(Class::Zero),
            ..priced(Class::Zstd, 0, None)
        };
        let samples = vec![
            // A unit smaller than its forms (zero page inside), mixed: one page has no
            // mixed form within the budget and is weighed in its own (100 + 1000 and
            // the margin under 1500), as the store does.
            priced(Class::Zstd, 1000, Some(100)),
            zero,
            priced(Class::Zstd, 1000, None),
            // A unit smaller than its forms, mixed smaller still by the margin.
            priced(Class::Zstd, 900, Some(300)),
            priced(Class::Delta, 900, Some(300)),
            // A unit no smaller than its forms: the page stays alone, and is then kept
            // mixed, which pays for its form.
            priced(Class::Zstd, 400, Some(10)),
            // A unit whose mixed forms miss the margin: 620 + 620/32 = 639 > 630.
            priced(Class::Zstd, 800, Some(310)),
            priced(Class::Zstd, 800, Some(310)),
        ];
        // A unit of eight given up on its sample, as the store gives it up: the first
        // four weighed (positions 0, 4, 2, 6) take 800 bytes, which pays against its 1000
        // but, scaled to eight pages, passes it by more than a quarter, though all eight
        // together (848) would pay.
        // Then a unit the cold pass does not keep, whose pages alone are given up on their
        // sample too: positions 0, 4, 2 and 6 lose mixed (400 against 300 each), so the
        // last page, which would pay mixed (12), is never weighed.
        let samples: Vec<Sample> = (samples.into_iter())
            .chain(
                (0..8).map(|i| priced(Class::Zstd, 300, Some(if i % 2 == 0 { 200 } else { 12 }))),
            )
            .chain((0..8).map(|i| priced(Class::Zstd, 300, Some(if i == 7 { 12 } else { 400 }))))
            .collect();
        let units = [
            UnitPrice {
                start: 0,
                end: 3,
                frame: 1500,
            },
            UnitPrice {
                start: 3,
                end: 5,
                frame: 1000,
            },
            UnitPrice {
                start: 5,
                end: 6,
                frame: 400,
            },
            UnitPrice {
                start: 6,
                end: 8,
                frame: 630,
            },
            UnitPrice {
                start: 8,
                end: 16,
                frame: 1000,
            },
            UnitPrice {
                start: 16,
                end: 24,
                frame: 2400,
            },
        ];
        let (cycle, kept, mixed) = replay(&samples, &units, Sample::oracle);
        assert_eq!(cycle.idle, 2000 + 1800 + 400 + 1600 + 2400 + 2400);
        assert_eq!(cycle.cold, 1500 + 1000 + 400 + 630 + 1000 + 2400);
        assert_eq!(cycle.coldest, 1100 + 600 + 10 + 630 + 1000 + 2400);
        assert_eq!((kept, mixed), (4, 2));
        // A tree that chose a dearer leaf for one page pays for it until its unit is kept.
        let (tree, _, _) = replay(&samples, &units, |s| {
            if s.mixed == Some(10) {
                Class::General
            } else {
                s.oracle()
            }
        });
        assert_eq!(tree.idle, u64::from(u32::MAX) + cycle.idle - 400);
        assert_eq!(tree.cold, cycle.cold);
    }

    #[test]
    fn cold_prices_keep_units_inside_runs_of_neighbours() {
        let mut pages = Vec::new();
        for i in 0..40u64 {
            let mut page = Page::zeroed();
            if i % 7 != 3 {
                for (j, w) in page.words_mut().iter_mut().enumerate() {
                    *w = (j as u64 % 61) * 0x0101 + i;
                }
            }
            pages.push(page);
        }
        let oracle = Oracle::new(Profile::Dense);
        let mut samples = oracle.label_all(&pages);
        let units = oracle.price_cold(&pages, &mut samples, 100, &[0..20, 20..40]);
        let fixed = |i: usize| samples[i - 100].fixed.is_some();
        let mut covered = 0;
        for u in &units {
            assert!(u.end <= 120 || u.start >= 120, "{u:?} spans two runs");
            assert!(!fixed(u.start) && !fixed(u.end - 1), "{u:?}");
            let members = (u.start..u.end).filter(|&i| !fixed(i)).count();
            assert!((1..=DEFAULT_UNIT_PAGES).contains(&members), "{u:?}");
            assert!(u.frame > 0 && u.frame < 4096, "{u:?}");
            covered += members;
        }
        let stored = samples.iter().filter(|s| s.fixed.is_none()).count();
        assert_eq!(covered, stored);
        assert!(
            samples
                .iter()
                .all(|s| s.fixed.is_some() || s.mixed.is_some())
        );
        // Each run of neighbours in units of the store's size.
        let per_run = |run: std::ops::Range<u64>| {
            run.filter(|i| i % 7 != 3)
                .count()
                .div_ceil(DEFAULT_UNIT_PAGES)
        };
        assert_eq!(units.len(), per_run(0..20) + per_run(20..40));
    }

    #[test]
    fn cart_finds_the_cost_minimising_split() {
        let inf = f64::INFINITY;
        let mut samples = Vec::new();
        for i in 0..100 {
            let x = i as f32 / 100.0;
            // Below 0.3 delta is far cheaper, above it general.
            let costs = if x < 0.3 {
                [inf, inf, 100.0, 1000.0, inf, 4097.0, inf, inf]
            } else {
                [inf, inf, 2000.0, 900.0, inf, 4097.0, inf, inf]
            };
            samples.push(sample(x, costs));
        }
        let nodes = fit(
            &samples,
            Profile::Fast,
            TreeLimits {
                min_leaf: 5,
                ..TreeLimits::for_profile(Profile::Fast)
            },
        );
        match nodes[0] {
            Node::Split {
                feature: 3,
                threshold,
                left,
                right,
            } => {
                assert!((0.28..0.31).contains(&threshold), "{threshold}");
                assert_eq!(nodes[left as usize], Node::Leaf(Class::Delta));
                assert_eq!(nodes[right as usize], Node::Leaf(Class::General));
            }
            other => panic!("expected a split on feature 3, got {other:?}"),
        }
    }
}
