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
    failed: usize,
    running: usize,
    best: Option<f64>,
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
        Progress { bar, visible, objective: objective.to_string(), completed: 0, failed: 0, running: 0, best: None }
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
        self.bar.set_position((self.completed + self.failed) as u64);
        let best = self.best.map_or("-".to_string(), alcf_host::space::Assignment::format_float);
        self.bar
            .set_message(format!("running {}  failed {}  best {} {best}", self.running, self.failed, self.objective));
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
            Event::Started { budget, completed, failed, best, .. } => {
                (self.completed, self.failed, self.best) = (*completed, *failed, *best);
                self.start(*budget);
            }
            Event::TrialStarted { .. } => {
                self.running += 1;
                self.update();
            }
            Event::TrialFinished { trial, state, failure, .. } => {
                self.running = self.running.saturating_sub(1);
                match failure {
                    Some(f) => {
                        self.failed += 1;
                        self.println(&format!("trial {trial} {}: {f}", state.as_str()));
                    }
                    None => self.completed += 1,
                }
                self.update();
            }
            Event::TrialPruned { .. } => {
                self.running = self.running.saturating_sub(1);
                self.completed += 1;
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
            Event::TrialProgress { .. } | Event::Suggested { .. } | Event::Observed { .. } => {}
        }
    }
}
