//! Incompressible pages, stored as they are. Invariant: the payload is exactly one page.

use super::{Class, DecodeError};
use crate::page::{PAGE_SIZE, Page};

/// Appends the payload of this form to `out`: the page as it is.
pub fn encode(page: &Page, out: &mut Vec<u8>) {
    out.push(Class::Incompressible.tag());
    out.extend_from_slice(page.bytes());
}

/// Decodes a raw page payload into `out`, refusing one that is not well formed.
///
/// # Errors
/// [`crate::DecodeError`] for a payload that is not a well-formed form of
/// this class (never a panic, never a page of other bytes).
///
/// # Examples
/// ```
/// use zpage::Page;
/// use zpage::codec::raw;
///
/// let mut page = Page::zeroed();
/// for (i, word) in page.words_mut().iter_mut().enumerate() {
///     *word = (i as u64 / 3) * 0x0101 + 7;
/// }
/// let mut form = Vec::new();
/// raw::encode(&page, &mut form);
/// let mut out = Page::zeroed();
/// raw::decode(&form[1..], &mut out)?;
/// assert!(out == page);
/// # Ok::<(), zpage::DecodeError>(())
/// ```
pub fn decode(payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    if payload.len() != PAGE_SIZE {
        return Err(DecodeError::length(
            Class::Incompressible,
            PAGE_SIZE,
            payload.len(),
        ));
    }
    out.bytes_mut().copy_from_slice(payload);
    Ok(())
}
