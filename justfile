# Recipes for flow-rs. `just --list` shows them.

# Fit flows to Rezende & Mohamed's four potentials; arguments go to cargo (e.g. `just run --features wgpu -- --steps 2000`).
run *ARGS:
    cargo run --release -p potentials {{ARGS}}

# The test command (same as CI): every test on ndarray and on wgpu.
test:
    cargo test --workspace --features wgpu

# Tests on the CPU backend only (no Vulkan driver needed).
test-cpu:
    cargo test --workspace

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --features wgpu -- -D warnings

# API documentation.
docs:
    cargo doc --workspace --no-deps

# Regenerate docs/potentials (the table and the figure); takes a while on 2 cores.
potentials:
    cargo run --release -p potentials -- --out-dir docs/potentials
