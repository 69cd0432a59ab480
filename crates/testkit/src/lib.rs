//! # flow-testkit
//!
//! What the programs' test files share (a dev-dependency only):
//! - [`fuzz`]: the harness the file readers are fuzzed under: each call is caught if it
//!   panics, timed, and its largest single allocation measured against a budget;
//! - [`mutate`]: byte- and token-level mutations of a valid input;
//! - [`Running`]: a child process killed when its test ends, also when it fails.

#![warn(missing_docs)]

pub mod fuzz;
pub mod mutate;

/// A child process that is killed (and reaped) when dropped: a failing test must not
/// leave a training run behind.
pub struct Running(Option<std::process::Child>);

impl Running {
    /// Takes charge of `child`.
    pub fn new(child: std::process::Child) -> Self {
        Self(Some(child))
    }

    /// The child, still running or not.
    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("not yet waited for")
    }

    /// Waits for the child to end and collects what it printed.
    pub fn wait_with_output(mut self) -> std::process::Output {
        self.0
            .take()
            .expect("not yet waited for")
            .wait_with_output()
            .expect("the child can be waited for")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
