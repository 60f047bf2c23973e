//! `alcf-host dashboard`: the studies list, a study's live page in real headless Chromium (driven
//! over the DevTools protocol on a pipe, with Python's standard library), following a study that a
//! real host keeps running meanwhile: the page re-renders itself when trials finish, and the
//! running host is never held up. Also: the token, when one is asked for.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alcf_tests::{chromium, host_bin, plugin, text};

/// Drives Chromium over --remote-debugging-pipe: opens URL, reports the page's data-version and
/// rendered-figure count once loaded, writes LOADED, then waits (up to 90 s) for the version to change.
const DRIVER: &str = r#"
import json, os, subprocess, sys, time
chrome, url, loaded, profile = sys.argv[1:5]
to_chrome_r, to_chrome_w = os.pipe()
from_chrome_r, from_chrome_w = os.pipe()
def child():
    os.dup2(to_chrome_r, 3)
    os.dup2(from_chrome_w, 4)
p = subprocess.Popen([chrome, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                      "--user-data-dir=" + profile, "about:blank"], preexec_fn=child, pass_fds=(3, 4),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
os.close(to_chrome_r); os.close(from_chrome_w)
buf = b""; next_id = [0]
def call(method, params=None, session=None):
    global buf
    next_id[0] += 1
    msg = {"id": next_id[0], "method": method, "params": params or {}}
    if session:
        msg["sessionId"] = session
    os.write(to_chrome_w, json.dumps(msg).encode() + b"\0")
    while True:
        while b"\0" not in buf:
            chunk = os.read(from_chrome_r, 65536)
            if not chunk:
                sys.exit("chromium closed its pipe")
            buf += chunk
        raw, buf = buf.split(b"\0", 1)
        m = json.loads(raw)
        if m.get("id") == next_id[0]:
            if "error" in m:
                sys.exit("%s: %s" % (method, m["error"]))
            return m.get("result", {})
target = call("Target.createTarget", {"url": url})["targetId"]
session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
def attr(name):
    r = call("Runtime.evaluate", {"expression": "document.body ? document.body.getAttribute(%r) : null" % name,
                                  "returnByValue": True}, session)
    return r.get("result", {}).get("value")
def wait(pred, limit):
    end = time.time() + limit
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.25)
    sys.exit("timed out")
first = wait(lambda: attr("data-version") if attr("data-figures-rendered") else None, 30)
rendered_first = attr("data-figures-rendered")
open(loaded, "w").write(first)
second = wait(lambda: (lambda v: v if v and v != first else None)(attr("data-version")), 90)
wait(lambda: attr("data-figures-rendered"), 30)
print(json.dumps({"first": first, "second": second, "rendered_first": rendered_first,
                  "rendered_second": attr("data-figures-rendered")}))
p.kill()
"#;

/// `alcf-host dashboard …` and the URL it printed.
fn start(dir: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(host_bin())
        .args(["dashboard", "--root", dir.join("studies").to_str().unwrap(), "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("dashboard: ").unwrap_or_else(|| panic!("{line:?}")).to_string();
    (child, url)
}

fn get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap();
    let mut s = TcpStream::connect(host).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn config(dir: &Path, trials: u32) -> std::path::PathBuf {
    std::fs::write(dir.join("t.py"), "import json, sys, time\ntime.sleep(0.4)\nx = float(sys.argv[1])\njson.dump({'loss': (x - 0.3) ** 2}, open('result.json', 'w'))\n").unwrap();
    let cfg = dir.join("live.toml");
    std::fs::write(
        &cfg,
        format!(
            "[study]\nname = \"live\"\nobjective = \"loss\"\ntrials = {trials}\nparallel = 2\nroot = \"studies\"\n\n\
             [strategy]\nplugin = \"{}\"\n\n[executor]\nkind = \"local\"\ncommand = [\"python3\", \"{{config_dir}}/t.py\", \"{{x}}\"]\n\n\
             [space]\nx = {{ type = \"float\", low = 0.0, high = 1.0 }}\ny = {{ type = \"float\", low = 0.0, high = 1.0 }}\n",
            plugin("random").display()
        ),
    )
    .unwrap();
    cfg
}

fn run(dir: &Path, cfg: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(host_bin())
        .args(["run", "--config", cfg.to_str().unwrap(), "--quiet"])
        .args(extra)
        .current_dir(dir)
        .env("ALCF_HOST_CACHE", dir.join("cache"))
        .output()
        .unwrap()
}

#[test]
fn the_dashboard_follows_a_running_study_live() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 10);
    let out = run(dir.path(), &cfg, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let (mut dash, url) = start(dir.path(), &[]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (status, body) = get(&url);
    assert_eq!(status, 200);
    assert!(body.contains("href=\"/study/live\""), "{body}");
    let (status, body) = get(&format!("{url}api/studies"));
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["completed"], 10, "{v}");
    assert_eq!(get(&format!("{url}study/nosuch")).0, 404);
    assert_eq!(get(&format!("{url}etc/passwd")).0, 404);

    // Chromium opens the study's page; once it has rendered, the host runs 6 more trials.
    let loaded = dir.path().join("loaded");
    let driver = Command::new("python3")
        .args(["-c", DRIVER, &chromium(), &format!("{url}study/live"), loaded.to_str().unwrap()])
        .arg(dir.path().join("chromium-profile"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start_wait = Instant::now();
    while !loaded.exists() {
        assert!(start_wait.elapsed() < Duration::from_secs(60), "the page never loaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = Instant::now();
    let out = run(dir.path(), &cfg, &["--resume", "--trials", "16"]);
    assert!(out.status.success(), "the dashboard held the host up: {}", text(&out));
    let driven = driver.wait_with_output().unwrap();
    assert!(driven.status.success(), "driver: {}", String::from_utf8_lossy(&driven.stderr));
    let v: serde_json::Value = serde_json::from_slice(&driven.stdout).unwrap();
    assert_eq!(v["rendered_first"], "9", "{v}");
    assert_eq!(v["rendered_second"], "9", "{v}");
    assert_ne!(v["first"], v["second"], "the page did not follow the study: {v}");
    assert!(v["first"].as_str().unwrap().starts_with("10-10-"), "{v}");
    eprintln!("host run with the dashboard open: {:.1} s", t.elapsed().as_secs_f64());
    dash.kill().unwrap();
    let _ = dash.wait();
}

#[test]
fn a_token_guards_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 2);
    assert!(run(dir.path(), &cfg, &[]).status.success());
    let (mut dash, url) = start(dir.path(), &["--token", "s3cret"]);
    assert!(url.ends_with("/?token=s3cret"), "{url}");
    let base = url.trim_end_matches("?token=s3cret");
    for path in ["", "api/studies", "study/live", "api/study/live/version"] {
        let (status, body) = get(&format!("{base}{path}"));
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("token"), "{body}");
        assert_eq!(get(&format!("{base}{path}?token=s3cret")).0, 200, "{path}");
    }
    let (_, page) = get(&url);
    assert!(page.contains("/study/live?token=s3cret"), "links carry the token: {page}");
    dash.kill().unwrap();
    let _ = dash.wait();
}
