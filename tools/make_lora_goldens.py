#!/usr/bin/env python3
"""Makes the LoRA training goldens under tests/data/lora/ with PyTorch + transformers + peft.

For each case a tiny random model is built with transformers (LlamaForCausalLM with grouped-query
attention and a tied head, Qwen2ForCausalLM with q/k/v biases, GPT2LMHeadModel with LayerNorm,
gelu_new and learned positions; eager attention, a large initializer_range and noisy 1-D
parameters as in make_goldens.py), saved and converted with tools/convert.py into
<case>/model/ (float32 npy + config.json). peft wraps it with LoRA (r 4, alpha 8, dropout 0 so
the run is deterministic; the 7 projections of llama/qwen2, GPT-2's c_attn, attn.c_proj, c_fc,
mlp.c_proj), every lora_B is set non-zero (so that lora_A's gradient is not trivially zero), and on
a right-padded batch it records:

  <case>/adapter/adapter_config.json   peft's own file
  <case>/adapter/<peft name>.npy       the adapters before the step (peft's state-dict names,
                                       base_model.model....lora_A.weight)
  <case>/grad/<peft name>.npy          d loss / d adapter
  <case>/step/<peft name>.npy          the adapters after one torch.optim.AdamW step
  <case>/batch.json                    ids, valid, positions, targets (B*T, row-major; target t is
                                       the token slot t predicts, -1 where labels are -100 or
                                       padding), the loss and the AdamW settings

The loss is the teacher-forced cross-entropy of transformers' causal LM head: logits[:, :-1]
against labels[:, 1:], mean over labels != -100, with labels -100 on padding and on one real
token (an ignored target inside a row).

    make_lora_goldens.py [--out tests/data/lora]

Needs torch, transformers and peft (CPU is enough).
"""
import argparse
import json
import pathlib
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import convert  # noqa: E402

B, T = 3, 7
LENGTHS = (7, 5, 3)
PAD_ID = 0
RANK, ALPHA = 4, 8
LR, WEIGHT_DECAY = 1e-2, 0.01

CASES = {
    "llama_gqa_tied": dict(
        cls="LlamaForCausalLM", seed=21,
        targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        config=dict(model_type="llama", vocab_size=64, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
                    max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
                    tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=PAD_ID,
                    initializer_range=0.3)),
    "qwen2": dict(
        cls="Qwen2ForCausalLM", seed=22,
        targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        config=dict(model_type="qwen2", vocab_size=64, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
                    max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=1000000.0,
                    use_sliding_window=False, tie_word_embeddings=False, bos_token_id=1,
                    eos_token_id=2, pad_token_id=PAD_ID, initializer_range=0.3)),
    "gpt2": dict(
        cls="GPT2LMHeadModel", seed=23,
        targets=["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"],
        config=dict(model_type="gpt2", vocab_size=64, n_positions=64, n_embd=32, n_layer=2,
                    n_head=4, n_inner=64, activation_function="gelu_new", layer_norm_epsilon=1e-5,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # train() must not drop
                    tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=PAD_ID,
                    initializer_range=0.3)),
}


def build_model(spec):
    import torch
    import transformers

    cfg = dict(spec["config"])
    model_type = cfg.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **cfg)
    torch.manual_seed(spec["seed"])
    model = getattr(transformers, spec["cls"])._from_config(config, attn_implementation="eager",
                                                            dtype=torch.float32)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


def batch(vocab, seed):
    rng = np.random.default_rng(seed)
    ids = np.full((B, T), PAD_ID, np.int64)
    mask = np.zeros((B, T), np.int64)
    for b, n in enumerate(LENGTHS):
        ids[b, :n] = rng.integers(3, vocab, size=n)
        mask[b, :n] = 1
    pos = np.tile(np.arange(T, dtype=np.int64), (B, 1))
    labels = np.where(mask == 1, ids, -100)
    labels[0, 3] = -100  # an ignored target inside a row
    return ids, mask, pos, labels


def make_case(name, spec, root, tmp):
    import peft
    import torch

    model = build_model(spec)
    hf_dir = tmp / name
    model.save_pretrained(str(hf_dir), safe_serialization=True)
    case_dir = root / name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    convert.convert(hf_dir, case_dir / "model", dtype="float32", force=True)
    (case_dir / "model" / "generation_config.json").unlink(missing_ok=True)

    gpt2 = spec["config"]["model_type"] == "gpt2"
    lcfg = peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=spec["targets"],
                           fan_in_fan_out=gpt2, bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(spec["seed"] + 1)
    pm = peft.get_peft_model(model, lcfg)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.3)
    pm.train()  # every dropout is 0: train mode changes nothing but is what a training run uses

    def state():  # peft's saved names -> arrays
        sd = peft.get_peft_model_state_dict(pm)
        return {k: v.detach().float().numpy().copy() for k, v in sd.items()}

    adapter_dir = tmp / (name + "_adapter")
    pm.save_pretrained(str(adapter_dir))
    (case_dir / "adapter").mkdir()
    shutil.copyfile(adapter_dir / "adapter_config.json", case_dir / "adapter" / "adapter_config.json")
    before = state()
    for k, v in before.items():
        np.save(case_dir / "adapter" / f"{k}.npy", v)

    ids, mask, pos, labels = batch(spec["config"]["vocab_size"], spec["seed"])
    logits = pm(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                position_ids=torch.tensor(pos)).logits
    v = logits.shape[-1]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, v),
                                             torch.tensor(labels[:, 1:]).reshape(-1), ignore_index=-100)
    loss.backward()
    params = {n: p for n, p in pm.named_parameters() if p.requires_grad}
    assert params and all("lora_" in n for n in params), "only the adapters may be trainable"
    # named_parameters carry the adapter name ("...lora_A.default.weight"); peft's saved names drop it
    def saved_name(n):
        return n.replace(".default.weight", ".weight")
    (case_dir / "grad").mkdir()
    for n, p in params.items():
        g = p.grad.detach().float().numpy()
        assert np.abs(g).max() > 0, f"{n}: zero gradient"
        np.save(case_dir / "grad" / f"{saved_name(n)}.npy", g)
    opt = torch.optim.AdamW(list(params.values()), lr=LR, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=WEIGHT_DECAY)
    opt.step()
    (case_dir / "step").mkdir()
    for k, a in state().items():
        np.save(case_dir / "step" / f"{k}.npy", a)
    assert set(before) == {saved_name(n) for n in params}

    targets = np.full((B, T), -1, np.int64)
    targets[:, :-1] = np.where(labels[:, 1:] == -100, -1, labels[:, 1:])
    info = dict(batch=B, length=T, ids=ids.ravel().tolist(), valid=mask.ravel().tolist(),
                positions=pos.ravel().tolist(), targets=targets.ravel().tolist(),
                loss=float(loss.item()), tokens=int((targets >= 0).sum()), rank=RANK, alpha=ALPHA,
                lr=LR, weight_decay=WEIGHT_DECAY, betas=[0.9, 0.999], eps=1e-8,
                versions=dict(torch=torch.__version__, peft=peft.__version__))
    (case_dir / "batch.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"{name}: loss {loss.item():.6f} over {info['tokens']} tokens, {len(params)} adapter "
          f"matrices")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent.parent /
                                         "tests" / "data" / "lora"))
    args = ap.parse_args()
    root = pathlib.Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in CASES.items():
            make_case(name, spec, root, pathlib.Path(tmp))


if __name__ == "__main__":
    main()
