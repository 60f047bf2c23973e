//! `alcf-host report STUDY`: one self-contained HTML file (every figure an inline SVG, no network
//! needed to open it) with a PNG and an SVG of each figure beside it, in `<study>/report/`.
//!
//! Figures: best-so-far over trials and over wall time; the objective against each parameter
//! (log axes where the space is log); parallel coordinates; parameter importance; an exploration
//! heatmap of the two most important parameters; outcomes over time (with failure reasons grouped
//! in a table); the job timeline (one lane per slot); per-epoch learning curves of the best
//! trials; and the LLM calls when the strategy made any.
//!
//! Parameter importance is the first-order term of a functional ANOVA, estimated by binning: the
//! share of the objective's variance (of its ranks, so one huge loss does not dominate) that each
//! parameter's binned mean explains, less what binning noise alone would explain.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value as Json;

use alcf_host::config::Direction;
use alcf_host::space::{Domain, Param, SearchSpace};
use alcf_host::study::llm_log::LlmCallRow;
use alcf_host::study::{StudyDb, StudyMeta, TrialRow, TrialState};

use super::compare::plot::{COLORS, register_font, write_png};

const SIZE: (u32, u32) = (960, 540);
/// Bins per continuous parameter for importance and the heatmap.
const BINS: usize = 10;

/// `alcf-host report NAME`: writes the report; returns the HTML file's path.
pub fn study_report(root: &Path, name: &str, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let (dir, db) = super::study::open_study(root, name)?;
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| dir.join("report"));
    let html = write_report(&db, &out)?;
    crate::cli::console(&format!("report of study {name}: {}", html.display()));
    Ok(html)
}

/// Writes `index.html` and each figure's `.svg` and `.png` into `out`.
pub fn write_report(db: &StudyDb, out: &Path) -> anyhow::Result<PathBuf> {
    let data = Data::load(db)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let figures = figures(&data, true)?;
    for f in &figures {
        std::fs::write(out.join(format!("{}.svg", f.id)), &f.svg)
            .with_context(|| format!("cannot write {}", out.display()))?;
        if let Some(png) = &f.png {
            write_png(&out.join(format!("{}.png", f.id)), png, SIZE, png::Compression::Fast)?;
        }
    }
    let path = out.join("index.html");
    std::fs::write(&path, html(&data, &figures, "")).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The report page of `db` in memory, SVG only (the dashboard); `tail` goes before `</body>`.
pub fn page(db: &StudyDb, tail: &str) -> anyhow::Result<String> {
    let data = Data::load(db)?;
    let figures = figures(&data, false)?;
    Ok(html(&data, &figures, tail))
}

pub struct Figure {
    id: &'static str,
    title: &'static str,
    svg: String,
    png: Option<Vec<u8>>,
}

fn figures(data: &Data, with_png: bool) -> anyhow::Result<Vec<Figure>> {
    register_font();
    let mut figures = Vec::new();
    macro_rules! figure {
        ($id:expr, $title:expr, $draw:ident) => {{
            // Each drawing function is generic over the backend: once as SVG text, once as RGB.
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
                $draw(&root, data)?;
                root.present().map_err(err)?;
            }
            let png = if with_png {
                let mut png = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
                {
                    let root = BitMapBackend::with_buffer(&mut png, SIZE).into_drawing_area();
                    $draw(&root, data)?;
                    root.present().map_err(err)?;
                }
                Some(png)
            } else {
                None
            };
            figures.push(Figure { id: $id, title: $title, svg, png });
        }};
    }
    figure!("best_trials", "Best so far, over trials", draw_best_trials);
    figure!("best_time", "Best so far, over wall time", draw_best_time);
    figure!("params", "The objective against each parameter", draw_params);
    figure!("parallel", "Parallel coordinates of all completed trials", draw_parallel);
    figure!("importance", "Parameter importance (first-order, binned)", draw_importance);
    figure!("heatmap", "Exploration of the two most important parameters", draw_heatmap);
    figure!("outcomes", "Outcomes over time", draw_outcomes);
    figure!("timeline", "Job timeline (one lane per slot)", draw_timeline);
    figure!("curves", "Learning curves of the best trials", draw_curves);
    if !data.llm.is_empty() {
        figure!("llm", "LLM calls: latency and tokens", draw_llm);
    }
    Ok(figures)
}

struct Done {
    id: u64,
    value: f64,
    /// Each parameter on [0, 1] (log-aware; a choice by its index).
    unit: Vec<f64>,
    /// Each parameter as plotted on its own axis (the value, or a choice's index).
    raw: Vec<f64>,
    finished: f64,
}

struct Data {
    meta: StudyMeta,
    space: SearchSpace,
    direction: Direction,
    trials: Vec<TrialRow>,
    done: Vec<Done>,
    llm: Vec<LlmCallRow>,
    importance: Vec<(usize, f64)>,
    t0: f64,
}

impl Data {
    fn load(db: &StudyDb) -> anyhow::Result<Data> {
        let meta = db.meta()?;
        let space = SearchSpace::from_json(&meta.space).map_err(|e| anyhow!("the stored space: {e}"))?;
        let direction = Direction::parse(&meta.direction).unwrap_or_default();
        let trials = db.trials()?;
        let done: Vec<Done> = trials
            .iter()
            .filter(|t| t.state == TrialState::Completed)
            .filter_map(|t| {
                let value = t.value.filter(|v| v.is_finite())?;
                let (unit, raw) = space.params().iter().map(|p| position(p, t.params.get(&p.name))).unzip();
                Some(Done { id: t.id, value, unit, raw, finished: t.finished_at.unwrap_or(t.created_at) })
            })
            .collect();
        let llm = db.llm_calls().unwrap_or_default();
        let mut importance = importance(&space, &done, direction);
        importance.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        let t0 = trials.iter().map(|t| t.created_at).fold(meta.created_at, f64::min);
        Ok(Data { meta, space, direction, trials, done, llm, importance, t0 })
    }

    fn objective(&self) -> &str {
        &self.meta.objective
    }

    fn better(&self, a: f64, b: f64) -> bool {
        self.direction.better(a, b)
    }

    /// Completed trials, best first.
    fn ranked(&self) -> Vec<&Done> {
        let mut v: Vec<&Done> = self.done.iter().collect();
        v.sort_by(|a, b| {
            let o = a.value.partial_cmp(&b.value).unwrap_or(std::cmp::Ordering::Equal);
            if self.direction == Direction::Maximize { o.reverse() } else { o }
        });
        v
    }
}

/// A parameter's value on [0, 1] and on its own axis.
fn position(p: &Param, v: Option<&Json>) -> (f64, f64) {
    match (&p.domain, v) {
        (Domain::Float { low, high, log }, Some(j)) => {
            let x = j.as_f64().unwrap_or(*low);
            (unit(x, *low, *high, *log), x)
        }
        (Domain::Int { low, high, log }, Some(j)) => {
            let x = j.as_f64().unwrap_or(*low as f64);
            (unit(x, *low as f64, *high as f64, *log), x)
        }
        (Domain::Choice(cs), Some(j)) => {
            let i = cs.iter().position(|c| &c.json == j).unwrap_or(0) as f64;
            (if cs.len() > 1 { i / (cs.len() - 1) as f64 } else { 0.5 }, i)
        }
        _ => (0.5, 0.0),
    }
}

fn unit(x: f64, low: f64, high: f64, log: bool) -> f64 {
    let (x, low, high) = if log && low > 0.0 { (x.max(low).ln(), low.ln(), high.ln()) } else { (x, low, high) };
    if high > low { ((x - low) / (high - low)).clamp(0.0, 1.0) } else { 0.5 }
}

/// The bin of a parameter's unit position: a choice's index, else one of `BINS` equal bins.
fn bin_of(p: &Param, unit: f64) -> usize {
    match &p.domain {
        Domain::Choice(cs) if cs.len() > 1 => (unit * (cs.len() - 1) as f64).round() as usize,
        Domain::Choice(_) => 0,
        Domain::Int { low, high, .. } if ((high - low) as usize) < BINS => {
            (unit * (high - low) as f64).round() as usize
        }
        _ => ((unit * BINS as f64) as usize).min(BINS - 1),
    }
}

fn bins(p: &Param) -> usize {
    match &p.domain {
        Domain::Choice(cs) => cs.len().max(1),
        Domain::Int { low, high, .. } if ((high - low) as usize) < BINS => (high - low) as usize + 1,
        _ => BINS,
    }
}

/// First-order importance per parameter (index, share); see the module documentation.
fn importance(space: &SearchSpace, done: &[Done], direction: Direction) -> Vec<(usize, f64)> {
    let n = done.len();
    if n < 8 {
        return Vec::new();
    }
    // Ranks of the objective, best = highest, ties averaged.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| done[a].value.partial_cmp(&done[b].value).unwrap_or(std::cmp::Ordering::Equal));
    let mut rank = vec![0.0; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && done[order[j + 1]].value == done[order[i]].value {
            j += 1;
        }
        for k in i..=j {
            rank[order[k]] = (i + j) as f64 / 2.0;
        }
        i = j + 1;
    }
    if direction == Direction::Minimize {
        for r in &mut rank {
            *r = (n - 1) as f64 - *r;
        }
    }
    let mean = rank.iter().sum::<f64>() / n as f64;
    let total: f64 = rank.iter().map(|r| (r - mean).powi(2)).sum();
    if total <= 0.0 {
        return Vec::new();
    }
    let raw: Vec<(usize, f64)> = space
        .params()
        .iter()
        .enumerate()
        .map(|(pi, p)| {
            let b = bins(p);
            let mut sum = vec![0.0; b];
            let mut cnt = vec![0usize; b];
            for (d, r) in done.iter().zip(&rank) {
                let k = bin_of(p, d.unit[pi]).min(b - 1);
                sum[k] += r;
                cnt[k] += 1;
            }
            let used = cnt.iter().filter(|c| **c > 0).count();
            let between: f64 = sum
                .iter()
                .zip(&cnt)
                .filter(|(_, c)| **c > 0)
                .map(|(s, c)| *c as f64 * (s / *c as f64 - mean).powi(2))
                .sum();
            // What `used` bins of pure noise would explain, on average.
            let noise = total * (used.saturating_sub(1)) as f64 / (n - 1) as f64;
            (pi, ((between - noise) / total).max(0.0))
        })
        .collect();
    let sum: f64 = raw.iter().map(|(_, s)| s).sum();
    if sum <= 0.0 {
        return raw.into_iter().map(|(i, _)| (i, 0.0)).collect();
    }
    raw.into_iter().map(|(i, s)| (i, s / sum)).collect()
}

/// Lanes for the timeline: each trial in the first lane free at its start (as slots are handed out).
fn lanes(trials: &[TrialRow]) -> Vec<(usize, &TrialRow)> {
    let mut order: Vec<&TrialRow> = trials.iter().filter(|t| t.started_at.is_some()).collect();
    order.sort_by(|a, b| a.started_at.partial_cmp(&b.started_at).unwrap_or(std::cmp::Ordering::Equal));
    let mut free_at: Vec<f64> = Vec::new();
    let mut out = Vec::new();
    for t in order {
        let start = t.started_at.unwrap_or(0.0);
        let end = t.finished_at.unwrap_or(f64::INFINITY);
        let lane = match free_at.iter().position(|f| *f <= start) {
            Some(l) => l,
            None => {
                free_at.push(0.0);
                free_at.len() - 1
            }
        };
        free_at[lane] = end;
        out.push((lane, t));
    }
    out
}

/// Seconds, minutes or hours, whichever reads best for a span of `span` seconds.
fn time_unit(span: f64) -> (f64, &'static str) {
    if span < 180.0 {
        (1.0, "seconds since the study started")
    } else if span < 3.0 * 3600.0 {
        (60.0, "minutes since the study started")
    } else {
        (3600.0, "hours since the study started")
    }
}

/// The span of the study so far, in seconds.
fn span(d: &Data) -> f64 {
    d.trials.iter().filter_map(|t| t.finished_at.or(t.started_at)).fold(d.t0, f64::max) - d.t0
}

fn err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("drawing a figure failed: {e}")
}

fn empty<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, text: &str) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.draw(&Text::new(text.to_string(), (40, SIZE.1 as i32 / 2), ("sans-serif", 22).into_font().color(&BLACK)))
        .map_err(err)
}

fn value_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-12 * hi.abs().max(1.0));
    (lo - pad, hi + pad)
}

fn draw_best_trials<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Data) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    if d.done.is_empty() {
        return empty(root, "no completed trial yet");
    }
    let mut pts: Vec<(f64, f64)> = d.done.iter().map(|t| (t.id as f64, t.value)).collect();
    pts.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    let mut best = Vec::new();
    let mut cur: Option<f64> = None;
    for &(x, y) in &pts {
        if cur.is_none_or(|c| d.better(y, c)) {
            cur = Some(y);
        }
        best.push((x, cur.unwrap_or(y)));
    }
    let (lo, hi) = value_range(pts.iter().map(|p| p.1));
    let n = d.trials.iter().map(|t| t.id).max().unwrap_or(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..n + 1.0, lo..hi)
        .map_err(err)?;
    chart.configure_mesh().x_desc("trial").y_desc(d.objective()).draw().map_err(err)?;
    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, COLORS[7].mix(0.6).filled()))).map_err(err)?;
    chart.draw_series(LineSeries::new(best, COLORS[0].stroke_width(3))).map_err(err)?;
    Ok(())
}

fn draw_best_time<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Data) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    if d.done.is_empty() {
        return empty(root, "no completed trial yet");
    }
    let (div, unit_label) = time_unit(span(d));
    let mut pts: Vec<(f64, f64)> = d.done.iter().map(|t| ((t.finished - d.t0) / div, t.value)).collect();
    pts.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    let mut best = Vec::new();
    let mut cur: Option<f64> = None;
    for &(x, y) in &pts {
        if cur.is_none_or(|c| d.better(y, c)) {
            if let Some(c) = cur {
                best.push((x, c));
            }
            cur = Some(y);
        }
        best.push((x, cur.unwrap_or(y)));
    }
    let (lo, hi) = value_range(pts.iter().map(|p| p.1));
    let tmax = pts.last().map_or(1.0, |p| p.0).max(1e-6) * 1.02;
    let mut chart = ChartBuilder::on(root)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..tmax, lo..hi)
        .map_err(err)?;
    chart.configure_mesh().x_desc(unit_label).y_desc(d.objective()).draw().map_err(err)?;
    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, COLORS[7].mix(0.6).filled()))).map_err(err)?;
    chart.draw_series(LineSeries::new(best, COLORS[1].stroke_width(3))).map_err(err)?;
    Ok(())
}

/// The axis range of a parameter as plotted (a choice by index).
fn axis(p: &Param) -> (f64, f64, bool) {
    match &p.domain {
        Domain::Float { low, high, log } => (*low, *high, *log && *low > 0.0),
        Domain::Int { low, high, log } => (*low as f64, *high as f64, *log && *low > 0),
        Domain::Choice(cs) => (-0.5, cs.len() as f64 - 0.5, false),
    }
}

fn draw_params<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Data) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let params = d.space.params();
    if d.done.is_empty() || params.is_empty() {
        return empty(root, "no completed trial yet");
    }
    let shown = params.len().min(12);
    let cols = shown.clamp(1, 3);
    let rows = shown.div_ceil(cols);
    let (lo, hi) = value_range(d.done.iter().map(|t| t.value));
    let areas = root.split_evenly((rows, cols));
    for (pi, area) in areas.iter().enumerate().take(shown) {
        let p = &params[pi];
        let (a, b, log) = axis(p);
        let pts: Vec<(f64, f64)> = d.done.iter().map(|t| (t.raw[pi], t.value)).collect();
        let labels: Vec<String> = match &p.domain {
            Domain::Choice(cs) => cs.iter().map(|c| c.label.clone()).collect(),
            _ => Vec::new(),
        };
        let fmt = |v: &f64| -> String {
            if labels.is_empty() {
                alcf_host::space::Assignment::format_float(*v)
            } else {
                let i = v.round();
                if (v - i).abs() < 1e-9 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            }
        };
        let mut builder = ChartBuilder::on(area);
        builder.caption(&p.name, ("sans-serif", 16)).margin(8).x_label_area_size(28).y_label_area_size(56);
        if log {
            let mut chart = builder.build_cartesian_2d((a..b).log_scale(), lo..hi).map_err(err)?;
            chart.configure_mesh().x_labels(4).y_labels(5).draw().map_err(err)?;
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2, COLORS[0].mix(0.7).filled()))).map_err(err)?;
        } else {
            let mut chart = builder.build_cartesian_2d(a..b, lo..hi).map_err(err)?;
            chart
                .configure_mesh()
                .x_labels(if labels.is_empty() { 4 } else { labels.len() * 2 + 1 })
                .y_labels(5)
                .x_label_formatter(&fmt)
                .draw()
                .map_err(err)?;
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2, COLORS[0].mix(0.7).filled()))).map_err(err)?;
        }
    }
    Ok(())
}

/// A colour from worst (light) to best (dark blue) for a rank share in [0, 1].
fn shade(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t) as u8;
    RGBColor(lerp(253.0, 8.0), lerp(219.0, 48.0), lerp(160.0, 107.0))
}

fn draw_parallel<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Data) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let params = d.space.params();
    if d.done.is_empty() || params.is_empty() {
        return empty(root, "no completed trial yet");
    }
    let k = params.len() + 1; // the objective is the last axis
    let mut chart = ChartBuilder::on(root)
        .margin(24)
        .x_label_area_size(40)
        .y_label_area_size(40)
        .build_cartesian_2d(-0.2..(k - 1) as f64 + 0.2, -0.05..1.05)
        .map_err(err)?;
    let names: Vec<String> = params.iter().map(|p| p.name.clone()).chain([d.objective().to_string()]).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_labels(k * 2)
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-9 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|_| String::new())
        .draw()
        .map_err(err)?;
    let (lo, hi) = value_range(d.done.iter().map(|t| t.value));
    let ranked = d.ranked();
    let n = ranked.len().max(2) as f64;
    // Worst first, so the best are drawn on top.
    for (r, t) in ranked.iter().enumerate().rev() {
        let good = 1.0 - r as f64 / (n - 1.0);
        let y_obj = (t.value - lo) / (hi - lo);
        let pts: Vec<(f64, f64)> =
            t.unit.iter().enumerate().map(|(i, u)| (i as f64, *u)).chain([((k - 1) as f64, y_obj)]).collect();
        let width = if r == 0 { 3 } else { 1 };
        chart.draw_series(LineSeries::new(pts, shade(good).mix(0.8).stroke_width(width))).map_err(err)?;
    }
    for i in 0..k {
        chart.draw_series(LineSeries::new([(i as f64, 0.0), (i as f64, 1.0)], BLACK.stroke_width(1))).map_err(err)?;
    }
    Ok(())
}

fn draw_importance<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Data) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    if d.importance.is_empty() {
        return empty(root, "at least 8 completed trials with different values are needed");
    }
    let params = d.space.params();
    let k = d.importance.len();
    let names: Vec<String> = d.importance.iter().map(|(i, _)| params[*i].name.clone()).collect();
    let mut chart = ChartBuilder::on(root)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(140)
        .build_cartesian_2d(0.0..1.0, -0.5..k as f64 - 0.5)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(k * 2 + 1)
        .y_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-9 && i >= 0.0 {
                names.get(k - 1 - i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("share of the explained variance")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(d.importance.iter().enumerate().map(|(r, (_, s))| {
            let y = (k - 1 - r) as f64;
            Rectangle::new([(0.0, y - 0.35), (*s, y + 0.35)], COLORS[0].filled())
        }))
        .map_err(err)?;
    Ok(())
}

fn draw_heatmap<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Data) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let params = d.space.params();
    let pair: Vec<usize> = if d.importance.len() >= 2 {
        vec![d.importance[0].0, d.importance[1].0]
    } else if params.len() >= 2 {
        vec![0, 1]
    } else {
        return empty(root, "the space has fewer than two parameters");
    };
    if d.done.is_empty() {
        return empty(root, "no completed trial yet");
    }
    let (px, py) = (&params[pair[0]], &params[pair[1]]);
    let (bx, by) = (bins(px), bins(py));
    let mut cells = vec![(0.0, 0usize); bx * by];
    let (lo, hi) = value_range(d.done.iter().map(|t| t.value));
    for t in &d.done {
        let (i, j) = (bin_of(px, t.unit[pair[0]]).min(bx - 1), bin_of(py, t.unit[pair[1]]).min(by - 1));
        let c = &mut cells[j * bx + i];
        c.0 += t.value;
        c.1 += 1;
    }
    let mut chart = ChartBuilder::on(root)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..bx as f64, 0.0..by as f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(format!("{} (bins of its range{})", px.name, if axis(px).2 { ", log" } else { "" }))
        .y_desc(format!("{} (bins{})", py.name, if axis(py).2 { ", log" } else { "" }))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(cells.iter().enumerate().filter(|(_, c)| c.1 > 0).map(|(k, c)| {
            let (i, j) = ((k % bx) as f64, (k / bx) as f64);
            let mean = c.0 / c.1 as f64;
            let mut good = (mean - lo) / (hi - lo);
            if d.direction == Direction::Minimize {
                good = 1.0 - good;
            }
            Rectangle::new([(i, j), (i + 1.0, j + 1.0)], shade(good).filled())
        }))
        .map_err(err)?;
    chart
        .draw_series(d.done.iter().map(|t| {
            let x = t.unit[pair[0]] * bx as f64;
            let y = t.unit[pair[1]] * by as f64;
            Circle::new((x.min(bx as f64 - 0.01), y.min(by as f64 - 0.01)), 2, BLACK.mix(0.5).filled())
        }))
        .map_err(err)?;
    Ok(())
}

fn draw_outcomes<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Data) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let (div, unit_label) = time_unit(span(d));
    let ended: Vec<(f64, TrialState)> = d
        .trials
        .iter()
        .filter(|t| t.state.is_finished())
        .map(|t| ((t.finished_at.unwrap_or(t.created_at) - d.t0) / div, t.state))
        .collect();
    if ended.is_empty() {
        return empty(root, "no trial has ended yet");
    }
    let tmax = ended.iter().map(|e| e.0).fold(0.0, f64::max).max(1e-6);
    let nb = 20usize;
    let mut counts = vec![[0usize; 3]; nb];
    for (t, s) in &ended {
        let b = ((t / tmax * nb as f64) as usize).min(nb - 1);
        let k = match s {
            TrialState::Completed | TrialState::Pruned => 0,
            TrialState::Failed => 1,
            _ => 2,
        };
        counts[b][k] += 1;
    }
    let ymax = counts.iter().map(|c| c.iter().sum::<usize>()).max().unwrap_or(1) as f64;
    let w = tmax / nb as f64;
    let mut chart = ChartBuilder::on(root)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..tmax, 0.0..ymax * 1.1)
        .map_err(err)?;
    chart.configure_mesh().x_desc(unit_label).y_desc("trials ended").draw().map_err(err)?;
    let colors = [COLORS[2], COLORS[3], COLORS[7]];
    for (k, (label, color)) in ["completed", "failed", "cancelled"].iter().zip(colors).enumerate() {
        chart
            .draw_series(counts.iter().enumerate().map(|(b, c)| {
                let base: usize = c[..k].iter().sum();
                let x = b as f64 * w;
                Rectangle::new([(x, base as f64), (x + w * 0.9, (base + c[k]) as f64)], color.filled())
            }))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
    Ok(())
}

fn draw_timeline<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Data) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let lanes = lanes(&d.trials);
    if lanes.is_empty() {
        return empty(root, "no trial has started yet");
    }
    let now = d.t0 + span(d);
    let (div, unit_label) = time_unit(span(d));
    let tmax = ((now - d.t0) / div).max(1e-6);
    let k = lanes.iter().map(|l| l.0).max().unwrap_or(0) + 1;
    let mut chart = ChartBuilder::on(root)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..tmax * 1.02, -0.5..k as f64 - 0.5)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(k.min(24) * 2 + 1)
        .y_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-9 && i >= 0.0 { format!("{i}") } else { String::new() }
        })
        .x_desc(unit_label)
        .y_desc("slot")
        .draw()
        .map_err(err)?;
    let h = |t: f64| (t - d.t0) / div;
    // Queued: from the trial's row to its start, thin; running: to its end, by outcome.
    chart
        .draw_series(lanes.iter().map(|(l, t)| {
            let y = *l as f64;
            Rectangle::new(
                [(h(t.created_at), y - 0.08), (h(t.started_at.unwrap_or(t.created_at)), y + 0.08)],
                COLORS[7].mix(0.5).filled(),
            )
        }))
        .map_err(err)?;
    chart
        .draw_series(lanes.iter().map(|(l, t)| {
            let y = *l as f64;
            let color = match t.state {
                TrialState::Completed | TrialState::Pruned => COLORS[0],
                TrialState::Failed => COLORS[3],
                TrialState::Running => COLORS[1],
                _ => COLORS[7],
            };
            let end = t.finished_at.unwrap_or(now);
            Rectangle::new([(h(t.started_at.unwrap_or(end)), y - 0.35), (h(end), y + 0.35)], color.filled())
        }))
        .map_err(err)?;
    Ok(())
}

/// The metric of the learning curves: the objective when the curve has it, else the first key.
fn curve_metric(d: &Data) -> Option<String> {
    let keys: Vec<&String> = d.trials.iter().flat_map(|t| t.curve.iter().flat_map(|m| m.keys())).collect();
    if keys.iter().any(|k| k.as_str() == d.objective()) {
        return Some(d.objective().to_string());
    }
    keys.into_iter().find(|k| !matches!(k.as_str(), "epoch" | "step" | "time" | "elapsed_s")).cloned()
}

fn draw_curves<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Data) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let Some(metric) = curve_metric(d) else {
        return empty(root, "no trial reported per-epoch metrics (metrics.jsonl)");
    };
    let best: Vec<&TrialRow> = d
        .ranked()
        .iter()
        .filter_map(|b| d.trials.iter().find(|t| t.id == b.id))
        .filter(|t| t.curve.iter().any(|m| m.contains_key(&metric)))
        .take(5)
        .collect();
    if best.is_empty() {
        return empty(root, "the best trials reported no per-epoch metrics");
    }
    let series: Vec<(u64, Vec<(f64, f64)>)> = best
        .iter()
        .map(|t| {
            let pts = t
                .curve
                .iter()
                .enumerate()
                .filter_map(|(i, m)| m.get(&metric).filter(|v| v.is_finite()).map(|v| ((i + 1) as f64, *v)))
                .collect();
            (t.id, pts)
        })
        .collect();
    let xmax = series.iter().flat_map(|s| s.1.iter().map(|p| p.0)).fold(1.0, f64::max);
    let (lo, hi) = value_range(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(root)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(0.5..xmax + 0.5, lo..hi)
        .map_err(err)?;
    chart.configure_mesh().x_desc("epoch").y_desc(metric.as_str()).draw().map_err(err)?;
    for (i, (id, pts)) in series.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(err)?
            .label(format!("trial {id}"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
    Ok(())
}

fn draw_llm<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Data) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let pts: Vec<(f64, f64)> = d.llm.iter().enumerate().map(|(i, c)| ((i + 1) as f64, c.latency_s)).collect();
    let ymax = pts.iter().map(|p| p.1).fold(0.1, f64::max);
    let mut chart = ChartBuilder::on(root)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..pts.len() as f64 + 0.5, 0.0..ymax * 1.1)
        .map_err(err)?;
    chart.configure_mesh().x_desc("call").y_desc("latency (s)").draw().map_err(err)?;
    chart
        .draw_series(pts.iter().map(|&(x, y)| Rectangle::new([(x - 0.4, 0.0), (x + 0.4, y)], COLORS[4].filled())))
        .map_err(err)?;
    Ok(())
}

/// Text made safe for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html(d: &Data, figures: &[Figure], tail: &str) -> String {
    let count = |s: TrialState| d.trials.iter().filter(|t| t.state == s).count();
    let ranked = d.ranked();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{name} — alcf-host report</title>\n<style>\n\
         body{{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}}\
         h1{{font-size:1.6em}} h2{{font-size:1.2em;margin-top:2em}} table{{border-collapse:collapse;font-size:.9em}}\
         td,th{{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}}\
         figure{{margin:1em 0}} figure svg{{width:100%;height:auto;border:1px solid #eee}}\
         .files{{font-size:.85em;color:#666}} code{{font-size:.9em}}\n</style></head>\n<body>\n",
        name = esc(&d.meta.name)
    );
    let best = ranked.first();
    let _ = write!(
        h,
        "<h1>Study {}</h1>\n<p>Objective <b>{}</b> ({}), strategy <code>{}</code>, executor <code>{}</code>.<br>\
         {} trials: {} completed, {} failed, {} cancelled, {} running, {} pending.</p>\n",
        esc(&d.meta.name),
        esc(d.objective()),
        d.direction.as_str(),
        esc(&d.meta.plugin),
        esc(&d.meta.executor),
        d.trials.len(),
        count(TrialState::Completed),
        count(TrialState::Failed),
        count(TrialState::Cancelled),
        count(TrialState::Running),
        count(TrialState::Pending),
    );
    if let Some(b) = best
        && let Some(t) = d.trials.iter().find(|t| t.id == b.id)
    {
        let _ = writeln!(
            h,
            "<p>Best: trial {} with {} = {} — <code>{}</code></p>",
            t.id,
            esc(d.objective()),
            alcf_host::space::Assignment::format_float(b.value),
            esc(&serde_json::to_string(&t.params).unwrap_or_default())
        );
    }
    h.push_str("<nav>");
    for f in figures {
        let _ = write!(h, "<a href=\"#{}\">{}</a> · ", f.id, esc(f.title));
    }
    h.push_str("<a href=\"#failures\">Failure reasons</a> · <a href=\"#top\">Best trials</a></nav>\n");
    for f in figures {
        let id = f.id;
        let svg = f.svg.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>").trim_start();
        let _ = write!(
            h,
            "<h2 id=\"{id}\">{}</h2>\n<figure class=\"figure\" data-figure=\"{id}\">{svg}</figure>\n",
            esc(f.title)
        );
        if f.png.is_some() {
            let _ = writeln!(
                h,
                "<p class=\"files\"><a href=\"{id}.svg\">{id}.svg</a> · <a href=\"{id}.png\">{id}.png</a></p>"
            );
        }
        if id == "importance" && !d.importance.is_empty() {
            h.push_str("<table><tr><th>parameter</th><th>share</th></tr>");
            for (i, s) in &d.importance {
                let _ = write!(h, "<tr><td>{}</td><td>{:.2}</td></tr>", esc(&d.space.params()[*i].name), s);
            }
            h.push_str("</table>\n");
        }
    }
    // Failure reasons, grouped by their text (digits of ids and times kept: they are the reason).
    let mut reasons: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for t in d.trials.iter().filter(|t| t.state == TrialState::Failed) {
        let r = t.failure.clone().unwrap_or_else(|| "no reason recorded".into());
        let r: String = r.chars().take(200).collect();
        reasons.entry(r).or_default().push(t.id);
    }
    h.push_str("<h2 id=\"failures\">Failure reasons</h2>\n");
    if reasons.is_empty() {
        h.push_str("<p>No trial failed.</p>\n");
    } else {
        let mut rows: Vec<(String, Vec<u64>)> = reasons.into_iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1.len()));
        h.push_str("<table><tr><th>trials</th><th>reason</th><th>which</th></tr>");
        for (r, ids) in rows {
            let which: Vec<String> = ids.iter().take(12).map(|i| i.to_string()).collect();
            let more = if ids.len() > 12 { format!(" and {} more", ids.len() - 12) } else { String::new() };
            let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}{more}</td></tr>", ids.len(), esc(&r), which.join(", "));
        }
        h.push_str("</table>\n");
    }
    h.push_str("<h2 id=\"top\">Best trials</h2>\n<table><tr><th>trial</th><th>");
    h.push_str(&esc(d.objective()));
    h.push_str("</th>");
    for p in d.space.params() {
        let _ = write!(h, "<th>{}</th>", esc(&p.name));
    }
    h.push_str("</tr>");
    for b in ranked.iter().take(10) {
        let Some(t) = d.trials.iter().find(|t| t.id == b.id) else { continue };
        let _ = write!(h, "<tr><td>{}</td><td>{}</td>", t.id, alcf_host::space::Assignment::format_float(b.value));
        for p in d.space.params() {
            let v = t.params.get(&p.name).map_or(String::new(), |v| match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            });
            let _ = write!(h, "<td>{}</td>", esc(&v));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>\n");
    if !d.llm.is_empty() {
        let tokens: u64 = d.llm.iter().map(|c| c.prompt_tokens + c.completion_tokens).sum();
        let _ = write!(
            h,
            "<h2 id=\"llm-calls\">LLM calls</h2>\n<p>{} calls, {tokens} tokens; <code>alcf-host study llm-log {}</code> has every byte.</p>\n\
             <table><tr><th>#</th><th>model</th><th>outcome</th><th>tokens</th><th>latency (s)</th><th>answer (start)</th></tr>",
            d.llm.len(),
            esc(&d.meta.name)
        );
        for c in d.llm.iter().rev().take(50) {
            let answer: String = c.content.as_deref().unwrap_or("").chars().take(120).collect();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{:?}</td><td>{}</td><td>{:.2}</td><td><code>{}</code></td></tr>",
                c.id,
                esc(&c.model),
                c.outcome,
                c.prompt_tokens + c.completion_tokens,
                c.latency_s,
                esc(&answer)
            );
        }
        h.push_str("</table>\n");
    }
    let _ = write!(
        h,
        "<p class=\"files\">Written by alcf-host {} from the study database; `alcf-host report {}` writes it again.</p>\n\
         <script>\n// For the tests and for a reader: mark the figures that rendered (a non-empty box).\n\
         (function(){{var n=0;document.querySelectorAll('figure.figure svg').forEach(function(s){{var b=s.getBoundingClientRect();if(b.width>0&&b.height>0&&s.querySelector('rect,path,polyline,circle,text'))n++;}});document.body.setAttribute('data-figures-rendered',String(n));}})();\n\
         </script>\n{tail}</body></html>\n",
        env!("CARGO_PKG_VERSION"),
        esc(&d.meta.name)
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use alcf_host::space::Choice;

    fn space() -> SearchSpace {
        SearchSpace::new(vec![
            Param { name: "lr".into(), domain: Domain::Float { low: 1e-4, high: 1e-1, log: true } },
            Param { name: "noise".into(), domain: Domain::Float { low: 0.0, high: 1.0, log: false } },
            Param {
                name: "opt".into(),
                domain: Domain::Choice(vec![
                    Choice::from_json(Json::from("sgd")).unwrap(),
                    Choice::from_json(Json::from("adam")).unwrap(),
                ]),
            },
        ])
        .unwrap()
    }

    #[test]
    fn importance_finds_the_parameter_that_matters() {
        let s = space();
        // loss depends on lr (log) only; `noise` and `opt` are noise.
        let mut seed = 12345u64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let done: Vec<Done> = (0..200)
            .map(|i| {
                let (u_lr, u_noise, opt) = (rnd(), rnd(), (rnd() * 2.0).floor());
                let value = (u_lr - 0.3).powi(2) + 0.01 * rnd();
                Done { id: i, value, unit: vec![u_lr, u_noise, opt], raw: vec![0.0; 3], finished: 0.0 }
            })
            .collect();
        let imp = importance(&s, &done, Direction::Minimize);
        let lr = imp.iter().find(|(i, _)| *i == 0).unwrap().1;
        assert!(lr > 0.8, "{imp:?}");
        assert!(imp.iter().filter(|(i, _)| *i != 0).all(|(_, v)| *v < 0.15), "{imp:?}");
        assert!(importance(&s, &done[..5], Direction::Minimize).is_empty(), "too few trials");
    }

    #[test]
    fn positions_are_log_aware() {
        let s = space();
        let (u, raw) = position(&s.params()[0], Some(&Json::from(1e-2)));
        assert!((u - 2.0 / 3.0).abs() < 1e-12 && raw == 1e-2, "{u}");
        assert!((unit(1e-2, 1e-4, 1.0, true) - 0.5).abs() < 1e-12);
        assert_eq!(position(&s.params()[2], Some(&Json::from("adam"))), (1.0, 1.0));
    }
}
