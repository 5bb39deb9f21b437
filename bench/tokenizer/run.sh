#!/usr/bin/env bash
# Tokenizer throughput, ours against the Python `tokenizers` library in one invocation: both encode the
# same few MB of mixed text line by line on one thread; prints a table of MB/s, the ratio, and whether
# the ids agree (checksums over every id).
#   bench/tokenizer/run.sh [MEGABYTES, default 4]
# BENCH_TOKENIZER_BIN may point at a built bench_tokenizer; otherwise it is compiled here with $CXX.
set -euo pipefail
cd "$(dirname "$0")/../.."
megabytes=${1:-4}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/tokenizer/make_bench_text.py "$work/text.txt" "$megabytes"
bin=${BENCH_TOKENIZER_BIN:-}
if [ -z "$bin" ]; then
  ${CXX:-c++} -std=c++20 -O2 -DNDEBUG -Iinclude bench/tokenizer/bench_tokenizer.cpp -o "$work/bench_tokenizer" \
    -lpcre2-8
  bin=$work/bench_tokenizer
fi
d=tests/data/text
specs=("smollm2=$d/smollm2/tokenizer.json" "llama3-style=$d/llama3/tokenizer.json"
  "qwen2-style=$d/qwen2/tokenizer.json" "gpt2-style=$d/gpt2/tokenizer.json" "minilm=$d/minilm/tokenizer.json")
"$bin" "$work/text.txt" "${specs[@]}" > "$work/ours.txt"
python3 bench/tokenizer/hf_tokenizer_bench.py "$work/text.txt" "${specs[@]}" > "$work/hf.txt"
echo "single thread, $(wc -c < "$work/text.txt") bytes in $(wc -l < "$work/text.txt") lines, MB/s of CPU time"
printf '%-14s %10s %18s %24s %8s %5s\n' tokenizer "ours" "tokenizers encode" "tokenizers encode_batch" "ratio" "ids"
join <(sort "$work/ours.txt") <(sort "$work/hf.txt") | while read -r name ours t1 c1 enc batch t2 c2; do
  best=$(python3 -c "print(max($enc, $batch))")
  ratio=$(python3 -c "print(f'{$ours / $best:.1f}x')")
  same=$([ "$t1" = "$t2" ] && [ "$c1" = "$c2" ] && echo same || echo DIFF)
  printf '%-14s %10s %18s %24s %8s %5s\n' "$name" "$ours" "$enc" "$batch" "$ratio" "$same"
done
