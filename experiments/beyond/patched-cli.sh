#!/bin/bash
# The meprop command of this commit with an experiment's patch applied, for the scripts that test a change by
# intervention:  cli=$(experiments/beyond/patched-cli.sh WORK PATCH)
# WORK/source is a scratch worktree of HEAD (made once, kept across sessions so that runs resume on one build);
# PATCH is applied to it unless it has been, and the build's output goes to stderr. Prints the command.
set -euo pipefail
work=$1; patch=$(realpath "$2")
[ -d "$work/source" ] || git worktree add --detach "$work/source" HEAD >&2
# A clean worktree has not had the patch yet (or lost it): apply it, or fail.
git -C "$work/source" diff --quiet && git -C "$work/source" apply "$patch"
git -C "$work/source" diff --quiet && { echo "$(basename "$patch") did not apply" >&2; exit 1; }
dotnet build "$work/source/src/MeProp.Cli" -c Release -v q -nologo >&2
echo "dotnet $work/source/src/MeProp.Cli/bin/Release/net10.0/MeProp.Cli.dll"
