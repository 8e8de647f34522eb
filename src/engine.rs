//! The pattern engine: page → class → stored form, and back.
//!
//! Invariants: zero and same-filled pages are decided by an exact scan (never by the
//! tree, which cannot see every word); every other page goes through features and the
//! model (no features where the model's plan is the same for every page, as the words
//! profile's one leaf is), whose [`Plan`] names the forms to try, and the engine
//! encodes exactly those and keeps the smaller. [`Engine::classify`] returns that same
//! plan. The one form outside any plan is the cold tier's mixed form, which
//! [`Engine::encode_cold`] tries beside the plan's and keeps only where it is smaller by
//! a margin ([`mixed_pays`]). Whatever the plan says, the stored form decodes to the same page (a wrong class
//! costs bytes, never data). An `Engine` is immutable and `Send + Sync`.

use crate::classify::features;
use crate::classify::model::{self, Model, Profile};
use crate::classify::plan::Plan;
use crate::codec::dict::Dictionary;
use crate::codec::dictset::DictionarySet;
use crate::codec::{self, Class, CodecConfig, DecodeError, RAW_SIZE};
use crate::page::Page;

/// Mixed forms replace a cold page's dense form, or a unit's frame, only if smaller by
/// this fraction of their own size (1/32 of their bytes).
pub const MIXED_MARGIN: usize = 32;

/// Whether mixed forms of `mixed` bytes take the place of `other` bytes (a cold page's
/// dense form, a unit's frame): smaller by [`MIXED_MARGIN`] of their own size (the cold
/// passes' one rule, which the trainer replays).
pub fn mixed_pays(mixed: usize, other: usize) -> bool {
    mixed + mixed / MIXED_MARGIN < other
}

/// Pages of a unit the coldest pass weighs before it judges the unit by them.
pub const MIXING_SAMPLE: usize = 4;

/// The order in which the coldest pass weighs the `members` pages of a unit: their
/// positions bit-reversed (0, 16, 8, 24, 4, … of 32), so that the first few are spread
/// through the unit and stand for all of it (the trainer replays the same order).
pub fn mixing_order(members: usize) -> impl Iterator<Item = usize> {
    let bits = usize::BITS - members.saturating_sub(1).leading_zeros();
    (0..1usize << bits)
        .map(move |i| {
            i.reverse_bits()
                .checked_shr(usize::BITS - bits)
                .unwrap_or(0)
        })
        .filter(move |&position| position < members)
}

/// Whether the coldest pass stops weighing a unit whose frame takes `frame` bytes, having
/// weighed `weighed` of its `members` pages at `alone` bytes (in [`mixing_order`]): once
/// they no longer pay ([`mixed_pays`]), or from [`MIXING_SAMPLE`] pages on when, scaled
/// to the whole unit, they pass the frame by more than `1 / (2 * sqrt(weighed))` of it
/// (a sample's error shrinks as it grows). Units the mixed form loses on are given up
/// after a few pages instead of most of them, and a unit it wins is hardly ever lost
/// (README, "Cold units").
pub fn mixing_hopeless(alone: usize, weighed: usize, members: usize, frame: usize) -> bool {
    if !mixed_pays(alone, frame) {
        return true;
    }
    if weighed < MIXING_SAMPLE || weighed >= members {
        return false;
    }
    let (weighed, estimate) = (
        weighed as f64,
        alone as f64 * members as f64 / weighed as f64,
    );
    estimate > frame as f64 * (1.0 + 0.5 / weighed.sqrt())
}

crate::sync::thread_local! {
    static SECOND_FORM: crate::sync::RefCell<Vec<u8>> = crate::sync::RefCell::new(Vec::with_capacity(RAW_SIZE));
}

/// A page's way in and out of the store: the exact zero/same scan, the classifier, and
/// the codecs of the class it picks. Cheap to clone (the model is small).
#[derive(Clone, Debug)]
pub struct Engine {
    model: Model,
    /// The model's plan when it is the same for every page.
    fixed: Option<Plan>,
}

impl Engine {
    /// The embedded model of a profile.
    pub fn new(profile: Profile) -> Engine {
        Engine::with_model(model::embedded(profile))
    }

    /// An engine with a trained model (checked when it was made).
    pub fn with_model(model: Model) -> Engine {
        Engine {
            fixed: model.fixed_plan(),
            model,
        }
    }

    /// The classifier.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The codec settings pages are encoded with (the model's).
    pub fn codec(&self) -> &CodecConfig {
        self.model.codec()
    }

    /// The forms the engine tries for a page: what [`Engine::encode`] does with it. The
    /// class stored is the plan's first form or its second, or the incompressible form
    /// where both reach the huge threshold.
    pub fn classify(&self, page: &Page) -> Plan {
        match page.same_filled_word() {
            Some(0) => Plan::single(Class::Zero),
            Some(_) => Plan::single(Class::Same),
            None => self
                .fixed
                .unwrap_or_else(|| self.model.plan(&features::extract(page))),
        }
    }

    /// Classifies and encodes a page into `out`; returns the class stored. The exact scan
    /// runs once: a same-filled page goes straight to its form.
    pub fn encode(&self, page: &Page, out: &mut Vec<u8>) -> Class {
        self.encode_with(page, None, out)
    }

    /// [`Engine::encode`], with zstd forms encoded with the dictionary of the page's
    /// cluster in `dicts` (if given).
    pub fn encode_with(
        &self,
        page: &Page,
        dicts: Option<&DictionarySet>,
        out: &mut Vec<u8>,
    ) -> Class {
        self.encode_at(page, dicts, None, out)
    }

    /// [`Engine::encode_with`], with every zstd form (plain, with a dictionary, a delta
    /// form's residuals) at zstd `level` if given: the effort a cold page is worth. The
    /// level changes only the encoder's search; the forms decode as any other.
    pub fn encode_at(
        &self,
        page: &Page,
        dicts: Option<&DictionarySet>,
        level: Option<i32>,
        out: &mut Vec<u8>,
    ) -> Class {
        if let Some(word) = page.same_filled_word() {
            return codec::encode_filled(word, out);
        }
        // No features for a fixed plan, unless they choose its zstd form's dictionary.
        if let Some(plan) = self
            .fixed
            .filter(|plan| dicts.is_none() || !plan.uses(Class::Zstd))
        {
            return self.run_plan(&plan, page, None, level, out);
        }
        let x = features::extract(page);
        let plan = self.model.plan(&x);
        // The nearest centroid only for a plan with a zstd form, the one a dictionary serves.
        let dict = dicts
            .filter(|_| plan.uses(Class::Zstd))
            .map(|set| &**set.dictionary_for(&x));
        self.run_plan(&plan, page, dict, level, out)
    }

    /// A cold page's form: [`Engine::encode_at`] at `level`, or the mixed form from the
    /// primer of the page's cluster where that is smaller by the margin ([`mixed_pays`]:
    /// the mixed form decodes hundreds of times slower, so it must pay for that).
    pub fn encode_cold(
        &self,
        page: &Page,
        dicts: Option<&DictionarySet>,
        level: i32,
        out: &mut Vec<u8>,
    ) -> Class {
        let class = self.encode_at(page, dicts, Some(level), out);
        if class.is_inline() {
            return class;
        }
        let dict = dicts.map(|set| &**set.dictionary_for(&features::extract(page)));
        SECOND_FORM.with(|form| {
            let form = &mut *form.borrow_mut();
            let mixed = codec::encode_mixed(page, dict, self.codec(), form);
            if mixed == Class::Mixed && mixed_pays(form.len(), out.len()) {
                std::mem::swap(out, form);
                mixed
            } else {
                class
            }
        })
    }

    /// Encodes a page into `out` following `plan`: its first form, then its second where
    /// the plan says, keeping the smaller. Returns the class stored.
    pub fn encode_plan(&self, plan: &Plan, page: &Page, out: &mut Vec<u8>) -> Class {
        self.run_plan(plan, page, None, None, out)
    }

    /// One form of a plan: zstd with the dictionary where there is one.
    fn form(
        &self,
        class: Class,
        page: &Page,
        dict: Option<&Dictionary>,
        level: Option<i32>,
        out: &mut Vec<u8>,
    ) -> Class {
        let mut config = *self.model.codec();
        if let Some(level) = level {
            config.zstd_level = level;
        }
        match (class, dict) {
            (Class::Zstd, Some(dict)) => {
                let level = level.unwrap_or(dict.level());
                codec::encode_with_dictionary(page, dict, level, &config, out)
            }
            _ => codec::encode(class, page, &config, out),
        }
    }

    fn run_plan(
        &self,
        plan: &Plan,
        page: &Page,
        dict: Option<&Dictionary>,
        level: Option<i32>,
        out: &mut Vec<u8>,
    ) -> Class {
        let first = self.form(plan.class, page, dict, level, out);
        // A form may have stored another class (the word form leaves text to LZ4): the
        // second form is tried only if it is not what was stored already.
        let Some(second) = plan.second_after(out.len()).filter(|&s| s != first) else {
            return first;
        };
        SECOND_FORM.with(|form| {
            let form = &mut *form.borrow_mut();
            let class = self.form(second, page, dict, level, form);
            if form.len() < out.len() {
                std::mem::swap(out, form);
                class
            } else {
                first
            }
        })
    }

    /// Decodes any stored form (the form carries its own class and parameters).
    ///
    /// # Errors
    /// As [`crate::codec::decode`].
    ///
    /// # Examples
    /// ```
    /// use zpage::{Engine, Page, Profile};
    ///
    /// let engine = Engine::new(Profile::Fast);
    /// let mut form = Vec::new();
    /// let class = engine.encode(&Page::filled(5), &mut form);
    /// let mut out = Page::zeroed();
    /// assert_eq!(Engine::decode(&form, &mut out)?, class);
    /// assert!(out == *Page::filled(5));
    /// # Ok::<(), zpage::DecodeError>(())
    /// ```
    pub fn decode(stored: &[u8], out: &mut Page) -> Result<Class, DecodeError> {
        codec::decode(stored, out)
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(Profile::Dense)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mixing_order_spreads_a_unit_and_covers_it_once() {
        assert_eq!(mixing_order(32).take(4).collect::<Vec<_>>(), [0, 16, 8, 24]);
        assert_eq!(mixing_order(5).collect::<Vec<_>>(), [0, 4, 2, 1, 3]);
        for members in 0..=crate::codec::unit::MAX_UNIT_PAGES {
            let mut order: Vec<usize> = mixing_order(members).collect();
            order.sort_unstable();
            assert_eq!(order, (0..members).collect::<Vec<_>>(), "{members}");
        }
    }

    #[test]
    fn a_unit_is_given_up_on_its_sample_only_past_the_estimates_margin() {
        // Not paying is hopeless at once; paying, too few pages to judge by.
        assert!(mixing_hopeless(2000, 1, 32, 2000));
        assert!(!mixing_hopeless(1900, 3, 32, 2000));
        // Four of 32: the estimate must pass the frame by a quarter (2400 does not,
        // 2560 does); sixteen: by an eighth.
        assert!(!mixing_hopeless(300, 4, 32, 2000));
        assert!(mixing_hopeless(320, 4, 32, 2000));
        assert!(!mixing_hopeless(1120, 16, 32, 2000));
        assert!(mixing_hopeless(1140, 16, 32, 2000));
        // Every page weighed: the margin alone decides.
        assert!(!mixing_hopeless(1900, 32, 32, 2000));
        assert!(mixing_hopeless(1950, 32, 32, 2000));
    }
}
