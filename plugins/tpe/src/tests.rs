use super::*;

#[test]
fn truncated_gaussian_density_integrates_to_one_and_matches_hand_value() {
    let space = Space::new(&[Param::float("x", 0.0, 1.0)]).unwrap();
    let k = Kernel::numeric(vec![0.5, 0.1], vec![1.0, 0.05], false);
    for i in 0..2 {
        let m = 20000;
        let integral: f64 =
            (0..m).map(|s| k.log_pdf(i, (s as f64 + 0.5) / m as f64, &space, 0).exp()).sum::<f64>() / m as f64;
        assert!((integral - 1.0).abs() < 1e-4, "component {i}: {integral}");
    }
    // Component 0 at x = 0.5: N(0.5; 0.5, 1) / (Φ(0.5) − Φ(−0.5)) = 0.398942 / 0.382925.
    let v = k.log_pdf(0, 0.5, &space, 0).exp();
    assert!((v - 0.398_942_28 / 0.382_924_92).abs() < 1e-5, "{v}");
}

#[test]
fn parzen_mixture_and_categorical() {
    let space = Space::new(&[Param::float("x", 0.0, 1.0), Param::choice("c", &["a", "b", "c"])]).unwrap();
    let pts = [vec![0.2, space.choice_coord(1, 0)], vec![0.8, space.choice_coord(1, 2)]];
    let refs: Vec<&Vec<f64>> = pts.iter().collect();
    {
        let p = Parzen::new(&space, &refs, &[1.0, 1.0], 1.0);
        // Weights: prior 1/3, each point 1/3.
        assert!((p.log_w[0].exp() - 1.0 / 3.0).abs() < 1e-12);
        // Categorical rows (Optuna): 1 on the trial's category + 1/3 everywhere, normalized:
        // hit (4/3)/2 = 2/3, other (1/3)/2 = 1/6. Marginal of a: (1/3)(1/3 + 2/3 + 1/6).
        let pa = p.log_pdf_1d(&space, 1, space.choice_coord(1, 0)).exp();
        assert!((pa - (1.0 / 3.0) * (1.0 / 3.0 + 2.0 / 3.0 + 1.0 / 6.0)).abs() < 1e-12, "{pa}");
        let total: f64 = (0..3).map(|c| p.log_pdf_1d(&space, 1, space.choice_coord(1, c)).exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
        // Numeric marginal integrates to 1; density higher near the points than in between.
        let m = 4000;
        let integral: f64 =
            (0..m).map(|s| p.log_pdf_1d(&space, 0, (s as f64 + 0.5) / m as f64).exp()).sum::<f64>() / m as f64;
        assert!((integral - 1.0).abs() < 1e-3);
        assert!(p.log_pdf_1d(&space, 0, 0.2) > p.log_pdf_1d(&space, 0, 0.999));
        let mut rng = Rng::new(1);
        for _ in 0..100 {
            let x = p.sample_joint(&space, &mut rng);
            assert!((0.0..=1.0).contains(&x[0]) && (0.0..=1.0).contains(&x[1]));
        }
    }
    assert_eq!(n_good(100, 0.1, 25), 10);
    assert_eq!(n_good(1000, 0.1, 25), 25);
    assert_eq!(n_good(3, 0.1, 25), 1);
}

fn mixed_study(seed: u64, opts: &str) -> Study {
    Study::new(vec![
        Param::float("x", -5.0, 5.0),
        Param::log_float("lr", 1e-5, 1e-1),
        Param::int("n", -5, 5),
        Param::choice("c", &["a", "b", "c", "d"]),
    ])
    .with_seed(seed)
    .with_options(opts)
}

#[test]
fn deterministic_learns_and_handles_degenerate_histories() {
    let f = alcf_testfns::mixed();
    for opts in ["{}", r#"{"multivariate": false}"#, r#"{"startup": "random"}"#] {
        let study = mixed_study(4, opts);
        let run =
            || native::run(&mut Tpe::new(&study).unwrap(), &study, 60, 4, |p| Some(testfns::eval(&f, p))).unwrap();
        let a = run();
        assert_eq!(
            a.iter().map(|r| &r.params).collect::<Vec<_>>(),
            run().iter().map(|r| &r.params).collect::<Vec<_>>()
        );
        let best = native::best(&a, Direction::Minimize).unwrap();
        assert!(best < 2.5, "{opts}: {best}");
        // All failed; constant; 8 pending in a small space.
        native::run(&mut Tpe::new(&study).unwrap(), &study, 30, 1, |_| None).unwrap();
        native::run(&mut Tpe::new(&study).unwrap(), &study, 30, 8, |_| Some(3.0)).unwrap();
    }
    let tiny = Study::new(vec![Param::int("a", 0, 4), Param::choice("c", &["x", "y"])]);
    native::run(&mut Tpe::new(&tiny).unwrap(), &tiny, 40, 8, |p| Some(eval_tiny(p))).unwrap();
}

fn eval_tiny(p: &Params) -> f64 {
    match p[0].value {
        Value::Int(a) => a as f64,
        _ => 0.0,
    }
}

#[test]
fn neighbor_bandwidths_and_weights_by_hand() {
    // Trials at 0.1, 0.3, 0.9 (component 0 is the prior): the extremes use their inner gap
    // (0.2 and 0.6), the middle one the larger of its gaps (0.6); magic clip 1/min(100, 3 + 2).
    let s = neighbor_sigmas(&[0.5, 0.1, 0.3, 0.9]);
    for (a, b) in s.iter().zip([1.0, 0.2, 0.6, 0.6]) {
        assert!((a - b).abs() < 1e-12, "{s:?}");
    }
    // Close points are clipped up to 1/4; a single trial uses the larger gap to the bounds.
    assert_eq!(neighbor_sigmas(&[0.5, 0.40, 0.41])[1..], [0.25, 0.25]);
    assert!((neighbor_sigmas(&[0.5, 0.2])[1] - 0.8).abs() < 1e-12);
    // Optuna's default_weights: flat below 25, then a ramp from 1/n over the oldest n − 25.
    assert_eq!(default_weights(0), Vec::<f64>::new());
    assert_eq!(default_weights(3), vec![1.0; 3]);
    let w = default_weights(30);
    assert_eq!(w.len(), 30);
    for (i, v) in w[..5].iter().enumerate() {
        let expect = 1.0 / 30.0 + (1.0 - 1.0 / 30.0) * i as f64 / 4.0;
        assert!((v - expect).abs() < 1e-12, "{w:?}");
    }
    assert!(w[5..].iter().all(|&v| v == 1.0));
    assert_eq!(default_weights(26)[0], 1.0 / 26.0);
    // Component weights: trials' weights then the prior (1.0), normalized.
    let space = Space::new(&[Param::float("x", 0.0, 1.0)]).unwrap();
    let pts = [vec![0.2], vec![0.7]];
    let refs: Vec<&Vec<f64>> = pts.iter().collect();
    let p = Parzen::new(&space, &refs, &[0.5, 1.0], 1.0);
    let w: Vec<f64> = p.log_w.iter().map(|v| v.exp()).collect();
    for (a, b) in w.iter().zip([0.4, 0.2, 0.4]) {
        assert!((a - b).abs() < 1e-12, "{w:?}");
    }
}

#[test]
fn int_kernel_is_a_discretized_truncated_normal() {
    let space = Space::new(&[Param::int("n", 0, 4), Param::log_int("b", 1, 64)]).unwrap();
    // Value 2 of 0..=4 is the bin [0.4, 0.6]; under N(0.5, 1) truncated to [0, 1] its probability
    // is (Φ(0.1) − Φ(−0.1)) / (Φ(0.5) − Φ(−0.5)) = 0.0796557 / 0.3829249.
    let k = Kernel::numeric(vec![0.5, 0.1], vec![1.0, 0.05], true);
    let p2 = k.log_pdf(0, space.encode_value(0, &Value::Int(2)).unwrap(), &space, 0).exp();
    assert!((p2 - 0.079_655_67 / 0.382_924_92).abs() < 1e-6, "{p2}");
    for (j, values) in [(0usize, 0..=4i64), (1, 1..=64)] {
        for i in 0..2 {
            let total: f64 = values
                .clone()
                .map(|v| k.log_pdf(i, space.encode_value(j, &Value::Int(v)).unwrap(), &space, j).exp())
                .sum();
            assert!((total - 1.0).abs() < 1e-6, "param {j} component {i}: {total}");
        }
    }
}

#[test]
fn truncated_normal_samples_stay_in_bounds_with_the_right_mean() {
    let space = Space::new(&[Param::float("x", 0.0, 1.0)]).unwrap();
    let k = Kernel::numeric(vec![0.0, 1.0, 0.5], vec![0.1, 5.0, 1e-6], false);
    let mut rng = Rng::new(3);
    let m = 20000;
    let mut sum = 0.0;
    for _ in 0..m {
        for i in 0..3 {
            let x = k.sample(i, &mut rng, &space, 0);
            assert!((0.0..=1.0).contains(&x), "{x}");
            if i == 0 {
                sum += x;
            }
        }
    }
    // Mean of N(0, 0.1²) truncated to [0, 1]: 0.1 · φ(0) / (Φ(10) − Φ(0)) = 0.0797885.
    let mean = sum / m as f64;
    assert!((mean - 0.079_788_5).abs() < 0.002, "{mean}");
    assert!((norm_mass(-0.5, 0.5) - 0.382_924_92).abs() < 1e-6);
    // Far tail, no cancellation: Φ(−8) − Φ(−9) = 6.2198320e-16.
    assert!((norm_mass(8.0, 9.0) / 6.219_832e-16 - 1.0).abs() < 1e-5, "{}", norm_mass(8.0, 9.0));
}

#[test]
fn resume_continues_instead_of_repeating() {
    let f = alcf_testfns::mixed();
    let study = mixed_study(7, "{}");
    let replay = |recs: &[native::Record]| {
        let mut r = Tpe::new(&study).unwrap();
        let outcomes: Vec<Outcome> = recs
            .iter()
            .enumerate()
            .map(|(i, rec)| Outcome {
                trial: Trial { id: i as u64, params: rec.params.clone() },
                status: if rec.value.is_some() { Status::Completed } else { Status::Failed },
                value: rec.value,
                metrics: vec![],
                curve: Vec::new(),
            })
            .collect();
        r.observe(&outcomes).unwrap();
        r
    };
    // Inside the initial design: the resumed instance does not repeat the finished points.
    let recs = native::run(&mut Tpe::new(&study).unwrap(), &study, 5, 1, |p| Some(testfns::eval(&f, p))).unwrap();
    for p in replay(&recs).suggest(3, &[]).unwrap() {
        assert!(recs.iter().all(|rec| rec.params != p));
    }
    // In the model phase: the resumed instance suggests what the uninterrupted one would.
    let mut s = Tpe::new(&study).unwrap();
    let recs = native::run(&mut s, &study, 30, 1, |p| Some(testfns::eval(&f, p))).unwrap();
    assert_eq!(replay(&recs).suggest(2, &[]).unwrap(), s.suggest(2, &[]).unwrap());
}
