//! Stored forms of a page: one module per class, one stable `u8` tag per form.
//!
//! Invariants:
//! - Every stored form is self-describing: byte 0 is the [`Class`] tag, the rest is the
//!   class's payload, so a stored page decodes with nothing but its bytes.
//! - Tags are part of the on-disk/in-memory format and never change meaning.
//! - [`decode`] never panics, never reads or writes outside its buffers, and refuses a
//!   structurally malformed form: every length, parameter and backend result is checked,
//!   and any mismatch is a [`DecodeError`]. It cannot refuse a form that was altered yet
//!   stays well formed (a flipped bit in a raw page, in an LZ4 literal, in a residual):
//!   that decodes to a different page. Catching those is the store's job: every payload
//!   it keeps carries a CRC-32, checked on every read ([`crate::StoreError::Checksum`]).
//! - [`encode`] never emits a form larger than [`RAW_SIZE`]: a codec whose output would
//!   reach the configured huge threshold falls back to the incompressible (raw) form, as
//!   zram does.
//! - [`encode`] encodes the one form asked for; which forms to try for a page is the
//!   classifier's decision ([`crate::classify::plan`]), not the codecs'.

pub mod delta;
pub mod dict;
pub mod dictset;
pub mod general;
pub mod mixed;
pub mod raw;
pub mod same;
pub mod shuffle;
pub mod unit;
pub mod words;
pub mod zero;
pub mod zstd;

use crate::page::{PAGE_SIZE, Page};
use serde::{Deserialize, Serialize};

/// Size of the raw form: tag byte plus the page.
pub const RAW_SIZE: usize = 1 + PAGE_SIZE;
/// Default huge threshold: compressed forms at or above it are stored raw. zram uses about
/// 3/4 of a page; zpage keeps anything that saves at least 1/32 of a page, because numeric
/// pages (images, sensor data) often compress to 70-95% and that saving is real memory.
pub const HUGE_THRESHOLD: usize = PAGE_SIZE - PAGE_SIZE / 32;

/// A page's data pattern, as the store keeps it: each class has one codec specialised for
/// it, and the class is the tag of the stored form. Numeric pages are `Delta`; general
/// data (objects, text, code) is `General` (LZ4) or `Zstd` where zstd's extra ratio pays
/// (the two differ in effort, not pattern: only the dense profile chooses `Zstd`).
/// `Words` is the word-dictionary form a tiered store's way in uses: chosen by a profile
/// ([`crate::Profile::Words`]), never by a tree.
/// `Mixed` is the cold tier's context-mixing form: chosen by a cold pass where it is
/// smaller than the dense form by a margin, never on the way in.
/// A class is what a page is; a [`crate::Profile`] is a policy choosing among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
#[repr(u8)]
pub enum Class {
    /// All bytes zero: nothing stored.
    Zero = 0,
    /// One repeated 8-byte word: the word is stored.
    Same = 1,
    /// Numeric words: base plus transformed residuals, bit-packed or entropy coded.
    Delta = 2,
    /// General data (objects, text): LZ4.
    General = 3,
    /// General data where zstd's extra ratio pays for its time (the dense profile's).
    /// Model files written before the rename call it `dense`.
    #[serde(alias = "dense")]
    Zstd = 4,
    /// Nothing beats the huge threshold: the page is stored as it is.
    Incompressible = 5,
    /// Words coded against a dictionary of recent words (WKdm-style): the fastest form.
    Words = 6,
    /// Context mixing and arithmetic coding, from a cluster's primer: the densest form.
    Mixed = 7,
}

impl Class {
    /// Every class, in tag order.
    pub const ALL: [Class; 8] = [
        Class::Zero,
        Class::Same,
        Class::Delta,
        Class::General,
        Class::Zstd,
        Class::Incompressible,
        Class::Words,
        Class::Mixed,
    ];

    /// The byte that opens the class's stored forms.
    pub fn tag(self) -> u8 {
        self as u8
    }

    /// The class of a tag byte, if it is one.
    pub fn from_tag(tag: u8) -> Option<Class> {
        Class::ALL.get(tag as usize).copied()
    }

    /// The class's name in reports and model files.
    pub fn name(self) -> &'static str {
        match self {
            Class::Zero => "zero",
            Class::Same => "same",
            Class::Delta => "delta",
            Class::General => "general",
            Class::Zstd => "zstd",
            Class::Incompressible => "incompressible",
            Class::Words => "words",
            Class::Mixed => "mixed",
        }
    }

    /// The class's position in [`Class::ALL`] (its tag).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the class's stored form is inline: zero and same-filled pages are one
    /// word in the page's metadata (as in zram), with nothing in an allocator.
    pub fn is_inline(self) -> bool {
        matches!(self, Class::Zero | Class::Same)
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// Why a stored form could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty input: a stored page has at least its tag byte")]
    Empty,
    /// The first byte is no class's tag.
    #[error("unknown tag {0}: not a zpage stored form")]
    UnknownTag(u8),
    /// A fixed-size form of the wrong size.
    #[error("{class} form: expected {expected} bytes, got {got}")]
    Length {
        /// The form's class.
        class: Class,
        /// Its size.
        expected: usize,
        /// The size given.
        got: usize,
    },
    /// The form names a dictionary the decoder was not given.
    #[error("the form needs zstd dictionary {0}, which is not loaded")]
    MissingDictionary(u32),
    /// The payload is inconsistent (a length, a parameter, the backend refused it).
    #[error("{class} form is corrupt: {reason}")]
    Corrupt {
        /// The form's class.
        class: Class,
        /// What is wrong.
        reason: &'static str,
    },
}

impl DecodeError {
    fn corrupt(class: Class, reason: &'static str) -> Self {
        DecodeError::Corrupt { class, reason }
    }

    fn length(class: Class, expected: usize, got: usize) -> Self {
        DecodeError::Length {
            class,
            expected,
            got,
        }
    }
}

/// Tunables of the encoders that change what is stored (not how it decodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodecConfig {
    /// zstd level for the dense class and for delta residuals in the dense profile.
    pub zstd_level: i32,
    /// Entropy backend for delta residuals that do not bit-pack well.
    pub delta_backend: delta::Backend,
    /// Forms at or above this many bytes are stored raw.
    pub huge_threshold: usize,
}

impl CodecConfig {
    /// Never slower to compress than LZ4.
    pub const FAST: CodecConfig = CodecConfig {
        zstd_level: 3,
        delta_backend: delta::Backend::Lz4,
        huge_threshold: HUGE_THRESHOLD,
    };
    /// zstd where it pays.
    pub const DENSE: CodecConfig = CodecConfig {
        zstd_level: 3,
        delta_backend: delta::Backend::Zstd,
        huge_threshold: HUGE_THRESHOLD,
    };
}

impl Default for CodecConfig {
    fn default() -> Self {
        Self::DENSE
    }
}

/// Encodes `page` in the form of `class` into `out` (cleared first) and returns the class
/// actually stored: zero/same requests on a page that is not such fall back to general, and
/// any form reaching [`HUGE_THRESHOLD`] falls back to incompressible.
pub fn encode(class: Class, page: &Page, config: &CodecConfig, out: &mut Vec<u8>) -> Class {
    out.clear();
    let stored = match class {
        Class::Zero | Class::Same => match page.same_filled_word() {
            Some(word) => return encode_filled(word, out),
            None => {
                general::encode(page, out);
                Class::General
            }
        },
        Class::Delta => {
            delta::encode(page, config, out);
            Class::Delta
        }
        Class::General => {
            general::encode(page, out);
            Class::General
        }
        Class::Zstd => {
            zstd::encode(page, config.zstd_level, out);
            Class::Zstd
        }
        Class::Words => {
            if words::encode(page, out) {
                Class::Words
            } else {
                general::encode(page, out);
                Class::General
            }
        }
        Class::Mixed => {
            if mixed::encode(page, None, mixed::DECISION_BUDGET, out) {
                Class::Mixed
            } else {
                zstd::encode(page, config.zstd_level, out);
                Class::Zstd
            }
        }
        Class::Incompressible => Class::Incompressible,
    };
    if stored == Class::Incompressible {
        out.clear();
        raw::encode(page, out);
        return Class::Incompressible;
    }
    raw_if_huge(stored, page, config, out)
}

/// Encodes `page` in the zstd form with `dict` into `out` (cleared first), or in the
/// incompressible form where that reaches the huge threshold; returns the class stored.
pub fn encode_with_dictionary(
    page: &Page,
    dict: &dict::Dictionary,
    level: i32,
    config: &CodecConfig,
    out: &mut Vec<u8>,
) -> Class {
    out.clear();
    dict::encode(page, dict, level, out);
    raw_if_huge(Class::Zstd, page, config, out)
}

/// `class`, or the incompressible form (re-encoded into `out`) where `out` reaches the
/// huge threshold.
fn raw_if_huge(class: Class, page: &Page, config: &CodecConfig, out: &mut Vec<u8>) -> Class {
    if out.len() >= config.huge_threshold.min(RAW_SIZE) {
        out.clear();
        raw::encode(page, out);
        return Class::Incompressible;
    }
    class
}

/// Encodes `page` in the mixed form from `dict`'s primer (the untrained one without)
/// into `out` (cleared first), or in the incompressible form where that reaches the huge
/// threshold or would take its decoder past [`mixed::DECISION_BUDGET`]; returns the class
/// stored.
pub fn encode_mixed(
    page: &Page,
    dict: Option<&dict::Dictionary>,
    config: &CodecConfig,
    out: &mut Vec<u8>,
) -> Class {
    out.clear();
    let primer = dict.and_then(|d| Some((d.id(), d.primer()?)));
    if !mixed::encode(page, primer, mixed::DECISION_BUDGET, out) {
        raw::encode(page, out);
        return Class::Incompressible;
    }
    raw_if_huge(Class::Mixed, page, config, out)
}

/// The dictionary a stored form names, if any: zstd forms name the dictionary they were
/// coded with, mixed forms the one whose primer they were.
pub fn form_dictionary(class: Class, payload: &[u8]) -> Option<u32> {
    match class {
        Class::Zstd => dict::frame_dict_id(payload),
        Class::Mixed => mixed::primer_id(payload),
        _ => None,
    }
    .filter(|&id| id != 0)
}

/// Encodes a page filled with `word` into `out` (cleared first): the zero form for 0, the
/// same-filled form otherwise; returns that class. For a caller that has scanned already.
pub fn encode_filled(word: u64, out: &mut Vec<u8>) -> Class {
    out.clear();
    if word == 0 {
        zero::encode(out);
        Class::Zero
    } else {
        same::encode(word, out);
        Class::Same
    }
}

/// Decodes a stored form into `out`, returning its class.
///
/// # Errors
/// [`DecodeError`] for bytes that are not a stored form this build reads, or one that
/// names a dictionary (see [`decode_payload_with`]).
///
/// # Examples
/// ```
/// use zpage::codec::{self, Class, CodecConfig};
/// use zpage::Page;
///
/// let mut page = Page::zeroed();
/// page.bytes_mut()[..5].copy_from_slice(b"hello");
/// let mut form = Vec::new();
/// let class = codec::encode(Class::General, &page, &CodecConfig::default(), &mut form);
/// let mut out = Page::zeroed();
/// assert_eq!(codec::decode(&form, &mut out)?, class);
/// assert!(out == page);
/// assert!(codec::decode(&[200], &mut out).is_err()); // no class has tag 200
/// # Ok::<(), zpage::DecodeError>(())
/// ```
pub fn decode(stored: &[u8], out: &mut Page) -> Result<Class, DecodeError> {
    let class = stored_class(stored)?;
    decode_payload(class, &stored[1..], out)?;
    Ok(class)
}

/// Decodes a form whose tag is kept elsewhere (the store keeps the class in its
/// per-page metadata and only the payload in the allocator). A form that names a
/// dictionary does not decode here (see [`decode_payload_with`]).
///
/// # Errors
/// As [`decode`].
///
/// # Examples
/// ```
/// use zpage::codec::{self, Class};
/// use zpage::Page;
///
/// let mut out = Page::zeroed();
/// codec::decode_payload(Class::Same, &7u64.to_le_bytes(), &mut out)?;
/// assert!(out == *Page::filled(7));
/// # Ok::<(), zpage::DecodeError>(())
/// ```
pub fn decode_payload(class: Class, payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    decode_payload_with(class, payload, &dict::NoDictionaries, out)
}

/// [`decode_payload`], with the dictionaries forms may name.
///
/// # Errors
/// As [`decode`]; [`DecodeError::MissingDictionary`] for a form whose dictionary `dicts`
/// lacks.
///
/// # Examples
/// ```
/// use zpage::codec::{self, Class, dict::NoDictionaries};
/// use zpage::Page;
///
/// let mut out = Page::zeroed();
/// codec::decode_payload_with(Class::Zero, &[], &NoDictionaries, &mut out)?;
/// assert!(out == Page::zeroed());
/// # Ok::<(), zpage::DecodeError>(())
/// ```
pub fn decode_payload_with(
    class: Class,
    payload: &[u8],
    dicts: &(impl dict::Dictionaries + ?Sized),
    out: &mut Page,
) -> Result<(), DecodeError> {
    match class {
        Class::Zero => zero::decode(payload, out),
        Class::Same => same::decode(payload, out),
        Class::Delta => delta::decode(payload, out),
        Class::General => general::decode(payload, out),
        Class::Zstd => dict::decode_frame(payload, dicts, out.bytes_mut()),
        Class::Incompressible => raw::decode(payload, out),
        Class::Words => words::decode(payload, out),
        Class::Mixed => {
            let primer = match form_dictionary(class, payload) {
                None => None,
                Some(id) => Some(
                    dicts
                        .get(id)
                        .ok_or(DecodeError::MissingDictionary(id))?
                        .primer()
                        .ok_or(DecodeError::corrupt(
                            Class::Mixed,
                            "its dictionary has no primer",
                        ))?,
                ),
            };
            mixed::decode(payload, primer, out)
        }
    }
}

/// The class recorded in a stored form's tag, without decoding it.
///
/// # Errors
/// [`DecodeError::Empty`] or [`DecodeError::UnknownTag`].
///
/// # Examples
/// ```
/// use zpage::codec::{self, Class};
///
/// assert_eq!(codec::stored_class(&[Class::Zero.tag()])?, Class::Zero);
/// assert!(codec::stored_class(&[]).is_err());
/// # Ok::<(), zpage::DecodeError>(())
/// ```
pub fn stored_class(stored: &[u8]) -> Result<Class, DecodeError> {
    let &tag = stored.first().ok_or(DecodeError::Empty)?;
    Class::from_tag(tag).ok_or(DecodeError::UnknownTag(tag))
}

/// Bytes a stored form occupies in a store's allocator: zero and same-filled pages live
/// entirely in the page's metadata (as in zram), and the tag byte lives there too, so an
/// incompressible page costs exactly one page.
pub fn stored_size(class: Class, encoded_len: usize) -> usize {
    if class.is_inline() {
        0
    } else {
        encoded_len.saturating_sub(1)
    }
}
