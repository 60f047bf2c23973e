def run_trial(cmd, trial_dir, walltime=None, log_tail_lines=50, params=None, env=None, job=None, attempt=1,
              rerun="fresh", collect=False):
    """Run one trial on a Globus Compute endpoint's worker; return its outcome as a JSON-able dict.

    The Rust host registers this source with the "st" (PureSourceTextInspect) serializer, so it must stand
    alone: Python 3.8+ standard library only, every import inside the function, no other top-level name.

    cmd: a shell command (run with /bin/bash -c, cwd = trial_dir, own session, like ShellFunction);
    trial_dir: the trial's directory on the shared filesystem (created if missing); walltime: seconds, or
    None for no limit; at the limit the command's whole process group is killed and returncode is 124 (as
    ShellFunction and timeout(1) report it); log_tail_lines: how many lines of the log tail to return;
    params: when given, written to trial_dir/params.json before the command starts; env: extra environment
    variables (the trial protocol's ALCF_*), added to the worker's environment, which keeps the tile Parsl
    pinned it to; job: the host's name for this attempt, stored in outcome.json; attempt: 1, 2, ...;
    rerun: "fresh" (attempt > 1: a non-empty trial_dir is moved aside to trial_dir.attempt-<attempt-1>,
    or trial_dir.attempt-<attempt-1>.N when that exists, and the command starts in an empty one) or
    "resume" (trial_dir kept; its stdout.log/stderr.log renamed stdout/stderr.attempt-<n>.log, n the first
    number from attempt-1 free for both); a stale outcome.json is removed before the command starts. Runs of
    one trial_dir are one at a time: a run waits for an earlier one still running (a cancelled task, which
    Globus Compute cannot stop) to end, through an exclusive lock on trial_dir + ".lock".

    collect=True runs nothing: it returns trial_dir/outcome.json with "collected": True when its "job" is
    `job`, else {"collected": False, "job": job} (for a result the service lost).

    The trial protocol: stdout -> stdout.log, stderr -> stderr.log, the program writes metrics.jsonl (one
    JSON object per line) and result.json (one object). Returns, and writes atomically to
    trial_dir/outcome.json,
    {"job", "attempt", "returncode", "result" (result.json parsed, or None), "result_text" (result.json's
     raw text, or None), "result_truncated" (True when result.json is over 1 MiB: then result and
     result_text are None), "metrics" (metrics.jsonl's parsed lines: at most 10000 of the first 4 MiB),
     "metrics_truncated" (True when lines were cut), "log_tail" (last lines of stderr.log, else stdout.log,
     or None), "accelerator" (the tile the worker exposed: ZE_AFFINITY_MASK, else CUDA_VISIBLE_DEVICES,
     else ROCR_VISIBLE_DEVICES, or None), "worker_rank", "host", "elapsed_s", "exception_name" (None,
     "subprocess.CalledProcessError" for a non-zero exit, "subprocess.TimeoutExpired" at the walltime)}.
    A missing or malformed output file is never an error here: its keys are None / empty.
    """
    import json
    import os
    import signal
    import socket
    import subprocess
    import time

    result_limit = 1 << 20  # bytes of result.json
    metrics_limit = 4 << 20  # bytes of metrics.jsonl read
    metrics_lines = 10000
    trial_dir = os.path.abspath(trial_dir)
    outcome_path = os.path.join(trial_dir, "outcome.json")

    def read_bytes(path, limit):
        """(up to limit + 1 bytes of path, or None)."""
        try:
            with open(path, "rb") as f:
                return f.read(limit + 1)
        except OSError:
            return None

    def parse(data):
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            return None

    if collect:
        stored = parse(read_bytes(outcome_path, 64 << 20) or b"")
        if isinstance(stored, dict) and "job" in stored and stored.get("job") == job:
            stored["collected"] = True
            return stored
        return {"collected": False, "job": job}

    try:
        attempt = int(attempt)
    except (TypeError, ValueError):
        attempt = 1
    # One run of a trial at a time: Globus Compute cannot stop a task, so a cancelled attempt may still
    # run when the next one starts. The next waits for it (an exclusive lock on trial_dir + ".lock",
    # beside the directory, which a fresh re-run moves), instead of sharing its directory and checkpoint.
    # A file system without locks (flock fails) runs it at once.
    os.makedirs(os.path.dirname(trial_dir), exist_ok=True)
    lock = None
    try:
        import fcntl
        lock = open(trial_dir + ".lock", "a")
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
    except (ImportError, OSError):
        pass
    if rerun == "fresh" and attempt > 1 and os.path.isdir(trial_dir) and os.listdir(trial_dir):
        aside = "%s.attempt-%d" % (trial_dir, attempt - 1)
        n = 2
        candidate = aside
        while os.path.lexists(candidate):
            candidate = "%s.%d" % (aside, n)
            n += 1
        os.rename(trial_dir, candidate)
    elif rerun == "resume" and os.path.isdir(trial_dir):
        logs = [name for name in ("stdout", "stderr") if os.path.lexists(os.path.join(trial_dir, name + ".log"))]
        if logs:
            n = max(1, attempt - 1)
            while any(os.path.lexists(os.path.join(trial_dir, "%s.attempt-%d.log" % (name, n)))
                      for name in ("stdout", "stderr")):
                n += 1
            for name in logs:
                os.rename(os.path.join(trial_dir, name + ".log"),
                          os.path.join(trial_dir, "%s.attempt-%d.log" % (name, n)))
    os.makedirs(trial_dir, exist_ok=True)
    try:
        os.remove(outcome_path)  # a stale outcome of an earlier run is never collected as this one's
    except OSError:
        pass
    if params is not None:
        tmp = os.path.join(trial_dir, "params.json.tmp")
        with open(tmp, "w") as f:
            json.dump(params, f)
        os.replace(tmp, os.path.join(trial_dir, "params.json"))
    child_env = dict(os.environ)
    child_env.update({str(k): str(v) for k, v in (env or {}).items()})
    accelerator = None
    for name in ("ZE_AFFINITY_MASK", "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        if os.environ.get(name):
            accelerator = os.environ[name]
            break

    started = time.time()
    exception_name = None
    with open(os.path.join(trial_dir, "stdout.log"), "ab") as out, \
            open(os.path.join(trial_dir, "stderr.log"), "ab") as err:
        proc = subprocess.Popen(cmd, shell=True, executable="/bin/bash", cwd=trial_dir, env=child_env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        try:
            returncode = proc.wait(timeout=walltime)
            if returncode != 0:
                exception_name = "subprocess.CalledProcessError"
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            returncode = 124
            exception_name = "subprocess.TimeoutExpired"

    result = result_text = None
    result_truncated = False
    data = read_bytes(os.path.join(trial_dir, "result.json"), result_limit)
    if data is not None and len(data) > result_limit:
        result_truncated = True
    elif data is not None:
        result = parse(data)
        result_text = data.decode("utf-8", "replace")

    metrics = []
    metrics_truncated = False
    data = read_bytes(os.path.join(trial_dir, "metrics.jsonl"), metrics_limit)
    if data is not None and len(data) > metrics_limit:
        metrics_truncated = True
        data = data[:data.rfind(b"\n", 0, metrics_limit) + 1]  # complete lines within the limit
    for line in (data or b"").split(b"\n"):
        line = line.strip()
        if line:
            value = parse(line)  # None: a line cut by a kill, not a metric
            if value is not None:
                if len(metrics) == metrics_lines:
                    metrics_truncated = True
                    break
                metrics.append(value)

    def tail(name):
        try:
            with open(os.path.join(trial_dir, name), "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                start = max(0, size - 16384)
                f.seek(start)
                text = f.read().decode("utf-8", "replace").rstrip()
        except OSError:
            return None
        if start > 0:
            text = text.split("\n", 1)[1] if "\n" in text else text
        if not text.strip():
            return None
        text = "\n".join(text.split("\n")[-max(1, int(log_tail_lines)):])
        return text[-4096:]

    log_tail = tail("stderr.log")
    if log_tail is None:
        log_tail = tail("stdout.log")
    outcome = {
        "job": job,
        "attempt": attempt,
        "returncode": returncode,
        "result": result,
        "result_text": result_text,
        "result_truncated": result_truncated,
        "metrics": metrics,
        "metrics_truncated": metrics_truncated,
        "log_tail": log_tail,
        "accelerator": accelerator,
        "worker_rank": os.environ.get("PARSL_WORKER_RANK"),
        "host": socket.gethostname(),
        "elapsed_s": round(time.time() - started, 3),
        "exception_name": exception_name,
    }
    tmp = "%s.tmp-%d" % (outcome_path, os.getpid())
    try:
        with open(tmp, "w") as f:
            json.dump(outcome, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, outcome_path)
    except (OSError, ValueError, TypeError):
        try:
            os.remove(tmp)
        except OSError:
            pass
    if lock is not None:
        lock.close()  # the next attempt of this trial may start
    return outcome
