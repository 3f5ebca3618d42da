#!/usr/bin/env bash
# Download into .whl/ the wheels lightning_tagging needs that the GPU machines' image lacks
# (it has torch, torchaudio, pytorch-lightning, torchmetrics, numpy, pyyaml, tqdm, matplotlib,
# requests, protobuf, click, packaging, typing-extensions, xxhash, ...; see the device notes),
# for CPython 3.12 on x86-64 Linux, whatever this machine is. The device command installs them
# with `pip install --no-index --no-deps --target /tmp/site .whl/*.whl` (scripts/device-bench.sh).
#
#   scripts/fetch-device-wheels.sh                  # what `lt bench suite` and `lt fit` need (~3 MiB)
#   scripts/fetch-device-wheels.sh --with-wandb     # also W&B and its dependencies (~24 MiB more)
#
# Versions are those of the local virtual environment ($PYTHON, default .venv/bin/python), so the
# GPU runs the same stack as the CPU; a package the environment lacks is fetched at its newest.
# Every carried wheel travels with each device call and counts towards its 64 MiB: W&B is left
# out unless asked for, since nothing in `lt bench` imports it (runs there use --trainer.logger false).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
DEST=.whl
# name as pip knows it; the import-free dependency closure, checked below against each wheel's metadata.
CORE=(jsonargparse docstring-parser typeshed-client webdataset braceexpand soundfile cffi pycparser soxr)
WANDB=(wandb cwevals distro sniffio pydantic pydantic-core annotated-types typing-inspection platformdirs
       opentelemetry-api opentelemetry-sdk opentelemetry-semantic-conventions opentelemetry-proto
       opentelemetry-exporter-otlp-proto-http opentelemetry-exporter-otlp-proto-common
       opentelemetry-exporter-http-transport opentelemetry-exporter-otlp-common googleapis-common-protos)
# On the image already (KINDS.md, "Python packages already there"), so never carried.
ON_IMAGE="torch torchaudio pytorch-lightning lightning-utilities torchmetrics numpy pyyaml tqdm matplotlib requests
urllib3 certifi idna charset-normalizer protobuf click packaging typing-extensions xxhash zipp psutil setuptools
fsspec aiohttp anyio httpx httpcore h11"

packages=("${CORE[@]}")
if [[ "${1:-}" == "--with-wandb" ]]; then
    packages+=("${WANDB[@]}")
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--with-wandb]" >&2
    exit 2
fi

version_of() {  # the version installed in $PYTHON's environment, or nothing
    "$PYTHON" -c 'import importlib.metadata as m, sys
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass' "$1" 2>/dev/null || true
}

rm -rf "$DEST"
mkdir -p "$DEST"
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude

for name in "${packages[@]}"; do
    version=$(version_of "$name")
    spec=$name${version:+==$version}
    # One manylinux tag each: pip matches them exactly, so name the ones current wheels use.
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_34_x86_64 \
        --platform manylinux_2_31_x86_64 --platform manylinux_2_24_x86_64 -d "$DEST" "$spec" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)  # a local pip config's missing mirrors
done

# Every requirement of every wheel (extras and other Pythons' markers aside) must be carried or on the image.
python3 - "$DEST" "$ON_IMAGE" <<'PY'
import re, sys, zipfile
from pathlib import Path

dest, on_image = Path(sys.argv[1]), set(sys.argv[2].split())
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
wheels = sorted(dest.glob("*.whl"))
carried = {norm(w.name.split("-")[0]) for w in wheels}
missing = set()
for wheel in wheels:
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        requirement, _, marker = line[len("Requires-Dist:"):].partition(";")
        if "extra ==" in marker or re.search(r'python_version\s*<\s*"3\.(\d|1[01])"', marker):
            continue
        if "platform_python_implementation" in marker and "PyPy" in marker and "==" in marker:
            continue
        name = norm(re.match(r"\s*([A-Za-z0-9_.-]+)", requirement).group(1))
        if name not in carried and name not in on_image:
            missing.add(f"{name} (for {wheel.name})")
total = sum(w.stat().st_size for w in wheels)
for wheel in wheels:
    print(f"{wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
print(f"{total / 2**20:7.2f} MiB  in {len(wheels)} wheels in {dest}/")
if missing:
    print("requirements neither carried nor on the image:", ", ".join(sorted(missing)), file=sys.stderr)
    sys.exit(1)
PY
