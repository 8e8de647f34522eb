//! The analysis tools behind the `zpage` command (the `tools` feature): page inputs,
//! zram simulation, side-by-side baselines, entropy, training, the kernel's zram, and
//! colour quantisation of image pages.
//! Nothing here is needed to store pages; the library proper never depends on it.
//!
//! Their reports' fields are documented as the commands' JSON schemas in README.md.

pub mod cold;
pub mod compare;
pub mod entropy;
pub mod lifecycle;
pub mod pagefile;
pub mod procmem;
pub mod quantize;
pub mod sim;
pub mod source;
pub mod train;
pub mod zram;
