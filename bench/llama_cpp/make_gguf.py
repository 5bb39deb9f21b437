#!/usr/bin/env python3
"""A random-weight GGUF of a Hugging Face config's shape, for llama.cpp next to bench_decode.

bench_decode runs random-weight models of real shapes (`bench_decode --config smollm2-135m` prints
the config.json it builds); llama.cpp's llama-bench and llama-batched-bench need the same shape as a
GGUF. This writes one with the `gguf` package: architecture llama or qwen2 (qkv biases), every
matrix in F16, BF16 or F32 (normal, std 0.02), norms 1 (F32, as llama.cpp keeps them), the LM head
tied to the embedding when the config ties it, and a stand-in byte-level BPE vocabulary of the
config's size (the 256 byte symbols, then placeholders; one merge), since the benchmarks feed random
token ids and never tokenize text. Speed depends on the shapes and types, not on the values.

  bench_decode --config smollm2-135m > smollm2.json
  python3 bench/llama_cpp/make_gguf.py smollm2.json smollm2-bf16.gguf --type bf16
"""
import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools"))
from convert import f32_to_bf16_bits  # noqa: E402

try:
    import gguf
except ImportError:  # on the device: the gguf-py of the packed llama.cpp source
    sys.exit("make_gguf: the gguf package is missing (pip install gguf, or PYTHONPATH=<llama.cpp>/gguf-py)")

TYPES = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
         "bf16": gguf.GGMLQuantizationType.BF16}
FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
              "bf16": gguf.LlamaFileType.MOSTLY_BF16}


def byte_symbols():
    """GPT-2's byte-to-unicode table: the 256 symbols a byte-level BPE vocabulary starts from."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def field(cfg, *names, default=None):
    for n in names:
        if n in cfg:
            return cfg[n]
    if default is not None:
        return default
    sys.exit("make_gguf: the config has none of %s" % ", ".join(names))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a Hugging Face config.json (model_type llama or qwen2)")
    ap.add_argument("out", help="the GGUF to write")
    ap.add_argument("--type", default="bf16", choices=sorted(TYPES))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    try:
        with open(a.config, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit("make_gguf: %s: %s" % (a.config, e))
    kind = cfg.get("model_type")
    if kind not in ("llama", "qwen2"):
        sys.exit("make_gguf: %s: model_type %r (llama or qwen2 only)" % (a.config, kind))
    vocab = int(field(cfg, "vocab_size"))
    C = int(field(cfg, "hidden_size"))
    L = int(field(cfg, "num_hidden_layers"))
    H = int(field(cfg, "num_attention_heads"))
    KV = int(field(cfg, "num_key_value_heads", default=H))
    F = int(field(cfg, "intermediate_size"))
    dh = int(cfg.get("head_dim") or C // H)
    ctx = int(field(cfg, "max_position_embeddings"))
    tied = bool(cfg.get("tie_word_embeddings", False))
    if vocab < 258:
        sys.exit("make_gguf: vocab_size %d is below the 256 byte symbols + 2 specials" % vocab)

    rng = np.random.default_rng(a.seed)
    qtype = TYPES[a.type]
    w = gguf.GGUFWriter(a.out, kind)
    w.add_name("random %s (%d layers, hidden %d)" % (kind, L, C))
    w.add_context_length(ctx)
    w.add_embedding_length(C)
    w.add_block_count(L)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_key_length(dh)
    w.add_value_length(dh)
    w.add_rope_dimension_count(dh)
    w.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    w.add_file_type(FILE_TYPES[a.type])

    symbols = byte_symbols()
    tokens = symbols + ["ĠĠ"] + ["<t%d>" % i for i in range(257, vocab - 2)] + ["<s>", "</s>"]
    types = [gguf.TokenType.NORMAL] * (vocab - 2) + [gguf.TokenType.CONTROL] * 2
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["Ġ Ġ"])
    w.add_bos_token_id(vocab - 2)
    w.add_eos_token_id(vocab - 1)
    w.add_add_bos_token(False)

    def matrix(name, rows, cols):  # (rows, cols) row-major = GGUF ne {cols, rows}
        x = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02)
        if a.type == "bf16":
            w.add_tensor(name, f32_to_bf16_bits(x), raw_dtype=qtype)
        elif a.type == "f16":
            w.add_tensor(name, x.astype(np.float16))
        else:
            w.add_tensor(name, x)

    def vector(name, n, value=None):
        x = np.full(n, value, np.float32) if value is not None else \
            (rng.standard_normal(n, dtype=np.float32) * 0.02)
        w.add_tensor(name, x)

    matrix("token_embd.weight", vocab, C)
    for i in range(L):
        p = "blk.%d." % i
        vector(p + "attn_norm.weight", C, 1.0)
        matrix(p + "attn_q.weight", H * dh, C)
        matrix(p + "attn_k.weight", KV * dh, C)
        matrix(p + "attn_v.weight", KV * dh, C)
        if kind == "qwen2":
            vector(p + "attn_q.bias", H * dh)
            vector(p + "attn_k.bias", KV * dh)
            vector(p + "attn_v.bias", KV * dh)
        matrix(p + "attn_output.weight", C, H * dh)
        vector(p + "ffn_norm.weight", C, 1.0)
        matrix(p + "ffn_gate.weight", F, C)
        matrix(p + "ffn_up.weight", F, C)
        matrix(p + "ffn_down.weight", C, F)
    vector("output_norm.weight", C, 1.0)
    if not tied:
        matrix("output.weight", vocab, C)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("make_gguf: %s: %s %s, %d layers, hidden %d, vocab %d" % (a.out, kind, a.type.upper(), L, C, vocab),
          file=sys.stderr)


if __name__ == "__main__":
    main()
