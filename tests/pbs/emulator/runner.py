"""The emulated MOM for one job: `runner.py <PBS_EMU_HOME> <seq>`, started by pbsemu.start in
its own session. It runs the job script in a new process group, enforces the walltime, obeys
qdel, stages stdout/stderr the way -k asks, then writes spool/<seq>/result.json and advances
the shared state (so a queued job behind this one can start without anyone polling)."""

import json
import os
import resource
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import pbsemu  # noqa: E402

POLL = 0.05  # seconds between checks of the job, the walltime and the qdel flag


def job_environment(job, cfg, spool, home):
    """The job's environment: not the submitter's (no -V), but what a MOM gives: the login
    identity, PBS_* variables, the PBS_O_* copies of the submit environment and -v variables."""
    env = {
        "HOME": home,
        "USER": job["user"],
        "LOGNAME": job["user"],
        "SHELL": job["shell"],
        "PATH": cfg["job_path"],
        "TMPDIR": os.path.join(spool, "tmp"),
        "PBS_JOBID": job["id"],
        "PBS_JOBNAME": job["name"],
        "PBS_QUEUE": job["queue"],
        "PBS_NODEFILE": os.path.join(spool, "nodefile"),
        "PBS_NODENUM": "0",
        "PBS_TASKNUM": "1",
        "PBS_MOMPORT": "15003",
        "PBS_ENVIRONMENT": "PBS_BATCH",
        "PBS_JOBDIR": home,
        # PBS sets both from the chunk's ncpus; on Aurora that is the whole node (208).
        "NCPUS": str(cfg["node_ncpus"]),
        "OMP_NUM_THREADS": str(cfg["node_ncpus"]),
    }
    if job.get("account"):
        env["PBS_ACCOUNT"] = job["account"]
    for k, v in job["variables"]:
        env[k] = v  # PBS_O_* and -v/-V variables (they win, as in PBS)
    return env


def open_outputs(job, spool, home):
    """Where the job's stdout/stderr go while it runs, and what to copy where afterwards.
    -k d(irect) writes straight to the final path; -k o/e without d keeps the file in the
    job's home on the execution host under its default name; otherwise the MOM spools it and
    copies it to Output_Path/Error_Path at the end."""
    keep = job["keep"]
    streams, copies = [], []
    for letter, path_key, suffix in (("o", "out_path", ".OU"), ("e", "err_path", ".ER")):
        if letter == "e" and job["join"] == "oe":
            streams.append(None)
            continue
        final = job[path_key]
        if letter in keep and "d" in keep:
            target = final
        elif letter in keep:
            target = os.path.join(home, os.path.basename(job["default_" + path_key]))
        else:
            target = os.path.join(spool, job["id"] + suffix)
            copies.append((target, final))
        try:
            streams.append(open(target, "ab"))
        except OSError:
            # PBS would mail "Unable to copy file"; the job still runs with nowhere to write.
            streams.append(open(os.devnull, "ab"))
    return streams, copies


def command(job, script):
    """The script runs under the user's login shell; a `#!` line is honoured [ref: PBS Pro
    details]. A login shell is what a MOM starts ("-bash script")."""
    with open(script, "rb") as f:
        first = f.readline()
    if first.startswith(b"#!"):
        return [script], script
    return ["-" + os.path.basename(job["shell"]), script], job["shell"]


def kill_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main():
    home_state, seq = sys.argv[1], sys.argv[2]
    spool = os.path.join(home_state, "spool", seq)
    with open(os.path.join(spool, "job.json")) as f:
        spec = json.load(f)
    job = spec["job"]
    cfg = {"job_path": spec["job_path"], "node_ncpus": spec["node_ncpus"]}
    kill_delay = float(spec["kill_delay"])
    home = job["job_home"]
    os.makedirs(os.path.join(spool, "tmp"), exist_ok=True)
    env = job_environment(job, cfg, spool, home)
    out, copies = open_outputs(job, spool, home)
    err = out[1] if out[1] is not None else out[0]
    script = os.path.join(spool, "script")
    argv, exe = command(job, script)
    cwd = home if job["cwd_mode"] == "home" else job["workdir"]
    start = time.time()
    try:
        # A new session, so the whole job (the shell and what it starts) is one process group
        # the runner can signal: walltime and qdel kill the group, not just the shell.
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                os.chdir(cwd)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.dup2(out[0].fileno(), 1)
                os.dup2(err.fileno(), 2)
                os.execve(exe, argv, env)
            except BaseException as e:  # exec failed: report like a shell would
                try:
                    os.write(2, ("pbs-emulator: cannot run job script: %s\n" % e).encode())
                finally:
                    os._exit(127)
    except OSError:
        pid = None
    pgid = pid
    reason = "exit"
    status = None
    usage = None
    if pid is not None:
        pbsemu.write_json_atomic(os.path.join(spool, "pid.json"), {"pid": pid, "pgid": pgid})
        walltime = job["walltime_s"]
        term_at = None  # when we sent SIGTERM (qdel/walltime), for the SIGKILL escalation
        delete_flag = os.path.join(spool, "delete")
        while True:
            wpid, wstatus, usage = os.wait4(pid, os.WNOHANG)
            if wpid == pid:
                status = wstatus
                break
            now = time.time()
            if term_at is None:
                if os.path.exists(delete_flag):
                    reason = "deleted"
                    force = open(delete_flag).read().strip() == "force"
                    kill_group(pgid, signal.SIGKILL if force else signal.SIGTERM)
                    term_at = now
                elif walltime is not None and now - start > walltime:
                    reason = "walltime"
                    kill_group(pgid, signal.SIGTERM)
                    term_at = now
            elif now - term_at > kill_delay:
                kill_group(pgid, signal.SIGKILL)
                term_at = float("inf")  # sent; now just wait for the exit
            time.sleep(POLL)
        # The MOM ends every process of the job once its top shell is gone.
        kill_group(pgid, signal.SIGKILL)
    end = time.time()
    for f in out:
        if f is not None:
            f.close()
    for src, dst in copies:
        try:
            shutil.copyfile(src, dst)
            os.unlink(src)
        except OSError:
            pass  # left in the spool, as PBS leaves undeliverable output in undelivered/
    if pid is None:
        exit_status = -1  # JOB_EXEC_FAIL1: could not start
    elif reason == "walltime":
        exit_status = pbsemu.JOB_EXEC_KILL_WALLTIME  # -29 [ref: PBS Pro details]
    elif os.WIFSIGNALED(status):
        exit_status = 256 + os.WTERMSIG(status)  # "killed by signal N: 256+N" [ref]
    else:
        exit_status = os.WEXITSTATUS(status)  # the script's own status (128+N from a shell)
    cput = (usage.ru_utime + usage.ru_stime) if usage else 0.0
    wall = max(end - start, 1e-6)
    pbsemu.write_json_atomic(os.path.join(spool, "result.json"), {
        "exit_status": exit_status, "end": end, "reason": reason, "cput": cput,
        "cpupercent": int(100 * cput / wall), "mem_kb": usage.ru_maxrss if usage else 0})
    # Collect our result and start whoever waited for our slot.
    with pbsemu.locked_state(home_state) as st:
        pbsemu.advance(st)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
