#!/usr/bin/env bash
# llama.cpp next to crossbatch on this machine's CPU: moved to bench/cpu_decode/run.sh (float32 and
# 16-bit weights, 1 and 2 threads, the streaming roofline, LOAD=1 for a loaded machine); this name
# stays for the commands already written down. Same environment variables (MODELS, THREADS, REPS).
exec "$(dirname "$0")/../cpu_decode/run.sh" "$@"
