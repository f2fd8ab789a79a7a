# shellcheck shell=bash
# Sourced first by every bash script in scripts/: strict mode, and never a silent exit. Under
# `set -e` a failing command ends the script; the ERR trap says which command, with its status
# and line, so a failure always names its cause. (Deliberate stops print their own line and
# `exit`, which the trap does not report.)
set -Eeuo pipefail
trap 'echo "${0##*/}: stopped: \"${BASH_COMMAND}\" failed (exit status $?, line ${LINENO})" >&2' ERR
