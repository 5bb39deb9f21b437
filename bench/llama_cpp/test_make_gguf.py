#!/usr/bin/env python3
"""Self-check of bench/llama_cpp/make_gguf.py (plain script): exits 1 on the first failure.

For a tiny llama (tied head) and qwen2 (untied, qkv biases) config in BF16 and F16, the GGUF it
writes reads back through the project's own GGUF converter (tools/convert.py, checked against real
llama.cpp files in tools/test_convert.py) as the same config.json and every tensor of the expected
shape; matrices are stored in the asked type with std ~0.02 and no NaN, norms are F32 ones, the
vocabulary has the config's size with the 256 byte symbols ('Ċ' = newline among them). A config
with a field missing or an unsupported model_type exits non-zero naming it.
"""
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import gguf

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import convert  # noqa: E402

BASE = {"vocab_size": 300, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 96, "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5, "rope_theta": 100000.0}


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)


def make(tmp, cfg, gtype, name):
    cpath = tmp / (name + ".json")
    cpath.write_text(json.dumps(cfg))
    out = tmp / (name + ".gguf")
    r = subprocess.run([sys.executable, str(HERE / "make_gguf.py"), str(cpath), str(out), "--type", gtype],
                       capture_output=True, text=True)
    return r, out


def main():
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        for kind, tied in (("llama", True), ("qwen2", False)):
            for gtype, want in (("bf16", gguf.GGMLQuantizationType.BF16), ("f16", gguf.GGMLQuantizationType.F16)):
                cfg = dict(BASE, model_type=kind, tie_word_embeddings=tied)
                name = "%s_%s" % (kind, gtype)
                r, path = make(tmp, cfg, gtype, name)
                check(r.returncode == 0, "%s: make_gguf failed: %s" % (name, r.stderr))
                reader = gguf.GGUFReader(str(path))
                types = {t.name: t.tensor_type for t in reader.tensors}
                check(types["token_embd.weight"] == want and types["blk.0.attn_q.weight"] == want,
                      "%s: matrices stored as %s" % (name, types["token_embd.weight"]))
                check(types["blk.1.ffn_norm.weight"] == gguf.GGMLQuantizationType.F32, "%s: norms F32" % name)
                check(("output.weight" in types) == (not tied), "%s: output.weight iff untied" % name)
                check(("blk.0.attn_q.bias" in types) == (kind == "qwen2"), "%s: q bias iff qwen2" % name)
                tok = reader.fields["tokenizer.ggml.tokens"]
                words = [bytes(tok.parts[i]).decode("utf-8") for i in tok.data]
                check(len(words) == cfg["vocab_size"] and len(set(words)) == len(words),
                      "%s: %d distinct tokens" % (name, len(set(words))))
                check("Ċ" in words[:256] and "Ġ" in words[:256], "%s: byte symbols" % name)

                out = tmp / (name + "_npy")
                out.mkdir()
                convert.convert_gguf(path, out, "float32", with_tokenizer=False)
                back = json.loads((out / "config.json").read_text())
                diffs = {k: (v, back.get(k)) for k, v in cfg.items() if back.get(k) != v}
                check(not diffs, "%s: config differs after conversion: %s" % (name, diffs))
                C, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
                F, V, dh = cfg["intermediate_size"], cfg["vocab_size"], C // H
                shapes = {"model.embed_tokens.weight": (V, C), "model.norm.weight": (C,)}
                for i in range(cfg["num_hidden_layers"]):
                    p = "model.layers.%d." % i
                    shapes.update({p + "self_attn.q_proj.weight": (H * dh, C),
                                   p + "self_attn.k_proj.weight": (KV * dh, C),
                                   p + "self_attn.v_proj.weight": (KV * dh, C),
                                   p + "self_attn.o_proj.weight": (C, H * dh),
                                   p + "mlp.gate_proj.weight": (F, C), p + "mlp.up_proj.weight": (F, C),
                                   p + "mlp.down_proj.weight": (C, F),
                                   p + "input_layernorm.weight": (C,),
                                   p + "post_attention_layernorm.weight": (C,)})
                    if kind == "qwen2":
                        shapes[p + "self_attn.q_proj.bias"] = (H * dh,)
                if not tied:
                    shapes["lm_head.weight"] = (V, C)
                for t, shape in shapes.items():
                    f = out / (t + ".npy")
                    check(f.exists(), "%s: %s missing after conversion" % (name, t))
                    a = np.load(f)
                    check(a.shape == shape, "%s: %s has shape %s, want %s" % (name, t, a.shape, shape))
                    check(np.isfinite(a).all(), "%s: %s not finite" % (name, t))
                    if t.endswith("norm.weight"):
                        check((a == 1).all(), "%s: %s not ones" % (name, t))
                    elif a.ndim == 2:
                        check(0.018 < a.std() < 0.022, "%s: %s std %.4f" % (name, t, a.std()))
                print("ok: %s" % name)
        r, _ = make(tmp, {k: v for k, v in BASE.items() if k != "hidden_size"} | {"model_type": "llama"}, "bf16", "bad1")
        check(r.returncode != 0 and "hidden_size" in r.stderr, "missing field named: %r" % r.stderr)
        r, _ = make(tmp, dict(BASE, model_type="gpt2"), "bf16", "bad2")
        check(r.returncode != 0 and "gpt2" in r.stderr, "unsupported model_type named: %r" % r.stderr)
        print("ok: bad configs refused")


if __name__ == "__main__":
    main()
