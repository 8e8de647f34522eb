//! The pattern engine: page → class → stored form, and back.
//!
//! Invariants: zero and same-filled pages are decided by an exact scan (never by the
//! tree, which cannot see every word); every other page goes through features and the
//! model's tree (in the dense profile, a record-like page the tree sends to zstd also gets
//! the delta form tried); whatever the tree says, the stored form decodes to the same
//! page (a wrong class costs bytes, never data). An `Engine` is immutable and
//! `Send + Sync`.

use crate::codec::{self, Class, CodecConfig, DecodeError};
use crate::features;
use crate::model::{self, Model, Profile};
use crate::page::Page;

/// A dense-profile page the tree sends to zstd but whose fields mostly repeat one record
/// later also gets the delta form tried, and the smaller is kept. The tree, trained on a
/// corpus with few record arrays, misses them on programs it has not seen (a captured
/// order book: 5.26x, 6.59x with this look); corpus pages rarely trigger it.
const RECORD_SECOND_LOOK: f32 = 0.75;

/// A page's way in and out of the store: the exact zero/same scan, the classifier, and
/// the codecs of the class it picks. Cheap to clone (the model is small).
#[derive(Clone, Debug)]
pub struct Engine {
    model: Model,
}

impl Engine {
    /// The embedded model of a profile.
    pub fn new(profile: Profile) -> Engine {
        Engine {
            model: model::embedded(profile),
        }
    }

    /// An engine with a trained model (checked when it was made).
    pub fn with_model(model: Model) -> Engine {
        Engine { model }
    }

    /// The classifier.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The codec settings pages are encoded with (the model's).
    pub fn codec(&self) -> &CodecConfig {
        self.model.codec()
    }

    /// The class the engine stores a page as (before any huge-page fallback).
    pub fn classify(&self, page: &Page) -> Class {
        match page.same_filled_word() {
            Some(0) => Class::Zero,
            Some(_) => Class::Same,
            None => self.model.predict(&features::extract(page)),
        }
    }

    /// Classifies and encodes a page into `out`; returns the class stored. The exact scan
    /// runs once: a same-filled page goes straight to its form.
    pub fn encode(&self, page: &Page, out: &mut Vec<u8>) -> Class {
        if let Some(word) = page.same_filled_word() {
            return codec::encode_filled(word, out);
        }
        let config = self.model.codec();
        let features = features::extract(page);
        let class = self.model.predict(&features);
        let stored = codec::encode(class, page, config, out);
        let second_look = self.model.profile() == Profile::Dense
            && class == Class::Dense
            && stored == Class::Dense
            && features[features::RECORD_SMALL] >= RECORD_SECOND_LOOK;
        if second_look && codec::keep_delta_if_smaller(page, config, out) {
            return Class::Delta;
        }
        stored
    }

    /// Decodes any stored form (the form carries its own class and parameters).
    pub fn decode(stored: &[u8], out: &mut Page) -> Result<Class, DecodeError> {
        codec::decode(stored, out)
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(Profile::Dense)
    }
}
