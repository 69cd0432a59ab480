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
//!
//! `images`: IDX (plain and gzipped), `.amat`, labels; `records`: the run history and
//! config files.

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

mod images;
mod records;

fn tmp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fuzz-readers-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
