//! # train-vae
//!
//! A variational autoencoder whose approximate posterior is a normalizing flow from
//! `flow_core`, trained on MNIST. This crate is being built up in steps; today it holds the
//! data layer: the embedded 10k-digit MNIST subset, IDX and `.amat` readers with typed
//! errors, and the binarization protocols.

#![warn(missing_docs)]

pub mod data;
