//! The terminal progress display: a bar with trials done, running and failed and the best value.
//! Hidden when stderr is not a terminal (CI, batch jobs, tests); messages then go to stderr as lines.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
    visible: bool,
    objective: String,
}

impl Progress {
    pub fn new(objective: &str, show: bool) -> Progress {
        let visible = show && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = if visible {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        Progress { bar, visible, objective: objective.to_string() }
    }

    pub fn start(&self, total: Option<u32>, completed: usize, failed: usize, best: Option<f64>) {
        if let Some(t) = total {
            self.bar.set_length(t as u64);
            self.bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} trials  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
        } else {
            self.bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} {spinner} {pos} trials  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
        }
        self.bar.enable_steady_tick(Duration::from_millis(200));
        self.update(completed, failed, 0, best);
    }

    pub fn update(&self, completed: usize, failed: usize, running: usize, best: Option<f64>) {
        if !self.visible {
            return;
        }
        self.bar.set_position((completed + failed) as u64);
        let best = best.map_or("-".to_string(), crate::space::Assignment::format_float);
        self.bar.set_message(format!("running {running}  failed {failed}  best {} {best}", self.objective));
    }

    /// Prints a line above the bar (or to stderr when the bar is hidden).
    pub fn println(&self, line: &str) {
        if self.visible {
            self.bar.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
