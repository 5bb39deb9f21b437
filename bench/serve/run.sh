#!/usr/bin/env bash
# Serving throughput, batched vs one request at a time: tests/serve/load_test.py against a model
# large enough that compute, not the Python client, bounds the rate (hidden 512, 4 layers,
# intermediate 1536, random weights; 400 requests of 16 tokens from 32 clients). Checks that every
# completion equals the request sent alone (exit 1 otherwise) and prints requests/s and tokens/s
# of --max-batch 32 and --max-batch 1 with their ratio.
#   bench/serve/run.sh [build/cpu/examples/serve/crossbatch_server] [out.json]
set -euo pipefail
cd "$(dirname "$0")/../.."
server=${1:-build/cpu/examples/serve/crossbatch_server}
out=${2:-bench/serve/results.json}
python3 tests/serve/load_test.py "$server" --requests 400 --clients 32 --tokens 16 \
  --hidden 512 --layers 4 --intermediate 1536 --max-batch 32 --json "$out"
