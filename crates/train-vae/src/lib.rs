//! # train-vae
//!
//! A variational autoencoder whose approximate posterior is a normalizing flow from
//! `flow_core`, trained on binarized MNIST with burn-train. The default run needs no
//! set-up: 10,000 MNIST digits are embedded in the binary.
//!
//! - [`data`]: the embedded subset, IDX and `.amat` readers, binarization;
//! - [`model`]: encoder, amortized posterior flow ([`posterior`]), decoder, ELBO and the
//!   importance-weighted bound; [`arch`]: the MLP or the gated convolutional networks;
//! - [`training`]: burn-train `Learner` integration (exact resume, divergence, metrics);
//! - [`history`]: the per-epoch records of a run;
//! - [`checkpoint`]: atomic checkpoint files and shape-checked loading; [`handoff`]: the
//!   checkpointer threads kept off the device while the training thread runs;
//! - [`config`], [`app`], [`report`]: the command line, the commands, the outputs.

#![warn(missing_docs)]

pub mod app;
pub mod arch;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod handoff;
pub mod history;
pub mod model;
pub mod posterior;
pub mod report;
pub mod training;

pub use error::VaeError;
