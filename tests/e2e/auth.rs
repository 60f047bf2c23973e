//! `alcf-host auth` and `alcf_host::auth::Credentials` against the Globus Auth double
//! (tests/doubles/globus_auth.py) on 127.0.0.1: the real binary, real HTTP, real token files.
//! Each test isolates HOME and ALCF_HOST_CONFIG_DIR in its own temporary directory.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use alcf_host::auth::{AccessToken, AuthConfig, COMPUTE, Credentials, SOPHIA};
use alcf_tests::doubles::Double;
use alcf_tests::{host_bin_only, text};

const ALCF_FILE: &str = ".globus/app/58fdd3bc-e1c3-4ce5-80ea-8d6b87cfb944/inference_app/tokens.json";

/// The Globus Auth double (killed when dropped) and its state file.
pub(crate) struct Globus {
    double: Double,
    state: PathBuf,
}

impl Globus {
    pub(crate) fn start(dir: &Path, access_ttl: u32) -> Globus {
        let state = dir.join("globus-state.json");
        let ttl = access_ttl.to_string();
        let double = Double::start("globus_auth.py", &["--access-ttl", &ttl, "--state", state.to_str().unwrap()]);
        Globus { double, state }
    }

    pub(crate) fn url(&self) -> String {
        self.double.url()
    }

    /// The state file the gateway double reads to decide which tokens are valid.
    pub(crate) fn state(&self) -> &Path {
        &self.state
    }

    pub(crate) fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.double.http(method, path, body)
    }

    /// The requests the double received: (path, grant_type).
    fn log(&self) -> Vec<(String, Option<String>)> {
        let (_, body) = self.http("GET", "/_control/log", "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| (e["path"].as_str().unwrap().to_string(), e["params"]["grant_type"].as_str().map(String::from)))
            .collect()
    }

    fn refreshes(&self) -> usize {
        self.log().iter().filter(|(_, g)| g.as_deref() == Some("refresh_token")).count()
    }

    /// Every access token the double issued, and whether it is revoked.
    fn issued(&self) -> Vec<(String, bool)> {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&self.state).unwrap()).unwrap();
        v["access_tokens"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, e)| (k.clone(), e["revoked"].as_bool().unwrap()))
            .collect()
    }
}

/// A user: HOME and the config directory in a temporary directory.
pub(crate) struct User {
    pub(crate) dir: tempfile::TempDir,
}

impl User {
    pub(crate) fn new() -> User {
        User { dir: tempfile::tempdir().unwrap() }
    }

    pub(crate) fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub(crate) fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config/alcf-host")
    }

    fn store(&self) -> PathBuf {
        self.config_dir().join("tokens.json")
    }

    fn cfg(&self, globus: &Globus) -> AuthConfig {
        AuthConfig {
            auth_url: globus.url(),
            client_id: "58fdd3bc-e1c3-4ce5-80ea-8d6b87cfb944".into(),
            config_dir: self.config_dir(),
            home: Some(self.home()),
        }
    }

    pub(crate) fn cmd(&self, globus: &Globus, args: &[&str]) -> Command {
        std::fs::create_dir_all(self.home()).unwrap();
        let mut c = Command::new(host_bin_only());
        c.args(args)
            .env("HOME", self.home())
            .env("ALCF_HOST_CONFIG_DIR", self.config_dir())
            .env("ALCF_HOST_GLOBUS_AUTH_URL", globus.url())
            .env_remove("ALCF_HOST_SOPHIA_TOKEN")
            .env_remove("ALCF_HOST_COMPUTE_TOKEN")
            .env_remove("BROWSER")
            .env_remove("DISPLAY");
        c
    }

    fn run(&self, globus: &Globus, args: &[&str]) -> Output {
        self.cmd(globus, args).stdin(Stdio::null()).output().unwrap()
    }

    /// `auth login --no-browser`: reads the URL the CLI prints, fetches the double's authorize page
    /// for it as a browser would, and pastes the code shown there. Returns (URL, output).
    pub(crate) fn login(&self, globus: &Globus, extra: &[&str]) -> (String, Output) {
        let mut args = vec!["auth", "login", "--no-browser"];
        args.extend_from_slice(extra);
        let mut child = self
            .cmd(globus, &args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut url = String::new();
        stdout.read_line(&mut url).unwrap();
        let url = url.trim().to_string();
        let path = url.strip_prefix(&globus.url()).unwrap_or_else(|| panic!("URL not on the double: {url:?}"));
        let (status, page) = globus.http("GET", path, "");
        assert_eq!(status, 200, "{page}");
        let code = page.split("<code id=\"auth-code\">").nth(1).and_then(|r| r.split('<').next()).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "  {code}  ").unwrap();
        drop(stdin);
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let mut out = child.wait_with_output().unwrap();
        out.stdout = format!("{url}\n{rest}").into_bytes();
        (url, out)
    }

    pub(crate) fn stored_access(&self, resource_server: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(self.store()).unwrap()).unwrap();
        v["tokens"][resource_server]["access_token"].as_str().unwrap().to_string()
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Tests that call the library read the process's own environment: an override set by whoever
/// runs the tests would hide the store.
fn assert_no_env_override() {
    assert!(
        std::env::var_os("ALCF_HOST_SOPHIA_TOKEN").is_none() && std::env::var_os("ALCF_HOST_COMPUTE_TOKEN").is_none(),
        "unset ALCF_HOST_SOPHIA_TOKEN / ALCF_HOST_COMPUTE_TOKEN to run these tests"
    );
}

#[test]
fn login_status_and_logout_through_the_double() {
    let user = User::new();
    let globus = Globus::start(user.dir.path(), 172_800);
    let (url, out) = user.login(&globus, &[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("logged in to Globus as ada@anl.gov (ada@example.org) for sophia, compute"), "{t}");
    for p in [
        "redirect_uri=https%3A%2F%2Fauth.globus.org%2Fv2%2Fweb%2Fauth-code",
        "code_challenge_method=S256",
        "access_type=offline",
        "session_required_policies=83732ff2-9c42-4548-b5ce-17e498c84f6a",
        "scope=openid%20profile%20email%20https%3A%2F%2Fauth.globus.org%2Fscopes%2F681c10cc",
    ] {
        assert!(url.contains(p), "{p} missing from {url}");
    }
    assert_eq!(mode(&user.store()), 0o600);
    assert_eq!(mode(&user.config_dir()), 0o700);

    let issued = globus.issued();
    assert_eq!(issued.len(), 3, "auth.globus.org, sophia and compute");
    let status = user.run(&globus, &["auth", "status"]);
    let json = user.run(&globus, &["auth", "status", "--json"]);
    let (st, js) = (text(&status), text(&json));
    assert!(status.status.success() && json.status.success(), "{st}{js}");
    assert!(st.contains("sophia: alcf-host store") && st.contains("compute: alcf-host store"), "{st}");
    assert!(st.contains("who: ada@anl.gov"), "{st}");
    // 48 h tokens, read a moment later.
    assert!(
        st.contains("access token: expires in 47 h 59 min") || st.contains("access token: expires in 48 h 0 min"),
        "{st}"
    );
    assert!(st.contains("refresh token: yes") && st.contains("/action_all"), "{st}");
    for (token, _) in &issued {
        assert!(!t.contains(token) && !st.contains(token) && !js.contains(token), "a token was printed");
    }
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["service"], "sophia");
    assert_eq!(v[0]["source"], "alcf-host store");
    assert_eq!(v[0]["identity"]["username"], "ada@anl.gov");
    assert_eq!(v[0]["refresh_token"], true);
    assert!(v[1]["expires_in_seconds"].as_i64().unwrap() > 172_000, "{v}");

    // A store others can read is made private again, with a warning.
    std::fs::set_permissions(user.store(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let t = text(&user.run(&globus, &["auth", "status"]));
    assert_eq!(mode(&user.store()), 0o600);
    assert!(t.contains("had mode 644") && t.contains("setting it to 600"), "{t}");

    let out = user.run(&globus, &["auth", "logout"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("revoked 6 token(s)"), "{}", text(&out));
    let revokes = globus.log().iter().filter(|(p, _)| p == "/v2/oauth2/token/revoke").count();
    assert_eq!(revokes, 6, "3 access and 3 refresh tokens");
    assert!(globus.issued().iter().all(|(_, revoked)| *revoked));
    assert!(!user.store().exists());
    let st = text(&user.run(&globus, &["auth", "status"]));
    assert!(st.contains("sophia: none — run `alcf-host auth login`"), "{st}");
}

#[test]
fn logout_without_network_still_deletes_and_says_so() {
    let user = User::new();
    let mut globus = Globus::start(user.dir.path(), 172_800);
    let (_, out) = user.login(&globus, &["--service", "compute"]);
    assert!(out.status.success(), "{}", text(&out));
    let st = text(&user.run(&globus, &["auth", "status"]));
    assert!(st.contains("compute: alcf-host store") && st.contains("sophia: none"), "{st}");
    globus.double.kill();
    let out = user.run(&globus, &["auth", "logout"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("cannot reach Globus Auth") && t.contains("stay valid until they expire"), "{t}");
    assert!(!user.store().exists());
}

#[test]
fn tokens_refresh_before_expiry_once_for_concurrent_callers() {
    assert_no_env_override();
    let user = User::new();
    // Logged in with 60 s tokens: within the 5-minute margin, so the first use refreshes.
    let globus = Globus::start(user.dir.path(), 60);
    let (_, out) = user.login(&globus, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let original = user.stored_access(SOPHIA.resource_server);
    assert_eq!(globus.http("POST", "/_control/ttl", r#"{"access_ttl": 172800}"#).0, 200);
    let creds = Credentials::new(user.cfg(&globus));
    let rt = runtime();
    let tokens: Vec<String> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let c = creds.clone();
            set.spawn(async move { c.access_token(&SOPHIA).await.map(|t| t.secret().to_string()) });
        }
        let mut all = Vec::new();
        while let Some(r) = set.join_next().await {
            all.push(r.unwrap().unwrap());
        }
        all
    });
    assert_eq!(globus.refreshes(), 1, "8 concurrent callers share one refresh");
    let fresh = user.stored_access(SOPHIA.resource_server);
    assert_ne!(fresh, original);
    assert!(tokens.iter().all(|t| t == &fresh));
    assert_eq!(mode(&user.store()), 0o600);
    // The compute token was not due: no refresh for it.
    assert_eq!(globus.refreshes(), 1);

    rt.block_on(async {
        // A 401 for the old token: another caller already refreshed, so the stored one comes back.
        let got = creds.refresh_after_rejection(&SOPHIA, &AccessToken::new(original.clone())).await.unwrap();
        assert_eq!(got.secret(), fresh);
        assert_eq!(globus.refreshes(), 1);
        // A 401 for the stored token itself: refreshed even though it is not expiring.
        let got = creds.refresh_after_rejection(&SOPHIA, &got).await.unwrap();
        assert_ne!(got.secret(), fresh);
        assert_eq!(globus.refreshes(), 2);
        assert_eq!(user.stored_access(SOPHIA.resource_server), got.secret());
        assert_eq!(format!("{got:?} {got}"), "AccessToken(…redacted) AccessToken(…redacted)");
    });
}

#[test]
fn a_revoked_refresh_token_says_to_log_in_again() {
    assert_no_env_override();
    let user = User::new();
    let globus = Globus::start(user.dir.path(), 60);
    let (_, out) = user.login(&globus, &["--service", "sophia"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(globus.http("POST", "/_control/revoke_refresh", "{}").0, 200);
    let creds = Credentials::new(user.cfg(&globus));
    let e = runtime().block_on(creds.access_token(&SOPHIA)).unwrap_err().to_string();
    assert!(e.contains("refresh token for sophia was revoked or has expired"), "{e}");
    assert!(e.ends_with("run `alcf-host auth login`"), "{e}");
    assert!(!e.contains(&user.stored_access(SOPHIA.resource_server)), "{e}");
    // Compute was not part of this login.
    let e = runtime().block_on(creds.access_token(&COMPUTE)).unwrap_err().to_string();
    assert_eq!(e, "not logged in to Globus for compute: run `alcf-host auth login`");
}

#[test]
fn alcf_tokens_json_is_used_and_refreshed_into_our_store() {
    assert_no_env_override();
    // Someone who logged in with ALCF's inference_auth_token.py: tokens (60 s left) in ALCF's file.
    let donor = User::new();
    let globus = Globus::start(donor.dir.path(), 60);
    let (_, out) = donor.login(&globus, &["--service", "sophia"]);
    assert!(out.status.success(), "{}", text(&out));
    let stored: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(donor.store()).unwrap()).unwrap();
    let mut entry = stored["tokens"][SOPHIA.resource_server].clone();
    entry["token_type"] = "Bearer".into();
    let alcf = serde_json::json!({"data": {"DEFAULT": {SOPHIA.resource_server: entry}}, "format_version": "2.0"});
    let user = User::new();
    let alcf_path = user.home().join(ALCF_FILE);
    std::fs::create_dir_all(alcf_path.parent().unwrap()).unwrap();
    std::fs::write(&alcf_path, alcf.to_string()).unwrap();
    let before = std::fs::read(&alcf_path).unwrap();

    let st = text(&user.run(&globus, &["auth", "status"]));
    assert!(st.contains("sophia: ALCF tokens.json") && st.contains("inference_app/tokens.json"), "{st}");
    assert!(st.contains("compute: none"), "{st}");

    assert_eq!(globus.http("POST", "/_control/ttl", r#"{"access_ttl": 172800}"#).0, 200);
    let creds = Credentials::new(user.cfg(&globus));
    let rt = runtime();
    let t = rt.block_on(creds.access_token(&SOPHIA)).unwrap();
    assert_ne!(t.secret(), entry["access_token"].as_str().unwrap());
    assert_eq!(globus.refreshes(), 1);
    assert_eq!(std::fs::read(&alcf_path).unwrap(), before, "ALCF's file is never written");
    assert_eq!(user.stored_access(SOPHIA.resource_server), t.secret());
    assert_eq!(mode(&user.store()), 0o600);
    // Now from our store, without another refresh.
    assert_eq!(rt.block_on(creds.access_token(&SOPHIA)).unwrap(), t);
    assert_eq!(globus.refreshes(), 1);
    let st = text(&user.run(&globus, &["auth", "status"]));
    assert!(st.contains("sophia: alcf-host store") && st.contains("refresh token: yes"), "{st}");
}

#[test]
fn env_override_and_a_broken_store() {
    let user = User::new();
    let globus = Globus::start(user.dir.path(), 172_800);
    let out = user.cmd(&globus, &["auth", "status"]).env("ALCF_HOST_SOPHIA_TOKEN", "env-secret-1234").output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("sophia: env ($ALCF_HOST_SOPHIA_TOKEN") && t.contains("compute: none"), "{t}");
    assert!(!t.contains("env-secret-1234"), "{t}");

    std::fs::create_dir_all(user.config_dir()).unwrap();
    std::fs::write(user.store(), "{\"format_version\": 1, oops").unwrap();
    let out = user.run(&globus, &["auth", "status"]);
    let t = text(&out);
    assert!(!out.status.success() && !t.contains("panicked"), "{t}");
    assert!(t.contains("token file") && t.contains("tokens.json") && t.contains("fix or delete it"), "{t}");
    // Logging in again replaces the broken file.
    let (_, out) = user.login(&globus, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&user.run(&globus, &["auth", "status"])).contains("who: ada@anl.gov"));
}
