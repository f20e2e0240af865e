#!/bin/sh
# Installs the project (not editable, no dev tools) into a fresh virtual environment at $1.
# The image's build stage runs exactly this, and CI runs it too (tests/unit/deploy/test_image.py),
# since Docker itself cannot run there.
set -eu
prefix="${1:?usage: install.sh VENV_DIR}"
python3 -m venv "$prefix"
"$prefix/bin/pip" install --no-cache-dir --disable-pip-version-check --quiet .
# Fails the build when the installed package misses a module or its migrations.
cd /
"$prefix/bin/python" -c "import services.cluster.migrate as m; assert len(m.histories()) >= 3, m.histories()"
