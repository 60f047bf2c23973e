//! The loopback sshd fixture (`alcf_tests::sshd`), each piece exercised as the `pbs` executor
//! will use it: a real sshd, a real ControlMaster opened as a user opens one, commands through
//! it, stdin staging, concurrent channels, a dying master, the `openssh` crate resuming the
//! socket, and the PBS emulator behind it all.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use alcf_tests::sshd::{Sshd, SshdOptions, pbs_emulator_dir};
use alcf_tests::text;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "command failed ({}): {}", out.status, text(out));
    stdout(out)
}

#[test]
fn ssh_fixture_runs_a_command_through_a_real_master() {
    let sshd = Sshd::start_or_panic(SshdOptions::new());
    eprintln!("sshd started in {:?}", sshd.started_in());
    let ctl = sshd.open_master().unwrap();
    assert_eq!(ctl, sshd.control_path());
    assert!(sshd.master_alive());
    let out = sshd.run("echo hello; id -un; exit 3");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(stdout(&out), format!("hello\n{}\n", sshd.user()));
    // It went through the master: the master's connection is the only one sshd saw.
    let log = sshd.log_text();
    let logins = log.matches("Accepted publickey").count();
    assert_eq!(logins, 2, "the readiness check and the master log in, nothing else:\n{log}");
    // The client config works for plain `ssh -F <cfg> loopback` too, as a user's would.
    let out = sshd.ssh().arg(sshd.host()).arg("echo direct").output().unwrap();
    assert_eq!(ok(&out), "direct\n");
    // Opening again reuses the live master.
    let pid = sshd.master_pid().unwrap();
    sshd.open_master().unwrap();
    assert_eq!(sshd.master_pid(), Some(pid));
}

#[test]
fn ssh_stdin_bytes_pass_through_intact() {
    let sshd = Sshd::start_or_panic(SshdOptions::new());
    sshd.open_master().unwrap();
    // 1 MiB of every byte value, with ssh's escape sequence and line endings in it: how the
    // executor stages files.
    let mut data: Vec<u8> = b"\n~.\n~?\r\n\0".to_vec();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while data.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(1 << 20);
    let dest = sshd.dir().join("staged.bin");
    let out = sshd.run_with_stdin(&format!("cat > '{}' && cat '{}'", dest.display(), dest.display()), &data);
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout == data, "stdout differs: {} bytes back of {}", out.stdout.len(), data.len());
    assert!(std::fs::read(&dest).unwrap() == data, "the staged file differs");
}

#[test]
fn ssh_eight_concurrent_commands_share_one_master() {
    let sshd = Sshd::start_or_panic(SshdOptions::new());
    sshd.open_master().unwrap();
    let barrier = sshd.dir().join("barrier");
    std::fs::create_dir(&barrier).unwrap();
    // Each command waits until all eight are running: they pass only if they run at once.
    let outs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let cmd = format!(
                    "cd '{}' && touch {i} && n=0; while [ $(ls | wc -l) -lt 8 ]; do \
                     n=$((n+1)); [ $n -gt 1200 ] && exit 3; sleep 0.05; done; echo ok {i}",
                    barrier.display()
                );
                let sshd = &sshd;
                s.spawn(move || sshd.run(&cmd))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, out) in outs.iter().enumerate() {
        assert_eq!(ok(out), format!("ok {i}\n"));
    }
    assert_eq!(sshd.log_text().matches("Accepted publickey").count(), 2, "all through the one master");
}

#[test]
fn ssh_environment_reaches_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let emu = tmp.path().join("pbs");
    let sshd = Sshd::start_or_panic(SshdOptions::new().pbs_emulator(&emu).env("ALCF_TEST_WORDS", "two words"));
    sshd.open_master().unwrap();
    let out =
        sshd.run("echo \"$PBS_EMU_HOME\"; echo \"$ALCF_TEST_WORDS\"; command -v qsub; echo \"$PATH\"; echo \"$HOME\"");
    let text = ok(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], emu.display().to_string());
    assert_eq!(lines[1], "two words");
    assert_eq!(lines[2], pbs_emulator_dir().join("qsub").display().to_string());
    // The session's ~/.bashrc (Debian's bash reads it for ssh commands) is the fixture's: it
    // puts the tests' Python first, and the emulator's directory is there too.
    let path: Vec<&Path> = lines[3].split(':').map(Path::new).collect();
    assert_eq!(path.first(), Some(&alcf_tests::account::python_dir()), "PATH: {}", lines[3]);
    assert!(path.contains(&pbs_emulator_dir().as_path()), "PATH: {}", lines[3]);
    assert_eq!(Path::new(lines[4]), sshd.home(), "the machine's own dotfiles must stay out");
}

#[test]
fn ssh_killed_master_fails_with_255_and_reopens() {
    let sshd = Sshd::start_or_panic(SshdOptions::new());
    let ctl = sshd.open_master().unwrap();
    assert_eq!(ok(&sshd.run("echo one")), "one\n");

    // Hard kill: the socket file stays, and nobody answers on it.
    let pid = sshd.kill_master().unwrap();
    assert!(ctl.exists(), "a SIGKILLed master leaves its socket");
    assert!(!sshd.master_alive());
    let check = sshd.ssh().arg("-S").arg(&ctl).args(["-O", "check", sshd.host()]).output().unwrap();
    assert_eq!(check.status.code(), Some(255), "{}", text(&check));
    assert!(text(&check).contains("Connection refused"), "{}", text(&check));
    let out = sshd.run("echo two");
    assert_eq!(out.status.code(), Some(255), "no fresh login behind a dead master: {}", text(&out));
    assert!(out.stdout.is_empty());

    // A user opens it again: everything works again, through a new master.
    sshd.open_master().unwrap();
    assert_ne!(sshd.master_pid(), Some(pid));
    assert_eq!(ok(&sshd.run("echo three")), "three\n");

    // Graceful exit: the socket goes too.
    sshd.exit_master().unwrap();
    assert!(!ctl.exists());
    let check = sshd.ssh().arg("-S").arg(&ctl).args(["-O", "check", sshd.host()]).output().unwrap();
    assert_eq!(check.status.code(), Some(255));
    assert!(text(&check).contains("No such file or directory"), "{}", text(&check));
    assert_eq!(sshd.run("true").status.code(), Some(255));
}

#[test]
fn ssh_openssh_crate_resumes_the_master_and_leaves_it_running() {
    let sshd = Sshd::start_or_panic(SshdOptions::new());
    let ctl = sshd.open_master().unwrap();
    let pid = sshd.master_pid().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let session = openssh::Session::resume(ctl.clone().into_boxed_path(), None);
        session.check().await.expect("check through the resumed master");
        let out = session.raw_command("echo hi; echo err >&2").output().await.unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hi\n");
        assert_eq!(out.stderr, b"err\n");
        let out = session.command("sh").arg("-c").arg("exit 7").output().await.unwrap();
        assert_eq!(out.status.code(), Some(7));
        // Dropped, never closed: the user's master must survive.
        drop(session);
    });
    assert_eq!(sshd.master_pid(), Some(pid), "dropping a resumed session must leave the master alone");
    assert_eq!(ok(&sshd.run("echo still")), "still\n");

    // A dead master is an error for the crate too.
    sshd.kill_master().unwrap();
    rt.block_on(async {
        let session = openssh::Session::resume(ctl.into_boxed_path(), None);
        assert!(session.check().await.is_err());
        let err = session.raw_command("true").output().await.expect_err("a command through a dead master");
        assert!(matches!(err, openssh::Error::RemoteProcessTerminated), "{err:?}");
    });
}

#[test]
fn ssh_pbs_emulator_runs_a_job_behind_sshd() {
    let tmp = tempfile::tempdir().unwrap();
    let emu = tmp.path().join("pbs");
    std::fs::create_dir(&emu).unwrap();
    std::fs::write(emu.join("config.json"), alcf_tests::account::emulator_config(tmp.path())).unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let sshd = Sshd::start_or_panic(SshdOptions::new().pbs_emulator(&emu));
    sshd.open_master().unwrap();
    let w = work.display();

    // Stage the job script through stdin, submit it as the executor will.
    let script = "#!/bin/bash\necho \"hello from $PBS_JOBID on $NCPUS cpus\"\n";
    ok(&sshd.run_with_stdin(&format!("cat > '{w}/job.sh'"), script.as_bytes()));
    let out = sshd.run(&format!(
        "cd '{w}' && qsub -A p -q debug -l select=1 -l walltime=00:05:00 -l filesystems=home:flare -k doe job.sh"
    ));
    let id = ok(&out).trim().to_string();
    assert!(id.ends_with(".aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"), "job id {id:?}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let out = sshd.run(&format!("qstat -xf -F json {id}"));
        let doc: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("qstat -F json: {e}: {}", text(&out)));
        let job = doc["Jobs"][&id].clone();
        if job["job_state"] == "F" {
            break job;
        }
        assert!(Instant::now() < deadline, "job not finished after 60 s: {job}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let status = &job["Exit_status"];
    assert!(status == 0 || status == "0", "Exit_status {status}: {job}");
    let seq = id.split('.').next().unwrap();
    let output = std::fs::read_to_string(work.join(format!("job.sh.o{seq}"))).unwrap();
    assert_eq!(output, format!("hello from {id} on 2 cpus\n"));

    ok(&sshd.run("pbs-emu-ctl kill-all"));
}

#[test]
fn ssh_fixture_drop_leaves_no_process_or_directory() {
    let sshd = Sshd::start_or_panic(SshdOptions::new());
    sshd.open_master().unwrap();
    // A command still running when the fixture goes.
    let busy =
        sshd.command("sleep 300").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let comm = |pid: &u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sshd.server_pids().iter().any(|p| comm(p) == "sleep\n") {
        assert!(Instant::now() < deadline, "sleep never started:\n{}", sshd.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut pids = sshd.server_pids();
    pids.push(sshd.master_pid().unwrap());
    assert!(pids.len() >= 4, "sshd, its per-connection server(s), sleep, the master: {pids:?}");
    let dir = sshd.dir().to_path_buf();
    drop(sshd);
    let gone = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |s| s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
    };
    for pid in pids {
        assert!(gone(pid), "process {pid} survived the fixture");
    }
    assert!(!dir.exists());
    // The mux client lost its master: it ends too.
    let out = busy.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(255), "{}", text(&out));
}
