use super::*;
use alcf_plugin_sdk::agent::{SimulatedJobs, SimulatedTrial};

/// A simulated training segment, as `SimulatedJobs` runs it.
type Segment = fn(&Params, Option<&SimulatedTrial>) -> Option<f64>;

fn study(options: &str, budget: u32) -> Study {
    let mut s = Study::new(vec![
        Param::log_float("lr", 1e-4, 1.0),
        Param::int("width", 8, 64),
        Param::choice("opt", &["sgd", "adam"]),
    ])
    .with_seed(7)
    .with_options(options)
    .with_direction(Direction::Maximize);
    s.objective = "acc".into();
    s.budget = Some(budget);
    s.parallelism = 4;
    s
}

fn lr(p: &Params) -> f64 {
    p.iter().find(|a| a.name == "lr").and_then(|a| a.value.as_f64()).unwrap()
}

/// Training as PBT sees it: a segment adds skill that depends on its learning rate (best near
/// 0.01), on top of the skill of the checkpoint it started from.
fn segment(p: &Params, parent: Option<&SimulatedTrial>) -> Option<f64> {
    let gain = 1.0 - (lr(p).log10() + 2.0).powi(2) / 4.0;
    Some(parent.and_then(|t| t.value).unwrap_or(0.0) + gain.max(0.0))
}

fn run_all(study: &Study, budget: usize) -> SimulatedJobs<Segment> {
    let mut jobs = SimulatedJobs::new(study, budget, segment as Segment);
    PbtAgent::run(study, Standing::default(), &mut jobs).unwrap();
    jobs
}

#[test]
fn runs_to_the_budget_in_generations() {
    let s = study("{}", 20);
    let jobs = run_all(&s, 20);
    assert_eq!(jobs.trials.len(), 20);
    let pbt = Pbt::new(&s, &jobs.standing()).unwrap();
    let generations = pbt.generations();
    for g in 0..5 {
        assert_eq!(generations.values().filter(|&&x| x == g).count(), 4, "generation {g}: {generations:?}");
    }
    // Generation 0 has no parents; every later trial starts from a trial of the generation before.
    for t in &jobs.trials {
        match t.parent {
            None => assert_eq!(generations[&t.id], 0),
            Some(p) => assert_eq!(generations[&p] + 1, generations[&t.id]),
        }
    }
}

#[test]
fn exploiting_checkpoints_beats_training_from_scratch() {
    let s = study("{}", 24);
    let jobs = run_all(&s, 24);
    let best_pbt = jobs.trials.iter().filter_map(|t| t.value).fold(f64::MIN, f64::max);
    // The same budget of independent random trials (each from scratch).
    let mut rng = Rng::new(7);
    let space = Space::new(&s.space).unwrap();
    let best_random =
        (0..24).map(|_| segment(&space.decode(&space.sample(&mut rng)), None).unwrap()).fold(f64::MIN, f64::max);
    assert!(best_pbt > 2.0 * best_random, "pbt {best_pbt} vs random {best_random}");
}

#[test]
fn the_bottom_exploits_the_top_and_held_parameters_never_change() {
    let s = study(r#"{"hold": ["width", "opt"], "population": 4, "fraction": 0.25}"#, 12);
    let jobs = run_all(&s, 12);
    let by_id: BTreeMap<u64, &SimulatedTrial> = jobs.trials.iter().map(|t| (t.id, t)).collect();
    let held = |p: &Params| p.iter().filter(|a| a.name != "lr").cloned().collect::<Vec<_>>();
    let mut exploited = 0;
    for t in &jobs.trials {
        if let Some(p) = t.parent {
            assert_eq!(held(&t.params), held(&by_id[&p].params), "trial {} changed a held parameter", t.id);
            if t.params != by_id[&p].params {
                exploited += 1;
            }
        }
    }
    // One of four exploits per generation, two later generations.
    assert_eq!(exploited, 2, "{:?}", jobs.trials);
}

#[test]
fn a_fresh_run_after_a_crash_submits_nothing_twice() {
    let s = study("{}", 20);
    let whole = run_all(&s, 20);
    for crash_after in [1, 4, 6, 11, 19] {
        // The first agent dies after `crash_after` submissions (its trials keep running); a fresh
        // one starts from the study's standing, with the budget the study really has.
        let mut jobs = SimulatedJobs::new(&s, crash_after, segment as Segment);
        let e = PbtAgent::run(&s, Standing::default(), &mut jobs).unwrap_err();
        assert!(e.contains("budget"), "{e}");
        jobs.budget = 20;
        let standing = jobs.standing();
        PbtAgent::run(&s, standing, &mut jobs).unwrap();
        let resumed = jobs;
        let got: Vec<(Params, Option<u64>)> = resumed.trials.iter().map(|t| (t.params.clone(), t.parent)).collect();
        let want: Vec<(Params, Option<u64>)> = whole.trials.iter().map(|t| (t.params.clone(), t.parent)).collect();
        assert_eq!(got, want, "crash after {crash_after}");
    }
}

#[test]
fn a_failed_member_exploits_and_is_never_a_parent() {
    let s = study(r#"{"population": 4}"#, 12);
    let fail_first = |p: &Params, parent: Option<&SimulatedTrial>| {
        if lr(p) > 0.3 && parent.is_none() { None } else { segment(p, parent) }
    };
    let mut jobs = SimulatedJobs::new(&s, 12, fail_first);
    PbtAgent::run(&s, Standing::default(), &mut jobs).unwrap();
    let failed: Vec<u64> = jobs.trials.iter().filter(|t| t.value.is_none()).map(|t| t.id).collect();
    for t in &jobs.trials {
        if let Some(p) = t.parent {
            assert!(!failed.contains(&p), "trial {} started from failed trial {p}", t.id);
        }
    }
    assert_eq!(jobs.trials.len(), 12);
}

#[test]
fn bad_options_are_refused_with_their_name() {
    for (options, key) in [
        (r#"{"population": 1}"#, "population"),
        (r#"{"fraction": 0.9}"#, "fraction"),
        (r#"{"factors": [0.8]}"#, "factors"),
        (r#"{"hold": ["depth"]}"#, "hold"),
        (r#"{"resample": 2}"#, "resample"),
        (r#"{"popsize": 4}"#, "popsize"),
    ] {
        let e = Settings::parse(&study(options, 10)).unwrap_err();
        assert!(e.starts_with("options:") && e.contains(key), "{options}: {e}");
    }
}
