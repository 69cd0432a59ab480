//! How the programs write files: atomically, and with a fault-injection hook for tests.
//!
//! [`write_atomic`] writes through a hidden temporary file in the same directory
//! (`.NAME-partial-PID`), `fsync`s it and renames it over the final name, so a reader sees
//! the old file or the new one, never a mix; a failed write removes its temporary file.
//!
//! **Fault injection.** With `FLOW_FAULT_DISK_BYTES=N` in the environment, the process's
//! writes through [`write_atomic`] get `N` bytes in all; the write that crosses the budget
//! stores what fits and then fails with `ENOSPC` ("No space left on device"), as on a
//! filling disk, and so does every later one. The programs' tests use it to show that a
//! full disk ends a run with the file and the OS reason, the last good files intact.

use std::{
    io::Write,
    path::Path,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

/// The environment variable of the disk-space fault ([module docs](self)).
pub const FAULT_DISK_BYTES: &str = "FLOW_FAULT_DISK_BYTES";

/// Bytes left under an injected fault, `None` without one.
fn budget() -> Option<&'static AtomicU64> {
    static BUDGET: OnceLock<Option<AtomicU64>> = OnceLock::new();
    BUDGET
        .get_or_init(|| {
            std::env::var(FAULT_DISK_BYTES)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .map(AtomicU64::new)
        })
        .as_ref()
}

/// `bytes` written to `file`, or as many as an injected fault leaves room for, then the
/// fault's error.
fn write_all(file: &mut std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    let Some(left) = budget() else {
        return file.write_all(bytes);
    };
    let want = bytes.len() as u64;
    let granted = left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| {
            Some(l.saturating_sub(want))
        })
        .unwrap_or(0)
        .min(want) as usize;
    file.write_all(&bytes[..granted])?;
    if granted < bytes.len() {
        return Err(no_space());
    }
    Ok(())
}

fn no_space() -> std::io::Error {
    #[cfg(unix)]
    return std::io::Error::from_raw_os_error(28); // ENOSPC
    #[cfg(not(unix))]
    return std::io::Error::from(std::io::ErrorKind::StorageFull);
}

/// Writes `bytes` to `path` atomically ([module docs](self)). The error is the OS's, for
/// the caller to name the file with.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}-partial-{}", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| write_all(&mut f, bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    match written {
        Err(e) => {
            // A full disk or a directory in the way: the old file stays, the partial one goes.
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
        Ok(()) => {
            // Make the rename itself durable.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        }
    }
}

/// Removes the temporary files (`.NAME-partial-PID`) that killed writers left in `dir`.
pub fn remove_partial_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains("-partial-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("flow-files-{}", std::process::id()));
        let path = dir.join("a.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        // A directory in the way: an error naming the OS reason, nothing left behind.
        let blocked = dir.join("blocked");
        std::fs::create_dir_all(blocked.join("inside")).unwrap();
        let err = write_atomic(&blocked, b"x").unwrap_err();
        assert!(err.raw_os_error().is_some(), "{err}");
        std::fs::write(dir.join(".a.txt-partial-1"), b"left by a kill").unwrap();
        remove_partial_files(&dir);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
