//! The density program's data: the 2-D toy densities, the peer benchmarks' two moons and
//! 8-D Gaussian mixture (with its exact density), MNIST in logit space, and the user's CSV
//! and NPY tables. A library so that the benchmark ports (`flow-benches`) draw exactly the
//! same data as the program.

#![warn(missing_docs)]

pub mod data;
