#!/usr/bin/env bash
# The paraphrase-fusion experiment with a built paraphrase_fusion binary, into one JSON:
#   examples/paraphrase_fusion/run_experiment.sh BIN OUT.json [flags for every run...]
# 1. validation split: fused with shared tail 0 / 3 x natural / restarted positions, 1..5
#    paraphrases; the variant with the best mean accuracy over 2..5 paraphrases is chosen;
# 2. test split, once: every method for 1..5 paraphrases with the chosen variant, weighted_* over
#    $SEEDS (default "0 1 2") confidence seeds of $SAMPLES (default 100) samples.
# OUT.json = {"choice", "validation": {variant: results}, "test": results} (records without
# generation text and answers). Small CPU check: SAMPLES=4 SEEDS="0 1" ... BIN out.json --limit 8 --device cpu
# tools/device/fusion.sh runs this on the H200; make_results.py turns OUT.json into RESULTS.md.
set -uo pipefail
bin=$1 dst=$2
shift 2
work=$(mktemp -d /tmp/fusion_exp.XXXX)
status=0
for tail in 0 3; do
  for restart in 0 1; do
    flags=(--shared_tail "$tail")
    ((restart)) && flags+=(--restart_positions)
    "$bin" "$@" --split validation --method fused --num_paraphrases 1-5 "${flags[@]}" \
      --json "$work/val_t${tail}_r${restart}.json" || status=1
  done
done
choice=$(python3 - "$work" <<'PY'
import glob, json, os, sys
best = None
for f in sorted(glob.glob(os.path.join(sys.argv[1], "val_t*_r*.json"))):
    r = json.load(open(f))
    acc = [m["accuracy"] for m in r["methods"] if m["method"] == "fused" and m["num_paraphrases"] >= 2]
    score = sum(acc) / len(acc)
    name = os.path.basename(f)[4:-5]
    print(f"validation {name}: mean fused accuracy over 2..5 paraphrases {score:.4f}", file=sys.stderr)
    if best is None or score > best[0]:
        best = (score, name)
print(best[1])
PY
)
echo "chosen fused variant: $choice" >&2
tail=${choice#t}
tail=${tail%%_*}
flags=(--shared_tail "$tail")
[ "${choice##*_r}" = 1 ] && flags+=(--restart_positions)
# shellcheck disable=SC2086
"$bin" "$@" --split test --method all --num_paraphrases 1-5 --confidence_samples "${SAMPLES:-100}" \
  --seeds ${SEEDS:-0 1 2} "${flags[@]}" --json "$work/test.json" || status=1
python3 - "$work" "$dst" "$choice" <<'PY'
import glob, json, os, sys
work, dst, choice = sys.argv[1:4]
def slim(p):
    if not os.path.exists(p):
        return None
    r = json.load(open(p))
    for rec in r["records"]:  # the answers are the data set's (by uuid)
        rec.pop("generation", None)
        rec.pop("answers", None)
    return r
out = {"choice": choice,
       "validation": {os.path.basename(f)[4:-5]: slim(f)
                      for f in sorted(glob.glob(os.path.join(work, "val_t*_r*.json")))},
       "test": slim(os.path.join(work, "test.json"))}
json.dump(out, open(dst, "w"))
print(f"wrote {dst} ({os.path.getsize(dst)} bytes)", file=sys.stderr)
PY
rm -rf "$work"
exit $status
