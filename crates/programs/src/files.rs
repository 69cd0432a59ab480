//! How the programs write files: atomically, and with a fault-injection hook for tests.
//!
//! [`write_atomic`] writes through a hidden temporary file in the same directory
//! (`.NAME-partial-PID`), `fsync`s it and renames it over the final name, so a reader sees
//! the old file or the new one, never a mix; a failed write removes its temporary file.
//!
//! [`frame`] and [`unframe`] wrap a saved model's bytes with their length and CRC-32, so
//! a truncated or changed file is refused at load, not read as other numbers.
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

/// Why [`lock_dir`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error("{dir} is in use by another process (its lock {lock} is held)")]
    Held {
        /// The directory.
        dir: std::path::PathBuf,
        /// The lock file.
        lock: std::path::PathBuf,
    },
    /// The directory or its lock file could not be created or locked.
    #[error("{path}: {source}")]
    Io {
        /// The directory or lock file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Creates `dir` and takes its lock (`dir/.lock`, an exclusive OS file lock held until the
/// returned file is dropped or the process ends, a crash included), so that two processes
/// never write one output directory. The lock file itself stays: removing it would let a
/// third process lock a new file while the second holds the old one.
pub fn lock_dir(dir: &Path) -> Result<std::fs::File, LockError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LockError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let lock = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(io(&lock))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held {
            dir: dir.to_path_buf(),
            lock,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&lock)(e)),
    }
}

const MAGIC: &[u8; 8] = b"FLOWCKP1";
const HEADER: usize = 8 + 8 + 4;

/// `payload` framed so that damage shows at load: the magic `FLOWCKP1` (8 bytes), the
/// payload's length (u64 LE), its CRC-32 (u32 LE), the payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a [`frame`]d file, checked (length and CRC-32); `None` for bytes that
/// do not start like a frame (an `F`), i.e. files written without one. The error says how
/// the file is damaged.
pub fn unframe(bytes: &[u8]) -> Result<Option<&[u8]>, String> {
    if !bytes.starts_with(&MAGIC[..1]) {
        return Ok(None);
    }
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(format!(
            "damaged: {} bytes, not a complete header",
            bytes.len()
        ));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[8..16]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[16..20]);
    let payload = &bytes[HEADER..];
    let len = u64::from_le_bytes(len);
    if payload.len() as u64 != len {
        return Err(format!(
            "damaged: truncated or extended ({} bytes of payload, the header says {len})",
            payload.len()
        ));
    }
    if crc32fast::hash(payload) != u32::from_le_bytes(crc) {
        return Err(
            "damaged: checksum mismatch (the bytes changed after they were written)".into(),
        );
    }
    Ok(Some(payload))
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

    #[test]
    fn a_directory_is_locked_once() {
        let dir = std::env::temp_dir().join(format!("flow-lock-{}", std::process::id()));
        let held = lock_dir(&dir).unwrap();
        assert!(matches!(lock_dir(&dir), Err(LockError::Held { .. })));
        drop(held);
        lock_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_frame_detects_every_truncation_and_flipped_byte() {
        let payload: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        let framed = frame(&payload);
        assert_eq!(unframe(&framed).unwrap(), Some(&payload[..]));
        assert_eq!(unframe(&payload[1..]).unwrap(), None); // no frame: not an `F`
        for cut in 1..framed.len() {
            assert!(unframe(&framed[..cut]).is_err(), "cut at {cut}");
        }
        for at in 1..framed.len() {
            let mut bad = framed.clone();
            bad[at] ^= 0x10;
            assert!(unframe(&bad).is_err(), "flip at {at}");
        }
    }
}
