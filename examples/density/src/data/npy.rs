//! NPY arrays.

use std::path::Path;

use super::table::{DataError, Table};

/// Reads a 2-D little-endian `f4` or `f8` NPY array (C order), versions 1–3.
pub fn read_npy(path: &Path) -> Result<Table, DataError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: name.clone(),
        source,
    })?;
    parse_npy(&bytes, &name)
}

/// Parses the bytes of a 2-D little-endian `f4` or `f8` NPY array (C order), versions
/// 1–3 (`name` names the file in errors). The size the header's shape promises is checked
/// against the bytes present before anything is allocated.
pub fn parse_npy(bytes: &[u8], name: &str) -> Result<Table, DataError> {
    let bad = |why: &str| DataError::Npy {
        path: name.into(),
        why: why.into(),
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing the \\x93NUMPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        2 | 3 => return Err(bad("truncated header")),
        _ => return Err(bad("unknown format version")),
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .ok_or_else(|| {
            bad(&format!(
                "truncated header: {header_len} bytes promised, {} present",
                bytes.len() - start
            ))
        })?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or_else(|| bad("no descr"))?;
    let width = if descr.starts_with("'<f8'") {
        8
    } else if descr.starts_with("'<f4'") {
        4
    } else {
        return Err(bad(
            "dtype must be little-endian float32 or float64 ('<f4', '<f8')",
        ));
    };
    if field("fortran_order").is_none_or(|v| !v.starts_with("False")) {
        return Err(bad("only C-order arrays are supported"));
    }
    let shape = field("shape").ok_or_else(|| bad("no shape"))?;
    let inside = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("malformed shape"))?;
    let dims: Vec<usize> = inside
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("malformed shape")))
        .collect::<Result<_, _>>()?;
    let [rows, dim] = dims[..] else {
        return Err(bad(&format!("need a 2-D array, got shape {dims:?}")));
    };
    let payload = &bytes[start + header_len..];
    // Checked: a shape from a corrupt header can overflow, and a wrapped product could
    // match the payload and yield a table of the wrong shape.
    let needed = rows.checked_mul(dim).and_then(|n| n.checked_mul(width));
    if needed != Some(payload.len()) {
        let needed = needed.map_or_else(|| "more than fit in memory".into(), |n| n.to_string());
        return Err(bad(&format!(
            "payload has {} bytes, shape ({rows}, {dim}) needs {needed}",
            payload.len(),
        )));
    }
    if dim == 0 || rows == 0 {
        return Err(DataError::Shape {
            path: name.into(),
            why: format!("empty array ({rows}, {dim})"),
        });
    }
    let values = if width == 8 {
        payload
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    } else {
        payload
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("4 bytes"))))
            .collect()
    };
    let table = Table { values, dim };
    table.check_finite(name)?;
    Ok(table)
}

/// The bytes of `table` as a 2-D little-endian `f8` NPY array (version 1.0, C order),
/// as `numpy.save` writes it: the header padded with spaces so the data starts at a
/// multiple of 64 bytes.
pub fn write_npy(table: &Table) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}",
        table.rows(),
        table.dim
    );
    // magic (6) + version (2) + length (2) + header + '\n'
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in &table.values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_arrays_read_back() {
        let t = Table {
            values: vec![1.5, -2.0, 3.25, 4.0, 0.5, f64::MIN_POSITIVE],
            dim: 3,
        };
        let bytes = write_npy(&t);
        assert_eq!(bytes[8] as usize + 10, bytes.len() - 48);
        assert_eq!((bytes.len() - 48) % 64, 0);
        assert_eq!(parse_npy(&bytes, "t.npy").unwrap(), t);
    }

    fn npy(descr: &str, shape: &str, payload: &[u8]) -> std::path::PathBuf {
        let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(payload);
        let path = std::env::temp_dir().join(format!(
            "density-npy-{}-{descr}-{}.npy",
            std::process::id(),
            payload.len()
        ));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn npy_reads_f4_and_f8_and_rejects_the_rest() {
        let vals = [1.5f64, -2.0, 3.25, 4.0, 0.5, -0.125];
        let f8: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f4: Vec<u8> = vals
            .iter()
            .flat_map(|v| (*v as f32).to_le_bytes())
            .collect();
        for (descr, payload) in [("<f8", &f8), ("<f4", &f4)] {
            let t = read_npy(&npy(descr, "(3, 2)", payload)).unwrap();
            assert_eq!((t.rows(), t.dim), (3, 2));
            assert_eq!(t.values, vals);
        }
        let err = |path: std::path::PathBuf| read_npy(&path).unwrap_err().to_string();
        assert!(err(npy("<i8", "(3, 2)", &f8)).contains("dtype"));
        assert!(err(npy("<f8", "(6,)", &f8)).contains("2-D"));
        assert!(err(npy("<f8", "(4, 2)", &f8)).contains("payload has 48 bytes"));
        let nan: Vec<u8> = [1.0, f64::INFINITY]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert!(err(npy("<f8", "(1, 2)", &nan)).contains("row 1, column 2 is inf"));
    }
}
