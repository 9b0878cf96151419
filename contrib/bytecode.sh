#!/usr/bin/env bash
# Byte-compiles synsup's modules where PYTHON imports them from, as pip does when it installs a
# wheel. An editable install is never compiled, and where PYTHONDONTWRITEBYTECODE is set (this
# workplace's machines set it) every synsup command compiled its modules again: about 0.2 s of
# CPU before anything else, at each `synsup` command and in each benchmark.
# Usage: bash contrib/bytecode.sh PYTHON
set -euo pipefail
"$1" -c 'import compileall, os, sys, synsup; sys.exit(not compileall.compile_dir(os.path.dirname(synsup.__file__), quiet=1))'
