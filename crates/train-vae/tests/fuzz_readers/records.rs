//! The run history (`metrics.jsonl`) and config files.

use super::*;

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
