//! A zram configuration as `--zram` names it: the algorithm with its `algorithm_params`,
//! the recompression algorithms in priority order, zsmalloc's chain size and the memory
//! limit.
//!
//! Syntax: `ALGO[:OPTION]...`, options `level=N`, `winbits=N` (deflate), `dict` (zstd, a
//! dictionary trained on the input) or `dict=PATH`, `chain=N` (zsmalloc's
//! `CONFIG_ZSMALLOC_CHAIN_SIZE`, a kernel build option), and `recomp=ALGO[@LEVEL][+dict]`,
//! once per recompression priority (1, 2, ...), as `recomp_algorithm` takes them.

use super::algorithm::{Algorithm, Dict, DictOrigin};
use super::device::MAX_RECOMP;
use super::zsmalloc::DEFAULT_CHAIN_SIZE;
use std::sync::Arc;

/// One zram configuration to predict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZramConfig {
    /// As given (`lz4`, `zstd:level=8:dict`).
    pub name: String,
    /// `comp_algorithm` with its parameters (priority 0).
    pub primary: Algorithm,
    /// `recomp_algorithm`s, by priority from 1.
    pub recomp: Vec<Algorithm>,
    pub(super) chain_size: usize,
    /// zram's `mem_limit` (a write past it fails and stores nothing).
    pub(super) mem_limit: Option<u64>,
}

impl ZramConfig {
    /// Parses `ALGO[:OPTION]...` (see the module's documentation).
    pub fn parse(text: &str) -> Result<ZramConfig, String> {
        let mut parts = text.split(':');
        let name = parts.next().unwrap_or("");
        let mut own = Vec::new();
        let mut recomp = Vec::new();
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
                Some(("recomp", spec)) => {
                    if recomp.len() == MAX_RECOMP {
                        return Err(format!(
                            "--zram {text}: zram takes at most {MAX_RECOMP} recompression algorithms"
                        ));
                    }
                    recomp.push(parse_recomp(spec).map_err(|e| format!("--zram {text}: {e}"))?)
                }
                _ => own.push(option),
            }
        }
        let primary =
            Algorithm::parse(name, own.into_iter()).map_err(|e| format!("--zram {text}: {e}"))?;
        Ok(ZramConfig {
            name: text.to_string(),
            primary,
            recomp,
            chain_size,
            mem_limit: None,
        })
    }

    /// The same configuration under zram's `mem_limit` (`None`: none).
    pub fn with_mem_limit(mut self, limit: Option<u64>) -> ZramConfig {
        self.mem_limit = limit;
        self
    }

    /// Needs a dictionary trained on the input before any page is written.
    pub fn wants_training(&self) -> bool {
        std::iter::once(&self.primary)
            .chain(&self.recomp)
            .any(Algorithm::wants_training)
    }

    /// Gives a trained dictionary to each algorithm that wants one.
    pub fn set_trained(&mut self, trained: Option<&Arc<Vec<u8>>>) {
        for algorithm in std::iter::once(&mut self.primary).chain(&mut self.recomp) {
            algorithm.set_trained(trained);
        }
    }

    /// Bytes of the dictionaries zram would hold (outside zsmalloc), each counted once.
    pub fn dictionary_bytes(&self) -> u64 {
        let mut seen: Vec<&Arc<Vec<u8>>> = Vec::new();
        for algorithm in std::iter::once(&self.primary).chain(&self.recomp) {
            if let Algorithm::Zstd { dict: Some(d), .. } = algorithm
                && !seen.iter().any(|s| Arc::ptr_eq(s, &d.bytes))
            {
                seen.push(&d.bytes);
            }
        }
        seen.iter().map(|d| d.len() as u64).sum()
    }

    /// zsmalloc's chain size is the kernel's default (a recommendation can be applied
    /// without rebuilding the kernel).
    pub fn default_chain(&self) -> bool {
        self.chain_size == DEFAULT_CHAIN_SIZE
    }
}

/// `ALGO[@LEVEL][+dict]`.
fn parse_recomp(spec: &str) -> Result<Algorithm, String> {
    let (spec, dict) = match spec.strip_suffix("+dict") {
        Some(rest) => (rest, true),
        None => (spec, false),
    };
    let (name, level) = match spec.split_once('@') {
        Some((name, level)) => (name, Some(format!("level={level}"))),
        None => (spec, None),
    };
    let mut algorithm = Algorithm::parse(name, level.as_deref().into_iter())
        .map_err(|e| format!("recomp={spec}: {e}"))?;
    if dict {
        match &mut algorithm {
            Algorithm::Zstd { dict, .. } => {
                *dict = Some(Dict {
                    origin: DictOrigin::Trained,
                    bytes: Arc::new(Vec::new()),
                })
            }
            _ => return Err(format!("recomp={spec}+dict: only zstd takes a dictionary")),
        }
    }
    Ok(algorithm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_parse_or_say_why_not() {
        assert_eq!(ZramConfig::parse("lz4").unwrap().chain_size, 8);
        assert_eq!(ZramConfig::parse("lz4:chain=4").unwrap().chain_size, 4);
        let config = ZramConfig::parse("lzo-rle:recomp=zstd@12:recomp=zstd+dict").unwrap();
        assert_eq!(config.recomp.len(), 2);
        assert!(config.wants_training());
        assert_eq!(
            config.recomp[0],
            Algorithm::Zstd {
                level: 12,
                dict: None
            }
        );
        for (bad, needle) in [
            ("zst", "not an algorithm"),
            ("lz4:chain=0", "1 to 16"),
            ("lz4:level=3", "no option"),
            ("lz4:recomp=lz4hc@13", "1 to 12"),
            ("lz4:recomp=lz4+dict", "only zstd"),
        ] {
            let error = ZramConfig::parse(bad).unwrap_err();
            assert!(error.contains(needle), "{bad}: {error}");
        }
    }
}
