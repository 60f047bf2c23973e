//! The terminal progress display: a bar with trials done, running and failed and the best value,
//! fed by campaign events. Hidden when stderr is not a terminal (CI, batch jobs, tests) or with
//! `--quiet`; failures, warnings and errors are printed as lines either way.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use alcf_host::campaign::event::{Event, Level, Observer};

use crate::cli::console;

/// Longest message shown on the terminal; the study's host.log and database keep the rest.
const MAX_LINE: usize = 600;

pub struct Progress {
    bar: ProgressBar,
    visible: bool,
    objective: String,
    completed: usize,
    pruned: usize,
    failed: usize,
    running: usize,
    best: Option<f64>,
    budget: Option<u32>,
    /// When this process saw its first trial start, and how many have ended since: the rate of
    /// the ETA, which thereby includes parallelism, queue waits and failures.
    first_start: Option<std::time::Instant>,
    ended_here: usize,
}

impl Progress {
    /// `bar`: show the bar (when stderr is a terminal); `false` prints only the lines.
    pub fn new(objective: &str, bar: bool) -> Progress {
        let visible = bar && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = if visible {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        Progress {
            bar,
            visible,
            objective: objective.to_string(),
            completed: 0,
            pruned: 0,
            failed: 0,
            running: 0,
            best: None,
            budget: None,
            first_start: None,
            ended_here: 0,
        }
    }

    fn start(&self, total: Option<u32>) {
        if !self.visible {
            return;
        }
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
        self.update();
    }

    fn update(&self) {
        if !self.visible {
            return;
        }
        self.bar.set_position((self.completed + self.failed + self.pruned) as u64);
        let best = self.best.map_or("-".to_string(), alcf_host::space::Assignment::format_float);
        let eta = match (self.budget, self.first_start) {
            (Some(budget), Some(t0)) => {
                let remaining = (budget as usize).saturating_sub(self.completed + self.failed + self.pruned);
                eta(remaining, self.ended_here, t0.elapsed()).map_or(String::new(), |d| format!("  eta {}", short(d)))
            }
            _ => String::new(),
        };
        let pruned = if self.pruned > 0 { format!("pruned {}  ", self.pruned) } else { String::new() };
        self.bar.set_message(format!(
            "running {}  {pruned}failed {}  best {} {best}{eta}",
            self.running, self.failed, self.objective
        ));
    }

    /// Prints a line above the bar (or to stderr when the bar is hidden), cut to a readable size.
    fn println(&self, line: &str) {
        print_line(&self.bar, self.visible, line);
    }

    /// A handle that prints lines above the bar from anywhere (e.g. the LLM service waiting for a
    /// cold model, on the strategy's thread) without tearing it.
    pub fn printer(&self) -> impl Fn(&str) + Send + Sync + 'static {
        let (bar, visible) = (self.bar.clone(), self.visible);
        move |line: &str| print_line(&bar, visible, line)
    }
}

/// Time left for `remaining` trials at the rate this process has seen: `ended` trials ended in
/// `elapsed` since its first trial started. `None` until two have ended (one end says little about
/// a rate) and once nothing remains.
fn eta(remaining: usize, ended: usize, elapsed: Duration) -> Option<Duration> {
    if ended < 2 || remaining == 0 || elapsed.is_zero() {
        return None;
    }
    Some(elapsed.mul_f64(remaining as f64 / ended as f64))
}

/// `45s`, `12m`, `3h05m`, `2d04h`.
fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s.div_ceil(60)),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

fn print_line(bar: &ProgressBar, visible: bool, line: &str) {
    let line = cut(line);
    if visible {
        bar.println(line);
    } else {
        console(&line);
    }
}

fn cut(line: &str) -> String {
    if line.len() <= MAX_LINE {
        return line.to_string();
    }
    let end = line.floor_char_boundary(MAX_LINE);
    format!("{}… [{} bytes; the rest is in host.log]", &line[..end], line.len())
}

impl Observer for Progress {
    fn event(&mut self, event: &Event) {
        match event {
            Event::Started { budget, completed, failed, pruned, best, .. } => {
                (self.completed, self.failed, self.pruned, self.best) = (*completed, *failed, *pruned, *best);
                self.budget = *budget;
                self.start(*budget);
            }
            Event::TrialStarted { .. } => {
                self.running += 1;
                self.first_start.get_or_insert_with(std::time::Instant::now);
                self.update();
            }
            Event::TrialFinished { trial, state, failure, .. } => {
                self.running = self.running.saturating_sub(1);
                self.ended_here += 1;
                match failure {
                    Some(f) => {
                        self.failed += 1;
                        self.println(&format!("trial {trial} {}: {f}", state.as_str()));
                    }
                    None => self.completed += 1,
                }
                self.update();
            }
            Event::TrialPruned { trial, step, value } => {
                self.running = self.running.saturating_sub(1);
                self.ended_here += 1;
                self.pruned += 1;
                let at = value.map_or(String::new(), |v| {
                    format!(" ({} {})", self.objective, alcf_host::space::Assignment::format_float(v))
                });
                self.println(&format!("trial {trial} pruned at step {step}{at}"));
                self.update();
            }
            Event::TrialRetried { trial, attempt, reason } => {
                self.println(&format!("trial {trial} runs again (attempt {attempt}): {reason}"));
            }
            Event::BestImproved { value, .. } => {
                self.best = Some(*value);
                self.update();
            }
            Event::ExecutorPaused { reason } => self.println(&format!("paused: {reason}")),
            Event::ExecutorResumed => self.println("resumed: the executor takes work again"),
            Event::PluginRestarted { message } => self.println(&format!("warning: {message}")),
            Event::Notice { level, message } => match level {
                Level::Info => self.println(message),
                Level::Warn => self.println(&format!("warning: {message}")),
                Level::Error => self.println(&format!("error: {message}")),
            },
            Event::Stopped { .. } => self.bar.finish_and_clear(),
            Event::TrialProgress { .. } | Event::Suggested { .. } | Event::Observed { .. } | Event::Judged { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_follows_the_rate_seen() {
        assert_eq!(eta(10, 1, Duration::from_secs(60)), None, "one trial says nothing about a rate");
        assert_eq!(eta(0, 5, Duration::from_secs(60)), None);
        // 4 trials ended in 2 minutes (say 4 at once): 8 more take 4 minutes.
        assert_eq!(eta(8, 4, Duration::from_secs(120)), Some(Duration::from_secs(240)));
        assert_eq!(short(Duration::from_secs(45)), "45s");
        assert_eq!(short(Duration::from_secs(61)), "2m");
        assert_eq!(short(Duration::from_secs(3 * 3600 + 5 * 60)), "3h05m");
        assert_eq!(short(Duration::from_secs(2 * 86400 + 4 * 3600)), "2d04h");
    }
}
