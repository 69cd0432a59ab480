//! Files the program writes.

use std::path::Path;

use crate::error::{Result, other};

/// Writes a file through a temporary name and a rename, so a reader never sees half of it.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| other(format!("{}: {e}", path.display())))
}
