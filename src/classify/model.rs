//! The learned classifier: a decision tree over [`crate::classify::features`], with the
//! profile and codec settings it was trained for, stored as JSON.
//!
//! Invariants (checked by [`Model::from_json`], so a loaded model can never index out of
//! bounds or loop): node 0 is the root; every split's children have larger indices than
//! the split itself; every feature index is below [`features::COUNT`]; the feature names
//! match this build's; leaves name only classes the tree may choose (not zero/same, which
//! the engine's exact scan decides).

use super::features::{self, Features};
use super::plan::Plan;
use crate::codec::{Class, CodecConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Format version written into model files.
pub const FORMAT: u32 = 1;

/// A trade-off between speed and ratio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Profile {
    /// Never picks a codec slower than LZ4 to compress.
    Fast,
    /// May pick zstd where its extra ratio pays for its time.
    Dense,
    /// A tiered store's way in: the word form for every page (LZ4 where words save little),
    /// with no features read, so inserts run faster than `Fast`; the idle pass then gives
    /// idle pages the dense profile's ratio. A trained words model may also choose delta
    /// and LZ4 per page.
    Words,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 3] = [Profile::Fast, Profile::Dense, Profile::Words];

    /// Classes the tree may choose under this profile.
    pub fn allows(self, class: Class) -> bool {
        match class {
            Class::Zero | Class::Same => false,
            Class::Zstd => self == Profile::Dense,
            Class::Words => self == Profile::Words,
            // The cold tier's form: a cold pass chooses it, no profile's tree.
            Class::Mixed => false,
            _ => true,
        }
    }

    /// The codec settings the profile's embedded model was trained for.
    pub fn codec(self) -> CodecConfig {
        match self {
            Profile::Fast | Profile::Words => CodecConfig::FAST,
            Profile::Dense => CodecConfig::DENSE,
        }
    }

    /// The profile's name on the command line and in model files.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Fast => "fast",
            Profile::Dense => "dense",
            Profile::Words => "words",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    /// A profile by its [`Profile::name`].
    fn from_str(name: &str) -> Result<Profile, String> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| format!("no profile {name:?}: fast, dense or words"))
    }
}

/// A tree node.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Node {
    /// Go `left` when `features[feature] <= threshold`, else `right`.
    Split {
        /// Index into [`crate::classify::features::NAMES`].
        feature: u8,
        /// The split point (finite).
        threshold: f32,
        /// Index of the node for features at or below the threshold.
        left: u32,
        /// Index of the node for features above it.
        right: u32,
    },
    /// The class of the pages that reach this node.
    Leaf(Class),
}

/// How the model was trained and how it scored on its test pages (informational).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The `zpage train` arguments (paths left out).
    pub command: String,
    /// Pages the tree was fitted on.
    pub train_pages: u64,
    /// Held-out pages it was scored on.
    pub test_pages: u64,
    /// Bytes a codec had to save per unit of relative compress cost.
    pub speed_weight: f64,
    /// Share of test pages where the tree chose the oracle's class.
    pub accuracy: f64,
    /// Bytes stored following the tree over the oracle's, minus one, on the test pages.
    pub regret: f64,
}

/// Deepest tree a model may hold (trained trees have 3 to 6 levels): `predict` visits
/// at most this many nodes.
pub const MAX_DEPTH: usize = 64;

/// A trained classifier with the settings it was trained for. Every `Model` that exists
/// has been checked ([`Model::new`], or when read from JSON): its nodes form a tree of at
/// most [`MAX_DEPTH`] levels whose children are in range and follow their parent, whose
/// features are known and thresholds finite, and whose leaves its profile allows; so
/// `predict` never indexes out of range or loops.
///
/// ```
/// use zpage::classify::model::{Model, Node, Provenance};
/// use zpage::{Class, Engine, Profile};
///
/// // A one-split tree: feature 0 at or below 0.5 is delta, else general.
/// let nodes = vec![
///     Node::Split { feature: 0, threshold: 0.5, left: 1, right: 2 },
///     Node::Leaf(Class::Delta),
///     Node::Leaf(Class::General),
/// ];
/// let codec = Profile::Fast.codec();
/// let model = Model::new(Profile::Fast, codec, nodes, Provenance::default())?;
/// assert_eq!(model.depth(), 2);
/// let round_trip = Model::from_json(&model.to_json())?;
/// assert_eq!(round_trip, model);
/// // A tree whose child points back up is refused with a one-line reason.
/// let looped = vec![Node::Split { feature: 0, threshold: 0.5, left: 0, right: 0 }];
/// assert!(Model::new(Profile::Fast, codec, looped, Provenance::default()).is_err());
/// let engine = Engine::with_model(model); // for PageStore::builder().engine(..)
/// # let _ = engine;
/// # Ok::<(), zpage::classify::model::ModelError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ModelFile")]
pub struct Model {
    format: u32,
    profile: Profile,
    codec: CodecConfig,
    features: Vec<String>,
    nodes: Vec<Node>,
    /// Informational: how it was trained and scored.
    pub provenance: Provenance,
}

/// A model file as it parses, before [`Model`]'s checks.
#[derive(Deserialize)]
struct ModelFile {
    format: u32,
    profile: Profile,
    codec: CodecConfig,
    features: Vec<String>,
    nodes: Vec<Node>,
    #[serde(default)]
    provenance: Provenance,
}

impl TryFrom<ModelFile> for Model {
    type Error = ModelError;

    fn try_from(file: ModelFile) -> Result<Model, ModelError> {
        let model = Model {
            format: file.format,
            profile: file.profile,
            codec: file.codec,
            features: file.features,
            nodes: file.nodes,
            provenance: file.provenance,
        };
        model.validate()?;
        Ok(model)
    }
}

/// Why a model file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The file could not be read (or is not a regular file of at most 16 MiB).
    #[error("model file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: crate::SmallFileError,
    },
    /// The text is not a model file's JSON.
    #[error("model does not parse: {0}")]
    Parse(#[from] serde_json::Error),
    /// The model fails a check (see [`Model`]): which one.
    #[error("model is invalid: {0}")]
    Invalid(String),
}

impl Model {
    /// A model of `profile` for `codec` settings with the tree `nodes` (the root first),
    /// checked as the type's docs say.
    pub fn new(
        profile: Profile,
        codec: CodecConfig,
        nodes: Vec<Node>,
        provenance: Provenance,
    ) -> Result<Model, ModelError> {
        ModelFile {
            format: FORMAT,
            profile,
            codec,
            features: features::NAMES.iter().map(|s| s.to_string()).collect(),
            nodes,
            provenance,
        }
        .try_into()
    }

    /// The profile the model was trained for (which classes its leaves may name).
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The codec settings the model was trained for, and the store encodes with.
    pub fn codec(&self) -> &CodecConfig {
        &self.codec
    }

    /// The tree, root first; every child follows its parent.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The forms to try for a page of features `x`: the tree's leaf and what the
    /// profile adds to it ([`Plan::for_leaf`]).
    pub fn plan(&self, x: &Features) -> Plan {
        Plan::for_leaf(self.predict(x), x, self.profile, &self.codec)
    }

    /// The plan of every page when it does not depend on the page (a tree of one leaf
    /// whose plan reads no feature): the engine then extracts no features.
    pub fn fixed_plan(&self) -> Option<Plan> {
        match self.nodes[..] {
            [Node::Leaf(leaf)] if !Plan::reads_features(leaf, self.profile) => Some(
                Plan::for_leaf(leaf, &[0.0; features::COUNT], self.profile, &self.codec),
            ),
            _ => None,
        }
    }

    /// The class the tree gives a page of features `x` (never zero or same-filled: an
    /// exact scan decides those before the tree is asked).
    pub fn predict(&self, x: &Features) -> Class {
        let mut i = 0usize;
        loop {
            match self.nodes[i] {
                Node::Leaf(class) => return class,
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    i = if x[feature as usize] <= threshold {
                        left
                    } else {
                        right
                    } as usize;
                }
            }
        }
    }

    /// Levels from the root to the deepest leaf. One pass from the last node back, which
    /// validation makes sound: every child comes after its parent.
    pub fn depth(&self) -> usize {
        let mut depth = vec![1usize; self.nodes.len()];
        for i in (0..self.nodes.len()).rev() {
            if let Node::Split { left, right, .. } = self.nodes[i] {
                depth[i] = 1 + depth[left as usize].max(depth[right as usize]);
            }
        }
        depth.first().copied().unwrap_or(0)
    }

    /// The model file's JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a model always serialises")
    }

    /// A model from its file's JSON, checked.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] (or a JSON error) for text that is not a valid model: a
    /// tree with children out of range or before their parent, unknown features,
    /// thresholds that are not finite, leaves its profile does not allow, more than 64
    /// levels.
    ///
    /// # Examples
    /// ```
    /// use zpage::{Model, Profile};
    ///
    /// let json = zpage::classify::model::embedded(Profile::Fast).to_json();
    /// let model = Model::from_json(&json)?;
    /// assert_eq!(model.profile(), Profile::Fast);
    /// assert!(Model::from_json("{}").is_err());
    /// # Ok::<(), zpage::ModelError>(())
    /// ```
    pub fn from_json(text: &str) -> Result<Model, ModelError> {
        // Parse first, then check, so that a check's error is not one of serde's.
        let file: ModelFile = serde_json::from_str(text)?;
        file.try_into()
    }

    /// A model read from a file, checked.
    ///
    /// # Errors
    /// [`ModelError::Io`] if the file cannot be read, is not a regular file (a FIFO,
    /// `/dev/zero`: never a hang or unbounded memory) or is over 16 MiB; otherwise as
    /// [`Model::from_json`].
    ///
    /// # Examples
    /// ```
    /// use zpage::{Model, Profile};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("model.json");
    /// std::fs::write(&path, zpage::classify::model::embedded(Profile::Dense).to_json())?;
    /// assert_eq!(Model::load(&path)?.profile(), Profile::Dense);
    /// assert!(Model::load(&dir.path().join("missing.json")).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        // A model file is a few KiB of JSON; 16 MiB bounds any tree `validate` accepts.
        const MAX_BYTES: u64 = 16 << 20;
        let io = |source| ModelError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes = crate::file::read_small(path, MAX_BYTES).map_err(io)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            io(std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()).into())
        })?;
        Model::from_json(&text)
    }

    fn validate(&self) -> Result<(), ModelError> {
        let invalid = |m: String| Err(ModelError::Invalid(m));
        if self.format != FORMAT {
            return invalid(format!(
                "format {} (this build reads {FORMAT})",
                self.format
            ));
        }
        if self.features != features::NAMES {
            return invalid(format!(
                "trained on features {:?}, this build computes {:?}",
                self.features,
                features::NAMES
            ));
        }
        if self.nodes.is_empty() {
            return invalid("no nodes".into());
        }
        // A tree: every node but the root has exactly one parent (children come after their
        // parent, so there is no cycle; a shared child would make a DAG).
        let mut parents = vec![0u8; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            if i > 0 && parents[i] != 1 {
                return invalid(format!(
                    "node {i} has {} parents: the nodes are not a tree",
                    parents[i]
                ));
            }
            match *node {
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    if feature as usize >= features::COUNT {
                        return invalid(format!("node {i}: feature {feature} out of range"));
                    }
                    if !threshold.is_finite() {
                        return invalid(format!("node {i}: threshold is not finite"));
                    }
                    for child in [left, right] {
                        if child as usize <= i || child as usize >= self.nodes.len() {
                            return invalid(format!("node {i}: child {child} out of order"));
                        }
                        parents[child as usize] = parents[child as usize].saturating_add(1);
                    }
                }
                Node::Leaf(class) if !self.profile.allows(class) => {
                    return invalid(format!(
                        "node {i}: class {class} is not allowed in the {} profile",
                        self.profile.name()
                    ));
                }
                Node::Leaf(_) => {}
            }
        }
        let depth = self.depth();
        if depth > MAX_DEPTH {
            return invalid(format!("{depth} levels deep, more than {MAX_DEPTH}"));
        }
        if self.codec.huge_threshold == 0 || !(-7..=22).contains(&self.codec.zstd_level) {
            return invalid("codec settings out of range".into());
        }
        Ok(())
    }
}

/// The models trained on the shared corpus, embedded in the binary (see `scripts/train-models`).
pub fn embedded(profile: Profile) -> Model {
    let text = match profile {
        Profile::Fast => include_str!("models/fast.json"),
        Profile::Dense => include_str!("models/dense.json"),
        // Nothing to learn about the way in: one leaf.
        Profile::Words => {
            let provenance = Provenance {
                command: "one leaf: every page in the word form".into(),
                ..Provenance::default()
            };
            let nodes = vec![Node::Leaf(Class::Words)];
            return Model::new(profile, profile.codec(), nodes, provenance)
                .expect("a one-leaf tree the profile allows");
        }
    };
    Model::from_json(text).expect("embedded models are validated by the test suite")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_models_load() {
        for p in Profile::ALL {
            let m = embedded(p);
            assert_eq!(m.profile, p);
            assert!(m.depth() <= 12);
        }
    }

    #[test]
    fn malformed_models_are_rejected() {
        assert!(matches!(Model::from_json("{"), Err(ModelError::Parse(_))));
        let mut m = embedded(Profile::Fast);
        m.nodes = vec![Node::Split {
            feature: 0,
            threshold: 0.5,
            left: 0,
            right: 0,
        }];
        assert!(matches!(
            Model::from_json(&m.to_json()),
            Err(ModelError::Invalid(_))
        ));
        m.nodes = vec![Node::Leaf(Class::Zstd)];
        assert!(matches!(
            Model::from_json(&m.to_json()),
            Err(ModelError::Invalid(_))
        ));
        m.nodes = vec![Node::Leaf(Class::General)];
        m.features.pop();
        assert!(matches!(
            Model::from_json(&m.to_json()),
            Err(ModelError::Invalid(_))
        ));
    }
}
