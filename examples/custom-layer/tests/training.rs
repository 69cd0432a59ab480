//! Training improves the held-out log-likelihood by a real margin, and a saved flow loads
//! back to the same densities.

use burn::backend::{Autodiff, NdArray};
use custom_layer::{
    target::Sampler,
    train::{self, FitConfig},
};

type B = Autodiff<NdArray>;

#[test]
fn a_short_fit_improves_the_log_likelihood() {
    let device = Default::default();
    let config = FitConfig::new().with_steps(150).with_test_size(2048);
    let (_, fit) = train::fit::<B>(&config, &device).unwrap();
    // The untrained flow is N(0, I), about 3 nats below the target on this data; a short
    // fit must close more than half of that gap, and can never beat the target by much.
    let gap = fit.target - fit.before;
    assert!(gap > 2.0, "{fit:?}");
    assert!(fit.after - fit.before > 0.5 * gap, "{fit:?}");
    assert!(fit.after < fit.target + 0.1, "{fit:?}");
}

#[test]
fn a_saved_flow_loads_back() {
    let device = Default::default();
    let config = FitConfig::new().with_steps(20).with_test_size(64);
    let (flow, _) = train::fit::<B>(&config, &device).unwrap();
    let x = Sampler::new(9).tensor::<NdArray>(32, &device);
    let expected = flow.log_prob(x.clone(), None).unwrap();

    let dir = std::env::temp_dir().join(format!("custom-layer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("flow");
    train::save(flow, &path).unwrap();
    let loaded = train::load::<NdArray>(&config, &path, &device).unwrap();
    let got = loaded.log_prob(x, None).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    got.into_data()
        .assert_approx_eq::<f32>(&expected.into_data(), Default::default());
}

/// The example program runs as a user runs it, and refuses a bad flag in one line.
#[test]
fn the_program_runs() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_custom-layer"))
            .args(args)
            .output()
            .expect("the program runs")
    };
    let out = run(&["--steps", "30"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("30 Adam steps"), "{stdout}");
    let out = run(&["--steps", "many"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a number of steps"));
}
