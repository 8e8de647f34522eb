//! The kernel's zram, predicted without root: each page compressed as the kernel's
//! algorithm would (`algorithm`: lzo, lzo-rle, lz4, lz4hc, zstd with a level and a
//! dictionary, deflate with a level and window), same-filled pages kept in the slot,
//! pages whose compressed form lands in a huge class stored whole, the objects placed in
//! a model of zsmalloc (`zsmalloc`), and zram's operations on top (`device`: `mem_limit`,
//! `idle`, `recompress` with priorities, `writeback` by type with a limit, `compact`), so
//! that `mm_stat` and `bd_stat` come out as the kernel's.
//!
//! On fresh captures of five programs the predicted `compr_data_size` and
//! `mem_used_total` are within 1% of this kernel's for lzo, lzo-rle and lz4 (README); this
//! kernel has no other algorithm, no recompression and no writeback, so those parts
//! follow zram's documented behaviour and are checked only against their libraries.

mod algorithm;
mod config;
mod device;
mod zsmalloc;

pub use algorithm::{Algorithm, Dict, DictOrigin};
pub use config::ZramConfig;
pub use device::{Kind, MAX_RECOMP, Recompress, Recompressed, ZramModel};
pub use zsmalloc::DEFAULT_CHAIN_SIZE;

use crate::source::PageSource;
use serde::Serialize;
use std::sync::Arc;
use zpage::{MmStat, Page};

impl ZramConfig {
    /// A device of this configuration, empty (an error if a dictionary it wants was never
    /// trained).
    pub fn device(&self) -> Result<ZramModel, String> {
        ZramModel::new(self)
    }
}

/// One input's devices, one per configuration, in order: those whose dictionary is
/// trained on the input are made once it has been read ([`InputDevices::finish`]).
pub struct InputDevices {
    configs: Vec<ZramConfig>,
    devices: Vec<Option<ZramModel>>,
}

impl InputDevices {
    /// Devices for `configs` under `mem_limit`.
    pub fn new(configs: &[ZramConfig], mem_limit: Option<u64>) -> Result<InputDevices, String> {
        let configs: Vec<ZramConfig> = (configs.iter())
            .map(|c| c.clone().with_mem_limit(mem_limit))
            .collect();
        let devices = (configs.iter())
            .map(|c| (!c.wants_training()).then(|| c.device()).transpose())
            .collect::<Result<_, _>>()?;
        Ok(InputDevices { configs, devices })
    }

    /// Some configuration waits for a dictionary trained on the input.
    pub fn training(&self) -> bool {
        self.devices.iter().any(Option::is_none)
    }

    /// Writes the next pages of the input to the devices made so far.
    pub fn write(&mut self, chunk: &[Page]) {
        for device in self.devices.iter_mut().flatten() {
            device.write(chunk);
        }
    }

    /// Makes the devices that waited, with `dictionary` (trained on the input; `None`:
    /// too few pages to train, so zstd alone), and writes the input to them again from
    /// its start; an error if the input cannot be read twice.
    pub fn finish(
        mut self,
        dictionary: Option<&Arc<Vec<u8>>>,
        source: &mut dyn PageSource,
        chunk: &mut Vec<Page>,
    ) -> Result<Vec<ZramModel>, String> {
        if self.training() {
            if !source.rewind().map_err(|e| e.to_string())? {
                return Err(format!(
                    "{}: a dictionary trained on the input needs it twice, and a live process is not the same twice: capture it first (zpage capture)",
                    source.name()
                ));
            }
            let mut waiting = Vec::new();
            for (config, device) in self.configs.iter_mut().zip(&mut self.devices) {
                if device.is_none() {
                    config.set_trained(dictionary);
                    waiting.push((config.device()?, device));
                }
            }
            while source.next_chunk(chunk).map_err(|e| e.to_string())? {
                for (device, _) in &mut waiting {
                    device.write(chunk);
                }
            }
            for (device, slot) in waiting {
                *slot = Some(device);
            }
        }
        Ok(self.devices.into_iter().flatten().collect())
    }

    /// [`InputDevices::finish`] with the dictionary of `trained` (zram-best's sample of
    /// the input), each device added to its configuration's list in `all`.
    pub fn finish_into(
        self,
        trained: Option<&crate::compare::ZramBest>,
        source: &mut dyn PageSource,
        chunk: &mut Vec<Page>,
        all: &mut [Vec<ZramModel>],
    ) -> Result<(), String> {
        let dictionary = trained.and_then(|best| best.dictionary());
        let devices = self
            .finish(dictionary.as_ref(), source, chunk)
            .map_err(|e| format!("--zram: {e}"))?;
        for (all, device) in all.iter_mut().zip(devices) {
            all.push(device);
        }
        Ok(())
    }
}

/// One step of the kernel's life cycle on a configuration's devices, summed over them.
#[derive(Clone, Debug, Serialize)]
pub struct KernelStage {
    /// `store`, `mark_idle`, `recompress`, `writeback`, `compact`, `read`.
    pub name: &'static str,
    /// The model's compression time for the step (`None` where the step compresses
    /// nothing: the kernel's time for it is not the model's).
    pub seconds: Option<f64>,
    pub mm_stat: MmStat,
    pub bd_stat: zpage::BdStat,
    /// Why the step did nothing, or what it did.
    pub note: Option<String>,
}

/// The kernel's life cycle predicted for one configuration.
#[derive(Clone, Debug, Serialize)]
pub struct KernelCycle {
    pub config: String,
    pub stages: Vec<KernelStage>,
    /// As in [`ZramPrediction::dictionary_bytes`].
    pub dictionary_bytes: u64,
}

/// Runs zram's life cycle on `devices` (written already, one per input): `echo all >
/// idle`, `recompress type=idle` where the configuration has recompression algorithms,
/// `writeback` of `writeback`'s type where given, `compact`, then every block read.
pub fn life_cycle(
    config: &ZramConfig,
    devices: &mut [ZramModel],
    writeback: Option<Kind>,
) -> KernelCycle {
    let mut stages = Vec::new();
    let mut step = |name, seconds: Option<f64>, note: Option<String>, devices: &[ZramModel]| {
        let (mm_stat, bd_stat) = total(devices);
        stages.push(KernelStage {
            name,
            seconds,
            mm_stat,
            bd_stat,
            note,
        });
    };
    let written: f64 = devices.iter().map(|d| d.write_time.as_secs_f64()).sum();
    step("store", Some(written), None, devices);
    let idle: u64 = devices.iter_mut().map(ZramModel::mark_idle).sum();
    step(
        "mark_idle",
        None,
        Some(format!("{idle} slots idle")),
        devices,
    );
    let (done, spent) = recompress_idle(devices);
    let spent = spent.as_secs_f64();
    let note = if config.recomp.is_empty() {
        "no recompression algorithm configured (add :recomp=ALGO[@LEVEL])".to_string()
    } else {
        format!(
            "{} idle slots tried, {} now smaller, {} marked incompressible",
            done.tried, done.smaller, done.incompressible
        )
    };
    step("recompress", Some(spent), Some(note), devices);
    if let Some(kind) = writeback {
        let written: u64 = devices.iter_mut().map(|d| d.writeback(kind, 0)).sum();
        let note = format!("{written} {} slots written back", kind.word());
        step("writeback", None, Some(note), devices);
    }
    let freed: u64 = devices.iter_mut().map(ZramModel::compact).sum();
    let note = format!("{freed} pages freed");
    step("compact", None, Some(note), devices);
    devices.iter_mut().for_each(ZramModel::read_all);
    step("read", None, None, devices);
    KernelCycle {
        config: config.name.clone(),
        stages,
        dictionary_bytes: devices.iter().map(ZramModel::dictionary_bytes).sum(),
    }
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
    /// Bytes of the zstd dictionaries the devices load (one per input where trained on
    /// it; zram holds them outside zsmalloc, so outside `mem_used_total`).
    pub dictionary_bytes: u64,
}

/// The devices' `mm_stat` and `bd_stat`, summed (zram devices side by side).
pub fn total(devices: &[ZramModel]) -> (MmStat, zpage::BdStat) {
    let mut mm = MmStat::default();
    let mut bd = zpage::BdStat::default();
    for device in devices {
        mm.absorb(&device.mm_stat());
        bd.absorb(&device.bd_stat());
    }
    (mm, bd)
}

/// zram's `recompress type=idle` on every device: what it did, summed, and the time the
/// recompression algorithms take on the slots tried.
pub fn recompress_idle(devices: &mut [ZramModel]) -> (Recompressed, std::time::Duration) {
    let mut done = Recompressed::default();
    let mut spent = std::time::Duration::ZERO;
    for device in devices.iter_mut() {
        let one = device.recompress(Recompress {
            kind: Kind::Idle,
            threshold: 0,
            max_pages: 0,
            priority: None,
        });
        spent += device.recompress_time(one.tried);
        done.tried += one.tried;
        done.smaller += one.smaller;
        done.incompressible += one.incompressible;
    }
    (done, spent)
}

/// Sums devices of one configuration (one per input, as `zpage sim` keeps a store per
/// input) into one prediction.
pub fn predict(config: &ZramConfig, devices: &[ZramModel]) -> ZramPrediction {
    let mut mm = MmStat::default();
    let mut time = std::time::Duration::ZERO;
    let (mut failed_writes, mut dictionary_bytes) = (0, 0);
    for device in devices {
        mm.absorb(&device.mm_stat());
        failed_writes += device.refused;
        time += device.write_time;
        dictionary_bytes += device.dictionary_bytes();
    }
    ZramPrediction {
        config: config.name.clone(),
        compress_mb_s: crate::compare::mb_s(mm.orig_data_size, time),
        failed_writes,
        dictionary_bytes,
        mm_stat: mm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zpage::{PAGE_SIZE, Page};

    fn noise(seed: u64) -> Page {
        let mut page = Page::zeroed();
        let mut x = seed | 1;
        for word in page.words_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *word = x;
        }
        page
    }

    /// Random nibbles, a byte each: too few repeats for lz4 (stored whole), half the
    /// page for zstd's entropy coder.
    fn nibbles(seed: u64) -> Page {
        let mut page = noise(seed);
        for b in page.bytes_mut() {
            *b &= 0x0f;
        }
        page
    }

    #[test]
    fn same_filled_and_huge_pages_as_zram_keeps_them() {
        let mut device = ZramConfig::parse("lz4").unwrap().device().unwrap();
        device.write(&[*Page::filled(7), noise(1)]);
        let mm = device.mm_stat();
        assert_eq!((mm.same_pages, mm.huge_pages), (1, 1));
        assert_eq!(mm.compr_data_size, PAGE_SIZE as u64);
        assert_eq!(
            mm.mem_used_total, PAGE_SIZE as u64,
            "a huge page is one zspage"
        );
    }

    /// Recompression keeps a page only where it lands in a smaller class; a page no
    /// algorithm shrinks is marked incompressible, and writeback of that type takes it.
    #[test]
    fn recompression_then_writeback() {
        let config = ZramConfig::parse("lz4:recomp=zstd@9").unwrap();
        let mut device = config.device().unwrap();
        device.write(&[nibbles(1), nibbles(2), noise(3), *Page::filled(0)]);
        let before = device.mm_stat();
        assert_eq!(device.mark_idle(), 4);
        let done = device.recompress(Recompress {
            kind: Kind::Idle,
            threshold: 0,
            max_pages: 0,
            priority: None,
        });
        assert_eq!((done.tried, done.smaller, done.incompressible), (3, 2, 1));
        let after = device.mm_stat();
        assert!(after.compr_data_size < before.compr_data_size);
        assert_eq!(
            (before.huge_pages, after.huge_pages),
            (3, 1),
            "noise stays huge"
        );
        // Tried slots are no longer idle: only the incompressible type takes the noise.
        assert_eq!(device.writeback(Kind::Idle, 0), 0);
        assert_eq!(device.writeback(Kind::Incompressible, 0), 1);
        let mm = device.mm_stat();
        assert_eq!(
            (mm.huge_pages, mm.orig_data_size),
            (0, 3 * PAGE_SIZE as u64)
        );
        device.read_all();
        let bd = device.bd_stat();
        assert_eq!((bd.bd_count, bd.bd_reads, bd.bd_writes), (1, 1, 1));
    }

    /// The memory limit fails a write and keeps what the block held.
    #[test]
    fn the_memory_limit_fails_writes() {
        let config = ZramConfig::parse("lz4")
            .unwrap()
            .with_mem_limit(Some(2 * PAGE_SIZE as u64));
        let mut device = config.device().unwrap();
        device.write(&[noise(1), noise(2), noise(3)]);
        let mm = device.mm_stat();
        assert_eq!(mm.orig_data_size, 2 * PAGE_SIZE as u64);
        assert_eq!(device.refused, 1);
        assert!(!device.write_at(0, &noise(4)));
        assert_eq!(device.mm_stat().compr_data_size, 2 * PAGE_SIZE as u64);
    }
}
