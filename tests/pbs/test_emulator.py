"""Tests of the PBS Pro emulator itself (stdlib unittest; run tests/pbs/run-tests.sh).

Every test gets a fresh PBS_EMU_HOME and HOME under a temp dir, calls the real entry points
as subprocesses (as ssh would), bounds every wait, and kills every job it started in tearDown
(pbs-emu-ctl kill-all)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

EMU = os.path.join(os.path.dirname(os.path.realpath(__file__)), "emulator")
SERVER = "aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"
OK_ARGS = ["-A", "proj", "-q", "debug", "-l", "select=1", "-l", "walltime=00:05:00",
           "-l", "filesystems=home:flare", "-k", "doe"]


class EmulatorTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="pbsemu-")
        self.state = os.path.join(self.tmp, "state")
        self.home = os.path.join(self.tmp, "home")
        self.work = os.path.join(self.tmp, "work")
        os.makedirs(self.home)
        os.makedirs(self.work)
        self.env = dict(os.environ, PBS_EMU_HOME=self.state, HOME=self.home)
        self.env.pop("PBS_EMU_QUEUE_DELAY", None)
        # Short kill_delay so walltime/qdel tests stay fast; the rest is Aurora's defaults.
        self.config({"kill_delay": 1.0})

    def tearDown(self):
        r = self.cmd("pbs-emu-ctl", "kill-all", "20")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    # -- helpers --------------------------------------------------------------------------
    def config(self, cfg):
        os.makedirs(self.state, exist_ok=True)
        with open(os.path.join(self.state, "config.json"), "w") as f:
            json.dump(cfg, f)

    def cmd(self, name, *args, env=None, timeout=30):
        return subprocess.run([os.path.join(EMU, name), *args], cwd=self.work,
                              env=env or self.env, capture_output=True, text=True,
                              timeout=timeout)

    def script(self, body, name="job.sh"):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(body)
        return path

    def submit(self, body, *args, name="job.sh"):
        r = self.cmd("qsub", *(args or OK_ARGS), self.script(body, name))
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def job(self, jid):
        r = self.cmd("qstat", "-xf", "-F", "json", jid)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)["Jobs"][jid]

    parsable = True

    def wait_state(self, jid, states, timeout=15):
        # Polls the text form (qstat -x's table): legacy JSON can be invalid on purpose.
        deadline = time.monotonic() + timeout
        while True:
            r = self.cmd("qstat", "-x", jid)
            self.assertEqual(r.returncode, 0, r.stderr)
            state = r.stdout.splitlines()[2].split()[4]
            if state in states:
                return self.job(jid) if self.parsable else None
            if time.monotonic() > deadline:
                self.fail("job %s stuck in %s (wanted %s)" % (jid, state, states))
            time.sleep(0.1)

    # -- submit / run / finish ------------------------------------------------------------
    def test_job_id_format_and_exit_statuses(self):
        ok = self.submit("#!/bin/sh\nexit 0\n")
        self.assertRegex(ok, r"^\d+\.%s$" % SERVER.replace(".", r"\."))
        j = self.wait_state(ok, "F")
        self.assertEqual(j["Exit_status"], 0)
        self.assertEqual(j["substate"], 92)
        self.assertTrue(j["comment"].endswith(" and finished"), j["comment"])
        self.config({"kill_delay": 1.0, "queues": {"q": {"max_running_per_user": 4}}})
        bad = self.submit("#!/bin/sh\nexit 7\n", *self.args(q="q"))
        j = self.wait_state(bad, "F")
        self.assertEqual(j["Exit_status"], 7)
        self.assertEqual(j["substate"], 93)
        self.assertTrue(j["comment"].endswith(" and failed"), j["comment"])
        # The top shell killed by a signal: 256 + N [ref]. A program killed inside a script
        # gives the shell's 128 + N instead.
        sig = self.submit("#!/bin/sh\nkill -TERM $$\nsleep 5\n", *self.args(q="q"))
        self.assertEqual(self.wait_state(sig, "F")["Exit_status"], 256 + 15)
        inner = self.submit("#!/bin/bash\nsleep 5 & kill -KILL $!; wait $!\nexit $?\n",
                            *self.args(q="q"))
        self.assertEqual(self.wait_state(inner, "F")["Exit_status"], 128 + 9)

    def args(self, q="debug", walltime="00:05:00", extra=()):
        return ["-A", "proj", "-q", q, "-l", "walltime=" + walltime,
                "-l", "filesystems=home:flare", "-k", "doe", *extra]

    def test_environment_cwd_nodefile_and_outputs(self):
        jid = self.submit('#!/bin/bash\n#PBS -N envjob\necho "cwd=$(pwd)"\n'
                          'for v in PBS_JOBID PBS_JOBNAME PBS_O_WORKDIR PBS_QUEUE FOO; do\n'
                          '  echo "$v=${!v}"; done\ncat "$PBS_NODEFILE"\necho oops >&2\n',
                          *self.args(extra=["-v", "FOO=bar"]))
        self.wait_state(jid, "F")
        seq = jid.split(".")[0]
        with open(os.path.join(self.work, "envjob.o" + seq)) as f:
            out = f.read()
        # A job starts in $HOME, not the submit directory [ref: PBS Pro details].
        self.assertIn("cwd=%s\n" % self.home, out)
        self.assertIn("PBS_JOBID=%s\n" % jid, out)
        self.assertIn("PBS_JOBNAME=envjob\n", out)
        self.assertIn("PBS_O_WORKDIR=%s\n" % self.work, out)
        self.assertIn("PBS_QUEUE=debug\n", out)
        self.assertIn("FOO=bar\n", out)
        self.assertRegex(out, r"\nx4000c0s0b0n0\.\S+\n")
        with open(os.path.join(self.work, "envjob.e" + seq)) as f:
            self.assertEqual(f.read(), "oops\n")

    def test_submitter_environment_not_inherited(self):
        env = dict(self.env, SECRET_SUBMIT_VAR="x")
        r = self.cmd("qsub", *self.args(extra=["-N", "noenv"]),
                     self.script('#!/bin/sh\necho "[${SECRET_SUBMIT_VAR-unset}]"\n'), env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        jid = r.stdout.strip()
        self.wait_state(jid, "F")
        with open(os.path.join(self.work, "noenv.o" + jid.split(".")[0])) as f:
            self.assertEqual(f.read(), "[unset]\n")

    def test_spooled_output_appears_only_at_the_end(self):
        # Without -k d the MOM spools output and copies it when the job ends.
        jid = self.submit("#!/bin/sh\necho early\nsleep 1\n",
                          "-A", "p", "-q", "debug", "-l", "filesystems=home:flare",
                          "-N", "spooled")
        out = os.path.join(self.work, "spooled.o" + jid.split(".")[0])
        self.wait_state(jid, "R")
        self.assertFalse(os.path.exists(out))
        self.wait_state(jid, "F")
        with open(out) as f:
            self.assertEqual(f.read(), "early\n")

    # -- walltime and qdel ----------------------------------------------------------------
    def test_walltime_kill_is_minus_29(self):
        self.config({"kill_delay": 0.5})
        # The script ignores SIGTERM, so only the SIGKILL after kill_delay ends it, and the
        # child it started must die with it (the whole process group is killed).
        marker = os.path.join(self.tmp, "child-alive")
        jid = self.submit("#!/bin/bash\ntrap '' TERM\n(sleep 8; touch %s) &\nsleep 30\n"
                          % marker, *self.args(walltime="00:00:01"))
        j = self.wait_state(jid, "F", timeout=15)
        self.assertEqual(j["Exit_status"], -29)
        self.assertTrue(j["comment"].endswith("and exceeded resource walltime"), j["comment"])
        self.assertLess(int(j["resources_used"]["walltime"].split(":")[2]), 8)
        time.sleep(0.2)
        self.assertFalse(os.path.exists(marker))

    def test_qdel_running_job_271(self):
        jid = self.submit("#!/bin/sh\nsleep 30\n")
        self.wait_state(jid, "R")
        r = self.cmd("qdel", jid)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        j = self.wait_state(jid, "F")
        self.assertEqual(j["Exit_status"], 271)  # "qdel of a running job: 271" [ref]
        self.assertEqual(j["substate"], 91)
        self.assertTrue(j["comment"].endswith("and terminated"), j["comment"])
        r = self.cmd("qdel", jid)
        self.assertEqual(r.returncode, 35)
        self.assertEqual(r.stderr, "qdel: Job has finished %s\n" % jid)

    def test_qdel_queued_job(self):
        self.env["PBS_EMU_QUEUE_DELAY"] = "60"
        jid = self.submit("#!/bin/sh\ntouch %s/ran\n" % self.tmp)
        self.assertEqual(self.job(jid)["job_state"], "Q")
        self.assertEqual(self.cmd("qdel", jid.split(".")[0]).returncode, 0)  # short id too
        j = self.job(jid)
        self.assertEqual((j["job_state"], j["substate"]), ("F", 91))
        self.assertNotIn("Exit_status", j)  # never ran: no exit status
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "ran")))

    def test_queue_delay_holds_then_runs(self):
        self.env["PBS_EMU_QUEUE_DELAY"] = "1"
        jid = self.submit("#!/bin/sh\nexit 0\n")
        self.assertEqual(self.job(jid)["job_state"], "Q")
        self.assertEqual(self.wait_state(jid, "F")["Exit_status"], 0)

    # -- qstat formats and errors ---------------------------------------------------------
    def test_qstat_json_fields_and_quirks(self):
        jid = self.submit("#!/bin/sh\nexit 0\n")
        self.wait_state(jid, "F")
        r = self.cmd("qstat", "-xf", "-F", "json", jid)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["pbs_server"], SERVER)
        self.assertIsInstance(doc["timestamp"], int)
        j = doc["Jobs"][jid]
        self.assertEqual(j["job_state"], "F")
        self.assertIsInstance(j["Exit_status"], int)  # numbers bare
        self.assertIsInstance(j["substate"], int)
        self.assertEqual(j["Resource_List"]["walltime"], "00:05:00")
        self.assertEqual(j["Resource_List"]["nodect"], 1)
        self.assertEqual(j["Resource_List"]["filesystems"], "home:flare")
        self.assertIn("walltime", j["resources_used"])
        self.assertIn(" and finished", j["comment"])
        for t in ("ctime", "qtime", "stime", "obittime", "mtime"):
            time.strptime(j[t], "%a %b %d %H:%M:%S %Y")  # ctime(3) strings
        self.assertEqual(j["Variable_List"]["PBS_O_WORKDIR"], self.work)
        # Legacy servers: anything numeric is printed bare, even where that is invalid JSON
        # ("005") [ref]. A host must parse leniently / fall back to text.
        leg = self.submit("#!/bin/sh\nexit 0\n", *self.args(extra=["-v", "PAD=005"]))
        self.parsable = False
        self.wait_state(leg, "F")
        r = self.cmd("qstat", "-xf", "-F", "json", leg)
        self.assertIn('"PAD":005', r.stdout)
        self.assertRaises(ValueError, json.loads, r.stdout)
        self.config({"kill_delay": 1.0, "json_style": "cjson"})
        r = self.cmd("qstat", "-xf", "-F", "json", leg)
        self.assertEqual(json.loads(r.stdout)["Jobs"][leg]["Variable_List"]["PAD"], "005")

    def test_qstat_full_text_folds_long_values(self):
        jid = self.submit("#!/bin/sh\nexit 0\n",
                          *self.args(extra=["-v", "LONG=" + "x" * 150]))
        self.wait_state(jid, "F")
        r = self.cmd("qstat", "-xf", jid)
        self.assertEqual(r.returncode, 0)
        lines = r.stdout.split("\n")
        self.assertEqual(lines[0], "Job Id: %s" % jid)
        self.assertIn("    job_state = F", lines)
        self.assertIn("    Exit_status = 0", lines)
        # prt_attr: nothing passes column 79, continuation lines start with a tab.
        self.assertTrue(all(len(l) <= 80 for l in lines), max(lines, key=len))
        self.assertTrue(any(l.startswith("\tLONG=xxx") for l in lines))
        self.assertIn("x" * 150, r.stdout.replace("\n\t", ""))

    def test_finished_job_needs_x_and_unknown_ids(self):
        jid = self.submit("#!/bin/sh\nexit 0\n")
        self.wait_state(jid, "F")
        r = self.cmd("qstat", jid)
        self.assertEqual(r.returncode, 35)
        self.assertEqual(r.stderr, "qstat: %s Job has finished, use -x or -H to obtain "
                                   "historical job information\n" % jid)
        self.assertNotIn(jid.split(".")[0], self.cmd("qstat").stdout)  # not listed w/o -x
        self.assertIn(jid.split(".")[0], self.cmd("qstat", "-x").stdout)
        unknown = "99.%s" % SERVER
        r = self.cmd("qstat", "-x", unknown)
        self.assertEqual((r.returncode, r.stderr), (153, "qstat: Unknown Job Id %s\n" % unknown))
        # With -F json the prologue still prints, without "Jobs".
        r = self.cmd("qstat", "-xf", "-F", "json", "99")
        self.assertEqual(r.returncode, 153)
        self.assertNotIn("Jobs", json.loads(r.stdout))
        r = self.cmd("qdel", unknown)
        self.assertEqual((r.returncode, r.stderr), (153, "qdel: Unknown Job Id %s\n" % unknown))

    def test_plain_table(self):
        self.env["PBS_EMU_QUEUE_DELAY"] = "60"
        jid = self.submit("#!/bin/sh\nexit 0\n", name="a_very_long_job_name.sh")
        lines = self.cmd("qstat").stdout.splitlines()
        self.assertEqual(lines[0], "Job id            Name             User              "
                                   "Time Use S Queue")
        row = lines[2].split()
        # The id cut after the server's first label, then to 17 columns ending in "*".
        self.assertEqual(row[0], (jid.split(".")[0] + ".aurora-pbs-0001")[:16] + "*")
        self.assertEqual(row[1], "a_very_long_job*")
        self.assertEqual(row[3:5], ["0", "Q"])
        self.assertEqual(row[5], "debug")

    def test_queue_and_server_status(self):
        self.env["PBS_EMU_QUEUE_DELAY"] = "60"
        self.submit("#!/bin/sh\nexit 0\n")
        r = self.cmd("qstat", "-Q", "debug")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertTrue(lines[0].startswith("Queue              Max   Tot Ena Str   Que"), lines)
        self.assertEqual(lines[2].split()[:6], ["debug", "0", "1", "yes", "yes", "1"])
        self.assertEqual(len(self.cmd("qstat", "-Q").stdout.splitlines()), 2 + 4)  # every queue
        r = self.cmd("qstat", "-Q", "nosuch")
        self.assertEqual((r.returncode, r.stderr.strip()), (170, "qstat: Unknown queue nosuch"))
        r = self.cmd("qstat", "-B")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[2].split()[0], "aurora-pbs-0001")
        self.assertEqual(r.stdout.splitlines()[2].split()[-1], "Active")

    # -- refusals -------------------------------------------------------------------------
    def test_submit_refusals(self):
        s = self.script("#!/bin/sh\nexit 0\n")
        cases = [
            (["-A", "p", "-q", "nosuch", "-l", "filesystems=home:flare"], 170,
             "qsub: Unknown queue"),
            (["-q", "debug", "-l", "filesystems=home:flare"], 32,
             "qsub: Account_Name is required to be set."),
            (["-A", "p", "-q", "debug"], 32, "qsub: Resource: filesystems is required to be set."),
            (["-A", "p", "-q", "debug", "-l", "filesystems=home:flare", "-l", "select=3"], 188,
             "qsub: Job violates queue and/or server resource limits"),
            (["-A", "p", "-q", "debug", "-l", "filesystems=home:flare",
              "-l", "walltime=02:00:00"], 188,
             "qsub: Job violates queue and/or server resource limits"),
            (["-A", "p", "-q", "prod", "-l", "filesystems=home:flare"], 191,
             "qsub: Job rejected by all possible destinations"),
        ]
        for args, code, msg in cases:
            r = self.cmd("qsub", *args, s)
            self.assertEqual((r.returncode, r.stderr, r.stdout), (code, msg + "\n", ""), args)
        r = self.cmd("qsub", *OK_ARGS, os.path.join(self.work, "missing.sh"))
        self.assertEqual((r.returncode, r.stderr),
                         (1, "qsub: script file:: No such file or directory\n"))
        r = self.cmd("qsub", "-Z", s)
        self.assertEqual(r.returncode, 2)

    def test_debug_queue_one_job_per_user(self):
        self.env["PBS_EMU_QUEUE_DELAY"] = "60"
        self.submit("#!/bin/sh\nexit 0\n")
        r = self.cmd("qsub", *OK_ARGS, self.script("#!/bin/sh\nexit 0\n"))
        self.assertEqual(r.returncode, 38)
        self.assertEqual(r.stderr, "qsub: would exceed queue debug's per-user limit\n")

    def test_capacity_two_running_then_held(self):
        args = self.args(q="capacity")
        ids = [self.submit("#!/bin/sh\nsleep 30\n", *args) for _ in range(3)]
        self.wait_state(ids[0], "R")
        self.wait_state(ids[1], "R")
        third = self.job(ids[2])
        self.assertEqual(third["job_state"], "Q")
        self.assertEqual(third["comment"],
                         "Not Running: User has reached queue capacity running job limit.")
        # When one ends, the held one starts, without anyone else calling a command first.
        self.cmd("qdel", ids[0])
        self.wait_state(ids[2], "R")
        for _ in range(3):
            self.submit("#!/bin/sh\nsleep 30\n", *args)
        r = self.cmd("qsub", *args, self.script("#!/bin/sh\nexit 0\n"))
        self.assertEqual((r.returncode, r.stderr),
                         (38, "qsub: would exceed queue capacity's per-user limit\n"))

    def test_directives_and_option_precedence(self):
        body = ("#!/bin/sh\n#PBS -N fromscript\n#PBS -q capacity\n#PBS -A scriptproj\n"
                "#PBS -l walltime=00:10:00,filesystems=home:flare\n#PBS -k doe\n"
                "echo body\n#PBS -N ignored_after_first_command\n")
        r = self.cmd("qsub", "-N", "fromcli", "-l", "walltime=00:20:00", self.script(body))
        self.assertEqual(r.returncode, 0, r.stderr)
        j = self.job(r.stdout.strip())
        self.assertEqual(j["Job_Name"], "fromcli")  # the command line wins
        self.assertEqual(j["queue"], "capacity")  # directive kept where the cli is silent
        self.assertEqual(j["Account_Name"], "scriptproj")
        self.assertEqual(j["Resource_List"]["walltime"], "00:20:00")
        self.assertEqual(j["Resource_List"]["filesystems"], "home:flare")
        self.assertEqual(j["Keep_Files"], "doe")

    def test_concurrent_qsub_distinct_ids(self):
        self.config({"kill_delay": 1.0, "queues": {"q": {}}})
        s = self.script("#!/bin/sh\nexit 0\n")
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: self.cmd("qsub", *self.args(q="q"), s), range(8)))
        self.assertEqual([r.returncode for r in results], [0] * 8, [r.stderr for r in results])
        ids = {r.stdout.strip() for r in results}
        self.assertEqual(len(ids), 8)
        for jid in ids:
            self.assertEqual(self.wait_state(jid, "F")["Exit_status"], 0)

    def test_flaky_qstat_hook(self):
        jid = self.submit("#!/bin/sh\nsleep 30\n")
        self.assertEqual(self.cmd("pbs-emu-ctl", "fail-next", "qstat", "1").returncode, 0)
        r = self.cmd("qstat", "-xf", "-F", "json", jid)
        self.assertEqual(r.returncode, 255)
        self.assertEqual(r.stderr, "qstat: cannot connect to server %s (errno=15010)\n" % SERVER)
        self.assertEqual(r.stdout, "")
        # Only once; and the job was never harmed by the failed poll.
        self.assertIn(self.job(jid)["job_state"], ("Q", "R"))
        self.cmd("pbs-emu-ctl", "fail-next", "qsub")
        r = self.cmd("qsub", *OK_ARGS, self.script("#!/bin/sh\n"))
        self.assertEqual(r.returncode, 162)


if __name__ == "__main__":
    unittest.main()
