//! Page files read whole, for tests and benches (without the library's `tools` feature):
//! every `*.pages` file of a directory, in name order, a partial last page zero-filled.

use std::path::Path;
use zpage::{PAGE_SIZE, Page};

/// One file's pages.
pub struct Named {
    pub name: String,
    pub pages: Vec<Page>,
}

pub fn read_dir(dir: &Path) -> Vec<Named> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("page directory readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "pages"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).expect("page file readable");
            let mut pages = vec![Page::zeroed(); bytes.len().div_ceil(PAGE_SIZE)];
            bytemuck::cast_slice_mut::<Page, u8>(&mut pages)[..bytes.len()].copy_from_slice(&bytes);
            let name = path.file_stem().expect("a file name").to_string_lossy();
            Named {
                name: name.into_owned(),
                pages,
            }
        })
        .collect()
}
