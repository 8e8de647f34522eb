//! LZO1X streams for the zram model: a compressor of zpage's own (greedy, one hashed
//! probe per position, as fast LZ77 compressors do) and a checking decoder, both written
//! from the published prose description of the byte stream ("LZO stream format as
//! understood by Linux's LZO decompressor"), version 0 (`lzo`) and version 1 (`lzo-rle`:
//! runs of zeros as one instruction). No LZO code was read, copied or translated: the
//! LZO library and the kernel's compressor are GPL-2.0.
//!
//! The model needs the kernel's compressed sizes, not its bytes: how close the sizes come
//! is measured against the kernel's zram (see README).

/// Bytes a 4-byte sequence is hashed from, and the table's size in bits.
const HASH_BITS: u32 = 13;
/// Longest zero run one RLE instruction codes: ((255 << 3) | 7) + 4.
const MAX_RUN: usize = 2051;
/// No match starts in the last `TAIL` bytes, nor reaches into the last `REACH`: they go
/// out as literals. Chosen by measurement against the kernel's zram (match ends unbounded:
/// sizes 0.6-1.9% under the kernel's on fresh captures; these bounds: 0.3-0.5% under).
const TAIL: usize = 20;
const REACH: usize = 16;
/// The end-of-stream instruction: a copy of distance 16384.
const END: [u8; 3] = [0x11, 0x00, 0x00];

/// The LZO1X form of `input` (version 1, with zero runs, if `rle`).
pub fn compress(input: &[u8], rle: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 16 + 16);
    if rle {
        out.extend_from_slice(&[17, 1]);
    }
    let mut enc = Encoder {
        out,
        // Where the last instruction's two literal-count bits are (none yet).
        state_at: None,
    };
    let n = input.len();
    if rle && n < 4 {
        // Too short to open a version-1 stream with (its first literals would be 1 to 3).
        return compress(input, false);
    }
    let mut table = vec![0u16; 1 << HASH_BITS];
    let (mut i, mut lit) = (0usize, 0usize);
    // Matches start at most TAIL bytes before the end and reach at most REACH before it:
    // where this coder's sizes come closest to the kernel's (see the module docs).
    while i + TAIL <= n {
        // A version-1 stream cannot open with 1 to 3 literals: make them four.
        if rle && (1..4).contains(&i) && lit == 0 {
            i += 1;
            continue;
        }
        let word = u32::from_le_bytes(input[i..i + 4].try_into().expect("4 bytes"));
        if rle && word == 0 {
            let run = input[i..].iter().take_while(|&&b| b == 0).count();
            enc.literals(&input[lit..i]);
            let mut left = run;
            while left >= 4 {
                let take = left.min(MAX_RUN);
                enc.zero_run(take);
                left -= take;
            }
            i += run - left;
            lit = i;
            continue;
        }
        let h = (word.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize;
        let candidate = table[h] as usize;
        table[h] = i as u16;
        if candidate < i && input[candidate..candidate + 4] == input[i..i + 4] {
            let len = 4 + input[i + 4..n - REACH]
                .iter()
                .zip(&input[candidate + 4..])
                .take_while(|(a, b)| a == b)
                .count();
            enc.literals(&input[lit..i]);
            enc.copy(len, i - candidate);
            i += len;
            lit = i;
        } else {
            // Skip faster through data that does not match (as the fast LZ77 coders do).
            i += 1 + ((i - lit) >> 5);
        }
    }
    enc.literals(&input[lit..]);
    enc.out.extend_from_slice(&END);
    enc.out
}

struct Encoder {
    out: Vec<u8>,
    state_at: Option<usize>,
}

impl Encoder {
    /// Emits a run of literals before the next instruction.
    fn literals(&mut self, bytes: &[u8]) {
        let t = bytes.len();
        if t == 0 {
            return;
        }
        match self.state_at {
            // Up to three ride in the last instruction's count bits.
            Some(at) if t <= 3 => self.out[at] |= t as u8,
            // The first byte of a version-0 stream has a form of its own for 1 to 238
            // literals (after version 1's header, instructions start at once).
            None if self.out.is_empty() && t <= 238 => self.out.push(17 + t as u8),
            // A long literal run: 4 or more (the compressor never starts a version-1
            // stream with 1 to 3).
            _ => self.long_length(t - 3, 15, 0),
        }
        self.out.extend_from_slice(bytes);
        self.state_at = None;
    }

    /// A length in `bits` of the opcode byte `op` (ORed in), extended by zero bytes.
    fn long_length(&mut self, length: usize, max: usize, op: u8) {
        if length <= max {
            self.out.push(op | length as u8);
        } else {
            self.out.push(op);
            let mut rest = length - max;
            while rest > 255 {
                self.out.push(0);
                rest -= 255;
            }
            self.out.push(rest as u8);
        }
    }

    /// A copy of `len` (4 or more) bytes from `dist` back (within 16 KiB).
    fn copy(&mut self, len: usize, dist: usize) {
        let d = dist - 1;
        if len <= 8 && dist <= 2048 {
            let op = if len <= 4 {
                64 | ((len - 3) << 5) as u8
            } else {
                128 | ((len - 5) << 5) as u8
            };
            self.state_at = Some(self.out.len());
            self.out.push(op | ((d & 7) << 2) as u8);
            self.out.push((d >> 3) as u8);
        } else {
            debug_assert!(dist <= 16384);
            self.long_length(len - 2, 31, 32);
            self.state_at = Some(self.out.len());
            self.out.push((d << 2) as u8);
            self.out.push((d >> 6) as u8);
        }
    }

    /// A run of `len` (4 to [`MAX_RUN`]) zero bytes (version 1).
    fn zero_run(&mut self, len: usize) {
        let n = len - 4;
        self.out.push(0x18 | (n & 7) as u8);
        self.state_at = Some(self.out.len());
        self.out.extend_from_slice(&[0xfc, 0xff, (n >> 3) as u8]);
    }
}

/// Why a stream does not decode.
#[derive(Debug, PartialEq, Eq)]
pub struct Corrupt(&'static str);

/// Decodes an LZO1X stream (either version) into at most `max` bytes.
pub fn decompress(input: &[u8], max: usize) -> Result<Vec<u8>, Corrupt> {
    let mut out: Vec<u8> = Vec::with_capacity(max);
    let mut ip = 0;
    let byte = |ip: &mut usize| -> Result<u8, Corrupt> {
        let b = *input.get(*ip).ok_or(Corrupt("truncated"))?;
        *ip += 1;
        Ok(b)
    };
    let long = |ip: &mut usize, base: usize| -> Result<usize, Corrupt> {
        let mut extra = 0usize;
        loop {
            let b = byte(ip)?;
            if b != 0 {
                return Ok(base + extra + b as usize);
            }
            extra += 255;
            if extra > max {
                return Err(Corrupt("length past the output"));
            }
        }
    };
    let literals = |out: &mut Vec<u8>, ip: &mut usize, n: usize| -> Result<(), Corrupt> {
        let bytes = input
            .get(*ip..*ip + n)
            .ok_or(Corrupt("literals past the input"))?;
        if out.len() + n > max {
            return Err(Corrupt("literals past the output"));
        }
        out.extend_from_slice(bytes);
        *ip += n;
        Ok(())
    };
    let copy = |out: &mut Vec<u8>, dist: usize, len: usize| -> Result<(), Corrupt> {
        if dist == 0 || dist > out.len() || out.len() + len > max {
            return Err(Corrupt("copy outside the output"));
        }
        let from = out.len() - dist;
        for k in 0..len {
            let b = out[from + k];
            out.push(b);
        }
        Ok(())
    };
    let mut state = 0usize;
    match input.first().copied() {
        Some(17) if input.len() >= 5 && input[1] == 1 => ip = 2,
        Some(b @ 18..=255) => {
            ip = 1;
            let t = b as usize - 17;
            literals(&mut out, &mut ip, t)?;
            state = t.min(4);
        }
        Some(_) => {}
        None => return Err(Corrupt("empty")),
    }
    loop {
        let op = byte(&mut ip)? as usize;
        let (len, dist, s);
        if op < 16 {
            match state {
                0 => {
                    let t = if op == 0 { long(&mut ip, 15)? } else { op } + 3;
                    literals(&mut out, &mut ip, t)?;
                    state = 4;
                    continue;
                }
                1..=3 => {
                    let h = byte(&mut ip)? as usize;
                    (len, dist, s) = (2, (h << 2) + (op >> 2 & 3) + 1, op & 3);
                }
                _ => {
                    let h = byte(&mut ip)? as usize;
                    (len, dist, s) = (3, (h << 2) + (op >> 2 & 3) + 2049, op & 3);
                }
            }
        } else if op < 32 {
            let l = op & 7;
            let lo = byte(&mut ip)? as usize;
            let hi = byte(&mut ip)? as usize;
            let le = lo | hi << 8;
            let d = 16384 + ((op >> 3 & 1) << 14) + (le >> 2);
            if d == 16384 {
                return if ip == input.len() {
                    Ok(out)
                } else {
                    Err(Corrupt("bytes after the end"))
                };
            }
            if d == 0xbfff {
                let x = byte(&mut ip)? as usize;
                let run = ((x << 3) | l) + 4;
                if out.len() + run > max {
                    return Err(Corrupt("zero run past the output"));
                }
                out.resize(out.len() + run, 0);
                state = le & 3;
                literals(&mut out, &mut ip, state)?;
                continue;
            }
            let len_m4 = if l == 0 { long(&mut ip, 7)? } else { l } + 2;
            (len, dist, s) = (len_m4, d, le & 3);
        } else if op < 64 {
            let l = op & 31;
            let len_m3 = if l == 0 { long(&mut ip, 31)? } else { l } + 2;
            let lo = byte(&mut ip)? as usize;
            let hi = byte(&mut ip)? as usize;
            let le = lo | hi << 8;
            (len, dist, s) = (len_m3, (le >> 2) + 1, le & 3);
        } else {
            let h = byte(&mut ip)? as usize;
            let d = (h << 3) + (op >> 2 & 7) + 1;
            let l = if op < 128 {
                3 + (op >> 5 & 1)
            } else {
                5 + (op >> 5 & 3)
            };
            (len, dist, s) = (l, d, op & 3);
        }
        copy(&mut out, dist, len)?;
        literals(&mut out, &mut ip, s)?;
        state = s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages() -> Vec<Vec<u8>> {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut text = Vec::new();
        while text.len() < 4096 {
            text.extend_from_slice(
                format!("key={} value={} ", next() % 97, next() % 13).as_bytes(),
            );
        }
        text.truncate(4096);
        let noise: Vec<u8> = (0..4096).map(|_| next() as u8).collect();
        let mut mixed = vec![0u8; 4096];
        mixed[100..300].copy_from_slice(&noise[..200]);
        mixed[3000..3010].fill(7);
        vec![
            vec![0; 4096],
            text,
            noise,
            mixed,
            (0..4096).map(|i| (i / 64) as u8).collect(),
            vec![1, 2, 3],
            Vec::new(),
        ]
    }

    #[test]
    fn both_versions_round_trip() {
        for page in pages() {
            for rle in [false, true] {
                let form = compress(&page, rle);
                let back = decompress(&form, page.len());
                assert_eq!(
                    back.as_ref().ok(),
                    Some(&page),
                    "rle {rle}, {} bytes: {back:?}",
                    page.len()
                );
            }
        }
    }

    #[test]
    fn the_shipped_sample_round_trips() {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
        for entry in std::fs::read_dir(data).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for page in bytes.chunks_exact(4096) {
                for rle in [false, true] {
                    let form = compress(page, rle);
                    assert_eq!(decompress(&form, 4096).unwrap(), page);
                }
            }
        }
    }

    #[test]
    fn zero_runs_cost_a_few_bytes_in_version_1() {
        let zeros = vec![0u8; 4096];
        assert!(compress(&zeros, true).len() < 16);
        assert!(compress(&zeros, false).len() > compress(&zeros, true).len());
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        for page in pages() {
            let form = compress(&page, true);
            for cut in 0..form.len() {
                let _ = decompress(&form[..cut], 4096);
            }
            for at in 0..form.len() {
                let mut bad = form.clone();
                bad[at] ^= 0x5a;
                let _ = decompress(&bad, 4096);
            }
        }
    }
}
