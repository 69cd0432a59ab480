//! IDX images and labels (plain and gzipped), `.amat` files, labels against images.

use super::*;

fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend_from_slice(payload);
    b
}

fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let payload: Vec<u8> = (0..n * rows * cols).map(|i| (i * 37 % 256) as u8).collect();
    idx(0x0803, &[n, rows, cols], &payload)
}

fn idx_labels(n: u32) -> Vec<u8> {
    let payload: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    idx(0x0801, &[n], &payload)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn amat(lines: usize, dim: usize) -> String {
    (0..lines)
        .map(|l| {
            (0..dim)
                .map(|j| if (l + j) % 3 == 0 { "1" } else { "0" })
                .collect::<Vec<_>>()
                .join(" ")
                + "\n"
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// IDX images and labels.

/// The property of a parsed image set: the pixels are exactly `len · rows · cols`, no more
/// than the input's bytes (or what they decompress to).
fn images_consistent(r: &Result<Images, DataError>, name: &str) -> Result<(), String> {
    names_file(r, name)?;
    if let Ok(images) = r {
        let n = images.len();
        if n == 0 || n * images.dim() != images.pixels.len() {
            return Err(format!(
                "inconsistent images: {} pixels of {}×{}",
                images.pixels.len(),
                images.rows,
                images.cols
            ));
        }
    }
    Ok(())
}

/// IDX seeds: plain, and gzipped. Gzipped inputs are fuzzed two ways: the compressed
/// bytes mutated (mostly corrupt streams), and a mutated plain file compressed (valid
/// streams whose content is hostile, such as headers claiming 2⁹⁶ bytes).
fn fuzz_idx<T>(
    reader: &str,
    seed: &[u8],
    stream: u64,
    parse: impl Fn(&[u8], &str) -> Result<T, DataError>,
    check: impl Fn(&Result<T, DataError>, &str) -> Result<(), String>,
) {
    let name = "fuzz.idx";
    let mut tally = Tally::default();
    let zipped = gzip(seed);
    for input in [seed, &zipped[..]] {
        for len in 0..=input.len() {
            let cut = &input[..len];
            let budget = gzip_budget(cut);
            run(
                &mut tally,
                reader,
                cut,
                budget,
                || parse(cut, name),
                |r| check(r, name),
            );
        }
    }
    let mut rng = rng(stream);
    for _ in 0..iterations() {
        let (input, budget) = match rng.random_range(0..4) {
            0 | 1 => {
                let b = mutate::bytes(&mut rng, seed);
                let budget = binary_budget(&b);
                (b, budget)
            }
            2 => {
                let b = mutate::bytes(&mut rng, &zipped);
                let budget = gzip_budget(&b);
                (b, budget)
            }
            _ => {
                let plain = mutate::bytes(&mut rng, seed);
                // The budget is what the content really is, not what it compresses to.
                let budget = binary_budget(&plain);
                (gzip(&plain), budget)
            }
        };
        let budget = if data_starts_gzip(&input) {
            budget.max(gzip_budget(&input))
        } else {
            budget
        };
        run(
            &mut tally,
            reader,
            &input,
            budget,
            || parse(&input, name),
            |r| check(r, name),
        );
    }
    tally.report(reader);
}

fn data_starts_gzip(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
}

#[test]
fn idx_images_survive_mutation() {
    fuzz_idx(
        "parse_idx_images",
        &idx_images(3, 4, 5),
        1,
        data::parse_idx_images,
        images_consistent,
    );
}

#[test]
fn idx_labels_survive_mutation() {
    fuzz_idx(
        "parse_idx_labels",
        &idx_labels(12),
        2,
        data::parse_idx_labels,
        |r, name| {
            names_file(r, name)?;
            match r {
                Ok(labels) if labels.is_empty() => Err("no labels loaded".into()),
                _ => Ok(()),
            }
        },
    );
}

/// Headers claiming absurd sizes, plain and gzipped: a typed error, no allocation of the
/// claimed size, and (before the fix) no overflow of `n · rows · cols`.
#[test]
fn idx_headers_claiming_huge_sizes_are_rejected() {
    let mut tally = Tally::default();
    for &n in &mutate::INTERESTING_U32 {
        for &rows in &mutate::INTERESTING_U32 {
            for &cols in &mutate::INTERESTING_U32 {
                let plain = idx(0x0803, &[n, rows, cols], &[7; 60]);
                for input in [plain.clone(), gzip(&plain)] {
                    run(
                        &mut tally,
                        "parse_idx_images (extreme dims)",
                        &input,
                        binary_budget(&plain),
                        || data::parse_idx_images(&input, "huge.idx"),
                        |r| images_consistent(r, "huge.idx"),
                    );
                }
            }
        }
    }
    // n · rows · cols = 2⁶⁴ exactly: wrapped to 0 before the fix.
    let e = data::parse_idx_images(&idx(0x0803, &[1 << 22, 1 << 21, 1 << 21], &[]), "w.idx")
        .unwrap_err();
    assert!(
        matches!(e, DataError::Truncated { expected, .. } if expected == (1u128 << 64) + 16),
        "{e}"
    );
    for labels in [u32::MAX, 1 << 31] {
        let input = idx(0x0801, &[labels], &[1, 2, 3]);
        run(
            &mut tally,
            "parse_idx_labels (extreme count)",
            &input,
            binary_budget(&input),
            || data::parse_idx_labels(&input, "l.idx"),
            |r| match r {
                Err(DataError::Truncated { .. }) => Ok(()),
                _ => Err("not Truncated".into()),
            },
        );
    }
    tally.report("IDX extreme headers");
}

/// A gzip bomb: a small header followed by megabytes of zeros is counted as trailing
/// bytes, not held; one whose header claims 4 GiB holds only what really decompresses.
#[test]
fn gzipped_idx_holds_no_more_than_the_header_promises() {
    let mut tally = Tally::default();
    let zeros = vec![0u8; 16 << 20];
    let mut bomb = idx(0x0803, &[1, 2, 2], &[]);
    bomb.extend_from_slice(&zeros);
    let bomb = gzip(&bomb);
    run(
        &mut tally,
        "parse_idx_images (gzip bomb)",
        &bomb,
        FIXED_BYTES,
        || data::parse_idx_images(&bomb, "bomb.gz"),
        |r| match r {
            Err(DataError::TrailingBytes { extra, .. }) if *extra == (16 << 20) - 4 => Ok(()),
            Err(e) => Err(format!("wrong error {e}")),
            Ok(_) => Err("loaded a bomb".into()),
        },
    );
    let mut claims_4g = idx(0x0803, &[1 << 12, 1 << 10, 1 << 10], &[]);
    claims_4g.extend_from_slice(&zeros[..1 << 20]);
    let claims_4g = gzip(&claims_4g);
    run(
        &mut tally,
        "parse_idx_images (claims 4 GiB)",
        &claims_4g,
        4 << 20,
        || data::parse_idx_images(&claims_4g, "big.gz"),
        |r| match r {
            Err(DataError::Truncated { got, .. }) if *got == (1 << 20) + 16 => Ok(()),
            Err(e) => Err(format!("wrong error {e}")),
            Ok(_) => Err("loaded".into()),
        },
    );
    // A valid stream followed by a corrupt trailer is still a gzip error.
    let mut bad_crc = gzip(&idx_images(2, 2, 2));
    let at = bad_crc.len() - 8;
    bad_crc[at] ^= 1;
    assert!(matches!(
        data::parse_idx_images(&bad_crc, "crc.gz").unwrap_err(),
        DataError::Gzip { .. }
    ));
    tally.report("IDX gzip bombs");
}

#[test]
fn maybe_gunzip_survives_mutation() {
    let name = "fuzz.gz";
    let mut tally = Tally::default();
    let plain = idx_images(4, 5, 6);
    let zipped = gzip(&plain);
    for len in 0..=zipped.len() {
        let cut = &zipped[..len];
        run(
            &mut tally,
            "maybe_gunzip",
            cut,
            gzip_budget(cut),
            || data::maybe_gunzip(cut, name),
            |r| names_file(r, name),
        );
    }
    let mut rng = rng(3);
    for _ in 0..iterations() {
        let input = mutate::bytes(&mut rng, &zipped);
        run(
            &mut tally,
            "maybe_gunzip",
            &input,
            gzip_budget(&input),
            || data::maybe_gunzip(&input, name),
            |r| {
                names_file(r, name)?;
                match r {
                    // Not gzip: handed back as it is.
                    Ok(out) if !data_starts_gzip(&input) && *out != input => {
                        Err("changed a plain input".into())
                    }
                    _ => Ok(()),
                }
            },
        );
    }
    assert_eq!(data::maybe_gunzip(&zipped, name).unwrap(), plain);
    tally.report("maybe_gunzip");
}

// ---------------------------------------------------------------------------------------
// `.amat` text.

#[test]
fn amat_survives_mutation() {
    let name = "fuzz.amat";
    let mut tally = Tally::default();
    let small = amat(4, 6);
    let full = amat(2, 784);
    for (seed, rows, cols) in [(&small, 2, 3), (&full, 28, 28)] {
        let bytes = seed.as_bytes();
        for len in (0..=bytes.len()).step_by(if rows == 28 { 97 } else { 1 }) {
            let text = String::from_utf8_lossy(&bytes[..len]);
            run(
                &mut tally,
                "parse_amat",
                &bytes[..len],
                text_budget(bytes),
                || data::parse_amat(&text, name, rows, cols),
                |r| images_consistent(r, name),
            );
        }
    }
    let mut rng = rng(4);
    for i in 0..iterations() {
        let (seed, rows, cols) = if i % 8 == 0 {
            (&full, 28, 28)
        } else {
            (&small, 2, 3)
        };
        let input = mutate::text(&mut rng, seed, &["0", "1", "0.5", "1.0000001", "-0.0"]);
        let text = String::from_utf8_lossy(&input);
        run(
            &mut tally,
            "parse_amat",
            &input,
            text_budget(&input),
            || data::parse_amat(&text, name, rows, cols),
            |r| {
                images_consistent(r, name)?;
                match r {
                    Ok(images) if images.dim() != rows * cols => Err("wrong image size".into()),
                    _ => Ok(()),
                }
            },
        );
    }
    tally.report("parse_amat");
}

/// Through files: `.amat` by extension, IDX otherwise.
#[test]
fn read_images_survives_mutated_files() {
    let dir = tmp_dir("images");
    let mut tally = Tally::default();
    let mut rng = rng(5);
    let seeds = [
        ("a.amat", amat(3, 784).into_bytes()),
        ("i.idx", idx_images(2, 3, 3)),
        ("i.idx.gz", gzip(&idx_images(2, 3, 3))),
    ];
    for i in 0..iterations().div_ceil(10) {
        let (file, seed) = &seeds[i % seeds.len()];
        let input = mutate::bytes(&mut rng, seed);
        let path = dir.join(file);
        std::fs::write(&path, &input).unwrap();
        let name = path.display().to_string();
        run(
            &mut tally,
            "read_images",
            &input,
            gzip_budget(&input),
            || data::read_images(&path),
            |r| images_consistent(r, &name),
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    tally.report("read_images");
}

// ---------------------------------------------------------------------------------------
// Labels against images.

#[test]
fn read_labels_survives_mutated_files() {
    let dir = tmp_dir("labels");
    let path = dir.join("labels.idx");
    let name = path.display().to_string();
    let images = data::parse_idx_images(&idx_images(12, 2, 2), "i").unwrap();
    let mut tally = Tally::default();
    let mut rng = rng(6);
    let seed = idx_labels(12);
    for i in 0..iterations().div_ceil(10) {
        let input = match i % 3 {
            0 => mutate::bytes(&mut rng, &seed),
            1 => gzip(&mutate::bytes(&mut rng, &seed)),
            _ => idx_labels(rng.random_range(0..30)),
        };
        std::fs::write(&path, &input).unwrap();
        let budget = binary_budget(&input).max(gzip_budget(&input));
        run(
            &mut tally,
            "read_labels",
            &input,
            budget,
            || data::read_labels(&path, &images),
            |r| {
                names_file(r, &name)?;
                match r {
                    Ok(labels) if labels.len() != images.len() => {
                        Err("count mismatch loaded".into())
                    }
                    _ => Ok(()),
                }
            },
        );
    }
    // The count mismatch names the label file.
    std::fs::write(&path, idx_labels(11)).unwrap();
    let e = data::read_labels(&path, &images).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::LabelCount {
                labels: 11,
                images: 12,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains(&name), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    tally.report("read_labels");
}
