//! Colour quantisation by clustering: what a lossy step would remove from image pages.
//! An image's colours are clustered (k-means, mini-batch k-means or a Gaussian mixture,
//! from linfa), each pixel is replaced by its cluster's colour, and the result is
//! measured: MSE and PSNR against the original, order-0 entropy of the colours before and
//! after, and the bytes a dense `PageStore` needs for the original pixels, the quantised
//! pixels and the palette-index form (K colours, then one byte per pixel).
//!
//! Invariants: every fit is seeded (the same input gives the same palette on every run);
//! the clusters are fitted on at most [`FIT_PIXELS`] pixels spread evenly over the image
//! and every pixel is then assigned, so time and memory stay bounded by the image, which
//! is refused above [`MAX_IMAGE_BYTES`]; bad input (a size that does not match, a K of 0
//! or above the pixels or 256, a PNG that does not decode, a special file) is a
//! [`QuantizeError`], never a panic. zpage's store itself stays lossless: this is a
//! measurement, not a stored form.

use linfa::DatasetBase;
use linfa::ParamGuard;
use linfa::traits::{Fit, FitWith, Predict};
use linfa_clustering::{GaussianMixtureModel, IncrKMeansError, KMeans};
use ndarray::Array2;
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;
use zpage::page::{PAGE_SIZE, Page};
use zpage::store::PageStore;

/// Largest image read (raw or decoded).
pub const MAX_IMAGE_BYTES: u64 = 1 << 30;
/// Pixels the clusters are fitted on at most (spread evenly; all pixels are assigned).
pub const FIT_PIXELS: usize = 65_536;
/// The seed of every fit.
const SEED: u64 = 0x5eed;

/// The clustering methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// k-means (Lloyd's iterations from one k-means++ seeding).
    Kmeans,
    /// Mini-batch k-means: batches of 1024 pixels.
    Minibatch,
    /// A Gaussian mixture (full covariances, EM), seeded by k-means.
    Gmm,
}

impl Method {
    /// Parses `kmeans`, `minibatch` or `gmm`.
    pub fn parse(text: &str) -> Result<Method, String> {
        match text {
            "kmeans" => Ok(Method::Kmeans),
            "minibatch" => Ok(Method::Minibatch),
            "gmm" => Ok(Method::Gmm),
            other => Err(format!(
                "{other:?} is not a method (kmeans, minibatch, gmm)"
            )),
        }
    }
}

/// Why an image could not be quantised.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Input(String),
    #[error("{method:?} did not fit {k} colours: {reason}")]
    Fit {
        method: Method,
        k: usize,
        reason: String,
    },
}

/// An image of interleaved 8-bit samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
}

impl Image {
    /// Reads a PNG (by its signature; its own size and channels, which `size` must match
    /// if given) or raw interleaved samples of `size` and `channels`. A page file may end
    /// in less than a page beyond the image (a partial last page): those bytes are
    /// ignored and counted in the second value.
    pub fn load(
        path: &Path,
        size: Option<(usize, usize)>,
        channels: usize,
    ) -> Result<(Image, usize), QuantizeError> {
        let shown = path.display().to_string();
        let io = |source| QuantizeError::Io {
            path: shown.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(QuantizeError::Input(format!("{shown}: not a regular file")));
        }
        if meta.len() > MAX_IMAGE_BYTES {
            return Err(QuantizeError::Input(format!(
                "{shown}: {} bytes, more than the {MAX_IMAGE_BYTES} an image may have",
                meta.len()
            )));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            let image = decode_png(&bytes)
                .map_err(|e| QuantizeError::Input(format!("{shown}: not a readable PNG: {e}")))?;
            if let Some((w, h)) = size
                && (w, h) != (image.width, image.height)
            {
                return Err(QuantizeError::Input(format!(
                    "{shown}: the PNG is {}x{}, not {w}x{h}",
                    image.width, image.height
                )));
            }
            return Ok((image, 0));
        }
        let (width, height) = size.ok_or_else(|| {
            QuantizeError::Input(format!("{shown}: raw pixels need --width and --height"))
        })?;
        if width == 0 || height == 0 || channels == 0 || channels > 4 {
            return Err(QuantizeError::Input(format!(
                "{width}x{height} with {channels} channels: give a size above 0 and 1 to 4 channels"
            )));
        }
        let expected = width
            .checked_mul(height)
            .and_then(|n| n.checked_mul(channels))
            .filter(|&n| n as u64 <= MAX_IMAGE_BYTES)
            .ok_or_else(|| {
                QuantizeError::Input(format!("{width}x{height}x{channels} is too large"))
            })?;
        let tail = bytes.len().checked_sub(expected);
        let page_tail = tail.filter(|&t| t < PAGE_SIZE && bytes.len() % PAGE_SIZE == 0);
        let Some(tail) = page_tail.or(tail.filter(|&t| t == 0)) else {
            return Err(QuantizeError::Input(format!(
                "{shown}: {} bytes do not match {width}x{height}x{channels} = {expected}",
                bytes.len()
            )));
        };
        let mut pixels = bytes;
        pixels.truncate(expected);
        Ok((
            Image {
                width,
                height,
                channels,
                pixels,
            },
            tail,
        ))
    }

    /// Pixels in the image.
    pub fn len(&self) -> usize {
        self.width * self.height
    }

    /// Whether it has no pixel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes it as a PNG (gray, gray+alpha, RGB or RGBA by its channels).
    pub fn write_png(&self, path: &Path) -> Result<(), QuantizeError> {
        let shown = path.display().to_string();
        let file = std::fs::File::create(path).map_err(|source| QuantizeError::Io {
            path: shown.clone(),
            source,
        })?;
        let fail = |e: png::EncodingError| QuantizeError::Input(format!("{shown}: {e}"));
        let mut encoder = png::Encoder::new(
            std::io::BufWriter::new(file),
            self.width as u32,
            self.height as u32,
        );
        encoder.set_color(match self.channels {
            1 => png::ColorType::Grayscale,
            2 => png::ColorType::GrayscaleAlpha,
            3 => png::ColorType::Rgb,
            _ => png::ColorType::Rgba,
        });
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(fail)?;
        writer.write_image_data(&self.pixels).map_err(fail)?;
        writer.finish().map_err(fail)
    }

    /// This image and `other` (of the same height and channels) side by side.
    pub fn beside(&self, other: &Image) -> Image {
        fn row(image: &Image, y: usize) -> &[u8] {
            let n = image.width * image.channels;
            &image.pixels[y * n..(y + 1) * n]
        }
        let mut pixels = Vec::with_capacity(self.pixels.len() + other.pixels.len());
        for y in 0..self.height {
            pixels.extend_from_slice(row(self, y));
            pixels.extend_from_slice(row(other, y));
        }
        Image {
            width: self.width + other.width,
            height: self.height,
            channels: self.channels,
            pixels,
        }
    }
}

fn decode_png(bytes: &[u8]) -> Result<Image, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let size = reader
        .output_buffer_size()
        .filter(|&n| n as u64 <= MAX_IMAGE_BYTES)
        .ok_or("too large")?;
    let mut pixels = vec![0; size];
    let frame = reader.next_frame(&mut pixels).map_err(|e| e.to_string())?;
    pixels.truncate(frame.buffer_size());
    let channels = frame.color_type.samples();
    if frame.bit_depth != png::BitDepth::Eight {
        return Err(format!("{:?} samples, not 8-bit", frame.bit_depth));
    }
    Ok(Image {
        width: frame.width as usize,
        height: frame.height as usize,
        channels,
        pixels,
    })
}

/// An image quantised to a palette.
#[derive(Clone, Debug)]
pub struct Quantised {
    /// The colours, `channels` bytes each (at most 256 of them).
    pub palette: Vec<u8>,
    /// Per pixel, its colour's index.
    pub indices: Vec<u8>,
    /// The image with every pixel replaced by its colour.
    pub image: Image,
}

impl Quantised {
    /// The palette-index form: the palette, then one index byte per pixel.
    pub fn palette_form(&self) -> Vec<u8> {
        let mut form = self.palette.clone();
        form.extend_from_slice(&self.indices);
        form
    }
}

/// Quantises `image` to at most `k` colours with `method`.
pub fn quantise(image: &Image, k: usize, method: Method) -> Result<Quantised, QuantizeError> {
    let pixels = image.len();
    if k == 0 || k > 256 || k > pixels {
        return Err(QuantizeError::Input(format!(
            "K = {k}: give 1 to {} colours (at most 256, at most the {pixels} pixels)",
            pixels.min(256)
        )));
    }
    let c = image.channels;
    let step = pixels.div_ceil(FIT_PIXELS).max(1);
    let sample: Vec<f64> = image
        .pixels
        .chunks_exact(c)
        .step_by(step)
        .flatten()
        .map(|&v| f64::from(v))
        .collect();
    let n = sample.len() / c;
    let records = Array2::from_shape_vec((n, c), sample).expect("rows of `c` samples");
    let rng = Xoshiro256Plus::seed_from_u64(SEED);
    let fail = |reason: String| QuantizeError::Fit { method, k, reason };
    let centres: Array2<f64> = match method {
        Method::Kmeans => {
            let data = DatasetBase::from(records);
            let model = KMeans::params_with_rng(k, rng)
                .n_runs(1)
                .max_n_iterations(100)
                .tolerance(1e-3)
                .fit(&data)
                .map_err(|e| fail(e.to_string()))?;
            model.centroids().clone()
        }
        Method::Minibatch => {
            let mut rng = rng;
            let data = DatasetBase::from(records).shuffle(&mut rng);
            let params = KMeans::params_with_rng(k, rng)
                .tolerance(1e-3)
                .check()
                .map_err(|e| fail(e.to_string()))?;
            let mut model = None;
            // Batches of 1024 until the centroids settle (or 400 batches).
            for batch in data.sample_chunks(1024).cycle().take(400) {
                match params.fit_with(model.take(), &batch) {
                    Ok(done) => {
                        model = Some(done);
                        break;
                    }
                    Err(IncrKMeansError::NotConverged(going)) => model = Some(going),
                    Err(e) => return Err(fail(e.to_string())),
                }
            }
            model.expect("at least one batch").centroids().clone()
        }
        Method::Gmm => {
            let data = DatasetBase::from(records);
            let model = GaussianMixtureModel::params_with_rng(k, rng)
                .n_runs(1)
                .max_n_iterations(100)
                .tolerance(1e-3)
                .reg_covariance(1e-3)
                .fit(&data)
                .map_err(|e| fail(e.to_string()))?;
            // Every pixel's component, FIT_PIXELS at a time: a whole image as f64 would
            // take eight times its size.
            let mut indices = Vec::with_capacity(pixels);
            for rows in image.pixels.chunks(FIT_PIXELS * c) {
                let samples: Vec<f64> = rows.iter().map(|&v| f64::from(v)).collect();
                let samples = Array2::from_shape_vec((rows.len() / c, c), samples)
                    .expect("rows of `c` samples");
                indices.extend(model.predict(&samples).iter().map(|&l| l as u8));
            }
            return Ok(assemble(image, round(model.means()), indices));
        }
    };
    let palette = round(&centres);
    let indices = nearest(image, &palette);
    Ok(assemble(image, palette, indices))
}

/// Cluster centres as 8-bit colours.
fn round(centres: &Array2<f64>) -> Vec<u8> {
    centres
        .iter()
        .map(|&v| v.round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// Per pixel, the index of the nearest palette colour (squared distance).
fn nearest(image: &Image, palette: &[u8]) -> Vec<u8> {
    let c = image.channels;
    image
        .pixels
        .chunks_exact(c)
        .map(|pixel| {
            let distance = |colour: &[u8]| -> u32 {
                pixel
                    .iter()
                    .zip(colour)
                    .map(|(&a, &b)| (i32::from(a) - i32::from(b)).pow(2) as u32)
                    .sum()
            };
            palette
                .chunks_exact(c)
                .enumerate()
                .min_by_key(|(_, colour)| distance(colour))
                .map_or(0, |(i, _)| i as u8)
        })
        .collect()
}

fn assemble(image: &Image, palette: Vec<u8>, indices: Vec<u8>) -> Quantised {
    let c = image.channels;
    let pixels = indices
        .iter()
        .flat_map(|&i| {
            palette[i as usize * c..(i as usize + 1) * c]
                .iter()
                .copied()
        })
        .collect();
    Quantised {
        palette,
        indices,
        image: Image {
            width: image.width,
            height: image.height,
            channels: c,
            pixels,
        },
    }
}

/// Mean squared error over every sample.
pub fn mse(a: &Image, b: &Image) -> f64 {
    let sum: u64 = a
        .pixels
        .iter()
        .zip(&b.pixels)
        .map(|(&x, &y)| (i64::from(x) - i64::from(y)).pow(2) as u64)
        .sum();
    sum as f64 / a.pixels.len().max(1) as f64
}

/// Peak signal-to-noise ratio of an MSE, in dB (`None` for a lossless result).
pub fn psnr_db(mse: f64) -> Option<f64> {
    (mse > 0.0).then(|| 10.0 * (255.0f64 * 255.0 / mse).log10())
}

/// Order-0 entropy of the image's colours (each pixel one symbol), in bits per pixel.
pub fn entropy_bits_per_pixel(image: &Image) -> f64 {
    let mut counts: std::collections::HashMap<&[u8], u64> = std::collections::HashMap::new();
    for pixel in image.pixels.chunks_exact(image.channels) {
        *counts.entry(pixel).or_default() += 1;
    }
    let n = image.len().max(1) as f64;
    counts
        .values()
        .map(|&count| {
            let p = count as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Bytes a dense `PageStore` spends on `bytes` (zero-padded to whole pages): its memory
/// and metadata, as the effective ratio counts them.
pub fn stored_bytes(bytes: &[u8]) -> u64 {
    let store = PageStore::builder()
        .shards(1)
        .profile(zpage::Profile::Dense)
        .build();
    let mut page = Page::zeroed();
    for (id, chunk) in (0..).zip(bytes.chunks(PAGE_SIZE)) {
        page.bytes_mut().fill(0);
        page.bytes_mut()[..chunk.len()].copy_from_slice(chunk);
        store
            .insert(id, &page)
            .expect("a store without a limit takes every page");
    }
    let stats = store.stats();
    stats.mm.mem_used_total + stats.metadata_total()
}

/// One quantisation's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub k: usize,
    pub mse: f64,
    /// `null` when lossless.
    pub psnr_db: Option<f64>,
    pub stored_bytes_quantised: u64,
    pub stored_bytes_palette: u64,
    /// Fitting and assigning every pixel (not the store's measurement).
    pub seconds: f64,
}

/// A quantisation report; `steps` holds each K tried (with `--max-mse`, or a sweep).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub method: Method,
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    /// The chosen K's figures (the last of `steps`), as the report's own fields.
    #[serde(flatten)]
    pub chosen: Step,
    pub entropy_before: f64,
    pub entropy_after: f64,
    pub stored_bytes_original: u64,
    pub steps: Vec<Step>,
    /// Bytes past the image in a page file's last page, ignored.
    pub ignored_tail_bytes: usize,
}

/// How K is chosen.
#[derive(Clone, Copy, Debug)]
pub enum Choice {
    /// This K; with `sweep`, also every power of two below it (for a plot).
    Fixed { k: usize, sweep: bool },
    /// Double K from 2 until the MSE is at most this (or K reaches 256 or the pixels).
    MaxMse(f64),
}

/// Quantises `image` as `choice` says; returns the report and the chosen quantisation.
pub fn run(
    image: &Image,
    choice: Choice,
    method: Method,
    ignored_tail_bytes: usize,
) -> Result<(Report, Quantised), QuantizeError> {
    // 2, 4, 8, ... below `top`, then `top`.
    let doubling = |top: usize| -> Vec<usize> {
        (1..)
            .map(|p| 1usize << p)
            .take_while(|&x| x < top)
            .chain([top])
            .collect()
    };
    let ks: Vec<usize> = match choice {
        Choice::Fixed { k, sweep: false } => vec![k],
        Choice::Fixed { k, sweep: true } => doubling(k),
        Choice::MaxMse(max) => {
            if !(max.is_finite() && max >= 0.0) {
                return Err(QuantizeError::Input(format!(
                    "--max-mse {max}: give a mean squared error of 0 or more"
                )));
            }
            doubling(image.len().min(256))
        }
    };
    let mut steps = Vec::new();
    let mut chosen = None;
    for k in ks {
        let start = Instant::now();
        let quantised = quantise(image, k, method)?;
        let seconds = start.elapsed().as_secs_f64();
        let error = mse(image, &quantised.image);
        steps.push(Step {
            k,
            mse: error,
            psnr_db: psnr_db(error),
            stored_bytes_quantised: stored_bytes(&quantised.image.pixels),
            stored_bytes_palette: stored_bytes(&quantised.palette_form()),
            seconds,
        });
        let done = matches!(choice, Choice::MaxMse(max) if error <= max);
        chosen = Some(quantised);
        if done {
            break;
        }
    }
    let quantised = chosen.expect("at least one K");
    let report = Report {
        method,
        width: image.width,
        height: image.height,
        channels: image.channels,
        chosen: steps.last().expect("at least one step").clone(),
        entropy_before: entropy_bits_per_pixel(image),
        entropy_after: entropy_bits_per_pixel(&quantised.image),
        stored_bytes_original: stored_bytes(&image.pixels),
        steps,
        ignored_tail_bytes,
    };
    Ok((report, quantised))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four colour blocks with a little noise: any method finds the four colours.
    fn blocks() -> Image {
        let (width, height) = (64, 64);
        let colours = [
            [200u8, 30, 30],
            [30, 200, 30],
            [30, 30, 200],
            [220, 220, 220],
        ];
        let mut pixels = Vec::new();
        for y in 0..height {
            for x in 0..width {
                let colour = colours[(y / 32) * 2 + x / 32];
                let noise = ((x * 7 + y * 13) % 5) as u8;
                pixels.extend(colour.iter().map(|&v| v.saturating_add(noise)));
            }
        }
        Image {
            width,
            height,
            channels: 3,
            pixels,
        }
    }

    #[test]
    fn every_method_finds_four_blocks_and_repeats_itself() {
        let image = blocks();
        for method in [Method::Kmeans, Method::Minibatch, Method::Gmm] {
            let q = quantise(&image, 4, method).unwrap();
            let error = mse(&image, &q.image);
            assert!(error < 4.0, "{method:?}: mse {error}");
            assert!(entropy_bits_per_pixel(&q.image) <= 2.0 + 1e-9);
            let again = quantise(&image, 4, method).unwrap();
            assert_eq!(again.palette, q.palette, "{method:?} is seeded");
            // The palette form decodes to the quantised image.
            let rebuilt = assemble(&image, q.palette.clone(), q.indices.clone());
            assert_eq!(rebuilt.image, q.image);
        }
    }

    #[test]
    fn bad_ks_are_errors() {
        let image = blocks();
        for k in [0, 257, 5000] {
            assert!(matches!(
                quantise(&image, k, Method::Kmeans),
                Err(QuantizeError::Input(_))
            ));
        }
    }

    #[test]
    fn measures_hold_on_known_images() {
        let image = blocks();
        assert_eq!(mse(&image, &image), 0.0);
        assert_eq!(psnr_db(0.0), None);
        assert!((psnr_db(1.0).unwrap() - 48.13).abs() < 0.01);
        let flat = Image {
            pixels: vec![9; image.pixels.len()],
            ..image.clone()
        };
        assert_eq!(entropy_bits_per_pixel(&flat), 0.0);
    }

    #[test]
    fn raw_sizes_must_match_and_pngs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("img.raw");
        std::fs::write(&raw, vec![1u8; 4 * 4 * 3]).unwrap();
        assert!(Image::load(&raw, Some((4, 4)), 3).is_ok());
        assert!(matches!(
            Image::load(&raw, Some((5, 4)), 3),
            Err(QuantizeError::Input(_))
        ));
        // A page file whose last page the image does not fill.
        std::fs::write(&raw, vec![1u8; PAGE_SIZE]).unwrap();
        let (image, tail) = Image::load(&raw, Some((30, 40)), 3).unwrap();
        assert_eq!((image.len(), tail), (1200, PAGE_SIZE - 3600));
        let png = dir.path().join("img.png");
        let image = blocks();
        image.write_png(&png).unwrap();
        let (read, _) = Image::load(&png, None, 3).unwrap();
        assert_eq!(read, image);
        std::fs::write(&png, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let error = Image::load(&png, None, 3).unwrap_err().to_string();
        assert!(error.contains("not a readable PNG"), "{error}");
    }
}
