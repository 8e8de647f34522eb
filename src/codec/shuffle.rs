//! Byte shuffling: words' byte planes grouped (every byte 0, then every byte 1, ...), so
//! that a compressor sees the runs a column of bytes makes: the zero high bytes of a
//! delta form's residuals ([`super::delta`]), the high bytes of a heap's pointers and
//! the zero bytes of its small numbers in a cold unit laid out as planes
//! ([`super::unit`]). The transform of blosc's "shuffle" filter.
//!
//! Invariants: [`unshuffle_bytes`] inverts [`shuffle_bytes`] for widths 2, 4 and 8 and
//! any length; both touch only their two buffers; the loops are written so the compiler
//! vectorises them.
//!
//! Hand-written, not a crate: the crates that offer it (blosc's and bitshuffle's
//! bindings) wrap C libraries for a few lines of integer code.

use bytemuck::Pod;

/// Byte-transposes `src` (words of `width` bytes: 2, 4, or else 8) into `dst`: every
/// word's byte 0, then every byte 1, and so on; returns the filled part (the whole words
/// of `src`). Each width has its own loop, written so that the compiler vectorises it (a
/// plain loop of byte moves became 16 byte inserts per vector register).
///
/// # Panics
/// If `dst` is shorter than `src`'s whole words.
///
/// # Examples
/// ```
/// use zpage::codec::shuffle::{shuffle_bytes, unshuffle_bytes};
///
/// let words: Vec<u8> = (0..8u64).flat_map(|i| (0x7f00_0000_1000 + i).to_le_bytes()).collect();
/// let mut columns = vec![0; 64];
/// shuffle_bytes(&words, 8, &mut columns);
/// assert_eq!(columns[..8], [0, 1, 2, 3, 4, 5, 6, 7]); // the low bytes
/// assert_eq!(columns[40..48], [0x7f; 8]); // byte 5 of every word
/// let mut back = vec![0; 64];
/// unshuffle_bytes(&columns, 8, &mut back);
/// assert_eq!(back, words);
/// ```
pub fn shuffle_bytes<'a>(src: &[u8], width: usize, dst: &'a mut [u8]) -> &'a [u8] {
    let n = src.len() / width;
    let dst = &mut dst[..n * width];
    match width {
        2 => shuffle2(src, dst),
        4 => shuffle_square::<[u32; 4]>(src, dst),
        _ => shuffle_square::<[u64; 8]>(src, dst),
    }
    dst
}

/// [`shuffle_bytes`] for 2-byte words: each 8 bytes (4 words) as one `u64`, its even
/// and odd bytes gathered by shifts and masks (the compiler keeps this in vector
/// registers; a byte-permutation written as array indexing became scalar byte moves).
fn shuffle2(src: &[u8], dst: &mut [u8]) {
    let n = src.len() / 2;
    let (p0, p1) = dst.split_at_mut(n);
    let blocks = src
        .chunks_exact(8)
        .zip(p0.chunks_exact_mut(4).zip(p1.chunks_exact_mut(4)));
    for (chunk, (a, b)) in blocks {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        a.copy_from_slice(&even_bytes(x).to_le_bytes());
        b.copy_from_slice(&even_bytes(x >> 8).to_le_bytes());
    }
    for i in n / 4 * 4..n {
        (p0[i], p1[i]) = (src[2 * i], src[2 * i + 1]);
    }
}

/// The inverse of [`shuffle2`].
fn unshuffle2(src: &[u8], dst: &mut [u8]) {
    let n = src.len() / 2;
    let (p0, p1) = src.split_at(n);
    let blocks = dst
        .chunks_exact_mut(8)
        .zip(p0.chunks_exact(4).zip(p1.chunks_exact(4)));
    for (chunk, (a, b)) in blocks {
        let a = u32::from_le_bytes(a.try_into().expect("4 bytes"));
        let b = u32::from_le_bytes(b.try_into().expect("4 bytes"));
        chunk.copy_from_slice(&(spread_bytes(a) | spread_bytes(b) << 8).to_le_bytes());
    }
    for i in n / 4 * 4..n {
        (dst[2 * i], dst[2 * i + 1]) = (p0[i], p1[i]);
    }
}

/// Bytes 0, 2, 4 and 6 of `x`.
#[inline(always)]
fn even_bytes(x: u64) -> u32 {
    let x = x & 0x00ff_00ff_00ff_00ff;
    let x = (x | x >> 8) & 0x0000_ffff_0000_ffff;
    (x | x >> 16) as u32
}

/// The inverse of [`even_bytes`]: the bytes of `x` at bytes 0, 2, 4 and 6.
#[inline(always)]
fn spread_bytes(x: u32) -> u64 {
    let x = x as u64;
    let x = (x | x << 16) & 0x0000_ffff_0000_ffff;
    (x | x << 8) & 0x00ff_00ff_00ff_00ff
}

/// An N x N byte matrix held as N little-endian rows: N words of N bytes.
trait ByteSquare: Pod {
    const N: usize;
    /// Transposes the matrix in place (its own inverse).
    fn transpose(&mut self);
}

/// Transposes the byte matrix whose rows are the (little-endian) words of `$x` by
/// swapping 1-, 2-, 4-… byte blocks across the diagonal, `$masks[k]` selecting the
/// blocks of 2^k bytes (a macro: one body for rows of any word type).
macro_rules! transpose_rows {
    ($x:expr, $masks:expr) => {
        for (k, mask) in $masks.into_iter().enumerate() {
            let step = 1 << k;
            let shift = 8 * step;
            for i in (0..$x.len()).filter(|i| i & step == 0) {
                let t = (($x[i] >> shift) ^ $x[i + step]) & mask;
                $x[i + step] ^= t;
                $x[i] ^= t << shift;
            }
        }
    };
}

impl ByteSquare for [u32; 4] {
    const N: usize = 4;
    #[inline(always)]
    fn transpose(&mut self) {
        transpose_rows!(self, [0x00ff_00ffu32, 0x0000_ffff]);
    }
}

impl ByteSquare for [u64; 8] {
    const N: usize = 8;
    #[inline(always)]
    fn transpose(&mut self) {
        let masks = [
            0x00ff_00ff_00ff_00ffu64,
            0x0000_ffff_0000_ffff,
            0x0000_0000_ffff_ffff,
        ];
        transpose_rows!(self, masks);
    }
}

/// [`shuffle_bytes`] for words of N = 4 or 8 bytes: N words at a time as an N x N byte
/// matrix, transposed in registers (for 8-byte words: 8 loads, 24 mask-and-shift steps
/// and 8 stores instead of 64 scattered byte stores). N is a constant, so every copy
/// compiles to plain stores, not `memmove` calls.
fn shuffle_square<M: ByteSquare>(src: &[u8], dst: &mut [u8]) {
    let n = src.len() / M::N;
    for (block, chunk) in src.chunks_exact(M::N * M::N).enumerate() {
        let mut rows: M = bytemuck::pod_read_unaligned(chunk);
        rows.transpose();
        for (j, plane) in bytemuck::bytes_of(&rows).chunks_exact(M::N).enumerate() {
            dst[j * n + M::N * block..][..M::N].copy_from_slice(plane);
        }
    }
    for i in n / M::N * M::N..n {
        for j in 0..M::N {
            dst[j * n + i] = src[i * M::N + j];
        }
    }
}

/// The inverse of [`shuffle_square`].
fn unshuffle_square<M: ByteSquare>(src: &[u8], dst: &mut [u8]) {
    let n = src.len() / M::N;
    for (block, chunk) in dst.chunks_exact_mut(M::N * M::N).enumerate() {
        let mut rows = M::zeroed();
        for (j, row) in bytemuck::bytes_of_mut(&mut rows)
            .chunks_exact_mut(M::N)
            .enumerate()
        {
            row.copy_from_slice(&src[j * n + M::N * block..][..M::N]);
        }
        rows.transpose();
        chunk.copy_from_slice(bytemuck::bytes_of(&rows));
    }
    for i in n / M::N * M::N..n {
        for j in 0..M::N {
            dst[i * M::N + j] = src[j * n + i];
        }
    }
}

/// The inverse of [`shuffle_bytes`]: `src`'s planes back into words of `width` bytes in
/// `dst`.
///
/// # Panics
/// If `dst` is shorter than `src`'s whole words.
pub fn unshuffle_bytes(src: &[u8], width: usize, dst: &mut [u8]) {
    match width {
        2 => unshuffle2(src, dst),
        4 => unshuffle_square::<[u32; 4]>(src, dst),
        _ => unshuffle_square::<[u64; 8]>(src, dst),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_matches_the_definition_and_inverts() {
        let src: Vec<u8> = (0..8 * 511).map(|i| (i * 7 + i / 13) as u8).collect();
        for width in [8, 4, 2] {
            let src = &src[..src.len() / width * width];
            let n = src.len() / width;
            let mut dst = vec![0; src.len()];
            shuffle_bytes(src, width, &mut dst);
            for i in 0..n {
                for j in 0..width {
                    assert_eq!(dst[j * n + i], src[i * width + j], "width {width}");
                }
            }
            let mut back = vec![0; src.len()];
            unshuffle_bytes(&dst, width, &mut back);
            assert_eq!(back, src);
        }
    }
}
