//! The kernel's zram, predicted without root: each page compressed as the kernel's
//! algorithm would (same-filled pages kept in the slot, pages whose compressed form
//! lands in a huge class stored whole), and the objects placed in a model of zsmalloc
//! (`zsmalloc`), so that `compr_data_size` and `mem_used_total` come out as the kernel's.
//!
//! Algorithms: `lz4` (lz4_flex at LZ4's default acceleration), `lzo` and `lzo-rle`
//! (zpage's own LZO1X coder, `lzo`, written from the stream's published description: the
//! LZO compressors that exist are GPL-2.0). On fresh captures of five programs the
//! predicted `compr_data_size` and `mem_used_total` are within 1% of this kernel's for
//! all three (README).

use crate::zsmalloc::{DEFAULT_CHAIN_SIZE, Pool};
use serde::Serialize;
use std::time::{Duration, Instant};
use zpage::{MmStat, PAGE_SIZE, Page};

/// One zram configuration to predict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZramConfig {
    /// As given (`lz4`, `lz4:chain=4`).
    pub name: String,
    algorithm: Algorithm,
    chain_size: usize,
    /// zram's `mem_limit` (a write past it fails and stores nothing).
    mem_limit: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    Lz4,
    Lzo,
    LzoRle,
}

impl ZramConfig {
    /// Parses `ALGO[:chain=N]`.
    pub fn parse(text: &str) -> Result<ZramConfig, String> {
        let mut parts = text.split(':');
        let algorithm = match parts.next().unwrap_or("") {
            "lz4" => Algorithm::Lz4,
            "lzo" => Algorithm::Lzo,
            "lzo-rle" => Algorithm::LzoRle,
            other => {
                return Err(format!(
                    "--zram {text}: {other:?} is not an algorithm the model knows (lzo, lzo-rle, lz4)"
                ));
            }
        };
        let mut chain_size = DEFAULT_CHAIN_SIZE;
        for option in parts {
            match option.split_once('=') {
                Some(("chain", n)) => {
                    chain_size = n
                        .parse()
                        .ok()
                        .filter(|n| (1..=16).contains(n))
                        .ok_or_else(|| format!("--zram {text}: chain is 1 to 16 pages"))?;
                }
                _ => {
                    return Err(format!(
                        "--zram {text}: unknown option {option:?} (chain=N)"
                    ));
                }
            }
        }
        Ok(ZramConfig {
            name: text.to_string(),
            algorithm,
            chain_size,
            mem_limit: None,
        })
    }

    /// The same configuration under zram's `mem_limit` (`None`: none).
    pub fn with_mem_limit(mut self, limit: Option<u64>) -> ZramConfig {
        self.mem_limit = limit;
        self
    }

    /// A device of this configuration, empty.
    pub fn device(&self) -> ZramModel {
        let pool = Pool::new(self.chain_size);
        ZramModel {
            huge_threshold: pool.huge_threshold(),
            pool,
            config: self.clone(),
            pages: 0,
            same: 0,
            huge: 0,
            compr: 0,
            refused: 0,
            time: Duration::ZERO,
        }
    }
}

/// One predicted zram device.
#[derive(Clone, Debug)]
pub struct ZramModel {
    config: ZramConfig,
    pool: Pool,
    huge_threshold: usize,
    pages: u64,
    same: u64,
    huge: u64,
    compr: u64,
    /// Writes the memory limit refused.
    refused: u64,
    time: Duration,
}

/// A configuration's prediction over every input, as reports give it.
#[derive(Clone, Debug, Serialize)]
pub struct ZramPrediction {
    pub config: String,
    pub mm_stat: MmStat,
    /// Writes the memory limit refused (zram's `io_stat` `failed_writes`).
    pub failed_writes: u64,
    /// Input bytes per second through the model's compressor (this process, one core).
    pub compress_mb_s: f64,
}

impl ZramModel {
    /// Writes `pages` to the device, as zram's writes would store them.
    pub fn write(&mut self, pages: &[Page]) {
        let start = Instant::now();
        for page in pages {
            self.pages += 1;
            if page.same_filled_word().is_some() {
                self.same += 1;
                continue;
            }
            let len = match self.config.algorithm {
                Algorithm::Lz4 => lz4_flex::block::compress(page.bytes()).len(),
                Algorithm::Lzo => crate::lzo::compress(page.bytes(), false).len(),
                Algorithm::LzoRle => crate::lzo::compress(page.bytes(), true).len(),
            };
            let huge = len >= self.huge_threshold;
            let len = if huge { PAGE_SIZE } else { len };
            if let Some(limit) = self.config.mem_limit
                && self.pool.mem_used() + self.pool.growth(len) > limit
            {
                // zram fails the write: the page is not stored.
                self.pages -= 1;
                self.refused += 1;
                continue;
            }
            self.huge += u64::from(huge);
            self.compr += len as u64;
            self.pool.alloc(len);
        }
        self.time += start.elapsed();
    }

    /// The device's `mm_stat` now (written once, nothing freed: the maximum is the total).
    pub fn mm_stat(&self) -> MmStat {
        let mem = self.pool.mem_used();
        // MmStat grows fields (non_exhaustive): set the ones zram's model knows.
        let mut mm = MmStat::default();
        mm.orig_data_size = self.pages * PAGE_SIZE as u64;
        mm.compr_data_size = self.compr;
        mm.mem_used_total = mem;
        mm.mem_limit = self.config.mem_limit.unwrap_or(0);
        mm.mem_used_max = mem;
        mm.same_pages = self.same;
        mm.huge_pages = self.huge;
        mm.huge_pages_since = self.huge;
        mm
    }
}

/// Sums devices of one configuration (one per input, as `zpage sim` keeps a store per
/// input) into one prediction.
pub fn predict(config: &ZramConfig, devices: &[ZramModel]) -> ZramPrediction {
    let mut mm = MmStat::default();
    let mut time = Duration::ZERO;
    let mut failed_writes = 0;
    for device in devices {
        mm.absorb(&device.mm_stat());
        failed_writes += device.refused;
        time += device.time;
    }
    ZramPrediction {
        config: config.name.clone(),
        compress_mb_s: crate::compare::mb_s(mm.orig_data_size, time),
        failed_writes,
        mm_stat: mm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_parse_or_say_why_not() {
        assert_eq!(ZramConfig::parse("lz4").unwrap().chain_size, 8);
        assert_eq!(ZramConfig::parse("lz4:chain=4").unwrap().chain_size, 4);
        for (bad, needle) in [
            ("zstd", "not an algorithm"),
            ("lz4:chain=0", "1 to 16"),
            ("lz4:level=3", "unknown option"),
        ] {
            let error = ZramConfig::parse(bad).unwrap_err();
            assert!(error.contains(needle), "{error}");
        }
    }

    #[test]
    fn same_filled_and_huge_pages_as_zram_keeps_them() {
        let mut device = ZramConfig::parse("lz4").unwrap().device();
        let mut noise = Page::zeroed();
        let mut x = 1u64;
        for word in noise.words_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *word = x;
        }
        device.write(&[*Page::filled(7), noise]);
        let mm = device.mm_stat();
        assert_eq!((mm.same_pages, mm.huge_pages), (1, 1));
        assert_eq!(mm.compr_data_size, PAGE_SIZE as u64);
        assert_eq!(
            mm.mem_used_total, PAGE_SIZE as u64,
            "a huge page is one zspage"
        );
    }
}
