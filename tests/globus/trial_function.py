def run_trial(cmd, trial_dir, walltime=None, log_tail_lines=50, params=None, env=None):
    """Run one trial on a Globus Compute endpoint's worker; return its outcome as a JSON-able dict.

    The Rust host registers this source with the "st" (PureSourceTextInspect) serializer, so it must stand
    alone: Python 3.8+ standard library only, every import inside the function, no other top-level name.

    cmd: a shell command (run with /bin/bash -c, cwd = trial_dir, like ShellFunction); trial_dir: the trial's
    directory on the shared filesystem (created if missing); walltime: seconds, or None for no limit; at the
    limit the command's whole process group is killed and returncode is 124 (as ShellFunction and timeout(1)
    report it); log_tail_lines: how many lines of the log tail to return; params: when given, written to
    trial_dir/params.json before the command starts; env: extra environment variables (the trial protocol's
    ALCF_*), added to the worker's environment, which keeps the tile Parsl pinned it to.

    The trial protocol: stdout -> stdout.log, stderr -> stderr.log, the program writes metrics.jsonl (one
    JSON object per line) and result.json (one object). Returns
    {"returncode", "result" (result.json parsed, or None), "metrics" (metrics.jsonl's parsed lines),
     "log_tail" (last lines of stderr.log, else stdout.log, or None), "accelerator" (the tile the worker
     exposed: ZE_AFFINITY_MASK, else CUDA_VISIBLE_DEVICES, else ROCR_VISIBLE_DEVICES, or None),
     "worker_rank", "host", "elapsed_s", "exception_name" (None, "subprocess.CalledProcessError" for a
     non-zero exit, "subprocess.TimeoutExpired" at the walltime)}.
    """
    import json
    import os
    import signal
    import socket
    import subprocess
    import time

    trial_dir = os.path.abspath(trial_dir)
    os.makedirs(trial_dir, exist_ok=True)
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

    def read_json(path):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    metrics = []
    try:
        with open(os.path.join(trial_dir, "metrics.jsonl"), errors="replace") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        metrics.append(json.loads(line))
                    except ValueError:
                        pass  # a line cut by a kill: not a metric
    except OSError:
        pass

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
    return {
        "returncode": returncode,
        "result": read_json(os.path.join(trial_dir, "result.json")),
        "metrics": metrics,
        "log_tail": log_tail,
        "accelerator": accelerator,
        "worker_rank": os.environ.get("PARSL_WORKER_RANK"),
        "host": socket.gethostname(),
        "elapsed_s": round(time.time() - started, 3),
        "exception_name": exception_name,
    }
