#!/usr/bin/env bash
# Installs what the tests need outside the venv when it is missing: the Slurm tests' slurmctld, slurmd,
# client tools and munge, and a C++ compiler for torch.compile's CPU kernels (musicnn's fused_compiled).
#
# `make test` runs this first. As root on Debian/Ubuntu it apt-installs the packages; otherwise it
# only says what to install, and the Slurm tests then fail with the same advice. Nothing happens when
# everything is already there, so it costs nothing on a machine that has been set up.
set -euo pipefail

NEEDED=(slurmctld slurmd sbatch squeue scontrol scancel munged g++)
PACKAGES="slurmctld slurmd slurm-client munge g++"

missing=()
for tool in "${NEEDED[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "slurm/system-deps.sh: installing $PACKAGES (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  # --no-install-recommends: no mail server, no docs; the daemons are started by slurm/local-cluster.sh, not systemd.
  if apt-get update -qq && apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null; then
    exit 0
  fi
  # Not fatal: every other test still runs; the Slurm (or compiled-kernel) tests fail and say what is missing.
  echo "slurm/system-deps.sh: apt-get could not install $PACKAGES; the Slurm or compiled-kernel tests will fail" >&2
  exit 0
fi

echo "slurm/system-deps.sh: the tests need ${missing[*]}, which are not installed." >&2
echo "  Debian/Ubuntu: sudo apt-get install $PACKAGES" >&2
echo "  (the tests start a private one-node cluster with slurm/local-cluster.sh; no system configuration is changed)" >&2
exit 0
