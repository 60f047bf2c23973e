"""alcf-host's remote agent for the `pbs` executor (the full contract: AGENT.md next to this file).

The host runs it as

    python3 -c 'import sys;n=int(sys.stdin.buffer.readline());exec(compile(sys.stdin.buffer.read(n),"alcf-agent.py","exec"))'

with stdin = `<byte length of this file>\\n` + this file + one JSON request
`{"v": 1, "root": DIR, "pbs_bin": DIR-or-"", "ops": [OP, ...]}`. It runs the ops in order and
prints exactly `ALCF-AGENT 1\\n` + one line of JSON `{"v": 1, "now": <remote epoch>, "results":
[...]}` + `\\nALCF-AGENT-END\\n` on stdout, and exits 0. One result per op; an op that fails gives
`{"error": "..."}` and the later ops still run. Only a crash of the agent itself (a request it
cannot read) exits non-zero: its traceback on stderr, exit status 3 (never 255 or 127, which the
host would take for a lost connection or a missing interpreter).

Ops: digest, stage (files), submit, qstat, job_ids, qdel (PBS, each command reported raw as
`{"status", "stdout", "stderr"}`, outputs cut to 64 KiB), read (the trial protocol's files),
and the pilot queue's enqueue, queue_status, submit_pilot, pilot_finished, requeue,
cancel_tickets, stop_pilots (layout under `root`: queue/{pending,running/<job>,done,stop}/,
pilots/). Paths are relative to `root` unless absolute; a relative path with a `..` component
is refused; ticket and pilot names must match [A-Za-z0-9_.+-]+.

Python 3.6 standard library only (ALCF nodes' system python3): no dataclasses, no walrus, no
subprocess.run(capture_output/text), no dict union. Everything read or written is bytes or
explicit UTF-8, so a C locale over SSH changes nothing.
"""

import base64
import errno
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback

PROTOCOL = 1
CMD_LIMIT = 64 * 1024  # bytes kept of each of a PBS command's stdout and stderr
CMD_TIMEOUT_S = 120  # a PBS command that hangs longer than this is killed and reported
METRICS_LIMIT = 256 * 1024
RESULT_LIMIT = 1024 * 1024
TAIL_BYTES = 4096
NAME_RE = re.compile(r"[A-Za-z0-9_.+-]+\Z")
# qsub statuses after which no more jobs of the same submit op are tried: the per-user limit
# (PBSE_ENTLIMCT & 0xff) and the queue's resource limits (PBSE_EXCQRESC & 0xff).
QSUB_LIMIT_STATUSES = (38, 188)


class OpError(Exception):
    """A refusal of one op (or one item of an op): becomes {"error": message}."""


# --------------------------------------------------------------------------------------------
# Small helpers: paths, names, atomic files.

class Ctx(object):
    def __init__(self, root, pbs_bin):
        self.root = root
        self.pbs_bin = pbs_bin
        self.now = time.time()

    def path(self, rel):
        return resolve(self.root, rel)

    def q(self, *parts):
        return os.path.join(self.root, "queue", *parts)

    def pilots(self, *parts):
        return os.path.join(self.root, "pilots", *parts)

    def pbs(self, name):
        return os.path.join(self.pbs_bin, name) if self.pbs_bin else name


def resolve(root, rel):
    if not isinstance(rel, str) or not rel:
        raise OpError("a path must be a non-empty string, not %r" % (rel,))
    if "\0" in rel:
        raise OpError("path %r contains a NUL byte" % rel)
    if os.path.isabs(rel):
        return rel
    if ".." in rel.split("/"):
        raise OpError("refusing the relative path %r: it has a '..' component" % rel)
    return os.path.join(root, rel)


def check_name(name, what="ticket"):
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise OpError("bad %s name %r: it must match [A-Za-z0-9_.+-]+" % (what, name))
    return name


def makedirs(path):
    try:
        os.makedirs(path)
    except OSError as e:
        if e.errno != errno.EEXIST or not os.path.isdir(path):
            raise


def write_atomic(path, data, mode=None):
    """Write bytes to `path.tmp-<pid>`, apply mode, rename over `path` (readers see the old file
    or the new one, never a half-written one)."""
    parent = os.path.dirname(path)
    if parent:
        makedirs(parent)
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.close(fd)
        if mode is not None:
            os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json_atomic(path, obj):
    write_atomic(path, json.dumps(obj, sort_keys=True).encode("utf-8"))


def queue_tmp(dirpath, name):
    """A temporary name inside a queue directory that a pilot never takes for a ticket."""
    return os.path.join(dirpath, ".%s.tmp-%d" % (name, os.getpid()))


def write_json_in_queue(dirpath, name, obj):
    """Atomically create dirpath/<name>.json via a hidden temporary (pilots list *.json only)."""
    makedirs(dirpath)
    tmp = queue_tmp(dirpath, name + ".json")
    try:
        with open(tmp, "wb") as f:
            f.write(json.dumps(obj, sort_keys=True).encode("utf-8"))
        os.rename(tmp, os.path.join(dirpath, name + ".json"))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_bytes(path, limit=None):
    with open(path, "rb") as f:
        return f.read() if limit is None else f.read(limit)


def read_json(path):
    """The JSON in path, or None if it is missing or unreadable."""
    try:
        return json.loads(read_bytes(path).decode("utf-8"))
    except (OSError, ValueError):
        return None


def exists(path):
    try:
        os.lstat(path)
        return True
    except OSError:
        return False


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return []
        raise


def decode(b):
    return b.decode("utf-8", "replace")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# PBS commands, reported raw.

def run_cmd(argv, cwd=None):
    """{"status", "stdout", "stderr"}: the command's own status and outputs (64 KiB each; a cut
    output also gets "stdout_truncated"/"stderr_truncated": true)."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
    except OSError as e:
        raise OpError("cannot run %s: %s" % (argv[0], e))
    try:
        out, err = proc.communicate(timeout=CMD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise OpError("%s did not finish within %d s (killed)" % (" ".join(argv), CMD_TIMEOUT_S))
    res = {"status": proc.returncode, "stdout": decode(out[:CMD_LIMIT]),
           "stderr": decode(err[:CMD_LIMIT])}
    if len(out) > CMD_LIMIT:
        res["stdout_truncated"] = True
    if len(err) > CMD_LIMIT:
        res["stderr_truncated"] = True
    return res


def item(fn, *args):
    """One item of a list op: its result, or {"error"} without stopping the others."""
    try:
        return fn(*args)
    except Exception as e:
        return {"error": describe(e)}


def describe(e):
    if isinstance(e, OpError):
        return str(e)
    if isinstance(e, (OSError, IOError)) and getattr(e, "filename", None):
        return "%s: %s" % (e.strerror or e, e.filename)
    return "%s: %s" % (type(e).__name__, e)


# --------------------------------------------------------------------------------------------
# Trial directories (shared by submit and enqueue).

def first_free(candidates):
    for c in candidates:
        if not exists(c):
            return c
    raise OpError("no free name among %s ..." % candidates[0])


def prepare_trial_dir(ctx, rel, attempt, rerun, files):
    """See AGENT.md "Preparing a trial directory"; then write `files` (name -> text) into it."""
    d = ctx.path(rel)
    attempt = int(attempt or 1)
    if rerun not in ("fresh", "resume"):
        raise OpError("rerun must be \"fresh\" or \"resume\", not %r" % (rerun,))
    if not isinstance(files or {}, dict):
        raise OpError("files must be an object of name -> text")
    for name in (files or {}):
        resolve(d, name)  # refuse ".." before touching anything
        if os.path.isabs(name):
            raise OpError("a trial file name must be relative, not %r" % name)
    if os.path.isdir(d) and attempt > 1:
        prev = attempt - 1
        if rerun == "fresh":
            if os.listdir(d):
                base = "%s.attempt-%d" % (d.rstrip("/"), prev)
                aside = first_free([base] + ["%s-%d" % (base, i) for i in range(2, 1000)])
                os.rename(d, aside)
        else:
            pairs = [("stdout.attempt-%d.log" % prev, "stderr.attempt-%d.log" % prev)]
            pairs += [("stdout.attempt-%d-%d.log" % (prev, i), "stderr.attempt-%d-%d.log" % (prev, i))
                      for i in range(2, 1000)]
            have = [n for n in ("stdout.log", "stderr.log") if exists(os.path.join(d, n))]
            if have:
                for o, e in pairs:
                    if not exists(os.path.join(d, o)) and not exists(os.path.join(d, e)):
                        break
                else:
                    raise OpError("no free name to keep the earlier logs of %s" % d)
                for n, to in (("stdout.log", o), ("stderr.log", e)):
                    if n in have:
                        os.rename(os.path.join(d, n), os.path.join(d, to))
    makedirs(d)
    try:
        os.unlink(os.path.join(d, "result.json"))  # an old result is never read as the new one
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
    for name, text in sorted((files or {}).items()):
        if not isinstance(text, str):
            raise OpError("file %r: the content must be a string" % name)
        write_atomic(os.path.join(d, name), text.encode("utf-8"))
    return d


# --------------------------------------------------------------------------------------------
# Ops.

def op_digest(ctx, op):
    out = {}
    for p in op.get("paths") or []:
        full = ctx.path(p)
        try:
            out[p] = sha256_file(full) if os.path.isfile(full) else None
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                out[p] = None
            else:
                raise
    return {"digests": out}


def op_stage(ctx, op):
    files = op.get("files") or []
    targets = []
    for f in files:  # check every path before writing any
        targets.append((ctx.path(f["path"]), base64.b64decode(f.get("data_b64") or ""),
                        f.get("mode")))
    written = unchanged = 0
    for full, data, mode in targets:
        if mode is not None:
            mode = int(mode) & 0o7777
        try:
            same = os.path.isfile(full) and os.path.getsize(full) == len(data) \
                and read_bytes(full) == data
        except OSError:
            same = False
        if same:
            # Already there: not rewritten (its inode and mtime stay); only the mode is fixed.
            if mode is not None and (os.stat(full).st_mode & 0o7777) != mode:
                os.chmod(full, mode)
            unchanged += 1
            continue
        write_atomic(full, data, 0o644 if mode is None else mode)
        written += 1
    return {"written": written, "unchanged": unchanged}


def op_submit(ctx, op):
    results = []
    stop = False
    for job in op.get("jobs") or []:
        if stop:
            results.append({"skipped": True})
            continue
        r = item(submit_one, ctx, job)
        results.append(r)
        if r.get("status") in QSUB_LIMIT_STATUSES:
            stop = True
    return {"jobs": results}


def submit_one(ctx, job):
    # Idempotent per attempt: a trial attempt that already has a job id was submitted (by a
    # host that died before recording it, whose agent may still have been on its way, or by a
    # call whose answer was lost): answer with that job instead of a second one. Checked before
    # the directory is prepared, which would move the running attempt's files aside.
    known = os.path.join(ctx.path(job["dir"]), job_id_file(job.get("attempt", 1)))
    if exists(known):
        jid = decode(read_bytes(known, 4096)).strip()
        if jid:
            return {"status": 0, "stdout": jid + "\n", "stderr": "", "existing": True}
    d = prepare_trial_dir(ctx, job["dir"], job.get("attempt", 1), job.get("rerun", "fresh"),
                          job.get("files"))
    script = job.get("script") or "job.sh"
    resolve(d, script)
    res = run_cmd([ctx.pbs("qsub"), "-f", script], cwd=d)
    if res["status"] == 0 and res["stdout"].strip():
        # The job's id beside its files: a host that dies before it records the id finds it here
        # (`job_ids`), since `qstat -u` prints no JSON on a real server.
        write_atomic(os.path.join(d, job_id_file(job.get("attempt", 1))),
                     (res["stdout"].strip() + "\n").encode("utf-8"))
    return res


def job_id_file(attempt):
    return "job.a%d.id" % int(attempt)


def op_qstat(ctx, op):
    def one(j):
        jid = j["id"]
        if not isinstance(jid, str) or not jid or jid.startswith("-"):
            raise OpError("bad job id %r" % (jid,))
        fmt = j.get("format", "json")
        if fmt == "json":
            return run_cmd([ctx.pbs("qstat"), "-xf", "-F", "json", jid])
        if fmt == "text":
            return run_cmd([ctx.pbs("qstat"), "-xf", jid])
        raise OpError("format must be \"json\" or \"text\", not %r" % (fmt,))
    return {"jobs": [item(one, j) for j in op.get("jobs") or []]}


def op_job_ids(ctx, op):
    """The job ids `submit` wrote for these trial attempts (null where none)."""
    def one(t):
        path = os.path.join(ctx.path(t["dir"]), job_id_file(t.get("attempt", 1)))
        if not exists(path):
            return None
        return decode(read_bytes(path, 4096)).strip() or None
    return {"ids": [item(one, t) for t in op.get("trials") or []]}


def op_qdel(ctx, op):
    ids = op.get("ids") or []
    if not ids:
        raise OpError("qdel needs at least one id")
    for i in ids:
        if not isinstance(i, str) or not i or i.startswith("-"):
            raise OpError("bad job id %r" % (i,))
    return run_cmd([ctx.pbs("qdel")] + list(ids))


def op_read(ctx, op):
    return {"trials": [item(read_one, ctx, t) for t in op.get("trials") or []]}


def read_one(ctx, t):
    d = ctx.path(t["dir"])
    start = int(t.get("metrics_from") or 0)
    final = bool(t.get("final"))
    res = {"exists": os.path.isdir(d), "metrics": "", "metrics_next": start, "result": None,
           "stdout_tail": None, "stderr_tail": None}
    if not res["exists"]:
        return res
    # metrics.jsonl: complete lines from `start`.
    try:
        f = open(os.path.join(d, "metrics.jsonl"), "rb")
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
        f = None
        if start > 0:
            res["metrics_reset"] = True
            res["metrics_next"] = 0
    if f is not None:
        with f:
            size = os.fstat(f.fileno()).st_size
            if size < start:
                start = 0
                res["metrics_reset"] = True
            f.seek(start)
            chunk = f.read(METRICS_LIMIT)
            cut = chunk.rfind(b"\n") + 1
            if cut == 0 and len(chunk) == METRICS_LIMIT:
                # One line longer than the limit would stall the reader forever: skip it.
                skipped = len(chunk)
                while True:
                    more = f.read(1 << 20)
                    if not more:
                        skipped = 0  # the line is not complete yet: wait for it
                        break
                    nl = more.find(b"\n")
                    if nl >= 0:
                        skipped += nl + 1
                        break
                    skipped += len(more)
                if skipped:
                    res["metrics_skipped"] = skipped
                res["metrics_next"] = start + skipped
            else:
                res["metrics"] = decode(chunk[:cut])
                res["metrics_next"] = start + cut
    # result.json
    rpath = os.path.join(d, "result.json")
    try:
        rsize = os.stat(rpath).st_size
    except OSError:
        rsize = None
    if rsize is not None:
        if rsize > RESULT_LIMIT:
            return {"exists": True,
                    "error": "result.json is %d bytes; the limit is 1 MiB" % rsize}
        try:
            res["result"] = decode(read_bytes(rpath, RESULT_LIMIT + 1))
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
    if final:
        res["stdout_tail"] = tail(os.path.join(d, "stdout.log"))
        res["stderr_tail"] = tail(os.path.join(d, "stderr.log"))
    return res


def tail(path):
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - TAIL_BYTES))
            return decode(f.read(TAIL_BYTES))
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.EISDIR):
            return None
        raise


# -- the pilot queue --------------------------------------------------------------------------

def ticket_state(ctx, name):
    """("pending"|"running"|"done"|"missing", pilot job id or None). Looked up in the order a
    ticket moves (pending -> running -> done), so a ticket moving meanwhile is still found."""
    if exists(ctx.q("pending", name + ".json")):
        return "pending", None
    for job in listdir(ctx.q("running")):
        if NAME_RE.match(job) and exists(ctx.q("running", job, name + ".json")):
            return "running", job
    if exists(ctx.q("done", name + ".json")):
        return "done", None
    return "missing", None


def op_enqueue(ctx, op):
    return {"tickets": [item(enqueue_one, ctx, t) for t in op.get("tickets") or []]}


def enqueue_one(ctx, t):
    name = check_name(t.get("name"))
    state, _ = ticket_state(ctx, name)
    if state != "missing":
        return {"state": state}
    if not isinstance(t.get("argv"), list) or not t["argv"]:
        raise OpError("ticket %s: argv must be a non-empty list" % name)
    prepare_trial_dir(ctx, t["dir"], t.get("attempt", 1), t.get("rerun", "fresh"),
                      t.get("files"))
    ticket = dict(t)
    ticket["requeues"] = 0
    ticket["enqueued"] = time.time()
    for d in ("pending", "done", "stop"):
        makedirs(ctx.q(d))
    makedirs(ctx.q("running"))
    write_json_in_queue(ctx.q("pending"), name, ticket)
    return {"state": "enqueued"}


def pilot_states(ctx):
    """{job id: its state file} for every state file there."""
    out = {}
    for f in listdir(ctx.pilots("state")):
        if f.endswith(".json") and not f.startswith(".") and NAME_RE.match(f):
            out[f[:-5]] = read_json(ctx.pilots("state", f))
    return out


def op_queue_status(ctx, op):
    names = [check_name(n) for n in op.get("names") or []]
    states = pilot_states(ctx)
    tickets = {}
    for name in names:
        tickets[name] = status_one(ctx, name, states)
    pending = sum(1 for f in listdir(ctx.q("pending"))
                  if f.endswith(".json") and not f.startswith("."))
    pilots = []
    for f in listdir(ctx.pilots()):
        pname = f[:-3]
        if not f.endswith(".sh") or not NAME_RE.match(pname) or f.startswith("."):
            continue
        job = None
        try:
            job = decode(read_bytes(ctx.pilots(pname + ".job"))).strip() or None
        except OSError:
            pass
        pilots.append({"name": pname, "job": job,
                       "finished": exists(ctx.pilots(pname + ".finished")),
                       "state": states.get(job) if job else None})
    return {"tickets": tickets, "pending": pending, "pilots": pilots}


def status_one(ctx, name, states):
    state, job = ticket_state(ctx, name)
    out = {"state": state}
    if state == "running":
        out["pilot"] = job
        st = states.get(job) or {}
        for slot, r in sorted((st.get("running") or {}).items()):
            if isinstance(r, dict) and r.get("name") == name:
                try:
                    out["slot"] = int(slot)
                except ValueError:
                    out["slot"] = slot
                if r.get("started") is not None:
                    out["started"] = r["started"]
                break
    elif state == "done":
        rec = read_json(ctx.q("done", name + ".json"))
        out["done"] = rec if rec is not None else {"error": "unreadable done record"}
    return out


def op_submit_pilot(ctx, op):
    name = check_name(op.get("name"), "pilot")
    script = op.get("script")
    if not isinstance(script, str) or not script:
        raise OpError("submit_pilot needs the script's text")
    jobfile = ctx.pilots(name + ".job")
    if exists(jobfile):
        raise OpError("pilot %s was already submitted as %s"
                      % (name, decode(read_bytes(jobfile)).strip()))
    makedirs(ctx.pilots("state"))
    for d in ("pending", "done", "stop", "running"):
        makedirs(ctx.q(d))
    write_atomic(ctx.pilots(name + ".sh"), script.encode("utf-8"), 0o755)
    res = run_cmd([ctx.pbs("qsub"), "-f", name + ".sh"], cwd=ctx.pilots())
    if res["status"] == 0 and res["stdout"].strip():
        write_atomic(jobfile, (res["stdout"].strip() + "\n").encode("utf-8"))
    return res


def op_pilot_finished(ctx, op):
    name = check_name(op.get("name"), "pilot")
    makedirs(ctx.pilots())
    with open(ctx.pilots(name + ".finished"), "ab"):
        pass
    try:
        job = decode(read_bytes(ctx.pilots(name + ".job"))).strip()
    except OSError:
        job = ""
    if not job:
        return {"requeued": [], "lost": [], "done": []}
    return requeue(ctx, job, op.get("max_requeues", 2))


def op_requeue(ctx, op):
    return requeue(ctx, op.get("pilot_job"), op.get("max_requeues", 2))


def requeue(ctx, job, max_requeues):
    check_name(job, "pilot job id")
    max_requeues = int(max_requeues)
    out = {"requeued": [], "lost": [], "done": []}
    rdir = ctx.q("running", job)
    for f in listdir(rdir):
        if not f.endswith(".json") or f.startswith(".") or not NAME_RE.match(f):
            continue
        name = f[:-5]
        path = os.path.join(rdir, f)
        if exists(ctx.q("done", name + ".json")):
            os.unlink(path)
            out["done"].append(name)
            continue
        ticket = read_json(path)
        if ticket is None:
            ticket = {"name": name}
        ticket["requeues"] = int(ticket.get("requeues") or 0) + 1
        stop = ctx.q("stop", name)
        if exists(stop):
            # Cancelled while its pilot died: it stays cancelled.
            write_json_in_queue(ctx.q("done"), name, {
                "name": name, "pilot": job, "cancelled": True, "exit_code": None,
                "signal": None, "timed_out": False,
                "reason": "cancelled; its pilot job %s ended while it ran" % job})
            os.unlink(path)
            os.unlink(stop)
            out["done"].append(name)
        elif ticket["requeues"] > max_requeues:
            write_json_in_queue(ctx.q("done"), name, {
                "name": name, "pilot": job, "lost": True, "requeues": ticket["requeues"],
                "reason": "its pilot job %s ended while it ran (%d times)"
                          % (job, ticket["requeues"])})
            os.unlink(path)
            out["lost"].append(name)
        else:
            ticket["requeued"] = time.time()
            write_json_in_queue(ctx.q("pending"), name, ticket)
            os.unlink(path)
            out["requeued"].append(name)
    try:
        os.rmdir(rdir)
    except OSError:
        pass
    return out


def op_cancel_tickets(ctx, op):
    # Every name is checked first; an error is the whole op's (re-sending is harmless: a
    # cancelled ticket is "done" the second time), so each value stays one of the four words.
    names = [check_name(n) for n in op.get("names") or []]
    return {"tickets": dict((name, cancel_one(ctx, name)) for name in names)}


def cancel_one(ctx, name):
    pend = ctx.q("pending", name + ".json")
    ticket = read_json(pend)
    try:
        # unlink is atomic against a pilot's claim (rename): exactly one of them wins.
        os.unlink(pend)
        write_json_in_queue(ctx.q("done"), name, {
            "name": name, "pilot": None, "cancelled": True, "exit_code": None, "signal": None,
            "timed_out": False, "started": None, "ended": time.time(),
            "requeues": (ticket or {}).get("requeues", 0)})
        return "cancelled"
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
    state, job = ticket_state(ctx, name)
    if state == "running":
        makedirs(ctx.q("stop"))
        with open(ctx.q("stop", name), "ab"):
            pass
        return "stopping"
    if state == "pending":  # requeued meanwhile: try once more
        return cancel_one(ctx, name)
    return state


def op_stop_pilots(ctx, op):
    makedirs(ctx.q("stop"))
    for job in op.get("jobs") or []:
        check_name(job, "pilot job id")
        with open(ctx.q("stop", "pilot-" + job), "ab"):
            pass
    return {}


def op_probe(ctx, op):
    """For `alcf-host doctor`: does the PBS server answer, does the queue exist, can the study root be
    written, is the trial program found. Changes nothing but a probe file, removed at once."""
    out = {"server": run_cmd([ctx.pbs("qstat"), "-B"])}
    queue = op.get("queue")
    if queue:
        out["queue"] = run_cmd([ctx.pbs("qstat"), "-Q", queue])
    try:
        os.makedirs(ctx.root, exist_ok=True)
        probe = os.path.join(ctx.root, ".alcf-doctor-%d" % os.getpid())
        write_atomic(probe, b"ok\n")
        os.remove(probe)
        out["writable"] = True
    except OSError as e:
        out["writable"] = "%s: %s" % (ctx.root, e.strerror or e)
    program = op.get("program")
    if program:
        out["program"] = run_cmd(["/bin/sh", "-c", 'command -v -- "$1"', "sh", program])
    return out


OPS = {
    "probe": op_probe,
    "digest": op_digest,
    "stage": op_stage,
    "submit": op_submit,
    "qstat": op_qstat,
    "job_ids": op_job_ids,
    "qdel": op_qdel,
    "read": op_read,
    "enqueue": op_enqueue,
    "queue_status": op_queue_status,
    "submit_pilot": op_submit_pilot,
    "pilot_finished": op_pilot_finished,
    "requeue": op_requeue,
    "cancel_tickets": op_cancel_tickets,
    "stop_pilots": op_stop_pilots,
}


def run_op(ctx, op):
    try:
        if not isinstance(op, dict):
            raise OpError("an op must be an object, not %r" % (op,))
        fn = OPS.get(op.get("op"))
        if fn is None:
            raise OpError("unknown op %r" % (op.get("op"),))
        return fn(ctx, op)
    except Exception as e:
        return {"error": describe(e)}


def study_lock(root):
    """One agent at a time per study: a host that restarts while its predecessor's agent is
    still submitting must not look for job ids before they are written. Returns the descriptor
    holding the lock, or None where the file system has no flock (then calls just run)."""
    try:
        import fcntl
        if not os.path.isdir(root):
            os.makedirs(root)
        fd = os.open(os.path.join(root, ".agent.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except Exception:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except Exception:
        os.close(fd)
        return None
    return fd


def main():
    # Whatever might print (a library, a stray print) goes to stderr: stdout carries only the
    # framed response, written to a saved copy of the original descriptor.
    try:
        out_fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        raw = sys.stdin.buffer.read()
        req = json.loads(raw.decode("utf-8"))
        if not isinstance(req, dict):
            raise ValueError("the request must be a JSON object")
        if req.get("v") != PROTOCOL:
            raise ValueError("unsupported request version %r (this agent speaks %d)"
                             % (req.get("v"), PROTOCOL))
        root = req.get("root")
        if not isinstance(root, str) or not root:
            raise ValueError("the request needs a root directory")
        ops = req.get("ops")
        if not isinstance(ops, list):
            raise ValueError("the request needs a list of ops")
        # A dropped SSH connection sends SIGHUP: finish the ops anyway (a qsub half done would
        # leave a job whose id nobody wrote down).
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        ctx = Ctx(root, req.get("pbs_bin") or "")
        lock = study_lock(root)
        try:
            results = [run_op(ctx, op) for op in ops]
        finally:
            if lock is not None:
                os.close(lock)
        body = json.dumps({"v": PROTOCOL, "now": time.time(), "results": results},
                          ensure_ascii=True, separators=(",", ":"))
        data = ("ALCF-AGENT %d\n" % PROTOCOL + body + "\nALCF-AGENT-END\n").encode("ascii")
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)
    try:
        view = memoryview(data)
        while view:
            n = os.write(out_fd, view)
            view = view[n:]
        code = 0
    except OSError:
        code = 3  # stdout is gone (the connection closed): nobody reads this anyway
    try:
        sys.stderr.flush()
    except Exception:
        pass
    os._exit(code)


if __name__ == "__main__":
    main()
