//! General pages: one LZ4 block (lz4_flex), the fast default for object and text pages.
//!
//! Invariant: the payload is a raw LZ4 block that must decode to exactly one page; the
//! page size is implied, so no length prefix is stored.

use super::{Class, DecodeError};
use crate::page::{PAGE_SIZE, Page};
use crate::sync::{RefCell, thread_local};
use lz4_flex::block::{CompressTable, compress_into_with_table};

/// Appends the payload of this form to `out`: an LZ4 block of the page.
pub fn encode(page: &Page, out: &mut Vec<u8>) {
    out.push(Class::General.tag());
    lz4_append(page.bytes(), out);
}

/// Decodes an LZ4 block payload into `out`, refusing one that is not well formed.
///
/// # Errors
/// [`crate::DecodeError`] for a payload that is not a well-formed form of
/// this class (never a panic, never a page of other bytes).
///
/// # Examples
/// ```
/// use zpage::Page;
/// use zpage::codec::general;
///
/// let mut page = Page::zeroed();
/// for (i, word) in page.words_mut().iter_mut().enumerate() {
///     *word = (i as u64 / 3) * 0x0101 + 7;
/// }
/// let mut form = Vec::new();
/// general::encode(&page, &mut form);
/// let mut out = Page::zeroed();
/// general::decode(&form[1..], &mut out)?;
/// assert!(out == page);
/// # Ok::<(), zpage::DecodeError>(())
/// ```
pub fn decode(payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    lz4_exact(payload, out.bytes_mut())
        .map_err(|reason| DecodeError::corrupt(Class::General, reason))
}

/// The output room lz4_flex asks for to compress a page.
const MAX_BLOCK: usize = lz4_flex::block::get_maximum_output_size(PAGE_SIZE);

/// Per-thread LZ4 state: the match table (`compress_into` would allocate and zero a fresh
/// one for every page) and an output block, zeroed once, not once per page as a growing
/// `Vec` would be.
///
/// The table is lz4_flex's `large` one (32-bit slots, 5-byte hash) although a page would
/// fit the `small` one (16-bit slots, 4-byte hash): on memory pages, where pointers and
/// zero-padded fields share 4-byte runs everywhere, the 4-byte hash finds many matches of
/// 4-5 bytes that each cost a sequence to encode; hashing 5 bytes skips them. Measured on
/// the corpus's general pages: 3-11% faster and up to 2% smaller (no input got slower;
/// python-numpy 0.6% larger).
struct Lz4State {
    table: CompressTable,
    block: Box<[u8; MAX_BLOCK]>,
}

thread_local! {
    static LZ4: RefCell<Lz4State> = RefCell::new(Lz4State {
        table: CompressTable::large(),
        block: bytemuck::allocation::zeroed_box(),
    });
}

/// Appends the LZ4 block of `src` (at most a page) to `out`.
pub(crate) fn lz4_append(src: &[u8], out: &mut Vec<u8>) {
    LZ4.with(|state| {
        let Lz4State { table, block } = &mut *state.borrow_mut();
        let written = compress_into_with_table(src, &mut block[..], table)
            .expect("a page's block fits MAX_BLOCK");
        out.extend_from_slice(&block[..written]);
    })
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
