//! `zpage map`: a picture of memory. Every page is a cell, in address order, coloured by
//! the class the engine stores it as and shaded by how much of the page its stored form
//! keeps (the full colour: stored whole; fading to white: stored in nothing), in rows of
//! [`WIDTH`] cells under each mapping's name (a process's `[heap]`, named and plain
//! anonymous mappings; a page file's name), untouched stretches of a mapping folded into
//! a grey band.
//!
//! Why rows, not a Hilbert curve: a mapping is a range of addresses, and rows keep it a
//! band that reads top to bottom with its name beside it; a Hilbert curve keeps
//! neighbours together in two dimensions but scatters a mapping's start and end, and no
//! label can sit beside a curve's piece.
//!
//! Invariants: memory is bounded by [`MAX_CELLS`] whatever the input: where pages
//! outnumber the cells, a cell stands for several neighbouring pages (the most common
//! class among them, their stored fraction together); the input streams through a chunk
//! at a time.

use crate::source::{CHUNK_PAGES, PageSource};
use serde::Serialize;
use std::collections::BTreeMap;
use zpage::codec::Class;
use zpage::engine::Engine;
use zpage::page::PAGE_SIZE;

/// The JSON schema name and version of [`Map`].
pub const SCHEMA: &str = "zpage-map/1";
/// Cells per row.
pub const WIDTH: usize = 128;
/// Most cells drawn (a 1 GiB input is one page a cell).
pub const MAX_CELLS: u64 = (WIDTH * 2048) as u64;

/// One cell: the pages it stands for, by class, and their stored bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Cell {
    classes: [u32; Class::ALL.len()],
    stored: u64,
}

impl Cell {
    fn pages(&self) -> u64 {
        self.classes.iter().map(|&c| u64::from(c)).sum()
    }

    fn class(&self) -> Class {
        let at = (0..self.classes.len())
            .max_by_key(|&i| self.classes[i])
            .unwrap_or(0);
        Class::ALL[at]
    }
}

/// A mapping (or a page file) and its figures.
#[derive(Clone, Debug, Serialize)]
pub struct Region {
    pub name: String,
    /// Its first address (a page file's: 0).
    pub start: u64,
    /// Its size in pages, and the pages read (touched) in it.
    pub span_pages: u64,
    pub pages: u64,
    pub stored_bytes: u64,
    /// `pages * 4096 / stored_bytes`.
    pub ratio: f64,
    /// Pages by class.
    pub classes: BTreeMap<Class, u64>,
    /// Cells by cell index within the region (sparse: untouched rows are not held).
    #[serde(skip)]
    cells: BTreeMap<u64, Cell>,
}

/// A drawn row: a region's name row, a row of cells, or a fold of untouched rows.
#[derive(Clone, Debug)]
pub enum Row {
    /// The start of region `.0`.
    Label(usize),
    /// Region `.0`'s cells `.1 * WIDTH ..`.
    Cells(usize, u64),
    /// Rows of region `.0` with no page read, `.1` of them.
    Fold(usize, u64),
}

/// The map; its JSON form (the per-mapping figures) is the schema [`SCHEMA`].
#[derive(Clone, Debug, Serialize)]
pub struct Map {
    pub schema: &'static str,
    pub input: String,
    pub pages: u64,
    pub stored_bytes: u64,
    pub ratio: f64,
    /// Neighbouring pages a cell stands for.
    pub pages_per_cell: u64,
    pub regions: Vec<Region>,
    #[serde(skip)]
    pub rows: Vec<Row>,
}

/// Maps `source`; `mappings` (start, end, name) place a process's pages by address, else
/// the source is one region in file order. `tick` gets the pages done per chunk.
pub fn build(
    source: &mut dyn PageSource,
    mappings: Option<Vec<(u64, u64, String)>>,
    engine: &Engine,
    tick: &mut dyn FnMut(u64),
) -> Result<Map, String> {
    let per_cell = source.expected_pages().div_ceil(MAX_CELLS).max(1);
    let mut regions: Vec<Region> = match &mappings {
        Some(list) => list
            .iter()
            .map(|(start, end, name)| {
                let name = if name.is_empty() { "anonymous" } else { name };
                region(name, *start, (end - start) / PAGE_SIZE as u64)
            })
            .collect(),
        None => vec![region(source.name(), 0, source.expected_pages())],
    };
    let mut chunk = Vec::with_capacity(CHUNK_PAGES);
    let mut scratch = Vec::new();
    let (mut ordinal, mut at) = (0u64, 0usize);
    while source
        .next_chunk(&mut chunk)
        .map_err(|e| format!("{}: {e}", source.name()))?
    {
        let addresses = source.addresses().map(<[u64]>::to_vec);
        for (i, page) in chunk.iter().enumerate() {
            let class = engine.encode(page, &mut scratch);
            let stored = zpage::codec::stored_size(class, scratch.len()) as u64;
            let (index, offset) = match &addresses {
                Some(addresses) => {
                    let address = addresses[i];
                    // Pages come in address order: the mapping is this one or a later one.
                    while at + 1 < regions.len()
                        && address >= regions[at].start + regions[at].span_pages * PAGE_SIZE as u64
                    {
                        at += 1;
                    }
                    (at, (address - regions[at].start) / PAGE_SIZE as u64)
                }
                None => (0, ordinal),
            };
            ordinal += 1;
            let r = &mut regions[index];
            r.pages += 1;
            r.stored_bytes += stored;
            *r.classes.entry(class).or_default() += 1;
            let cell = r.cells.entry(offset / per_cell).or_default();
            cell.classes[class.index()] += 1;
            cell.stored += stored;
        }
        tick(chunk.len() as u64);
    }
    regions.retain(|r| r.pages > 0);
    for r in &mut regions {
        r.ratio = (r.pages * PAGE_SIZE as u64) as f64 / r.stored_bytes.max(1) as f64;
    }
    let pages: u64 = regions.iter().map(|r| r.pages).sum();
    let stored_bytes: u64 = regions.iter().map(|r| r.stored_bytes).sum();
    let rows = layout(&regions);
    Ok(Map {
        schema: SCHEMA,
        input: source.name().to_string(),
        pages,
        stored_bytes,
        ratio: (pages * PAGE_SIZE as u64) as f64 / stored_bytes.max(1) as f64,
        pages_per_cell: per_cell,
        regions,
        rows,
    })
}

/// Page files read as one input whose pages have addresses (each file's pages after the
/// last's), with each file a region: what [`build`] draws a file at a time.
pub struct Files<'a> {
    inner: crate::source::Concat<'a>,
    next: u64,
    addresses: Vec<u64>,
}

impl<'a> Files<'a> {
    /// `files` in order, and their regions (start, end, name) for [`build`].
    pub fn new(files: Vec<Box<dyn PageSource + 'a>>) -> (Files<'a>, Vec<(u64, u64, String)>) {
        let mut start = 0;
        let regions = (files.iter())
            .map(|f| {
                let end = start + f.expected_pages() * PAGE_SIZE as u64;
                let region = (start, end, f.name().to_string());
                start = end;
                region
            })
            .collect();
        let files = Files {
            inner: crate::source::Concat::new(files),
            next: 0,
            addresses: Vec::new(),
        };
        (files, regions)
    }
}

impl PageSource for Files<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn expected_pages(&self) -> u64 {
        self.inner.expected_pages()
    }
    fn next_chunk(
        &mut self,
        out: &mut Vec<zpage::Page>,
    ) -> Result<bool, crate::source::SourceError> {
        let more = self.inner.next_chunk(out)?;
        self.addresses.clear();
        for _ in 0..out.len() {
            self.addresses.push(self.next);
            self.next += PAGE_SIZE as u64;
        }
        Ok(more)
    }
    fn addresses(&self) -> Option<&[u64]> {
        Some(&self.addresses)
    }
}

fn region(name: &str, start: u64, span_pages: u64) -> Region {
    Region {
        name: name.to_string(),
        start,
        span_pages,
        pages: 0,
        stored_bytes: 0,
        ratio: 0.0,
        classes: BTreeMap::new(),
        cells: BTreeMap::new(),
    }
}

/// Each region: its name, then its rows that hold a cell, runs of empty rows folded.
fn layout(regions: &[Region]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, r) in regions.iter().enumerate() {
        rows.push(Row::Label(i));
        let mut last: Option<u64> = None;
        for &cell in r.cells.keys() {
            let row = cell / WIDTH as u64;
            if last == Some(row) {
                continue;
            }
            if let Some(last) = last
                && row > last + 1
            {
                rows.push(Row::Fold(i, row - last - 1));
            }
            rows.push(Row::Cells(i, row));
            last = Some(row);
        }
    }
    rows
}

/// A class's colour.
pub fn colour(class: Class) -> [u8; 3] {
    match class {
        Class::Zero => [0xd8, 0xd8, 0xd8],
        Class::Same => [0x9e, 0xc9, 0xe2],
        Class::Delta => [0xe6, 0x7e, 0x22],
        Class::General => [0x2e, 0x9e, 0x5b],
        Class::Zstd => [0x2c, 0x5d, 0xa8],
        Class::Incompressible => [0xc0, 0x39, 0x2b],
        Class::Words => [0x8e, 0x44, 0xad],
        Class::Mixed => [0x34, 0x34, 0x34],
        _ => [0, 0, 0],
    }
}

/// Pixel height of a label row and of a fold, in cells.
pub const LABEL_ROWS: usize = 3;

impl Map {
    /// The picture as RGB pixels, `cell` pixels a cell: (width, height, pixels). A
    /// cell's colour is its class's, mixed with white by the share of the page its
    /// stored form saves (a zero page is its own light grey); label rows are white,
    /// folds a grey band.
    pub fn pixels(&self, cell: usize) -> (usize, usize, Vec<u8>) {
        let width = WIDTH * cell;
        let height: usize = self
            .rows
            .iter()
            .map(|row| match row {
                Row::Label(_) => LABEL_ROWS * cell,
                Row::Cells(..) => cell,
                Row::Fold(..) => cell.max(2),
            })
            .sum();
        let mut pixels = vec![255u8; width * height * 3];
        let mut y = 0;
        for row in &self.rows {
            match *row {
                Row::Label(_) => y += LABEL_ROWS * cell,
                Row::Fold(..) => {
                    let h = cell.max(2);
                    for py in y..y + h {
                        for px in 0..width {
                            let grey = if (px / 2 + py) % 2 == 0 { 0xb0 } else { 0xe0 };
                            pixels[(py * width + px) * 3..][..3].fill(grey);
                        }
                    }
                    y += h;
                }
                Row::Cells(region, row) => {
                    let cells = &self.regions[region].cells;
                    let first = row * WIDTH as u64;
                    for (&index, c) in cells.range(first..first + WIDTH as u64) {
                        let rgb = shade(c);
                        let x = (index - first) as usize * cell;
                        for py in y..y + cell {
                            for px in x..x + cell {
                                pixels[(py * width + px) * 3..][..3].copy_from_slice(&rgb);
                            }
                        }
                    }
                    y += cell;
                }
            }
        }
        (width, height, pixels)
    }

    /// The picture as a PNG, `cell` pixels a cell.
    pub fn png(&self, cell: usize) -> Result<Vec<u8>, String> {
        let (width, height, pixels) = self.pixels(cell);
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, width as u32, height.max(1) as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        let pixels = if pixels.is_empty() {
            vec![255; 3]
        } else {
            pixels
        };
        writer
            .write_image_data(&pixels)
            .map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
        Ok(bytes)
    }
}

/// A cell's colour: its class's, faded towards white by the share its forms save.
fn shade(cell: &Cell) -> [u8; 3] {
    let class = cell.class();
    let base = colour(class);
    if class == Class::Zero {
        return base;
    }
    let kept = cell.stored as f64 / (cell.pages().max(1) * PAGE_SIZE as u64) as f64;
    fade(base, kept)
}

/// `base` faded towards white as `kept` (the share of a page stored) falls: on a square
/// root, so the 3-10x most memory compresses by stays told apart.
pub fn fade(base: [u8; 3], kept: f64) -> [u8; 3] {
    let keep = 0.2 + 0.8 * kept.clamp(0.0, 1.0).sqrt();
    base.map(|c| (255.0 - (255.0 - f64::from(c)) * keep).round() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zpage::Page;

    struct Pages(Vec<Page>, bool);

    impl PageSource for Pages {
        fn name(&self) -> &str {
            "test"
        }
        fn expected_pages(&self) -> u64 {
            self.0.len() as u64
        }
        fn next_chunk(&mut self, out: &mut Vec<Page>) -> Result<bool, crate::source::SourceError> {
            out.clear();
            if self.1 {
                return Ok(false);
            }
            out.extend_from_slice(&self.0);
            self.1 = true;
            Ok(true)
        }
    }

    #[test]
    fn cells_rows_and_pixels() {
        let mut pages = vec![Page::zeroed(); 300];
        for (i, page) in pages.iter_mut().enumerate().skip(150) {
            page.words_mut()[0] = i as u64;
        }
        let mut source = Pages(pages, false);
        let map = build(&mut source, None, &Engine::default(), &mut |_| {}).unwrap();
        assert_eq!((map.pages, map.pages_per_cell), (300, 1));
        assert_eq!(map.regions.len(), 1);
        assert_eq!(map.regions[0].classes[&Class::Zero], 150);
        // A label, then three rows of 128 cells.
        assert_eq!(map.rows.len(), 4);
        let (w, h, pixels) = map.pixels(2);
        assert_eq!((w, h), (256, 2 * (LABEL_ROWS + 3)));
        assert_eq!(pixels.len(), w * h * 3);
        let png = map.png(2).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
