use super::*;
pub use alcf_plugin_sdk::testfns::{TestFunction, eval, study_for};

fn run(f: &TestFunction, seed: u64, n: usize, parallel: usize, options: &str) -> Vec<native::Record> {
    let study = study_for(f, seed, options);
    let mut s = GpUcb::new(&study).unwrap();
    native::run(&mut s, &study, n, parallel, |p| Some(eval(f, p))).unwrap()
}

#[test]
fn deterministic_for_a_seed() {
    let f = alcf_testfns::mixed();
    let a = run(&f, 7, 18, 2, "{}");
    let b = run(&f, 7, 18, 2, "{}");
    assert_eq!(a.iter().map(|r| &r.params).collect::<Vec<_>>(), b.iter().map(|r| &r.params).collect::<Vec<_>>());
    let c = run(&f, 8, 18, 2, "{}");
    assert_ne!(a[0].params, c[0].params);
}

#[test]
fn finds_branin_basin() {
    let f = alcf_testfns::branin();
    for opts in ["{}", r#"{"acquisition":"logei"}"#] {
        let r = run(&f, 1, 35, 1, opts);
        let best = native::best(&r, Direction::Minimize).unwrap();
        assert!(f.regret(best) < 0.05, "{opts}: regret {}", f.regret(best));
    }
}

#[test]
fn no_duplicates_with_8_pending() {
    // A small mixed space, 8 workers: no suggestion may repeat a pending trial.
    let f = alcf_testfns::mixed();
    let r = run(&f, 3, 40, 8, "{}"); // native::run fails on a duplicate of a pending trial
    assert_eq!(r.len(), 40);
    // Also: one suggest call for 8 gives 8 distinct points.
    let study = study_for(&alcf_testfns::hartmann6(), 1, "{\"n_init\": 4}");
    let mut s = GpUcb::new(&study).unwrap();
    let _ = native::run(&mut s, &study, 12, 1, |p| Some(eval(&alcf_testfns::hartmann6(), p))).unwrap();
    let batch = s.suggest(8, &[]).unwrap();
    for i in 0..8 {
        for j in 0..i {
            assert_ne!(batch[i], batch[j]);
        }
    }
}

#[test]
fn degenerate_histories() {
    let f = alcf_testfns::branin();
    let study = study_for(&f, 0, "{}");
    // All failed.
    let mut s = GpUcb::new(&study).unwrap();
    let r = native::run(&mut s, &study, 15, 1, |_| None).unwrap();
    assert_eq!(r.len(), 15);
    // Constant objective.
    let mut s = GpUcb::new(&study).unwrap();
    native::run(&mut s, &study, 15, 3, |_| Some(1.0)).unwrap();
    // One point, then a suggestion.
    let mut s = GpUcb::new(&study).unwrap();
    native::run(&mut s, &study, 1, 1, |_| Some(2.0)).unwrap();
    assert_eq!(s.suggest(2, &[]).unwrap().len(), 2);
    // Duplicates: the same point observed many times.
    let mut s = GpUcb::new(&study).unwrap();
    let p = s.core.space.decode(&[0.3, 0.3]);
    let outcomes: Vec<Outcome> = (0..12)
        .map(|i| Outcome {
            trial: Trial { id: i, params: p.clone() },
            status: Status::Completed,
            value: Some(5.0 + (i % 2) as f64),
            metrics: vec![],
            curve: Vec::new(),
        })
        .collect();
    s.observe(&outcomes).unwrap();
    let sug = s.suggest(3, &[]).unwrap();
    assert_eq!(sug.len(), 3);
    // Half failed, maximize, discrete space smaller than the batch.
    let tiny = Study::new(vec![Param::int("a", 0, 2), Param::choice("c", &["x", "y"])])
        .with_direction(Direction::Maximize)
        .with_seed(2);
    let mut s = GpUcb::new(&tiny).unwrap();
    let mut k = 0;
    native::run(&mut s, &tiny, 20, 1, |_| {
        k += 1;
        if k % 2 == 0 { None } else { Some(k as f64) }
    })
    .unwrap();
    // Bad options are errors, not panics.
    assert!(GpUcb::new(&study.clone().with_options("{\"acquisition\": \"pi\"}")).is_err());
    assert!(GpUcb::new(&study.clone().with_options("{\"nope\": 1}")).is_err());
}

#[test]
fn resume_does_not_repeat_the_initial_design() {
    let f = alcf_testfns::hartmann6();
    let study = study_for(&f, 11, "{}");
    let mut s = GpUcb::new(&study).unwrap();
    let recs = native::run(&mut s, &study, 5, 1, |p| Some(eval(&f, p))).unwrap();
    // A fresh instance with the history replayed, as the host does on resume.
    let mut r = GpUcb::new(&study).unwrap();
    let outcomes: Vec<Outcome> = recs
        .iter()
        .enumerate()
        .map(|(i, rec)| Outcome {
            trial: Trial { id: i as u64, params: rec.params.clone() },
            status: Status::Completed,
            value: rec.value,
            metrics: vec![],
            curve: Vec::new(),
        })
        .collect();
    r.observe(&outcomes).unwrap();
    for p in r.suggest(3, &[]).unwrap() {
        assert!(recs.iter().all(|rec| rec.params != p));
    }
}

#[test]
fn importance_follows_the_length_scales() {
    // The objective depends on the first parameter only: it gets the shortest length scale.
    let study = Study::new(vec![Param::float("a", 0.0, 1.0), Param::float("b", 0.0, 1.0), Param::float("c", 0.0, 1.0)]);
    let mut s = GpUcb::new(&study).unwrap();
    assert_eq!(s.core.importance(), None);
    native::run(&mut s, &study, 25, 1, |p| Some((6.0 * p[0].value.as_f64().unwrap()).sin())).unwrap();
    assert!(s.core.update_model());
    let l = s.core.lengthscales().unwrap();
    let imp = s.core.importance().unwrap();
    assert_eq!(l.len(), 3);
    assert!((imp.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!(imp[0] > imp[1] && imp[0] > imp[2], "{imp:?} from {l:?}");
}

#[test]
fn a_local_model_above_max_model_points_keeps_the_incumbent_and_still_optimizes() {
    // With a threshold of 40 the model switches to 24 local rows after 40 observations; the search
    // goes on and keeps improving Branin, and the model holds the best point seen.
    let f = alcf_testfns::branin();
    let opts = r#"{"max_model_points": 40, "local_points": 24}"#;
    let r = run(&f, 2, 70, 1, opts);
    assert_eq!(r.len(), 70);
    let best = native::best(&r, Direction::Minimize).unwrap();
    assert!(f.regret(best) < 0.05, "regret {}", f.regret(best));
    let study = study_for(&f, 2, opts);
    let mut s = GpUcb::new(&study).unwrap();
    native::run(&mut s, &study, 60, 1, |p| Some(eval(&f, p))).unwrap();
    assert!(s.core.update_model());
    let model = s.core.model().unwrap();
    assert_eq!(model.n(), 24, "a local model of local_points rows");
    let best_y = s.core.history.y.iter().copied().fold(f64::INFINITY, f64::min);
    let model_best = model.y.iter().map(|v| v * model.y_std + model.y_mean).fold(f64::INFINITY, f64::min);
    assert!((model_best - best_y).abs() < 1e-9 * best_y.abs().max(1.0), "{model_best} vs {best_y}");
    // Below the threshold the model holds every observation.
    let small = study_for(&f, 2, "{}");
    let mut s = GpUcb::new(&small).unwrap();
    native::run(&mut s, &small, 30, 1, |p| Some(eval(&f, p))).unwrap();
    assert!(s.core.update_model());
    assert_eq!(s.core.model().unwrap().n(), 30);
}
