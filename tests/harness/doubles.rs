//! The Python test doubles under tests/doubles (Sophia's gateway, Globus Auth) and tests/globus
//! (Globus Compute) as fixtures: each is started on a free loopback port, answers its control
//! routes, and is killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running double.
pub struct Double {
    child: Child,
    pub port: u16,
}

impl Double {
    /// Starts `tests/doubles/<script>` with `args` (plus `--port 0`) and waits for `LISTENING <port>`.
    pub fn start(script: &str, args: &[&str]) -> Double {
        Double::start_at(&format!("doubles/{script}"), args)
    }

    /// The Globus Compute double, `tests/globus/compute_api.py` (see tests/globus/README.md).
    pub fn compute(args: &[&str]) -> Double {
        Double::start_at("globus/compute_api.py", args)
    }

    /// Starts `tests/<script>` as [`start`](Self::start) does.
    pub fn start_at(script: &str, args: &[&str]) -> Double {
        let path = crate::repo().join("tests").join(script);
        let mut child = Command::new("python3")
            .arg(&path)
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start python3 {}: {e}", path.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the double's first line");
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{script} did not say LISTENING <port>: {line:?}"));
        Double { child, port }
    }

    /// The Sophia gateway double (see tests/doubles/README.md).
    pub fn gateway(args: &[&str]) -> Double {
        Double::start("sophia_gateway.py", args)
    }

    /// Stops the double now (its port then refuses connections).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The gateway double's OpenAI-compatible base URL (Sophia's route layout).
    pub fn vllm_base(&self) -> String {
        format!("{}/resource_server/sophia/vllm/v1", self.url())
    }

    /// POSTs a JSON body to a route; returns (status, body).
    pub fn post(&self, route: &str, body: &serde_json::Value) -> (u16, String) {
        http(self.port, "POST", route, Some(&body.to_string()))
    }

    pub fn get(&self, route: &str) -> (u16, String) {
        http(self.port, "GET", route, None)
    }

    /// Any request with a text body (e.g. a browser fetching the authorize page).
    pub fn http(&self, method: &str, route: &str, body: &str) -> (u16, String) {
        http(self.port, method, route, Some(body))
    }

    /// Queues faults for the next chat requests (`POST /_control/faults`).
    pub fn faults(&self, faults: serde_json::Value) {
        let (status, body) = self.post("/_control/faults", &faults);
        assert_eq!(status, 200, "queue faults: {body}");
    }

    /// Every chat request the gateway double received, oldest first.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let (status, body) = self.get("/_control/requests");
        assert_eq!(status, 200, "requests: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("requests are JSON");
        match v {
            serde_json::Value::Array(a) => a,
            serde_json::Value::Object(mut o) => match o.remove("requests") {
                Some(serde_json::Value::Array(a)) => a,
                other => panic!("unexpected /_control/requests answer: {other:?}"),
            },
            other => panic!("unexpected /_control/requests answer: {other}"),
        }
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 request with `Connection: close`, enough for the doubles' control routes.
fn http(port: u16, method: &str, route: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the double");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {route} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send to the double");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the double's answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Every file under `dir` whose bytes contain `needle` (for "no token anywhere" checks).
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(p);
            }
        }
    }
    found
}
