#!/usr/bin/env bash
# Prints the Python 3.11 interpreter `make` builds the venv on (README, "Which Python").
# The distribution's own comes first: Debian and Ubuntu build it with profile-guided and
# link-time optimisation, which cuts sandan's CPU per declaration by about a quarter against
# a plain source build (pyenv's default); a candidate must be 3.11 and able to make a venv.
set -uo pipefail
for candidate in /usr/bin/python3.11 python3.11 python3; do
    path=$(command -v "$candidate") || continue
    if "$path" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
        echo "$path"
        exit 0
    fi
done
echo python3  # none fits: the venv step names what is wrong
