//! Population-based training (Jaderberg et al. 2017) as an agent plugin, in synchronous
//! generations.
//!
//! Generation 0 is `population` random trials. When every trial of a generation has finished,
//! the next one is planned: each member in the bottom `fraction` (and every failed one) *exploits*
//! a member of the top `fraction` — it starts from that trial's directory (its checkpoint: the
//! trainer's `ALCF_PARENT_DIR`) with its hyperparameters, *explored* (each float or int scaled by
//! one of `factors`, or with probability `resample` drawn anew; `hold` parameters are never
//! changed, e.g. the architecture a checkpoint fixes). Every other member continues from its own
//! checkpoint with its own hyperparameters. A trial's generation is its parent's plus one.
//!
//! Everything the agent decides follows from the study's standing and its seed: a plan is a
//! function of the previous generation's outcomes, so a fresh `run` (a restarted plugin, a
//! resumed study) recomputes it and submits only what is missing.
//!
//! Synchronous generations leave slots idle while a generation's slowest member finishes; they
//! buy a plan that does not depend on the order trials finish in.

use std::collections::BTreeMap;
use std::time::Duration;

use alcf_plugin_sdk::agent::{Agent, Jobs, Standing};
use alcf_plugin_sdk::*;

/// How long one `wait` lasts; the agent waits again until its generation is complete.
const WAIT: Duration = Duration::from_secs(60);

/// The agent's options, checked before anything runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub population: usize,
    pub fraction: f64,
    pub factors: (f64, f64),
    pub resample: f64,
    pub hold: Vec<String>,
}

impl Settings {
    pub const OPTIONS: &'static [&'static str] = &["population", "fraction", "factors", "resample", "hold"];

    pub fn parse(study: &Study) -> Result<Settings, String> {
        let o = Options::parse(&study.options)?;
        o.check_known(Self::OPTIONS)?;
        let population = o.usize("population", (study.parallelism as usize).max(2))?;
        if population < 2 {
            return Err(Options::invalid("population", "must be at least 2: PBT compares members"));
        }
        let fraction = o.f64("fraction", 0.25)?;
        if !(fraction > 0.0 && fraction <= 0.5) {
            return Err(Options::invalid("fraction", "must be in (0, 0.5]: the top and bottom parts cannot overlap"));
        }
        let factors = match o.get("factors") {
            None => (0.8, 1.2),
            Some(Json::Array(v)) => match v.as_slice() {
                [Json::Number(a), Json::Number(b)] if *a > 0.0 && *b > 0.0 => (*a, *b),
                _ => return Err(Options::invalid("factors", "must be two positive numbers, e.g. [0.8, 1.2]")),
            },
            Some(_) => return Err(Options::invalid("factors", "must be two positive numbers, e.g. [0.8, 1.2]")),
        };
        let resample = o.f64("resample", 0.25)?;
        if !(0.0..=1.0).contains(&resample) {
            return Err(Options::invalid("resample", "must be a probability in [0, 1]"));
        }
        let hold = match o.get("hold") {
            None => Vec::new(),
            Some(Json::Array(v)) => {
                let mut names = Vec::new();
                for j in v {
                    let Json::String(name) = j else {
                        return Err(Options::invalid("hold", "must be a list of parameter names"));
                    };
                    if !study.space.iter().any(|p| &p.name == name) {
                        return Err(Options::invalid("hold", &format!("`{name}` is not a parameter of the space")));
                    }
                    names.push(name.clone());
                }
                names
            }
            Some(_) => return Err(Options::invalid("hold", "must be a list of parameter names")),
        };
        Ok(Settings { population, fraction, factors, resample, hold })
    }
}

/// One submission of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub params: Params,
    pub parent: Option<u64>,
}

/// A trial as the agent tracks it.
#[derive(Clone, Debug)]
struct Member {
    params: Params,
    parent: Option<u64>,
    generation: usize,
    /// Lower is better; `None` while running, infinite when it failed.
    loss: Option<f64>,
}

pub struct Pbt {
    space: Space,
    settings: Settings,
    seed: u64,
    direction: Direction,
    budget: Option<usize>,
    trials: BTreeMap<u64, Member>,
}

impl Pbt {
    pub fn new(study: &Study, standing: &Standing) -> Result<Pbt, String> {
        let mut me = Pbt {
            space: Space::new(&study.space)?,
            settings: Settings::parse(study)?,
            seed: study.seed,
            direction: study.direction,
            budget: study.budget.map(|b| b as usize),
            trials: BTreeMap::new(),
        };
        // Parents before children: ids grow with submission, and a parent is always older.
        let mut known: Vec<(u64, Params, Option<f64>)> = standing
            .history
            .iter()
            .map(|o| (o.trial.id, o.trial.params.clone(), Some(me.loss_of(o))))
            .chain(standing.running.iter().map(|t| (t.id, t.params.clone(), None)))
            .collect();
        known.sort_by_key(|(id, ..)| *id);
        for (id, params, loss) in known {
            me.add(id, params, standing.parents.get(&id).copied(), loss);
        }
        Ok(me)
    }

    fn loss_of(&self, o: &Outcome) -> f64 {
        match (o.status, o.value) {
            (Status::Completed, Some(v)) if v.is_finite() => self.direction.loss(v),
            _ => f64::INFINITY,
        }
    }

    fn add(&mut self, id: u64, params: Params, parent: Option<u64>, loss: Option<f64>) {
        let generation = parent.and_then(|p| self.trials.get(&p)).map_or(0, |p| p.generation + 1);
        self.trials.insert(id, Member { params, parent, generation, loss });
    }

    /// Members of generation `g`, by trial id.
    fn generation(&self, g: usize) -> Vec<(u64, &Member)> {
        self.trials.iter().filter(|(_, m)| m.generation == g).map(|(id, m)| (*id, m)).collect()
    }

    /// The latest generation that has trials (0 when none).
    fn current(&self) -> usize {
        self.trials.values().map(|m| m.generation).max().unwrap_or(0)
    }

    /// Generation `g`'s submissions: random for 0, else from generation `g - 1`'s outcomes.
    pub fn plan(&self, g: usize) -> Vec<Planned> {
        let n = self.settings.population;
        let mut rng = Rng::derive(self.seed, 1 + g as u64);
        if g == 0 {
            let points = self.space.sample_distinct(&mut rng, &[], n);
            return points.iter().map(|x| Planned { params: self.space.decode(x), parent: None }).collect();
        }
        let previous = self.generation(g - 1);
        let mut ranked: Vec<(u64, f64)> =
            previous.iter().map(|(id, m)| (*id, m.loss.unwrap_or(f64::INFINITY))).collect();
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let cut = ((n as f64 * self.settings.fraction).floor() as usize).max(1);
        let top: Vec<u64> = ranked.iter().filter(|(_, l)| l.is_finite()).take(cut).map(|(id, _)| *id).collect();
        let bottom: Vec<u64> = ranked.iter().rev().take(cut).map(|(id, _)| *id).collect();
        previous
            .iter()
            .map(|(id, m)| {
                let failed = !m.loss.unwrap_or(f64::INFINITY).is_finite();
                let exploit = (failed || bottom.contains(id)) && !top.contains(id);
                match (exploit, top.is_empty()) {
                    (false, _) => Planned { params: m.params.clone(), parent: Some(*id) },
                    (true, false) => {
                        let donor = top[rng.below(top.len())];
                        Planned { params: self.explore(&self.trials[&donor].params, &mut rng), parent: Some(donor) }
                    }
                    // Nothing finished well: start this member over.
                    (true, true) => Planned { params: self.space.decode(&self.space.sample(&mut rng)), parent: None },
                }
            })
            .collect()
    }

    /// A donor's hyperparameters, perturbed: every parameter but the held ones is scaled by a
    /// factor (floats and ints, kept in range) or, with probability `resample`, drawn anew.
    pub fn explore(&self, params: &Params, rng: &mut Rng) -> Params {
        let (down, up) = self.settings.factors;
        self.space
            .params()
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let current = params.iter().find(|a| a.name == p.name).map(|a| a.value.clone());
                let held = self.settings.hold.contains(&p.name);
                let resampled = !held && rng.bool(self.settings.resample);
                let scale = if rng.bool(0.5) { down } else { up };
                let value = match (current, held, resampled, &p.domain) {
                    (Some(v), true, _, _) => v,
                    (_, _, true, _) | (None, ..) => self.space.decode_value(j, rng.f64()),
                    (Some(Value::Float(x)), _, _, Domain::Float { low, high, .. }) => {
                        Value::Float((x * scale).clamp(*low, *high))
                    }
                    (Some(Value::Int(x)), _, _, Domain::Int { low, high, .. }) => {
                        let scaled = (x as f64 * scale).round() as i64;
                        // A factor that rounds back to the same integer still moves it by one.
                        let moved = if scaled == x { x + if scale > 1.0 { 1 } else { -1 } } else { scaled };
                        Value::Int(moved.clamp(*low, *high))
                    }
                    (Some(v), ..) => v,
                };
                Assignment { name: p.name.clone(), value }
            })
            .collect()
    }

    /// What of generation `g`'s plan is not submitted yet (matched by parent and parameters, so
    /// a fresh run after a crash submits nothing twice), within the budget.
    fn missing(&self, g: usize) -> Vec<Planned> {
        let mut existing: Vec<(Option<u64>, &Params)> =
            self.generation(g).into_iter().map(|(_, m)| (m.parent, &m.params)).collect();
        let mut left = self.budget.map_or(usize::MAX, |b| b.saturating_sub(self.trials.len()));
        let mut out = Vec::new();
        for p in self.plan(g) {
            if let Some(i) = existing.iter().position(|(parent, params)| *parent == p.parent && **params == p.params) {
                existing.swap_remove(i);
                continue;
            }
            if left == 0 {
                break;
            }
            left -= 1;
            out.push(p);
        }
        out
    }

    fn budget_spent(&self) -> bool {
        self.budget.is_some_and(|b| self.trials.len() >= b)
    }

    /// Drives the study to its budget.
    pub fn drive(&mut self, jobs: &mut dyn Jobs) -> Result<(), String> {
        loop {
            let g = self.current();
            let members = self.generation(g);
            let complete = members.len() >= self.settings.population && members.iter().all(|(_, m)| m.loss.is_some());
            // The generation to fill: the current one while it is short, else the next once this
            // one has finished.
            let fill = if members.len() < self.settings.population && (g == 0 || self.generation_done(g - 1)) {
                Some(g)
            } else if complete {
                Some(g + 1)
            } else {
                None
            };
            if let Some(f) = fill {
                for p in self.missing(f) {
                    let id = jobs.submit(&p.params, p.parent)?;
                    self.add(id, p.params, p.parent, None);
                }
            }
            if self.trials.values().all(|m| m.loss.is_some()) {
                // Nothing runs: either the budget is spent or nothing more could be planned.
                if self.budget_spent() || fill.is_none() || self.missing(self.current()).is_empty() {
                    return Ok(());
                }
                continue;
            }
            for o in jobs.wait(WAIT)? {
                let loss = self.loss_of(&o);
                if let Some(m) = self.trials.get_mut(&o.trial.id) {
                    m.loss = Some(loss);
                }
            }
        }
    }

    fn generation_done(&self, g: usize) -> bool {
        let members = self.generation(g);
        members.len() >= self.settings.population && members.iter().all(|(_, m)| m.loss.is_some())
    }

    /// trial id -> generation, for tests and logs.
    pub fn generations(&self) -> BTreeMap<u64, usize> {
        self.trials.iter().map(|(id, m)| (*id, m.generation)).collect()
    }
}

pub struct PbtAgent;

impl Agent for PbtAgent {
    fn info() -> PluginInfo {
        PluginInfo::new(
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            "Population-based training: exploit better trials' checkpoints, explore their hyperparameters",
        )
        .with_capabilities(&["jobs", "log"])
    }

    fn run(study: &Study, standing: Standing, jobs: &mut dyn Jobs) -> Result<(), String> {
        let mut pbt = Pbt::new(study, &standing)?;
        info!(
            "pbt: population {}, {} trials known, generation {}",
            pbt.settings.population,
            pbt.trials.len(),
            pbt.current()
        );
        pbt.drive(jobs)
    }
}

export_agent!(PbtAgent);

#[cfg(test)]
mod tests;
