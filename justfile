# Recipes for flow-rs. `just --list` shows them.

# Train the VAE with a flow posterior (the main command); arguments go to cargo
# (e.g. `just run --features wgpu -- --flow radial`).
run *ARGS:
    cargo run --release -p train-vae {{ARGS}}

# The test command (same as CI): every test on ndarray and on wgpu.
test:
    cargo test --workspace --features wgpu

# Tests on the CPU backend only (no Vulkan driver needed).
test-cpu:
    cargo test --workspace

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    python3 .ci/module_cycles.py
    cargo clippy --workspace --all-targets --features wgpu,cuda -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --features wgpu,cuda

# API documentation.
docs:
    cargo doc --workspace --no-deps

# Regenerate docs/potentials (the table and the figure); takes a while on 2 cores.
potentials:
    cargo run --release -p potentials -- --out-dir docs/potentials

# train-vae against the PyTorch peer (needs PY=<python with torch + normflows>).
vae-peer:
    cargo build --release -p train-vae
    benches/vae_peer.sh

# Environment as in the script's header: EPOCHS (100), SEEDS ("0 1 2"), S (5000), JOBS
# (2 on 2 cores: one thread per run), KINDS, OUT, TABLE. Hours on 2 cores (flex build).
# The VAE-posterior family at equal budget over seeds: one markdown table of medians.
vae-family:
    CARGO_TARGET_DIR=target/flex cargo build --release -p train-vae --features flex
    BIN=target/flex/release/train-vae benches/vae_family.sh

# Layer families at the peer benchmarks' sizes (criterion; FEATURE: ndarray, flex, wgpu, cuda).
bench-layers FEATURE="ndarray":
    cargo bench -p flow-benches --features flow-core/{{FEATURE}} --bench layers

# Fused GPU kernels against their tensor-op references (criterion; `--features cuda` on NVIDIA).
bench-fused FEATURE="wgpu":
    cargo bench -p flow-benches --features {{FEATURE}} --bench fused

# The GPU run on a machine with one NVIDIA GPU (needs PY=<python with CUDA torch + peers>).
gpu:
    benches/gpu/run.sh

# Runs ours (flex, then ndarray) and the peers alternately (A B A B, 3 pairs, 2 threads).
# Needs PY=<python with torch, zuko, nflows, normflows>; the peers' directory is PEER
# (default ../shared/peer). ~25 min on an idle 2-core Zen 5 (~35 min on a Zen 3 with flex
# alone); flex builds into target/flex.
# The four peer benchmarks side by side with their Rust ports: the ratio table.
bench-peers *ARGS:
    CARGO_TARGET_DIR=target/flex cargo build --release -p flow-benches --bin ports --features flex
    cargo build --release -p flow-benches --bin ports
    python3 benches/side_by_side.py --peer "${PEER:-../shared/peer}" --ports target/flex/release/ports target/release/ports {{ARGS}}

# e.g. `just profile realnvp-moons --steps 300` (Linux perf, flex build).
# Where a Rust port's time goes, by op category.
profile *ARGS:
    CARGO_TARGET_DIR=target/flex cargo build --release -p flow-benches --bin ports --features flex
    python3 benches/profile.py --ports target/flex/release/ports -- {{ARGS}}

# The fault campaigns (CI runs short versions of each): KILLS SIGKILLs of train-vae and of
# density at varying moments (many during checkpoint and model writes), and FUZZ inputs per
# reader through the fuzz suites. ~10 min on 2 cores with the defaults.
faults KILLS="250" FUZZ="1000000":
    KILL_ROUNDS={{KILLS}} cargo test -p train-vae --test cli sigkill
    KILL_ROUNDS={{KILLS}} cargo test -p density --test cli sigkill
    FUZZ_ITERS={{FUZZ}} cargo test --release -p train-vae --test fuzz_readers
    FUZZ_ITERS={{FUZZ}} cargo test --release -p density --test fuzz_readers
