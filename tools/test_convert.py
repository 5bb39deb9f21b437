#!/usr/bin/env python3
"""Self-check of tools/convert.py (plain script, no pytest): exits 1 on the first failure.

- a tiny random Hugging Face llama model, saved as safetensors (single file and sharded with an
  index) and as pytorch_model.bin, converts to .npy bit for bit, and reads back into transformers
  with identical logits;
- the bfloat16 convention: bf16 weights become '<u2' arrays holding the exact bf16 bits, and
  float32 -> bfloat16 / float16 conversion rounds exactly as torch does;
- a synthetic llama GGUF (written with gguf.GGUFWriter, q/k permuted as llama.cpp does, one Q8_0
  tensor, a small byte-level BPE vocabulary) converts back to the original weights, config and a
  working tokenizer.json;
- errors (missing path, missing config.json, truncated safetensors, unknown GGUF tensor) exit 1
  with a message naming the file or tensor;
- a GGUF of each family written from the tiny golden models (tests/data/goldens: llama_gqa_tied,
  qwen2 with q/k/v biases, gpt2 with Conv1D weights and the duplicated tied head, llama3_scaled_untied
  without its scaling for the explicit head_dim), with gguf's own tensor-name map and llama.cpp's
  transformations, converts back to the golden tensors bit for bit and an equivalent config.json
  (gpt2 and qwen2 also reproduce the golden logits in transformers); a llama3 rope_freqs file, an
  unsupported architecture and GGUF files cut at three places fail clearly, leaving nothing;
- every tensor type gguf.quants dequantises (and F64) reads as gguf dequantises it, and the types
  gguf can quantise come back within their quantisation error;
- the Hugging Face config.json check (missing fields named, unknown model_type, non-positive sizes)
  and the truncated-safetensors message (how many bytes are missing).

Needs torch, transformers, gguf, tokenizers, safetensors.  Run: python3 tools/test_convert.py
"""
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import convert  # noqa: E402

failures = 0


def check(cond, what):
    global failures
    print(f"{'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        failures += 1


def bits(a):
    a = np.ascontiguousarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def run_cli(*args):
    p = subprocess.run([sys.executable, str(HERE / "convert.py"), *map(str, args)], capture_output=True, text=True)
    return p.returncode, p.stderr


def tiny_llama(vocab=260):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      rms_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=0.2,
                      bos_token_id=256, eos_token_id=257)
    model = LlamaForCausalLM._from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


def compare_dir(out, state, to_np, what):
    files = {p.name[:-4] for p in out.glob("*.npy")}
    check(files == set(state), f"{what}: one .npy per tensor with the HF names ({len(files)})")
    same = all(np.array_equal(bits(np.load(out / f"{n}.npy")), bits(to_np(t))) for n, t in state.items())
    check(same, f"{what}: every tensor bit-identical")


def test_hf(tmp):
    import torch
    from transformers import LlamaForCausalLM

    model = tiny_llama()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    f32 = lambda t: t.float().numpy()  # noqa: E731
    bf16_bits = lambda t: t.to(torch.bfloat16).view(torch.int16).numpy().view("<u2")  # noqa: E731

    hf = tmp / "hf"
    model.save_pretrained(str(hf), safe_serialization=True)
    convert.convert(hf, tmp / "f32", "float32")
    compare_dir(tmp / "f32", state, f32, "safetensors float32")
    check((tmp / "f32" / "config.json").read_bytes() == (hf / "config.json").read_bytes(), "config.json copied as is")
    ids = torch.tensor([[1, 5, 9, 200, 17, 3]])
    back = convert.load_npy_model(tmp / "f32", LlamaForCausalLM)
    with torch.no_grad():
        check(torch.equal(back(ids).logits, model(ids).logits), "read-back model gives identical logits")

    convert.convert(hf, tmp / "f32_to_bf16", "bfloat16")
    arr = np.load(tmp / "f32_to_bf16" / "model.embed_tokens.weight.npy")
    check(arr.dtype == np.dtype("<u2"), f"bfloat16 stored as '<u2' (got {arr.dtype.str})")
    compare_dir(tmp / "f32_to_bf16", state, bf16_bits, "float32 -> bfloat16 rounds like torch")
    convert.convert(hf, tmp / "f32_to_f16", "float16")
    compare_dir(tmp / "f32_to_f16", state, lambda t: t.half().numpy(), "float32 -> float16 rounds like torch")

    sharded = tmp / "hf_sharded"
    model.save_pretrained(str(sharded), safe_serialization=True, max_shard_size="40KB")
    check((sharded / "model.safetensors.index.json").exists(), "sharded checkpoint has an index")
    convert.convert(sharded, tmp / "sharded", "float32")
    compare_dir(tmp / "sharded", state, f32, "sharded safetensors float32")

    hf_bf16 = tmp / "hf_bf16"
    model.to(torch.bfloat16).save_pretrained(str(hf_bf16), safe_serialization=True)
    model.float()
    convert.convert(hf_bf16, tmp / "bf16", "bfloat16")
    compare_dir(tmp / "bf16", state, bf16_bits, "bf16 safetensors -> bfloat16 keeps the bits")
    convert.convert(hf_bf16, tmp / "bf16_to_f32", "float32")
    compare_dir(tmp / "bf16_to_f32", state, lambda t: t.to(torch.bfloat16).float().numpy(), "bf16 -> float32 exact")
    special = np.array([0.0, -0.0, 1.0, np.inf, -np.inf, np.nan, 1e-40, 3.3895314e38, 1.00390625, 1.01171875],
                       np.float32)
    mine = convert.f32_to_bf16_bits(special)
    ref = torch.from_numpy(special).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    check(np.array_equal(mine[~np.isnan(special)], ref[~np.isnan(special)]) and
          np.isnan(convert.bf16_bits_to_f32(mine)[5]), "f32_to_bf16_bits: ties, inf, NaN, subnormals as torch")

    binary = tmp / "hf_bin"
    binary.mkdir()
    (binary / "config.json").write_bytes((hf / "config.json").read_bytes())
    torch.save({k: (v.to(torch.bfloat16) if "mlp" in k else v) for k, v in state.items()}, binary / "pytorch_model.bin")
    convert.convert(binary, tmp / "bin", "float32")
    compare_dir(tmp / "bin", state,
                lambda t: t.numpy() if t.dim() < 2 or t.shape[0] != 96 and t.shape[1] != 96 else
                t.to(torch.bfloat16).float().numpy(), "pytorch_model.bin (f32 + bf16 tensors)")

    # errors
    rc, err = run_cli(tmp / "nope", tmp / "x")
    check(rc == 1 and "nope" in err, f"missing input: exit 1 naming it ({err.strip()})")
    nocfg = tmp / "nocfg"
    nocfg.mkdir()
    (nocfg / "model.safetensors").write_bytes((hf / "model.safetensors").read_bytes())
    rc, err = run_cli(nocfg, tmp / "x")
    check(rc == 1 and "config.json" in err, f"missing config.json: exit 1 ({err.strip()})")
    trunc = tmp / "trunc"
    trunc.mkdir()
    (trunc / "config.json").write_bytes((hf / "config.json").read_bytes())
    (trunc / "model.safetensors").write_bytes((hf / "model.safetensors").read_bytes()[:5000])
    rc, err = run_cli(trunc, tmp / "x")
    check(rc == 1 and "model.safetensors" in err and "truncated" in err and not (tmp / "x").exists()
          and not (tmp / "x.partial").exists(),
          f"truncated safetensors: exit 1 naming the file, nothing left behind ({err.strip()})")
    rc, err = run_cli(hf, tmp / "f32")
    check(rc == 1 and "--force" in err, "existing output is not replaced without --force")


def llama_cpp_permute(weights, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute, verbatim."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def byte_level_vocab():
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = [bytes_to_unicode()[b] for b in range(256)]
    merges = ["Ġ t", "h e", "Ġt he", "1 2"]
    tokens += ["Ġt", "he", "Ġthe", "12"]
    types = [1] * len(tokens)
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>"):
        tokens.append(special)
        types.append(4 if special == "<think>" else 3)
    return tokens, types, merges


def write_gguf(path, model, tokens, types, merges, extra_tensor=None):
    import gguf

    cfg = model.config
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|im_start|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_pad_token_id(tokens.index("<|im_end|>"))
    w.add_add_bos_token(False)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}")
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    hf_parts = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
                "post_attention_layernorm": "ffn_norm"}
    quantized = {}
    for name, t in model.state_dict().items():
        a = t.float().numpy().copy()
        if name in names:
            g = names[name]
        else:
            _, _, i, *part, kind = name.split(".")
            g = f"blk.{i}.{hf_parts['.'.join(part)]}.{kind}"
        if g.endswith("attn_q.weight"):
            a = llama_cpp_permute(a, cfg.num_attention_heads, cfg.num_attention_heads)
        elif g.endswith("attn_k.weight"):
            a = llama_cpp_permute(a, cfg.num_attention_heads, cfg.num_key_value_heads)
        if g == "blk.0.ffn_up.weight":
            q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(g, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            quantized[name] = gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(g, a)
    if extra_tensor:
        w.add_tensor(extra_tensor, np.zeros(4, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return quantized


def test_gguf(tmp):
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokens, types, merges = byte_level_vocab()
    model = tiny_llama(vocab=len(tokens))
    path = tmp / "tiny.gguf"
    quantized = write_gguf(path, model, tokens, types, merges)
    convert.convert(path, tmp / "from_gguf", "float32")
    out = tmp / "from_gguf"
    state = model.state_dict()
    exact = {k: v for k, v in state.items() if k not in quantized}
    check(all(np.array_equal(bits(np.load(out / f"{k}.npy")), bits(v.numpy())) for k, v in exact.items()),
          "GGUF: F32 tensors (q/k un-permuted) bit-identical to the HF weights")
    q = next(iter(quantized))
    check(np.array_equal(np.load(out / f"{q}.npy"), quantized[q]) and
          np.abs(quantized[q] - state[q].numpy()).max() < 0.05, "GGUF: Q8_0 tensor dequantised as gguf does")
    check({p.name[:-4] for p in out.glob("*.npy")} == set(state), "GGUF: exactly the HF tensor names")
    cfg = json.loads((out / "config.json").read_text())
    expect = dict(model_type="llama", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0,
                  max_position_embeddings=64, vocab_size=len(tokens), tie_word_embeddings=False,
                  bos_token_id=tokens.index("<|im_start|>"), eos_token_id=tokens.index("<|im_end|>"))
    check(all(cfg.get(k) == v for k, v in expect.items()), f"GGUF: config.json fields {cfg}")
    back = convert.load_npy_model(out, LlamaForCausalLM)
    ids = torch.tensor([[1, 5, 9, 200, 17, 3]])
    with torch.no_grad():
        for k, v in quantized.items():  # the reference carries the same quantisation error
            model.get_parameter(k).copy_(torch.from_numpy(v))
        same = torch.equal(back(ids).logits, model(ids).logits)
    check(same, "GGUF: the converted model gives the original's logits exactly")

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    vocab = {t: i for i, t in enumerate(tokens)}
    enc = tok.encode("<|im_start|> the 123<think>x<|im_end|>", add_special_tokens=False).ids
    want = [vocab["<|im_start|>"], vocab["Ġthe"], vocab["Ġ"], vocab["1"], vocab["2"], vocab["3"],
            vocab["<think>"], vocab["x"], vocab["<|im_end|>"]]
    check(enc == want, f"GGUF tokenizer: specials whole, digits split one by one ({enc} vs {want})")
    check(tok.decode(enc, skip_special_tokens=False) == "<|im_start|> the 123<think>x<|im_end|>",
          "GGUF tokenizer: decode round-trips")
    tc = json.loads((out / "tokenizer_config.json").read_text())
    check(tc.get("bos_token") == "<|im_start|>" and tc.get("eos_token") == "<|im_end|>" and
          tc.get("add_bos_token") is False and "chat_template" in tc, f"GGUF tokenizer_config.json {tc}")
    hf_tok = AutoTokenizer.from_pretrained(str(out))
    got = hf_tok("<|im_start|> the 123", add_special_tokens=True)["input_ids"]
    check(got == want[:6], f"GGUF tokenizer loads with AutoTokenizer and adds no BOS ({got})")

    bad = tmp / "bad.gguf"
    write_gguf(bad, model, tokens, types, merges, extra_tensor="blk.0.attn_mystery.weight")
    rc, err = run_cli(bad, tmp / "y")
    check(rc == 1 and "blk.0.attn_mystery.weight" in err, f"GGUF: unknown tensor exits 1 naming it ({err.strip()})")


GOLDENS = HERE.parent / "tests" / "data" / "goldens"
GGUF_ARCH = {"llama": "LLAMA", "qwen2": "QWEN2", "gpt2": "GPT2"}
GPT2_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def golden_to_gguf(case, path, rope_freqs=False, arch=None):
    """Writes the golden model tests/data/goldens/<case>/model as llama.cpp's convert_hf_to_gguf.py
    would: names from gguf's own TensorNameMap, llama q/k rows permuted, GPT-2 Conv1D weights
    transposed to (out, in) and output.weight written as a copy of the tied embedding."""
    import gguf

    model = GOLDENS / case / "model"
    cfg = json.loads((model / "config.json").read_text())
    kind = cfg["model_type"]
    arch = arch or kind
    n_layers = cfg["n_layer"] if kind == "gpt2" else cfg["num_hidden_layers"]
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, GGUF_ARCH[kind]), n_layers)
    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_block_count(n_layers)
    if kind == "gpt2":
        w.add_context_length(cfg["n_positions"])
        w.add_embedding_length(cfg["n_embd"])
        w.add_feed_forward_length(cfg["n_inner"])
        w.add_head_count(cfg["n_head"])
        w.add_layer_norm_eps(cfg["layer_norm_epsilon"])
    else:
        n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(cfg["hidden_size"])
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_head_count(n_head)
        w.add_head_count_kv(n_kv)
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_rope_dimension_count(head_dim)
        w.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
        w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    tensors = {}
    for f in sorted(model.glob("*.npy")):
        hf, a = f.name[:-4], np.load(f)
        g = names.get_name(hf, try_suffixes=(".weight", ".bias"))
        assert g is not None, f"gguf has no name for {hf}"
        if kind == "llama" and g.endswith("attn_q.weight"):
            a = llama_cpp_permute(a, n_head, n_head)
        elif kind == "llama" and g.endswith("attn_k.weight"):
            a = llama_cpp_permute(a, n_head, n_kv)
        elif kind == "gpt2" and hf.endswith(GPT2_CONV1D):
            a = a.T.copy()
        tensors[g] = a
        w.add_tensor(g, a)
    if kind == "gpt2":
        w.add_tensor("output.weight", tensors["token_embd.weight"])
    if rope_freqs:
        w.add_tensor("rope_freqs.weight", np.ones(head_dim // 2, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return cfg


def same_config(got, want):
    """The fields the library reads (include/crossbatch/model/config.hpp) agree."""
    if want["model_type"] == "gpt2":
        keys = ("model_type", "n_embd", "n_layer", "n_head", "n_inner", "n_positions", "layer_norm_epsilon",
                "vocab_size", "tie_word_embeddings", "bos_token_id", "eos_token_id")
        return all(got.get(k) == want.get(k) for k in keys)
    keys = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "rms_norm_eps", "max_position_embeddings", "vocab_size",
            "tie_word_embeddings", "bos_token_id", "eos_token_id")
    head_dim = want.get("head_dim") or want["hidden_size"] // want["num_attention_heads"]
    return (all(got.get(k) == want.get(k) for k in keys) and got.get("head_dim") == head_dim
            and got.get("rope_theta") == want["rope_parameters"]["rope_theta"])


def test_golden_gguf(tmp):
    """A GGUF of each family from the tiny golden models converts back to the same tensors."""
    for case in ("llama_gqa_tied", "qwen2", "gpt2", "llama3_scaled_untied"):
        path = tmp / f"{case}.gguf"
        # llama3_scaled_untied: written without its rope scaling, for the explicit head_dim (32, not
        # hidden / heads = 16) and the untied head; the scaled file is refused below.
        want_cfg = golden_to_gguf(case, path)
        out = tmp / case
        convert.convert(path, out, "float32", with_tokenizer=False)
        model = GOLDENS / case / "model"
        want = {p.name for p in model.glob("*.npy")}
        got = {p.name for p in out.glob("*.npy")}
        check(got == want, f"GGUF {case}: the golden's tensor files exactly ({len(got)}; "
                           f"extra {sorted(got - want)[:3]}, missing {sorted(want - got)[:3]})")
        same = [n for n in want & got if np.array_equal(bits(np.load(out / n)), bits(np.load(model / n)))]
        check(len(same) == len(want), f"GGUF {case}: every tensor bit-identical to the golden ({len(same)}/{len(want)})")
        cfg = json.loads((out / "config.json").read_text())
        if case == "llama3_scaled_untied":
            want_cfg = dict(want_cfg, rope_parameters={"rope_theta": want_cfg["rope_parameters"]["rope_theta"]})
        check(same_config(cfg, want_cfg), f"GGUF {case}: config.json agrees with the golden's ({cfg})")
    # The converted gpt2 and qwen2 load back into transformers and give the golden logits.
    for case in ("gpt2", "qwen2") if WITH_TORCH else ():
        import torch

        d = GOLDENS / case
        model = convert.load_npy_model(tmp / case)
        with torch.no_grad():
            logits = model(input_ids=torch.from_numpy(np.load(d / "input_ids.npy")),
                           attention_mask=torch.from_numpy(np.load(d / "attention_mask.npy")),
                           position_ids=torch.from_numpy(np.load(d / "position_ids.npy"))).logits.numpy()
        mask = np.load(d / "attention_mask.npy").astype(bool)
        diff = float(np.abs(logits - np.load(d / "logits.npy"))[mask].max())
        check(diff <= 1e-4, f"GGUF {case}: converted model reproduces the golden logits (max diff {diff:.2e})")

    path = tmp / "scaled.gguf"
    golden_to_gguf("llama3_scaled_untied", path, rope_freqs=True)
    rc, err = run_cli(path, tmp / "scaled")
    check(rc == 1 and "rope_freqs.weight" in err and not (tmp / "scaled").exists(),
          f"GGUF with llama3 rope_freqs: exit 1 naming it ({err.strip()})")
    path = tmp / "falcon.gguf"
    golden_to_gguf("llama_gqa_tied", path, arch="falcon")
    rc, err = run_cli(path, tmp / "falcon")
    check(rc == 1 and "'falcon'" in err and "qwen2" in err and not (tmp / "falcon").exists(),
          f"unsupported GGUF architecture: exit 1 naming it and the supported ones ({err.strip()})")
    whole = (tmp / "qwen2.gguf").read_bytes()
    for cut in (len(whole) - 100, len(whole) // 2, 64):
        (tmp / "cut.gguf").write_bytes(whole[:cut])
        rc, err = run_cli(tmp / "cut.gguf", tmp / "cut")
        check(rc == 1 and "truncated" in err and not (tmp / "cut").exists() and not (tmp / "cut.partial").exists(),
              f"GGUF cut to {cut} of {len(whole)} bytes: exit 1 saying truncated, nothing left ({err.strip()})")
    rc, err = run_cli(tmp / "qwen2.gguf", tmp / "noweights", "--no-weights", "--no-tokenizer")
    check(rc == 0 and not list((tmp / "noweights").glob("*.npy")) and (tmp / "noweights" / "config.json").exists(),
          "--no-weights: config.json only, no .npy")


def test_gguf_types(tmp):
    """Every tensor type gguf.quants dequantises (and F64) reads as gguf dequantises it; the types
    gguf can also quantise come back within their quantisation error."""
    import gguf
    from gguf import GGMLQuantizationType as Q

    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(tmp / "types.gguf"), arch="llama")
    raw, approx = {}, {}
    original = rng.uniform(-1, 1, size=(2, 256)).astype(np.float32)
    for t in Q:
        block, size = gguf.GGML_QUANT_SIZES[t]
        data = rng.integers(0, 256, size=(2, 256 // block * size), dtype=np.uint8)
        try:
            gguf.quants.dequantize(data, t)
        except NotImplementedError:
            if t != Q.F64:
                continue
        if t in (Q.F32, Q.F16, Q.BF16, Q.F64):
            data = rng.uniform(-1, 1, size=(2, 256)).astype({Q.F32: np.float32, Q.F16: np.float16,
                                                             Q.BF16: np.float32, Q.F64: np.float64}[t])
            if t == Q.BF16:
                data = gguf.quants.quantize(data, t)
        w.add_tensor(f"raw.{t.name}", data, raw_shape=data.shape if t in (Q.F32, Q.F16, Q.F64) else None,
                     raw_dtype=t)
        raw[t.name] = data
        try:
            q = gguf.quants.quantize(original, t)
        except NotImplementedError:
            continue
        w.add_tensor(f"quantised.{t.name}", q, raw_dtype=t)
        approx[t.name] = q
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    reader = convert.open_gguf(tmp / "types.gguf")
    byname = {t.name: t for t in reader.tensors}
    bad = []
    for name, data in raw.items():
        got = convert.gguf_tensor_array(byname[f"raw.{name}"], "types.gguf")
        want = data.astype(np.float32) if name in ("F32", "F16", "F64") else gguf.quants.dequantize(data, Q[name])
        if got.shape != (2, 256) or got.dtype != np.float32 or not np.array_equal(got, want, equal_nan=True):
            bad.append(name)
    check(not bad and len(raw) >= 25, f"{len(raw)} GGUF tensor types read as gguf dequantises them "
                                      f"({', '.join(raw)}; wrong: {bad})")
    far = []
    for name in approx:
        got = convert.gguf_tensor_array(byname[f"quantised.{name}"], "types.gguf")
        err = float(np.abs(got - original).max())
        # Half a quantisation step of uniform(-1, 1) data: 4-bit ~ 1/8, ternary (TQ*) 1/2, MXFP4's
        # e2m1 grid at most 1/4 of the block scale; 8-bit and the float types much less.
        bound = {"F32": 0, "F16": 1e-3, "BF16": 8e-3, "Q8_0": 1e-2, "TQ1_0": 0.5, "TQ2_0": 0.5, "MXFP4": 0.26}
        if not err <= bound.get(name, 0.15):
            far.append(f"{name}: {err:.3g}")
    check(not far and len(approx) >= 8, f"{len(approx)} quantised types come back within their error "
                                        f"({', '.join(approx)}; too far: {far})")


def test_hf_config_check(tmp):
    import torch  # noqa: F401  (the tiny model needs it)

    hf = tmp / "hf"
    tiny_llama().save_pretrained(str(hf), safe_serialization=True)
    cfg = json.loads((hf / "config.json").read_text())
    for what, edit, needle in (
            ("no num_hidden_layers", lambda c: c.pop("num_hidden_layers"), "num_hidden_layers"),
            ("gpt2 without n_layer", lambda c: c.update(model_type="gpt2", n_embd=64, n_head=4, n_positions=64),
             "n_layer"),
            ("unknown model_type", lambda c: c.update(model_type="mamba"), "'mamba'"),
            ("negative hidden_size", lambda c: c.update(hidden_size=-64), "hidden_size = -64")):
        d = tmp / what.replace(" ", "_")
        d.mkdir()
        c = dict(cfg)
        edit(c)
        (d / "config.json").write_text(json.dumps(c))
        (d / "model.safetensors").symlink_to(hf / "model.safetensors")
        rc, err = run_cli(d, tmp / "x")
        check(rc == 1 and needle in err and "config.json" in err and not (tmp / "x").exists(),
              f"HF config.json {what}: exit 1 naming {needle} ({err.strip()})")
    d = tmp / "cut"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    whole = (hf / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(whole[:len(whole) - 1000])
    rc, err = run_cli(d, tmp / "x")
    check(rc == 1 and "truncated safetensors file" in err and "1000 bytes missing" in err,
          f"safetensors missing its last 1000 bytes: says truncated and how much ({err.strip()})")


WITH_TORCH = True


def main():
    # --gguf-only: the checks that need no torch (CI has none): GGUF round trips of the golden
    # models, every tensor type, refusals of bad GGUF files.
    global WITH_TORCH
    WITH_TORCH = "--gguf-only" not in sys.argv[1:]
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        tests = [("golden_gguf", test_golden_gguf), ("gguf_types", test_gguf_types)]
        if WITH_TORCH:
            tests = [("hf_case", test_hf), ("gguf_case", test_gguf)] + tests + [("hf_config", test_hf_config_check)]
        for name, test in tests:
            (tmp / name).mkdir()
            test(tmp / name)
    print(f"test_convert: {'FAILED' if failures else 'OK'} ({failures} failure(s))")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
