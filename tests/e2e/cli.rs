//! The command line as a user meets it: configs with mistakes, listing and showing studies.

use alcf_tests::{alcf, plugin, repo, text};

#[test]
fn a_malformed_config_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[study]\nname = \"x\"\ntrails = 10\n").unwrap();
    let out = alcf(&["run", "--config", cfg.to_str().unwrap()], &dir.path().join("cache"));
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("bad.toml") && t.contains("line 3") && t.contains("trails"), "{t}");
    assert!(!t.contains("panicked"), "{t}");

    std::fs::write(&cfg, "[space]\nlr = { type = \"float\", low = 0.0, high = 0.1, log = true }\n").unwrap();
    let out = alcf(&["run", "--config", cfg.to_str().unwrap()], &dir.path().join("cache"));
    let t = text(&out);
    assert!(t.contains("bad.toml, line 2: field `space.lr`") && t.contains("log scale needs low > 0"), "{t}");
}

#[test]
fn missing_inputs_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let root = dir.path().join("s");
    let out = alcf(
        &["run", "--strategy", "nope.wasm", "--objective", "bench:branin", "--root", root.to_str().unwrap()],
        &cache,
    );
    let t = text(&out);
    assert!(t.contains("cannot read plugin nope.wasm") && t.contains("build-plugins.sh"), "{t}");

    let p = plugin("random");
    let out = alcf(
        &["run", "--strategy", p.to_str().unwrap(), "--objective", "bench:nosuch", "--root", root.to_str().unwrap()],
        &cache,
    );
    let t = text(&out);
    assert!(t.contains("unknown bench function") && t.contains("branin"), "{t}");

    let out = alcf(&["run", "--strategy", p.to_str().unwrap(), "--root", root.to_str().unwrap()], &cache);
    assert!(text(&out).contains("nothing to run"), "{}", text(&out));

    let out = alcf(&["study", "show", "ghost", "--root", root.to_str().unwrap()], &cache);
    assert!(!out.status.success());
    assert!(text(&out).contains("no study at"), "{}", text(&out));
}

#[test]
fn list_and_show_report_the_best_trial() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let root = dir.path().join("s");
    let p = plugin("random");
    for (name, f) in [("a", "bench:branin"), ("b", "bench:hartmann3")] {
        let out = alcf(
            &[
                "run",
                "--strategy",
                p.to_str().unwrap(),
                "--objective",
                f,
                "--trials",
                "30",
                "--parallel",
                "4",
                "--study",
                name,
                "--root",
                root.to_str().unwrap(),
                "--seed",
                "3",
            ],
            &cache,
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("Best trial #"), "{}", text(&out));
    }
    let out = alcf(&["study", "list", "--root", root.to_str().unwrap(), "--json"], &cache);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["trials"], 30);

    let out = alcf(&["study", "show", "a", "--root", root.to_str().unwrap(), "--json"], &cache);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let trials = v["trials"].as_array().unwrap();
    let min = trials.iter().map(|t| t["value"].as_f64().unwrap()).fold(f64::INFINITY, f64::min);
    assert_eq!(v["best"]["value"].as_f64().unwrap(), min);
    assert!(v["best"]["params"]["x1"].is_number());

    let out = alcf(&["study", "show", "a", "--root", root.to_str().unwrap()], &cache);
    let t = text(&out);
    assert!(t.contains("best:") && t.contains("completed"), "{t}");
}

#[test]
fn shipped_configs_parse() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains("[study]") {
            alcf_host::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        } else {
            alcf_host::config::parse_space_file(&text, &path).unwrap_or_else(|e| panic!("{e}"));
        }
        seen += 1;
    }
    assert!(seen >= 2, "config/ holds the quickstart and the CIFAR-100 space");
}
