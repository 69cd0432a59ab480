//! # custom-layer
//!
//! How a user of flow-core writes a layer of their own and uses it like a built-in one:
//!
//! - [`mod@sinh_arcsinh`]: the sinh-arcsinh map of Jones & Pewsey (2009), a burn module that
//!   implements flow-core's [`Transform`](flow_core::Transform) and
//!   [`Invertible`](flow_core::Invertible), with its math in the module docs; the tests in
//!   `tests/` run it through flow-core's verification harness (`flow_core::testing`), and
//!   show that a wrong log-determinant fails it;
//! - [`train`]: the layer between built-in ones (masked autoregressive affine layers and
//!   permutations) in a [`flow_core::Flow`], trained with burn's Adam, saved and loaded with
//!   burn's recorder;
//! - [`target`]: the skewed, heavy-tailed 2-D density it is fitted to.
//!
//! `cargo run -p custom-layer --release` trains it and prints the mean log-likelihood
//! before and after. The walk-through from an empty crate is `docs/library.md`.

#![warn(missing_docs)]

pub mod sinh_arcsinh;
pub mod target;
pub mod train;

pub use sinh_arcsinh::{SinhArcsinh, SinhArcsinhConfig, sinh_arcsinh, sinh_arcsinh_inverse};

/// The Rust code blocks of `docs/library.md`, compiled and run as doctests of this crate
/// (`cargo test -p custom-layer --doc`), so the guide cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/library.md")]
pub struct LibraryGuide;
