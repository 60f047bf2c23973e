//! The agent world end to end: the `pbt` agent plugin drives a study through `jobs` on the local
//! executor, trials start from their parents' directories (`ALCF_PARENT_DIR`), and a host
//! killed with SIGKILL resumes with nothing submitted twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use alcf_tests::{guest, host_bin, plugin, text, trial_states, try_trial_states, wait_until};

/// A training segment: "skill" grows by a gain that depends on lr (best near 0.01), from the
/// parent's checkpoint when the host gives one, over two epochs; the checkpoint is kept.
const SEGMENT: &str = r#"
import json, math, os, sys, time
d = os.environ["ALCF_TRIAL_DIR"]
p = json.load(open(os.environ["ALCF_PARAMS"]))
skill, parent = 0.0, os.environ.get("ALCF_PARENT_DIR")
if parent:
    skill = json.load(open(os.path.join(parent, "checkpoint.json")))["skill"]
gain = max(0.0, 1.0 - (math.log10(p["lr"]) + 2.0) ** 2 / 4.0)
with open(os.path.join(d, "metrics.jsonl"), "a") as m:
    for epoch in range(2):
        time.sleep(float(sys.argv[1]))
        skill += gain / 2
        m.write(json.dumps({"epoch": epoch + 1, "skill": skill}) + "\n"); m.flush()
json.dump({"skill": skill, "parent": parent}, open(os.path.join(d, "checkpoint.json"), "w"))
json.dump({"skill": skill, "width": p["width"]}, open(os.path.join(d, "result.json"), "w"))
"#;

fn config(dir: &Path, name: &str, trials: u32, epoch_s: f64, allow: &str) -> PathBuf {
    std::fs::write(dir.join("segment.py"), SEGMENT).unwrap();
    let text = format!(
        "[study]\nname = \"{name}\"\nobjective = \"skill\"\ndirection = \"maximize\"\ntrials = {trials}\nparallel = 4\nseed = 3\nroot = \"studies\"\n\
         [strategy]\nplugin = {:?}\nallow = {allow}\noptions = {{ population = 4, hold = [\"width\"] }}\n\
         [executor]\nkind = \"local\"\ncommand = [\"python3\", \"{{config_dir}}/segment.py\", \"{epoch_s}\"]\n\
         [space]\nlr = {{ type = \"float\", low = 1e-4, high = 1.0, log = true }}\nwidth = {{ type = \"int\", low = 8, high = 64 }}\n",
        plugin("pbt").display().to_string()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn host(dir: &Path) -> Command {
    let mut c = Command::new(host_bin());
    c.current_dir(dir).env("ALCF_HOST_CACHE", dir.join("cache"));
    c
}

/// trial -> (parent, params, skill) from the database.
fn lineage(study: &Path) -> BTreeMap<u64, (Option<u64>, String, Option<f64>)> {
    let conn = rusqlite::Connection::open(study.join("study.db")).unwrap();
    let mut stmt = conn.prepare("SELECT id, parent, params, value FROM trial ORDER BY id").unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)? as u64, (r.get::<_, Option<i64>>(1)?.map(|p| p as u64), r.get(2)?, r.get(3)?)))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn checkpoint(study: &Path, trial: u64) -> serde_json::Value {
    let text = std::fs::read_to_string(study.join(format!("trials/{trial:06}/checkpoint.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn pbt_runs_a_study_to_its_budget_through_jobs_from_its_parents_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "pbt", 12, 0.05, "[\"jobs\", \"log\"]");
    let out = host(dir.path()).args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let study = dir.path().join("studies/pbt");
    let states = trial_states(&study);
    assert_eq!(states.len(), 12, "{states:?}");
    assert!(states.iter().all(|t| t.1 == "completed"), "{states:?}");
    let trials = lineage(&study);
    let roots = trials.values().filter(|t| t.0.is_none()).count();
    assert_eq!(roots, 4, "generation 0 is the population: {trials:?}");
    for (id, (parent, params, skill)) in &trials {
        let Some(p) = parent else { continue };
        // The program was given the parent's directory, and started from its checkpoint.
        let ck = checkpoint(&study, *id);
        assert!(ck["parent"].as_str().unwrap().ends_with(&format!("trials/{p:06}")), "{ck}");
        let parent_skill = trials[p].2.unwrap();
        assert!(skill.unwrap() >= parent_skill, "trial {id} did not start from trial {p}'s skill");
        // `hold`: the width a checkpoint fixes is the parent's.
        let width = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap()["width"].clone();
        assert_eq!(width(params), width(&trials[p].1), "trial {id}");
    }
    let best = trials.values().filter_map(|t| t.2).fold(f64::MIN, f64::max);
    let best_root = trials.values().filter(|t| t.0.is_none()).filter_map(|t| t.2).fold(f64::MIN, f64::max);
    assert!(best > best_root, "three generations of training on the best checkpoints beat one: {trials:?}");
    let log = std::fs::read_to_string(study.join("host.log")).unwrap();
    assert!(log.contains("pbt: population 4"), "the agent's log lines reach host.log");
}

#[test]
fn an_agent_without_the_jobs_grant_is_refused_before_any_study_exists() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "nogrant", 8, 0.01, "[\"log\"]");
    let out = host(dir.path()).args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("agent plugin") && t.contains("\"jobs\" to strategy.allow"), "{t}");
    assert!(!dir.path().join("studies/nogrant").exists(), "no study is created");
    // And an agent cannot be a [pruner].
    let pruned = dir.path().join("pruner.toml");
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace("[\"log\"]", "[\"jobs\"]")
        + &format!("[pruner]\nplugin = {:?}\n", plugin("pbt").display().to_string());
    std::fs::write(&pruned, text_cfg.replace("name = \"nogrant\"", "name = \"aspruner\"")).unwrap();
    let out = host(dir.path()).args(["run", "--config", pruned.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("[pruner]"), "{t}");
}

#[test]
fn a_killed_host_resumes_the_agent_and_nothing_is_submitted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "killed", 16, 0.4, "[\"jobs\", \"log\"]");
    let study = dir.path().join("studies/killed");
    let mut child = host(dir.path())
        .args(["run", "--config", cfg.to_str().unwrap(), "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the second generation is running.
    wait_until(&mut child, Duration::from_secs(60), "a second generation", || {
        try_trial_states(&study).map_or(0, |t| t.len()) > 4
    });
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let before = lineage(&study);
    assert!(before.len() < 16, "the kill came too late to test anything");

    let out = host(dir.path()).args(["run", "--config", cfg.to_str().unwrap(), "--resume"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let after = lineage(&study);
    assert_eq!(after.len(), 16, "{after:?}");
    assert!(trial_states(&study).iter().all(|t| t.1 == "completed"));
    // Every trial the first host created is still there with its parent and parameters.
    for (id, (parent, params, _)) in &before {
        assert_eq!((&after[id].0, &after[id].1), (parent, params), "trial {id}");
    }
    // Four generations of four: the resumed agent completed the plan instead of repeating it.
    let mut generation = BTreeMap::new();
    for (id, (parent, ..)) in &after {
        let g = parent.map_or(0, |p| generation[&p] + 1);
        generation.insert(*id, g);
    }
    for g in 0..4 {
        assert_eq!(generation.values().filter(|&&x| x == g).count(), 4, "generation {g}: {after:?}");
    }
}

#[test]
fn jobs_keeps_the_trial_services_rules_for_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probe.toml");
    std::fs::write(
        &cfg,
        format!(
            "[study]\nname = \"probe\"\ntrials = 6\nparallel = 2\nroot = \"studies\"\n\
             [strategy]\nplugin = {:?}\nallow = [\"jobs\", \"log\"]\n\
             [executor]\nkind = \"bench\"\nfunction = \"branin\"\nepochs = 20\ndelay_s = 0.1\n",
            guest("agent_probe").display().to_string()
        ),
    )
    .unwrap();
    let out = host(dir.path()).args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let study = dir.path().join("studies/probe");
    let log = std::fs::read_to_string(study.join("host.log")).unwrap();
    let said = |case: &str| {
        let prefix = format!("probe: {case}: ");
        let line = log.lines().find(|l| l.contains(&prefix)).unwrap_or_else(|| panic!("no `{prefix}` in {log}"));
        let rest = &line[line.find(&prefix).unwrap() + prefix.len()..];
        rest.split(" plugin=").next().unwrap().to_string()
    };
    assert!(
        said("invalid").starts_with("error the trial was refused") && said("invalid").contains("x1"),
        "{}",
        said("invalid")
    );
    assert!(
        said("unfinished parent").contains("parent trial 1 is not a finished trial"),
        "{}",
        said("unfinished parent")
    );
    assert!(said("unknown parent").contains("parent trial 999"), "{}", said("unknown parent"));
    assert_eq!(said("cancel running"), "ok ()");
    assert_eq!(said("cancelled comes back"), "ok Pruned");
    assert!(said("cancel finished").contains("trial 1 has already finished"), "{}", said("cancel finished"));
    assert!(said("cancel unknown").contains("no trial 12345"), "{}", said("cancel unknown"));
    assert_eq!(said("idle wait"), "ok 0", "nothing runs: wait returns at once, empty");
    assert_eq!(said("child of a pruned trial"), "ok Completed");
    assert!(said("over budget after 6").contains("budget of 6 trials is spent"), "{}", said("over budget after 6"));
    let states = trial_states(&study);
    assert_eq!(states.len(), 6, "{states:?}");
    assert_eq!(states[0].1, "pruned", "{states:?}");
    assert!(states[1..].iter().all(|t| t.1 == "completed"), "{states:?}");
    assert_eq!(lineage(&study)[&2].0, Some(1), "trial 2 was submitted with trial 1 as its parent");
}
