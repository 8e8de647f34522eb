//! Zero pages: the tag alone. Invariant: the payload is empty.

use super::{Class, DecodeError};
use crate::page::Page;

/// Appends the payload of this form to `out`: nothing: the tag says it all.
pub fn encode(out: &mut Vec<u8>) {
    out.push(Class::Zero.tag());
}

/// Decodes a zero page's (empty) payload into `out`, refusing one that is not well formed.
///
/// # Errors
/// [`crate::DecodeError`] for a payload that is not a well-formed form of
/// this class (never a panic).
///
/// # Examples
/// ```
/// use zpage::Page;
/// use zpage::codec::zero;
///
/// let mut form = Vec::new();
/// zero::encode(&mut form);
/// let mut out = Page::zeroed();
/// zero::decode(&form[1..], &mut out)?;
/// assert!(out == *Page::filled(0));
/// assert!(zero::decode(&[1, 2, 3], &mut out).is_err());
/// # Ok::<(), zpage::DecodeError>(())
/// ```
pub fn decode(payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    if !payload.is_empty() {
        return Err(DecodeError::length(Class::Zero, 0, payload.len()));
    }
    out.words_mut().fill(0);
    Ok(())
}
