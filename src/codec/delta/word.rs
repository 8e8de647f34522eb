//! Word arithmetic and the transforms: an unsigned word of each width, residuals
//! forward and back.
//!
//! Invariants: [`inverse`] undoes [`forward`] exactly for every transform, lag and width
//! (wrapping arithmetic, zigzag for signed differences), and is total: any residuals give
//! some words, so a corrupt form cannot make it fail or read out of bounds.

use super::format::Transform;
use bytemuck::Pod;

/// An unsigned word of one width, with the arithmetic the transforms need.
pub(super) trait Word: Pod + Ord {
    const BITS: u32;
    fn wsub(self, o: Self) -> Self;
    fn wadd(self, o: Self) -> Self;
    fn xor(self, o: Self) -> Self;
    fn or(self, o: Self) -> Self;
    fn leading_zeros(self) -> u32;
    fn zigzag(self) -> Self;
    fn unzigzag(self) -> Self;
    fn to_u64(self) -> u64;
    fn from_u64(v: u64) -> Self;
}

macro_rules! word {
    ($u:ty, $i:ty) => {
        impl Word for $u {
            const BITS: u32 = <$u>::BITS;
            #[inline(always)]
            fn wsub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            #[inline(always)]
            fn wadd(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            #[inline(always)]
            fn xor(self, o: Self) -> Self {
                self ^ o
            }
            #[inline(always)]
            fn or(self, o: Self) -> Self {
                self | o
            }
            #[inline(always)]
            fn leading_zeros(self) -> u32 {
                <$u>::leading_zeros(self)
            }
            #[inline(always)]
            fn zigzag(self) -> Self {
                (((self as $i) << 1) ^ ((self as $i) >> (<$u>::BITS - 1))) as $u
            }
            #[inline(always)]
            fn unzigzag(self) -> Self {
                (self >> 1) ^ (0 as $u).wrapping_sub(self & 1)
            }
            #[inline(always)]
            fn to_u64(self) -> u64 {
                self as u64
            }
            #[inline(always)]
            fn from_u64(v: u64) -> Self {
                v as $u
            }
        }
    };
}
word!(u8, i8);
word!(u16, i16);
word!(u32, i32);
word!(u64, i64);

#[inline(always)]
pub(super) fn residual<W: Word>(t: Transform, prev: W, cur: W) -> W {
    match t {
        Transform::Identity => cur.wsub(prev),
        Transform::Sub | Transform::Decimal => sub(prev, cur),
        Transform::Xor => cur.xor(prev),
    }
}

/// Writes the residuals of `words` into `res` and returns (base, residual count).
pub(super) fn forward<W: Word>(words: &[W], t: Transform, lag: usize, res: &mut [W]) -> (W, usize) {
    match t {
        Transform::Identity => {
            // A fold with a plain comparison vectorises (pminu*); `Iterator::min` did not.
            let base = words[1..]
                .iter()
                .fold(words[0], |m, &w| if w < m { w } else { m });
            for (r, &w) in res.iter_mut().zip(words) {
                *r = w.wsub(base);
            }
            (base, words.len())
        }
        Transform::Sub | Transform::Xor | Transform::Decimal => {
            let lag = lag.clamp(1, words.len());
            // The first record against neighbours, then every word against its lag.
            for (r, pair) in res.iter_mut().zip(words[..lag].windows(2)) {
                *r = residual(t, pair[0], pair[1]);
            }
            for (r, (&prev, &cur)) in res[lag - 1..]
                .iter_mut()
                .zip(words.iter().zip(&words[lag..]))
            {
                *r = residual(t, prev, cur);
            }
            (words[0], words.len() - 1)
        }
    }
}

/// Rebuilds `words` from base and residuals; total for any residuals (no invariant to break).
pub(super) fn inverse<W: Word>(base: W, t: Transform, lag: usize, res: &[W], words: &mut [W]) {
    let undo = |prev: W, r: W| {
        if t != Transform::Xor {
            prev.wadd(r.unzigzag())
        } else {
            prev.xor(r)
        }
    };
    match t {
        Transform::Identity => {
            for (w, &r) in words.iter_mut().zip(res) {
                *w = r.wadd(base);
            }
        }
        Transform::Sub | Transform::Xor | Transform::Decimal if lag <= 1 => {
            // The neighbour form keeps the running word in a register.
            let mut prev = base;
            words[0] = base;
            for (w, &r) in words[1..].iter_mut().zip(res) {
                prev = undo(prev, r);
                *w = prev;
            }
        }
        Transform::Sub | Transform::Xor | Transform::Decimal => {
            let lag = lag.min(words.len());
            words[0] = base;
            for i in 1..lag {
                words[i] = undo(words[i - 1], res[i - 1]);
            }
            // A record at a time: its words depend only on the record before, so each
            // step is `lag` independent lanes.
            let mut at = lag;
            while at < words.len() {
                let end = (at + lag).min(words.len());
                let (done, rest) = words.split_at_mut(at);
                let prev = &done[at - lag..];
                for ((w, &p), &r) in rest[..end - at].iter_mut().zip(prev).zip(&res[at - 1..]) {
                    *w = undo(p, r);
                }
                at = end;
            }
        }
    }
}

/// `Sub`'s residual.
#[inline(always)]
pub(super) fn sub<W: Word>(prev: W, cur: W) -> W {
    cur.wsub(prev).zigzag()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips() {
        for v in [0u64, 1, 2, u64::MAX, u64::MAX / 2, 1 << 63] {
            assert_eq!(v.zigzag().unzigzag(), v);
        }
        assert_eq!(1u64.wrapping_neg().zigzag(), 1);
        assert_eq!(1u64.zigzag(), 2);
    }
}
