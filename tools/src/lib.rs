//! zpage-tools: the analysis tools behind the `zpage` command: page inputs, zram
//! simulation, side-by-side baselines, entropy, training, the kernel's zram, and colour
//! quantisation of image pages. A crate of its own, so that the library an embedder
//! builds (`zpage`) names none of their dependencies (linfa, ndarray, png, liblzma, ...).
//!
//! Their reports' fields are documented as the commands' JSON schemas in README.md.

#![deny(unsafe_op_in_unsafe_fn)]
#![allow(
    missing_docs,
    reason = "report fields: see the JSON schemas in README.md"
)]

pub mod advise;
pub mod capture;
pub mod cold;
pub mod compare;
pub mod entropy;
pub mod lifecycle;
pub mod lzo;
pub mod map;
pub mod pagefile;
pub mod procmem;
pub mod quantize;
pub mod sim;
pub mod source;
pub mod train;
pub mod zram;
pub mod zram_model;
