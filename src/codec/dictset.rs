//! A set of dictionaries, one per cluster of similar pages: trained on sampled pages, the
//! number of clusters chosen by the stored bytes it gives on held-out pages, saved and
//! loaded as a file.
//!
//! Invariants:
//! - Every cluster has exactly one dictionary; a page's dictionary is its nearest
//!   centroid's (the features are the classifier's, already extracted on insert).
//! - Training chooses among no dictionary and 1, 2, 4 or 8 clusters (two dictionary
//!   sizes each; it stops at the first count that does not improve) by one stated
//!   criterion: the bytes the held-out pages (every tenth sampled page) take, scaled to
//!   the pages the set will serve, plus the memory the dictionaries take. So a small
//!   store gets small dictionaries or none.
//! - Each cluster's dictionary carries the mixed form's primer for its pages, trained on
//!   the same samples once the set is chosen ([`super::mixed::Primer::train`]), and may
//!   carry a planes twin, a dictionary of its pages as byte planes for cold units in that
//!   layout ([`super::unit`]), kept only where units of neighbouring pages show it saves
//!   more than its memory ([`DictionarySet::with_twins`]). Files of version 1 (before
//!   primers), 2 and 3 (primers of earlier models, which this coder cannot use) load
//!   without primers, and before version 5 without twins.
//! - A file is checked whole before anything is built from it (magic, version, lengths,
//!   CRC-32, zstd's parse of each dictionary): a bad file is a one-line error.

use super::dict::{DictError, Dictionaries, Dictionary};
use super::mixed::{PRIMER_BYTES, Primer};
use super::unit;
use crate::classify::cluster::Clusters;
use crate::classify::features::{self, COUNT, Features};
use crate::page::{PAGE_SIZE, Page};
use crate::sync::Arc;
use std::path::Path;

const FILE_MAGIC: &[u8; 8] = b"ZPGDICT\0";
/// Format version written into dictionary-set files.
pub const FILE_VERSION: u32 = 5;
/// The first version with planes twins.
const FILE_VERSION_TWINS: u32 = 5;
/// The version before primers, still read.
const FILE_VERSION_NO_PRIMERS: u32 = 1;
/// The first version whose primers this coder reads.
const FILE_VERSION_PRIMERS: u32 = 4;
/// The versions whose primers were earlier models', still read (their primers dropped),
/// with their primers' length.
const OLD_PRIMERS: [(u32, usize); 2] = [(2, 34_304), (3, 26_194)];
/// Sizes of planes twin tried: the smallest pays on a small store; a heap whose units
/// are nearly all planes gains most from the largest (the README's "Cold units").
const TWIN_BYTES: [usize; 3] = [16 << 10, 32 << 10, 64 << 10];
/// Fewest held-out units a twin is judged on.
const MIN_HELD_UNITS: usize = 4;
/// Times its memory a twin must save at the probe's level, which overstates what the
/// planes layout saves at a unit's level where it saves little (the README's "Cold
/// units").
const TWIN_MARGIN: f64 = 2.0;

/// Most clusters a set (or a file) may hold.
pub const MAX_CLUSTERS: usize = 64;
/// Largest dictionary a file may hold.
const MAX_DICT_FILE_BYTES: usize = 1 << 20;
/// Smallest dictionary worth a cluster.
const MIN_DICT_BYTES: usize = 4 << 10;
/// Largest dictionary trained (zstd's usual size; more samples a cluster, not more bytes).
const MAX_DICT_BYTES: usize = 112 << 10;
/// Sampled pages at most per cluster given to the trainer.
const MAX_SAMPLES: usize = 2048;
/// Candidate cluster counts.
const CLUSTER_COUNTS: [usize; 4] = [1, 2, 4, 8];
/// Most clusters training makes (so the ids a training needs).
pub const MAX_TRAINED_CLUSTERS: usize = CLUSTER_COUNTS[CLUSTER_COUNTS.len() - 1];

/// Why a dictionary set could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DictSetError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a dictionary set of this version, or is damaged.
    #[error("{path}: not a zpage dictionary set: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: FormatError,
    },
}

/// What is wrong with bytes given as a dictionary set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Shorter than a header and a checksum.
    #[error("too short")]
    TooShort,
    /// The header is not a dictionary set's.
    #[error("no dictionary-set header")]
    NoHeader,
    /// A format version this build does not read.
    #[error("format version {found}, this build reads {oldest} to {newest}")]
    Version {
        /// The file's version.
        found: u32,
        /// The oldest version read.
        oldest: u32,
        /// The newest version read.
        newest: u32,
    },
    /// The checksum does not match.
    #[error("checksum mismatch (truncated or damaged)")]
    Checksum,
    /// A cluster count outside what a set may have.
    #[error("{0} clusters (1 to {MAX_CLUSTERS})")]
    Clusters(usize),
    /// A field runs past the end.
    #[error("truncated")]
    Truncated,
    /// A dictionary larger than any trained one.
    #[error("dictionary {index} of {len} bytes")]
    DictionaryTooLarge {
        /// Its cluster.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// A dictionary's bytes are not a zstd dictionary.
    #[error("dictionary {index}: {source}")]
    Dictionary {
        /// Its cluster.
        index: usize,
        /// Why.
        source: DictError,
    },
    /// A planes twin's bytes are not a zstd dictionary.
    #[error("planes dictionary {index}: {source}")]
    Twin {
        /// Its cluster.
        index: usize,
        /// Why.
        source: DictError,
    },
    /// A primer of a length no coder writes.
    #[error("primer {index} of {len} bytes (0 or {expected})")]
    Primer {
        /// Its cluster.
        index: usize,
        /// Its length.
        len: usize,
        /// The length this version's primers have.
        expected: usize,
    },
    /// Bytes after the last dictionary.
    #[error("bytes after the last dictionary")]
    Trailing,
    /// A centroid with a coordinate that is not finite.
    #[error("a centroid is not finite")]
    Centroid,
    /// The path is not a regular file.
    #[error("not a regular file")]
    NotAFile,
    /// The file is larger than any set.
    #[error("{0} bytes is too large")]
    TooLarge(u64),
}

/// What training aims at.
#[derive(Clone, Copy, Debug)]
pub struct TrainTarget {
    /// Most bytes all the dictionaries together may hold.
    pub budget_bytes: usize,
    /// The zstd level the dictionaries encode at.
    pub level: i32,
    /// The zstd level pages are stored at without a dictionary (what a set must beat).
    pub plain_level: i32,
    /// The id of the first dictionary; the others follow.
    pub first_id: u32,
    /// How many pages the set is expected to serve (its memory is paid once, its
    /// savings per page).
    pub served_pages: u64,
    /// Most clusters to consider (1: one dictionary for every page).
    pub max_clusters: usize,
}

/// Dictionaries by cluster. Cloning shares the dictionaries.
#[derive(Clone, Debug)]
pub struct DictionarySet {
    clusters: Clusters,
    dicts: Vec<Arc<Dictionary>>,
}

impl Dictionaries for DictionarySet {
    fn get(&self, id: u32) -> Option<&Dictionary> {
        self.dicts.iter().find(|d| d.id() == id).map(|d| &**d)
    }
}

impl DictionarySet {
    /// Trains a set on `pages` (those a dictionary would serve: the zstd pages), or
    /// `None` when no dictionary pays for its memory on the held-out pages (or zstd's
    /// trainer cannot train on them).
    pub fn train(pages: &[&Page], target: TrainTarget) -> Option<DictionarySet> {
        let held_out: Vec<&Page> = pages.iter().skip(9).step_by(10).copied().collect();
        let train: Vec<&Page> = (0..pages.len())
            .filter(|i| i % 10 != 9)
            .map(|i| pages[i])
            .collect();
        if held_out.is_empty() {
            return None;
        }
        let scale = target.served_pages.max(held_out.len() as u64) as f64 / held_out.len() as f64;
        let mut scratch = Vec::new();
        let plain: usize = held_out
            .iter()
            .map(|page| {
                scratch.clear();
                super::zstd::encode(page, target.plain_level, &mut scratch);
                scratch.len()
            })
            .sum();
        let mut best: (f64, Option<DictionarySet>) = (plain as f64 * scale, None);
        let points: Vec<Features> = train.iter().map(|p| features::extract(p)).collect();
        for k in CLUSTER_COUNTS
            .into_iter()
            .filter(|&k| k <= target.max_clusters.max(1))
        {
            let before = best.0;
            let largest = (target.budget_bytes / k).min(MAX_DICT_BYTES);
            if largest < MIN_DICT_BYTES || train.len() < 16 * k {
                break;
            }
            let clusters = Clusters::fit(&points, k);
            // Two sizes a cluster: the most the budget allows, and a small one, which
            // pays sooner on a store of few pages or a narrow vocabulary.
            let sizes = [largest, (largest / 8).max(MIN_DICT_BYTES)];
            for dict_bytes in sizes
                .into_iter()
                .take(1 + usize::from(largest / 8 >= MIN_DICT_BYTES))
            {
                let Some(set) = DictionarySet::fit(&clusters, &train, &points, dict_bytes, target)
                else {
                    return best.1;
                };
                let bytes: usize = held_out
                    .iter()
                    .map(|page| {
                        scratch.clear();
                        let dict = set.dictionary_for(&features::extract(page));
                        super::dict::encode(page, dict, dict.level(), &mut scratch);
                        scratch.len()
                    })
                    .sum();
                let cost = bytes as f64 * scale + set.memory_bytes() as f64;
                if cost < best.0 {
                    best = (cost, Some(set));
                }
            }
            // More clusters than the best so far seldom win: stop when this count lost.
            if best.0 >= before && k > 1 {
                break;
            }
        }
        best.1.map(|set| set.primed(&train, &points))
    }

    /// The set with each dictionary given a primer trained on its cluster's pages.
    fn primed(self, train: &[&Page], points: &[Features]) -> DictionarySet {
        let dicts = self
            .dicts
            .iter()
            .enumerate()
            .map(|(c, dict)| {
                let members: Vec<&[u8]> = train
                    .iter()
                    .zip(points)
                    .filter(|(_, x)| self.clusters.nearest(x) == c)
                    .map(|(p, _)| &p.bytes()[..])
                    .collect();
                let primer = Primer::train(&members);
                dict.renamed(dict.id(), dict.level())
                    .map(|d| Arc::new(d.with_primer(primer)))
                    .unwrap_or_else(|_| dict.clone())
            })
            .collect();
        DictionarySet {
            clusters: self.clusters,
            dicts,
        }
    }

    /// The set with a planes twin for each dictionary whose units it pays for: `units`
    /// are runs of neighbouring pages as the cold pass packs them (each concatenated
    /// whole pages), sampled evenly from a store of `served_pages`. A unit belongs to
    /// its first page's cluster, as in the cold pass; a quarter of each cluster's units
    /// judge the twins trained on the rest (by what they save beyond their memory, at
    /// the probe level of [`unit::encode`]), on runs of neighbours because those are
    /// what the cold pass packs.
    pub fn with_twins(&self, units: &[&[u8]], served_pages: u64) -> DictionarySet {
        let cluster_of = |unit: &&[u8]| {
            Page::from_slice(&unit[..PAGE_SIZE.min(unit.len())])
                .map_or(0, |first| self.clusters.nearest(&features::extract(&first)))
        };
        let pages_of = |units: &[&[u8]]| units.iter().map(|u| u.len() / PAGE_SIZE).sum::<usize>();
        // Each sampled page stands for this many of the store's.
        let per_sampled = served_pages as f64 / pages_of(units).max(1) as f64;
        let owners: Vec<usize> = units.iter().map(cluster_of).collect();
        let dicts = self
            .dicts
            .iter()
            .enumerate()
            .map(|(c, dict)| {
                let mine: Vec<&[u8]> = units
                    .iter()
                    .zip(&owners)
                    .filter(|&(_, &owner)| owner == c)
                    .map(|(unit, _)| *unit)
                    .collect();
                let held: Vec<&[u8]> = mine.iter().skip(3).step_by(4).copied().collect();
                let train: Vec<&[u8]> = (0..mine.len())
                    .filter(|i| i % 4 != 3)
                    .map(|i| mine[i])
                    .collect();
                // What the held units save, for every page of the cluster's.
                let scale = per_sampled * (pages_of(&held) + pages_of(&train)) as f64
                    / pages_of(&held).max(1) as f64;
                best_twin(&train, &held, dict, scale)
                    .and_then(|twin| {
                        let copy = dict.renamed(dict.id(), dict.level()).ok()?;
                        Some(Arc::new(copy.with_planes(twin)))
                    })
                    .unwrap_or_else(|| dict.clone())
            })
            .collect();
        DictionarySet {
            clusters: self.clusters.clone(),
            dicts,
        }
    }

    /// One dictionary of `dict_bytes` per cluster, trained on its members among `train`
    /// (a cluster too small or too uniform to train on gets one trained on all of
    /// `train`); `None` if even that fails.
    fn fit(
        clusters: &Clusters,
        train: &[&Page],
        points: &[Features],
        dict_bytes: usize,
        target: TrainTarget,
    ) -> Option<DictionarySet> {
        let mut dicts = Vec::with_capacity(clusters.len());
        for c in 0..clusters.len() {
            let members: Vec<&[u8]> = train
                .iter()
                .zip(points)
                .filter(|(_, x)| clusters.nearest(x) == c)
                .map(|(p, _)| &p.bytes()[..])
                .collect();
            let step = members.len().div_ceil(MAX_SAMPLES).max(1);
            let samples: Vec<&[u8]> = members.into_iter().step_by(step).collect();
            let id = target.first_id + c as u32;
            let dict = Dictionary::train(&samples, dict_bytes, id, target.level).or_else(|_| {
                let step = train.len().div_ceil(MAX_SAMPLES).max(1);
                let all: Vec<&[u8]> = train.iter().step_by(step).map(|p| &p.bytes()[..]).collect();
                Dictionary::train(&all, dict_bytes, id, target.level)
            });
            dicts.push(Arc::new(dict.ok()?));
        }
        Some(DictionarySet {
            clusters: clusters.clone(),
            dicts,
        })
    }

    /// The dictionary of the cluster nearest to features `x`.
    pub fn dictionary_for(&self, x: &Features) -> &Arc<Dictionary> {
        &self.dicts[self.clusters.nearest(x)]
    }

    /// The dictionaries, by cluster.
    pub fn dictionaries(&self) -> &[Arc<Dictionary>] {
        &self.dicts
    }

    /// The clusters.
    pub fn clusters(&self) -> &Clusters {
        &self.clusters
    }

    /// Memory the dictionaries take (their bytes and zstd's prepared tables).
    pub fn memory_bytes(&self) -> usize {
        self.dicts.iter().map(|d| d.memory_bytes()).sum()
    }

    /// The same dictionaries renamed from `first_id` on and prepared for `level`.
    ///
    /// # Errors
    /// [`DictError::ZeroId`] when `first_id` is 0 (a dictionary of the set already
    /// loaded once is otherwise always renamed).
    ///
    /// # Examples
    /// See [`DictionarySet::load`].
    pub fn renamed(&self, first_id: u32, level: i32) -> Result<DictionarySet, DictError> {
        let dicts = self
            .dicts
            .iter()
            .zip(first_id..)
            .map(|(d, id)| d.renamed(id, level).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(DictionarySet {
            clusters: self.clusters.clone(),
            dicts,
        })
    }

    /// The set as a file's bytes: magic, version, cluster count, then per cluster its
    /// centroid, dictionary, primer and planes twin (each length-prefixed; a primer or
    /// twin of length 0 is none), then a CRC-32 of all before it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = FILE_MAGIC.to_vec();
        out.extend_from_slice(&FILE_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.dicts.len() as u32).to_le_bytes());
        for (centroid, dict) in self.clusters.centroids().iter().zip(&self.dicts) {
            for x in centroid {
                out.extend_from_slice(&x.to_le_bytes());
            }
            out.extend_from_slice(&(dict.bytes().len() as u32).to_le_bytes());
            out.extend_from_slice(dict.bytes());
            let primer = dict.primer().map(Primer::to_bytes).unwrap_or_default();
            out.extend_from_slice(&(primer.len() as u32).to_le_bytes());
            out.extend_from_slice(&primer);
            let twin = dict.planes().map_or(&[][..], Dictionary::bytes);
            out.extend_from_slice(&(twin.len() as u32).to_le_bytes());
            out.extend_from_slice(twin);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a set from [`DictionarySet::to_bytes`]'s form, naming its dictionaries from
    /// `first_id` on and preparing them for `level`.
    ///
    /// # Errors
    /// A [`FormatError`] saying what is wrong with the bytes.
    ///
    /// # Examples
    /// ```
    /// use zpage::codec::dictset::{DictionarySet, FormatError};
    ///
    /// assert_eq!(DictionarySet::from_bytes(b"short", 1, 3).unwrap_err(), FormatError::TooShort);
    /// ```
    pub fn from_bytes(
        bytes: &[u8],
        first_id: u32,
        level: i32,
    ) -> Result<DictionarySet, FormatError> {
        let body = bytes
            .len()
            .checked_sub(4)
            .filter(|&n| n >= 16)
            .ok_or(FormatError::TooShort)?;
        let (body, crc) = bytes.split_at(body);
        if body[..8] != FILE_MAGIC[..] {
            return Err(FormatError::NoHeader);
        }
        let version = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
        if !(FILE_VERSION_NO_PRIMERS..=FILE_VERSION).contains(&version) {
            return Err(FormatError::Version {
                found: version,
                oldest: FILE_VERSION_NO_PRIMERS,
                newest: FILE_VERSION,
            });
        }
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(FormatError::Checksum);
        }
        let count = u32::from_le_bytes(body[12..16].try_into().expect("4 bytes")) as usize;
        if count == 0 || count > MAX_CLUSTERS {
            return Err(FormatError::Clusters(count));
        }
        let mut rest = &body[16..];
        let mut take = |n: usize| -> Result<&[u8], FormatError> {
            if rest.len() < n {
                return Err(FormatError::Truncated);
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let (mut centroids, mut dicts) = (Vec::new(), Vec::new());
        for c in 0..count {
            let mut centroid = [0f32; COUNT];
            for x in centroid.iter_mut() {
                *x = f32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
            }
            centroids.push(centroid);
            let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            if len > MAX_DICT_FILE_BYTES {
                return Err(FormatError::DictionaryTooLarge { index: c, len });
            }
            let id = first_id + c as u32;
            let mut dict = Dictionary::from_bytes(take(len)?.to_vec(), id, level)
                .map_err(|source| FormatError::Dictionary { index: c, source })?;
            if version != FILE_VERSION_NO_PRIMERS {
                let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
                let expected = OLD_PRIMERS
                    .iter()
                    .find(|&&(v, _)| v == version)
                    .map_or(PRIMER_BYTES, |&(_, len)| len);
                if len != 0 && len != expected {
                    return Err(FormatError::Primer {
                        index: c,
                        len,
                        expected,
                    });
                }
                let primer = take(len)?;
                if len != 0 && version >= FILE_VERSION_PRIMERS {
                    let primer = Primer::from_bytes(primer).expect("length checked");
                    dict = dict.with_primer(primer);
                }
            }
            if version >= FILE_VERSION_TWINS {
                let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
                if len > MAX_DICT_FILE_BYTES {
                    return Err(FormatError::DictionaryTooLarge { index: c, len });
                }
                if len != 0 {
                    let twin = Dictionary::from_bytes(take(len)?.to_vec(), id, level)
                        .map_err(|source| FormatError::Twin { index: c, source })?;
                    dict = dict.with_planes(twin);
                }
            }
            dicts.push(Arc::new(dict));
        }
        if !rest.is_empty() {
            return Err(FormatError::Trailing);
        }
        let clusters = Clusters::from_centroids(centroids).ok_or(FormatError::Centroid)?;
        Ok(DictionarySet { clusters, dicts })
    }

    /// Writes the set to `path`.
    ///
    /// # Errors
    /// [`DictSetError::Io`] if the file cannot be written.
    ///
    /// # Examples
    /// See [`DictionarySet::load`].
    pub fn save(&self, path: &Path) -> Result<(), DictSetError> {
        std::fs::write(path, self.to_bytes()).map_err(|source| DictSetError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads a set from `path` (see [`DictionarySet::from_bytes`]); files over 64 MiB
    /// are refused unread.
    ///
    /// # Errors
    /// [`DictSetError::Io`] if the file cannot be read, [`DictSetError::Format`] (one
    /// line saying what is wrong) if it is not a dictionary set, or is damaged, or is not
    /// a regular file.
    ///
    /// # Examples
    /// ```
    /// use zpage::{DictionarySet, Page, PageStore, Profile};
    ///
    /// // Pages of text a dense store keeps as zstd, a dictionary trained on them...
    /// let store = PageStore::builder().profile(Profile::Dense).build();
    /// for id in 0..600u64 {
    ///     let text = format!("user_{} path=/api/v{}/item?q={} ", id % 97, id % 5, id * 31);
    ///     let mut page = Page::zeroed();
    ///     for (i, byte) in page.bytes_mut().iter_mut().enumerate() {
    ///         *byte = text.as_bytes()[i % text.len()] ^ (i / 997) as u8;
    ///     }
    ///     store.insert(id, &page)?;
    /// }
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("pages.dict");
    /// if let Some(set) = store.train_dictionaries()? {
    ///     set.save(&path)?;
    ///     // ...loaded by another store, which encodes with it from the start.
    ///     let loaded = DictionarySet::load(&path, 1, 8)?;
    ///     let other = PageStore::builder().dictionaries(loaded).build();
    ///     assert!(other.dictionaries().is_some());
    /// }
    /// std::fs::write(&path, b"not a set")?;
    /// let error = DictionarySet::load(&path, 1, 8).unwrap_err();
    /// assert!(error.to_string().contains("not a zpage dictionary set"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(path: &Path, first_id: u32, level: i32) -> Result<DictionarySet, DictSetError> {
        let io = |source| DictSetError::Io {
            path: path.display().to_string(),
            source,
        };
        let format = |reason: FormatError| DictSetError::Format {
            path: path.display().to_string(),
            reason,
        };
        let bytes = match crate::file::read_small(path, 64 << 20) {
            Ok(bytes) => bytes,
            Err(crate::SmallFileError::Io(source)) => return Err(io(source)),
            Err(crate::SmallFileError::TooLarge { size, .. }) => {
                return Err(format(FormatError::TooLarge(size)));
            }
            Err(_) => return Err(format(FormatError::NotAFile)),
        };
        DictionarySet::from_bytes(&bytes, first_id, level).map_err(format)
    }
}

/// The planes twin for `dict` that saves the most bytes beyond [`TWIN_MARGIN`] times its
/// own memory, among twins of [`TWIN_BYTES`] trained on the pages of the `train` units
/// as byte planes; `None` if none does (or fewer than [`MIN_HELD_UNITS`] units judge it:
/// a unit or two said a twin paid where it did not). Each `held` unit is judged as the
/// cold pass lays it out: the smaller of its two layouts at the probe level
/// ([`unit::probe`]), the bytes saved counted `scale` times.
fn best_twin(train: &[&[u8]], held: &[&[u8]], dict: &Dictionary, scale: f64) -> Option<Dictionary> {
    if held.len() < MIN_HELD_UNITS {
        return None;
    }
    let step = train
        .iter()
        .map(|u| u.len() / PAGE_SIZE)
        .sum::<usize>()
        .div_ceil(MAX_SAMPLES)
        .max(1);
    // Laid out as planes once, for every size tried.
    let samples: Vec<Vec<u8>> = train
        .iter()
        .flat_map(|unit| unit.chunks_exact(PAGE_SIZE))
        .step_by(step)
        .map(unit::planes)
        .collect();
    let samples: Vec<&[u8]> = samples.iter().map(|c| &c[..]).collect();
    let held: Vec<(usize, Vec<u8>)> = held
        .iter()
        .map(|unit| (unit::probe(unit, Some(dict)), unit::planes(unit)))
        .collect();
    let mut best = (0.0, None);
    for bytes in TWIN_BYTES {
        let Ok(twin) = Dictionary::train(&samples, bytes, dict.id(), dict.level()) else {
            continue;
        };
        let saved: usize = held
            .iter()
            .map(|(in_order, columns)| in_order.saturating_sub(unit::probe(columns, Some(&twin))))
            .sum();
        let pays = saved as f64 * scale - TWIN_MARGIN * twin.memory_bytes() as f64;
        if pays > best.0 {
            best = (pays, Some(twin));
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three kinds of pages: request lines, key-value records and a heap of pointers.
    fn pages() -> Vec<Page> {
        let heap = super::unit::heap(300, 5);
        (0..900)
            .map(|i| {
                let mut page = Page::zeroed();
                if i % 3 == 2 {
                    page.bytes_mut()
                        .copy_from_slice(&heap[i / 3 * PAGE_SIZE..][..PAGE_SIZE]);
                    return page;
                }
                let text = if i % 2 == 0 {
                    format!(
                        "GET /api/v1/users/{i}?session=abc{} HTTP/1.1\r\nHost: svc\r\n",
                        i * 7
                    )
                } else {
                    format!(
                        "{{\"key\":\"user:{i}\",\"ttl\":{},\"flags\":[1,2,3]}} ",
                        i % 13
                    )
                };
                for (j, chunk) in page.bytes_mut().chunks_mut(text.len() + 4).enumerate() {
                    let line = format!("{text}{:04}", (i * 31 + j * 7) % 9973);
                    chunk.copy_from_slice(&line.as_bytes()[..chunk.len()]);
                }
                page
            })
            .collect()
    }

    fn target(budget: usize) -> TrainTarget {
        TrainTarget {
            budget_bytes: budget,
            level: 3,
            plain_level: 3,
            first_id: 5,
            served_pages: 100_000,
            max_clusters: MAX_TRAINED_CLUSTERS,
        }
    }

    /// The test pages in runs of four neighbours, as the cold pass would pack them.
    fn units(pages: &[Page]) -> Vec<Vec<u8>> {
        pages
            .chunks(12)
            .flat_map(|run| {
                // Runs of one kind: every third page of the run is the heap's.
                let kinds: [Vec<u8>; 3] = std::array::from_fn(|k| {
                    run.iter()
                        .skip(k)
                        .step_by(3)
                        .flat_map(|p| p.bytes().to_vec())
                        .collect()
                });
                kinds
            })
            .collect()
    }

    /// A set trained on the test pages, with the planes twins their units pay for.
    fn twinned_set() -> DictionarySet {
        let pages = pages();
        let refs: Vec<&Page> = pages.iter().collect();
        let set = DictionarySet::train(&refs, target(64 << 10)).expect("pays");
        let units = units(&pages);
        let units: Vec<&[u8]> = units.iter().map(|u| &u[..]).collect();
        set.with_twins(&units, 100_000)
    }

    #[test]
    fn twins_are_kept_where_the_units_of_neighbours_pay_for_them() {
        let pages = pages();
        let refs: Vec<&Page> = pages.iter().collect();
        let set = DictionarySet::train(&refs, target(64 << 10)).expect("pays");
        assert!(set.dictionaries().iter().all(|d| d.planes().is_none()));
        let units = units(&pages);
        let units: Vec<&[u8]> = units.iter().map(|u| &u[..]).collect();
        let twinned = set.with_twins(&units, 100_000);
        let heap = Page::from_slice(&units[2][..PAGE_SIZE]).unwrap();
        let text = Page::from_slice(&units[0][..PAGE_SIZE]).unwrap();
        let of = |page: &Page| twinned.dictionary_for(&features::extract(page));
        assert!(
            of(&heap).planes().is_some(),
            "the heap's cluster has a twin"
        );
        assert!(of(&text).planes().is_none(), "text does not pay for one");
        // The twin takes the dictionary's id and keeps its primer.
        let dict = of(&heap);
        assert_eq!(dict.planes().unwrap().id(), dict.id());
        assert!(dict.primer().is_some());
        // A small store does not pay for one.
        let small = set.with_twins(&units, 100);
        assert!(small.dictionaries().iter().all(|d| d.planes().is_none()));
    }

    #[test]
    fn a_trained_set_saves_loads_and_refuses_damage() {
        let set = twinned_set();
        assert!(set.memory_bytes() > 0);
        assert_eq!(set.dictionaries()[0].id(), 5);
        let bytes = set.to_bytes();
        let back = DictionarySet::from_bytes(&bytes, 20, 3).unwrap();
        assert_eq!(back.clusters(), set.clusters());
        assert_eq!(back.dictionaries()[0].id(), 20);
        for (a, b) in set.dictionaries().iter().zip(back.dictionaries()) {
            assert!(a.primer().is_some());
            assert_eq!(a.primer(), b.primer());
            assert_eq!(a.planes().is_some(), b.planes().is_some());
            if let (Some(twin), Some(back_twin)) = (a.planes(), b.planes()) {
                assert_eq!(twin.id(), a.id());
                assert_eq!(back_twin.id(), b.id());
                assert_eq!(twin.bytes()[8..], back_twin.bytes()[8..]);
            }
        }
        for bad in [
            bytes[..bytes.len() - 1].to_vec(),
            bytes[..10].to_vec(),
            {
                let mut b = bytes.clone();
                b[30] ^= 1;
                b
            },
            {
                let mut b = bytes.clone();
                b[8] = FILE_VERSION as u8 + 1;
                b
            },
            b"not a set at all, not at all".to_vec(),
        ] {
            let err = DictionarySet::from_bytes(&bad, 1, 3)
                .unwrap_err()
                .to_string();
            assert!(!err.contains('\n'), "{err}");
        }
    }

    /// Files of version 1 (before primers), 2 and 3 (earlier models' primers) load, their
    /// dictionaries without primers; of version 4, with primers and without twins.
    #[test]
    fn a_file_without_usable_primers_loads() {
        let set = twinned_set();
        // A file of an older `version`: each dictionary with what `primer` gives for it
        // (no primer field at all for `None`).
        let old_file = |version: u32, primer: &dyn Fn(&Dictionary) -> Option<Vec<u8>>| {
            let mut old = FILE_MAGIC.to_vec();
            old.extend_from_slice(&version.to_le_bytes());
            old.extend_from_slice(&(set.dictionaries().len() as u32).to_le_bytes());
            for (centroid, dict) in set.clusters().centroids().iter().zip(set.dictionaries()) {
                for x in centroid {
                    old.extend_from_slice(&x.to_le_bytes());
                }
                old.extend_from_slice(&(dict.bytes().len() as u32).to_le_bytes());
                old.extend_from_slice(dict.bytes());
                if let Some(primer) = primer(dict) {
                    old.extend_from_slice(&(primer.len() as u32).to_le_bytes());
                    old.extend_from_slice(&primer);
                }
            }
            let crc = crc32fast::hash(&old);
            old.extend_from_slice(&crc.to_le_bytes());
            old
        };
        let no_primers = old_file(FILE_VERSION_NO_PRIMERS, &|_| None);
        let old_primers =
            OLD_PRIMERS.map(|(version, len)| old_file(version, &|_| Some(vec![7; len])));
        for old in std::iter::once(no_primers).chain(old_primers) {
            let back = DictionarySet::from_bytes(&old, 9, 3).unwrap();
            assert_eq!(back.clusters(), set.clusters());
            assert!(back.dictionaries().iter().all(|d| d.primer().is_none()));
        }
        let four = old_file(FILE_VERSION_PRIMERS, &|d| d.primer().map(Primer::to_bytes));
        let back = DictionarySet::from_bytes(&four, 9, 3).unwrap();
        assert!(
            back.dictionaries()
                .iter()
                .all(|d| d.primer().is_some() && d.planes().is_none())
        );
        // A twin's bytes damaged: refused, in one line, naming the twin.
        let mut bad = set.to_bytes();
        let (last, _) = set
            .dictionaries()
            .iter()
            .enumerate()
            .rfind(|(_, d)| d.planes().is_some())
            .expect("the heap's cluster has a twin");
        let twin = set.dictionaries()[last].planes().unwrap().bytes();
        let at = (0..bad.len() - twin.len())
            .find(|&at| bad[at + 8..at + twin.len()] == twin[8..])
            .expect("the twin is in the file");
        bad[at] ^= 0xff;
        let body = bad.len() - 4;
        let crc = crc32fast::hash(&bad[..body]);
        bad[body..].copy_from_slice(&crc.to_le_bytes());
        let err = DictionarySet::from_bytes(&bad, 1, 3).unwrap_err();
        assert!(matches!(err, FormatError::Twin { .. }), "{err}");
        assert!(!err.to_string().contains('\n'));
        // A primer of the wrong length is refused, in one line.
        let mut bad = set.to_bytes();
        let twin = set
            .dictionaries()
            .last()
            .unwrap()
            .planes()
            .map_or(0, |t| t.bytes().len());
        let at = bad.len() - 4 - twin - 4 - PRIMER_BYTES - 4;
        bad[at..at + 4].copy_from_slice(&7u32.to_le_bytes());
        let body = bad.len() - 4;
        let crc = crc32fast::hash(&bad[..body]);
        bad[body..].copy_from_slice(&crc.to_le_bytes());
        let err = DictionarySet::from_bytes(&bad, 1, 3).unwrap_err();
        assert!(matches!(err, FormatError::Primer { len: 7, .. }), "{err}");
    }

    #[test]
    fn a_store_too_small_gets_no_dictionary() {
        let pages = pages();
        let refs: Vec<&Page> = pages.iter().collect();
        let small = TrainTarget {
            served_pages: 10,
            ..target(64 << 10)
        };
        assert!(DictionarySet::train(&refs, small).is_none());
        assert!(DictionarySet::train(&refs, target(1 << 10)).is_none());
    }
}
