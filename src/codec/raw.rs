//! Incompressible pages, stored as they are. Invariant: the payload is exactly one page.

use super::{Class, DecodeError};
use crate::page::{PAGE_SIZE, Page};

/// Appends the payload of this form to `out`: the page as it is.
pub fn encode(page: &Page, out: &mut Vec<u8>) {
    out.push(Class::Incompressible.tag());
    out.extend_from_slice(page.bytes());
}

/// Decodes a raw page payload into `out`, refusing one that is not well formed.
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
