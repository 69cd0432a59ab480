//! The `train-vae` binary as a user runs it: training writes its files, eval and sample work
//! on its checkpoints, bad input gets a one-line error and a non-zero exit (never a
//! panic), a resumed run continues the uninterrupted one, and SIGKILL never leaves a
//! corrupt checkpoint. Runs use a tiny model on the build's CPU backend (`--backend`);
//! one run per backend of the build checks that each trains (wgpu's software driver in
//! CI is ~100× slower, so it runs once, not under every scenario).

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use flow_programs::Choice;
use train_vae::{checkpoint, data, history};

mod common;

use common::*;

/// One tiny trained run shared by the tests that need a checkpoint.
fn trained() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = temp("trained");
        ok(&train(&dir, &["--epochs", "2"]));
        dir
    })
}

/// Writes `n` images from the embedded set's validation tail (never trained on) as a
/// gzipped IDX file.
fn held_out_idx(path: &Path, n: usize) {
    use std::io::Write;
    let images = data::embedded_images().unwrap();
    let tail = images.slice(images.len() - n..images.len());
    let mut bytes = Vec::new();
    for v in [0x803u32, n as u32, 28, 28] {
        bytes.extend(v.to_be_bytes());
    }
    bytes.extend(&tail.pixels);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    std::fs::write(path, gz.finish().unwrap()).unwrap();
}

#[test]
fn a_run_leaves_its_files_and_eval_and_sample_use_them() {
    let run_dir = trained();
    for f in [
        "config.toml",
        "metrics.jsonl",
        "metrics.csv",
        "curves.png",
        "samples.png",
        "reconstructions.png",
        "summary.json",
    ] {
        let p = run_dir.join(f);
        assert!(p.is_file(), "{} missing", p.display());
        if f.ends_with(".png") {
            assert_eq!(&std::fs::read(&p).unwrap()[1..4], b"PNG");
        }
    }
    let history = history::read_history(run_dir).unwrap();
    assert_eq!(history.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2]);
    assert!(
        history
            .iter()
            .all(|r| r.valid_neg_elbo.is_finite() && r.valid_neg_elbo > 0.0)
    );
    assert!(!checkpoint::complete_epochs(run_dir).is_empty());

    let dir = temp("eval");
    std::fs::create_dir_all(&dir).unwrap();
    let idx = dir.join("held-out.gz");
    held_out_idx(&idx, 40);
    let out = ok(&run(&[
        "eval",
        "--checkpoint",
        run_dir.to_str().unwrap(),
        "--images",
        idx.to_str().unwrap(),
        "--iw-samples",
        "8",
    ]));
    let value = |key: &str| -> f64 {
        let line = out
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {out}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let (elbo, nll) = (value("ELBO"), value("IW-NLL"));
    assert!(
        elbo < 0.0 && nll > 0.0 && -elbo >= nll - 1.0,
        "ELBO {elbo}, IW-NLL {nll}"
    );
    assert!(out.contains("images      40"), "{out}");

    // The same digits as a statically binarized `.amat` file.
    let images = data::embedded_images().unwrap();
    let bits = images.slice(images.len() - 10..images.len()).binarize(5);
    let text: String = bits
        .chunks(784)
        .map(|r| {
            r.iter()
                .map(|v| if *v > 0.5 { "1" } else { "0" })
                .collect::<Vec<_>>()
                .join(" ")
                + "\n"
        })
        .collect();
    let amat = dir.join("test.amat");
    std::fs::write(&amat, text).unwrap();
    let out = ok(&run(&[
        "eval",
        "--checkpoint",
        run_dir.to_str().unwrap(),
        "--images",
        amat.to_str().unwrap(),
        "--iw-samples",
        "4",
    ]));
    assert!(out.contains("IW-NLL"), "{out}");

    let png = dir.join("s.png");
    ok(&run(&[
        "sample",
        "--checkpoint",
        run_dir.to_str().unwrap(),
        "--n",
        "9",
        "--out",
        png.to_str().unwrap(),
    ]));
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn trains_on_every_backend_of_the_build() {
    for choice in Choice::testable() {
        let dir = temp(choice.name());
        let mut args = vec!["--out-dir", dir.to_str().unwrap(), "--epochs", "1"];
        args.extend_from_slice(TINY);
        let out = ok(&run_on(choice.name(), &args));
        let row = out.lines().last().unwrap_or_default();
        assert!(row.ends_with(&format!("| {} |", choice.name())), "{out}");
        let history = history::read_history(&dir).unwrap();
        assert!(history[0].valid_neg_elbo.is_finite(), "{history:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // A backend the build lacks is refused, naming the ones it has.
    let out = run_on("tpu", &["--epochs", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !stderr.contains("panicked"));
    assert!(
        stderr.contains("backend `tpu` is not in this build") && stderr.contains(cpu()),
        "{stderr}"
    );
}

#[test]
fn bad_input_gets_a_one_line_error() {
    let dir = temp("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let out = p("out");
    let ckpt = trained().to_str().unwrap().to_string();

    // Impossible settings.
    fails_with(
        &["--flow", "planar", "--n-flows", "0", "--out-dir", &out],
        "n-flows",
    );
    fails_with(&["--lr", "-0.001", "--out-dir", &out], "--lr");
    // Several devices on the CPU backend; a device listed twice, an unknown name (clap's
    // usage errors).
    fails_with(&["--devices", "0,1", "--out-dir", &out], "one device");
    for (devices, why) in [("0,0", "twice"), ("gpu:1", "a device is")] {
        let run = run(&["--devices", devices, "--out-dir", &out]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && stderr.contains(why), "{stderr}");
    }
    fails_with(&["--epochs", "0", "--out-dir", &out], "--epochs");
    fails_with(&["--n-valid", "10000", "--out-dir", &out], "n-valid");
    fails_with(
        &[
            "--flow",
            "sylvester-o",
            "--ortho-vecs",
            "33",
            "--out-dir",
            &out,
        ],
        "--ortho-vecs",
    );
    fails_with(
        &[
            "--flow",
            "sylvester-h",
            "--householder",
            "0",
            "--out-dir",
            &out,
        ],
        "--householder",
    );
    fails_with(
        &[
            "--flow",
            "iaf",
            "--iaf-forget-bias",
            "inf",
            "--out-dir",
            &out,
        ],
        "--iaf-forget-bias",
    );
    fails_with(
        &[
            "--arch",
            "gated-conv",
            "--images",
            &p("missing.idx"),
            "--out-dir",
            &out,
        ],
        "missing.idx",
    );

    // Missing, truncated and corrupt data files.
    fails_with(
        &["eval", "--checkpoint", &ckpt, "--images", &p("missing.idx")],
        "missing.idx",
    );
    fails_with(
        &["--images", &p("missing.idx"), "--out-dir", &out],
        "missing.idx",
    );
    let mut header = Vec::new();
    for v in [0x803u32, 10, 28, 28] {
        header.extend(v.to_be_bytes());
    }
    let mut short = header.clone();
    short.extend(vec![0u8; 784 * 3]);
    std::fs::write(p("short.idx"), &short).unwrap();
    fails_with(
        &["eval", "--checkpoint", &ckpt, "--images", &p("short.idx")],
        "truncated",
    );
    let mut magic = header.clone();
    magic[3] = 0x01;
    magic.extend(vec![0u8; 784 * 10]);
    std::fs::write(p("magic.idx"), &magic).unwrap();
    fails_with(
        &["eval", "--checkpoint", &ckpt, "--images", &p("magic.idx")],
        "magic",
    );
    std::fs::write(
        p("bad.amat"),
        format!("{}\n0 1 0\n", vec!["0"; 784].join(" ")),
    )
    .unwrap();
    fails_with(
        &["eval", "--checkpoint", &ckpt, "--images", &p("bad.amat")],
        "line 2 has 3 values",
    );

    // A checkpoint of another shape, a corrupt checkpoint, none at all.
    let idx = p("held-out.gz");
    held_out_idx(Path::new(&idx), 5);
    let other = std::fs::read_to_string(trained().join("config.toml"))
        .unwrap()
        .replace("latent = 4", "latent = 5");
    std::fs::write(p("other.toml"), other).unwrap();
    fails_with(
        &[
            "eval",
            "--checkpoint",
            &ckpt,
            "--images",
            &idx,
            "--config",
            &p("other.toml"),
        ],
        // The run's model description (checkpoint/model.toml) tells before the shapes do.
        "written by another model",
    );
    std::fs::write(p("model-1.mpk"), b"not a checkpoint").unwrap();
    fails_with(
        &[
            "eval",
            "--checkpoint",
            &p("model-1.mpk"),
            "--images",
            &idx,
            "--config",
            &trained().join("config.toml").to_string_lossy(),
        ],
        "checkpoint",
    );
    fails_with(&["sample", "--checkpoint", &p("nowhere")], "no such file");
    fails_with(&["--resume", &p("nowhere")], "config.toml");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_resumed_run_continues_the_uninterrupted_one() {
    resumed_run_continues_on(cpu());
}

/// On burn's fused backend, whose tensors burn-train's checkpointer threads read
/// (`train_vae::handoff`).
#[test]
fn a_resumed_run_continues_the_uninterrupted_one_on_fused_wgpu() {
    if let Some(backend) = fused_gpu() {
        resumed_run_continues_on(backend);
    }
}

fn resumed_run_continues_on(backend: &str) {
    let (a, b) = (
        temp(&format!("straight-{backend}")),
        temp(&format!("resumed-{backend}")),
    );
    ok(&train_on(backend, &a, &["--epochs", "3", "--seed", "9"]));
    ok(&train_on(backend, &b, &["--epochs", "2", "--seed", "9"]));
    ok(&run_on(
        backend,
        &["--resume", b.to_str().unwrap(), "--epochs", "3"],
    ));
    let (ha, hb) = (
        history::read_history(&a).unwrap(),
        history::read_history(&b).unwrap(),
    );
    assert_eq!(ha.len(), 3);
    assert_eq!(hb.len(), 3);
    for (x, y) in ha.iter().zip(&hb) {
        for (u, v) in [
            (x.train_neg_elbo, y.train_neg_elbo),
            (x.valid_neg_elbo, y.valid_neg_elbo),
            (x.train_kl, y.train_kl),
        ] {
            // Same random draws; only the summation order of parallel reductions differs.
            assert!(
                (u - v).abs() <= 1e-3 * u.abs().max(1.0),
                "epoch {}: {u} vs {v}",
                x.epoch
            );
        }
    }
    // A different seed gives different numbers (the comparison above can fail).
    let c = temp(&format!("other-seed-{backend}"));
    ok(&train_on(backend, &c, &["--epochs", "1", "--seed", "10"]));
    let hc = history::read_history(&c).unwrap();
    assert!((hc[0].train_neg_elbo - ha[0].train_neg_elbo).abs() > 1e-3);
    for d in [a, b, c] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn divergence_stops_with_the_last_good_checkpoint() {
    let dir = temp("diverge");
    ok(&train(&dir, &["--epochs", "1"]));
    // Resuming with an absurd learning rate blows the weights up in the next epoch.
    let out = run(&[
        "--resume",
        dir.to_str().unwrap(),
        "--epochs",
        "3",
        "--lr",
        "1e30",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !stderr.contains("panicked"),
        "{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_default();
    assert!(line.contains("diverged in epoch 2"), "{stderr}");
    let good = checkpoint::file(&dir, "model", 1);
    assert!(line.contains(&good.display().to_string()), "{line}");
    let cfg = train_vae::config::TrainConfig::from_toml_file(&dir.join("config.toml")).unwrap();
    checkpoint::load_model::<burn::backend::NdArray>(&good, &cfg.model, &Default::default())
        .unwrap();
    // The run resumes from the good epoch with a sane learning rate (the resolved config,
    // flags included, is the run's config.toml, so the absurd one must be overridden).
    ok(&run(&[
        "--resume",
        dir.to_str().unwrap(),
        "--epochs",
        "2",
        "--lr",
        "0.001",
    ]));
    let history = history::read_history(&dir).unwrap();
    assert!(history.iter().all(|r| r.is_finite()), "{history:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigkill_never_leaves_a_corrupt_checkpoint() {
    sigkill_rounds_on(cpu());
}

/// On burn's fused backend: one checkpoint per step, so burn-train's checkpointer threads
/// read the model and optimizer state all the time (`train_vae::handoff`).
#[test]
fn sigkill_never_leaves_a_corrupt_checkpoint_on_fused_wgpu() {
    if let Some(backend) = fused_gpu() {
        sigkill_rounds_on(backend);
    }
}

fn sigkill_rounds_on(backend: &str) {
    let dir = temp(&format!("kill-{backend}"));
    // One step per epoch and a wide model: checkpoints are written all the time.
    let args = |resume: bool| -> Vec<String> {
        let mut a: Vec<String> = if resume {
            vec!["--resume".into(), dir.to_str().unwrap().into()]
        } else {
            [
                "--out-dir",
                dir.to_str().unwrap(),
                "--encoder-hidden",
                "256",
                "--decoder-hidden",
                "256",
                "--latent",
                "8",
                "--n-flows",
                "2",
                "--n-train",
                "64",
                "--n-valid",
                "16",
                "--batch-size",
                "64",
                "--iw-samples",
                "2",
                "--patience",
                "0",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        a.extend(["--epochs".into(), "100000".into()]);
        a.extend(["--backend".into(), backend.into()]);
        a
    };
    let device = Default::default();
    let config = train_vae::config::TrainConfig::from_toml_file;
    // A few kills in CI; `KILL_ROUNDS=200` for a campaign.
    let rounds: usize = std::env::var("KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut kills = 0;
    let mut seen_epochs = 0;
    for round in 0..rounds {
        let log = dir.with_extension(format!("round{round}.log"));
        let mut child = Command::new(BIN)
            .args(args(round > 0))
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // Wait for a new checkpoint, then kill at a varying moment. A run that stops on its
        // own (say, because it found a corrupt checkpoint to resume from) fails the test.
        let start = Instant::now();
        while checkpoint::complete_epochs(&dir)
            .last()
            .copied()
            .unwrap_or(0)
            <= seen_epochs
        {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "round {round}: training exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "round {round}: no progress"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(41 * round as u64 % 150));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        kills += 1;
        let cfg = config(&dir.join("config.toml")).unwrap();
        let epochs = checkpoint::complete_epochs(&dir);
        assert!(!epochs.is_empty(), "round {round}: no checkpoint at all");
        seen_epochs = *epochs.last().unwrap();
        // Every model file under its final name loads completely.
        for entry in std::fs::read_dir(checkpoint::dir(&dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".mpk") && !name.starts_with('.') {
                checkpoint::verify::<burn::backend::NdArray>(&path)
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
            if name.starts_with("model-") {
                checkpoint::load_model::<burn::backend::NdArray>(&path, &cfg.model, &device)
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
        }
    }
    assert_eq!(kills, rounds);
    for round in 0..rounds {
        let _ = std::fs::remove_file(dir.with_extension(format!("round{round}.log")));
    }
    // And the run still resumes and finishes.
    ok(&run_on(
        backend,
        &[
            "--resume",
            dir.to_str().unwrap(),
            "--epochs",
            &(seen_epochs + 1).to_string(),
        ],
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
