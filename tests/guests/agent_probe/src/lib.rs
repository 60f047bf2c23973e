//! Tries each rule of `jobs` once and logs the host's answer as `probe: <case>: <answer>`.
use std::time::Duration;

use alcf_plugin_sdk::agent::{Agent, Jobs, Standing};
use alcf_plugin_sdk::*;

struct Probe;

fn say<T: std::fmt::Debug>(case: &str, r: Result<T, String>) {
    match r {
        Ok(v) => info!("probe: {case}: ok {v:?}"),
        Err(e) => info!("probe: {case}: error {e}"),
    }
}

/// Waits until `trial` is reported; its status.
fn wait_for(jobs: &mut dyn Jobs, trial: u64) -> Result<Status, String> {
    loop {
        for o in jobs.wait(Duration::from_secs(30))? {
            if o.trial.id == trial {
                return Ok(o.status);
            }
        }
    }
}

impl Agent for Probe {
    fn info() -> PluginInfo {
        PluginInfo::new("agent_probe", "0.1.0", "tries every rule of jobs").with_capabilities(&["jobs", "log"])
    }

    fn run(study: &Study, standing: Standing, jobs: &mut dyn Jobs) -> Result<(), String> {
        let space = Space::new(&study.space)?;
        let at = |u: f64| space.decode(&vec![u; space.dim()]);
        let mut wrong = at(0.5);
        wrong[0].value = Value::Float(1e9);
        say("invalid", jobs.submit(&wrong, None));
        let a = jobs.submit(&at(0.5), None)?;
        say("unfinished parent", jobs.submit(&at(0.4), Some(a)));
        say("unknown parent", jobs.submit(&at(0.4), Some(999)));
        say("cancel running", jobs.cancel(a));
        say("cancelled comes back", wait_for(jobs, a));
        say("cancel finished", jobs.cancel(a));
        say("cancel unknown", jobs.cancel(12345));
        say("idle wait", jobs.wait(Duration::from_secs(30)).map(|o| o.len()));
        let b = jobs.submit(&at(0.3), Some(a))?;
        say("child of a pruned trial", wait_for(jobs, b));
        let mut n = standing.history.len() + 2;
        loop {
            match jobs.submit(&at(0.1 + 0.01 * n as f64), None) {
                Ok(_) => n += 1,
                Err(e) => {
                    info!("probe: over budget after {n}: error {e}");
                    break;
                }
            }
        }
        while !jobs.wait(Duration::from_secs(30))?.is_empty() {}
        Ok(())
    }
}

export_agent!(Probe);
