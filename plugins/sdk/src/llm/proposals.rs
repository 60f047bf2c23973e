//! Asking an LLM for trial proposals: the prompt's state block, the JSON schema of the answer,
//! parsing and validation, de-duplication, the rename/shift guard, and the schedules that
//! decide which trials go to the LLM. Shared by every LLM-using strategy (llm_guided, region_ucb).
//!
//! **Prompt contract** (the Sophia gateway double's `perturb-best` answers read it): a system
//! message with the task and the output format, then one user message with a short instruction
//! and exactly one fenced ```` ```json ```` block holding
//! `{"objective", "direction", "parameters": [{"name", "type": "float|int|choice", "low", "high",
//! "log"} | {"name", "type": "choice", "choices"}], "best": [{"params": {…}, "value"}] (top 5),
//! "recent": [{"params", "value"}] (last 20 finished, `value` null when failed), "pending":
//! [{…}], "model": {"predictions": [{"params", "mean", "std"}], "importance": {name: share}},
//! "count": k}`. The answer's schema, named "proposals", is `{"type": "object", "properties":
//! {"proposals": {"type": "array", "minItems": 1, "maxItems": k, "items": {"type": "object",
//! "properties": {…per parameter…}, "required": […], "additionalProperties": false}}},
//! "required": ["proposals"]}`.
//!
//! **Validation**: every parameter present, no other key; numbers must be JSON numbers (a string
//! is never read as a value), finite; numbers are clamped into bounds and ints rounded; an unknown
//! choice rejects the proposal. Proposals that repeat a pending or finished trial (or each other)
//! are dropped.
//!
//! **Rename/shift guard** (against a model recognising a well-known test function and answering
//! with its textbook optimum): `rename` shows parameters as `x1…xn`, choices as `c1…ck` and the
//! objective as "objective"; `shift` shows each numeric parameter as an affine map of its
//! unit-cube coordinate — floats as `[o, o + 100]` (uniform in the coordinate, so log scales
//! become linear), ints as `[o, o + high − low]` — with a per-parameter offset `o` in −50..=50
//! drawn from the seed. Answers are mapped back through the same view.

use crate::history::History;
use crate::json::Json;
use crate::llm::{ChatRequest, ChatResponse, LlmError, Message, chat_structured};
use crate::rng::Rng;
use crate::space::Space;
use crate::types::{Direction, Domain, Outcome, Status, Trial};
use std::collections::BTreeMap;

/// The schema name sent with every proposal request.
pub const SCHEMA_NAME: &str = "proposals";
/// How many best trials the prompt shows.
pub const N_BEST: usize = 5;
/// How many recent trials the prompt shows.
pub const N_RECENT: usize = 20;
/// Unit-cube tolerance under which a proposal counts as a repeat: the prompt rounds values to
/// 6 significant digits, so a model echoing a shown trial lands within it.
pub const DUPLICATE_TOL: f64 = 1e-6;
/// The most proposals one call may ask for.
pub const MAX_PER_CALL: usize = 64;

/// How one parameter is shown to the model.
#[derive(Clone, Debug, PartialEq)]
enum Shown {
    /// Its own values.
    Native,
    /// A float `offset + 100·u` of the unit coordinate `u`.
    Float { offset: f64 },
    /// An int `offset + (value − low)`.
    Int { offset: i64 },
}

/// The search space as the model sees it (names, labels, value maps), and the way back.
#[derive(Clone, Debug)]
pub struct View {
    space: Space,
    names: Vec<String>,
    /// Shown labels of choice parameters (empty for numeric ones).
    labels: Vec<Vec<String>>,
    shown: Vec<Shown>,
    renamed: bool,
}

/// A proposal answer, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    /// Valid proposals as snapped unit-cube points, in the answer's order.
    pub points: Vec<Vec<f64>>,
    /// Why each rejected proposal was rejected.
    pub rejected: Vec<String>,
    /// Proposals with at least one value clamped into bounds.
    pub clamped: usize,
}

fn round_sig(v: f64, digits: usize) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    format!("{v:.*e}", digits.saturating_sub(1)).parse().unwrap_or(v)
}

fn num(v: f64) -> Json {
    Json::Number(round_sig(v, 6))
}

/// Rounds a shown value of a parameter spanning `range` (in value units, or in ln units with
/// `log`) so that the error stays below 1e-7 of the range: short numbers in the prompt, and a
/// model echoing one lands within [`DUPLICATE_TOL`] of the trial.
fn round_shown(v: f64, range: f64, log: bool) -> f64 {
    let quantum = (range.abs() * 2e-7).max(1e-300);
    if log {
        // Relative precision `quantum` in the value is absolute precision `quantum` in ln(value).
        round_sig(v, (-quantum.log10()).ceil().clamp(1.0, 15.0) as usize)
    } else {
        let dp = (-quantum.log10()).ceil().clamp(0.0, 15.0) as i32;
        let p = 10f64.powi(dp);
        let r = (v * p).round() / p;
        if r.is_finite() { r } else { v }
    }
}

fn obj(pairs: Vec<(&str, Json)>) -> Json {
    Json::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

impl View {
    /// The view of `space`; `seed` draws the shift offsets.
    pub fn new(space: &Space, rename: bool, shift: bool, seed: u64) -> View {
        let mut rng = Rng::derive(seed, 0x5_1f7);
        let mut names = Vec::new();
        let mut labels = Vec::new();
        let mut shown = Vec::new();
        for (j, p) in space.params().iter().enumerate() {
            names.push(if rename { format!("x{}", j + 1) } else { p.name.clone() });
            let offset = rng.below(101) as i64 - 50;
            match &p.domain {
                Domain::Choice(c) => {
                    labels.push(if rename { (1..=c.len()).map(|i| format!("c{i}")).collect() } else { c.clone() });
                    shown.push(Shown::Native);
                }
                Domain::Float { .. } => {
                    labels.push(Vec::new());
                    shown.push(if shift { Shown::Float { offset: offset as f64 } } else { Shown::Native });
                }
                Domain::Int { .. } => {
                    labels.push(Vec::new());
                    shown.push(if shift { Shown::Int { offset } } else { Shown::Native });
                }
            }
        }
        View { space: space.clone(), names, labels, shown, renamed: rename }
    }

    pub fn space(&self) -> &Space {
        &self.space
    }

    /// The name parameter `j` is shown under.
    pub fn name(&self, j: usize) -> &str {
        &self.names[j]
    }

    /// The objective's name as shown ("objective" when renamed).
    pub fn objective<'a>(&self, objective: &'a str) -> &'a str {
        if self.renamed { "objective" } else { objective }
    }

    /// Shown (low, high) of numeric parameter `j`.
    fn bounds(&self, j: usize) -> (f64, f64) {
        match (&self.space.params()[j].domain, &self.shown[j]) {
            (_, Shown::Float { offset }) => (*offset, offset + 100.0),
            (Domain::Int { low, high, .. }, Shown::Int { offset }) => {
                (*offset as f64, offset.saturating_add(high.saturating_sub(*low)) as f64)
            }
            (Domain::Float { low, high, .. }, _) => (*low, *high),
            (Domain::Int { low, high, .. }, _) => (*low as f64, *high as f64),
            (Domain::Choice(_), _) => (0.0, 0.0),
        }
    }

    /// The `parameters` list of the prompt.
    pub fn parameters(&self) -> Json {
        let list = (0..self.space.dim())
            .map(|j| {
                let name = Json::String(self.names[j].clone());
                match &self.space.params()[j].domain {
                    Domain::Choice(_) => obj(vec![
                        ("name", name),
                        ("type", Json::String("choice".into())),
                        ("choices", Json::Array(self.labels[j].iter().map(|l| Json::String(l.clone())).collect())),
                    ]),
                    d => {
                        let (lo, hi) = self.bounds(j);
                        let (ty, log) = match d {
                            Domain::Float { log, .. } => ("float", *log),
                            Domain::Int { log, .. } => ("int", *log),
                            Domain::Choice(_) => unreachable!("handled above"),
                        };
                        let log = log && self.shown[j] == Shown::Native;
                        obj(vec![
                            ("name", name),
                            ("type", Json::String(ty.into())),
                            ("low", Json::Number(lo)),
                            ("high", Json::Number(hi)),
                            ("log", Json::Bool(log)),
                        ])
                    }
                }
            })
            .collect();
        Json::Array(list)
    }

    /// A unit-cube point as the `{name: value}` object the model sees.
    pub fn show(&self, x: &[f64]) -> Json {
        let mut m = BTreeMap::new();
        for (j, &u) in x.iter().enumerate().take(self.space.dim()) {
            let v = match (&self.shown[j], self.space.decode_value(j, u)) {
                (Shown::Float { offset }, _) => {
                    Json::Number(round_shown(offset + 100.0 * u.clamp(0.0, 1.0), 100.0, false))
                }
                (Shown::Int { offset }, crate::Value::Int(i)) => {
                    let low = match self.space.params()[j].domain {
                        Domain::Int { low, .. } => low,
                        _ => 0,
                    };
                    Json::Number(offset.saturating_add(i.saturating_sub(low)) as f64)
                }
                (_, crate::Value::Float(v)) => match self.space.params()[j].domain {
                    Domain::Float { low, high, log: true } => Json::Number(round_shown(v, (high / low).ln(), true)),
                    Domain::Float { low, high, .. } => Json::Number(round_shown(v, high - low, false)),
                    _ => num(v),
                },
                (_, crate::Value::Int(i)) => Json::Number(i as f64),
                (_, crate::Value::Choice(_)) => Json::String(self.labels[j][self.space.choice_index(j, u)].clone()),
            };
            m.insert(self.names[j].clone(), v);
        }
        Json::Object(m)
    }

    /// The JSON Schema of an answer with 1..=`count` proposals.
    pub fn schema(&self, count: usize) -> Json {
        let mut props = BTreeMap::new();
        for j in 0..self.space.dim() {
            let p = match &self.space.params()[j].domain {
                Domain::Choice(_) => obj(vec![
                    ("type", Json::String("string".into())),
                    ("enum", Json::Array(self.labels[j].iter().map(|l| Json::String(l.clone())).collect())),
                ]),
                d => {
                    let (lo, hi) = self.bounds(j);
                    let ty = if matches!(d, Domain::Int { .. }) { "integer" } else { "number" };
                    obj(vec![
                        ("type", Json::String(ty.into())),
                        ("minimum", Json::Number(lo)),
                        ("maximum", Json::Number(hi)),
                    ])
                }
            };
            props.insert(self.names[j].clone(), p);
        }
        let item = obj(vec![
            ("type", Json::String("object".into())),
            ("properties", Json::Object(props)),
            ("required", Json::Array(self.names.iter().map(|n| Json::String(n.clone())).collect())),
            ("additionalProperties", Json::Bool(false)),
        ]);
        let list = obj(vec![
            ("type", Json::String("array".into())),
            ("minItems", Json::Number(1.0)),
            ("maxItems", Json::Number(count.max(1) as f64)),
            ("items", item),
        ]);
        obj(vec![
            ("type", Json::String("object".into())),
            ("properties", obj(vec![("proposals", list)])),
            ("required", Json::Array(vec![Json::String("proposals".into())])),
        ])
    }

    /// Checks one proposal object and maps it back to a snapped unit-cube point; the bool says
    /// whether a value had to be clamped.
    pub fn parse_one(&self, proposal: &Json) -> Result<(Vec<f64>, bool), String> {
        let Json::Object(m) = proposal else {
            return Err("a proposal is not an object".into());
        };
        if let Some(k) = m.keys().find(|k| !self.names.contains(k)) {
            return Err(format!("unknown key `{k}`"));
        }
        let mut x = Vec::with_capacity(self.space.dim());
        let mut clamped = false;
        for j in 0..self.space.dim() {
            let name = &self.names[j];
            let v = m.get(name).ok_or_else(|| format!("`{name}` is missing"))?;
            let domain = &self.space.params()[j].domain;
            let u = if let Domain::Choice(_) = domain {
                let s = v.as_str().ok_or_else(|| format!("`{name}` is not a string"))?;
                let i = self.labels[j]
                    .iter()
                    .position(|l| l == s)
                    .ok_or_else(|| format!("`{name}`: unknown choice {s:?}"))?;
                self.space.choice_coord(j, i)
            } else {
                let raw = match v {
                    Json::Number(n) if n.is_finite() => *n,
                    Json::Number(_) => return Err(format!("`{name}` is not finite")),
                    _ => return Err(format!("`{name}` is not a number")),
                };
                let (lo, hi) = self.bounds(j);
                let raw = if matches!(domain, Domain::Int { .. }) { raw.round() } else { raw };
                let c = raw.clamp(lo, hi);
                clamped |= c != raw;
                match (&self.shown[j], domain) {
                    (Shown::Float { offset }, _) => (c - offset) / 100.0,
                    (Shown::Int { offset }, Domain::Int { low, .. }) => self
                        .space
                        .encode_value(j, &crate::Value::Int(low.saturating_add((c as i64).saturating_sub(*offset))))
                        .map_err(|e| format!("`{name}`: {e}"))?,
                    (_, Domain::Int { .. }) => self
                        .space
                        .encode_value(j, &crate::Value::Int(c as i64))
                        .map_err(|e| format!("`{name}`: {e}"))?,
                    _ => self.space.encode_value(j, &crate::Value::Float(c)).map_err(|e| format!("`{name}`: {e}"))?,
                }
            };
            x.push(u);
        }
        Ok((self.space.snap(&x), clamped))
    }

    /// Parses an answer `{"proposals": [...]}`. Err: the answer as a whole is unusable (not
    /// JSON, no `proposals` list); single bad proposals are listed in [`Parsed::rejected`].
    pub fn parse_answer(&self, text: &str) -> Result<Parsed, String> {
        let answer = Json::parse(text.trim()).map_err(|e| format!("the answer is not JSON ({e})"))?;
        let Some(Json::Array(list)) = answer.get("proposals") else {
            return Err("the answer has no `proposals` list".into());
        };
        let mut out = Parsed::default();
        for (i, p) in list.iter().enumerate() {
            match self.parse_one(p) {
                Ok((x, c)) => {
                    out.clamped += c as usize;
                    out.points.push(x);
                }
                Err(e) => out.rejected.push(format!("proposal {}: {e}", i + 1)),
            }
        }
        Ok(out)
    }
}

/// Drops points that repeat one of `taken` or an earlier point of `points`; returns the kept
/// ones and the number dropped.
pub fn dedupe(space: &Space, points: Vec<Vec<f64>>, taken: &[Vec<f64>]) -> (Vec<Vec<f64>>, usize) {
    let mut kept: Vec<Vec<f64>> = Vec::new();
    let mut dropped = 0;
    for x in points {
        let seen = |p: &Vec<f64>| space.same_point(p, &x, DUPLICATE_TOL);
        if taken.iter().any(seen) || kept.iter().any(seen) {
            dropped += 1;
        } else {
            kept.push(x);
        }
    }
    (kept, dropped)
}

/// Finished trials in the order they finished, with their values as reported: the prompt's
/// `best` and `recent`.
#[derive(Clone, Debug, Default)]
pub struct TrialLog {
    /// (snapped unit-cube point, value in the study's direction; `None` when not completed).
    pub trials: Vec<(Vec<f64>, Option<f64>)>,
}

impl TrialLog {
    /// Records outcomes (those that do not fit the space are skipped: History reports them).
    pub fn observe(&mut self, space: &Space, outcomes: &[Outcome]) {
        for o in outcomes {
            if let Ok(x) = space.encode(&o.trial.params) {
                let v = match (o.status, o.value) {
                    (Status::Completed, Some(v)) if v.is_finite() => Some(v),
                    _ => None,
                };
                self.trials.push((space.snap(&x), v));
            }
        }
    }
}

/// What the GP says, for the prompt's `model` block.
#[derive(Clone, Debug, Default)]
pub struct ModelSummary {
    /// (unit-cube point, predicted mean in the study's direction, predicted std).
    pub predictions: Vec<(Vec<f64>, f64, f64)>,
    /// Share of each parameter (sums to 1; empty: unknown).
    pub importance: Vec<f64>,
}

/// Everything the prompt shows.
#[derive(Clone, Copy, Debug)]
pub struct PromptInput<'a> {
    pub objective: &'a str,
    pub direction: Direction,
    pub log: &'a TrialLog,
    /// Trials in flight (and points already chosen in this batch), as unit-cube points.
    pub pending: &'a [Vec<f64>],
    pub model: Option<&'a ModelSummary>,
    pub count: usize,
}

/// The prompt's JSON state block.
pub fn state(view: &View, input: &PromptInput) -> Json {
    let entry =
        |x: &Vec<f64>, v: Option<f64>| obj(vec![("params", view.show(x)), ("value", v.map(num).unwrap_or(Json::Null))]);
    let mut done: Vec<(usize, f64)> =
        input.log.trials.iter().enumerate().filter_map(|(i, (_, v))| v.map(|v| (i, v))).collect();
    // Best first in the study's direction; ties by finish order (stable sort).
    match input.direction {
        Direction::Minimize => done.sort_by(|a, b| a.1.total_cmp(&b.1)),
        Direction::Maximize => done.sort_by(|a, b| b.1.total_cmp(&a.1)),
    }
    let best = done.iter().take(N_BEST).map(|&(i, v)| entry(&input.log.trials[i].0, Some(v))).collect();
    let n = input.log.trials.len();
    let recent = input.log.trials[n.saturating_sub(N_RECENT)..].iter().map(|(x, v)| entry(x, *v)).collect();
    let pending = input.pending.iter().map(|x| view.show(x)).collect();
    let model = match input.model {
        None => obj(vec![("predictions", Json::Array(Vec::new())), ("importance", Json::Object(BTreeMap::new()))]),
        Some(m) => {
            let preds = m
                .predictions
                .iter()
                .map(|(x, mean, std)| {
                    obj(vec![
                        ("params", view.show(x)),
                        ("mean", Json::Number(round_sig(*mean, 4))),
                        ("std", Json::Number(round_sig(*std, 4))),
                    ])
                })
                .collect();
            let imp = m
                .importance
                .iter()
                .enumerate()
                .filter(|(j, _)| *j < view.space.dim())
                .map(|(j, s)| (view.names[j].clone(), Json::Number((s * 1000.0).round() / 1000.0)))
                .collect();
            obj(vec![("predictions", Json::Array(preds)), ("importance", Json::Object(imp))])
        }
    };
    obj(vec![
        ("objective", Json::String(view.objective(input.objective).into())),
        (
            "direction",
            Json::String(match input.direction {
                Direction::Minimize => "minimize".into(),
                Direction::Maximize => "maximize".into(),
            }),
        ),
        ("parameters", view.parameters()),
        ("best", Json::Array(best)),
        ("recent", Json::Array(recent)),
        ("pending", Json::Array(pending)),
        ("model", model),
        ("count", Json::Number(input.count as f64)),
    ])
}

const SYSTEM: &str = "You help optimize a black-box objective by proposing parameter configurations to \
evaluate next. You get the study's state as JSON: the parameters and their bounds, the best and the most \
recent trials, the trials still running, and a Gaussian-process model's view: its own next picks with \
their predicted mean and std, and each parameter's share of importance. \
Answer with one JSON object {\"proposals\": [...]} and nothing else. Each proposal is an object that sets \
every parameter by its name and nothing more: a number inside [low, high] for a float, an integer inside \
[low, high] for an int, one of the listed strings for a choice. Propose configurations likely to improve on \
the best value, each different from every trial shown and from the other proposals.";

/// How to call the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `None`: the study's configured model.
    pub model: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
}

/// The chat request and the answer's schema for `input.count` proposals.
pub fn request(view: &View, input: &PromptInput, settings: &Settings) -> (ChatRequest, Json) {
    let k = input.count.clamp(1, MAX_PER_CALL);
    let goal = match input.direction {
        Direction::Minimize => "minimize",
        Direction::Maximize => "maximize",
    };
    let user = format!(
        "Propose {k} new configuration{s} to {goal} `{obj}`. Improve on the best trials where the model is \
         confident and explore where it is uncertain; do not repeat a trial that is shown.\n\n```json\n{state}\n```",
        s = if k == 1 { "" } else { "s" },
        obj = view.objective(input.objective),
        state = state(view, &PromptInput { count: k, ..*input }),
    );
    let req = ChatRequest {
        model: settings.model.clone(),
        messages: vec![Message::system(SYSTEM), Message::user(&user)],
        temperature: settings.temperature,
        max_tokens: settings.max_tokens,
        json: true,
    };
    (req, view.schema(k))
}

/// Why the LLM gave no usable proposal: `kind` is an [`LlmError::kind`] or "invalid-answer" /
/// "no-new-proposal".
#[derive(Clone, Debug, PartialEq)]
pub struct Fallback {
    pub kind: &'static str,
    pub message: String,
}

impl From<LlmError> for Fallback {
    fn from(e: LlmError) -> Fallback {
        Fallback { kind: e.kind(), message: e.message().to_string() }
    }
}

/// The usable part of an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// New, valid proposals (at most `count`), as snapped unit-cube points.
    pub points: Vec<Vec<f64>>,
    pub rejected: Vec<String>,
    pub duplicates: usize,
    pub clamped: usize,
    pub response: ChatResponse,
}

/// Asks for `input.count` proposals; `taken` are points they must not repeat (finished,
/// pending, already chosen). Err: nothing usable, and why.
pub fn ask(view: &View, input: &PromptInput, settings: &Settings, taken: &[Vec<f64>]) -> Result<Answer, Fallback> {
    let (req, schema) = request(view, input, settings);
    let response = chat_structured(&req, SCHEMA_NAME, &schema)?;
    let parsed =
        view.parse_answer(&response.content).map_err(|message| Fallback { kind: "invalid-answer", message })?;
    let n_valid = parsed.points.len();
    let (mut points, duplicates) = dedupe(view.space(), parsed.points, taken);
    points.truncate(input.count.clamp(1, MAX_PER_CALL));
    if points.is_empty() {
        let (kind, message) = if n_valid == 0 {
            let why = parsed.rejected.first().cloned().unwrap_or_else(|| "the proposal list is empty".into());
            ("invalid-answer", format!("no valid proposal ({why})"))
        } else {
            ("no-new-proposal", format!("all {n_valid} valid proposals repeat known trials"))
        };
        return Err(Fallback { kind, message });
    }
    Ok(Answer { points, rejected: parsed.rejected, duplicates, clamped: parsed.clamped, response })
}

/// Logs fallbacks: one `warn!` per reason kind per `every` trials (the host caps log volume too).
#[derive(Clone, Debug)]
pub struct FallbackLog {
    every: usize,
    last: BTreeMap<&'static str, usize>,
}

impl Default for FallbackLog {
    fn default() -> Self {
        FallbackLog { every: 10, last: BTreeMap::new() }
    }
}

impl FallbackLog {
    /// Reports that the trial at `position` fell back to `to`; returns whether it was logged.
    pub fn report(&mut self, position: usize, why: &Fallback, to: &str) -> bool {
        if let Some(&p) = self.last.get(why.kind)
            && position < p + self.every
        {
            return false;
        }
        self.last.insert(why.kind, position);
        crate::warn!(
            "llm: trial {position}: {} ({}); {to} proposes it instead (further `{}` fallbacks in the next {} trials are not logged)",
            why.kind,
            why.message,
            why.kind,
            self.every
        );
        true
    }
}

/// The share schedule: whether the trial at `position` goes to the LLM, so that any window of
/// consecutive positions sends `share` of its trials (±1), at a phase drawn from `seed`.
pub fn share_picks(seed: u64, position: usize, share: f64) -> bool {
    if share <= 0.0 {
        return false;
    }
    if share >= 1.0 {
        return true;
    }
    let phase = Rng::derive(seed, 0x11a_5a4e).f64();
    let p = position as f64;
    ((p + 1.0) * share + phase).floor() > (p * share + phase).floor()
}

/// The prototype's exploration factor after `t` model-based trials: `max(0.2, 0.7 − 0.05·⌊t/10⌋)`,
/// `+0.2` (at most 1) on a plateau. Above 0.5 the prototype asked the LLM.
pub fn prototype_factor(t: usize, plateau: bool) -> f64 {
    let e = (0.7 - 0.05 * (t / 10) as f64).max(0.2);
    if plateau { (e + 0.2).min(1.0) } else { e }
}

/// The best value after each finished trial (lower is better), for plateau detection.
#[derive(Clone, Debug, Default)]
pub struct BestTrace {
    best: Vec<f64>,
}

impl BestTrace {
    /// Records outcomes using `history`'s sign convention (lower is better); failures keep the best.
    pub fn observe(&mut self, history: &History, outcomes: &[Outcome]) {
        for o in outcomes {
            let prev = self.best.last().copied().unwrap_or(f64::INFINITY);
            let v = match (o.status, o.value) {
                // to_study_value is its own inverse: it turns a reported value into "lower is better".
                (Status::Completed, Some(v)) if v.is_finite() => history.to_study_value(v),
                _ => f64::INFINITY,
            };
            self.best.push(prev.min(v));
        }
    }

    /// No improvement of the best value in the last `patience` finished trials.
    pub fn plateau(&self, patience: usize) -> bool {
        let n = self.best.len();
        n > patience && self.best[n - 1] >= self.best[n - 1 - patience]
    }
}

/// Unit-cube points of pending trials that fit the space (a re-export for LLM plugins' batches).
pub fn pending_points(space: &Space, pending: &[Trial]) -> Vec<Vec<f64>> {
    crate::history::encode_trials(space, pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Assignment, Param, Value};

    fn space() -> Space {
        Space::new(&[
            Param::float("x", -5.0, 10.0),
            Param::log_float("lr", 1e-5, 1e-1),
            Param::int("n", 1, 4),
            Param::choice("model", &["resnet", "vgg"]),
        ])
        .unwrap()
    }

    #[test]
    fn parse_clamps_rounds_and_rejects() {
        let v = View::new(&space(), false, false, 1);
        let p = v
            .parse_answer(
                r#"{"proposals": [
                {"x": 20, "lr": 0.001, "n": 2.6, "model": "vgg"},
                {"x": 1, "lr": 0.001, "n": 2, "model": "alexnet"},
                {"x": 1, "lr": 0.001, "n": 2},
                {"x": 1, "lr": 0.001, "n": 2, "model": "vgg", "extra": 1},
                {"x": "1", "lr": 0.001, "n": 2, "model": "vgg"},
                {"x": 1e999, "lr": 0.001, "n": 2, "model": "vgg"},
                7
            ]}"#,
            )
            .unwrap();
        assert_eq!(p.points.len(), 1, "{:?}", p.rejected);
        assert_eq!(p.clamped, 1);
        let a = v.space().decode(&p.points[0]);
        assert_eq!(a[0].value, Value::Float(10.0));
        assert!((a[1].value.as_f64().unwrap() - 0.001).abs() < 1e-12);
        assert_eq!(a[2].value, Value::Int(3));
        assert_eq!(a[3].value, Value::Choice("vgg".into()));
        assert_eq!(p.rejected.len(), 6);
        assert!(p.rejected[0].contains("unknown choice"), "{}", p.rejected[0]);
        assert!(p.rejected[1].contains("missing"));
        assert!(p.rejected[2].contains("unknown key `extra`"));
        assert!(p.rejected[3].contains("not a number"));
        assert!(p.rejected[4].contains("not finite"));
        assert!(v.parse_answer("Sure! Here are some").is_err());
        assert!(v.parse_answer(r#"{"ideas": []}"#).is_err());
        assert!(v.parse_answer("{\"proposals\": [{\"x\": NaN}]}").is_err());
    }

    #[test]
    fn rename_and_shift_round_trip() {
        let s = space();
        let v = View::new(&s, true, true, 9);
        assert_eq!(v.name(0), "x1");
        assert_eq!(v.objective("branin"), "objective");
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let x = s.sample(&mut rng);
            let shown = v.show(&x);
            // Shown names and labels only: nothing of the real space leaks.
            let text = shown.to_string();
            assert!(!text.contains("lr") && !text.contains("resnet") && !text.contains("vgg"), "{text}");
            let (back, clamped) = v.parse_one(&shown).unwrap();
            assert!(!clamped);
            assert_eq!(s.decode(&back)[2..], s.decode(&x)[2..]);
            assert!(s.same_point(&back, &x, DUPLICATE_TOL), "{x:?} -> {text} -> {back:?}");
        }
        // Shown ranges are [o, o+100] for floats, [o, o+3] for the 4-valued int, log dropped.
        let params = v.parameters().to_string();
        let Json::Array(ps) = v.parameters() else { panic!() };
        let lo = ps[0].get("low").unwrap().as_f64().unwrap();
        assert_eq!(ps[0].get("high").unwrap().as_f64().unwrap(), lo + 100.0);
        let ilo = ps[2].get("low").unwrap().as_f64().unwrap();
        assert_eq!(ps[2].get("high").unwrap().as_f64().unwrap(), ilo + 3.0);
        assert_eq!(ps[1].get("log"), Some(&Json::Bool(false)));
        assert!(params.contains("\"c1\""));
        // Without the guard, values are the real ones.
        let plain = View::new(&s, false, false, 9);
        let x = s.encode(&[
            Assignment { name: "x".into(), value: Value::Float(2.5) },
            Assignment { name: "lr".into(), value: Value::Float(1e-3) },
            Assignment { name: "n".into(), value: Value::Int(2) },
            Assignment { name: "model".into(), value: Value::Choice("vgg".into()) },
        ]);
        let shown = plain.show(&x.unwrap());
        assert_eq!(shown.to_string(), r#"{"lr":0.001,"model":"vgg","n":2,"x":2.5}"#);
    }

    #[test]
    fn schema_has_the_contract_shape() {
        let v = View::new(&space(), false, false, 0);
        let s = v.schema(3).to_string();
        assert_eq!(
            s,
            concat!(
                r#"{"properties":{"proposals":{"items":{"additionalProperties":false,"properties":{"#,
                r#""lr":{"maximum":0.1,"minimum":1e-5,"type":"number"},"#,
                r#""model":{"enum":["resnet","vgg"],"type":"string"},"#,
                r#""n":{"maximum":4,"minimum":1,"type":"integer"},"#,
                r#""x":{"maximum":10,"minimum":-5,"type":"number"}},"#,
                r#""required":["x","lr","n","model"],"type":"object"},"maxItems":3,"minItems":1,"type":"array"}},"#,
                r#""required":["proposals"],"type":"object"}"#
            )
        );
    }

    #[test]
    fn dedupe_against_taken_and_itself() {
        let s = Space::new(&[Param::float("a", 0.0, 1.0), Param::int("b", 0, 9)]).unwrap();
        let taken = vec![s.snap(&[0.5, 0.5])];
        let pts = vec![s.snap(&[0.5 + 1e-8, 0.52]), s.snap(&[0.2, 0.1]), s.snap(&[0.2, 0.1]), s.snap(&[0.3, 0.1])];
        let (kept, dropped) = dedupe(&s, pts, &taken);
        assert_eq!(dropped, 2);
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn state_block_carries_best_recent_pending_model() {
        let s = Space::new(&[Param::float("a", 0.0, 1.0)]).unwrap();
        let v = View::new(&s, false, false, 0);
        let mut log = TrialLog::default();
        for i in 0..30 {
            log.trials.push((vec![i as f64 / 30.0], if i == 29 { None } else { Some((i as f64 - 10.0).abs()) }));
        }
        let pending = vec![vec![0.99]];
        let model = ModelSummary { predictions: vec![(vec![0.4], 0.123456, 0.5)], importance: vec![1.0] };
        let input = PromptInput {
            objective: "loss",
            direction: Direction::Minimize,
            log: &log,
            pending: &pending,
            model: Some(&model),
            count: 2,
        };
        let st = state(&v, &input);
        let Some(Json::Array(best)) = st.get("best") else { panic!() };
        assert_eq!(best.len(), N_BEST);
        assert_eq!(best[0].get("value"), Some(&Json::Number(0.0)));
        assert_eq!(best[0].get("params").unwrap().get("a"), Some(&Json::Number(0.3333333)));
        let Some(Json::Array(recent)) = st.get("recent") else { panic!() };
        assert_eq!(recent.len(), N_RECENT);
        assert_eq!(recent[19].get("value"), Some(&Json::Null));
        assert_eq!(st.get("pending").unwrap().to_string(), r#"[{"a":0.99}]"#);
        assert_eq!(
            st.get("model").unwrap().to_string(),
            r#"{"importance":{"a":1},"predictions":[{"mean":0.1235,"params":{"a":0.4},"std":0.5}]}"#
        );
        assert_eq!(st.get("count"), Some(&Json::Number(2.0)));
        let (req, _) = request(&v, &input, &Settings { model: None, temperature: Some(0.7), max_tokens: None });
        assert_eq!(req.messages.len(), 2);
        let user = &req.messages[1].content;
        assert_eq!(user.matches("```json").count(), 1);
        let block = user.split("```json\n").nth(1).unwrap().split("\n```").next().unwrap();
        assert_eq!(Json::parse(block).unwrap(), st);
        // Maximization ranks the other way.
        let st = state(&v, &PromptInput { direction: Direction::Maximize, ..input });
        let Some(Json::Array(best)) = st.get("best") else { panic!() };
        assert_eq!(best[0].get("value"), Some(&Json::Number(18.0)));
    }

    #[test]
    fn share_schedule_is_exact_and_seeded() {
        for seed in 0..5 {
            for start in [0, 10, 37] {
                let n = (start..start + 100).filter(|&p| share_picks(seed, p, 0.3)).count();
                assert!((29..=31).contains(&n), "seed {seed}: {n}");
            }
        }
        let a: Vec<bool> = (0..20).map(|p| share_picks(1, p, 0.3)).collect();
        let b: Vec<bool> = (0..20).map(|p| share_picks(2, p, 0.3)).collect();
        assert_ne!(a, b);
        assert!(!share_picks(1, 3, 0.0) && share_picks(1, 3, 1.0));
        assert_eq!(prototype_factor(0, false), 0.7);
        assert!((prototype_factor(25, false) - 0.6).abs() < 1e-12);
        assert_eq!(prototype_factor(500, false), 0.2);
        assert!((prototype_factor(500, true) - 0.4).abs() < 1e-12);
    }

    #[test]
    fn fallback_log_is_rate_limited_per_kind() {
        let mut l = FallbackLog::default();
        let f = |k| Fallback { kind: k, message: "m".into() };
        assert!(l.report(20, &f("auth"), "the GP"));
        assert!(!l.report(25, &f("auth"), "the GP"));
        assert!(l.report(25, &f("invalid-answer"), "the GP"));
        assert!(l.report(30, &f("auth"), "the GP"));
    }
}
