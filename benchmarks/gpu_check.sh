#!/usr/bin/env bash
# The prepared GPU check: one command, no editing, under 8 minutes on an H200.
#
#   bash benchmarks/gpu_check.sh [RESULTS_DIR]     (default: $OUT if set, else gpu-check-results/)
#
# Needs a python3 whose torch sees a CUDA device, with triton, numpy (and ideally pytest, hypothesis)
# already installed; GPU_CHECK_PYTHON=/path/to/python picks another interpreter. Without one it stops
# at once with one line ("no CUDA device"). Steps, each under `timeout`, inside an overall deadline:
#   1. a throw-away venv (python3 -m venv --system-site-packages, plus the interpreter's own site
#      directories) in which only this project is installed (pip install -e ".[test]" --no-deps;
#      pytest and hypothesis only if missing); PYTHONPATH=src if pip cannot install it;
#   2. tests/test_triton.py and tests/test_linear_triton.py (the fused linear cross-entropy's chunk kernel,
#      a bfloat16 head included) with LOSSLAB_TEST_DEVICE=cuda: every kernel on CUDA tensors;
#   3. tests/test_fused.py and tests/test_linear.py: the CPU fused path (sweeps, torch.compile) and the fused
#      linear cross-entropy under this machine's torch (its CUDA cases where the tests have them);
#   4. `python -m losslab bench --device cuda` on the default GPU cases, one process per workload group
#      (a group that runs out of time loses only itself), merged into bench/results.{md,json}; then the
#      lm-head group (losslab, torch, and CCE's kernel and Liger where importable) into lm-head/;
#   5. summary.txt: the verdict, GPU, versions, per-step status, wall time and test counts.
# Exit status: 0 the tests passed and every bench group finished; 1 a test step failed or timed out;
# 2 no CUDA device or the setup failed; 3 the tests passed but the bench is incomplete.

set -uo pipefail

PY=${GPU_CHECK_PYTHON:-python3}
if ! reason=$("$PY" -c 'import torch; assert torch.cuda.is_available(), "torch " + torch.__version__ + " sees none"' 2>&1); then
    echo "gpu_check: no CUDA device ($PY: $(printf '%s\n' "$reason" | tail -n 1))" >&2
    exit 2
fi

START=$(date +%s)
DEADLINE=$((START + 440))  # every step ends by then (a killed one 10 s later): under 8 minutes in all
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=${1:-${OUT:-gpu-check-results}}
if ! mkdir -p "$RESULTS" || ! RESULTS=$(cd "$RESULTS" && pwd); then
    echo "gpu_check: cannot create $RESULTS" >&2
    exit 2
fi
cd "$ROOT" || exit 2
SUMMARY="$RESULTS/summary.txt"
STEPS="$RESULTS/steps.tsv"  # name, status, seconds, passed, failed, errors, skipped
printf 'step\tstatus\tseconds\tpassed\tfailed\terrors\tskipped\n' >"$STEPS"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1
unset TRITON_INTERPRET LOSSLAB_TEST_DEVICE

log() { echo "gpu_check: $*"; }

# seconds a step may take: its cap, or what is left before the deadline (less 10 s), whichever is smaller
budget() {
    local left=$((DEADLINE - $(date +%s) - 10))
    if ((left < $1)); then echo "$left"; else echo "$1"; fi
}

# run_step NAME CAP COMMAND...: under timeout, output to NAME.log; records status and wall seconds
run_step() {
    local name=$1 cap=$2 limit t0 rc status
    shift 2
    limit=$(budget "$cap")
    if ((limit < 5)); then
        log "$name: skipped, out of time"
        printf '%s\tNOT RUN (out of time)\t0\t\t\t\t\n' "$name" >>"$STEPS"
        return 124
    fi
    log "$name (at most ${limit}s) ..."
    t0=$(date +%s)
    timeout -k 10 "$limit" "$@" >"$RESULTS/$name.log" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124 | 137) status="TIMEOUT after ${limit}s" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    local counts=$'\t\t\t'
    if [[ -f "$RESULTS/$name.xml" ]]; then
        counts=$("$VPY" - "$RESULTS/$name.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
print(n["tests"] - n["failures"] - n["errors"] - n["skipped"], n["failures"], n["errors"], n["skipped"], sep="\t")
EOF
        ) || counts=$'\t\t\t'
    fi
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - t0))" "$counts" >>"$STEPS"
    log "$name: $status, $(($(date +%s) - t0)) s"
    return $rc
}

setup_failed() {
    log "setup failed: $1 (see $RESULTS/setup.log)" >&2
    printf 'RESULT: SETUP FAILED: %s\n' "$1" >"$SUMMARY"
    exit 2
}

# 1. the venv: the interpreter's torch / triton / numpy seen through its site directories, losslab installed
log "setup ..."
t0=$(date +%s)
VENV="$WORK/venv"
(
    "$PY" -m venv --system-site-packages --without-pip "$VENV" || exit 1
    # --system-site-packages reaches the base installation only; if $PY is itself a venv or conda env,
    # its own site directories (where torch lives) are added after the new venv's with site.addsitedir
    "$PY" - "$VENV" <<'EOF' || exit 1
import os, site, sys, sysconfig
dirs = [p for p in sys.path if os.path.isdir(p) and os.path.basename(p) in ("site-packages", "dist-packages")]
venv_purelib = sysconfig.get_path("purelib", vars={"base": sys.argv[1], "platbase": sys.argv[1]})
with open(os.path.join(venv_purelib, "_gpu_check_base.pth"), "w") as f:
    f.writelines(f"import site; site.addsitedir({d!r})\n" for d in dirs)
EOF
) >"$RESULTS/setup.log" 2>&1 || setup_failed "could not create a venv with $PY"
VPY="$VENV/bin/python"
"$VPY" -c 'import torch, triton; assert torch.cuda.is_available()' >>"$RESULTS/setup.log" 2>&1 ||
    setup_failed "the venv's python does not see torch with CUDA and triton"

PIP=("$VPY" -m pip --retries 1 --timeout 15)
INSTALLED="pip install -e .[test] --no-deps"
# without build isolation first (setuptools from the interpreter, offline); then pip's own isolated build
{
    timeout 45 "${PIP[@]}" install --no-deps --no-build-isolation -e ".[test]" ||
        timeout 45 "${PIP[@]}" install --no-deps -e ".[test]"
} >>"$RESULTS/setup.log" 2>&1 || {
    INSTALLED="PYTHONPATH=src (pip could not install the project)"
    export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
}
if ! "$VPY" -c 'import pytest, hypothesis' >>"$RESULTS/setup.log" 2>&1; then
    timeout 60 "${PIP[@]}" install pytest hypothesis >>"$RESULTS/setup.log" 2>&1
fi
"$VPY" -c 'import pytest, hypothesis, numpy' >>"$RESULTS/setup.log" 2>&1 ||
    setup_failed "pytest, hypothesis or numpy missing and not installable"
"$VPY" -c 'import losslab, sys; assert losslab.__file__.startswith(sys.argv[1]), losslab.__file__' "$ROOT" \
    >>"$RESULTS/setup.log" 2>&1 || setup_failed "losslab does not import from $ROOT"
printf 'setup\tok (%s)\t%s\t\t\t\t\n' "$INSTALLED" "$(($(date +%s) - t0))" >>"$STEPS"

GPU=$(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
[[ -n "$GPU" ]] || GPU=$("$VPY" -c 'import torch; print(torch.cuda.get_device_name())' 2>/dev/null)
VERSIONS=$("$VPY" -c 'import platform, torch, triton
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton.__version__}, Python {platform.python_version()}")' 2>&1)
log "$GPU; $VERSIONS"

# 2-3. the tests
tests_ok=1
LOSSLAB_TEST_DEVICE=cuda run_step test_triton 180 "$VPY" -m pytest -q -rfEs tests/test_triton.py \
    --junitxml "$RESULTS/test_triton.xml" || tests_ok=0
LOSSLAB_TEST_DEVICE=cuda run_step test_linear_triton 60 "$VPY" -m pytest -q -rfEs tests/test_linear_triton.py \
    --junitxml "$RESULTS/test_linear_triton.xml" || tests_ok=0
run_step test_fused 120 "$VPY" -m pytest -q -rfEs tests/test_fused.py --junitxml "$RESULTS/test_fused.xml" ||
    tests_ok=0
run_step test_linear 90 "$VPY" -m pytest -q -rfEs tests/test_linear.py --junitxml "$RESULTS/test_linear.xml" ||
    tests_ok=0

# 4. the bench, one workload group per process (every GPU case's workload contains one of these)
bench_ok=1
mkdir -p "$RESULTS/bench"
for group in detection segmentation classification "LM vocabulary"; do
    slug=${group// /_}
    run_step "bench/$slug" 120 "$VPY" -m losslab bench --device cuda --only "$group" \
        --out "$RESULTS/bench/$slug" || bench_ok=0
done
"$VPY" - "$RESULTS/bench" >"$RESULTS/bench/merge.log" 2>&1 <<'EOF' || bench_ok=0
import json, sys
from pathlib import Path
from losslab import bench
folder = Path(sys.argv[1])
rows, machine = [], None
for path in sorted(folder.glob("*/results.json")):
    data = json.loads(path.read_text())
    rows += data["rows"]
    machine = data["machine"]
order = {(c.loss, c.workload): i for i, c in enumerate(bench.GPU_CASES)}
rows.sort(key=lambda r: order.get((r["loss"], r["workload"]), len(order)))
missing = [f"{c.loss} / {c.workload}" for c in bench.GPU_CASES if not any(
    (r["loss"], r["workload"]) == (c.loss, c.workload) for r in rows)]
(folder / "results.json").write_text(json.dumps({"machine": machine, "rows": rows, "missing": missing}, indent=2))
note = "".join(f"\nnot measured: {m}" for m in missing)
(folder / "results.md").write_text(f"Machine: {machine}\n\n{bench.markdown(rows) if rows else '(no rows)'}\n{note}\n")
print(f"{len(rows)} rows, {len(missing)} of {len(bench.GPU_CASES)} cases not measured")
sys.exit(1 if missing else 0)
EOF

# the lm-head group: its own table (other columns), not merged with the loss-only groups above
run_step lm-head 150 "$VPY" -m losslab bench --device cuda --only lm-head --out "$RESULTS/lm-head" || bench_ok=0

# 5. the summary
if ((tests_ok == 0)); then verdict="FAIL (tests)"; rc=1
elif ((bench_ok == 0)); then verdict="PASS (tests); bench incomplete"; rc=3
else verdict="PASS"; rc=0; fi
{
    echo "RESULT: $verdict"
    echo "GPU: ${GPU:-unknown}"
    echo "versions: $VERSIONS"
    echo "losslab: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') ($INSTALLED)"
    echo "bench: $(tail -n 1 "$RESULTS/bench/merge.log" 2>/dev/null)"
    echo "total: $(($(date +%s) - START)) s"
    echo
    awk -F'\t' '{printf "%-26s %-44s %7s %7s %7s %7s %8s\n", $1, $2, $3, $4, $5, $6, $7}' "$STEPS"
} >"$SUMMARY"
cat "$SUMMARY"
exit $rc
