//! The pattern engine: page → class → stored form, and back.
//!
//! Invariants: zero and same-filled pages are decided by an exact scan (never by the
//! tree, which cannot see every word); every other page goes through features and the
//! model's tree; whatever the tree says, the stored form decodes to the same page (a wrong
//! class costs bytes, never data). An `Engine` is immutable and `Send + Sync`.

use crate::codec::{self, Class, CodecConfig, DecodeError};
use crate::features;
use crate::model::{self, Model, Profile};
use crate::page::Page;

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

    pub fn with_model(model: Model) -> Engine {
        Engine { model }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn codec(&self) -> &CodecConfig {
        &self.model.codec
    }

    /// The class the engine stores a page as (before any huge-page fallback).
    pub fn classify(&self, page: &Page) -> Class {
        match page.same_filled_word() {
            Some(0) => Class::Zero,
            Some(_) => Class::Same,
            None => self.model.predict(&features::extract(page)),
        }
    }

    /// Classifies and encodes a page into `out`; returns the class stored.
    pub fn encode(&self, page: &Page, out: &mut Vec<u8>) -> Class {
        codec::encode(self.classify(page), page, &self.model.codec, out)
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
