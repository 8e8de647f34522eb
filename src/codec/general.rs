//! General pages: one LZ4 block (lz4_flex), the fast default for object and text pages.
//!
//! Invariant: the payload is a raw LZ4 block that must decode to exactly one page; the
//! page size is implied, so no length prefix is stored.

use super::{Class, DecodeError};
use crate::page::{PAGE_SIZE, Page};
use crate::sync::{RefCell, thread_local};
use lz4_flex::block::{CompressTable, compress_into_with_table};

pub fn encode(page: &Page, out: &mut Vec<u8>) {
    out.push(Class::General.tag());
    lz4_append(page.bytes(), out);
}

pub fn decode(payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    lz4_exact(payload, out.bytes_mut())
        .map_err(|reason| DecodeError::corrupt(Class::General, reason))
}

thread_local! {
    /// One LZ4 match table per thread: `compress_into` would allocate and zero a fresh
    /// 8 KiB table for every page.
    static TABLE: RefCell<CompressTable> = RefCell::new(CompressTable::small());
}

/// Appends the LZ4 block of `src` to `out`.
pub(crate) fn lz4_append(src: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(
        start + lz4_flex::block::get_maximum_output_size(src.len()),
        0,
    );
    let written = TABLE
        .with(|table| compress_into_with_table(src, &mut out[start..], &mut table.borrow_mut()))
        .expect("output sized by get_maximum_output_size");
    out.truncate(start + written);
}

/// Decodes an LZ4 block that must fill `dst` exactly.
pub(crate) fn lz4_exact(src: &[u8], dst: &mut [u8]) -> Result<(), &'static str> {
    match lz4_flex::block::decompress_into(src, dst) {
        Ok(n) if n == dst.len() => Ok(()),
        Ok(_) => Err("LZ4 block decodes to fewer bytes than expected"),
        Err(_) => Err("invalid LZ4 block"),
    }
}

const _: () = assert!(PAGE_SIZE == 4096);
