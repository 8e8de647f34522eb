//! The 4 KiB page: the unit everything in zpage stores.
//!
//! Invariants: a [`Page`] is exactly [`PAGE_SIZE`] bytes and 4096-byte aligned, so the
//! word views (`u16`/`u32`/`u64`) are always valid casts (bytemuck checks size and alignment
//! at compile time via `Pod`), and a page can be copied to or from a mapped page with one
//! `memcpy`. Words are read little-endian as they lie in memory (the host order: zpage
//! targets little-endian machines, and the stored forms record nothing host-specific).

use bytemuck::{Pod, Zeroable};

/// Size of a page in bytes.
pub const PAGE_SIZE: usize = 4096;
/// Number of 8-byte words in a page.
pub const PAGE_WORDS: usize = PAGE_SIZE / 8;

/// A 4 KiB, 4096-aligned memory page.
#[derive(Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C, align(4096))]
pub struct Page(pub [u8; PAGE_SIZE]);

impl Default for Page {
    fn default() -> Self {
        Self::zeroed()
    }
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nonzero = self.0.iter().filter(|&&b| b != 0).count();
        write!(
            f,
            "Page {{ nonzero_bytes: {nonzero}, first_word: {:#018x} }}",
            self.words()[0]
        )
    }
}

impl Page {
    /// A page of zero bytes.
    pub fn zeroed() -> Self {
        Zeroable::zeroed()
    }

    /// A boxed zero page (a page is too large to move around the stack freely).
    pub fn boxed() -> Box<Self> {
        bytemuck::allocation::zeroed_box()
    }

    /// Copies a page out of a byte slice; `None` unless it is exactly [`PAGE_SIZE`] long.
    pub fn from_slice(bytes: &[u8]) -> Option<Box<Self>> {
        let mut page = Self::boxed();
        page.0.copy_from_slice(
            bytes
                .get(..PAGE_SIZE)
                .filter(|_| bytes.len() == PAGE_SIZE)?,
        );
        Some(page)
    }

    /// A page filled with one repeated 8-byte word.
    pub fn filled(word: u64) -> Box<Self> {
        let mut page = Self::boxed();
        page.words_mut().fill(word);
        page
    }

    /// The page's bytes.
    pub fn bytes(&self) -> &[u8; PAGE_SIZE] {
        &self.0
    }

    /// The page's bytes, to write.
    pub fn bytes_mut(&mut self) -> &mut [u8; PAGE_SIZE] {
        &mut self.0
    }

    /// The page as 512 little-endian 8-byte words.
    pub fn words(&self) -> &[u64] {
        bytemuck::cast_slice(&self.0)
    }

    /// The page as 8-byte words, to write.
    pub fn words_mut(&mut self) -> &mut [u64] {
        bytemuck::cast_slice_mut(&mut self.0)
    }

    /// The page as 1024 4-byte words.
    pub fn u32s(&self) -> &[u32] {
        bytemuck::cast_slice(&self.0)
    }

    /// The page as 2048 2-byte words.
    pub fn u16s(&self) -> &[u16] {
        bytemuck::cast_slice(&self.0)
    }

    /// The repeated word if every 8-byte word of the page is the same (zero pages included).
    ///
    /// Compares the last word with the first before scanning, as zram does: most pages that
    /// are not same-filled differ there, so the common case costs two loads.
    pub fn same_filled_word(&self) -> Option<u64> {
        let words = self.words();
        let first = words[0];
        if words[PAGE_WORDS - 1] != first {
            return None;
        }
        // Compare in 64-byte chunks with a folded OR of XORs: branch-free inner loop.
        words
            .chunks_exact(8)
            .all(|chunk| chunk.iter().fold(0, |acc, &w| acc | (w ^ first)) == 0)
            .then_some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_and_views() {
        let page = Page::boxed();
        assert_eq!(std::mem::align_of::<Page>(), 4096);
        assert_eq!((&*page as *const Page as usize) % 4096, 0);
        assert_eq!(page.words().len(), PAGE_WORDS);
        assert_eq!(page.u32s().len(), 1024);
        assert_eq!(page.u16s().len(), 2048);
    }

    #[test]
    fn same_filled_detection() {
        assert_eq!(Page::boxed().same_filled_word(), Some(0));
        assert_eq!(
            Page::filled(0xdead_beef).same_filled_word(),
            Some(0xdead_beef)
        );
        let mut page = Page::filled(7);
        page.0[2000] = 1;
        assert_eq!(page.same_filled_word(), None);
        let mut page = Page::filled(7);
        page.0[PAGE_SIZE - 1] = 1;
        assert_eq!(page.same_filled_word(), None);
    }

    #[test]
    fn from_slice_checks_length() {
        assert!(Page::from_slice(&[0u8; 4095]).is_none());
        assert!(Page::from_slice(&[0u8; 4097]).is_none());
        assert_eq!(Page::from_slice(&[3u8; 4096]).unwrap().0[17], 3);
    }
}
