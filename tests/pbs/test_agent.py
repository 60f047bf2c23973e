"""Tests of the pbs executor's remote side: host/src/executor/pbs/agent.py and pilot.py.

The agent runs exactly as the host runs it: `sh -c "python3 -c '<BOOT>'"` with stdin = the
length line, agent.py's bytes and the request JSON (AGENT.md, "BOOT"); the framed response is
parsed strictly. PBS is the emulator in ./emulator (first on PATH), with a private PBS_EMU_HOME
per test; pilots are real PBS jobs of the emulator running pilot.py, staged into the study
directory by the agent's own `stage` op. Every wait has a deadline; tearDown qdels what a test
left running (so pilots stop their trials) and then kills every job (pbs-emu-ctl kill-all).

ALCF_AGENT_PYTHON (default python3) picks the interpreter of the agent, the pilots and the
trials, e.g. a Python 3.6 to check the scripts against the oldest python3 on ALCF nodes."""

import base64
import hashlib
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EMU = os.path.join(HERE, "emulator")
PBS_DIR = os.path.join(REPO, "host", "src", "executor", "pbs")
AGENT = os.path.join(PBS_DIR, "agent.py")
PILOT = os.path.join(PBS_DIR, "pilot.py")
PY = os.environ.get("ALCF_AGENT_PYTHON") or "python3"
# The interpreter itself, not a shim: pilots and trials run in a PBS job's bare environment.
PY = subprocess.run([PY, "-c", "import sys; print(sys.executable)"], stdout=subprocess.PIPE,
                    universal_newlines=True, check=True).stdout.strip()
# AGENT.md, "BOOT (the exact remote command line)", with the python of the test.
BOOT = ('import sys;n=int(sys.stdin.buffer.readline());'
        'exec(compile(sys.stdin.buffer.read(n),"alcf-agent.py","exec"))')
COMMAND = "%s -c '%s'" % (shlex.quote(PY), BOOT)

with open(AGENT, "rb") as _f:
    AGENT_SRC = _f.read()

CONFIG = {
    "kill_delay": 5.0,  # PBS's SIGTERM -> SIGKILL grace: longer than the pilots' (1 s)
    "node_ncpus": 2,
    "json_style": "cjson",  # parsable qstat -F json, so the tests can read it
    "queues": {
        "debug": {"type": "execution", "min_nodes": 1, "max_nodes": 2,
                  "max_walltime": "01:00:00", "max_queued_per_user": 1,
                  "max_running_per_user": 1},
        "work": {"type": "execution", "min_nodes": 1, "max_nodes": 16,
                 "max_walltime": "01:00:00", "max_queued_per_user": 20,
                 "max_running_per_user": 6},
    },
}

# A trial program: records its run, its environment and its CPUs, sleeps argv[1] seconds (a
# second run of the same directory skips the sleep when argv[2] is "once"), writes result.json.
TRIAL = r"""
import json, os, sys, time
with open("runs.txt", "a") as f:
    f.write("%d\n" % os.getpid())
print("start")
sys.stdout.flush()
env = dict((k, os.environ.get(k)) for k in
           ("ALCF_SLOT", "ZE_AFFINITY_MASK", "ZE_ENABLE_PCI_ID_DEVICE_ORDER", "FROM_TICKET"))
with open("/proc/self/status") as f:
    env["cpus"] = [l.split(":", 1)[1].strip() for l in f if l.startswith("Cpus_allowed_list")][0]
with open("env.json", "w") as f:
    json.dump(env, f)
once = len(sys.argv) > 2 and sys.argv[2] == "once"
if not (once and os.path.exists("started-once")):
    open("started-once", "w").close()
    time.sleep(float(sys.argv[1]))
print("trial out %d" % os.getpid())
sys.stderr.write("trial err\n")
with open("result.json", "w") as f:
    json.dump({"loss": float(sys.argv[1])}, f)
"""

JOB_SH = """#!/bin/sh
#PBS -A proj
#PBS -q {queue}
#PBS -l select=1
#PBS -l walltime=00:05:00
#PBS -l filesystems=home:flare
#PBS -k doe
#PBS -j oe
cd "$PBS_O_WORKDIR" || exit 75
exec >stdout.log 2>stderr.log
{body}
"""

PILOT_SH = """#!/bin/sh
#PBS -N {name}
#PBS -A proj
#PBS -q work
#PBS -l select=1
#PBS -l walltime={walltime}
#PBS -l filesystems=home:flare
#PBS -k doe
#PBS -j oe
exec {py} {root}/bin/pilot.py --root {root} --job "$PBS_JOBID" {args}
"""


def b64(data):
    return base64.b64encode(data).decode("ascii")


class AgentTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="pbsagent-")
        self.state = os.path.join(self.tmp, "emu")
        self.home = os.path.join(self.tmp, "home")
        self.root = os.path.join(self.tmp, "study")
        os.makedirs(self.home)
        os.makedirs(self.state)
        self.env = dict(os.environ, PBS_EMU_HOME=self.state, HOME=self.home,
                        PATH=EMU + os.pathsep + os.environ.get("PATH", ""))
        self.env.pop("PBS_EMU_QUEUE_DELAY", None)
        with open(os.path.join(self.state, "config.json"), "w") as f:
            json.dump(CONFIG, f)
        self.jobs = []

    def tearDown(self):
        # qdel (SIGTERM) first, so a pilot can stop its trials (own sessions) before the end.
        live = [j for j in self.jobs if self.job_state(j) not in ("F", None)]
        if live:
            subprocess.run([os.path.join(EMU, "qdel")] + live, env=self.env, cwd=self.home,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(
                    self.job_state(j) not in ("F", None) for j in live):
                time.sleep(0.2)
        r = subprocess.run([os.path.join(EMU, "pbs-emu-ctl"), "kill-all", "20"], env=self.env,
                           cwd=self.home, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=60)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    # -- helpers ---------------------------------------------------------------------------------
    def call(self, request_bytes):
        stdin = b"%d\n" % len(AGENT_SRC) + AGENT_SRC + request_bytes
        return subprocess.run(["sh", "-c", COMMAND], input=stdin, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=self.env, cwd=self.home, timeout=120)

    def agent(self, *ops, pbs_bin=""):
        """Run the agent with these ops; check the framing; return the results."""
        req = {"v": 1, "root": self.root, "pbs_bin": pbs_bin, "ops": list(ops)}
        p = self.call(json.dumps(req).encode("utf-8"))
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        out = p.stdout
        head, end = b"ALCF-AGENT 1\n", b"\nALCF-AGENT-END\n"
        self.assertTrue(out.startswith(head) and out.endswith(end), out[:300])
        body = out[len(head):-len(end)]
        self.assertNotIn(b"\n", body)
        resp = json.loads(body.decode("utf-8"))
        self.assertEqual(resp["v"], 1)
        self.assertIsInstance(resp["now"], float)
        self.assertLess(abs(resp["now"] - time.time()), 30)
        self.assertEqual(len(resp["results"]), len(ops))
        return resp["results"]

    def one(self, op, **kw):
        return self.agent(op, **kw)[0]

    def p(self, *parts):
        return os.path.join(self.root, *parts)

    def read(self, *parts):
        with open(self.p(*parts), "rb") as f:
            return f.read().decode("utf-8")

    def jread(self, *parts):
        return json.loads(self.read(*parts))

    def write(self, rel, data, mode="wb"):
        path = self.p(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, mode) as f:
            f.write(data if isinstance(data, bytes) else data.encode())

    def wait_for(self, what, fn, timeout=60.0, interval=0.2):
        deadline = time.monotonic() + timeout
        while True:
            v = fn()
            if v:
                return v
            if time.monotonic() > deadline:
                self.fail("timed out after %.0f s waiting for %s" % (timeout, what))
            time.sleep(interval)

    def job_state(self, jid):
        r = subprocess.run([os.path.join(EMU, "qstat"), "-xf", "-F", "json", jid],
                           env=self.env, cwd=self.home, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)["Jobs"][jid]["job_state"]

    def qstat(self, jid):
        """The job's attributes, read through the agent's qstat op."""
        r = self.one({"op": "qstat", "jobs": [{"id": jid, "format": "json"}]})["jobs"][0]
        self.assertEqual(r["status"], 0, r)
        return json.loads(r["stdout"])["Jobs"][jid]

    def wait_job(self, jid, state="F", timeout=60.0):
        return self.wait_for("job %s in %s" % (jid, state),
                             lambda: (lambda j: j if j["job_state"] == state else None)(
                                 self.qstat(jid)), timeout, 0.25)

    def job_sh(self, body, queue="work"):
        return JOB_SH.format(queue=queue, body=body)

    def stage_pilot(self):
        with open(PILOT, "rb") as f:
            r = self.one({"op": "stage", "files": [{"path": "bin/pilot.py", "data_b64": b64(f.read()),
                                                    "mode": 0o755}]})
        self.assertNotIn("error", r)

    def submit_pilot(self, name, args, walltime="00:02:00"):
        script = PILOT_SH.format(name=name, walltime=walltime, py=shlex.quote(PY),
                                 root=shlex.quote(self.root), args=args)
        r = self.one({"op": "submit_pilot", "name": name, "script": script})
        self.assertEqual(r.get("status"), 0, r)
        jid = r["stdout"].strip()
        self.jobs.append(jid)
        self.assertEqual(self.read("pilots", name + ".job").strip(), jid)
        return jid

    def pilot_args(self, slots=2, idle=1.5, walltime=120, margin=5, extra=""):
        return ("--slots %d --walltime-s %s --margin-s %s --idle-s %s --poll-s 0.2 "
                "--kill-grace-s 1 %s" % (slots, walltime, margin, idle, extra))

    def ticket(self, name, sleep=0.3, n=None, **kw):
        n = name if n is None else n
        t = {"name": name, "dir": "trials/" + n, "attempt": 1, "rerun": "fresh",
             "files": {"params.json": json.dumps({"x": name})},
             "argv": [PY, "-c", TRIAL, str(sleep)] + kw.pop("extra_argv", []),
             "env": {"FROM_TICKET": name}, "timeout_s": None, "estimate_s": 1}
        t.update(kw)
        return t

    def enqueue(self, *tickets):
        r = self.one({"op": "enqueue", "tickets": list(tickets)})
        return [x.get("state", x.get("error")) for x in r["tickets"]]

    def status(self, *names):
        return self.one({"op": "queue_status", "names": list(names)})

    def wait_done(self, names, timeout=60.0):
        def check():
            st = self.status(*names)["tickets"]
            return st if all(st[n]["state"] == "done" for n in names) else None
        return self.wait_for("tickets %s done" % names, check, timeout, 0.3)

    def pilot_log(self, name, jid):
        path = self.p("pilots", "%s.o%s" % (name, jid.split(".")[0]))
        try:
            return self.read(path)
        except OSError:
            return ""

    def allowed_cpus(self):
        cpus = sorted(os.sched_getaffinity(0))
        return [str(cpus[0]), str(cpus[1 % len(cpus)])]

    # -- invocation, framing, errors ------------------------------------------------------------
    def test_crash_exits_3_with_traceback_and_no_frame(self):
        for bad in (b"{not json", json.dumps({"v": 2, "root": self.root, "ops": []}).encode()):
            p = self.call(bad)
            self.assertEqual(p.returncode, 3, p.stderr)
            self.assertEqual(p.stdout, b"")
            self.assertIn(b"Traceback", p.stderr)
        self.assertEqual(self.agent(), [])

    def test_op_errors_do_not_stop_later_ops_and_dotdot_is_refused(self):
        outside = os.path.join(self.tmp, "outside.txt")
        res = self.agent(
            {"op": "digest", "paths": ["../outside.txt"]},
            {"op": "no_such_op"},
            "not an object",
            {"op": "stage", "files": [{"path": "ok.txt", "data_b64": b64(b"a"), "mode": 420},
                                      {"path": "a/../../outside.txt", "data_b64": b64(b"x"),
                                       "mode": 420}]},
            {"op": "stage", "files": [{"path": outside, "data_b64": b64(b"abs"), "mode": 384}]},
            {"op": "read", "trials": [{"dir": "trials/../../x", "metrics_from": 0},
                                      {"dir": "trials/none", "metrics_from": 0}]},
            {"op": "enqueue", "tickets": [self.ticket("bad/name"), self.ticket("x", dir="../x")]},
            {"op": "digest", "paths": ["ok.txt", outside]})
        self.assertIn("..", res[0]["error"])
        self.assertIn("unknown op", res[1]["error"])
        self.assertIn("error", res[2])
        self.assertIn("..", res[3]["error"])
        self.assertFalse(os.path.exists(self.p("ok.txt")), "a refused stage writes nothing")
        self.assertEqual(res[4], {"written": 1, "unchanged": 0})  # absolute paths are allowed
        self.assertEqual(stat.S_IMODE(os.stat(outside).st_mode), 0o600)
        self.assertIn("..", res[5]["trials"][0]["error"])
        self.assertFalse(res[5]["trials"][1]["exists"])
        self.assertIn("bad ticket name", res[6]["tickets"][0]["error"])
        self.assertIn("..", res[6]["tickets"][1]["error"])
        self.assertEqual(res[7]["digests"], {"ok.txt": None,
                                             outside: hashlib.sha256(b"abs").hexdigest()})

    # -- digest / stage --------------------------------------------------------------------------
    def test_digest_and_stage(self):
        data = b"print('hello')\n"
        r = self.one({"op": "digest", "paths": ["bin/pilot.py", "files/train.py"]})
        self.assertEqual(r, {"digests": {"bin/pilot.py": None, "files/train.py": None}})
        r = self.one({"op": "stage", "files": [
            {"path": "files/train.py", "data_b64": b64(data), "mode": 0o755},
            {"path": "deep/er/dir/x.json", "data_b64": b64(b"{}"), "mode": 0o600}]})
        self.assertEqual(r, {"written": 2, "unchanged": 0})
        path = self.p("files", "train.py")
        st = os.stat(path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o755)
        self.assertEqual(stat.S_IMODE(os.stat(self.p("deep/er/dir/x.json")).st_mode), 0o600)
        r = self.one({"op": "digest", "paths": ["files/train.py"]})
        self.assertEqual(r["digests"]["files/train.py"], hashlib.sha256(data).hexdigest())
        # Unchanged: not rewritten (same inode, same mtime); a new mode is still applied.
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10 ** 9))
        before = os.stat(path)
        r = self.one({"op": "stage", "files": [{"path": "files/train.py", "data_b64": b64(data),
                                                "mode": 0o644}]})
        self.assertEqual(r, {"written": 0, "unchanged": 1})
        after = os.stat(path)
        self.assertEqual((after.st_ino, after.st_mtime_ns), (before.st_ino, before.st_mtime_ns))
        self.assertEqual(stat.S_IMODE(after.st_mode), 0o644)
        # Changed: written atomically (a new inode renamed over the old; a reader that had the
        # old file open keeps the old content), and no temporary is left behind.
        with open(path, "rb") as old:
            r = self.one({"op": "stage", "files": [{"path": "files/train.py",
                                                    "data_b64": b64(b"v2\n"), "mode": 0o755}]})
            self.assertEqual(r, {"written": 1, "unchanged": 0})
            self.assertEqual(old.read(), data)
        self.assertNotEqual(os.stat(path).st_ino, before.st_ino)
        self.assertEqual(self.read("files", "train.py"), "v2\n")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o755)
        self.assertEqual(sorted(os.listdir(self.p("files"))), ["train.py"])

    # -- PBS commands ----------------------------------------------------------------------------
    def test_submit_then_qstat_json_and_text(self):
        body = ('cat params.json\necho \'{"loss": 0.5}\' > result.json\n'
                'echo to-stderr >&2\nexit 3')
        r = self.one({"op": "submit", "jobs": [{
            "dir": "trials/000007", "attempt": 1, "rerun": "fresh",
            "files": {"params.json": '{"lr": 0.1}', "job.sh": self.job_sh(body)},
            "script": "job.sh"}]})
        (res,) = r["jobs"]
        self.assertEqual(res["status"], 0, res)
        jid = res["stdout"].strip()
        self.jobs.append(jid)
        self.assertRegex(jid, r"^\d+\.aurora-pbs-0001\.")
        # The id is kept beside the trial's files for a host that dies before recording it.
        ids = self.one({"op": "job_ids", "trials": [{"dir": "trials/000007", "attempt": 1},
                                                    {"dir": "trials/000007", "attempt": 2},
                                                    {"dir": "trials/000099", "attempt": 1}]})
        self.assertEqual(ids, {"ids": [jid, None, None]})
        j = self.wait_job(jid)
        self.assertEqual(j["Exit_status"], 3)
        self.assertEqual(j["Variable_List"]["PBS_O_WORKDIR"], self.p("trials", "000007"))
        self.assertEqual(self.read("trials/000007/stdout.log"), '{"lr": 0.1}')
        t = self.one({"op": "qstat", "jobs": [{"id": jid, "format": "text"},
                                              {"id": "999.aurora-pbs-0001", "format": "json"}]})
        text, unknown = t["jobs"]
        self.assertEqual(text["status"], 0)
        self.assertIn("Job Id: %s\n" % jid, text["stdout"])
        self.assertIn("    Exit_status = 3\n", text["stdout"])
        self.assertEqual(unknown["status"], 153)
        self.assertIn("Unknown Job Id", unknown["stderr"])
        r = self.one({"op": "read", "trials": [{"dir": "trials/000007", "metrics_from": 0,
                                                "final": True}]})["trials"][0]
        self.assertEqual(json.loads(r["result"]), {"loss": 0.5})
        self.assertEqual(r["stderr_tail"], "to-stderr\n")

    def test_submit_is_idempotent_per_attempt(self):
        # A second submit of the same attempt (its first answer lost, or a dead host's agent
        # finishing after the next host resubmitted) answers with the first job: no second job,
        # and the running attempt's directory is not moved aside. A new attempt is a new job.
        job = {"dir": "trials/000003", "attempt": 2, "rerun": "fresh",
               "files": {"job.sh": self.job_sh("sleep 30")}, "script": "job.sh"}
        first = self.one({"op": "submit", "jobs": [job]})["jobs"][0]
        self.assertEqual(first["status"], 0, first)
        jid = first["stdout"].strip()
        self.jobs.append(jid)
        again = self.one({"op": "submit", "jobs": [job]})["jobs"][0]
        self.assertEqual((again["status"], again["stdout"].strip(), again.get("existing")), (0, jid, True))
        self.assertEqual(sorted(os.listdir(self.p("trials"))), ["000003"])
        third = self.one({"op": "submit", "jobs": [dict(job, attempt=3)]})["jobs"][0]
        self.assertEqual(third["status"], 0, third)
        self.jobs.append(third["stdout"].strip())
        self.assertNotEqual(third["stdout"].strip(), jid)
        self.assertIn("000003.attempt-2", os.listdir(self.p("trials")))

    def test_submit_stops_after_a_per_user_limit(self):
        # debug: 1 job per user. The second qsub is refused (38); the third is not tried.
        jobs = [{"dir": "trials/%06d" % i, "attempt": 1, "rerun": "fresh",
                 "files": {"job.sh": self.job_sh("sleep 30", queue="debug")}, "script": "job.sh"}
                for i in range(3)]
        r = self.one({"op": "submit", "jobs": jobs})["jobs"]
        self.assertEqual(r[0]["status"], 0, r)
        self.jobs.append(r[0]["stdout"].strip())
        self.assertEqual(r[1]["status"], 38, r)
        self.assertIn("per-user limit", r[1]["stderr"])
        self.assertEqual(r[2], {"skipped": True})
        self.assertFalse(os.path.exists(self.p("trials/000002")))

    def test_qdel(self):
        r = self.one({"op": "submit", "jobs": [{
            "dir": "trials/000001", "attempt": 1, "rerun": "fresh",
            "files": {"job.sh": self.job_sh("sleep 30")}, "script": "job.sh"}]})
        jid = r["jobs"][0]["stdout"].strip()
        self.jobs.append(jid)
        self.wait_job(jid, "R")
        d = self.one({"op": "qdel", "ids": [jid]})
        self.assertEqual(d, {"status": 0, "stdout": "", "stderr": ""})
        self.wait_job(jid, "F")
        again = self.one({"op": "qdel", "ids": [jid, "12.aurora-pbs-0001"]})
        self.assertNotEqual(again["status"], 0)
        self.assertIn("Job has finished", again["stderr"])
        self.assertIn("Unknown Job Id", again["stderr"])
        self.assertIn("error", self.one({"op": "qdel", "ids": []}))

    def test_pbs_bin_truncation_and_missing_commands(self):
        # A stand-in qstat in pbs_bin: records its argv; a huge output for job big.x.
        fake = os.path.join(self.tmp, "fakepbs")
        os.makedirs(fake)
        argv_log = os.path.join(self.tmp, "qstat-argv")
        with open(os.path.join(fake, "qstat"), "w") as f:
            f.write('#!/bin/sh\necho "$*" >> %s\n'
                    'case "$*" in *big.x*) head -c 100000 /dev/zero | tr "\\0" x;'
                    ' echo short >&2; exit 255;; esac\necho \'{"Jobs":{}}\'\n'
                    % shlex.quote(argv_log))
        os.chmod(os.path.join(fake, "qstat"), 0o755)
        res = self.agent({"op": "qstat", "jobs": [{"id": "1.x", "format": "json"},
                                                  {"id": "2.x", "format": "text"},
                                                  {"id": "-u", "format": "json"}]},
                         {"op": "qstat", "jobs": [{"id": "big.x", "format": "json"}]},
                         {"op": "submit", "jobs": [{"dir": "trials/1", "attempt": 1,
                                                    "rerun": "fresh", "files": {"job.sh": "x"},
                                                    "script": "job.sh"}]},
                         {"op": "digest", "paths": []}, pbs_bin=fake)
        self.assertEqual(res[0]["jobs"][:2], [{"status": 0, "stdout": '{"Jobs":{}}\n',
                                               "stderr": ""}] * 2)
        self.assertIn("bad job id", res[0]["jobs"][2]["error"])
        q = res[1]["jobs"][0]
        self.assertEqual(q["status"], 255)  # the command's own 255, reported inside a frame
        self.assertEqual(len(q["stdout"]), 64 * 1024)
        self.assertTrue(q["stdout_truncated"])
        self.assertEqual(q["stderr"], "short\n")
        with open(argv_log) as f:
            self.assertEqual(f.read().splitlines(), [
                "-xf -F json 1.x", "-xf 2.x", "-xf -F json big.x"])
        self.assertIn("cannot run", res[2]["jobs"][0]["error"])
        self.assertEqual(res[3], {"digests": {}})

    # -- trial directories and read --------------------------------------------------------------
    def test_prepare_fresh_and_resume(self):
        self.assertEqual(self.enqueue(self.ticket("s.t1.a1", n="000001")), ["enqueued"])
        self.write("trials/000001/stdout.log", "one\n")
        self.write("trials/000001/result.json", "{}")
        self.assertEqual(self.enqueue(self.ticket("s.t1.a2", n="000001", attempt=2)),
                         ["enqueued"])
        self.assertEqual(sorted(os.listdir(self.p("trials/000001.attempt-1"))),
                         ["params.json", "result.json", "stdout.log"])
        self.assertEqual(os.listdir(self.p("trials/000001")), ["params.json"])
        self.assertEqual(self.jread("trials/000001/params.json"), {"x": "s.t1.a2"})
        # The aside name is taken: -2.
        self.assertEqual(self.enqueue(self.ticket("s.t1.a2b", n="000001", attempt=2)),
                         ["enqueued"])
        self.assertTrue(os.path.isdir(self.p("trials/000001.attempt-1-2")))
        # resume: the directory stays, the logs are renamed, result.json goes.
        for f in ("stdout.log", "stderr.log", "result.json", "ckpt"):
            self.write("trials/000002/" + f, f)
        self.assertEqual(self.enqueue(self.ticket("s.t2.a3", n="000002", attempt=3,
                                                  rerun="resume")), ["enqueued"])
        self.assertEqual(sorted(os.listdir(self.p("trials/000002"))),
                         ["ckpt", "params.json", "stderr.attempt-2.log", "stdout.attempt-2.log"])
        self.assertEqual(self.read("trials/000002/stdout.attempt-2.log"), "stdout.log")
        # submit prepares the same way.
        self.write("trials/000003/result.json", "{}")
        r = self.one({"op": "submit", "jobs": [{"dir": "trials/000003", "attempt": 2,
                                                "rerun": "fresh", "files": {"job.sh": "x"},
                                                "script": "job.sh"}]}, pbs_bin="/nonexistent")
        self.assertIn("error", r["jobs"][0])
        self.assertEqual(os.listdir(self.p("trials/000003.attempt-1")), ["result.json"])

    def test_read(self):
        d = "trials/000004"
        self.write(d + "/metrics.jsonl", b'{"step":1}\n{"step":2}\n{"st')
        r = self.one({"op": "read", "trials": [{"dir": d, "metrics_from": 0, "final": False},
                                               {"dir": "trials/nope", "metrics_from": 5,
                                                "final": True}]})["trials"]
        first = len(b'{"step":1}\n{"step":2}\n')
        self.assertEqual(r[0], {"exists": True, "metrics": '{"step":1}\n{"step":2}\n',
                                "metrics_next": first, "result": None, "stdout_tail": None,
                                "stderr_tail": None})
        self.assertFalse(r[1]["exists"])
        # Continuation from the offset; the partial line completes.
        self.write(d + "/metrics.jsonl", b'ep":3}\n{"step":4', mode="ab")
        r = self.one({"op": "read", "trials": [{"dir": d, "metrics_from": first}]})["trials"][0]
        self.assertEqual(r["metrics"], '{"step":3}\n')
        self.assertEqual(r["metrics_next"], first + len(b'{"step":3}\n'))
        self.assertNotIn("metrics_reset", r)
        nothing = self.one({"op": "read", "trials": [{"dir": d, "metrics_from": r["metrics_next"]}]})
        self.assertEqual(nothing["trials"][0]["metrics"], "")
        self.assertEqual(nothing["trials"][0]["metrics_next"], r["metrics_next"])
        # Rewritten shorter: from 0 again.
        self.write(d + "/metrics.jsonl", b'{"new":1}\n')
        r = self.one({"op": "read", "trials": [{"dir": d, "metrics_from": first}]})["trials"][0]
        self.assertEqual((r["metrics"], r["metrics_next"], r["metrics_reset"]),
                         ('{"new":1}\n', 10, True))
        # At most 256 KiB, complete lines only.
        line = b'{"v":"' + b"x" * 1000 + b'"}\n'
        self.write(d + "/metrics.jsonl", line * 300)
        r = self.one({"op": "read", "trials": [{"dir": d, "metrics_from": 0}]})["trials"][0]
        self.assertEqual(r["metrics_next"], (256 * 1024 // len(line)) * len(line))
        self.assertEqual(len(r["metrics"]), r["metrics_next"])
        # result.json, and the tails only when final.
        self.write(d + "/result.json", '{"loss": 1}')
        self.write(d + "/stdout.log", "a" * 5000 + "END")
        self.write(d + "/stderr.log", "\xe9t\xe9")
        r = self.one({"op": "read", "trials": [{"dir": d, "metrics_from": 0, "final": True}]})
        r = r["trials"][0]
        self.assertEqual(r["result"], '{"loss": 1}')
        self.assertEqual(len(r["stdout_tail"]), 4096)
        self.assertTrue(r["stdout_tail"].endswith("aEND"))
        self.assertEqual(r["stderr_tail"], "\xe9t\xe9")
        os.unlink(self.p(d, "stderr.log"))
        r = self.one({"op": "read", "trials": [{"dir": d, "final": True}]})["trials"][0]
        self.assertIsNone(r["stderr_tail"])
        # Over 1 MiB: an error for that trial only.
        self.write(d + "/result.json", b" " * (1024 * 1024 + 1))
        r = self.one({"op": "read", "trials": [{"dir": d}, {"dir": "trials/nope"}]})["trials"]
        self.assertEqual(r[0], {"exists": True,
                                "error": "result.json is 1048577 bytes; the limit is 1 MiB"})
        self.assertFalse(r[1]["exists"])

    # -- the queue without pilots ----------------------------------------------------------------
    def test_enqueue_idempotent_queue_status_and_cancel_pending(self):
        t = self.ticket("s.t5.a1", n="000005")
        self.assertEqual(self.enqueue(t), ["enqueued"])
        self.write("trials/000005/marker", "kept")
        self.assertEqual(self.enqueue(t), ["pending"])  # re-sent: nothing done
        self.assertEqual(self.read("trials/000005/marker"), "kept")
        ticket = self.jread("queue/pending/s.t5.a1.json")
        self.assertEqual(ticket["requeues"], 0)
        self.assertEqual(ticket["argv"], t["argv"])
        self.assertEqual(ticket["estimate_s"], 1)
        self.assertLess(abs(ticket["enqueued"] - time.time()), 30)
        st = self.status("s.t5.a1", "s.t6.a1")
        self.assertEqual(st["tickets"], {"s.t5.a1": {"state": "pending"},
                                         "s.t6.a1": {"state": "missing"}})
        self.assertEqual((st["pending"], st["pilots"]), (1, []))
        # Running elsewhere (a pilot's claim): enqueue still does nothing.
        os.makedirs(self.p("queue/running/77.srv"))
        os.rename(self.p("queue/pending/s.t5.a1.json"), self.p("queue/running/77.srv/s.t5.a1.json"))
        self.assertEqual(self.enqueue(t), ["running"])
        st = self.status("s.t5.a1")["tickets"]["s.t5.a1"]
        self.assertEqual(st, {"state": "running", "pilot": "77.srv"})
        os.rename(self.p("queue/running/77.srv/s.t5.a1.json"), self.p("queue/pending/s.t5.a1.json"))
        bad = self.agent({"op": "cancel_tickets", "names": ["s.t5.a1", "../x"]},
                         {"op": "queue_status", "names": ["s.t5.a1", "a b"]})
        self.assertIn("bad ticket name", bad[0]["error"])
        self.assertIn("bad ticket name", bad[1]["error"])
        self.assertEqual(self.status("s.t5.a1")["tickets"]["s.t5.a1"]["state"], "pending")
        c = self.one({"op": "cancel_tickets", "names": ["s.t5.a1", "s.t6.a1"]})
        self.assertEqual(c["tickets"], {"s.t5.a1": "cancelled", "s.t6.a1": "missing"})
        st = self.status("s.t5.a1")
        self.assertEqual(st["tickets"]["s.t5.a1"]["state"], "done")
        self.assertTrue(st["tickets"]["s.t5.a1"]["done"]["cancelled"])
        self.assertEqual(st["pending"], 0)
        self.assertEqual(self.one({"op": "cancel_tickets", "names": ["s.t5.a1"]})["tickets"],
                         {"s.t5.a1": "done"})
        self.assertEqual(self.enqueue(t), ["done"])
        self.assertEqual(self.one({"op": "stop_pilots", "jobs": ["77.srv"]}), {})
        self.assertTrue(os.path.exists(self.p("queue/stop/pilot-77.srv")))

    def test_requeue_and_lost(self):
        self.assertEqual(self.enqueue(self.ticket("s.t8.a1"), self.ticket("s.t9.a1"),
                                      self.ticket("s.t10.a1")), ["enqueued"] * 3)
        run = self.p("queue/running/5.srv")
        os.makedirs(run)

        def claim(name):
            os.rename(self.p("queue/pending", name + ".json"), os.path.join(run, name + ".json"))

        for n in ("s.t8.a1", "s.t9.a1", "s.t10.a1"):
            claim(n)
        self.write("queue/done/s.t9.a1.json", json.dumps({"name": "s.t9.a1", "exit_code": 0}))
        self.write("queue/stop/s.t10.a1", "")
        r = self.one({"op": "requeue", "pilot_job": "5.srv", "max_requeues": 1})
        self.assertEqual((r["requeued"], r["lost"]), (["s.t8.a1"], []))
        self.assertEqual(sorted(r["done"]), ["s.t10.a1", "s.t9.a1"])
        self.assertEqual(self.jread("queue/pending/s.t8.a1.json")["requeues"], 1)
        self.assertTrue(self.jread("queue/done/s.t10.a1.json")["cancelled"])
        self.assertEqual(self.jread("queue/done/s.t9.a1.json")["exit_code"], 0)
        self.assertFalse(os.path.exists(run))
        os.makedirs(run)
        claim("s.t8.a1")
        r = self.one({"op": "requeue", "pilot_job": "5.srv", "max_requeues": 1})
        self.assertEqual((r["requeued"], r["lost"]), ([], ["s.t8.a1"]))
        rec = self.jread("queue/done/s.t8.a1.json")
        self.assertTrue(rec["lost"])
        self.assertEqual(rec["reason"], "its pilot job 5.srv ended while it ran (2 times)")
        self.assertEqual(self.status("s.t8.a1")["tickets"]["s.t8.a1"]["state"], "done")
        self.assertIn("error", self.one({"op": "requeue", "pilot_job": "../x",
                                         "max_requeues": 1}))

    # -- real pilots -----------------------------------------------------------------------------
    def test_pilot_runs_five_tickets_on_two_slots_then_idles_out(self):
        self.stage_pilot()
        cpus = self.allowed_cpus()
        names = ["s.t%d.a1" % i for i in range(5)]
        self.assertEqual(self.enqueue(*[self.ticket(n, sleep=0.5) for n in names]),
                         ["enqueued"] * 5)
        jid = self.submit_pilot("s.pilot.1", self.pilot_args(
            slots=2, idle=1.5, extra="--affinity-var ZE_AFFINITY_MASK --cpu-lists %s"
            % ":".join(cpus)))
        st = self.wait_done(names)
        recs = [st[n]["done"] for n in names]
        for n, rec in zip(names, recs):
            self.assertEqual(rec["name"], n)
            self.assertEqual(rec["pilot"], jid)
            self.assertEqual((rec["exit_code"], rec["signal"], rec["timed_out"],
                              rec["cancelled"]), (0, None, False, False))
            self.assertIn(rec["slot"], (0, 1))
            self.assertLessEqual(rec["started"], rec["ended"])
            d = "trials/" + n
            self.assertEqual(len(self.read(d, "runs.txt").split()), 1, "ran once: " + n)
            env = self.jread(d, "env.json")
            self.assertEqual(env["ALCF_SLOT"], str(rec["slot"]))
            self.assertEqual(env["ZE_AFFINITY_MASK"], str(rec["slot"]))
            self.assertEqual(env["ZE_ENABLE_PCI_ID_DEVICE_ORDER"], "1")
            self.assertEqual(env["FROM_TICKET"], n)
            if shutil.which("taskset"):
                self.assertEqual(env["cpus"], cpus[rec["slot"]])
            self.assertEqual(self.jread(d, "result.json"), {"loss": 0.5})
            self.assertRegex(self.read(d, "stdout.log"), r"^start\ntrial out \d+\n$")
            self.assertEqual(self.read(d, "stderr.log"), "trial err\n")
        # Never more than 2 at once, and never two at once in one slot.
        events = sorted([(r["started"], 1) for r in recs] + [(r["ended"], -1) for r in recs])
        level = peak = 0
        for _, step in events:
            level += step
            peak = max(peak, level)
        self.assertLessEqual(peak, 2)
        for a in recs:
            for b in recs:
                if a is not b and a["slot"] == b["slot"]:
                    self.assertTrue(a["ended"] <= b["started"] or b["ended"] <= a["started"])
        self.assertEqual(os.listdir(self.p("queue/pending")), [])
        # Idle for --idle-s: the pilot exits 0 on its own.
        j = self.wait_job(jid, "F", timeout=30)
        self.assertEqual(j["Exit_status"], 0)
        state = self.jread("pilots/state/%s.json" % jid)
        self.assertEqual((state["job"], state["slots"], state["running"]), (jid, 2, {}))
        self.assertTrue(state["exit_reason"].startswith("idle"), state)
        self.assertLessEqual(state["heartbeat"], time.time())
        q = self.status()
        self.assertEqual(q["pilots"], [{"name": "s.pilot.1", "job": jid, "finished": False,
                                        "state": state}])
        log = self.pilot_log("s.pilot.1", jid)
        for n in names:
            self.assertIn("claimed %s" % n, log)
            self.assertIn("finished %s" % n, log)
        self.assertIn("exiting 0: idle", log)
        r = self.one({"op": "pilot_finished", "name": "s.pilot.1"})
        self.assertEqual((r["requeued"], r["lost"]), ([], []))
        self.assertTrue(self.status()["pilots"][0]["finished"])
        self.assertIn("already submitted", self.one(
            {"op": "submit_pilot", "name": "s.pilot.1", "script": "#!/bin/sh\n"})["error"])

    def test_two_pilots_never_run_a_ticket_twice(self):
        self.stage_pilot()
        jobs = [self.submit_pilot("s.pilot.%d" % i, self.pilot_args(slots=2, idle=3))
                for i in (1, 2)]
        names = ["s.t%d.a1" % i for i in range(10)]
        self.assertEqual(self.enqueue(*[self.ticket(n, sleep=0.2) for n in names]),
                         ["enqueued"] * 10)
        st = self.wait_done(names)
        for n in names:
            self.assertEqual(len(self.read("trials", n, "runs.txt").split()), 1, n)
            self.assertIn(st[n]["done"]["pilot"], jobs)
            self.assertEqual(st[n]["done"]["exit_code"], 0)
        for jid in jobs:
            self.assertEqual(self.wait_job(jid, "F", timeout=30)["Exit_status"], 0)
        self.assertEqual(os.listdir(self.p("queue/running")), [])  # each pilot removed its own

    def test_pilot_drains_when_a_ticket_does_not_fit(self):
        self.stage_pilot()
        self.enqueue(self.ticket("s.big.a1", estimate_s=3600))
        jid = self.submit_pilot("s.pilot.1", self.pilot_args(walltime=60, margin=5, idle=60))
        j = self.wait_job(jid, "F", timeout=30)
        self.assertEqual(j["Exit_status"], 0)
        self.assertEqual(self.status("s.big.a1")["tickets"]["s.big.a1"], {"state": "pending"})
        self.assertFalse(os.path.exists(self.p("trials/s.big.a1/runs.txt")))
        state = self.jread("pilots/state/%s.json" % jid)
        self.assertTrue(state["draining"])
        self.assertIn("draining", self.pilot_log("s.pilot.1", jid))

    def test_pilot_cancel_timeout_and_stop(self):
        self.stage_pilot()
        jid = self.submit_pilot("s.pilot.1", self.pilot_args(slots=1, idle=60))
        self.enqueue(self.ticket("s.long.a1", sleep=60))
        self.wait_for("s.long.a1 running", lambda: self.status("s.long.a1")["tickets"]
                      ["s.long.a1"].get("slot") == 0)
        st = self.status("s.long.a1")["tickets"]["s.long.a1"]
        self.assertEqual((st["state"], st["pilot"]), ("running", jid))
        self.assertLessEqual(st["started"], time.time())
        # A pending one (the only slot is busy) and the running one.
        self.enqueue(self.ticket("s.wait.a1"), self.ticket("s.slow.a1", sleep=60, timeout_s=1))
        c = self.one({"op": "cancel_tickets", "names": ["s.wait.a1"]})
        self.assertEqual(c["tickets"], {"s.wait.a1": "cancelled"})
        c = self.one({"op": "cancel_tickets", "names": ["s.long.a1"]})
        self.assertEqual(c["tickets"], {"s.long.a1": "stopping"})
        rec = self.wait_done(["s.long.a1"], timeout=30)["s.long.a1"]["done"]
        self.assertEqual((rec["cancelled"], rec["exit_code"], rec["signal"], rec["timed_out"]),
                         (True, None, 15, False))
        self.assertFalse(os.path.exists(self.p("queue/stop/s.long.a1")))
        self.assertTrue(self.status("s.wait.a1")["tickets"]["s.wait.a1"]["done"]["cancelled"])
        self.assertFalse(os.path.exists(self.p("trials/s.wait.a1/runs.txt")))
        # timeout_s: SIGTERM at the limit.
        rec = self.wait_done(["s.slow.a1"], timeout=30)["s.slow.a1"]["done"]
        self.assertEqual((rec["timed_out"], rec["cancelled"], rec["signal"]), (True, False, 15))
        self.assertLess(rec["ended"] - rec["started"], 20)
        # Told to stop: exits 0 although --idle-s is long.
        self.assertEqual(self.one({"op": "stop_pilots", "jobs": [jid]}), {})
        self.assertEqual(self.wait_job(jid, "F", timeout=30)["Exit_status"], 0)
        self.assertEqual(self.jread("pilots/state/%s.json" % jid)["exit_reason"], "stopped")

    def test_walltime_kill_leaves_the_ticket_for_requeue(self):
        self.stage_pilot()
        self.enqueue(self.ticket("s.w.a1", sleep=60, extra_argv=["once"], estimate_s=0))
        jid = self.submit_pilot("s.pilot.1", self.pilot_args(slots=1, walltime=6, margin=1,
                                                             idle=60), walltime="00:00:06")
        self.wait_for("s.w.a1 started", lambda: os.path.exists(self.p("trials/s.w.a1/runs.txt")))
        j = self.wait_job(jid, "F", timeout=40)
        self.assertEqual(j["Exit_status"], -29)
        # No done record: the ticket stays claimed by the dead pilot.
        self.assertTrue(os.path.exists(self.p("queue/running", jid, "s.w.a1.json")))
        st = self.status("s.w.a1")["tickets"]["s.w.a1"]
        self.assertEqual((st["state"], st["pilot"]), ("running", jid))
        state = self.jread("pilots/state/%s.json" % jid)
        self.assertEqual(state["exit_reason"], "signal 15")
        self.assertIn("got signal 15", self.pilot_log("s.pilot.1", jid))
        r = self.one({"op": "pilot_finished", "name": "s.pilot.1", "max_requeues": 2})
        self.assertEqual((r["requeued"], r["lost"]), (["s.w.a1"], []))
        self.assertEqual(self.jread("queue/pending/s.w.a1.json")["requeues"], 1)
        jid2 = self.submit_pilot("s.pilot.2", self.pilot_args(slots=1, idle=1))
        rec = self.wait_done(["s.w.a1"])["s.w.a1"]["done"]
        self.assertEqual((rec["pilot"], rec["exit_code"]), (jid2, 0))
        self.assertEqual(len(self.read("trials/s.w.a1/runs.txt").split()), 2)
        # Both runs' output kept (appended to the same logs).
        self.assertRegex(self.read("trials/s.w.a1/stdout.log"), r"^start\nstart\ntrial out \d+\n$")
        self.assertEqual(self.jread("trials/s.w.a1/result.json"), {"loss": 60.0})
        self.assertEqual(self.wait_job(jid2, "F", timeout=30)["Exit_status"], 0)
        pilots = self.status()["pilots"]
        self.assertEqual([(p["name"], p["finished"]) for p in pilots],
                         [("s.pilot.1", True), ("s.pilot.2", False)])


if __name__ == "__main__":
    unittest.main()
