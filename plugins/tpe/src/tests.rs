use super::*;

#[test]
fn truncated_gaussian_density_integrates_to_one_and_matches_hand_value() {
    let space = Space::new(&[Param::float("x", 0.0, 1.0)]).unwrap();
    let k = Kernel::numeric(vec![0.5, 0.1], vec![1.0, 0.05]);
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
    for mv in [false, true] {
        let p = Parzen::new(&space, &refs, mv);
        // Weights: prior 1/3, each point 1/3.
        assert!((p.log_w[0].exp() - 1.0 / 3.0).abs() < 1e-12);
        // Categorical marginal: (1/3)(1/3) + (1/3)(0.8) + (1/3)(0.1) for category a.
        let pa = p.log_pdf_1d(&space, 1, space.choice_coord(1, 0)).exp();
        assert!((pa - (1.0 / 9.0 + 0.8 / 3.0 + 0.1 / 3.0)).abs() < 1e-12, "{pa}");
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

fn eval(f: &alcf_testfns::TestFunction, p: &Params) -> f64 {
    let v: Vec<alcf_testfns::ParamValue> = p
        .iter()
        .map(|a| match &a.value {
            Value::Float(x) => alcf_testfns::ParamValue::Float(*x),
            Value::Int(x) => alcf_testfns::ParamValue::Int(*x),
            Value::Choice(c) => alcf_testfns::ParamValue::Choice(c.clone()),
        })
        .collect();
    (f.eval)(&v)
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
    for opts in ["{}", r#"{"multivariate": true}"#] {
        let study = mixed_study(4, opts);
        let run = || native::run(&mut Tpe::new(&study).unwrap(), &study, 60, 4, |p| Some(eval(&f, p))).unwrap();
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
