//! Property tests of every file reader: a valid input built here, then many mutations of
//! it (truncation at every length, flipped and random bytes, headers claiming absurd
//! sizes, huge, NaN and infinite numbers, empty files). Each reader must not panic, must
//! return quickly, must not allocate more than the input can justify (a header's claimed
//! size is checked against the bytes present before anything of that size is allocated),
//! and must either load or return its typed error naming the file.
//!
//! `FUZZ_ITERS` sets the mutations per reader (default 2000, a few seconds in CI);
//! `FUZZ_SEED` varies the streams. A long campaign, once:
//! `FUZZ_ITERS=500000 cargo test --release -p train-vae --test fuzz_readers -- --nocapture`.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use flow_testkit::{
    fuzz::{
        FIXED_BYTES, LargestAllocation, Tally, binary_budget, gzip_budget, iterations, names_file,
        rng, run, text_budget,
    },
    mutate,
};
use rand::Rng;
use train_vae::{
    VaeError,
    config::TrainConfig,
    data::{self, DataError, Images},
    history::{self, EpochRecord},
};

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

// ---------------------------------------------------------------------------------------
// Valid inputs.

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

fn record(epoch: usize) -> EpochRecord {
    let f = epoch as f64;
    EpochRecord {
        epoch,
        train_loss: 100.0 - f,
        train_neg_elbo: 101.0 - f,
        train_recon: 80.0 - f,
        train_kl: 20.5,
        valid_neg_elbo: if epoch == 2 { f64::NAN } else { 99.0 - f },
        valid_recon: 79.0,
        valid_kl: 20.0,
        train_seconds: 1.25,
        images_per_second: 8000.0,
    }
}

fn metrics_jsonl(epochs: usize) -> String {
    (1..=epochs)
        .map(|e| serde_json::to_string(&record(e)).unwrap() + "\n")
        .collect()
}

fn tmp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fuzz-readers-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

// ---------------------------------------------------------------------------------------
// The run history (`metrics.jsonl`).

#[test]
fn history_survives_mutation() {
    let path = Path::new("run/metrics.jsonl");
    let mut tally = Tally::default();
    let seed = metrics_jsonl(4);
    let bytes = seed.as_bytes();
    for len in 0..=bytes.len() {
        let text = String::from_utf8_lossy(&bytes[..len]);
        run(
            &mut tally,
            "parse_history",
            &bytes[..len],
            text_budget(bytes),
            || history::parse_history(&text, path),
            |r| names_file(r, "run/metrics.jsonl"),
        );
    }
    let mut rng = rng(7);
    let tokens = [
        "null",
        "1",
        "0",
        "-0",
        "1e308",
        "\"epoch\"",
        "true",
        "{}",
        "[]",
    ];
    for _ in 0..iterations() {
        let input = mutate::text(&mut rng, &seed, &tokens);
        let text = String::from_utf8_lossy(&input);
        run(
            &mut tally,
            "parse_history",
            &input,
            text_budget(&input),
            || history::parse_history(&text, path),
            |r| {
                names_file(r, "run/metrics.jsonl")?;
                match r {
                    Ok(records) if records.len() > text.lines().count() => {
                        Err("more records than lines".into())
                    }
                    _ => Ok(()),
                }
            },
        );
    }
    tally.report("parse_history");
}

#[test]
fn history_errors_name_the_real_line() {
    let mut text = metrics_jsonl(5);
    text.insert(0, '\n'); // a blank first line: counted, not parsed
    let mut lines: Vec<&str> = text.lines().collect();
    lines[4] = "{\"epoch\": 4, \"train_loss\": oops}";
    let text = lines.join("\n");
    let e = history::parse_history(&text, Path::new("r/metrics.jsonl")).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("line 5, column"), "{msg}");
    assert!(!msg.contains("line 1"), "{msg}");
    assert!(msg.contains("r/metrics.jsonl"), "{msg}");
    // The round trip, NaN (written as null) included.
    let records = history::parse_history(&metrics_jsonl(3), Path::new("r")).unwrap();
    assert_eq!(records.len(), 3);
    assert!(records[1].valid_neg_elbo.is_nan());
    assert_eq!(records[2], record(3));
}

#[test]
fn read_history_reads_files_and_reports_unreadable_ones() {
    let dir = tmp_dir("history");
    assert_eq!(history::read_history(&dir).unwrap(), vec![]);
    let file = dir.join("metrics.jsonl");
    let mut tally = Tally::default();
    let mut rng = rng(8);
    let seed = metrics_jsonl(3);
    for _ in 0..iterations().div_ceil(10) {
        let input = mutate::text(&mut rng, &seed, &["null", "1e999"]);
        std::fs::write(&file, &input).unwrap();
        let name = file.display().to_string();
        run(
            &mut tally,
            "read_history",
            &input,
            text_budget(&input),
            || history::read_history(&dir),
            |r| names_file(r, &name),
        );
    }
    // Not UTF-8: an error naming the file, not an empty history.
    std::fs::write(&file, b"{\"epoch\": 1\xff}\n").unwrap();
    let e = history::read_history(&dir).unwrap_err();
    assert!(matches!(e, VaeError::Io { .. }), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    tally.report("read_history");
}

// ---------------------------------------------------------------------------------------
// Config files.

fn config_seed() -> String {
    let mut c = TrainConfig {
        data_dir: Some("data/mnist".into()),
        n_train: Some(5000),
        ..TrainConfig::default()
    };
    c.model.encoder_hidden = vec![300, 200];
    c.to_toml().unwrap()
}

#[test]
fn config_survives_mutation() {
    let path = Path::new("fuzz/config.toml");
    let mut tally = Tally::default();
    let seed = config_seed();
    assert_eq!(
        TrainConfig::from_toml_str(&seed, path).unwrap(),
        toml::from_str::<TrainConfig>(&seed).unwrap()
    );
    let bytes = seed.as_bytes();
    for len in 0..=bytes.len() {
        let text = String::from_utf8_lossy(&bytes[..len]);
        run(
            &mut tally,
            "from_toml_str",
            &bytes[..len],
            text_budget(bytes),
            || TrainConfig::from_toml_str(&text, path),
            |r| names_file(r, "fuzz/config.toml"),
        );
    }
    let mut rng = rng(9);
    let tokens = [
        "nan",
        "inf",
        "-inf",
        "1e999",
        "true",
        "\"x\"",
        "[model]",
        "[[model]]",
        "epochs",
        "lr",
        "flow",
        "sylvester-o",
        "iaf",
        "0",
        "-1",
        "18446744073709551615",
    ];
    for _ in 0..iterations() {
        let input = mutate::text(&mut rng, &seed, &tokens);
        let text = String::from_utf8_lossy(&input);
        run(
            &mut tally,
            "from_toml_str",
            &input,
            text_budget(&input),
            || {
                let parsed = TrainConfig::from_toml_str(&text, path);
                // Both ways of reading a config, and the check every run applies after.
                let direct = toml::from_str::<TrainConfig>(&text);
                assert_eq!(parsed.is_ok(), direct.is_ok());
                if let Ok(c) = &parsed {
                    let _ = c.validate();
                }
                parsed
            },
            |r| names_file(r, "fuzz/config.toml"),
        );
    }
    tally.report("from_toml_str");
}

#[test]
fn config_errors_give_the_position() {
    let text = "epochs = 3\n\n[model]\nlatent = \"four\"\n";
    let e = TrainConfig::from_toml_str(text, Path::new("c.toml")).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("c.toml") && msg.contains("line 4"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn config_files_survive_mutation() {
    let dir = tmp_dir("config");
    let path = dir.join("config.toml");
    let name = path.display().to_string();
    let mut tally = Tally::default();
    let mut rng = rng(10);
    let seed = config_seed();
    for _ in 0..iterations().div_ceil(10) {
        let input = mutate::text(&mut rng, &seed, &["nan", "[model]", "1e999"]);
        std::fs::write(&path, &input).unwrap();
        run(
            &mut tally,
            "from_toml_file",
            &input,
            text_budget(&input),
            || TrainConfig::from_toml_file(&path),
            |r| names_file(r, &name),
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    tally.report("from_toml_file");
}

/// Deep nesting must not overflow the stack (an abort no test harness can catch).
#[test]
fn deeply_nested_text_is_an_error() {
    let deep = format!("a = {}1{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert!(TrainConfig::from_toml_str(&deep, Path::new("deep.toml")).is_err());
    let deep = format!(
        "{{\"epoch\": {}1{}}}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(history::parse_history(&deep, Path::new("deep")).is_err());
}
