//! Trained zstd dictionaries, and the zstd form that names the dictionary it needs.
//!
//! A 4 KiB page is too short for zstd to learn a program's strings, pointers and headers
//! from the page alone; a dictionary trained on the program's own pages gives them up
//! front (what zram's `algorithm_params dict=` does since Linux 6.12).
//!
//! Invariants:
//! - A [`Dictionary`] is immutable. Its id (at least 1) is written into its zstd header
//!   and, by zstd, into every frame encoded with it, so a stored form names its
//!   dictionary; ids below 256 cost one byte a page.
//! - Decoding a frame that names a dictionary needs exactly that one: an id nobody
//!   supplies is [`DecodeError::MissingDictionary`], and zstd refuses a frame given a
//!   dictionary of another id. A frame naming none decodes as before.
//! - A dictionary is accepted only if zstd parses it (the trainer's output, or a file's
//!   bytes checked by [`Dictionary::from_bytes`]); nothing here panics on bad bytes.

use super::mixed::Primer;
use super::unit::planes;
use super::zstd::{Contexts, Search, contexts};
use super::{Class, DecodeError};
use crate::page::PAGE_SIZE;
use crate::page::Page;
use crate::sync::{AtomicU64, Ordering, RefCell};
use ::zstd::zstd_safe::{CCtx, CParameter, DCtx, DDict, DParameter, FrameFormat};

/// zstd's dictionary magic number, the first four bytes of a trained dictionary.
const DICT_MAGIC: [u8; 4] = 0xEC30_A437u32.to_le_bytes();
/// Compression contexts kept per thread, one per dictionary recently encoded with.
const CONTEXTS_PER_THREAD: usize = 8;
/// Smallest dictionary zstd's trainer accepts to produce, in bytes.
pub const MIN_DICT_BYTES: usize = 256;

/// Why a dictionary could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DictError {
    /// zstd's trainer failed (too few or too uniform samples).
    #[error("cannot train a dictionary: {0}")]
    Train(String),
    /// The bytes are not a zstd dictionary.
    #[error("not a zstd dictionary: {0}")]
    Invalid(&'static str),
    /// Id 0 means "no dictionary" in a zstd frame.
    #[error("dictionary id 0 is reserved")]
    ZeroId,
}

self_cell::self_cell!(
    /// A dictionary's bytes and zstd's decoding tables, which refer to those bytes
    /// rather than hold a copy of their own (a copy would double a dictionary's memory;
    /// `self_cell` rather than our own unsafe code for the borrow of a sibling field).
    struct Prepared {
        owner: Box<[u8]>,
        #[covariant]
        dependent: DDict,
    }
);

/// A trained zstd dictionary, for encoding at one level and prepared for decoding.
/// `Send + Sync`: shared by every thread of a store. Encoding digests it once per thread
/// into a context sized for one page (kept per thread, as zstd's other contexts are),
/// so a dictionary's own memory is its bytes and its decoding tables.
pub struct Dictionary {
    id: u32,
    level: i32,
    /// Names this dictionary's per-thread compression contexts (ids can repeat across
    /// stores; serials cannot).
    serial: u64,
    prepared: Prepared,
    /// The mixed form's starting state for the pages this dictionary serves.
    primer: Option<Primer>,
    /// The dictionary of the same pages as byte planes, for cold units in that layout
    /// ([`super::unit`]); the same id.
    planes: Option<Box<Dictionary>>,
    /// Stored pages whose form names this dictionary (kept by the store).
    pages: AtomicU64,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionary")
            .field("id", &self.id)
            .field("level", &self.level)
            .field("bytes", &self.bytes().len())
            .finish_non_exhaustive()
    }
}

impl Dictionary {
    /// Trains a dictionary of at most `max_bytes` on `samples` (zstd's fastCover
    /// trainer), for encoding at `level`, named `id`.
    ///
    /// # Errors
    /// [`DictError::Train`] when zstd's trainer fails (too few or too uniform samples),
    /// [`DictError::ZeroId`] for id 0.
    ///
    /// # Examples
    /// See [`decode`].
    pub fn train(
        samples: &[&[u8]],
        max_bytes: usize,
        id: u32,
        level: i32,
    ) -> Result<Dictionary, DictError> {
        let bytes = ::zstd::dict::from_samples(samples, max_bytes.max(MIN_DICT_BYTES))
            .map_err(|e| DictError::Train(e.to_string()))?;
        Dictionary::from_bytes(bytes, id, level)
    }

    /// Trains a planes twin of at most `max_bytes` on `samples` (pages, or any whole
    /// number of words) laid out as byte planes, as a unit in that layout is
    /// ([`super::unit::Layout::Planes`]), named `id` (its dictionary's, for
    /// [`Dictionary::with_planes`]).
    ///
    /// # Errors
    /// As [`Dictionary::train`].
    pub fn train_planes(
        samples: &[&[u8]],
        max_bytes: usize,
        id: u32,
        level: i32,
    ) -> Result<Dictionary, DictError> {
        let columns: Vec<Vec<u8>> = samples.iter().map(|sample| planes(sample)).collect();
        let columns: Vec<&[u8]> = columns.iter().map(|c| &c[..]).collect();
        Dictionary::train(&columns, max_bytes, id, level)
    }

    /// A dictionary from the bytes of a trained one (as [`Dictionary::bytes`] gives
    /// them), renamed `id`, for encoding at `level`. Refused unless zstd parses it.
    ///
    /// # Errors
    /// [`DictError::Invalid`] for bytes zstd does not load as a dictionary,
    /// [`DictError::ZeroId`] for id 0.
    ///
    /// # Examples
    /// ```
    /// use zpage::codec::dict::{DictError, Dictionary};
    ///
    /// assert_eq!(Dictionary::from_bytes(vec![1, 2, 3], 1, 3).unwrap_err(),
    ///     DictError::Invalid("no zstd dictionary header"));
    /// ```
    pub fn from_bytes(bytes: Vec<u8>, id: u32, level: i32) -> Result<Dictionary, DictError> {
        if id == 0 {
            return Err(DictError::ZeroId);
        }
        let mut bytes = bytes.into_boxed_slice();
        if bytes.len() < 8 || bytes[..4] != DICT_MAGIC {
            return Err(DictError::Invalid("no zstd dictionary header"));
        }
        bytes[4..8].copy_from_slice(&id.to_le_bytes());
        let prepared = Prepared::try_new(bytes, |bytes| {
            DDict::try_create_by_reference(bytes).ok_or(DictError::Invalid("zstd cannot load it"))
        })?;
        if prepared.borrow_dependent().get_dict_id().map(|id| id.get()) != Some(id) {
            return Err(DictError::Invalid("its header does not parse"));
        }
        // The encoder must accept it too, before any page depends on that.
        new_context(prepared.borrow_owner(), level, PAGE_SIZE, None)
            .ok_or(DictError::Invalid("zstd cannot load it"))?;
        Ok(Dictionary {
            id,
            level,
            serial: crate::sync::unique_serial(),
            prepared,
            primer: None,
            planes: None,
            pages: AtomicU64::new(0),
        })
    }

    /// A copy of this dictionary, its primer and its planes twin, named `id` and
    /// prepared for `level` (a `Dictionary` is immutable and shared: what adds to one,
    /// or renames it, starts from a copy).
    ///
    /// # Errors
    /// [`DictError::ZeroId`] for id 0 (the bytes were checked when it was made).
    pub fn renamed(&self, id: u32, level: i32) -> Result<Dictionary, DictError> {
        let mut copy = Dictionary::from_bytes(self.bytes().to_vec(), id, level)?;
        copy.primer = self.primer.clone();
        if let Some(twin) = &self.planes {
            copy.planes = Some(Box::new(twin.renamed(id, level)?));
        }
        Ok(copy)
    }

    /// The dictionary with `primer` for the mixed form of the pages it serves.
    pub fn with_primer(mut self, primer: Primer) -> Dictionary {
        self.primer = Some(primer);
        self
    }

    /// The mixed form's primer for the pages it serves, if it has one.
    pub fn primer(&self) -> Option<&Primer> {
        self.primer.as_ref()
    }

    /// The dictionary with `planes`, trained on the same pages as byte planes
    /// ([`super::shuffle`]) and named by the same id (so a unit's frame names either by
    /// the one id, and its layout says which).
    ///
    /// # Panics
    /// If `planes` has another id.
    pub fn with_planes(mut self, planes: Dictionary) -> Dictionary {
        assert_eq!(planes.id, self.id, "a planes twin has its dictionary's id");
        self.planes = Some(Box::new(planes));
        self
    }

    /// The dictionary of the same pages as byte planes, if it has one.
    pub fn planes(&self) -> Option<&Dictionary> {
        self.planes.as_deref()
    }

    /// The id stored forms name it by.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The zstd level it encodes at.
    pub fn level(&self) -> i32 {
        self.level
    }

    /// Its bytes (the id written into their header), as saved to a file.
    pub fn bytes(&self) -> &[u8] {
        self.prepared.borrow_owner()
    }

    /// Memory it takes: its bytes, zstd's decoding tables (which refer to the bytes),
    /// its primer and its planes' dictionary.
    pub fn memory_bytes(&self) -> usize {
        self.bytes().len()
            + self.prepared.borrow_dependent().sizeof()
            + self.primer.as_ref().map_or(0, Primer::memory_bytes)
            + self.planes.as_ref().map_or(0, |p| p.memory_bytes())
    }

    /// Stored pages whose form names it.
    pub fn pages(&self) -> u64 {
        self.pages.load(Ordering::Relaxed)
    }

    pub(crate) fn add_page(&self) {
        self.pages.fetch_add(1, Ordering::Relaxed);
    }

    /// Uncounts a page; returns whether it was the last.
    pub(crate) fn remove_page(&self) -> bool {
        self.pages.fetch_sub(1, Ordering::Relaxed) == 1
    }
}

/// Where a decoder finds the dictionaries stored forms name.
pub trait Dictionaries {
    /// The dictionary of `id`, if there is one.
    fn get(&self, id: u32) -> Option<&Dictionary>;
}

/// No dictionaries at all: forms that name one do not decode.
pub struct NoDictionaries;

impl Dictionaries for NoDictionaries {
    fn get(&self, _: u32) -> Option<&Dictionary> {
        None
    }
}

impl Dictionaries for Dictionary {
    fn get(&self, id: u32) -> Option<&Dictionary> {
        (self.id == id).then_some(self)
    }
}

thread_local! {
    /// Compression contexts with a dictionary loaded (the least recently used dropped),
    /// by serial, level and the source size their tables are sized for.
    static CCTXS: RefCell<Contexts<ContextKey, CCtx<'static>>> = RefCell::new(contexts(CONTEXTS_PER_THREAD));
    static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

/// A compression context's dictionary serial, level, source size and search limits.
type ContextKey = (u64, i32, usize, Option<Search>);

/// A compression context for sources of `size` bytes (a page, a unit of pages) with
/// `bytes` loaded: magicless frames that name the dictionary and leave the content size
/// out, tables sized for the source (a window of one page would miss the unit's repeats).
fn new_context(
    bytes: &[u8],
    level: i32,
    size: usize,
    search: Option<Search>,
) -> Option<CCtx<'static>> {
    let mut cctx = CCtx::try_create()?;
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .ok()?;
    for param in search.iter().flat_map(|s| s.parameters()) {
        cctx.set_parameter(param).ok()?;
    }
    for param in [
        CParameter::Format(FrameFormat::Magicless),
        CParameter::ContentSizeFlag(false),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(true),
        CParameter::SrcSizeHint(u32::try_from(size).unwrap_or(u32::MAX)),
    ] {
        cctx.set_parameter(param).ok()?;
    }
    cctx.load_dictionary(bytes).ok()?;
    Some(cctx)
}

/// Appends the zstd form of `page` encoded with `dict` at zstd `level` (the dictionary's
/// own, [`Dictionary::level`], or a stronger one for cold pages) to `out`: the tag, then
/// a magicless zstd frame that names the dictionary. The level is the encoder's alone:
/// decoding needs only the dictionary.
pub fn encode(page: &Page, dict: &Dictionary, level: i32, out: &mut Vec<u8>) {
    out.push(Class::Zstd.tag());
    encode_bytes(page.bytes(), dict, level, None, out);
}

/// Appends a magicless zstd frame of `src` (a page, or a unit of pages) encoded with
/// `dict` at `level`, its search limited as `search` says if given, to `out`; the
/// frame names the dictionary.
pub fn encode_bytes(
    src: &[u8],
    dict: &Dictionary,
    level: i32,
    search: Option<Search>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.resize(start + ::zstd::zstd_safe::compress_bound(src.len()), 0);
    let key = (dict.serial, level, src.len(), search);
    let written = CCTXS.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_mut(key, || {
                new_context(dict.bytes(), level, src.len(), search)
                    .expect("the dictionary loaded when it was made")
            })
            .compress2(&mut out[start..], src)
            .expect("output sized by compress_bound")
    });
    out.truncate(start + written);
}

/// The dictionary id a magicless zstd frame names (0: none), from its frame header;
/// `None` if the header is cut short.
pub fn frame_dict_id(payload: &[u8]) -> Option<u32> {
    let &descriptor = payload.first()?;
    let size = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let single_segment = descriptor & 0x20 != 0;
    let at = 1 + usize::from(!single_segment);
    let field = payload.get(at..at + size)?;
    let mut id = [0u8; 4];
    id[..size].copy_from_slice(field);
    Some(u32::from_le_bytes(id))
}

/// Decodes a frame that names dictionary `id` with it; the frame must fill `out`.
///
/// # Errors
/// [`DecodeError::MissingDictionary`] if `dicts` lacks dictionary `id`; a corrupt-form
/// error for a frame that does not decode to exactly a page with it.
///
/// # Examples
/// ```
/// use zpage::Page;
/// use zpage::codec::dict::{self, Dictionary, NoDictionaries};
///
/// let samples: Vec<Vec<u8>> = (0..64u32)
///     .map(|i| format!("key={i} value={} ", i * 7).repeat(40).into_bytes())
///     .collect();
/// let refs: Vec<&[u8]> = samples.iter().map(|s| &s[..]).collect();
/// let dictionary = Dictionary::train(&refs, 2048, 1, 3)?;
/// let mut page = Page::zeroed();
/// page.bytes_mut()[..samples[3].len().min(4096)]
///     .copy_from_slice(&samples[3][..samples[3].len().min(4096)]);
/// let mut form = Vec::new();
/// dict::encode(&page, &dictionary, 3, &mut form);
/// let mut out = Page::zeroed();
/// dict::decode(&form[1..], 1, &dictionary, &mut out)?;
/// assert!(out == page);
/// assert!(dict::decode(&form[1..], 1, &NoDictionaries, &mut out).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode(
    payload: &[u8],
    id: u32,
    dicts: &(impl Dictionaries + ?Sized),
    out: &mut Page,
) -> Result<(), DecodeError> {
    let dict = dicts.get(id).ok_or(DecodeError::MissingDictionary(id))?;
    decode_bytes(payload, dict, out.bytes_mut())
        .map_err(|reason| DecodeError::corrupt(Class::Zstd, reason))
}

/// Decodes any magicless zstd frame (a page's zstd form, a unit) that must fill `out`
/// exactly, with the dictionary its header names (none for id 0).
///
/// # Errors
/// [`DecodeError::MissingDictionary`] if `dicts` lacks the dictionary the frame names; a
/// corrupt-form error for a cut header or a frame that does not fill `out` exactly.
pub fn decode_frame(
    frame: &[u8],
    dicts: &(impl Dictionaries + ?Sized),
    out: &mut [u8],
) -> Result<(), DecodeError> {
    let corrupt = |reason| DecodeError::corrupt(Class::Zstd, reason);
    match frame_dict_id(frame) {
        None => Err(corrupt("zstd frame header cut short")),
        Some(0) => super::zstd::zstd_exact(frame, out).map_err(corrupt),
        Some(id) => {
            let dict = dicts.get(id).ok_or(DecodeError::MissingDictionary(id))?;
            decode_bytes(frame, dict, out).map_err(corrupt)
        }
    }
}

/// Decodes a frame encoded with `dict` that must fill `out` exactly.
fn decode_bytes(payload: &[u8], dict: &Dictionary, out: &mut [u8]) -> Result<(), &'static str> {
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dctx = slot.get_or_insert_with(|| {
            let mut d = DCtx::create();
            d.set_parameter(DParameter::Format(FrameFormat::Magicless))
                .expect("valid zstd parameter");
            d
        });
        let len = out.len();
        match dctx.decompress_using_ddict(out, payload, dict.prepared.borrow_dependent()) {
            Ok(n) if n == len => Ok(()),
            Ok(_) => Err("zstd frame decodes to fewer bytes than expected"),
            Err(_) => Err("invalid zstd frame for its dictionary"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_pages(n: usize) -> Vec<Page> {
        (0..n)
            .map(|i| {
                let mut page = Page::zeroed();
                let line = format!("GET /api/v1/users/{i} HTTP/1.1 host=example.org agent=curl ");
                for (j, chunk) in page.bytes_mut().chunks_mut(line.len()).enumerate() {
                    let line = format!("{line}{}", (i * 31 + j) % 977);
                    chunk.copy_from_slice(&line.as_bytes()[..chunk.len()]);
                }
                page
            })
            .collect()
    }

    fn trained(id: u32) -> Dictionary {
        let pages = text_pages(64);
        let samples: Vec<&[u8]> = pages.iter().map(|p| &p.bytes()[..]).collect();
        Dictionary::train(&samples, 8192, id, 3).expect("trains")
    }

    #[test]
    fn frames_name_their_dictionary_and_round_trip() {
        let dict = trained(7);
        let page = &text_pages(70)[69];
        let (mut with, mut without) = (Vec::new(), Vec::new());
        encode(page, &dict, dict.level(), &mut with);
        super::super::zstd::encode(page, 3, &mut without);
        assert!(
            with.len() < without.len(),
            "{} vs {}",
            with.len(),
            without.len()
        );
        assert_eq!(frame_dict_id(&with[1..]), Some(7));
        assert_eq!(frame_dict_id(&without[1..]), Some(0));
        let mut back = Page::zeroed();
        decode(&with[1..], 7, &dict, &mut back).unwrap();
        assert_eq!(back, *page);
        // No dictionary, or another one of the same id: refused, not wrong bytes.
        assert_eq!(
            decode(&with[1..], 7, &NoDictionaries, &mut back),
            Err(DecodeError::MissingDictionary(7))
        );
        let other = Dictionary::from_bytes(trained(9).bytes().to_vec(), 7, 3).unwrap();
        let result = decode(&with[1..], 7, &other, &mut back);
        assert!(result.is_err() || back == *page, "never wrong bytes");
    }

    #[test]
    fn bad_dictionary_bytes_are_refused() {
        assert_eq!(
            Dictionary::from_bytes(vec![0; 100], 1, 3).err(),
            Some(DictError::Invalid("no zstd dictionary header"))
        );
        assert_eq!(
            Dictionary::from_bytes(trained(1).bytes().to_vec(), 0, 3).err(),
            Some(DictError::ZeroId)
        );
        let mut cut = trained(1).bytes().to_vec();
        cut.truncate(40);
        assert!(Dictionary::from_bytes(cut, 1, 3).is_err());
        assert!(matches!(
            Dictionary::train(&[&b"x"[..]], 4096, 1, 3),
            Err(DictError::Train(_))
        ));
    }

    #[test]
    fn a_dictionary_is_counted_once() {
        // zstd's decoding tables are the same size whatever the dictionary's: what its
        // memory adds beyond its bytes does not grow with them (no copy of them).
        let pages: Vec<Vec<u8>> = (0..512u64)
            .map(|i| {
                let words = (0..PAGE_SIZE as u64 / 8)
                    .map(|j| ((i % 64) << 12 | j).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40);
                words.flat_map(u64::to_le_bytes).collect()
            })
            .collect();
        let samples: Vec<&[u8]> = pages.iter().map(|p| &p[..]).collect();
        let [small, large] =
            [4096, 32768].map(|max| Dictionary::train(&samples, max, 1, 3).unwrap());
        assert!(
            large.bytes().len() > small.bytes().len() + 8192,
            "{} {}",
            large.bytes().len(),
            small.bytes().len()
        );
        let tables = |d: &Dictionary| d.memory_bytes() - d.bytes().len();
        assert_eq!(tables(&small), tables(&large));
        assert!(tables(&large) < large.bytes().len());
    }

    #[test]
    fn truncated_frame_headers_are_none() {
        assert_eq!(frame_dict_id(&[]), None);
        assert_eq!(frame_dict_id(&[0x01]), None);
        assert_eq!(frame_dict_id(&[0x21, 5]), Some(5));
        assert_eq!(frame_dict_id(&[0x03, 0, 1, 2, 3, 4]), Some(0x0403_0201));
    }
}
