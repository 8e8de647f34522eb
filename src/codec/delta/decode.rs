//! The delta decoder: parameters and prelude checked, residuals unpacked or decoded by
//! their backend and unshuffled, words rebuilt.
//!
//! Invariants: every length is checked against what the parameters imply before it is
//! used, and a backend must produce exactly the residual bytes; any disagreement is a
//! [`DecodeError`], never a panic or an out-of-bounds access.

use super::format::{Backend, Params, residual_count, split_prelude};
use super::pack::unpack;
use super::word::{Word, inverse};
use crate::codec::general::lz4_exact;
use crate::codec::shuffle::unshuffle_bytes;
use crate::codec::zstd::zstd_exact;
use crate::codec::{Class, DecodeError};
use crate::page::Page;

/// Decodes a delta payload (parameter bytes, then the residuals) into `out`, refusing
/// one that is not well formed.
///
/// # Errors
/// [`crate::DecodeError`] for a payload that is not a well-formed form of
/// this class (never a panic, never a page of other bytes).
///
/// # Examples
/// ```
/// use zpage::Page;
/// use zpage::codec::delta;
///
/// let mut page = Page::zeroed();
/// for (i, word) in page.words_mut().iter_mut().enumerate() {
///     *word = (i as u64 / 3) * 0x0101 + 7;
/// }
/// let mut form = Vec::new();
/// delta::encode(&page, &zpage::CodecConfig::default(), &mut form);
/// let mut out = Page::zeroed();
/// delta::decode(&form[1..], &mut out)?;
/// assert!(out == page);
/// # Ok::<(), zpage::DecodeError>(())
/// ```
pub fn decode(payload: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    let corrupt = |reason| DecodeError::corrupt(Class::Delta, reason);
    if payload.is_empty() {
        return Err(corrupt("missing parameter byte"));
    }
    let (params, rest) = Params::parse(payload).ok_or(corrupt("invalid parameters"))?;
    let (prelude, rest) = split_prelude(params, rest)?;
    match params.width {
        8 => decode_as::<u64>(params, rest, out)?,
        4 => decode_as::<u32>(params, rest, out)?,
        2 => decode_as::<u16>(params, rest, out)?,
        _ => decode_as::<u8>(params, rest, out)?,
    }
    if let Some(prelude) = prelude {
        prelude.apply(out);
    }
    Ok(())
}

fn decode_as<W: Word>(params: Params, rest: &[u8], out: &mut Page) -> Result<(), DecodeError> {
    let corrupt = |reason| DecodeError::corrupt(Class::Delta, reason);
    let width = params.width;
    if rest.len() < width {
        return Err(corrupt("truncated base word"));
    }
    let (base, body) = rest.split_at(width);
    let mut base_bytes = [0u8; 8];
    base_bytes[..width].copy_from_slice(base);
    let base = W::from_u64(u64::from_le_bytes(base_bytes));
    let n = residual_count(params.transform, width);
    let mut scratch = Page::zeroed();
    let res_bytes = &mut scratch.bytes_mut()[..n * width];
    match params.backend {
        Backend::Bitpack => {
            let (&bits, packed) = body.split_first().ok_or(corrupt("missing bit width"))?;
            if bits as u32 > W::BITS {
                return Err(corrupt("bit width wider than the word"));
            }
            let expected = (n * bits as usize).div_ceil(8);
            if packed.len() != expected {
                return Err(DecodeError::length(Class::Delta, expected, packed.len()));
            }
            unpack::<W>(packed, bits as u32, bytemuck::cast_slice_mut(res_bytes));
        }
        Backend::Lz4 | Backend::Zstd => {
            let mut shuffled = Page::zeroed();
            let target: &mut [u8] = if params.shuffle {
                &mut shuffled.bytes_mut()[..n * width]
            } else {
                res_bytes
            };
            if params.backend == Backend::Lz4 {
                lz4_exact(body, target).map_err(corrupt)?;
            } else {
                zstd_exact(body, target).map_err(corrupt)?;
            }
            if params.shuffle {
                unshuffle_bytes(&shuffled.bytes()[..n * width], width, res_bytes);
            }
        }
    }
    let res: &[W] = bytemuck::cast_slice(&scratch.bytes()[..n * width]);
    inverse(
        base,
        params.transform,
        params.lag,
        res,
        bytemuck::cast_slice_mut(out.bytes_mut()),
    );
    Ok(())
}
