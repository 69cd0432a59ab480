//! The density program as a user runs it: fits, saved models, and one-line errors for bad
//! input (never a panic). The scenarios run on the build's CPU backend (`--backend`); the
//! fit-save-eval round trip runs on every backend of the build (CI's wgpu is a ~100×
//! slower software driver, so only that short one).

use std::{path::Path, process::Command};

use flow_programs::Choice;
use flow_testkit::Running;

mod common;

use common::*;

#[test]
fn bad_tables_get_one_line_errors() {
    let dir = tmp("bad");
    let ragged = dir.join("ragged.csv");
    std::fs::write(&ragged, "a,b\n1,2\n3\n").unwrap();
    assert_fails(&["--data", ragged.to_str().unwrap()], "line 3 has 1 cells");
    let text = dir.join("text.csv");
    std::fs::write(&text, "1,2\n3,x\n").unwrap();
    assert_fails(&["--data", text.to_str().unwrap()], "\"x\" is not a number");
    let nan = dir.join("nan.csv");
    std::fs::write(&nan, "1,2\n3,NaN\n5,6\n").unwrap();
    assert_fails(&["--data", nan.to_str().unwrap()], "row 2, column 2 is NaN");
    let npy = dir.join("short.npy");
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 2), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 16]); // 2 of 8 values
    std::fs::write(&npy, bytes).unwrap();
    assert_fails(&["--data", npy.to_str().unwrap()], "payload has 16 bytes");
    assert_fails(
        &["--data", dir.join("missing.csv").to_str().unwrap()],
        "cannot read",
    );
    assert_fails(&["--data", "nine-gaussians"], "neither a toy data set");
    assert_fails(
        &["--data", "8gaussians", "--lr=-1"],
        "not a positive learning rate",
    );
    assert_fails_on(
        "tpu",
        &["--data", "8gaussians"],
        "backend `tpu` is not in this build",
    );
    assert_fails(&["--data", "8gaussians", "--devices", "0,1"], "one device");
    for choice in Choice::testable().into_iter().filter(|c| c.is_gpu()) {
        assert_fails_on(
            choice.name(),
            &["--data", "8gaussians", "--devices", "default,cpu"],
            "cuda-unfused",
        );
    }
}

/// Fit a table, save, evaluate the saved model, and reject a table of another width: on
/// every backend of the build (the others with the smallest model: each new kernel costs
/// seconds to compile on CI's software Vulkan).
#[test]
fn fit_save_eval_and_dimension_mismatch() {
    for choice in Choice::testable() {
        fit_save_eval_on(choice.name());
    }
}

fn fit_save_eval_on(backend: &str) {
    let dir = tmp(&format!("fit-{backend}"));
    let csv = dir.join("three.csv");
    write_csv(&csv, 100, 3);
    let out = dir.join("run");
    let model: &[&str] = if backend == cpu() {
        &[
            "--layers",
            "2",
            "--steps",
            "8",
            "--eval-every",
            "4",
            "--batchnorm",
            "--lu",
        ]
    } else {
        &["--layers", "1", "--steps", "2", "--eval-every", "2"]
    };
    let mut args = vec![
        "--data",
        csv.to_str().unwrap(),
        "--flow",
        "maf",
        "--hidden",
        "16",
        "--batch",
        "32",
        "--out-dir",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(model);
    let (ok, stdout, err) = density_on(backend, &args);
    assert!(ok, "{err}");
    assert!(stdout.contains("| three |"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["backend"], backend);
    for file in ["summary.json", "metrics.csv", "model.mpk", "model.json"] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let (ok, stdout, err) = density_on(
        backend,
        &[
            "eval",
            "--model",
            out.to_str().unwrap(),
            "--data",
            csv.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let ll: f64 = stdout
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no log-likelihood in {stdout:?}"));
    assert!(ll.is_finite(), "{stdout}");
    let two = dir.join("two.csv");
    write_csv(&two, 20, 2);
    assert_fails(
        &[
            "eval",
            "--model",
            out.to_str().unwrap(),
            "--data",
            two.to_str().unwrap(),
        ],
        "has 2 columns, the model",
    );
}

/// A short fit of 8 Gaussians must beat the best single Gaussian by a margin: N(0, σ²I)
/// fitted to this mixture has test log-likelihood ≈ −4.25 nats (the mixture's own is
/// −2.84).
#[test]
fn toy_fit_learns_the_mixture_and_draws_it() {
    let dir = tmp("toy");
    let (ok, _, err) = density(&[
        "--data",
        "8gaussians",
        "--layers",
        "2",
        "--hidden",
        "32",
        "--steps",
        "120",
        "--batch",
        "128",
        "--eval-every",
        "120",
        "--lr",
        "3e-3",
        "--n-test",
        "500",
        "--plot-samples",
        "500",
        "--resolution",
        "24",
        "--out-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let ll = summary["test_log_likelihood"].as_f64().unwrap();
    assert!(ll > -3.8, "test log-likelihood {ll}");
    assert!(dir.join("density.png").exists());
}

/// Fits a small MAF to `csv` into `out`, with extra flags.
fn fit_small(csv: &Path, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "--data",
        csv.to_str().unwrap(),
        "--flow",
        "maf",
        "--layers",
        "2",
        "--hidden",
        "16",
        "--batch",
        "32",
        "--out-dir",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    density(&args)
}

#[test]
fn model_files_that_disagree_or_are_damaged_are_refused() {
    let dir = tmp("disagree");
    let csv = dir.join("three.csv");
    write_csv(&csv, 100, 3);
    let (a, b) = (dir.join("a"), dir.join("b"));
    let short = ["--steps", "8", "--eval-every", "4"];
    assert!(fit_small(&csv, &a, &short).0);
    let mut other_fit = short.to_vec();
    other_fit.extend(["--lu", "--batchnorm"]);
    assert!(fit_small(&csv, &b, &other_fit).0);
    let eval = |model: &Path| {
        vec![
            "eval".to_string(),
            "--model".into(),
            model.display().to_string(),
            "--data".into(),
            csv.display().to_string(),
        ]
    };
    let fails = |model: &Path, needle: &str| {
        let args = eval(model);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_fails(&args, needle);
    };
    let json = a.join("model.json");
    let mpk = a.join("model.mpk");
    let (json_text, mpk_bytes) = (
        std::fs::read_to_string(&json).unwrap(),
        std::fs::read(&mpk).unwrap(),
    );
    let restore = || {
        std::fs::write(&json, &json_text).unwrap();
        std::fs::write(&mpk, &mpk_bytes).unwrap();
    };
    // model.json edited: depth, family, normalization, a std of 0 or −1.
    for (from, to, needle) in [
        ("\"layers\": 2", "\"layers\": 3", "disagrees with"),
        (
            "\"family\": \"maf\"",
            "\"family\": \"nsf\"",
            "disagrees with",
        ),
        (
            "\"batchnorm\": false",
            "\"batchnorm\": true",
            "disagrees with",
        ),
        (
            "\"dim\": 3",
            "\"dim\": 2",
            "standardization does not match 2 modelled and 0 context columns",
        ),
    ] {
        assert!(json_text.contains(from), "{from} not in {json_text}");
        std::fs::write(&json, json_text.replacen(from, to, 1)).unwrap();
        fails(&a, needle);
    }
    let mut edited: serde_json::Value = serde_json::from_str(&json_text).unwrap();
    for std in [0.0, -1.0] {
        edited["standardizer"]["std"][1] = std.into();
        std::fs::write(&json, edited.to_string()).unwrap();
        fails(&a, "a std must be positive");
    }
    restore();
    // Weights from another fit beside this model.json.
    std::fs::copy(b.join("model.mpk"), &mpk).unwrap();
    fails(&a, "disagrees with");
    // Damaged weights: flipped bytes, truncation, not a model at all.
    let mut flipped = mpk_bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid..mid + 40].iter_mut().for_each(|b| *b ^= 0x5a);
    std::fs::write(&mpk, &flipped).unwrap();
    fails(&a, "checksum mismatch");
    std::fs::write(&mpk, &mpk_bytes[..mpk_bytes.len() / 2]).unwrap();
    fails(&a, "truncated");
    std::fs::write(&mpk, b"\x80 not a model").unwrap();
    fails(&a, "not a saved density model");
    // model.mpk alone is the model: without model.json it still evaluates.
    restore();
    std::fs::remove_file(&json).unwrap();
    let args = eval(&a);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, err) = density(&args);
    assert!(ok, "{err}");
}

#[test]
fn degenerate_data_is_refused_or_flagged() {
    let dir = tmp("degenerate");
    let constant = dir.join("constant.csv");
    let mut text = String::from("a,b\n");
    for i in 0..50 {
        text += &format!("{},7.5\n", i as f64 * 0.1);
    }
    std::fs::write(&constant, text).unwrap();
    let out = dir.join("run");
    let (ok, _, err) = fit_small(&constant, &out, &["--steps", "4", "--eval-every", "2"]);
    assert!(!ok && err.contains("column 2 is constant"), "{err}");
    let repeated = dir.join("repeated.csv");
    let mut text = String::from("a,b\n");
    for i in 0..60 {
        // Five distinct rows, not on a line (the whitening needs a full-rank covariance).
        text += &format!("{},{}\n", i % 5, (i % 5) * (i % 5));
    }
    std::fs::write(&repeated, text).unwrap();
    let (ok, _, err) = fit_small(&repeated, &out, &["--steps", "4", "--eval-every", "2"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("only 5 of the") && err.contains("distinct"),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "colour codes off a terminal: {err:?}"
    );
    let csv = dir.join("three.csv");
    write_csv(&csv, 100, 3);
    assert_fails(
        &[
            "--data",
            csv.to_str().unwrap(),
            "--batchnorm",
            "--batch",
            "1",
            "--steps",
            "2",
        ],
        "--batchnorm needs --batch 2",
    );
}

/// Starts a long fit into `out` and waits until it has saved a model.
fn long_fit(csv: &Path, out: &Path) -> Running {
    long_fit_on(cpu(), csv, out)
}

fn long_fit_on(backend: &str, csv: &Path, out: &Path) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_density"))
        .args([
            "--data",
            csv.to_str().unwrap(),
            "--flow",
            "maf",
            "--layers",
            "2",
        ])
        .args(["--hidden", "16", "--batch", "32", "--steps", "100000000"])
        .args(["--eval-every", "5", "--patience", "0"])
        .args(["--out-dir", out.to_str().unwrap(), "--backend", backend])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let child = Running::new(child);
    let start = std::time::Instant::now();
    while !out.join("model.json").exists() {
        assert!(start.elapsed().as_secs() < 300, "no model saved");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

#[cfg(unix)]
#[test]
fn ctrl_c_ends_the_fit_with_the_best_model_saved() {
    let dir = tmp("sigint");
    let csv = dir.join("three.csv");
    write_csv(&csv, 200, 3);
    let out = dir.join("run");
    let mut child = long_fit(&csv, &out);
    // One fit per output directory.
    let (ok, _, err) = fit_small(&csv, &out, &["--steps", "4"]);
    assert!(!ok && err.contains("in use by another process"), "{err}");
    let status = Command::new("kill")
        .args(["-INT", &child.child().id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.child().wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.child().stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("is saved in"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let (ok, stdout, err) = density(&[
        "eval",
        "--model",
        out.to_str().unwrap(),
        "--data",
        csv.to_str().unwrap(),
    ]);
    assert!(ok && stdout.contains("mean log-likelihood"), "{err}");
}

/// SIGKILL at varying moments, several during saves (one every 5 steps): the model left
/// behind always evaluates. `KILL_ROUNDS=200` for a campaign.
#[test]
fn sigkill_never_leaves_an_unloadable_model() {
    sigkill_rounds_on(cpu());
}

/// The same on burn's fused wgpu backend, where the fit trains when the build has it.
#[test]
fn sigkill_never_leaves_an_unloadable_model_on_fused_wgpu() {
    if let Some(wgpu) = Choice::testable().into_iter().find(|c| c.name() == "wgpu") {
        sigkill_rounds_on(wgpu.name());
    }
}

fn sigkill_rounds_on(backend: &str) {
    let dir = tmp(&format!("kill-{backend}"));
    let csv = dir.join("three.csv");
    write_csv(&csv, 200, 3);
    let rounds: u64 = std::env::var("KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for round in 0..rounds {
        let out = dir.join(format!("run{round}"));
        let child = long_fit_on(backend, &csv, &out);
        std::thread::sleep(std::time::Duration::from_millis(37 * round % 120));
        drop(child); // SIGKILL
        let (ok, stdout, err) = density(&[
            "eval",
            "--model",
            out.to_str().unwrap(),
            "--data",
            csv.to_str().unwrap(),
        ]);
        assert!(
            ok && stdout.contains("mean log-likelihood"),
            "round {round}: {err}"
        );
    }
}
