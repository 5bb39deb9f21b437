#!/usr/bin/env python3
"""Makes the reference outputs under tests/data/goldens/ with Hugging Face transformers itself.

For each case a tiny random-initialised model (torch.manual_seed) is built with transformers, saved
in Hugging Face format (safetensors) to a temporary directory, converted with tools/convert.py into
tests/data/goldens/<case>/model/ (float32), and its outputs are recorded as .npy next to model/.
Every model uses eager attention. Weights are drawn with a large initializer_range and every 1-D
parameter (norm weights, biases) gets noise, so that logits are far from 0, greedy continuations
vary, and a norm or bias that is applied wrongly shows.

Decoder cases (gpt2, llama_gqa_tied, llama3_scaled_untied, qwen2), batch B=3, T=10, LEFT padded
with pad id 0 (row 0 full, row 1 has 3 pads, row 2 has 6):
  input_ids.npy       (B, T) int64
  attention_mask.npy  (B, T) int64, 0 on the pads
  position_ids.npy    (B, T) int64, cumsum(mask) - 1 clamped at 0 (what generate() computes)
  logits.npy          (B, T, V) float32 = model(input_ids, attention_mask, position_ids).logits
  hidden_states.npy   (L+1, B, T, C) float32, output_hidden_states: entry 0 is the embedding output
                      (GPT-2: wte + wpe), entry i the output of block i, EXCEPT the last entry,
                      which transformers returns AFTER the final norm (ln_f / model.norm), i.e. it
                      equals last_hidden_state, not the raw output of the last block.
  greedy.npy          (B, 8) int64, the 8 new tokens of generate(do_sample=False, max_new_tokens=8,
                      min_new_tokens=8, eos disabled) on the same left-padded batch: plain argmax
                      at every step (checked against a cache-free argmax loop).
Values at pad positions (logits, hidden states) are whatever transformers computes for a query
that may attend to nothing; compare only positions where attention_mask is 1.

bert (BertModel with pooler), B=3, T=10, RIGHT padded (lengths 10, 7, 4):
  input_ids.npy, attention_mask.npy, token_type_ids.npy (B, T) int64
  last_hidden_state.npy (B, T, C), pooler_output.npy (B, C), hidden_states.npy (L+1, B, T, C)
  (entry 0 = embeddings after their LayerNorm; BERT has no final norm), attentions.npy
  (L, B, H, T, T) softmax probabilities. Pad positions are computed normally in BERT (the mask
  only hides pad keys), so they are comparable too.

llama3_scaled_untied also gets config_v4.json: the same config in the transformers-4 layout
(top-level rope_theta + rope_scaling) next to model/, checked to give identical logits.

    make_goldens.py [--out tests/data/goldens]

Writes <out>/manifest.json (cases, tensors, shapes, versions of torch/transformers) and prints a
summary. Needs torch and transformers (CPU is enough).
"""
import argparse
import copy
import json
import pathlib
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import convert  # noqa: E402

B, T, NEW = 3, 10, 8
PADS = (0, 3, 6)
PAD_ID = 0

CASES = {
    "gpt2": dict(
        family="gpt2", cls="GPT2LMHeadModel", seed=11,
        config=dict(model_type="gpt2", vocab_size=256, n_positions=128, n_embd=64, n_layer=2, n_head=4,
                    n_inner=128, activation_function="gelu_new", layer_norm_epsilon=1e-5,
                    tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=PAD_ID,
                    initializer_range=0.3)),
    "llama_gqa_tied": dict(
        family="llama", cls="LlamaForCausalLM", seed=12,
        config=dict(model_type="llama", vocab_size=256, hidden_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                    max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0,
                    tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=PAD_ID,
                    initializer_range=0.3)),
    "llama3_scaled_untied": dict(
        family="llama", cls="LlamaForCausalLM", seed=13,
        config=dict(model_type="llama", vocab_size=320, hidden_size=64, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=32, intermediate_size=176,
                    max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=500000.0,
                    rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                      high_freq_factor=4.0, original_max_position_embeddings=32),
                    tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=PAD_ID,
                    initializer_range=0.3)),
    "qwen2": dict(
        family="qwen2", cls="Qwen2ForCausalLM", seed=14,
        config=dict(model_type="qwen2", vocab_size=288, hidden_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, intermediate_size=160,
                    max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=1000000.0,
                    use_sliding_window=False, tie_word_embeddings=False, bos_token_id=1,
                    eos_token_id=2, pad_token_id=PAD_ID, initializer_range=0.3)),
    "bert": dict(
        family="bert", cls="BertModel", seed=15,
        config=dict(model_type="bert", vocab_size=256, hidden_size=64, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=128, max_position_embeddings=128,
                    type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=PAD_ID,
                    initializer_range=0.3)),
}


def build_model(case, seed):
    import torch
    import transformers

    spec = CASES[case]
    cfg = dict(spec["config"])
    model_type = cfg.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **cfg)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = getattr(transformers, spec["cls"])._from_config(config, attn_implementation="eager",
                                                            dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # norm weights around 1, biases around 0: both made non-trivial
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def decoder_inputs(vocab, rng):
    ids = rng.integers(3, vocab, size=(B, T)).astype(np.int64)
    mask = np.ones((B, T), np.int64)
    for b, pad in enumerate(PADS):
        ids[b, :pad] = PAD_ID
        mask[b, :pad] = 0
    pos = np.clip(np.cumsum(mask, axis=1) - 1, 0, None).astype(np.int64)
    return ids, mask, pos


def greedy_loop(model, ids, mask, steps):
    """Cache-free greedy decoding with mask-derived positions: what greedy.npy must equal."""
    import torch

    ids, mask = torch.tensor(ids), torch.tensor(mask)
    out, margin = [], float("inf")
    for _ in range(steps):
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            last = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]
        top2 = last.topk(2, dim=-1).values
        margin = min(margin, float((top2[:, 0] - top2[:, 1]).min()))
        nxt = last.argmax(-1)
        out.append(nxt)
        ids = torch.cat([ids, nxt[:, None]], 1)
        mask = torch.cat([mask, torch.ones_like(nxt)[:, None]], 1)
    return torch.stack(out, 1).numpy(), margin


def decoder_case(case, model, seed, checks):
    import torch
    from transformers import GenerationConfig

    vocab = model.config.vocab_size
    rng = np.random.default_rng(seed)
    ids, mask, pos = decoder_inputs(vocab, rng)
    with torch.no_grad():
        res = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    position_ids=torch.tensor(pos), output_hidden_states=True)
        base = model.base_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                                position_ids=torch.tensor(pos))
    logits = res.logits.float().numpy()
    hidden = torch.stack(res.hidden_states).float().numpy()
    # The last hidden_states entry is after the final norm: it equals last_hidden_state.
    checks["last_hidden_is_normed"] = float(np.abs(hidden[-1] - base.last_hidden_state.numpy()).max())
    assert checks["last_hidden_is_normed"] == 0.0, checks

    # Batch invariance: each row's real positions match an unpadded single-row forward.
    worst = 0.0
    for b, pad in enumerate(PADS):
        with torch.no_grad():
            alone = model(input_ids=torch.tensor(ids[b:b + 1, pad:])).logits[0].numpy()
        worst = max(worst, float(np.abs(alone - logits[b, pad:]).max()))
    checks["padded_vs_alone_max_abs"] = worst
    assert worst < 1e-4, f"{case}: left-padded rows differ from unpadded ones by {worst}"

    gen_cfg = GenerationConfig(do_sample=False, max_new_tokens=NEW, min_new_tokens=NEW, eos_token_id=None,
                               pad_token_id=PAD_ID, bos_token_id=None)
    with torch.no_grad():
        gen = model.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                             generation_config=gen_cfg)
    greedy = gen[:, T:].numpy().astype(np.int64)
    assert greedy.shape == (B, NEW), greedy.shape
    loop, checks["greedy_min_top2_margin"] = greedy_loop(model, ids, mask, NEW)
    assert (loop == greedy).all(), f"{case}: generate() {greedy} != argmax loop {loop}"

    real = mask.astype(bool)
    checks["logit_std_real_positions"] = float(logits[real].std())
    checks["logit_absmax"] = float(np.abs(logits[real]).max())
    assert checks["logit_std_real_positions"] > 0.5, checks
    return {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "logits": logits,
            "hidden_states": hidden, "greedy": greedy}


def bert_case(case, model, seed, checks):
    import torch

    rng = np.random.default_rng(seed)
    ids = rng.integers(4, model.config.vocab_size, size=(B, T)).astype(np.int64)
    mask = np.zeros((B, T), np.int64)
    types = np.zeros((B, T), np.int64)
    for b, pad in enumerate(PADS):
        n = T - pad
        ids[b, 0], ids[b, n - 1] = 2, 3  # a [CLS]-like and a [SEP]-like id
        ids[b, n:] = PAD_ID
        mask[b, :n] = 1
        types[b, n // 2:n] = 1
    with torch.no_grad():
        res = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    token_type_ids=torch.tensor(types), output_hidden_states=True, output_attentions=True)
    hidden = torch.stack(res.hidden_states).numpy()
    checks["last_hidden_equals_hidden_states_last"] = float(np.abs(hidden[-1] - res.last_hidden_state.numpy()).max())
    worst = 0.0
    for b, pad in enumerate(PADS):
        n = T - pad
        with torch.no_grad():
            alone = model(input_ids=torch.tensor(ids[b:b + 1, :n]), token_type_ids=torch.tensor(types[b:b + 1, :n]))
        worst = max(worst, float(np.abs(alone.last_hidden_state[0].numpy() - res.last_hidden_state[b, :n].numpy()).max()))
    checks["padded_vs_alone_max_abs"] = worst
    assert worst < 1e-4, f"{case}: right-padded rows differ from unpadded ones by {worst}"
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
            "last_hidden_state": res.last_hidden_state.numpy(), "pooler_output": res.pooler_output.numpy(),
            "attentions": torch.stack(res.attentions).numpy(), "hidden_states": hidden}


def v4_config(config_path):
    """The transformers-5 config.json in the transformers-4 layout: rope_theta + rope_scaling."""
    cfg = json.loads(pathlib.Path(config_path).read_text())
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = None if rope.get("rope_type", "default") == "default" else rope
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    cfg["transformers_version"] = "4.57.0"
    return cfg


def make_case(case, root, tmp):
    import torch

    spec = CASES[case]
    # Seeds are tried in turn until the greedy continuations are varied (at least 4 distinct tokens
    # per row), never produce the pad id, and every argmax wins by at least 0.05 over the runner-up,
    # so that a test cannot pass by luck, confuse pads, or flip on float rounding.
    for attempt in range(50):
        seed = spec["seed"] + 1000 * attempt
        model = build_model(case, seed)
        checks = {}
        tensors = (bert_case if spec["family"] == "bert" else decoder_case)(case, model, seed, checks)
        greedy = tensors.get("greedy")
        if greedy is None or (checks["greedy_min_top2_margin"] >= 0.05 and
                              all(len(set(r.tolist())) >= 4 and PAD_ID not in r for r in greedy)):
            break
    else:
        raise RuntimeError(f"{case}: no seed gave varied greedy continuations")
    hf_dir = tmp / case
    model.save_pretrained(str(hf_dir), safe_serialization=True)
    case_dir = root / case
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    convert.convert(hf_dir, case_dir / "model", dtype="float32", force=True)
    (case_dir / "model" / "generation_config.json").unlink(missing_ok=True)  # not needed by the tests

    # The converted directory, read back into transformers, must reproduce the outputs exactly.
    import transformers

    back = convert.load_npy_model(case_dir / "model", getattr(transformers, spec["cls"]))
    with torch.no_grad():
        kw = {k: torch.tensor(tensors[k]) for k in ("input_ids", "attention_mask", "position_ids", "token_type_ids")
              if k in tensors}
        again = back(**kw)
    key, ref = ("logits", tensors["logits"]) if "logits" in tensors else ("last_hidden_state", tensors["last_hidden_state"])
    checks["converted_roundtrip_max_abs"] = float(np.abs(getattr(again, key).numpy() - ref).max())
    assert checks["converted_roundtrip_max_abs"] == 0.0, checks

    if case == "llama3_scaled_untied":
        v4 = v4_config(case_dir / "model" / "config.json")
        (case_dir / "config_v4.json").write_text(json.dumps(v4, indent=2) + "\n")
        with tempfile.TemporaryDirectory() as d:
            shutil.copytree(case_dir / "model", d, dirs_exist_ok=True)
            shutil.copyfile(case_dir / "config_v4.json", pathlib.Path(d) / "config.json")
            v4_model = convert.load_npy_model(d, getattr(transformers, spec["cls"]))
            with torch.no_grad():
                v4_logits = v4_model(**kw).logits.numpy()
        checks["config_v4_max_abs"] = float(np.abs(v4_logits - tensors["logits"]).max())
        assert checks["config_v4_max_abs"] == 0.0, checks
        # The scaling must matter: the same model without rope scaling gives other logits.
        plain = copy.deepcopy(model.config)
        plain.rope_parameters = {"rope_type": "default", "rope_theta": plain.rope_parameters["rope_theta"]}
        unscaled = getattr(transformers, spec["cls"])._from_config(plain, attn_implementation="eager")
        unscaled.load_state_dict(model.state_dict())
        with torch.no_grad():
            checks["without_rope_scaling_max_abs"] = float(
                np.abs(unscaled.eval()(**kw).logits.numpy() - tensors["logits"]).max())
        assert checks["without_rope_scaling_max_abs"] > 1e-2, checks

    for name, arr in tensors.items():
        np.save(case_dir / f"{name}.npy", arr)
    entry = {
        "family": spec["family"], "class": spec["cls"], "model_dir": f"{case}/model", "seed": seed,
        "num_weights": len(list((case_dir / "model").glob("*.npy"))),
        "tensors": {n: {"file": f"{case}/{n}.npy", "dtype": str(a.dtype), "shape": list(a.shape)}
                    for n, a in tensors.items()},
        "checks": checks,
    }
    if case == "llama3_scaled_untied":
        entry["config_variants"] = {"v5_rope_parameters": f"{case}/model/config.json",
                                    "v4_rope_scaling": f"{case}/config_v4.json"}
    return entry


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent.parent / "tests/data/goldens"))
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = ap.parse_args()

    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)  # reproducible reductions
    root = pathlib.Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            manifest["cases"][case] = make_case(case, root, pathlib.Path(tmp))
            c = manifest["cases"][case]["checks"]
            print(f"{case}: " + ", ".join(f"{k}={v:.3g}" for k, v in c.items()))
    manifest.update({
        "generator": "tools/make_goldens.py",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "numpy": np.__version__, "python": sys.version.split()[0]},
        "batch": {"B": B, "T": T, "new_tokens": NEW, "pads_per_row": list(PADS), "pad_id": PAD_ID,
                  "decoder_padding": "left", "bert_padding": "right"},
        "attn_implementation": "eager",
    })
    manifest["cases"] = {k: manifest["cases"][k] for k in CASES if k in manifest["cases"]}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    print(f"wrote {root} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
