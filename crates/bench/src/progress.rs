//! Progress bars on stderr that appear only once a phase has run for more than a second, so
//! short runs (tests, tiny benches) print nothing and long ones show where they are.
//!
//! Invariants:
//! - Nothing is ever drawn on stdout (it carries the reports, possibly JSON).
//! - A disabled [`Progress`] never draws; an enabled one draws only after [`SHOW_AFTER`], and
//!   indicatif itself draws nothing when stderr is not a terminal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a phase runs before its bar appears.
pub const SHOW_AFTER: Duration = Duration::from_secs(1);

/// A progress bar for one phase (deriving keys, signing, running blocks). Safe to advance
/// from many threads.
pub struct Progress {
    bar: ProgressBar,
    start: Instant,
    enabled: bool,
    shown: AtomicBool,
}

impl Progress {
    /// A bar of `len` steps labelled `message`; `enabled: false` never draws.
    pub fn new(enabled: bool, len: u64, message: impl Into<String>) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        let style =
            ProgressStyle::with_template("{msg} [{wide_bar}] {human_pos}/{human_len} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(message.into());
        Progress {
            bar,
            start: Instant::now(),
            enabled,
            shown: AtomicBool::new(false),
        }
    }

    /// A bar that never draws.
    pub fn hidden() -> Progress {
        Progress::new(false, 0, "")
    }

    /// Advances by `n` steps; reveals the bar once the phase has lasted [`SHOW_AFTER`].
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if self.enabled
            && !self.shown.load(Ordering::Relaxed)
            && self.start.elapsed() >= SHOW_AFTER
            && !self.shown.swap(true, Ordering::Relaxed)
        {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// Changes the label.
    pub fn set_message(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}
