//! `alcf-host doctor` against the real pieces the other tests use (the PBS emulator on a login
//! node, the Globus Compute double, the Sophia gateway double), each with a fault injected: the
//! verdict and the fix must be right, and the exit status must say whether anything failed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use alcf_tests::doubles::Double;
use alcf_tests::{host_bin, plugin, repo, text};

const TOKEN: &str = "doctor-token";

struct Rig {
    dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.sh"), "#!/bin/sh\necho usage: train.sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path().join("train.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        Rig { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self, name: &str, executor: &str, tail: &str) -> PathBuf {
        let text = format!(
            "[study]\nname = \"{name}\"\nobjective = \"loss\"\nroot = \"studies\"\n\n[strategy]\nplugin = \"{}\"\n{tail}\n\n\
             [executor]\n{executor}\n\n[space]\nx = {{ type = \"float\", low = 0.0, high = 1.0 }}\n",
            plugin("random").display()
        );
        let p = self.path().join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `doctor --config CFG --json`: its exit status and checks by name.
    fn doctor(&self, cfg: &Path, env: &[(&str, &str)]) -> (Output, Vec<serde_json::Value>) {
        let mut c = Command::new(host_bin());
        c.args(["doctor", "--config", cfg.to_str().unwrap(), "--json"])
            .current_dir(self.path())
            .env("ALCF_HOST_CACHE", self.path().join("cache"))
            .env("ALCF_HOST_CONFIG_DIR", self.path().join("auth"))
            .env_remove("ALCF_HOST_COMPUTE_TOKEN")
            .env_remove("ALCF_HOST_SOPHIA_TOKEN");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let checks: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("doctor --json: {e}: {}", text(&out)));
        (out, checks)
    }
}

fn check<'a>(checks: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
}

fn verdict(checks: &[serde_json::Value], name: &str) -> String {
    check(checks, name)["verdict"].as_str().unwrap().to_string()
}

#[test]
fn local_configs_good_and_broken() {
    let rig = Rig::new();
    let good = rig.config("good", "kind = \"local\"\ncommand = [\"./train.sh\", \"{x}\"]", "");
    let (out, checks) = rig.doctor(&good, &[]);
    assert!(out.status.success(), "{}", text(&out));
    for name in ["config", "plugin", "cache", "disk", "program"] {
        assert_eq!(verdict(&checks, name), "ok", "{name}: {checks:?}");
    }
    // The program does not exist: the executor check fails with the fix, and the exit status is 1.
    let missing = rig.config("missing", "kind = \"local\"\ncommand = [\"./nope.sh\"]", "");
    let (out, checks) = rig.doctor(&missing, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let c = check(&checks, "executor");
    assert_eq!(c["verdict"], "fail", "{c}");
    assert!(c["found"].as_str().unwrap().contains("nope.sh"), "{c}");
    // A config error names its line and field.
    let broken = rig.path().join("broken.toml");
    std::fs::write(&broken, "[study]\nparallel = 0\n").unwrap();
    let (out, checks) = rig.doctor(&broken, &[]);
    assert_eq!(out.status.code(), Some(1));
    let c = check(&checks, "config");
    assert!(
        c["found"].as_str().unwrap().contains("line 2") && c["found"].as_str().unwrap().contains("study.parallel"),
        "{c}"
    );
    // A plugin that is not one.
    let bad_plugin = rig.config("badplugin", "kind = \"local\"\ncommand = [\"./train.sh\"]", "");
    let text_cfg = std::fs::read_to_string(&bad_plugin)
        .unwrap()
        .replace(&plugin("random").display().to_string(), "/nonexistent.wasm");
    std::fs::write(&bad_plugin, text_cfg).unwrap();
    let (_, checks) = rig.doctor(&bad_plugin, &[]);
    assert_eq!(verdict(&checks, "plugin"), "fail");
    assert!(check(&checks, "plugin")["fix"].as_str().unwrap().contains("build-plugins.sh"));
}

#[test]
fn pbs_on_a_login_node_with_the_emulator() {
    let rig = Rig::new();
    let emu_home = rig.path().join("pbs-emu");
    std::fs::create_dir_all(&emu_home).unwrap();
    let emulator = repo().join("tests/pbs/emulator");
    let executor = |queue: &str, remote: &str| {
        format!(
            "kind = \"pbs\"\nhost = \"local\"\nremote_dir = \"{remote}\"\npbs_bin = \"{}\"\ncommand = [\"sh\", \"-c\", \"true\"]\n\
             account = \"P\"\nqueue = \"{queue}\"\nwalltime = \"00:30:00\"",
            emulator.display()
        )
    };
    let env = [("PBS_EMU_HOME", emu_home.to_str().unwrap())];
    let remote = rig.path().join("remote").display().to_string();
    let good = rig.config("pbsgood", &executor("capacity", &remote), "");
    let (out, checks) = rig.doctor(&good, &env);
    assert!(out.status.success(), "{}\n{checks:?}", text(&out));
    for name in ["ssh", "qstat", "queue", "remote dir", "program"] {
        assert_eq!(verdict(&checks, name), "ok", "{name}: {checks:?}");
    }
    assert_eq!(verdict(&checks, "account"), "skip");
    // An unknown queue and a directory that cannot be written.
    let bad = rig.config("pbsbad", &executor("nosuchq", "/proc/alcf-doctor"), "");
    let (out, checks) = rig.doctor(&bad, &env);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&checks, "queue"), "fail", "{checks:?}");
    assert!(check(&checks, "queue")["fix"].as_str().unwrap().contains("qstat -Q"));
    assert_eq!(verdict(&checks, "remote dir"), "fail", "{checks:?}");
    // Through SSH with no master: the fix is `alcf-host connect`.
    let ssh = rig.config(
        "pbsssh",
        &executor("capacity", &remote).replace(
            "host = \"local\"",
            &format!("host = \"aurora\"\ncontrol_path = \"{}/none.sock\"", rig.path().display()),
        ),
        "",
    );
    let (out, checks) = rig.doctor(&ssh, &env);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&checks, "ssh"), "fail");
    assert!(check(&checks, "ssh")["fix"].as_str().unwrap().contains("alcf-host connect aurora"));
    assert_eq!(verdict(&checks, "qstat"), "skip");
}

#[test]
fn globus_token_and_endpoint() {
    let rig = Rig::new();
    let api = Double::compute(&["--token", TOKEN, "--offline"]);
    let cfg = rig.config(
        "gc",
        &format!(
            "kind = \"globus\"\nendpoint = \"5c6f1a2e-0000-4000-8000-00000000d0d0\"\nbase_url = \"{}\"\nremote_dir = \"/lus/x\"\ncommand = [\"python3\", \"t.py\"]",
            api.url()
        ),
        "",
    );
    // No login at all.
    let (out, checks) = rig.doctor(&cfg, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&checks, "globus"), "fail");
    assert!(check(&checks, "globus")["fix"].as_str().unwrap().contains("alcf-host auth login --service compute"));
    // A token, an offline endpoint.
    let (out, checks) = rig.doctor(&cfg, &[("ALCF_HOST_COMPUTE_TOKEN", TOKEN)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&checks, "globus"), "ok", "{checks:?}");
    assert_eq!(verdict(&checks, "endpoint"), "fail");
    assert!(check(&checks, "endpoint")["fix"].as_str().unwrap().contains("globus-compute-endpoint start"));
    // Online.
    api.post("/_control/endpoint", &serde_json::json!({"online": true}));
    let (out, checks) = rig.doctor(&cfg, &[("ALCF_HOST_COMPUTE_TOKEN", TOKEN)]);
    assert!(out.status.success(), "{checks:?}");
    assert_eq!(verdict(&checks, "endpoint"), "ok");
    // A token the service refuses.
    let (_, checks) = rig.doctor(&cfg, &[("ALCF_HOST_COMPUTE_TOKEN", "wrong")]);
    assert_eq!(verdict(&checks, "globus"), "fail", "{checks:?}");
    assert!(!serde_json::to_string(&checks).unwrap().contains("\"wrong\""));
}

#[test]
fn llm_token_gateway_and_model() {
    let rig = Rig::new();
    let gw = Double::gateway(&["--token", TOKEN]);
    let llm = |model: &str| {
        format!(
            "allow = [\"log\", \"storage\", \"llm\"]\n\n[llm]\nbase_url = \"{}\"\nmodel = \"{model}\"",
            gw.vllm_base()
        )
    };
    let local = "kind = \"local\"\ncommand = [\"./train.sh\"]";
    let running = rig.config("llm", local, &llm("meta-llama/Llama-3.3-70B-Instruct"));
    let (out, checks) = rig.doctor(&running, &[]);
    assert_eq!(out.status.code(), Some(1), "no login");
    assert!(check(&checks, "llm token")["fix"].as_str().unwrap().contains("alcf-host auth login --service sophia"));
    let (out, checks) = rig.doctor(&running, &[("ALCF_HOST_SOPHIA_TOKEN", TOKEN)]);
    assert!(out.status.success(), "{checks:?}");
    assert_eq!(verdict(&checks, "gateway"), "ok");
    assert_eq!(verdict(&checks, "model"), "ok", "{checks:?}");
    // A model the cluster does not run yet: a warning that says it will start on first use.
    let cold = rig.config("cold", local, &llm("some/other-model"));
    let (out, checks) = rig.doctor(&cold, &[("ALCF_HOST_SOPHIA_TOKEN", TOKEN)]);
    assert!(out.status.success(), "a cold model is a warning: {checks:?}");
    assert_eq!(verdict(&checks, "model"), "warn");
    assert!(check(&checks, "model")["found"].as_str().unwrap().contains("not listed"), "{checks:?}");
    // The gateway is gone.
    drop(gw);
    let (out, checks) = rig.doctor(&running, &[("ALCF_HOST_SOPHIA_TOKEN", TOKEN)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&checks, "gateway"), "fail", "{checks:?}");
}

/// Through a real loopback sshd and ControlMaster to the PBS emulator; then with the master gone.
#[test]
fn pbs_through_an_ssh_master() {
    use alcf_tests::sshd::{Sshd, SshdOptions};
    let rig = Rig::new();
    let emu_home = rig.path().join("pbs-emu");
    std::fs::create_dir_all(&emu_home).unwrap();
    let sshd = Sshd::start_or_panic(SshdOptions::new().pbs_emulator(&emu_home));
    let control = sshd.open_master().unwrap();
    let executor = format!(
        "kind = \"pbs\"\nhost = \"{}\"\ncontrol_path = \"{}\"\nremote_dir = \"{}\"\ncommand = [\"sh\", \"-c\", \"true\"]\n\
         account = \"P\"\nqueue = \"capacity\"\nwalltime = \"00:30:00\"",
        sshd.host(),
        control.display(),
        rig.path().join("remote").display()
    );
    let cfg = rig.config("viassh", &executor, "");
    let (out, checks) = rig.doctor(&cfg, &[]);
    assert!(out.status.success(), "{checks:?}");
    for name in ["ssh", "qstat", "queue", "remote dir"] {
        assert_eq!(verdict(&checks, name), "ok", "{name}: {checks:?}");
    }
    // The master ends (a laptop's network changed): the fix is to open it again.
    let _ = Command::new("ssh").arg("-S").arg(&control).args(["-O", "exit", sshd.host()]).output();
    let (out, checks) = rig.doctor(&cfg, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&checks, "ssh"), "fail", "{checks:?}");
    assert!(check(&checks, "ssh")["fix"].as_str().unwrap().contains(&format!("alcf-host connect {}", sshd.host())));
}
