#!/usr/bin/env bash
# Runs the tests of tests/pbs/ (stdlib unittest only, about 80 s on 2 cores): the PBS Pro
# emulator's own (test_emulator.py) and the pbs executor's remote side, agent.py and pilot.py
# (test_agent.py). ALCF_AGENT_PYTHON=/path/to/python3.6 runs the agent, pilots and trials
# under that interpreter (the oldest python3 on ALCF nodes is 3.6).
set -euo pipefail
cd "$(dirname "$0")"
exec timeout 600 python3 -m unittest discover -s . -p 'test_*.py' "$@"
