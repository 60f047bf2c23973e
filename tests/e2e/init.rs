//! `alcf-host init`: with flags only, and answered through a pseudo-terminal as a person would
//! (expect-style, with Python's pty module driving the real binary). Either way the written config
//! passes `doctor` and runs.

use std::path::Path;
use std::process::Command;

use alcf_tests::{host_bin, plugin, text, trial_states};

const TRIAL: &str = "#!/bin/sh\n# usage: t.sh X\n[ \"$1\" = --help ] && { echo 'usage: t.sh X'; exit 0; }\n\
                     printf '{\"loss\": %s}\\n' \"$1\" > result.json\n";
const SPACE: &str = "[space]\nx = { type = \"float\", low = 0.0, high = 1.0 }\n";

fn setup(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(dir.join("t.sh"), TRIAL).unwrap();
    std::fs::set_permissions(dir.join("t.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("space.toml"), SPACE).unwrap();
}

fn alcf(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(host_bin())
        .args(args)
        .current_dir(dir)
        .env("ALCF_HOST_CACHE", dir.join("cache"))
        .env("ALCF_HOST_CONFIG_DIR", dir.join("auth"))
        .output()
        .unwrap()
}

fn runs(dir: &Path, cfg: &str, study: &str, trials: usize) {
    let out = alcf(dir, &["run", "--config", cfg, "--quiet"]);
    assert!(out.status.success(), "{}", text(&out));
    let states = trial_states(&dir.join("studies").join(study));
    assert_eq!(states.iter().filter(|(_, s, _)| s == "completed").count(), trials, "{states:?}");
}

#[test]
fn init_with_flags_writes_a_config_that_passes_doctor_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let random = plugin("random").display().to_string();
    let out = alcf(
        dir.path(),
        &[
            "init",
            "--yes",
            "--out",
            "flags.toml",
            "--executor",
            "local",
            "--name",
            "flags",
            "--command",
            "./t.sh {x}",
            "--space",
            "space.toml",
            "--objective",
            "loss",
            "--direction",
            "minimize",
            "--strategy",
            &random,
            "--trials",
            "3",
            "--parallel",
            "2",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("ok    program") && t.contains("0 failed"), "{t}");
    let cfg = std::fs::read_to_string(dir.path().join("flags.toml")).unwrap();
    assert!(cfg.contains("space = \"space.toml\"") && cfg.contains("command = [\"./t.sh\", \"{x}\"]"), "{cfg}");
    runs(dir.path(), "flags.toml", "flags", 3);
    // An existing file is not overwritten without --force.
    let out = alcf(dir.path(), &["init", "--yes", "--out", "flags.toml"]);
    assert!(!out.status.success() && text(&out).contains("--force"), "{}", text(&out));
    // PBS and Globus configs load too (doctor then says what is missing on this machine).
    for kind in ["pbs", "globus"] {
        let out = alcf(
            dir.path(),
            &[
                "init",
                "--yes",
                "--out",
                &format!("{kind}.toml"),
                "--executor",
                kind,
                "--space",
                "space.toml",
                "--strategy",
                &random,
                "--no-doctor",
            ],
        );
        assert!(out.status.success(), "{kind}: {}", text(&out));
        alcf_host::config::Config::load(&dir.path().join(format!("{kind}.toml"))).unwrap();
    }
}

/// The questions answered on a terminal: Enter takes a default, an arrow key moves a choice.
#[test]
fn init_answered_through_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let driver = r#"
import os, pty, select, subprocess, sys, time
exe, random = sys.argv[1], sys.argv[2]
master, slave = pty.openpty()
env = dict(os.environ, TERM="xterm", COLUMNS="200", LINES="50")
p = subprocess.Popen([exe, "init", "--out", "tty.toml"], stdin=slave, stdout=slave, stderr=slave, env=env,
                     close_fds=True, start_new_session=True)
os.close(slave)
seen = b""
def expect(text, timeout=30):
    global seen
    end = time.time() + timeout
    while text.encode() not in seen:
        if time.time() > end:
            sys.exit("timed out waiting for %r; screen so far:\n%s" % (text, seen.decode(errors="replace")))
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
    seen = seen[seen.index(text.encode()) + len(text):]
def send(keys):
    time.sleep(0.2)
    os.write(master, keys.encode())
expect("Where do trials run?"); send("\r")
expect("Study name"); send("tty\r")
expect("Trial program"); send("./t.sh {x}\r")
expect("Search space file"); send("space.toml\r")
expect("Objective"); send("loss\r")
expect("Direction"); send("\x1b[A\r")           # up: from maximize (the default) to minimize
expect("Strategy plugin"); send(random + "\r")
expect("Capabilities"); send("\r")
expect("Trials in all"); send("4\r")
expect("Trials at once"); send("\r")
expect("failed")
while True:
    r, _, _ = select.select([master], [], [], 0.5)
    if not r:
        if p.poll() is not None:
            break
        continue
    try:
        seen += os.read(master, 4096)
    except OSError:
        break
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(p.wait())
"#;
    let out = Command::new("python3")
        .args(["-c", driver])
        .arg(host_bin())
        .arg(plugin("random"))
        .current_dir(dir.path())
        .env("ALCF_HOST_CACHE", dir.path().join("cache"))
        .env("ALCF_HOST_CONFIG_DIR", dir.path().join("auth"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let cfg = std::fs::read_to_string(dir.path().join("tty.toml")).unwrap();
    assert!(
        cfg.contains("name = \"tty\"") && cfg.contains("direction = \"minimize\"") && cfg.contains("trials = 4"),
        "{cfg}"
    );
    assert!(cfg.contains("parallel = 1"), "the default: {cfg}");
    runs(dir.path(), "tty.toml", "tty", 4);
}
