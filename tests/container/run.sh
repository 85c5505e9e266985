#!/usr/bin/env bash
# The container tests (make container-test): build the image with podman
# (setup.sh: installs podman when it can, caches the base under /var/tmp),
# then run tests/container with pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
settings=$(tests/container/setup.sh)
eval "$settings"
exec "$PY" -m pytest -p no:cacheprovider -rs tests/container "$@"
