//! Ctrl-C (SIGINT) as a request to stop cleanly: the programs finish the step they are in,
//! save what they have, say where, and exit non-zero. A second Ctrl-C exits at once.
//!
//! ```no_run
//! flow_programs::interrupt::install().expect("the handler installs once");
//! while !flow_programs::interrupt::requested() {
//!     // one training step
//! #   break;
//! }
//! ```

use std::sync::{
    Mutex,
    atomic::{AtomicBool, Ordering},
};

static REQUESTED: AtomicBool = AtomicBool::new(false);

type Hook = Box<dyn Fn() + Send>;
static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// Exit status of a second Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_ON_SECOND: i32 = 130;

/// Installs the process's SIGINT handler (once per process; a second call is an error).
pub fn install() -> Result<(), String> {
    ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            eprintln!("interrupted twice: exiting without saving");
            std::process::exit(EXIT_ON_SECOND);
        }
        eprintln!("interrupted: finishing the current step and saving (Ctrl-C again to quit now)");
        if let Ok(hooks) = HOOKS.lock() {
            hooks.iter().for_each(|hook| hook());
        }
    })
    .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))
}

/// Whether Ctrl-C was pressed.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Runs `hook` on Ctrl-C (at once if it was already pressed): e.g. to stop a training
/// loop that polls its own flag.
pub fn on_request(hook: impl Fn() + Send + 'static) {
    if requested() {
        hook();
    }
    if let Ok(mut hooks) = HOOKS.lock() {
        hooks.push(Box::new(hook));
    }
}
