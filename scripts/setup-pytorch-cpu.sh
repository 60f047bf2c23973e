#!/usr/bin/env bash
# Make `import torch` work on the CPU-minimal torch install of scripts/setup-torch.sh, so that the
# Python trial program (trainer/python/alcf_train.py) can be tested for real on a machine without a
# GPU, without the ~3.5 GB of CUDA libraries that the full install adds.
#
#   bash scripts/setup-pytorch-cpu.sh      # then: target/pytorch-cpu/python ...
#
# Why: `import torch` loads libtorch_python.so, which needs libtorch_cuda.so and with it cuBLAS,
# cuDNN, NCCL, cuFFT, ... The CPU-minimal set (torch --no-deps + the CUDA runtime) has none of them,
# and torch's pure-Python dependencies are missing too. This script, without touching the venv:
#   1. installs torch's pure-Python dependencies (its Requires-Dist minus setuptools, CUDA and
#      triton) with `pip install --target` into $OUT/site;
#   2. writes stand-ins for the missing CUDA libraries into $OUT/stubs: one shared library per
#      missing soname, exporting (with the right symbol versions) every function libtorch imports
#      from it, each a trap instruction. They only satisfy the dynamic loader. Nothing calls them
#      without a GPU (torch.cuda.is_available() asks the real libcudart, which finds no device), and
#      a call would stop the process at once with SIGILL, never compute anything;
#   3. writes $OUT/python, which runs <venv>/bin/python with both on the search paths, and checks
#      that torch imports and trains a step on the CPU.
# With the full install (`import torch` works as it is) step 1-2 are skipped and $OUT/python just
# runs <venv>/bin/python.
#
# Environment: ALCF_VENV (default <repo>/.venv), ALCF_PYTORCH_CPU (default <repo>/target/pytorch-cpu).
# Needs python3, pip access to PyPI (the first time), gcc, nm and readelf (binutils).
# Idempotent: about 20 s the first time, instant after.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ALCF_VENV:-$ROOT/.venv}"
OUT="${ALCF_PYTORCH_CPU:-$ROOT/target/pytorch-cpu}"
VPY="$VENV/bin/python"
LIB="$VENV/libtorch/lib"

if [ ! -x "$VPY" ] || [ ! -e "$LIB/libtorch_cpu.so" ]; then
  echo "setup-pytorch-cpu: no torch in $VENV; run scripts/setup-torch.sh first" >&2
  exit 1
fi
mkdir -p "$OUT"
WRAP="$OUT/python"

write_wrapper() { # site-dir stubs-dir (either may be empty)
  {
    echo '#!/bin/sh'
    echo '# Written by scripts/setup-pytorch-cpu.sh: the project venv'"'"'s python with torch importable.'
    [ -z "$1" ] || echo "export PYTHONPATH=\"$1\${PYTHONPATH:+:\$PYTHONPATH}\""
    [ -z "$2" ] || echo "export LD_LIBRARY_PATH=\"$2\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
    echo "exec \"$VPY\" \"\$@\""
  } > "$WRAP.tmp"
  chmod +x "$WRAP.tmp"
  mv "$WRAP.tmp" "$WRAP"
}

check() {
  "$WRAP" -W ignore - <<'PY'
import torch
m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(10))
opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
loss = torch.nn.functional.cross_entropy(m(torch.randn(2, 3, 8, 8)), torch.tensor([1, 2]))
loss.backward()
opt.step()
assert not torch.cuda.is_available()
print(f"setup-pytorch-cpu: torch {torch.__version__} imports and trains on the CPU")
PY
}

if "$VPY" -c 'import torch' >/dev/null 2>&1; then
  write_wrapper "" ""
  echo "setup-pytorch-cpu: torch imports in $VENV as it is (full install)"
  check
  exit 0
fi

STAMP="$OUT/.done-$("$VPY" -c 'from importlib import metadata; print(metadata.version("torch"))')"
if [ -e "$STAMP" ] && [ -x "$WRAP" ] && check >/dev/null 2>&1; then
  echo "setup-pytorch-cpu: $WRAP is ready, skipping"
  exit 0
fi
rm -rf "$OUT/site" "$OUT/stubs" "$OUT"/.done-*

# 1. torch's pure-Python dependencies, as its metadata asks for them.
mapfile -t REQS < <("$VPY" - <<'PY'
from importlib import metadata
import re
for r in metadata.requires("torch") or []:
    name = re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0].lower()
    if "extra ==" in r or name in ("setuptools", "triton") or name.startswith(("nvidia-", "cuda-")):
        continue
    print(r.split(";")[0].strip())
PY
)
echo "setup-pytorch-cpu: pip install --target $OUT/site ${REQS[*]}"
# (pip's resolver complains that the venv's torch lacks its CUDA dependencies: it is meant to.)
if ! "$VPY" -m pip --disable-pip-version-check --no-input install --quiet --target "$OUT/site" "${REQS[@]}" \
    > "$OUT/pip.log" 2>&1; then
  cat "$OUT/pip.log" >&2
  echo "setup-pytorch-cpu: pip install failed (log above)" >&2
  exit 1
fi

# 2. Stand-ins for the CUDA libraries that libtorch_cuda.so / libtorch_python.so need but the
# CPU-minimal install lacks.
mkdir -p "$OUT/stubs"
"$VPY" - "$LIB" "$OUT/stubs" <<'PY'
import collections, os, re, subprocess, sys

lib, out = os.path.realpath(sys.argv[1]), sys.argv[2]
SYSTEM = {"libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libstdc++.so.6",
          "libgcc_s.so.1", "ld-linux-x86-64.so.2"}

def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

def needed(path):
    return re.findall(r"\(NEEDED\).*\[(.+)\]", run("readelf", "-d", path))

consumers = [os.path.join(lib, f) for f in ("libtorch_cuda.so", "libtorch_python.so", "libtorch_nvshmem.so")]
consumers = [c for c in consumers if os.path.exists(c)]
# Every library the loader can already find: the torch lib dir, the wheel's nvidia/*/lib dirs, and
# what ldd resolves (the system's C and C++ runtimes).
present = {}
nvidia = os.path.join(lib, "..", "..", "nvidia")
dirs = [lib] + [os.path.join(nvidia, d, "lib") for d in (os.listdir(nvidia) if os.path.isdir(nvidia) else [])]
for d in dirs:
    if os.path.isdir(d):
        for f in os.listdir(d):
            if ".so" in f:
                present[f] = os.path.join(d, f)
for c in consumers:
    for line in run("ldd", c).splitlines():
        m = re.match(r"\s*(\S+) => (/\S+)", line)
        if m:
            present.setdefault(m.group(1), m.group(2))
missing = sorted({n for c in consumers for n in needed(c)} - set(present) - SYSTEM)
if not missing:
    print("setup-pytorch-cpu: no CUDA library is missing")
    sys.exit(0)
defined = set()
for p in present.values():
    for line in run("nm", "-D", "--defined-only", p).splitlines():
        parts = line.split()
        if len(parts) >= 3:
            defined.add(parts[2].split("@")[0])
# Undefined symbols of the consumers that nothing present defines, by symbol version.
by_version = collections.defaultdict(set)
for c in consumers:
    for line in run("nm", "-D", "--undefined-only", c).splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] != "U":
            continue
        sym, _, ver = parts[1].partition("@")
        ver = ver.lstrip("@")
        if sym in defined or re.match(r"_?Py", sym) or re.match(r"(GLIBC|GLIBCXX|CXXABI|GCC)_", ver):
            continue
        by_version[ver].add(sym)
# A versioned symbol goes to the library of that name (NVSHMEM's version is not a soname);
# unversioned ones to any stub: the loader binds them to whichever loaded library defines them.
groups = collections.defaultdict(dict)
for ver, syms in by_version.items():
    if ver in missing:
        target = ver
    elif ver == "NVSHMEM" and "libnvshmem_host.so.3" in missing:
        target = "libnvshmem_host.so.3"
    else:
        target = missing[0]
    groups[target][ver] = syms
for so in missing:
    asm, script = [".text"], []
    for ver, syms in groups.get(so, {}).items():
        for s in sorted(syms):
            asm += [f'.globl "{s}"', f'.type "{s}", @function', f'"{s}":', "  ud2"]
        if ver:
            script.append(ver + " { global: " + " ".join(f'"{s}";' for s in sorted(syms)) + " };")
    base = os.path.join(out, so)
    with open(base + ".s", "w") as f:
        f.write("\n".join(asm) + "\n")
    cmd = ["gcc", "-shared", "-nostdlib", "-o", base, base + ".s", "-Wl,-soname," + so]
    if script:
        with open(base + ".map", "w") as f:
            f.write("\n".join(script) + "\n")
        cmd.append("-Wl,--version-script=" + base + ".map")
    subprocess.run(cmd, check=True)
    for ext in (".s", ".map"):
        if os.path.exists(base + ext):
            os.remove(base + ext)
print(f"setup-pytorch-cpu: {len(missing)} CUDA library stand-ins ({sum(len(s) for s in by_version.values())} trap symbols): {' '.join(missing)}")
PY

# 3. The wrapper, and a check that it works.
write_wrapper "$OUT/site" "$OUT/stubs"
check
touch "$STAMP"
