//! The file formats: IDX (gzipped or not, multi-member gzip included) and the `.amat`
//! text of the statically binarized MNIST, each checked against what its header promises.

use std::io::Read;

use super::{error::DataError, images::Images};

const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Decompresses `bytes` if they start with the gzip magic, else returns them as they are.
/// Every member of a multi-member file is read, as `gzip -d` does (`pigz`, `bgzip` and
/// `cat a.gz b.gz` write such files); bytes after the last member are an error.
pub fn maybe_gunzip(bytes: &[u8], what: &str) -> Result<Vec<u8>, DataError> {
    if is_gzip(bytes) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|source| DataError::Gzip {
                what: what.to_string(),
                source,
            })?;
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// What an IDX header says: the dimensions and the payload bytes they promise.
struct IdxHeader {
    /// Bytes of the header itself (magic and dimensions).
    len: usize,
    shape: Vec<usize>,
    /// The product of `shape`: up to 2⁹⁶ for three dimensions, so `u128`.
    payload: u128,
}

/// Parses the IDX header of `kind` (`dims` dimension fields after the magic) at the start
/// of `bytes`. Only the header is read: the payload size it promises is checked against
/// the bytes present by the caller, before anything of that size is allocated.
fn idx_header(
    bytes: &[u8],
    what: &str,
    kind: &'static str,
    magic: u32,
    dims: usize,
) -> Result<IdxHeader, DataError> {
    let len = 4 + 4 * dims;
    if bytes.len() < len {
        return Err(DataError::Truncated {
            what: what.to_string(),
            expected: len as u128,
            got: bytes.len(),
        });
    }
    let got = be_u32(bytes, 0);
    if got != magic {
        return Err(DataError::BadMagic {
            what: what.to_string(),
            kind,
            got,
            expected: magic,
        });
    }
    let shape: Vec<usize> = (0..dims)
        .map(|i| be_u32(bytes, 4 + 4 * i) as usize)
        .collect();
    // No overflow: at most three factors below 2³², and the product is below 2⁹⁶.
    let payload = shape.iter().map(|&d| d as u128).product();
    Ok(IdxHeader {
        len,
        shape,
        payload,
    })
}

/// Checks the payload bytes the file holds, `present`, against the header's promise.
fn check_idx_payload(header: &IdxHeader, what: &str, present: u64) -> Result<(), DataError> {
    let present = u128::from(present);
    // Saturating: a length above usize::MAX cannot have been held in memory anyway.
    let to_usize = |n: u128| usize::try_from(n).unwrap_or(usize::MAX);
    if present < header.payload {
        return Err(DataError::Truncated {
            what: what.to_string(),
            expected: header.len as u128 + header.payload,
            got: to_usize(header.len as u128 + present),
        });
    }
    if present > header.payload {
        return Err(DataError::TrailingBytes {
            what: what.to_string(),
            expected: to_usize(header.len as u128 + header.payload),
            extra: to_usize(present - header.payload),
        });
    }
    if header.payload == 0 {
        return Err(DataError::Empty {
            what: what.to_string(),
        });
    }
    Ok(())
}

/// Reads an IDX file of `kind`, gzipped or not: its dimensions and its payload.
///
/// A gzipped file (every member, as [`maybe_gunzip`]) is decompressed as a stream, its
/// header first, and then no more than the payload the header promises: a corrupt or
/// hostile header cannot make it hold more memory than the data really decompresses to
/// (the rest is only counted).
fn idx_read(
    bytes: &[u8],
    what: &str,
    kind: &'static str,
    magic: u32,
    dims: usize,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    if !is_gzip(bytes) {
        let header = idx_header(bytes, what, kind, magic, dims)?;
        let payload = &bytes[header.len..];
        check_idx_payload(&header, what, payload.len() as u64)?;
        return Ok((header.shape, payload.to_vec()));
    }
    let gzip = |source| DataError::Gzip {
        what: what.to_string(),
        source,
    };
    let mut decoder = flate2::read::MultiGzDecoder::new(bytes);
    let mut head = Vec::new();
    (&mut decoder)
        .take(4 + 4 * dims as u64)
        .read_to_end(&mut head)
        .map_err(gzip)?;
    let header = idx_header(&head, what, kind, magic, dims)?;
    let mut payload = Vec::new();
    (&mut decoder)
        .take(u64::try_from(header.payload).unwrap_or(u64::MAX))
        .read_to_end(&mut payload)
        .map_err(gzip)?;
    // Reading on to the end also checks the gzip trailer (CRC and length).
    let extra = std::io::copy(&mut decoder, &mut std::io::sink()).map_err(gzip)?;
    check_idx_payload(&header, what, (payload.len() as u64).saturating_add(extra))?;
    Ok((header.shape, payload))
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Parses IDX images (magic 2051), gzipped or not.
pub fn parse_idx_images(bytes: &[u8], what: &str) -> Result<Images, DataError> {
    let (shape, pixels) = idx_read(bytes, what, "images", IDX_IMAGES_MAGIC, 3)?;
    Ok(Images {
        rows: shape[1],
        cols: shape[2],
        pixels,
    })
}

/// Parses IDX labels (magic 2049), gzipped or not.
pub fn parse_idx_labels(bytes: &[u8], what: &str) -> Result<Vec<u8>, DataError> {
    let (_, labels) = idx_read(bytes, what, "labels", IDX_LABELS_MAGIC, 1)?;
    Ok(labels)
}

/// Parses a `.amat` file: one image per line, `dim` whitespace-separated values in [0, 1]
/// (the binarized MNIST files hold 0 and 1). Values become grey levels `round(255 v)`, so
/// a binary file stays binary under binarization.
pub fn parse_amat(text: &str, what: &str, rows: usize, cols: usize) -> Result<Images, DataError> {
    let dim = rows * cols;
    let mut pixels = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let start = pixels.len();
        for token in line.split_whitespace() {
            let v: f32 = token.parse().map_err(|_| DataError::AmatValue {
                what: what.to_string(),
                line: i + 1,
                value: token.to_string(),
            })?;
            if !(0.0..=1.0).contains(&v) {
                return Err(DataError::AmatValue {
                    what: what.to_string(),
                    line: i + 1,
                    value: token.to_string(),
                });
            }
            pixels.push((v * 255.0).round() as u8);
        }
        if pixels.len() - start != dim {
            return Err(DataError::AmatLineLength {
                what: what.to_string(),
                line: i + 1,
                got: pixels.len() - start,
                expected: dim,
            });
        }
    }
    if pixels.is_empty() {
        return Err(DataError::Empty {
            what: what.to_string(),
        });
    }
    Ok(Images { rows, cols, pixels })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx_images(n: u32, rows: u32, cols: u32, payload: usize) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [IDX_IMAGES_MAGIC, n, rows, cols] {
            b.extend(v.to_be_bytes());
        }
        b.extend((0..payload).map(|i| (i % 256) as u8));
        b
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn idx_round_trip_plain_and_gzipped() {
        let raw = idx_images(3, 2, 2, 12);
        let plain = parse_idx_images(&raw, "t").unwrap();
        assert_eq!((plain.len(), plain.dim()), (3, 4));
        assert_eq!(parse_idx_images(&gzip(&raw), "t").unwrap(), plain);
    }

    #[test]
    fn corrupt_idx_is_rejected_with_a_named_reason() {
        let mut wrong_magic = idx_images(3, 2, 2, 12);
        wrong_magic[3] = 0x01;
        let e = parse_idx_images(&wrong_magic, "f.idx").unwrap_err();
        assert!(matches!(e, DataError::BadMagic { got: 0x0801, .. }), "{e}");
        assert!(e.to_string().contains("f.idx"));
        let short = idx_images(3, 2, 2, 11);
        assert!(matches!(
            parse_idx_images(&short, "f").unwrap_err(),
            DataError::Truncated {
                expected: 28,
                got: 27,
                ..
            }
        ));
        assert!(matches!(
            parse_idx_images(&[0, 0, 8], "f").unwrap_err(),
            DataError::Truncated { .. }
        ));
        let long = idx_images(3, 2, 2, 13);
        assert!(matches!(
            parse_idx_images(&long, "f").unwrap_err(),
            DataError::TrailingBytes { extra: 1, .. }
        ));
        let mut bad_gzip = gzip(&idx_images(3, 2, 2, 12));
        bad_gzip.truncate(bad_gzip.len() / 2);
        assert!(matches!(
            parse_idx_images(&bad_gzip, "f").unwrap_err(),
            DataError::Gzip { .. }
        ));
        assert!(matches!(
            parse_idx_images(&idx_images(0, 28, 28, 0), "f").unwrap_err(),
            DataError::Empty { .. }
        ));
    }

    #[test]
    fn gzip_members_are_all_read_and_trailing_garbage_is_an_error() {
        let raw = idx_images(3, 2, 2, 12);
        let mut two_members = gzip(&raw[..10]);
        two_members.extend(gzip(&raw[10..]));
        assert_eq!(
            parse_idx_images(&two_members, "t").unwrap(),
            parse_idx_images(&raw, "t").unwrap()
        );
        let mut garbage = gzip(&raw);
        garbage.extend(b"junk");
        assert!(matches!(
            parse_idx_images(&garbage, "t").unwrap_err(),
            DataError::Gzip { .. }
        ));
    }

    #[test]
    fn labels_must_pair_with_images() {
        let mut raw = Vec::new();
        for v in [IDX_LABELS_MAGIC, 2] {
            raw.extend(v.to_be_bytes());
        }
        raw.extend([7, 1]);
        assert_eq!(parse_idx_labels(&raw, "l").unwrap(), vec![7, 1]);
        // Images given where labels are expected.
        assert!(matches!(
            parse_idx_labels(&idx_images(1, 1, 1, 1), "l").unwrap_err(),
            DataError::BadMagic { .. }
        ));
    }

    #[test]
    fn amat_reader_checks_every_line() {
        let ok = "0 1 1 0\n1 1 0 0\n";
        let images = parse_amat(ok, "a", 2, 2).unwrap();
        assert_eq!(images.pixels, vec![0, 255, 255, 0, 255, 255, 0, 0]);
        let e = parse_amat("0 1 1 0\n1 1 0\n", "a.amat", 2, 2).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::AmatLineLength {
                    line: 2,
                    got: 3,
                    expected: 4,
                    ..
                }
            ),
            "{e}"
        );
        assert!(matches!(
            parse_amat("0 1 x 0\n", "a", 2, 2).unwrap_err(),
            DataError::AmatValue { line: 1, .. }
        ));
        assert!(matches!(
            parse_amat("0 1 2 0\n", "a", 2, 2).unwrap_err(),
            DataError::AmatValue { .. }
        ));
        assert!(matches!(
            parse_amat("\n\n", "a", 2, 2).unwrap_err(),
            DataError::Empty { .. }
        ));
    }
}
