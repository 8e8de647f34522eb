//! zram's compression algorithms in user space, set up as the kernel's zram sets them up
//! (its `algorithm_params` defaults), each reporting the size the kernel's would store.
//!
//! | algorithm | coder here | the kernel's setting |
//! |---|---|---|
//! | `lzo`, `lzo-rle` | zpage's own LZO1X-1 (`crate::lzo`) | the only ones; no level |
//! | `lz4` | lz4_flex (LZ4's block format, acceleration 1) | `LZ4_compress_fast`, acceleration 1 |
//! | `lz4hc` | C LZ4 1.10's HC coder | `LZ4_compress_HC`, level 9 by default |
//! | `zstd` | C zstd 1.5 (`zstd` crate) | level 3 by default; a dictionary by file |
//! | `deflate` | C zlib, raw deflate | level 6 (zlib's default), window 2^11 |
//!
//! `lz4` is lz4_flex rather than C LZ4: the kernel carries an older LZ4 whose sizes
//! lz4_flex reproduces within 1% where C LZ4 1.9.4+ codes pages 0.2-1.8% smaller (README).
//! `842` is not modelled: its only description is the kernel's GPL source and no
//! permissively licensed coder exists (nor is it in this kernel to check one against).
//!
//! Invariants: a compressor's output size for a page is a pure function of the page and
//! the settings (contexts are reused, never carried from page to page); settings are
//! checked when parsed, so compressing never fails for a reason the user could mend.

use std::sync::Arc;
use zpage::{PAGE_SIZE, Page};

/// One algorithm with its settings, as `algorithm_params` would give them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Lzo,
    LzoRle,
    Lz4,
    Lz4hc { level: i32 },
    Zstd { level: i32, dict: Option<Dict> },
    Deflate { level: i32, winbits: i32 },
}

/// A zstd dictionary: where it came from and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dict {
    /// `trained` (on the input) or the file's path.
    pub origin: DictOrigin,
    pub bytes: Arc<Vec<u8>>,
}

/// Where a dictionary comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DictOrigin {
    /// Trained on the input before it is written (needs the input twice).
    Trained,
    /// A file, as zram loads one (`dict=PATH`).
    File(std::path::PathBuf),
}

/// The zstd level zram uses when none is given (zstd's default).
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;
/// The lz4hc level zram uses when none is given (LZ4HC's default).
pub const LZ4HC_DEFAULT_LEVEL: i32 = 9;
/// zlib's default level, zram's for deflate.
pub const DEFLATE_DEFAULT_LEVEL: i32 = 6;
/// zram's deflate window (as the crypto API's): 2^11 bytes.
pub const DEFLATE_DEFAULT_WINBITS: i32 = 11;

impl Algorithm {
    /// Parses `NAME` with `level=N`, `winbits=N` (deflate), `dict` / `dict=PATH` (zstd)
    /// options; `options` are the `KEY[=VALUE]` parts after the name.
    pub fn parse<'a>(
        name: &str,
        options: impl Iterator<Item = &'a str>,
    ) -> Result<Algorithm, String> {
        let mut algorithm = match name {
            "lzo" => Algorithm::Lzo,
            "lzo-rle" => Algorithm::LzoRle,
            "lz4" => Algorithm::Lz4,
            "lz4hc" => Algorithm::Lz4hc {
                level: LZ4HC_DEFAULT_LEVEL,
            },
            "zstd" => Algorithm::Zstd {
                level: ZSTD_DEFAULT_LEVEL,
                dict: None,
            },
            "deflate" => Algorithm::Deflate {
                level: DEFLATE_DEFAULT_LEVEL,
                winbits: DEFLATE_DEFAULT_WINBITS,
            },
            "842" => {
                return Err(
                    "842 is not modelled: no permissively licensed 842 coder exists, and this kernel has none to check one against".into(),
                );
            }
            other => {
                return Err(format!(
                    "{other:?} is not an algorithm the model knows (lzo, lzo-rle, lz4, lz4hc, zstd, deflate)"
                ));
            }
        };
        for option in options {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            let number = |range: std::ops::RangeInclusive<i32>| {
                value
                    .parse::<i32>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        format!(
                            "{name}: {key} is {} to {}, not {value:?}",
                            range.start(),
                            range.end()
                        )
                    })
            };
            match (&mut algorithm, key) {
                (Algorithm::Lz4hc { level }, "level") => *level = number(1..=12)?,
                (Algorithm::Zstd { level, .. }, "level") => *level = number(1..=22)?,
                (Algorithm::Deflate { level, .. }, "level") => *level = number(1..=9)?,
                (Algorithm::Deflate { winbits, .. }, "winbits") => *winbits = number(9..=15)?,
                (Algorithm::Zstd { dict, .. }, "dict") => {
                    *dict = Some(if value.is_empty() {
                        Dict {
                            origin: DictOrigin::Trained,
                            bytes: Arc::new(Vec::new()),
                        }
                    } else {
                        let path = std::path::PathBuf::from(value);
                        let bytes = zpage::read_small(&path, MAX_DICT_BYTES)
                            .map_err(|e| format!("{name}: dict={value}: {e}"))?;
                        Dict {
                            origin: DictOrigin::File(path),
                            bytes: Arc::new(bytes),
                        }
                    });
                }
                _ => {
                    return Err(format!(
                        "{name} takes no option {option:?} ({})",
                        match algorithm {
                            Algorithm::Lz4hc { .. } => "level=1..12",
                            Algorithm::Zstd { .. } => "level=1..22, dict, dict=PATH",
                            Algorithm::Deflate { .. } => "level=1..9, winbits=9..15",
                            _ => "it has no settings in zram",
                        }
                    ));
                }
            }
        }
        Ok(algorithm)
    }

    /// The name zram's `comp_algorithm` takes.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::Lzo => "lzo",
            Algorithm::LzoRle => "lzo-rle",
            Algorithm::Lz4 => "lz4",
            Algorithm::Lz4hc { .. } => "lz4hc",
            Algorithm::Zstd { .. } => "zstd",
            Algorithm::Deflate { .. } => "deflate",
        }
    }

    /// The `algorithm_params` settings that differ from zram's defaults, as
    /// `key=value` words (`dict_path` names the dictionary file a trained one is saved as).
    pub fn params(&self, dict_path: &str) -> Vec<String> {
        match self {
            Algorithm::Lz4hc { level } if *level != LZ4HC_DEFAULT_LEVEL => {
                vec![format!("level={level}")]
            }
            Algorithm::Zstd { level, dict } => {
                let mut words = Vec::new();
                if *level != ZSTD_DEFAULT_LEVEL {
                    words.push(format!("level={level}"));
                }
                match dict.as_ref().map(|d| &d.origin) {
                    Some(DictOrigin::File(path)) => words.push(format!("dict={}", path.display())),
                    Some(DictOrigin::Trained) => words.push(format!("dict={dict_path}")),
                    None => {}
                }
                words
            }
            Algorithm::Deflate { level, winbits } => {
                let mut words = Vec::new();
                if *level != DEFLATE_DEFAULT_LEVEL {
                    words.push(format!("level={level}"));
                }
                if *winbits != DEFLATE_DEFAULT_WINBITS {
                    // zram takes raw deflate's negative window bits.
                    words.push(format!("deflate.winbits=-{winbits}"));
                }
                words
            }
            _ => Vec::new(),
        }
    }

    /// Needs a dictionary trained on the input before any page is written.
    pub fn wants_training(&self) -> bool {
        matches!(self, Algorithm::Zstd { dict: Some(d), .. } if d.origin == DictOrigin::Trained && d.bytes.is_empty())
    }

    /// Gives a trained dictionary to an algorithm that wants one (`None`: the input was
    /// too small or uniform to train on, so zstd alone, as zram without a dictionary).
    pub fn set_trained(&mut self, trained: Option<&Arc<Vec<u8>>>) {
        if let Algorithm::Zstd { dict, .. } = self
            && dict
                .as_ref()
                .is_some_and(|d| d.origin == DictOrigin::Trained)
        {
            *dict = trained.map(|bytes| Dict {
                origin: DictOrigin::Trained,
                bytes: bytes.clone(),
            });
        }
    }

    /// A compressor for this algorithm.
    pub fn compressor(&self) -> Result<Compressor, String> {
        let coder = match self {
            Algorithm::Zstd { level, dict } => {
                let mut c = match dict {
                    Some(d) if !d.bytes.is_empty() => {
                        zstd::bulk::Compressor::with_dictionary(*level, &d.bytes)
                    }
                    Some(_) => return Err("zstd: the dictionary was never trained".into()),
                    None => zstd::bulk::Compressor::new(*level),
                }
                .map_err(|e| format!("zstd: {e}"))?;
                // zram's frames: the content size written, no checksum.
                c.include_checksum(false)
                    .map_err(|e| format!("zstd: {e}"))?;
                c.include_contentsize(true)
                    .map_err(|e| format!("zstd: {e}"))?;
                Coder::Zstd(Box::new(c))
            }
            Algorithm::Deflate { level, winbits } => {
                Coder::Deflate(Box::new(flate2::Compress::new_with_window_bits(
                    flate2::Compression::new(*level as u32),
                    false,
                    *winbits as u8,
                )))
            }
            _ => Coder::Plain,
        };
        Ok(Compressor {
            algorithm: self.clone(),
            coder,
            out: vec![0; 2 * PAGE_SIZE],
        })
    }
}

/// The largest dictionary file read (zram's are tens of KiB).
const MAX_DICT_BYTES: u64 = 16 << 20;

enum Coder {
    Plain,
    Zstd(Box<zstd::bulk::Compressor<'static>>),
    Deflate(Box<flate2::Compress>),
}

/// An algorithm's coder with its reusable context and output buffer.
pub struct Compressor {
    algorithm: Algorithm,
    coder: Coder,
    out: Vec<u8>,
}

impl Compressor {
    /// The bytes the kernel's algorithm would code `page` into.
    pub fn compressed_len(&mut self, page: &Page) -> usize {
        let bytes = page.bytes();
        match (&self.algorithm, &mut self.coder) {
            (Algorithm::Lzo, _) => crate::lzo::compress(bytes, false).len(),
            (Algorithm::LzoRle, _) => crate::lzo::compress(bytes, true).len(),
            (Algorithm::Lz4, _) => lz4_flex::block::compress(bytes).len(),
            (Algorithm::Lz4hc { level }, _) => {
                // The output buffer holds any page's bound; past it zram stores it whole.
                lz4::block::compress_to_buffer(
                    bytes,
                    Some(lz4::block::CompressionMode::HIGHCOMPRESSION(*level)),
                    false,
                    &mut self.out,
                )
                .unwrap_or(PAGE_SIZE)
            }
            (_, Coder::Zstd(c)) => c
                .compress_to_buffer(bytes, &mut self.out)
                .unwrap_or(PAGE_SIZE),
            (_, Coder::Deflate(c)) => {
                c.reset();
                match c.compress(bytes, &mut self.out, flate2::FlushCompress::Finish) {
                    Ok(flate2::Status::StreamEnd) => c.total_out() as usize,
                    _ => PAGE_SIZE,
                }
            }
            _ => unreachable!("a coder is made for its algorithm"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_page() -> Page {
        let mut page = Page::zeroed();
        let text = b"the kernel's zram keeps pages compressed in memory; ";
        for (i, b) in page.bytes_mut().iter_mut().enumerate() {
            *b = text[(i * 7 + i / 97) % text.len()];
        }
        page
    }

    #[test]
    fn settings_parse_or_say_why_not() {
        let parse = |text: &str| {
            let mut parts = text.split(':');
            Algorithm::parse(parts.next().unwrap(), parts)
        };
        assert_eq!(
            parse("zstd:level=8").unwrap(),
            Algorithm::Zstd {
                level: 8,
                dict: None
            }
        );
        assert_eq!(
            parse("deflate:winbits=15").unwrap(),
            Algorithm::Deflate {
                level: 6,
                winbits: 15
            }
        );
        for (bad, needle) in [
            ("zstd:level=23", "1 to 22"),
            ("lz4:level=2", "no settings"),
            ("deflate:winbits=8", "9 to 15"),
            ("842", "not modelled"),
            ("snappy", "not an algorithm"),
            ("zstd:dict=/nonexistent/dict", "dict=/nonexistent/dict"),
        ] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains(needle), "{bad}: {error}");
        }
    }

    /// Each coder's size is what its library's own decoder takes back to the page (so the
    /// sizes are of real streams), and stronger settings code no larger.
    #[test]
    fn sizes_are_real_streams() {
        let page = text_page();
        let algorithm = Algorithm::Deflate {
            level: 6,
            winbits: 11,
        };
        let mut c = algorithm.compressor().unwrap();
        let len = c.compressed_len(&page);
        let mut back = Vec::with_capacity(PAGE_SIZE);
        flate2::Decompress::new_with_window_bits(false, 11)
            .decompress_vec(&c.out[..len], &mut back, flate2::FlushDecompress::Finish)
            .unwrap();
        assert_eq!(back, page.bytes());

        let mut zstd = Algorithm::Zstd {
            level: 3,
            dict: None,
        }
        .compressor()
        .unwrap();
        let len = zstd.compressed_len(&page);
        assert_eq!(
            zstd::bulk::decompress(&zstd.out[..len], PAGE_SIZE).unwrap(),
            page.bytes()
        );

        let mut hc = Algorithm::Lz4hc { level: 9 }.compressor().unwrap();
        let len = hc.compressed_len(&page);
        assert_eq!(
            lz4_flex::block::decompress(&hc.out[..len], PAGE_SIZE).unwrap(),
            page.bytes()
        );
        let fast = Algorithm::Lz4.compressor().unwrap().compressed_len(&page);
        assert!(len <= fast, "lz4hc {len} > lz4 {fast}");
    }
}
