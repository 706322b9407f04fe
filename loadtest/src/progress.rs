//! Progress bars on stderr. They draw only when stderr is a terminal (or
//! not at all with `--quiet`), so logs and CI output stay clean.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    bars: MultiProgress,
}

impl Progress {
    pub fn new(visible: bool) -> Progress {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            bars: MultiProgress::with_draw_target(target),
        }
    }

    pub fn hidden() -> Progress {
        Progress::new(false)
    }

    /// A bar counting up to `len`.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} {per_sec} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(what.to_owned());
        bar
    }

    /// A bar over a stretch of time, whose message the caller updates.
    pub fn timer(&self, length: Duration, what: &str) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(length.as_millis() as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>20} [{bar:30}] {elapsed}/{duration} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(what.to_owned());
        bar
    }
}
