"""PBS Pro emulator: the shared core of the qsub, qstat and qdel entry points.

A test double for ALCF Aurora's PBS Pro, faithful to the formats and exit codes collected in
docs' shared reference (`/work/shared/reference/alcf.md`, sections "Aurora PBS", "PBS Pro
details" and "Running 12 trials on one Aurora node"; cited below as [ref: ...]) and to the
OpenPBS source they come from (cited as [openpbs: file]).

There is no daemon. State lives in one directory ($PBS_EMU_HOME, default ~/.pbs-emulator):
`state.json` (every job, guarded by an flock on `lock`), `config.json` (optional, merged over
DEFAULTS), `fail_next.json` (the flaky-scheduler hook) and `spool/<seq>/` (one per job: the
script copy, the node file, the runner's pid and result files). State advances whenever a
command runs (and when a job's runner finishes): queued jobs whose delay has passed start,
finished runners' results are collected, old history is dropped. A started job runs under its
own runner process (`runner.py`, in its own session), which plays the MOM: it runs the
script in a fresh process group, enforces the walltime, kills the group on qdel, stages the
output files and writes the exit status.
"""

import contextlib
import errno
import fcntl
import getpass
import json
import os
import pwd
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))
RUNNER = os.path.join(HERE, "runner.py")

# ---------------------------------------------------------------------------------------------
# PBS error numbers and the exit statuses they give.
# "PBS commands exit with `pbs_errno & 0xff` (OpenPBS source)" [ref: PBS Pro details]; the
# numbers are from [openpbs: src/include/pbs_error.h].
PBSE_UNKJOBID = 15001  # & 0xff = 153: "Unknown Job Id <id>"        [ref: PBS Pro details]
PBSE_BADATVAL = 15014  # & 0xff = 166: bad attribute value (e.g. walltime=abc)
PBSE_SYSTEM = 15010  # the errno of "cannot connect to server ... (errno=15010)" [ref]
PBSE_UNKQUE = 15018  # & 0xff = 170: "Unknown queue"                 [ref: PBS Pro details]
PBSE_QACESS = 15022  # & 0xff = 174: "Access to queue is denied"     [ref: PBS Pro details]
PBSE_EXCQRESC = 15036  # & 0xff = 188: "Job violates queue and/or server resource limits" [ref]
PBSE_ROUTEREJ = 15039  # & 0xff = 191: "Job rejected by all possible destinations" [ref]
PBSE_HOOKERROR = 15136  # & 0xff = 32: a queuejob hook's rejection (ALCF's -A/filesystems) [ref]
PBSE_HISTJOBID = 15139  # & 0xff = 35: "Job has finished"            [ref: PBS Pro details]
PBSE_ENTLIMCT = 15142  # & 0xff = 38: "would exceed queue X's per-user limit" [ref]


def exit_code(pbs_errno):
    """What a PBS command's exit(pbs_errno) leaves in the shell: the low byte [ref]."""
    return pbs_errno & 0xFF


# Job exit statuses [ref: PBS Pro details; openpbs: src/include/job.h].
JOB_EXEC_KILL_WALLTIME = -29  # "-29 = JOB_EXEC_KILL_WALLTIME"
JOB_EXEC_FAIL2 = -2  # "Job exec failed, after files, no retry": our runner vanished
# Job substates shown in `substate` [openpbs: src/include/job.h].
SUBSTATE_QUEUED, SUBSTATE_RUNNING, SUBSTATE_EXITING = 10, 42, 50
SUBSTATE_TERMINATED, SUBSTATE_FINISHED, SUBSTATE_FAILED = 91, 92, 93

# ---------------------------------------------------------------------------------------------
# Configuration. Queues follow [ref: Aurora PBS] and [ref: PBS Pro details, "Aurora (ALCF docs,
# 2026)"]: debug 1-2 nodes <= 1 h, 1 job/user; debug-scaling 2-256 nodes; capacity 1-16 nodes
# <= 7 days, 2 running / 5 queued per user; prod >= 256 nodes (a routing queue).
DEFAULTS = {
    # "Job ids like 2287864.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov." [ref: Aurora PBS]
    "server": "aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov",
    "pbs_version": "2022.1.1.20220926110806",
    "first_seq": 2287864,
    "queue_delay": 0.0,  # seconds a job stays Q before it may start; $PBS_EMU_QUEUE_DELAY wins
    "kill_delay": 10.0,  # SIGTERM -> SIGKILL grace on qdel/walltime (PBS's kill_delay default)
    "job_history_duration": 14 * 24 * 3600,  # "Job history kept 2 weeks." [ref]
    "node_ncpus": 208,  # an Aurora node's ncpus (cores 0 and 52 reserved, but PBS counts 208)
    "node_prefix": "x4000c0s",  # fake node names: x4000c0s0b0n0, x4000c0s1b0n0, ...
    "node_domain": ".hostmgmt2000.cm.aurora.alcf.anl.gov",  # appended in $PBS_NODEFILE
    "job_home": None,  # the job's $HOME; None = the submitter's $HOME
    # "A job starts in $HOME, not the submit directory" [ref: PBS Pro details]. "workdir" is a
    # deliberate unfaithfulness for callers that want it.
    "job_cwd": "home",
    "job_path": "/bin:/usr/bin",  # PATH a MOM gives a job before the login shell's profile
    # qstat -F json flavour [ref: PBS Pro details, "qstat -F json"]:
    #   legacy: older servers print anything numeric bare (005, .123 -> invalid JSON) and keep
    #           the bad "\" escapes;
    #   checked: OpenPBS's is_valid_json_number (before cJSON), still the bad "\" escapes;
    #   cjson: newer servers: values JSON can parse become numbers/booleans, proper escapes.
    "json_style": "legacy",
    # "several ids in one call may return only the first" [ref]: off by default.
    "json_multi_id_bug": False,
    "require_account": True,  # ALCF's submit hook: "Account_Name is required to be set." [ref]
    "require_filesystems": True,  # ... "Resource: filesystems is required to be set." [ref]
    "default_queue": "prod",
    "queues": {
        "debug": {"type": "execution", "min_nodes": 1, "max_nodes": 2,
                  "max_walltime": "01:00:00", "max_queued_per_user": 1,
                  "max_running_per_user": 1},
        "debug-scaling": {"type": "execution", "min_nodes": 2, "max_nodes": 256,
                          "max_walltime": "01:00:00", "max_queued_per_user": 1,
                          "max_running_per_user": 1},
        "capacity": {"type": "execution", "min_nodes": 1, "max_nodes": 16,
                     "max_walltime": "168:00:00", "max_queued_per_user": 5,
                     "max_running_per_user": 2},
        "prod": {"type": "route", "min_nodes": 256, "max_nodes": 10624,
                 "max_walltime": "24:00:00"},
    },
}
QUEUE_KEYS = {"type", "min_nodes", "max_nodes", "max_walltime", "default_walltime",
              "max_queued_per_user", "max_running_per_user", "max_running", "acl_users"}


class PbsError(Exception):
    """A refusal the way a PBS command prints it: one stderr line and an exit status."""

    def __init__(self, message, status):
        super().__init__(message)
        self.message = message
        self.status = status


def home_dir():
    return os.environ.get("PBS_EMU_HOME") or os.path.join(os.path.expanduser("~"),
                                                          ".pbs-emulator")


def load_config(home):
    cfg = json.loads(json.dumps(DEFAULTS))
    path = os.path.join(home, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            user = json.load(f)
        queues = user.pop("queues", None)
        unknown = set(user) - set(DEFAULTS)
        if unknown:
            raise PbsError("pbs-emulator: unknown config keys %s" % sorted(unknown), 1)
        cfg.update(user)
        if queues is not None:
            # A config's queues replace the default set: a test that names queues wants those.
            for name, q in queues.items():
                bad = set(q) - QUEUE_KEYS
                if bad:
                    raise PbsError("pbs-emulator: queue %s: unknown keys %s"
                                   % (name, sorted(bad)), 1)
            cfg["queues"] = queues
    if os.environ.get("PBS_EMU_QUEUE_DELAY"):
        cfg["queue_delay"] = float(os.environ["PBS_EMU_QUEUE_DELAY"])
    return cfg


# ---------------------------------------------------------------------------------------------
# State: one JSON file under an exclusive flock, rewritten atomically.

class State:
    def __init__(self, home, cfg, data):
        self.home, self.cfg, self.data = home, cfg, data

    @property
    def jobs(self):
        return self.data["jobs"]

    def spool(self, seq):
        return os.path.join(self.home, "spool", str(seq))


@contextlib.contextmanager
def locked_state(home=None, timeout=60.0):
    """Yield the State with the lock held; save it on a clean exit. Bounded: a lock that stays
    taken for `timeout` seconds is reported like an unreachable server."""
    home = home or home_dir()
    os.makedirs(os.path.join(home, "spool"), exist_ok=True)
    cfg = load_config(home)
    fd = os.open(os.path.join(home, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise PbsError("cannot connect to server %s (errno=%d)"
                                   % (cfg["server"], PBSE_SYSTEM), 255)
                time.sleep(0.01)
        path = os.path.join(home, "state.json")
        if os.path.exists(path):
            with open(path) as f:
                data = json.load(f)
        else:
            data = {"next_seq": int(cfg["first_seq"]), "jobs": {}}
        st = State(home, cfg, data)
        yield st
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st.data, f, indent=1)
        os.replace(tmp, path)
    finally:
        os.close(fd)  # releases the flock


# ---------------------------------------------------------------------------------------------
# Small formats.

def parse_duration(text):
    """PBS time values: [[HH:]MM:]SS[.ms]; returns seconds or None if malformed."""
    if not re.fullmatch(r"\d+(:\d+){0,2}(\.\d+)?", text or ""):
        return None
    secs = 0.0
    for part in text.split(":"):
        secs = secs * 60 + float(part)
    return int(secs)


def fmt_duration(secs):
    secs = max(0, int(secs))
    return "%02d:%02d:%02d" % (secs // 3600, secs // 60 % 60, secs % 60)


def ctime(t):
    # qstat prints ctime/etime/qtime/mtime/stime/obittime via ctime(3), in -f and -F json
    # alike [openpbs: src/cmds/qstat.c, display_statjob].
    return time.ctime(t)


def comment_time(t):
    # "Job run at %s" with strftime "%a %b %d at %H:%M" [openpbs: src/server/req_runjob.c].
    return time.strftime("%a %b %d at %H:%M", time.localtime(t))


def job_id(cfg, seq):
    return "%d.%s" % (seq, cfg["server"])


def resolve_id(st, text):
    """Map what a user typed (123, 123.aurora-pbs-0001, the full id) to (full id, job or None).
    Raises PbsError for an id PBS would call illegally formed."""
    m = re.fullmatch(r"(\d+)(?:\.(.+))?", text)
    if not m:
        raise PbsError("illegally formed job identifier: %s" % text, 1)
    seq, server = m.group(1), m.group(2)
    full = job_id(st.cfg, int(seq))
    if server is not None and not st.cfg["server"].startswith(server):
        return text, None  # another server's id: this server does not know it
    return full, st.jobs.get(str(int(seq)))


def user_host():
    return getpass.getuser(), socket.gethostname()


# ---------------------------------------------------------------------------------------------
# Advancing the state: collect finished runners, start eligible jobs, drop old history.

def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as dead: the runner's parent (a command) may not have reaped it yet.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json_atomic(path, obj):
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def finish(st, job, result, now):
    """R/E -> F with the runner's result, the way the server records a job's obit."""
    job["state"] = "F"
    job["exit_status"] = result["exit_status"]
    job["obittime"] = result.get("end", now)
    job["mtime"] = job["obittime"]
    job["history_timestamp"] = int(job["obittime"])
    job["resources_used"] = {
        "cpupercent": result.get("cpupercent", 0),
        "cput": fmt_duration(result.get("cput", 0)),
        "mem": "%dkb" % result.get("mem_kb", 0),
        "ncpus": job["resources"]["ncpus"],
        "vmem": "%dkb" % result.get("mem_kb", 0),
        "walltime": fmt_duration(job["obittime"] - job["stime"]),
    }
    # The finish comment [openpbs: src/server/svr_jobfunc.c, update_job_finish_comment].
    base = job.get("comment") or ""
    if job.get("deleted"):
        job["substate"] = SUBSTATE_TERMINATED
        job["comment"] = base + " and terminated"
    elif job["exit_status"] == 0:
        job["substate"] = SUBSTATE_FINISHED
        job["comment"] = base + " and finished"
    else:
        job["substate"] = SUBSTATE_FAILED
        job["comment"] = base + (" and exceeded resource walltime"
                                 if job["exit_status"] == JOB_EXEC_KILL_WALLTIME
                                 else " and failed")


def running_count(st, queue, user=None):
    return sum(1 for j in st.jobs.values()
               if j["queue"] == queue and j["state"] in ("R", "E")
               and (user is None or j["user"] == user))


def advance(st, now=None):
    now = time.time() if now is None else now
    cfg = st.cfg
    for seq, job in list(st.jobs.items()):
        if job["state"] in ("R", "E"):
            result = read_json(os.path.join(st.spool(seq), "result.json"))
            if result is not None:
                finish(st, job, result, now)
            elif not pid_alive(job.get("runner_pid", -1)):
                # Check the result again: the runner may have written it and exited between.
                result = read_json(os.path.join(st.spool(seq), "result.json"))
                finish(st, job, result or {"exit_status": JOB_EXEC_FAIL2, "end": now}, now)
        elif job["state"] == "F" and now - job["obittime"] > cfg["job_history_duration"]:
            del st.jobs[seq]  # history expired: from now on "Unknown Job Id" [ref]
    for seq in sorted(st.jobs, key=int):
        job = st.jobs[seq]
        if job["state"] != "Q" or now < job["eligible_at"]:
            continue
        q = cfg["queues"].get(job["queue"], {})
        limit_u = q.get("max_running_per_user")
        limit_q = q.get("max_running")
        if limit_u is not None and running_count(st, job["queue"], job["user"]) >= limit_u:
            # The scheduler's comment on a job it holds back [openpbs: src/scheduler/
            # job_info.cpp, "User has reached queue %s running job limit."].
            job["comment"] = ("Not Running: User has reached queue %s running job limit."
                              % job["queue"])
            continue
        if limit_q is not None and running_count(st, job["queue"]) >= limit_q:
            job["comment"] = ("Not Running: Queue %s job limit has been reached."
                              % job["queue"])
            continue
        start(st, seq, job, now)


def node_names(cfg, count):
    return ["%s%db0n0" % (cfg["node_prefix"], i) for i in range(count)]


def start(st, seq, job, now):
    """Q -> R: give the job its nodes and a runner (the emulated MOM)."""
    cfg = st.cfg
    nodes = node_names(cfg, job["resources"]["nodect"])
    per = cfg["node_ncpus"]
    job["exec_host"] = "+".join("%s/0*%d" % (n, per) for n in nodes)
    job["exec_vnode"] = "+".join("(%s:ncpus=%d)" % (n, per) for n in nodes)
    spool = st.spool(seq)
    with open(os.path.join(spool, "nodefile"), "w") as f:
        f.write("".join(n + cfg["node_domain"] + "\n" for n in nodes))
    job["state"], job["substate"] = "R", SUBSTATE_RUNNING
    job["stime"] = job["mtime"] = now
    job["run_count"] = job.get("run_count", 0) + 1
    job["comment"] = "Job run at %s on %s" % (comment_time(now), job["exec_vnode"])
    with open(os.path.join(spool, "job.json"), "w") as f:
        json.dump({"job": job, "kill_delay": cfg["kill_delay"], "home": st.home,
                   "job_path": cfg["job_path"], "node_ncpus": per}, f)
    with open(os.path.join(spool, "runner.log"), "ab") as log:
        # The runner gets its own session so it outlives the command that started it, and
        # inherits none of our descriptors (the lock, a caller's pipes) so nobody waits on it.
        proc = subprocess.Popen([sys.executable, RUNNER, st.home, seq],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True, cwd="/")
    job["runner_pid"] = proc.pid
    # Popen would warn about a child still running at exit; the runner is meant to outlive us
    # (it is reparented to init, which reaps it).
    proc.returncode = 0


# ---------------------------------------------------------------------------------------------
# The flaky-scheduler hook: fail_next.json {"qstat": 1} makes the next qstat fail once.

TRANSIENT = {
    # [ref: PBS Pro details]: "qstat: cannot connect to server ... (errno=15010)", exit 255
    # (qstat exits with cnt2server's -1 [openpbs: src/cmds/qstat.c]).
    "qstat": lambda srv: ("qstat: cannot connect to server %s (errno=%d)" % (srv, PBSE_SYSTEM),
                          255),
    # qsub returns pbs_errno from a failed connect [openpbs: src/cmds/qsub.c]: 15010 & 0xff.
    "qsub": lambda srv: ("qsub: cannot connect to server %s (errno=%d)" % (srv, PBSE_SYSTEM),
                         exit_code(PBSE_SYSTEM)),
    # qdel: "Couldn't connect to cluster: %s", returns pbs_errno [openpbs: src/cmds/qdel.c].
    "qdel": lambda srv: ("Couldn't connect to cluster: %s" % srv, exit_code(PBSE_SYSTEM)),
}


def take_failure(st, command):
    """Consume one armed failure for `command`; None when none is armed."""
    path = os.path.join(st.home, "fail_next.json")
    armed = read_json(path) or {}
    if armed.get(command, 0) <= 0:
        return None
    armed[command] -= 1
    write_json_atomic(path, armed)
    return TRANSIENT[command](st.cfg["server"])


def arm_failure(home, command, count):
    if command not in TRANSIENT:
        raise PbsError("pbs-emu-ctl: can only fail %s" % ", ".join(sorted(TRANSIENT)), 2)
    with locked_state(home) as st:
        path = os.path.join(st.home, "fail_next.json")
        armed = read_json(path) or {}
        armed[command] = count
        write_json_atomic(path, armed)


def run_command(name, body):
    """Entry-point wrapper: PbsError -> '<cmd>: message' on stderr and its exit status."""
    try:
        status = body()
    except PbsError as e:
        if e.message:  # an empty message: the usage text was already printed
            known = e.message.startswith(("qstat:", "qsub:", "qdel:", "Couldn't"))
            sys.stderr.write((e.message if known else "%s: %s" % (name, e.message)) + "\n")
        status = e.status
    except BrokenPipeError:
        status = 1
    sys.stdout.flush()
    sys.exit(status)


# ---------------------------------------------------------------------------------------------
# Job attributes in the order qstat -f prints them (a PBS Pro 2022 server's order).

def job_attributes(st, job):
    """[(name, resource or None, value string)] for qstat -f / -F json."""
    cfg = st.cfg
    a = []
    add = lambda n, v, r=None: a.append((n, r, str(v)))  # noqa: E731
    add("Job_Name", job["name"])
    add("Job_Owner", "%s@%s" % (job["user"], job["submit_host"]))
    if job.get("resources_used"):
        for k, v in job["resources_used"].items():
            add("resources_used", v, k)
    add("job_state", job["state"])
    add("queue", job["queue"])
    add("server", cfg["server"])
    if job.get("account"):
        add("Account_Name", job["account"])
    add("Checkpoint", "u")
    add("ctime", ctime(job["ctime"]))
    add("Error_Path", "%s:%s" % (job["submit_host"], job["err_path"]))
    if job.get("exec_host"):
        add("exec_host", job["exec_host"])
        add("exec_vnode", job["exec_vnode"])
    add("Hold_Types", "n")
    add("Join_Path", job["join"])
    add("Keep_Files", job["keep"])
    add("Mail_Points", "a")
    add("mtime", ctime(job["mtime"]))
    add("Output_Path", "%s:%s" % (job["submit_host"], job["out_path"]))
    add("Priority", 0)
    add("qtime", ctime(job["qtime"]))
    add("Rerunable", "False")
    for k, v in sorted(job["resources"].items()):
        add("Resource_List", v, k)
    if job.get("stime"):
        add("stime", ctime(job["stime"]))
    if job.get("obittime"):
        add("obittime", ctime(job["obittime"]))
    if job.get("session_id"):
        add("session_id", job["session_id"])
    add("jobdir", job["job_home"])
    add("substate", job["substate"])
    # Variable_List: name=value pairs joined by commas, commas inside values escaped "\,".
    add("Variable_List", ",".join("%s=%s" % (k, v.replace(",", "\\,"))
                                  for k, v in job["variables"]))
    if job.get("comment"):
        add("comment", job["comment"])
    add("etime", ctime(job["qtime"]))
    if job.get("run_count"):
        add("run_count", job["run_count"])
    if job.get("exit_status") is not None:
        add("Exit_status", job["exit_status"])
    add("Submit_arguments", job["submit_args"])
    if job["state"] == "F":
        add("history_timestamp", job["history_timestamp"])
    add("project", "_pbs_project_default")
    add("Submit_Host", job["submit_host"])
    return a


# ---------------------------------------------------------------------------------------------
# qstat -f text: prt_attr's folding [openpbs: src/cmds/qstat.c, prt_attr]: values are split at
# commas; a piece that would pass column 78 (CHAR_LINE_LIMIT) starts a new line with a tab, and
# a piece longer than a line is broken every 78 columns.

CHAR_LINE_LIMIT = 78


def fold_attr(name, resource, value):
    out = ["    " + name]
    start = len(name) + 7  # 4 spaces + " = "
    if resource:
        start += len(resource) + 1
        out.append("." + resource)
    out.append(" = ")
    pieces = [p for p in value.split(",") if p]  # strtok skips empty fields
    first = True
    for i, piece in enumerate(pieces):
        if len(piece) + start < CHAR_LINE_LIMIT:
            out.append(piece)
            start += len(piece)
        else:
            if not first:
                out.append("\n\t")
                start = 9
            for ch in piece:
                out.append(ch)
                start += 1
                if start > CHAR_LINE_LIMIT:
                    start = 8
                    out.append("\n\t")
        if i + 1 < len(pieces):
            first = False
            out.append(",")
    return "".join(out)


def format_full(st, job):
    lines = ["Job Id: %s" % job["id"]]
    lines += [fold_attr(n, r, v) for n, r, v in job_attributes(st, job)]
    return "\n".join(lines) + "\n\n"  # a blank line after each job


# ---------------------------------------------------------------------------------------------
# qstat -F json [ref: PBS Pro details "qstat -F json"; openpbs: src/lib/Libcmds/pbs_json.c
# before commit 74106a6 (legacy/checked), src/lib/Libjson/cJSON/pbs_cjson.c after (cjson)].

_STRTOD = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def legacy_numeric(v):
    # Older servers print whatever strtod swallows whole, bare: "005", ".123", "1." [ref].
    return bool(v.strip()) and bool(_STRTOD.fullmatch(v))


def checked_numeric(v):
    """is_valid_json_number [openpbs: pbs_json.c before 74106a6]: strtod-parsable, and not
    a leading-zero, trailing-dot or bare-dot form."""
    if not legacy_numeric(v):
        return False
    s = v.strip()
    try:
        val = float(s)
    except ValueError:
        return False
    n = len(v)
    if v.endswith("."):
        return False
    if abs(val) < 1:
        return ((val == 0 and n == 1) or (val == 0 and n == 2 and v[0] == "-")
                or (val >= 0 and n > 2 and v[0] != "-" and v[1] == ".")
                or (val <= 0 and n > 3 and v[0] == "-" and v[2] == "."))
    return (val >= 1 and v[0] != "0") or (val <= -1 and n > 1 and v[1] != "0")


def legacy_escape(s):
    """strdup_escape(JSON_ESCAPE) [openpbs: pbs_json.c before 74106a6]: control characters
    escaped, a quote escaped unless a backslash precedes it, and a backslash copied together
    with the character after it (so "a\\d" stays "a\\d": the known bad-escape bug [ref]); "\\,"
    and "\\'" lose their backslash."""
    out, i = [], 0
    ctrl = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    while i < len(s):
        c = s[i]
        if c in ctrl:
            out.append(ctrl[c])
        elif c == '"':
            out.append('"' if i > 0 and s[i - 1] == "\\" else '\\"')
        elif c == "\\":
            nxt = s[i + 1] if i + 1 < len(s) else ""
            if nxt in ("'", ","):
                out.append(nxt)
            else:
                out.append("\\" + nxt)
            i += 1
        else:
            out.append(c)
        i += 1
    return "".join(out)


def json_tree(st, job):
    """The job as an ordered tree of (key, leaf-string or subtree) like qstat builds it:
    resources become objects; Variable_List an object of its name=value pairs."""
    tree = []
    for name, res, value in job_attributes(st, job):
        if res is not None:
            if tree and tree[-1][0] == name and isinstance(tree[-1][1], list):
                tree[-1][1].append((res, value))
            else:
                tree.append((name, [(res, value)]))
        elif name == "Variable_List":
            pairs = []
            for item in re.split(r"(?<!\\),", value):
                k, _, v = item.partition("=")
                pairs.append((k, v))
            tree.append((name, pairs))
        else:
            tree.append((name, value))
    return tree


FORCED_STRINGS = {"Job_Name", "project", "Account_Name"}  # cJSON era's string-only attributes


def render_json(root, style):
    """root: [(key, value)] where value is a string leaf, a list (object) or a number."""
    if style == "cjson":
        return render_cjson(root, 1) + "\n"
    lines = ["{"]

    def leaf(key, v):
        if isinstance(v, (int, float)):
            return '"%s":%s' % (key, v)
        numeric = legacy_numeric(v) if style == "legacy" else checked_numeric(v)
        if numeric and key not in ():
            return '"%s":%s' % (key, v)
        return '"%s":"%s"' % (key, legacy_escape(v))

    def emit(items, indent):
        for i, (k, v) in enumerate(items):
            comma = "," if i + 1 < len(items) else ""
            pad = " " * indent
            if isinstance(v, list):
                lines.append('%s"%s":{' % (pad, k))
                emit(v, indent + 4)
                lines.append("%s}%s" % (pad, comma))
            else:
                lines.append(pad + leaf(k, v) + comma)

    emit(root, 4)
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_cjson(items, depth, key=None):
    """cJSON_Print: tab indentation, "key":<TAB>value, values JSON can parse are typed."""
    pad = "\t" * depth
    parts = []
    for k, v in items:
        if isinstance(v, list):
            body = render_cjson(v, depth + 1, k)
        elif isinstance(v, (int, float)):
            body = json.dumps(v)
        else:
            typed = None
            if k not in FORCED_STRINGS or key is not None:
                try:
                    typed = json.loads(v)
                except ValueError:
                    typed = None
            body = json.dumps(typed) if typed is not None else json.dumps(v)
        parts.append('%s"%s":\t%s' % (pad, k, body))
    if not parts:
        return "{\n%s}" % ("\t" * (depth - 1))
    return "{\n" + ",\n".join(parts) + "\n" + "\t" * (depth - 1) + "}"


# ---------------------------------------------------------------------------------------------
# Plain qstat table [openpbs: src/cmds/qstat.c, display_statjob]: the job id cut after the
# server's first label and to PBS_MAXSEQNUM + 5 = 17 columns, "*" marking a cut; name >= 16
# chars cut to 15 + "*"; owner before "@"; Time Use = resources_used.cput or 0.

def table_header(wide):
    if wide:
        return ("Job id                         Name            User             Time Use S Queue\n"
                "-----------------------------  --------------- ---------------  -------- - ---------------\n")
    return ("Job id            Name             User              Time Use S Queue\n"
            "----------------  ---------------- ----------------  -------- - -----\n")


def _cut(s, width):
    return s[:width - 1] + "*" if len(s) > width else s


def table_row(st, job, wide):
    jid = ".".join(job["id"].split(".")[:2])
    name = job["name"]
    if wide:
        jid, user, queue = _cut(jid, 30), _cut(job["user"], 15), _cut(job["queue"], 15)
        name = name[:14] + "*" if len(name) >= 15 else name
        fmt = "%-30s %-15s %-15s  %8s %1s %-15s\n"
    else:
        jid, user, queue = _cut(jid, 17), _cut(job["user"], 16), _cut(job["queue"], 16)
        name = name[:15] + "*" if len(name) >= 16 else name
        fmt = "%-17s %-16s %-16s  %8s %1s %-16s\n"
    used = (job.get("resources_used") or {}).get("cput", "0")
    return fmt % (jid, name, user, _cut(used, 8), job["state"], queue)
