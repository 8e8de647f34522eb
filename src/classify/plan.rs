//! A page's plan: which stored forms the engine tries for it, decided once.
//!
//! Invariants: a plan is a function of the tree's leaf, the page's features and the
//! model's profile and codec settings, made in one place ([`Plan::for_leaf`]); the engine
//! encodes exactly the forms a plan names and keeps the smaller, `Engine::classify`
//! reports the plan the store follows, and the trainer prices every leaf by the plan it
//! would make on each page. So the regret the trainer reports is the regret of what the
//! store does, and every tool that asks for a page's class sees the same decision.

use super::features::{self, Features};
use super::model::Profile;
use crate::codec::{Class, CodecConfig, delta::Backend};
use crate::page::PAGE_SIZE;

/// A delta form above this many bytes (tag included) is checked against zstd on the page,
/// when residuals go to zstd (the dense profile). Byte-shuffled residuals hide the long
/// repeats zstd finds in the page itself (arrays of structs whose fields are not narrow
/// numbers: a captured order book's delta pages came out at twice zstd's size); below it
/// the delta form is good enough to keep.
pub const SECOND_OPINION: usize = PAGE_SIZE / 8;

/// A dense-profile page the tree sends to zstd whose fields mostly repeat one record later
/// (the `record_small` feature at or above this) also gets the delta form tried. The tree,
/// trained on a corpus with few record arrays, misses them on programs it has not seen (a
/// captured order book: 5.26x, 6.60x with this look); corpus pages rarely reach it.
pub const RECORD_SECOND_LOOK: f32 = 0.75;

/// A word form above this many bytes (tag included) also gets the LZ4 form tried: words
/// that saved less than a quarter of the page are mostly text or code, whose repeats LZ4
/// finds and a word dictionary cannot.
pub const WORDS_SECOND_LOOK: usize = PAGE_SIZE * 3 / 4;

/// The forms to try for one page: `class` first, then `second` where its condition holds;
/// the smaller form is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The form encoded first: the tree's leaf, or zero/same-filled from the exact scan.
    pub class: Class,
    /// A form tried after the first, and kept if smaller.
    pub second: Option<Second>,
}

/// The second form of a [`Plan`], and when it is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Second {
    /// The form tried.
    pub class: Class,
    /// It is tried when the first form (tag included, after any huge-page fallback) is
    /// larger than this many bytes; 0 means always.
    pub above: usize,
}

impl Plan {
    /// A plan of one form.
    pub fn single(class: Class) -> Plan {
        Plan {
            class,
            second: None,
        }
    }

    /// Whether one of the plan's forms is `class`.
    pub fn uses(&self, class: Class) -> bool {
        self.class == class || self.second.is_some_and(|s| s.class == class)
    }

    /// Whether [`Plan::for_leaf`] looks at the page's features for this leaf; if not, a
    /// tree of this one leaf needs no features at all.
    pub fn reads_features(leaf: Class, profile: Profile) -> bool {
        leaf == Class::Zstd && profile == Profile::Dense
    }

    /// The plan for a page of features `x` that the tree sends to `leaf`, under the
    /// model's `profile` and `codec` settings.
    pub fn for_leaf(leaf: Class, x: &Features, profile: Profile, codec: &CodecConfig) -> Plan {
        let second = match leaf {
            Class::Delta if codec.delta_backend == Backend::Zstd => Some(Second {
                class: Class::Zstd,
                above: SECOND_OPINION,
            }),
            Class::Zstd
                if Plan::reads_features(leaf, profile)
                    && x[features::RECORD_SMALL] >= RECORD_SECOND_LOOK =>
            {
                Some(Second {
                    class: Class::Delta,
                    above: 0,
                })
            }
            Class::Words => Some(Second {
                class: Class::General,
                above: WORDS_SECOND_LOOK,
            }),
            _ => None,
        };
        Plan {
            class: leaf,
            second,
        }
    }

    /// The second form to try once the first came out `first_len` bytes, if any.
    pub fn second_after(&self, first_len: usize) -> Option<Class> {
        self.second
            .filter(|second| first_len > second.above)
            .map(|second| second.class)
    }
}
