//! Classification: what a page holds, read from a few sampled cache lines, and which
//! stored forms to try for it.
//!
//! [`features`] extracts the numbers, [`model`] is the learned tree that maps them to a
//! class, and [`plan`] turns the tree's answer into the forms the engine encodes (and the
//! trainer prices): one decision, made once per page.

pub(crate) mod cluster;
pub mod features;
pub mod model;
pub mod plan;
