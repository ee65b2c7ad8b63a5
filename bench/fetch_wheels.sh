#!/usr/bin/env bash
# Fill wheels/ (git-ignored) with what bench/gpu_check.sh installs on the GPU machine, which has no network:
# the Python packages subtool needs that its image lacks, built for the device's CPython (3.12, x86-64 Linux),
# and, when given, a copy of the official checker for the checker bench.
#
#   bash bench/fetch_wheels.sh [OFFICIAL_CHECKOUT]      # on a machine that reaches PyPI, in the repository root
#
# The GPU image already holds torch, transformers, triton, numpy, pandas, pytest and hypothesis (the device's
# KINDS.md lists its packages); the versions below are the ones this repository's CI venv tests with.
# DEVICE_PYTHON overrides the target Python version (default 3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PYVER=${DEVICE_PYTHON:-3.12}
DEST=wheels

# gpu_check.sh installs subtool's requirements from these only where the image's own packages do not satisfy
# them, so the image keeps its typer and rich when they are recent enough; the rest of each closure is here
# for the case they are not.
# compiled: one wheel for the device's Python and platform
BINARY=(mlcommons-loadgen==6.0.17 rpds-py==2026.9.1 pydantic-core==2.50.5 pyyaml==6.0.4 psutil==7.2.2)
# pure Python: rouge-score has no wheel on PyPI, so pip builds one here from its source
PURE=(typer==0.29.2 pydantic==2.14.4 annotated-types==0.8.0 typing-inspection==0.4.5 annotated-doc==0.0.7
      rich==15.0.0 click==8.5.1 shellingham==1.5.4 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0
      jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0
      nltk==3.10.4 defusedxml==0.7.1 rouge-score==0.1.2 typing-extensions==4.16.0 attrs==26.1.0
      tabulate==0.10.0 hypothesis==6.170.17 sortedcontainers==2.4.0 pytest==9.2.0 pluggy==1.7.0
      iniconfig==2.3.1 packaging==26.4 nvidia-ml-py==13.615.71 pytest-timeout==2.4.0)

mkdir -p "$DEST"
platforms=()
for p in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 \
         manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${p}_x86_64")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
      "${platforms[@]}" -d "$DEST" "${BINARY[@]}"
"$PY" -m pip wheel -q --no-deps -w "$DEST" "${PURE[@]}"

official=${1:-${SUBTOOL_OFFICIAL:-}}
if [ -n "$official" ]; then
  if [ ! -f "$official/tools/submission/submission_checker/main.py" ]; then
    echo "fetch_wheels: $official is not a checkout of mlcommons/inference" \
         "(no tools/submission/submission_checker/main.py)" >&2
    exit 2
  fi
  rm -rf "$DEST/official"
  mkdir -p "$DEST/official/tools"
  cp -r "$official/tools/submission" "$DEST/official/tools/"
  find "$DEST/official" -name __pycache__ -prune -exec rm -rf {} +
fi
ls -l "$DEST"
du -sh "$DEST"
