//! What a library user does with the density program beyond a plain fit: conditional
//! densities and sampling given contexts, the mixture base, a separate test file and the
//! validation fraction, the whitening layer, and models exported to safetensors.

mod common;

use common::*;

/// Reads a fit's summary.
fn summary(out: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).unwrap()
}

fn ll(stdout: &str) -> f64 {
    stdout
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no log-likelihood in {stdout:?}"))
}

/// A conditional fit of the bimodal toy learns `p(y | x)` (within 0.3 nats of the truth on
/// this short budget), draws both PNGs, and samples at given contexts land on the modes.
#[test]
fn conditional_fit_and_sampling_at_contexts() {
    let dir = tmp("conditional");
    let out = dir.join("fit");
    let (ok, _, err) = density(&[
        "--data",
        "cond-bimodal",
        "--context-cols",
        "1",
        "--flow",
        "maf-spline",
        "--layers",
        "2",
        "--hidden",
        "32",
        "--steps",
        "600",
        "--batch",
        "256",
        "--n-test",
        "2000",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let s = summary(&out);
    let (got, exact) = (
        s["test_log_likelihood"].as_f64().unwrap(),
        s["exact_test_log_likelihood"].as_f64().unwrap(),
    );
    assert!(
        (got - exact).abs() < 0.3 && got < exact + 0.05,
        "{got} vs {exact}"
    );
    for png in ["conditional.png", "conditional-curves.png"] {
        assert!(
            std::fs::metadata(out.join(png)).unwrap().len() > 1000,
            "{png}"
        );
    }
    let contexts = dir.join("contexts.csv");
    std::fs::write(&contexts, "x\n1.5\n-1.0\n").unwrap();
    let samples = dir.join("samples.csv");
    let (ok, stdout, err) = density(&[
        "sample",
        "--model",
        out.to_str().unwrap(),
        "--n",
        "400",
        "--context",
        contexts.to_str().unwrap(),
        "--out",
        samples.to_str().unwrap(),
    ]);
    assert!(ok && stdout.contains("wrote 800 samples"), "{stdout}{err}");
    let rows: Vec<Vec<f64>> = std::fs::read_to_string(&samples)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 800);
    for (x, part) in [(1.5, &rows[..400]), (-1.0, &rows[400..])] {
        assert!(
            part.iter().all(|r| r[0] == x),
            "context column keeps the context"
        );
        // Modes at ±x: |y| averages about |x|, and both signs appear.
        let mean_abs = part.iter().map(|r| r[1].abs()).sum::<f64>() / 400.0;
        let positive = part.iter().filter(|r| r[1] > 0.0).count();
        assert!(
            (mean_abs - x.abs()).abs() < 0.25,
            "x = {x}: mean |y| {mean_abs}"
        );
        assert!(
            (100..300).contains(&positive),
            "x = {x}: {positive} positive"
        );
    }
    // The model needs a context of its width, and only it.
    let model = out.to_str().unwrap();
    let s = samples.to_str().unwrap();
    assert_fails(
        &["sample", "--model", model, "--out", s],
        "give --context FILE with 1 column",
    );
    let wide = dir.join("wide.csv");
    std::fs::write(&wide, "1,2\n3,4\n").unwrap();
    let w = wide.to_str().unwrap();
    assert_fails(
        &["sample", "--model", model, "--context", w, "--out", s],
        "has 2 columns, the model in",
    );
    assert_fails(
        &[
            "eval",
            "--model",
            model,
            "--data",
            contexts.to_str().unwrap(),
        ],
        "has 1 columns",
    );
    assert_fails(
        &["sample", "--model", model, "--context", w, "--out", "x.txt"],
        ".csv or .npy",
    );
}

/// Every family fits conditionally (couplings and MADEs read the context), and sample
/// writes rows in the data's layout.
#[test]
fn every_family_fits_a_conditional_density() {
    let dir = tmp("families");
    let csv = dir.join("t.csv");
    write_csv(&csv, 120, 3);
    let contexts = dir.join("c.npy");
    let (ok, _, err) = density(&["sample", "--model", "none", "--out", "x.csv"]);
    assert!(!ok && err.contains("none"), "{err}");
    for family in ["nsf", "realnvp", "maf", "maf-spline"] {
        let out = dir.join(family);
        let (ok, _, err) = density(&[
            "--data",
            csv.to_str().unwrap(),
            "--context-cols",
            "2",
            "--flow",
            family,
            "--layers",
            "2",
            "--hidden",
            "8",
            "--steps",
            "20",
            "--out-dir",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{family}: {err}");
        assert_eq!(summary(&out)["context"], serde_json::json!([2]), "{family}");
        // Contexts from an NPY file (one column), samples to NPY.
        let column = density::data::Table {
            values: vec![0.5, 1.5],
            dim: 1,
        };
        std::fs::write(&contexts, density::data::write_npy(&column)).unwrap();
        let samples = dir.join(format!("{family}.npy"));
        let (ok, stdout, err) = density(&[
            "sample",
            "--model",
            out.to_str().unwrap(),
            "--n",
            "3",
            "--context",
            contexts.to_str().unwrap(),
            "--out",
            samples.to_str().unwrap(),
        ]);
        assert!(
            ok && stdout.contains("wrote 6 samples"),
            "{family}: {stdout}{err}"
        );
        let bytes = std::fs::read(&samples).unwrap();
        assert!(bytes.starts_with(b"\x93NUMPY") && bytes.len() == 128 + 6 * 3 * 8);
    }
}

/// Context columns that do not fit the data are one-line errors.
#[test]
fn context_columns_out_of_range_are_refused() {
    let dir = tmp("context-errors");
    let csv = dir.join("t.csv");
    write_csv(&csv, 60, 2);
    let c = csv.to_str().unwrap();
    assert_fails(
        &["--data", c, "--context-cols", "3"],
        "context column 3 is out of range",
    );
    assert_fails(
        &["--data", c, "--context-cols", "1-2"],
        "at least one must be modelled",
    );
    assert_fails(
        &["--data", c, "--context-cols", "0"],
        "columns count from 1",
    );
    assert_fails(&["--data", "8gaussians", "--base", "mog:0"], "mog:K");
}

/// `--test-file` keeps every row of `--data` for training and validation and scores the
/// file; `--valid-fraction` sizes the validation part; bad combinations are refused.
#[test]
fn test_file_and_validation_fraction() {
    let dir = tmp("test-file");
    let (train, test, narrow) = (
        dir.join("train.csv"),
        dir.join("test.csv"),
        dir.join("n.csv"),
    );
    write_csv(&train, 200, 3);
    write_csv(&test, 40, 3);
    write_csv(&narrow, 40, 2);
    let out = dir.join("fit");
    let (ok, _, err) = density(&[
        "--data",
        train.to_str().unwrap(),
        "--test-file",
        test.to_str().unwrap(),
        "--valid-fraction",
        "0.25",
        "--flow",
        "maf",
        "--layers",
        "2",
        "--hidden",
        "16",
        "--steps",
        "40",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    // The reported test log-likelihood is the test file's.
    let (ok, stdout, err) = density(&[
        "eval",
        "--model",
        out.to_str().unwrap(),
        "--data",
        test.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let reported = summary(&out)["test_log_likelihood"].as_f64().unwrap();
    // Tables get dropout in their conditioners unless told otherwise.
    assert!(
        summary(&out)["flow"]
            .as_str()
            .unwrap()
            .contains("dropout 0.2")
    );
    assert!(
        (ll(&stdout) - reported).abs() < 1e-3,
        "{stdout} vs {reported}"
    );
    let t = train.to_str().unwrap();
    assert_fails(
        &["--data", t, "--test-file", narrow.to_str().unwrap()],
        "a test file needs the training file's columns",
    );
    assert_fails(
        &["--data", "moons", "--test-file", t],
        "--test-file goes with a table",
    );
    assert_fails(&["--data", t, "--valid-fraction", "1.5"], "not a fraction");
    assert_fails(
        &["--data", t, "--dropout", "1"],
        "not a dropout probability",
    );
    let tiny = dir.join("tiny.csv");
    write_csv(&tiny, 5, 2);
    assert_fails(&["--data", tiny.to_str().unwrap()], "too few to hold out");
}

/// The whitening layer needs a full-rank covariance: a modelled column that is a linear
/// combination of others is refused (the rows have no density), while the same column as
/// context is fine.
#[test]
fn whitening_starts_at_the_gaussian_and_flags_dependent_columns() {
    let dir = tmp("whiten");
    let csv = dir.join("t.csv");
    // y = 2x + noise-free: exactly dependent; z independent.
    let mut text = String::from("x,y,z\n");
    for i in 0..200 {
        let x = (i as f64 * 0.37).sin();
        text += &format!("{x},{},{}\n", 2.0 * x - 1.0, (i as f64 * 1.3).cos());
    }
    std::fs::write(&csv, text).unwrap();
    let c = csv.to_str().unwrap();
    assert_fails(
        &["--data", c, "--steps", "1"],
        "column 2 of the training data is (nearly) a linear combination",
    );
    let out = dir.join("fit");
    let (ok, _, err) = density(&[
        "--data",
        c,
        "--context-cols",
        "2",
        "--flow",
        "maf",
        "--layers",
        "1",
        "--hidden",
        "8",
        "--steps",
        "1",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "a context column is not whitened: {err}");
}

/// A conditional fit on a normal base starts at the least-squares regression of the
/// modelled columns on the context: with one step of training its test log-likelihood is
/// the regression's (here `y = 3c + u`, `u` uniform on ±0.1: about 1.43 nats), far above a
/// start at `N(0, I)`.
#[test]
fn conditional_fit_starts_at_the_regression() {
    let dir = tmp("regression");
    let csv = dir.join("t.csv");
    let mut text = String::from("c,y\n");
    for i in 0..400 {
        let frac = |a: f64| (i as f64 * a).fract();
        let c = 4.0 * frac(0.414_213_562) - 2.0;
        text += &format!("{c},{}\n", 3.0 * c + 0.2 * frac(0.618_033_989) - 0.1);
    }
    std::fs::write(&csv, text).unwrap();
    let fit = |extra: &[&str]| {
        let out = dir.join(format!("fit{}", extra.len()));
        let mut args = vec![
            "--data",
            csv.to_str().unwrap(),
            "--context-cols",
            "1",
            "--flow",
            "maf",
            "--layers",
            "1",
            "--hidden",
            "8",
            "--steps",
            "1",
            "--out-dir",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (ok, _, err) = density(&args);
        assert!(ok, "{err}");
        summary(&out)["test_log_likelihood"].as_f64().unwrap()
    };
    let started = fit(&[]);
    assert!((started - 1.43).abs() < 0.25, "{started}");
    let plain = fit(&["--no-whiten"]);
    assert!(plain < 0.0, "{plain}");
}

/// A Gaussian-mixture base fits, reports itself, and survives export to safetensors: the
/// exported file evaluates to the same log-likelihood, bit for bit as printed; damaged
/// files are refused.
#[test]
fn mixture_base_and_safetensors_export() {
    let dir = tmp("export");
    let out = dir.join("fit");
    let (ok, _, err) = density(&[
        "--data",
        "8gaussians",
        "--base",
        "mog:8",
        "--flow",
        "realnvp",
        "--layers",
        "2",
        "--hidden",
        "16",
        "--steps",
        "100",
        "--n-test",
        "500",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(summary(&out)["base"], "mog:8");
    let test = dir.join("test.csv");
    std::fs::write(&test, "1.0,2.0\n-2.5,0.3\n0.0,0.0\n").unwrap();
    let file = dir.join("model.safetensors");
    let (ok, stdout, err) = density(&[
        "export",
        "--model",
        out.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(ok && stdout.contains("tensors"), "{stdout}{err}");
    let eval = |model: &std::path::Path| {
        let (ok, stdout, err) = density(&[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            test.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        stdout
    };
    assert_eq!(eval(&out), eval(&file));
    let bytes = std::fs::read(&file).unwrap();
    let damaged = dir.join("damaged.safetensors");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let t = test.to_str().unwrap();
    assert_fails(
        &["eval", "--model", damaged.to_str().unwrap(), "--data", t],
        "damaged.safetensors",
    );
    assert_fails(
        &["export", "--model", out.to_str().unwrap(), "--out", "m.bin"],
        "name the file .safetensors",
    );
}
