//! `download` against an HTTP server on 127.0.0.1 started by the test: good file, bad checksum,
//! server gone, HTTP error, resume of a partial download, and a transfer cut short.

use alcf_trainer::data;
use alcf_trainer::download::{self, Checksum, DownloadOptions};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

/// A cifar-100-binary.tar.gz holding a tiny synthetic dataset.
fn archive() -> &'static Vec<u8> {
    static A: OnceLock<Vec<u8>> = OnceLock::new();
    A.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        data::write_synthetic(t.path(), &data::SynthSpec { train_per_class: 1, test_per_class: 1, seed: 0 }).unwrap();
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tb = tar::Builder::new(gz);
        tb.append_dir_all("cifar-100-binary", t.path().join("cifar-100-binary")).unwrap();
        tb.into_inner().unwrap().finish().unwrap()
    })
}

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Serve the file, honouring `Range: bytes=N-`.
    Good,
    /// Announce the full length but close after this many bytes.
    CutAfter(usize),
    NotFound,
}

struct Server {
    url: String,
    /// The Range header of each request ("" when none).
    ranges: Arc<Mutex<Vec<String>>>,
}

/// Serve `body` on 127.0.0.1 for at most `max_conns` connections (the thread then exits).
fn serve(body: Vec<u8>, mode: Mode, max_conns: usize) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cifar-100-binary.tar.gz", l.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let r2 = ranges.clone();
    thread::spawn(move || {
        for conn in l.incoming().take(max_conns) {
            let Ok(s) = conn else { break };
            handle(s, &body, mode, &r2);
        }
    });
    Server { url, ranges }
}

fn handle(mut s: TcpStream, body: &[u8], mode: Mode, ranges: &Mutex<Vec<String>>) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut range = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range:") {
            range = v.trim().to_string();
        }
    }
    ranges.lock().unwrap().push(range.clone());
    if mode == Mode::NotFound {
        let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let start = range.strip_prefix("bytes=").and_then(|v| v.strip_suffix('-')).and_then(|v| v.parse::<usize>().ok());
    let (status, from) = match start {
        Some(n) if n < body.len() => ("206 Partial Content", n),
        Some(_) => {
            let _ =
                s.write_all(b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        None => ("200 OK", 0),
    };
    let chunk = &body[from..];
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n",
        chunk.len()
    );
    if from > 0 {
        head.push_str(&format!("Content-Range: bytes {from}-{}/{}\r\n", body.len() - 1, body.len()));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    let n = match mode {
        Mode::CutAfter(k) => k.min(chunk.len()),
        _ => chunk.len(),
    };
    let _ = s.write_all(&chunk[..n]);
    let _ = s.flush();
    // Drain so the close is clean.
    let mut sink = [0u8; 64];
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = s.read(&mut sink);
}

fn opts(url: &str, out: &Path, checksum: Checksum) -> DownloadOptions {
    DownloadOptions {
        url: url.to_string(),
        out: out.to_path_buf(),
        checksum,
        verbose: false,
        timeout: Duration::from_secs(10),
    }
}

#[test]
fn good_file_is_verified_extracted_and_loadable() {
    let body = archive().clone();
    let sum = sha256(&body);
    let srv = serve(body, Mode::Good, 1);
    let t = tempfile::tempdir().unwrap();
    let dir = download::download(&opts(&srv.url, t.path(), Checksum::sha256(&sum).unwrap())).unwrap();
    assert_eq!(dir, t.path().join("cifar-100-binary"));
    assert!(t.path().join("cifar-100-binary.tar.gz").is_file());
    assert!(!t.path().join("cifar-100-binary.tar.gz.part").exists());
    assert_eq!(data::read_bin(&dir.join("train.bin")).unwrap().len(), 100);
    // Running again uses the verified archive without a request (the server took one connection).
    download::download(&opts(&srv.url, t.path(), Checksum::sha256(&sum).unwrap())).unwrap();
    assert_eq!(srv.ranges.lock().unwrap().len(), 1);
}

#[test]
fn bad_checksum_is_an_error_and_leaves_nothing_behind() {
    let srv = serve(archive().clone(), Mode::Good, 1);
    let t = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    let e = download::download(&opts(&srv.url, t.path(), Checksum::sha256(&wrong).unwrap())).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch") && e.contains("sha256"), "{e}");
    assert!(!t.path().join("cifar-100-binary.tar.gz").exists());
    assert!(!t.path().join("cifar-100-binary.tar.gz.part").exists());
    assert!(!t.path().join("cifar-100-binary").exists());
    // The MD5 route reports the same way.
    let srv = serve(archive().clone(), Mode::Good, 1);
    let e = download::download(&opts(&srv.url, t.path(), Checksum::Md5(download::DEFAULT_MD5.into())))
        .unwrap_err()
        .to_string();
    assert!(e.contains("md5 is"), "{e}");
}

#[test]
fn server_gone_says_offline() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // listener dropped: nothing listens there now
    let t = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/cifar-100-binary.tar.gz");
    let e = format!("{:#}", download::download(&opts(&url, t.path(), Checksum::None)).unwrap_err());
    assert!(e.contains("offline") && e.contains(&url), "{e}");
    assert!(!t.path().join("cifar-100-binary").exists());
}

#[test]
fn http_error_is_reported_with_its_status() {
    let srv = serve(Vec::new(), Mode::NotFound, 1);
    let t = tempfile::tempdir().unwrap();
    let e = download::download(&opts(&srv.url, t.path(), Checksum::None)).unwrap_err().to_string();
    assert!(e.contains("HTTP 404"), "{e}");
}

#[test]
fn partial_download_resumes_with_a_range_request() {
    let body = archive().clone();
    let sum = sha256(&body);
    let t = tempfile::tempdir().unwrap();
    let k = body.len() / 3;
    std::fs::write(t.path().join("cifar-100-binary.tar.gz.part"), &body[..k]).unwrap();
    let srv = serve(body.clone(), Mode::Good, 1);
    download::download(&opts(&srv.url, t.path(), Checksum::sha256(&sum).unwrap())).unwrap();
    assert_eq!(*srv.ranges.lock().unwrap(), vec![format!("bytes={k}-")]);
    assert_eq!(std::fs::read(t.path().join("cifar-100-binary.tar.gz")).unwrap(), body);
    assert!(t.path().join("cifar-100-binary/test.bin").is_file());
}

#[test]
fn cut_transfer_fails_clearly_then_resumes() {
    let body = archive().clone();
    let sum = sha256(&body);
    let t = tempfile::tempdir().unwrap();
    let cut = body.len() / 2;
    let srv = serve(body.clone(), Mode::CutAfter(cut), 1);
    let e = download::download(&opts(&srv.url, t.path(), Checksum::sha256(&sum).unwrap())).unwrap_err().to_string();
    assert!(e.contains("resume"), "{e}");
    let part = t.path().join("cifar-100-binary.tar.gz.part");
    let have = std::fs::metadata(&part).unwrap().len() as usize;
    assert!(have > 0 && have <= cut, "{have}");
    let srv = serve(body.clone(), Mode::Good, 1);
    download::download(&opts(&srv.url, t.path(), Checksum::sha256(&sum).unwrap())).unwrap();
    assert_eq!(*srv.ranges.lock().unwrap(), vec![format!("bytes={have}-")]);
    assert_eq!(std::fs::read(t.path().join("cifar-100-binary.tar.gz")).unwrap(), body);
}
