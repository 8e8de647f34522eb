//! Same-filled pages: one 8-byte word repeated 512 times. Invariant: the payload is the
//! word, 8 bytes little-endian; a zero word is legal here (zero pages normally use
//! [`super::zero`], but decoding either is exact).

use super::{Class, DecodeError};
use crate::page::Page;

/// Appends the payload of this form to `out`: the one word a same-filled page repeats.
pub fn encode(word: u64, out: &mut Vec<u8>) {
    out.push(Class::Same.tag());
    out.extend_from_slice(&word.to_le_bytes());
}

/// Decodes a same-filled page's word payload into `out`, refusing one that is not well formed.
///
/// # Errors
/// [`crate::DecodeError`] for a payload that is not a well-formed form of
/// this class (never a panic).
///
/// # Examples
/// ```
/// use zpage::Page;
/// use zpage::codec::same;
///
/// let mut form = Vec::new();
/// same::encode(9, &mut form);
/// let mut out = Page::zeroed();
/// same::decode(&form[1..], &mut out)?;
/// assert!(out == *Page::filled(9));
/// assert!(same::decode(&[1, 2, 3], &mut out).is_err());
/// # Ok::<(), zpage::DecodeError>(())
/// ```
pub fn decode(payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    let word: [u8; 8] = payload
        .try_into()
        .map_err(|_| DecodeError::length(Class::Same, 8, payload.len()))?;
    out.words_mut().fill(u64::from_le_bytes(word));
    Ok(())
}
