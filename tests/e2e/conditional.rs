//! Conditional search spaces end to end: `width` and `depth` exist only when `model = "cnn"`,
//! as in the CIFAR-100 space. Every shipped strategy runs a study on the local executor whose
//! trial program fails any trial that gets an inactive parameter or lacks an active one.

use std::path::Path;

use alcf_tests::{plugin, text, trial_states};

/// Exits 1 when the parameters break the condition; else a loss that depends on each.
const PROGRAM: &str = r#"
import json, math, os, sys
p = json.load(open(os.environ["ALCF_PARAMS"]))
cnn = p["model"] == "cnn"
if cnn != ("width" in p) or cnn != ("depth" in p):
    sys.exit("condition broken: %s" % p)
loss = (math.log10(p["lr"]) + 2) ** 2 + (abs(p["width"] - 32) / 32 + p["depth"] / 8 if cnn else 0.8)
json.dump({"loss": loss}, open(os.path.join(os.environ["ALCF_TRIAL_DIR"], "result.json"), "w"))
"#;

fn config(dir: &Path, strategy: &str, trials: u32) -> std::path::PathBuf {
    std::fs::write(dir.join("program.py"), PROGRAM).unwrap();
    let text = format!(
        "[study]\nname = \"{strategy}\"\nobjective = \"loss\"\ntrials = {trials}\nparallel = 2\nseed = 4\nroot = \"studies\"\n\
         [strategy]\nplugin = {:?}\n\
         [executor]\nkind = \"local\"\ncommand = [\"python3\", \"{{config_dir}}/program.py\"]\n\
         [space]\nlr = {{ type = \"float\", low = 1e-4, high = 1.0, log = true }}\n\
         model = {{ type = \"choice\", values = [\"cnn\", \"mlp\"] }}\n\
         width = {{ type = \"int\", low = 8, high = 64, when = {{ model = \"cnn\" }} }}\n\
         depth = {{ type = \"int\", low = 1, high = 8, when = {{ model = [\"cnn\"] }} }}\n",
        plugin(strategy).display().to_string()
    );
    let path = dir.join(format!("{strategy}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_strategy_proposes_within_a_conditional_space() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let strategies = ["random", "qmc", "gp_ucb", "region_ucb", "genetic", "tpe", "pruner", "random_py", "cmaes"];
    for strategy in strategies {
        let cfg = config(dir.path(), strategy, 12);
        let out = std::process::Command::new(alcf_tests::host_bin())
            .args(["run", "--config", cfg.to_str().unwrap(), "--quiet"])
            .current_dir(dir.path())
            .env("ALCF_HOST_CACHE", &cache)
            .output()
            .unwrap();
        assert!(out.status.success(), "{strategy}: {}", text(&out));
        let study = dir.path().join("studies").join(strategy);
        let states = trial_states(&study);
        assert_eq!(states.len(), 12, "{strategy}: {states:?}");
        assert!(states.iter().all(|t| t.1 == "completed"), "{strategy}: a trial broke the condition: {states:?}");
        // Both branches were tried, and params.json holds exactly the active parameters.
        let mut models = std::collections::BTreeSet::new();
        for (id, ..) in &states {
            let p: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(study.join(format!("trials/{id:06}/params.json"))).unwrap(),
            )
            .unwrap();
            models.insert(p["model"].as_str().unwrap().to_string());
        }
        assert_eq!(models.len(), 2, "{strategy} explored one branch only: {models:?}");
    }
}

#[test]
fn conditions_that_cannot_hold_are_config_errors_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "random", 4);
    let base = std::fs::read_to_string(&cfg).unwrap();
    for (from, to, want) in [
        ("when = { model = \"cnn\" }", "when = { model = \"rnn\" }", "`rnn` is not an option of `model`"),
        ("when = { model = \"cnn\" }", "when = { lr = \"cnn\" }", "not a choice parameter"),
        ("when = { model = \"cnn\" }", "when = { depth = \"cnn\" }", "must be defined before `width`"),
        ("when = { model = \"cnn\" }", "when = { model = \"cnn\", lr = 1 }", "exactly one parent"),
    ] {
        std::fs::write(&cfg, base.replace(from, to)).unwrap();
        let out = alcf_tests::alcf(&["run", "--config", cfg.to_str().unwrap()], &dir.path().join("cache"));
        assert!(!out.status.success());
        let t = text(&out);
        assert!(t.contains(want) && t.contains("space.width.when"), "{to}: {t}");
    }
    // A conditional parameter cannot be a command-line placeholder: a trial may lack it.
    let templated =
        base.replace("\"{config_dir}/program.py\"]", "\"{config_dir}/program.py\", \"--width\", \"{width}\"]");
    std::fs::write(&cfg, templated).unwrap();
    let out = alcf_tests::alcf(&["run", "--config", cfg.to_str().unwrap()], &dir.path().join("cache"));
    let t = text(&out);
    assert!(!out.status.success() && t.contains("conditional parameter") && t.contains("model is cnn"), "{t}");
}
