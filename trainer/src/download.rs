//! Download of cifar-100-binary.tar.gz: resumable (HTTP Range on a `.part` file), checksum
//! verified, extracted into the output directory.

use anyhow::{Context, Result, bail};
use md5::Md5;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const DEFAULT_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz";
/// The MD5 the dataset's page and common loaders publish for cifar-100-binary.tar.gz.
pub const DEFAULT_MD5: &str = "03b5dce01913d631647c71ecec9e9cb8";
/// Its size in bytes.
pub const DEFAULT_SIZE: u64 = 168_513_733;
pub const ARCHIVE_NAME: &str = "cifar-100-binary.tar.gz";

/// Expected digest of the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    Sha256(String),
    Md5(String),
    None,
}

impl Checksum {
    fn check_hex(name: &str, hex: &str, len: usize) -> Result<String> {
        let h = hex.trim().to_ascii_lowercase();
        if h.len() != len || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("--{name} must be {len} hexadecimal digits, got '{hex}'");
        }
        Ok(h)
    }
    pub fn sha256(hex: &str) -> Result<Self> {
        Ok(Checksum::Sha256(Self::check_hex("sha256", hex, 64)?))
    }
    pub fn md5(hex: &str) -> Result<Self> {
        Ok(Checksum::Md5(Self::check_hex("md5", hex, 32)?))
    }
}

#[derive(Clone, Debug)]
pub struct DownloadOptions {
    pub url: String,
    pub out: PathBuf,
    pub checksum: Checksum,
    pub verbose: bool,
    /// Connect / per-read timeout.
    pub timeout: Duration,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Digest of a file: (sha256, md5) in hex.
pub fn file_digests(path: &Path) -> Result<(String, String)> {
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut s = Sha256::new();
    let mut m = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        s.update(&buf[..n]);
        m.update(&buf[..n]);
    }
    Ok((hex(&s.finalize()), hex(&m.finalize())))
}

fn verify(path: &Path, expected: &Checksum) -> Result<std::result::Result<(), String>> {
    let (sha, md5) = file_digests(path)?;
    Ok(match expected {
        Checksum::Sha256(h) if *h != sha => Err(format!("sha256 is {sha}, expected {h}")),
        Checksum::Md5(h) if *h != md5 => Err(format!("md5 is {md5}, expected {h}")),
        _ => Ok(()),
    })
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")
}

fn agent(opts: &DownloadOptions) -> ureq::Agent {
    let mut b = ureq::Agent::config_builder()
        .timeout_connect(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        .http_status_as_error(false)
        .user_agent("alcf-trainer");
    if is_loopback(&opts.url) {
        b = b.proxy(None);
    }
    ureq::Agent::new_with_config(b.build())
}

fn offline_hint(url: &str, dest: &Path, e: &ureq::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot download {url}: {e}. Are you offline, or is the server gone? \
         Fetch {ARCHIVE_NAME} another way and put it at {}, then run this command again (it verifies and extracts it), \
         or pass --url for a mirror",
        dest.display()
    )
}

/// Fetch `opts.url` into OUT/cifar-100-binary.tar.gz (resuming OUT/….part), verify, extract.
/// Returns the dataset directory (OUT/cifar-100-binary).
pub fn download(opts: &DownloadOptions) -> Result<PathBuf> {
    fs::create_dir_all(&opts.out).with_context(|| format!("cannot create {}", opts.out.display()))?;
    let dest = opts.out.join(ARCHIVE_NAME);
    let part = opts.out.join(format!("{ARCHIVE_NAME}.part"));
    let say = |s: String| {
        if opts.verbose {
            eprintln!("{s}");
        }
    };

    if dest.is_file() {
        match verify(&dest, &opts.checksum)? {
            Ok(()) => say(format!("download: {} already present and verified", dest.display())),
            Err(why) => {
                bail!(
                    "{} exists but its {why}; delete it (or pass the right --sha256/--md5) and run again",
                    dest.display()
                )
            }
        }
    } else {
        fetch(opts, &dest, &part, &say)?;
        match verify(&part, &opts.checksum)? {
            Ok(()) => {}
            Err(why) => {
                let _ = fs::remove_file(&part);
                bail!(
                    "checksum mismatch for {}: {why}. The download was removed; run again to retry, \
                     or check --url/--sha256/--md5",
                    opts.url
                );
            }
        }
        fs::rename(&part, &dest).with_context(|| format!("cannot rename {} to {}", part.display(), dest.display()))?;
        say(format!("download: verified {}", dest.display()));
    }
    extract(&dest, &opts.out)?;
    let dir = opts.out.join(crate::data::SUBDIR);
    for f in ["train.bin", "test.bin"] {
        if !dir.join(f).is_file() {
            bail!(
                "{} did not contain {}/{f}; is it the CIFAR-100 binary version?",
                dest.display(),
                crate::data::SUBDIR
            );
        }
    }
    say(format!("download: dataset ready in {}", dir.display()));
    Ok(dir)
}

fn fetch(opts: &DownloadOptions, dest: &Path, part: &Path, say: &dyn Fn(String)) -> Result<()> {
    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let agent = agent(opts);
    let mut req = agent.get(&opts.url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.call().map_err(|e| offline_hint(&opts.url, dest, &e))?;
    let status = resp.status().as_u16();
    let (mut file, offset) = match status {
        206 if have > 0 => {
            say(format!("download: resuming {} at byte {have}", opts.url));
            let f = OpenOptions::new()
                .append(true)
                .open(part)
                .with_context(|| format!("cannot open {}", part.display()))?;
            (f, have)
        }
        200 => {
            if have > 0 {
                say("download: server ignored the range request; starting over".into());
            }
            let f = File::create(part).with_context(|| format!("cannot create {}", part.display()))?;
            (f, 0)
        }
        416 if have > 0 => {
            // Nothing more to fetch: the partial file may already be complete.
            say("download: partial file already complete".into());
            return Ok(());
        }
        _ => bail!(
            "cannot download {}: the server answered HTTP {status}{}",
            opts.url,
            resp.status().canonical_reason().map(|r| format!(" {r}")).unwrap_or_default()
        ),
    };
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|n| n + offset);
    let mut body = resp.into_body();
    let mut reader = body.as_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = offset;
    let mut last = Instant::now();
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                file.flush().ok();
                bail!(
                    "download of {} interrupted after {got} bytes: {e}. Run the same command again to resume",
                    opts.url
                );
            }
        };
        file.write_all(&buf[..n]).with_context(|| format!("cannot write {}", part.display()))?;
        got += n as u64;
        if opts.verbose && last.elapsed() > Duration::from_secs(2) {
            last = Instant::now();
            match total {
                Some(t) => eprintln!("download: {:.1}% of {} MB", 100.0 * got as f64 / t as f64, t >> 20),
                None => eprintln!("download: {} MB", got >> 20),
            }
        }
    }
    file.sync_all().ok();
    if let Some(t) = total
        && got != t
    {
        bail!("download of {} ended after {got} of {t} bytes. Run the same command again to resume", opts.url);
    }
    Ok(())
}

/// Unpack a .tar.gz into `out` (entries that would escape `out` are refused by the tar crate).
pub fn extract(archive: &Path, out: &Path) -> Result<()> {
    let f = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    ar.set_overwrite(true);
    ar.unpack(out).with_context(|| format!("cannot extract {} into {}", archive.display(), out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_parsing() {
        assert!(Checksum::sha256("abc").is_err());
        assert!(Checksum::md5(DEFAULT_MD5).is_ok());
        assert_eq!(Checksum::md5("03B5DCE01913D631647C71ECEC9E9CB8").unwrap(), Checksum::Md5(DEFAULT_MD5.into()));
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("http://127.0.0.1:8080/x.tar.gz"));
        assert!(is_loopback("http://localhost/x"));
        assert!(!is_loopback(DEFAULT_URL));
    }
}
