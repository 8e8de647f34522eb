//! Zero pages: the tag alone. Invariant: the payload is empty.

use super::{Class, DecodeError};
use crate::page::Page;

pub fn encode(out: &mut Vec<u8>) {
    out.push(Class::Zero.tag());
}

pub fn decode(payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    if !payload.is_empty() {
        return Err(DecodeError::length(Class::Zero, 0, payload.len()));
    }
    out.words_mut().fill(0);
    Ok(())
}
