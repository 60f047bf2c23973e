//! Multi-objective studies end to end: a two-objective bench problem (ZDT1) run by the genetic
//! plugin's NSGA-II to its budget and across a resume, its Pareto front and hypervolume in
//! `study show`, the refusal of a single-objective strategy or pruner before any study exists,
//! and a trial that lacks the second objective failing with a reason that names it.

use std::path::{Path, PathBuf};
use std::process::Command;

use alcf_tests::{host_bin, plugin, text, trial_states};

const OBJECTIVES: &str =
    "objectives = [{ metric = \"f1\", direction = \"minimize\" }, { metric = \"f2\", direction = \"minimize\" }]";

fn host(dir: &Path) -> Command {
    let mut c = Command::new(host_bin());
    c.current_dir(dir).env("ALCF_HOST_CACHE", dir.join("cache"));
    c
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A ZDT1 study in 5 variables with `strategy` and the extra `sections`.
fn zdt_config(dir: &Path, name: &str, strategy: &str, sections: &str) -> PathBuf {
    let text = format!(
        "[study]\nname = \"{name}\"\n{OBJECTIVES}\nhypervolume_reference = [11.0, 11.0]\ntrials = 60\nparallel = 2\n\
         seed = 3\nroot = \"studies\"\n\n[strategy]\nplugin = {:?}\n{sections}\n\
         [executor]\nkind = \"bench\"\nfunction = \"zdt1_d5\"\n",
        plugin(strategy).display().to_string()
    );
    write(dir, &format!("{name}.toml"), &text)
}

fn show_json(dir: &Path, name: &str) -> serde_json::Value {
    let out = host(dir).args(["study", "show", name, "--root", "studies", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn nsga2_runs_a_two_objective_study_and_study_show_prints_its_front() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = zdt_config(dir.path(), "zdt", "genetic", "");
    let out = host(dir.path()).args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("minimize f1, minimize f2"), "{said}");
    assert!(said.contains("Pareto front: ") && said.contains("reference point (11, 11): configured"), "{said}");
    let study = dir.path().join("studies/zdt");
    let states = trial_states(&study);
    assert_eq!(states.len(), 60);
    assert!(states.iter().all(|t| t.1 == "completed"), "{states:?}");

    // A resume keeps the objectives and goes on to the raised budget.
    let out = host(dir.path())
        .args(["run", "--config", cfg.to_str().unwrap(), "--resume", "--trials", "80"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("objectives changed"), "{}", text(&out));
    assert_eq!(trial_states(&study).len(), 80);

    let out = host(dir.path()).args(["study", "show", "zdt", "--root", "studies"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(shown.contains("objectives: f1 (minimize), f2 (minimize)"), "{shown}");
    assert!(shown.contains("of 80 completed trials on the front, hypervolume"), "{shown}");
    assert!(shown.contains("(reference point (11, 11): configured)"), "{shown}");
    assert!(shown.contains(" trial              f1              f2  params"), "{shown}");

    let v = show_json(dir.path(), "zdt");
    let front = v["pareto_front"]["trials"].as_array().unwrap();
    assert!(front.len() >= 3, "{front:?}");
    let hv = v["pareto_front"]["hypervolume"].as_f64().unwrap();
    // Every point of ZDT1 lies in [0, 1] x [0, 10]; the true front's hypervolume is 120.667.
    assert!(hv > 100.0 && hv < 120.667, "{hv}");
    // The front is non-dominated and each member's values are its trial's metrics.
    let trials = v["trials"].as_array().unwrap();
    for m in front {
        let values: Vec<f64> = m["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let t = trials.iter().find(|t| t["id"] == m["id"]).unwrap();
        assert_eq!(values, vec![t["metrics"]["f1"].as_f64().unwrap(), t["metrics"]["f2"].as_f64().unwrap()]);
        assert_eq!(t["value"].as_f64(), Some(values[0]), "a trial's value is the first objective's");
        for o in trials {
            let (a, b) = (o["metrics"]["f1"].as_f64().unwrap(), o["metrics"]["f2"].as_f64().unwrap());
            assert!(!(a <= values[0] && b <= values[1] && (a < values[0] || b < values[1])), "{m} is dominated by {o}");
        }
    }
}

#[test]
fn a_single_objective_strategy_or_pruner_is_refused_before_any_study_exists() {
    let dir = tempfile::tempdir().unwrap();
    let out = host(dir.path())
        .args(["run", "--strategy", plugin("gp_ucb").to_str().unwrap(), "--objective", "bench:zdt1_d5"])
        .args(["--trials", "5", "--root", "studies"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("strategy `gp_ucb`") && said.contains("optimizes one objective"), "{said}");
    assert!(said.contains("2 (minimize f1, minimize f2)") && said.contains("plugins/genetic.wasm"), "{said}");
    assert!(said.contains("no study was created") && said.trim().lines().count() == 1, "{said}");
    assert!(
        !dir.path().join("studies").exists() || std::fs::read_dir(dir.path().join("studies")).unwrap().next().is_none()
    );

    let pruner = format!("[pruner]\nplugin = {:?}\n", plugin("pruner").display().to_string());
    let cfg = zdt_config(dir.path(), "pruned", "genetic", &pruner);
    let out = host(dir.path()).args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("[pruner] plugin `pruner`") && said.contains("remove [pruner]"), "{said}");
    assert!(!dir.path().join("studies/pruned").exists(), "{said}");
}

#[test]
fn a_trial_without_the_second_objective_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let trial = "import json, sys\nx = float(sys.argv[1])\nresult = {\"acc\": 1.0 - x}\n\
                 if x < 0.5:\n    result[\"secs\"] = 10.0 * x\njson.dump(result, open(\"result.json\", \"w\"))\n";
    write(dir.path(), "trial.py", trial);
    let cfg = write(
        dir.path(),
        "local.toml",
        &format!(
            "[study]\nname = \"two\"\nobjectives = [{{ metric = \"acc\", direction = \"maximize\" }}, {{ metric = \"secs\", direction = \"minimize\" }}]\n\
             trials = 2\nroot = \"studies\"\n\n[[study.enqueue]]\nx = 0.25\n\n[[study.enqueue]]\nx = 0.75\n\n\
             [strategy]\nplugin = {:?}\n\n[executor]\nkind = \"local\"\n\
             command = [\"python3\", \"{{config_dir}}/trial.py\", \"{{x}}\"]\n\n\
             [space]\nx = {{ type = \"float\", low = 0.0, high = 1.0 }}\n",
            plugin("random").display().to_string()
        ),
    );
    let out = host(dir.path()).args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let states = trial_states(&dir.path().join("studies/two"));
    assert_eq!(states.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["completed", "failed"], "{states:?}");
    assert_eq!(states[0].2, Some(0.75), "the value is the first objective's");
    let v = show_json(dir.path(), "two");
    let failure = v["trials"][1]["failure"].as_str().unwrap();
    assert!(failure.contains("no objective `secs`") && failure.contains("it reported: acc"), "{failure}");
    assert_eq!(v["pareto_front"]["trials"].as_array().unwrap().len(), 1);
}

#[test]
fn compare_reports_the_median_hypervolume_and_front_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = host(dir.path())
        .args(["compare", "--strategy", plugin("genetic").to_str().unwrap(), "--strategy"])
        .args([plugin("random").to_str().unwrap(), "--objective", "bench:zdt1_d5", "--trials", "40"])
        .args(["--repeats", "2", "--out", "cmp", "--quiet", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["metric"]["kind"], "hypervolume", "{v}");
    assert_eq!(v["metric"]["reference"], serde_json::json!([11.0, 11.0]));
    let rows = v["strategies"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    for r in rows {
        assert!(r["median"].as_f64().unwrap() > 90.0, "{r}");
        assert!(r["front"].as_f64().unwrap() >= 1.0, "{r}");
    }
    let md = std::fs::read_to_string(dir.path().join("cmp/summary.md")).unwrap();
    assert!(md.contains("median hypervolume") && md.contains("median front"), "{md}");
}
