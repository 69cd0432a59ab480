//! Files the program writes.

use std::path::Path;

use crate::error::{Result, other};

/// Writes a file atomically ([`flow_programs::files::write_atomic`]): a reader never sees
/// half of it, and a failed write names the file and the OS reason.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    flow_programs::files::write_atomic(path, bytes)
        .map_err(|e| other(format!("{}: {e}", path.display())))
}
