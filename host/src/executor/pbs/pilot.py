"""alcf-host's pilot: one PBS job that runs many trials, one per slot (a GPU tile on Aurora).

The contract is AGENT.md next to this file ("pilot.py — the pilot job"). In short: the host's
agent puts tickets (one JSON file per trial attempt) into `<root>/queue/pending/`; every pilot of
the study claims the oldest ones for its free slots by renaming them into
`queue/running/<its job id>/` (a failed rename means another pilot got it), runs each in its trial
directory in a session of its own (stdout.log/stderr.log appended, `ALCF_SLOT`, the affinity
variable and a `taskset -c` CPU list per slot), and writes `queue/done/<name>.json` when the trial
ends, then drops the running/ entry. `queue/stop/<name>` stops a running trial (cancelled),
`queue/stop/pilot-<job>` makes the pilot take nothing more and exit once its trials end. A
ticket whose `estimate_s` does not fit before the job's end (less `--margin-s`) is never
claimed: the pilot drains. SIGTERM/SIGINT (walltime, qdel): every trial's group gets SIGTERM,
SIGKILL after `--kill-grace-s`, no done records (the host requeues those tickets), exit 143.
`pilots/state/<job>.json` is rewritten atomically every `--poll-s` and after every change.
The pilot's own log (one line per event) goes to its stderr, i.e. the job's output file.

Python 3.6 standard library only (the system python3 of ALCF compute nodes).
"""

import argparse
import errno
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback

NAME_RE = re.compile(r"[A-Za-z0-9_.+-]+\Z")
EXIT_SIGNALLED = 143


def log(msg):
    t = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) + ".%03d" % (t % 1 * 1000)
    try:
        sys.stderr.write("%s pilot: %s\n" % (stamp, msg))
        sys.stderr.flush()
    except Exception:
        pass


def makedirs(path):
    try:
        os.makedirs(path)
    except OSError as e:
        if e.errno != errno.EEXIST or not os.path.isdir(path):
            raise


def read_json(path):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def write_json_atomic(path, obj):
    """tmp (hidden, so nobody takes it for a ticket or record) + rename."""
    d, base = os.path.split(path)
    tmp = os.path.join(d, ".%s.tmp-%d" % (base, os.getpid()))
    try:
        with open(tmp, "wb") as f:
            f.write(json.dumps(obj, sort_keys=True).encode("utf-8"))
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def unlink_quiet(path):
    try:
        os.unlink(path)
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


def resolve(root, rel):
    if not isinstance(rel, str) or not rel:
        raise ValueError("bad trial directory %r" % (rel,))
    if os.path.isabs(rel):
        return rel
    if ".." in rel.split("/"):
        raise ValueError("refusing the relative path %r: it has a '..' component" % rel)
    return os.path.join(root, rel)


def killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
        return True
    except OSError:
        return False


class Trial(object):
    def __init__(self, slot, name, ticket, proc, started):
        self.slot = slot
        self.name = name
        self.ticket = ticket
        self.proc = proc
        self.started = started
        self.term_at = None  # when SIGTERM went to its group
        self.killed = False  # SIGKILL sent
        self.timed_out = False
        self.cancelled = False
        timeout = ticket.get("timeout_s")
        self.deadline = started + float(timeout) if timeout not in (None, 0, "") else None


class Pilot(object):
    def __init__(self, args):
        self.root = os.path.abspath(args.root)
        self.job = args.job
        self.slots = max(1, int(args.slots))
        self.affinity_var = args.affinity_var or ""
        self.cpu_lists = [c for c in (args.cpu_lists or "").split(":") if c]
        self.walltime_s = args.walltime_s
        self.margin_s = float(args.margin_s)
        self.idle_s = float(args.idle_s)
        self.poll_s = max(0.01, float(args.poll_s))
        self.grace_s = max(0.0, float(args.kill_grace_s))
        self.started = time.time()
        self.ends = self.started + float(args.walltime_s) if args.walltime_s else None
        self.host = socket.gethostname()
        self.running = {}  # slot -> Trial
        self.draining = False
        self.drain_reason = None
        self.stop_requested = False
        self.signalled = None
        self.pending_seen = 0
        self.seen = {}  # pending ticket name -> (enqueued, estimate_s)
        self.idle_since = self.started
        self.taskset = shutil.which("taskset") if self.cpu_lists else None
        self.pending = os.path.join(self.root, "queue", "pending")
        self.mine = os.path.join(self.root, "queue", "running", self.job)
        self.done = os.path.join(self.root, "queue", "done")
        self.stop = os.path.join(self.root, "queue", "stop")
        self.state_path = os.path.join(self.root, "pilots", "state", self.job + ".json")
        self.wake_r = None

    # -- setup ---------------------------------------------------------------------------------
    def setup(self):
        for d in (self.pending, self.mine, self.done, self.stop, os.path.dirname(self.state_path)):
            makedirs(d)
        r, w = os.pipe()
        for fd in (r, w):
            os.set_blocking(fd, False)
        self.wake_r = r
        signal.set_wakeup_fd(w)  # any signal (SIGCHLD included) wakes the select below

        def on_term(signum, frame):
            if self.signalled is None:
                self.signalled = signum

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        log("started: job %s on %s, pid %d, %d slot(s), ends %s, root %s%s"
            % (self.job, self.host, os.getpid(), self.slots,
               "never" if self.ends is None else time.strftime(
                   "%H:%M:%S", time.localtime(self.ends)),
               self.root, "" if not self.cpu_lists or self.taskset
               else " (cpu lists given but no taskset found: not binding CPUs)"))

    def wait(self, timeout):
        try:
            select.select([self.wake_r], [], [], max(0.0, timeout))
        except (OSError, ValueError):
            time.sleep(max(0.0, min(timeout, 0.5)))
        try:
            while os.read(self.wake_r, 512):
                pass
        except OSError:
            pass

    # -- state -----------------------------------------------------------------------------------
    def state(self, **extra):
        st = {"job": self.job, "pid": os.getpid(), "host": self.host, "started": self.started,
              "ends": self.ends, "heartbeat": time.time(), "slots": self.slots,
              "draining": self.draining,
              "running": dict((str(s), {"name": t.name, "started": t.started})
                              for s, t in sorted(self.running.items()))}
        if self.drain_reason:
            st["drain_reason"] = self.drain_reason
        st.update(extra)
        return st

    def write_state(self, **extra):
        try:
            write_json_atomic(self.state_path, self.state(**extra))
        except Exception as e:
            log("cannot write the state file %s: %s" % (self.state_path, e))

    # -- trials ----------------------------------------------------------------------------------
    def claim(self, now):
        """Claim the oldest fitting pending tickets for the free slots. True if anything changed."""
        entries = []
        names = set()
        for f in listdir(self.pending):
            if f.startswith(".") or not f.endswith(".json") or not NAME_RE.match(f):
                continue
            name = f[:-5]
            names.add(name)
            # A ticket's order and estimate never change (a requeued one keeps them), so each
            # pending ticket is read once, not at every scan: less load on a shared file system.
            if name not in self.seen:
                t = read_json(os.path.join(self.pending, f))
                if not isinstance(t, dict):
                    continue  # taken meanwhile, or not a ticket
                try:
                    enq = float(t.get("enqueued") or 0)
                except (TypeError, ValueError):
                    enq = 0.0
                try:
                    est = float(t.get("estimate_s") or 0)
                except (TypeError, ValueError):
                    est = 0.0
                self.seen[name] = (enq, est)
            entries.append((self.seen[name][0], name, self.seen[name][1]))
        for name in list(self.seen):
            if name not in names:
                del self.seen[name]
        entries.sort(key=lambda e: (e[0], e[1]))
        self.pending_seen = len(entries)
        free = [s for s in range(self.slots) if s not in self.running]
        changed = False
        for enq, name, est in entries:
            if not free or self.draining:
                break
            if self.ends is not None and now + est > self.ends - self.margin_s:
                self.draining = True
                self.drain_reason = ("ticket %s (estimate %.0f s) does not fit before the "
                                     "end minus the margin" % (name, est))
                log("draining: %s (%.0f s left)" % (self.drain_reason, self.ends - now))
                changed = True
                break
            src = os.path.join(self.pending, name + ".json")
            dst = os.path.join(self.mine, name + ".json")
            try:
                os.rename(src, dst)
            except OSError:
                continue  # another pilot took it (or it was cancelled)
            self.pending_seen -= 1
            changed = True
            self.seen.pop(name, None)
            ticket = read_json(dst)
            if not isinstance(ticket, dict):
                log("claimed %s but cannot read it: dropped" % name)
                self.record(name, None, None, time.time(), None, None,
                            error="the ticket could not be read")
                unlink_quiet(dst)
                continue
            self.start(free.pop(0), name, ticket, dst)
        return changed

    def start(self, slot, name, ticket, entry):
        now = time.time()
        if os.path.exists(os.path.join(self.done, name + ".json")):
            log("claimed %s but it already has a done record: dropped" % name)
            unlink_quiet(entry)
            return
        if os.path.exists(os.path.join(self.stop, name)):
            log("claimed %s but it was cancelled: not started" % name)
            self.record(name, slot, None, now, None, None, cancelled=True)
            unlink_quiet(os.path.join(self.stop, name))
            unlink_quiet(entry)
            return
        try:
            d = resolve(self.root, ticket.get("dir"))
            makedirs(d)
            argv = ticket.get("argv")
            if not isinstance(argv, list) or not argv:
                raise ValueError("the ticket has no argv")
            argv = [str(a) for a in argv]
            if self.cpu_lists and self.taskset:
                argv = [self.taskset, "-c", self.cpu_lists[slot % len(self.cpu_lists)]] + argv
            env = dict(os.environ)
            for k, v in (ticket.get("env") or {}).items():
                env[str(k)] = str(v)
            env["ALCF_SLOT"] = str(slot)
            if self.affinity_var:
                env[self.affinity_var] = str(slot)
                if self.affinity_var == "ZE_AFFINITY_MASK":
                    env["ZE_ENABLE_PCI_ID_DEVICE_ORDER"] = "1"
            with open(os.path.join(d, "stdout.log"), "ab") as out, \
                    open(os.path.join(d, "stderr.log"), "ab") as err:
                proc = subprocess.Popen(argv, cwd=d, env=env, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=err, close_fds=True,
                                        start_new_session=True)
        except Exception as e:
            log("cannot start %s in slot %d: %s" % (name, slot, e))
            try:
                with open(os.path.join(resolve(self.root, ticket.get("dir")), "stderr.log"),
                          "ab") as err:
                    err.write(("alcf-host pilot: cannot start the trial: %s\n" % e)
                              .encode("utf-8", "replace"))
            except Exception:
                pass
            self.record(name, slot, now, time.time(), 127, None, error="cannot start: %s" % e)
            unlink_quiet(entry)
            return
        self.running[slot] = Trial(slot, name, ticket, proc, now)
        shown = " ".join(argv)
        log("claimed %s: slot %d, pid %d, %s" % (name, slot, proc.pid, shown if len(shown) <= 300
                                                   else shown[:300] + "..."))

    def record(self, name, slot, started, ended, exit_code, sig, timed_out=False,
               cancelled=False, error=None):
        rec = {"name": name, "pilot": self.job, "slot": slot, "started": started,
               "ended": ended, "exit_code": exit_code, "signal": sig,
               "timed_out": timed_out, "cancelled": cancelled}
        if error:
            rec["error"] = error
        write_json_atomic(os.path.join(self.done, name + ".json"), rec)

    def reap(self):
        changed = False
        for slot, t in sorted(self.running.items()):
            rc = t.proc.poll()
            if rc is None:
                continue
            killpg(t.proc.pid, signal.SIGKILL)  # whatever it left behind in its group
            ended = time.time()
            code, sig = (None, -rc) if rc < 0 else (rc, None)
            self.record(t.name, slot, t.started, ended, code, sig, t.timed_out, t.cancelled)
            unlink_quiet(os.path.join(self.mine, t.name + ".json"))
            if t.cancelled:
                unlink_quiet(os.path.join(self.stop, t.name))
            del self.running[slot]
            log("finished %s: slot %d, %s after %.1f s%s"
                % (t.name, slot, "exit %d" % code if sig is None else "signal %d" % sig,
                   ended - t.started, " (timed out)" if t.timed_out
                   else " (cancelled)" if t.cancelled else ""))
            changed = True
        return changed

    def terminate(self, t, why):
        if t.term_at is None:
            t.term_at = time.time()
            killpg(t.proc.pid, signal.SIGTERM)
            log("stopping %s (slot %d, pid %d): %s" % (t.name, t.slot, t.proc.pid, why))

    def enforce(self, now):
        for t in list(self.running.values()):
            if t.deadline is not None and now >= t.deadline and t.term_at is None \
                    and not t.cancelled:
                t.timed_out = True
                self.terminate(t, "timeout_s %s reached" % t.ticket.get("timeout_s"))
            if t.term_at is not None and not t.killed and now - t.term_at >= self.grace_s:
                t.killed = True
                killpg(t.proc.pid, signal.SIGKILL)
                log("killed %s (slot %d): still there %.0f s after SIGTERM"
                    % (t.name, t.slot, self.grace_s))

    def check_stops(self):
        changed = False
        names = set(listdir(self.stop))
        if "pilot-" + self.job in names and not self.stop_requested:
            self.stop_requested = True
            self.draining = True
            self.drain_reason = "told to stop"
            log("told to stop: taking no more tickets")
            changed = True
        for t in list(self.running.values()):
            if t.name in names and not t.cancelled and t.term_at is None:
                t.cancelled = True
                self.terminate(t, "cancelled")
                changed = True
        return changed

    def next_deadline(self, now):
        soon = now + self.poll_s
        for t in self.running.values():
            if t.deadline is not None and t.term_at is None:
                soon = min(soon, t.deadline)
            if t.term_at is not None and not t.killed:
                soon = min(soon, t.term_at + self.grace_s)
        return soon

    # -- the loop --------------------------------------------------------------------------------
    def loop(self):
        next_scan = 0.0
        next_state = 0.0
        while True:
            if self.signalled is not None:
                return self.shutdown()
            changed = False
            now = time.time()
            try:
                if self.reap():
                    changed = True
                    next_scan = now  # a slot is free: look at the queue at once
                self.enforce(now)
                if now >= next_scan:
                    next_scan = now + self.poll_s
                    changed |= self.check_stops()
                    if not self.draining and len(self.running) < self.slots:
                        changed |= self.claim(now)
            except Exception:
                log("error in the pilot's loop (carrying on):\n" + traceback.format_exc())
            now = time.time()
            if self.running or self.pending_seen:
                self.idle_since = now
            if changed or now >= next_state:
                self.write_state()
                next_state = now + self.poll_s
            if self.draining and not self.running:
                why = self.drain_reason or "drained"
                if self.stop_requested:
                    unlink_quiet(os.path.join(self.stop, "pilot-" + self.job))
                return self.exit(0, "drained (%s)" % why if not self.stop_requested
                                 else "stopped")
            if not self.running and not self.pending_seen and now - self.idle_since >= self.idle_s:
                return self.exit(0, "idle for %.0f s" % (now - self.idle_since))
            self.wait(min(self.next_deadline(now) - time.time(), 0.5))

    def exit(self, code, why):
        self.write_state(exited=time.time(), exit_reason=why)
        try:
            os.rmdir(self.mine)
        except OSError:
            pass
        log("exiting %d: %s" % (code, why))
        return code

    def shutdown(self):
        """SIGTERM/SIGINT: end every trial's group (SIGTERM, SIGKILL after the grace); no done
        records, so their tickets stay in running/ for the host to requeue."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.reap()  # trials that had already ended get their done records as usual
        except Exception:
            log("error while collecting ended trials:\n" + traceback.format_exc())
        log("got signal %d: stopping %d trial(s)" % (self.signalled, len(self.running)))
        for t in self.running.values():
            killpg(t.proc.pid, signal.SIGTERM)
        deadline = time.time() + self.grace_s
        while time.time() < deadline and any(t.proc.poll() is None for t in self.running.values()):
            time.sleep(0.05)
        for t in self.running.values():
            killpg(t.proc.pid, signal.SIGKILL)
        for t in self.running.values():
            try:
                t.proc.wait(timeout=5)
            except Exception:
                pass
            log("left %s (slot %d) in running/: its ticket goes back to the host" % (t.name, t.slot))
        names = [t.name for t in self.running.values()]
        self.running = {}
        self.write_state(exited=time.time(), exit_reason="signal %d" % self.signalled,
                         abandoned=names)
        log("exiting %d: signal %d" % (EXIT_SIGNALLED, self.signalled))
        return EXIT_SIGNALLED


def parse_args(argv):
    p = argparse.ArgumentParser(prog="pilot.py", description="alcf-host's pilot job program")
    p.add_argument("--root", required=True, help="the study's remote directory")
    p.add_argument("--job", default=os.environ.get("PBS_JOBID", ""),
                   help="this PBS job's id ($PBS_JOBID)")
    p.add_argument("--slots", type=int, default=1, help="trials at once")
    p.add_argument("--affinity-var", default="",
                   help="set to the slot's device index for each trial; '' for none")
    p.add_argument("--cpu-lists", default="", help="one taskset -c list per slot, ':'-separated")
    p.add_argument("--walltime-s", type=float, default=None, help="the job's walltime")
    p.add_argument("--margin-s", type=float, default=60.0)
    p.add_argument("--idle-s", type=float, default=300.0)
    p.add_argument("--poll-s", type=float, default=2.0)
    p.add_argument("--kill-grace-s", type=float, default=10.0)
    args = p.parse_args(argv)
    if not NAME_RE.match(args.job or ""):
        p.error("--job %r must be a PBS job id ([A-Za-z0-9_.+-]+)" % args.job)
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    pilot = Pilot(args)
    try:
        pilot.setup()
        pilot.write_state()
        code = pilot.loop()
    except Exception:
        log("pilot crashed:\n" + traceback.format_exc())
        pilot.signalled = pilot.signalled or signal.SIGTERM
        try:
            pilot.shutdown()
        except Exception:
            pass
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
