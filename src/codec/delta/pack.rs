//! Bit-packing: residuals at the narrowest bit width that holds them all.
//!
//! Invariants: [`unpack`] reads back what [`pack`] wrote for every width 0..=64; it reads
//! a padded copy, so a value near the end never reads past the packed bytes.

use super::word::Word;
use crate::page::PAGE_SIZE;

/// Appends `res` packed at `bits` bits each, least significant bit first.
pub(super) fn pack<W: Word>(res: &[W], bits: u32, out: &mut Vec<u8>) {
    if bits == 0 {
        return;
    }
    let mut acc: u128 = 0;
    let mut filled = 0u32;
    for r in res {
        acc |= (r.to_u64() as u128) << filled;
        filled += bits;
        if filled >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            filled -= 64;
        }
    }
    out.extend_from_slice(&acc.to_le_bytes()[..filled.div_ceil(8) as usize]);
}

/// Unpacks `res.len()` values of `bits` bits; `src` must be exactly the packed length
/// (at most a page). Each value is read from a 16-byte window at its own bit offset, so
/// the iterations are independent instead of a byte-at-a-time refill chain.
pub(super) fn unpack<W: Word>(src: &[u8], bits: u32, res: &mut [W]) {
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut padded = [0u8; PAGE_SIZE + 16];
    padded[..src.len()].copy_from_slice(src);
    let bits = bits as usize;
    for (i, r) in res.iter_mut().enumerate() {
        let at = i * bits;
        let window = u128::from_le_bytes(padded[at / 8..at / 8 + 16].try_into().expect("16"));
        *r = W::from_u64((window >> (at % 8)) as u64 & mask);
    }
}
