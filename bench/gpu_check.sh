#!/usr/bin/env bash
# Every GPU test and the headline GPU benches in one command, on a machine with an NVIDIA GPU and no network.
#
#   bash bench/gpu_check.sh [tests|gpufiles|gpumarked] [bert] [llm] [llm70b] [checker]
#   (no part named: tests bert llm, + checker when wheels/official holds the official checker)
#
# 0. Installs subtool's requirements from wheels/ (git-ignored; bench/fetch_wheels.sh fills it on a machine
#    with PyPI) with `pip install --no-index --find-links wheels/`: only what the machine's Python lacks.
#    The checkout's subtool is used through PYTHONPATH.
# 1. tests:   pytest on GPU_TEST_FILES (the packed BERT, the kernels, the LLM engine), then `-m gpu` on every
#             other test file with a test marked gpu; gpufiles and gpumarked run each half alone (one device
#             call each: both together can pass its 10 minutes).
# 2. bert:    python bench/bert_gpu.py --quick                     → $RESULTS_DIR/gpu_check_bert.json
# 3. llm:     python bench/llm_gpu.py, 256 prompts, one Server point → $RESULTS_DIR/gpu_check_llm.json
# 3b. llm70b: python bench/llm70b_gpu.py (Llama-2-70B's shape, fp8, one GPU; asked for by name only: it needs
#             ~75 GB of GPU memory and ~8 minutes)                 → $RESULTS_DIR/gpu_check_llm70b.json
#             LLM70B_ARGS adds arguments (e.g. "--samples 512 --server-seconds 60").
# 3c. proxy: python bench/bert_proxy/train.py --shape large (a BERT-large-shaped model trained on generated
#             key/value questions: at most PROXY_MINUTES, default 6, the ~75 s of making the data included; less
#             when the dev F1 reaches 97, which on the H200 it did twice, 273 s and 281 s into training; twice it
#             stalled near F1 60-65 until its time ran out) → $PROXY_DIR (/tmp/subtool-proxy) and
#             $RESULTS_DIR/bert_proxy_train.json; asked for by name only. The weights live only on that machine,
#             which the device tool hands back after 30 s idle: ask for `proxy bertproxy` in one call, or, to
#             train longer (PROXY_MINUTES up to 9.5; 9.2 fits one call), `proxy` and then `bertproxy` in two calls
#             made back to back (the 97.83 proxy: 370 s, then 241 s).
# 3d. bertproxy: python bench/bert_gpu.py --proxy $PROXY_DIR (each precision's samples/s and F1 ratio on the
#             trained proxy, what auto picks, then the reference-style SUT and transformers' bf16;
#             BERTPROXY_PRECISIONS, default fp8,bf16, saved after each) → $RESULTS_DIR/bert_gpu_proxy.json.
#             On the H200, after PROXY_MINUTES=5.8, the 3.5 minutes left covered the data, fp32, auto, fp8, bf16,
#             fp16 and the reference SUT, and transformers' bf16 was cut: fp16 is no longer run unless asked.
# 4. checker: python bench/checker_speed.py --official wheels/official (the machine's cores, idle)
#                                                                    → $RESULTS_DIR/checker_speed_device.json
# RESULTS_DIR defaults to bench/results. The last lines printed are a summary: each part's exit status and
# its headline numbers. When $OUT is set (the device tool's return folder), the JSONs and the full log are
# copied there. Exit status 0 when every part that ran passed and every requirement was found, else 1
# (2 for an unknown part name).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RESULTS=${RESULTS_DIR:-bench/results}
# The test files whose tests run the CUDA paths when a GPU is there (on a CPU they run the same code through
# torch-cpu or Triton's interpreter): the packed BERT, its plan and kernels, the LLM engine.
GPU_TEST_FILES=(tests/runner/bert/test_bert_gpu.py tests/runner/bert/test_packed_model.py tests/runner/bert/test_packed_plan.py
                tests/runner/bert/test_sut_cpu.py tests/runner/kernels tests/runner/llm/test_llm_engine.py)
# The log goes straight into $OUT when the device tool gives one: a call cut off at its time limit still brings
# back what ran until then (a log kept in /tmp and copied at the end came back empty once).
LOG=${OUT:+$OUT/gpu_check.log}
LOG=${LOG:-${TMPDIR:-/tmp}/gpu_check.log}
export PYTHONUNBUFFERED=1
mkdir -p "$RESULTS"
: >"$LOG"

parts=("$@")
if [ ${#parts[@]} -eq 0 ]; then
  parts=(tests bert llm)
  [ -f wheels/official/tools/submission/submission_checker/main.py ] && parts+=(checker)
fi
say() { echo "[gpu_check $(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
KNOWN=(tests gpufiles gpumarked bert llm llm70b proxy bertproxy checker)  # the parts the loop below runs
known_part() { local k; for k in "${KNOWN[@]}"; do [ "$k" = "$1" ] && return 0; done; return 1; }
for part in "${parts[@]}"; do  # refused before the set-up installs anything
  if ! known_part "$part"; then
    printf -v known '%s, ' "${KNOWN[@]}"
    say "unknown part '$part' (${known%, })"; exit 2
  fi
done

declare -A status
# ---------------------------------------------------------------------------------------------- 0. set-up
requirements=$("$PY" - <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = project["dependencies"] + project["optional-dependencies"]["run"] + project["optional-dependencies"]["test"]
# PyGithub serves `subtool publish` only, ruff lints in CI, and the MCP server's and the network SUT's tests
# (mcp, openai and their Starlette/uvicorn server) run on CPU: no GPU test or bench needs them
print(" ".join(r.split(";")[0].split("#")[0].strip().replace(" ", "") for r in reqs
               if not re.match(r"(?i)pygithub|tomli\b|ruff|mcp|openai|starlette|sse-starlette|uvicorn", r)))
EOF
) || { say "cannot read pyproject.toml"; exit 2; }
say "requirements: $requirements"
if ! "$PY" -m pip install -q --no-index --find-links wheels/ $requirements >>"$LOG" 2>&1; then
  missing=()          # one at a time, so one missing package costs only what needs it
  for req in $requirements; do
    "$PY" -m pip install -q --no-index --find-links wheels/ "$req" >>"$LOG" 2>&1 || missing+=("$req")
  done
  say "set-up: neither installed nor in wheels/ (add to bench/fetch_wheels.sh): ${missing[*]}"
  status[setup]=1
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
"$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
import importlib.metadata as md, torch
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "absent"
names = ("torch", "transformers", "triton", "mlcommons-loadgen", "typer", "rich", "pytest")
print("versions:", ", ".join(f"{n} {version(n)}" for n in names))
print("cuda:", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
EOF

run_part() {            # run_part NAME COMMAND...: log it, remember its exit status
  local name=$1; shift
  say "$name: $*"
  "$@" 2>&1 | tee -a "$LOG"
  status[$name]=${PIPESTATUS[0]}
  say "$name: exit ${status[$name]}"
}

for part in "${parts[@]}"; do
  case $part in
    tests|gpufiles|gpumarked)
      # tests: GPU_TEST_FILES whole (gpufiles), then elsewhere only the tests marked gpu (gpumarked; their files'
      # CPU tests run in CI). Each half alone fits one 10-minute device call; both together may not
      if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        say "$part: torch is missing or sees no CUDA GPU, so every GPU test would skip"; status[$part]=1; continue
      fi
      mapfile -t marked < <(grep -rlE "pytest\.mark\.gpu" tests --include='test_*.py' \
                              | grep -vxF -f <(printf '%s\n' "${GPU_TEST_FILES[@]}") | sort -u)
      whole=0
      if [ "$part" != gpumarked ]; then
        run_part "$part" "$PY" -m pytest -q -rs -p no:cacheprovider "${GPU_TEST_FILES[@]}"
        whole=${status[$part]}
      fi
      [ "$part" = gpufiles ] || run_part "$part" "$PY" -m pytest -q -rs -p no:cacheprovider -m gpu "${marked[@]}"
      [ "$whole" = 0 ] || status[$part]=$whole ;;
    bert)
      rm -f "$RESULTS/gpu_check_bert.json"
      run_part bert "$PY" bench/bert_gpu.py --quick --out "$RESULTS/gpu_check_bert.json" ;;
    llm)
      rm -f "$RESULTS/gpu_check_llm.json"
      run_part llm "$PY" bench/llm_gpu.py --samples 256 --ref-samples 64 --server-fractions 0.6 \
               --server-seconds 20 --out "$RESULTS/gpu_check_llm.json" ;;
    llm70b)
      rm -f "$RESULTS/gpu_check_llm70b.json"
      # shellcheck disable=SC2086  # LLM70B_ARGS is a list of arguments
      run_part llm70b "$PY" bench/llm70b_gpu.py ${LLM70B_ARGS:-} --out "$RESULTS/gpu_check_llm70b.json" ;;
    proxy)
      # shellcheck disable=SC2086  # PROXY_ARGS is a list of arguments (e.g. "--answer mixed")
      run_part proxy "$PY" bench/bert_proxy/train.py --shape large --minutes "${PROXY_MINUTES:-6}" \
               --out "${PROXY_DIR:-/tmp/subtool-proxy}" ${PROXY_ARGS:-}
      cp "${PROXY_DIR:-/tmp/subtool-proxy}/train.json" "$RESULTS/bert_proxy_train.json" 2>/dev/null ;;
    bertproxy)
      rm -f "$RESULTS/bert_gpu_proxy.json"
      run_part bertproxy "$PY" bench/bert_gpu.py --proxy "${PROXY_DIR:-/tmp/subtool-proxy}" \
               --precisions "${BERTPROXY_PRECISIONS:-fp8,bf16}" --out "$RESULTS/bert_gpu_proxy.json" ;;
    checker)
      rm -f "$RESULTS/checker_speed_device.json"
      run_part checker "$PY" bench/checker_speed.py --official wheels/official --repeat 3 \
               --out "$RESULTS/checker_speed_device.json" ;;
  esac
done

# ---------------------------------------------------------------------------------------------- summary
say "summary"
{
  [ -n "${status[setup]:-}" ] && echo "set-up: some requirements missing (see above); parts that need them fail"
  for part in "${parts[@]}"; do echo "part $part: exit ${status[$part]}"; done
  [ -n "${status[tests]:-}${status[gpufiles]:-}${status[gpumarked]:-}" ] && grep -E "^=* ?[0-9]+ (passed|failed|skipped|error).* in [0-9.]+s" "$LOG" | tail -2
  "$PY" bench/gpu_check_summary.py "$RESULTS"
} 2>&1 | tee -a "$LOG"
if [ -n "${OUT:-}" ]; then
  [ "$LOG" -ef "$OUT/gpu_check.log" ] || cp "$LOG" "$OUT/" 2>/dev/null
  for f in gpu_check_bert gpu_check_llm gpu_check_llm70b checker_speed_device bert_proxy_train bert_gpu_proxy; do
    [ -f "$RESULTS/$f.json" ] && cp "$RESULTS/$f.json" "$OUT/"
  done
fi
for part in "${parts[@]}"; do [ "${status[$part]}" = 0 ] || exit 1; done
[ -z "${status[setup]:-}" ] || exit 1
exit 0
