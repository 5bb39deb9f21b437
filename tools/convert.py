#!/usr/bin/env python3
"""Converts a Hugging Face checkpoint or a GGUF file (llama, qwen2, gpt2) into a crossbatch model
directory: config.json, tokenizer files and one `<hf tensor name>.npy` per weight (names and layouts
kept as Hugging Face has them: nothing stripped, nothing transposed).

    convert.py HF_DIR OUT_DIR [--dtype float32|float16|bfloat16]
    convert.py MODEL.gguf OUT_DIR [--dtype ...] [--no-tokenizer] [--no-weights]

HF_DIR holds config.json and model.safetensors, sharded safetensors with
model.safetensors.index.json, or pytorch_model.bin (sharded: pytorch_model.bin.index.json; this one
needs torch). config.json is checked before anything is copied: a model_type the library runs
(gpt2, llama, qwen2, bert) and the fields it needs. bfloat16 tensors are written as their raw bits
in a uint16 ('<u2') array, the library's convention (include/crossbatch/core/npy.hpp). Non-floating
tensors (integer buffers) are written unchanged.

A GGUF file is dequantised with the `gguf` package (every tensor type gguf.quants dequantises), its
tensor names are mapped to the Hugging Face names of its family (llama, qwen2 with its q/k/v
biases, gpt2), llama's q/k row permutation by llama.cpp's converter is undone (qwen2's rows are not
permuted; gpt2's Conv1D weights are transposed back to (in, out)), and config.json,
generation_config.json, tokenizer.json and tokenizer_config.json (pre-tokenizer chosen by
tokenizer.ggml.pre, chat template from tokenizer.chat_template) are built from its metadata
(byte-level BPE vocabularies). Other architectures are refused with a message naming them.
--no-weights writes only the config and tokenizer files (no .npy), e.g. for tokenizer tests.

The output is written to OUT_DIR.partial and renamed to OUT_DIR at the end, so an interrupted run
leaves no OUT_DIR behind. Any error exits with status 1 and a message naming the file or tensor.
"""
import argparse
import json
import math
import os
import pathlib
import re
import shutil
import struct
import sys

import numpy as np

DTYPES = ("float32", "float16", "bfloat16")
# Copied from a Hugging Face directory when present.
SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "generation_config.json", "chat_template.jinja", "vocab.json", "merges.txt", "vocab.txt")


class ConvertError(Exception):
    pass


def log(msg):
    print(f"convert.py: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# dtype handling. A tensor travels as (kind, array): kind is the source element type ('F32',
# 'F16', 'BF16', 'F64', or an integer/bool kind); 'BF16' arrays hold raw bits as uint16.

def f32_to_bf16_bits(x):
    """float32 -> bfloat16 bits (uint16), round to nearest even; NaN stays a quiet NaN."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def bf16_bits_to_f32(bits):
    return (np.ascontiguousarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def cast(kind, arr, dtype):
    """Casts one tensor to the output dtype; bf16 -> bf16 keeps the bits exactly."""
    if kind not in ("F32", "F16", "BF16", "F64"):
        return np.ascontiguousarray(arr)
    if dtype == "bfloat16":
        if kind == "BF16":
            return np.ascontiguousarray(arr, dtype="<u2")
        return f32_to_bf16_bits(arr.astype(np.float32)).astype("<u2")
    if kind == "BF16":
        arr = bf16_bits_to_f32(arr)
    return np.ascontiguousarray(arr, dtype="<f4" if dtype == "float32" else "<f2")


# ---------------------------------------------------------------------------------------------
# Hugging Face checkpoints

SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8",
                      "I32": "<i4", "I16": "<i2", "I8": "|i1", "U8": "|u1", "BOOL": "|b1"}


def read_safetensors(path):
    """Yields (name, kind, array) from one .safetensors file, read directly (no torch needed)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ConvertError(f"{path}: truncated safetensors file (no header length)")
        n = struct.unpack("<Q", raw)[0]
        if n > min(size - 8, 100 << 20):
            raise ConvertError(f"{path}: safetensors header length {n} is implausible")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConvertError(f"{path}: safetensors header is not valid JSON ({e})") from None
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n) if size > 8 + n else np.zeros(0, np.uint8)
    if not isinstance(header, dict):
        raise ConvertError(f"{path}: safetensors header is not a JSON object")
    ends = [info.get("data_offsets", [0, 0])[-1] for k, info in header.items()
            if k != "__metadata__" and isinstance(info, dict) and isinstance(info.get("data_offsets"), list)
            and info["data_offsets"] and isinstance(info["data_offsets"][-1], int)]
    if ends and max(ends) > data.size:
        raise ConvertError(f"{path}: truncated safetensors file: its header needs a data section of "
                           f"{max(ends)} bytes, the file holds {data.size} ({max(ends) - data.size} bytes "
                           f"missing; download it again)")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            kind, shape, (begin, end) = info["dtype"], [int(d) for d in info["shape"]], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ConvertError(f"{path}: tensor {name}: malformed header entry {info!r}") from None
        if kind not in SAFETENSORS_DTYPES:
            raise ConvertError(f"{path}: tensor {name}: unsupported safetensors dtype {kind}")
        np_dtype = np.dtype(SAFETENSORS_DTYPES[kind])
        count = math.prod(shape)
        if not (0 <= begin <= end <= data.size) or end - begin != count * np_dtype.itemsize:
            raise ConvertError(f"{path}: tensor {name}: data offsets {begin}..{end} do not match "
                               f"shape {shape} of {kind} (data section is {data.size} bytes)")
        yield name, kind, data[begin:end].view(np_dtype).reshape(shape)


TORCH_KINDS = {"torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16",
               "torch.float64": "F64", "torch.int64": "I64", "torch.int32": "I32",
               "torch.int16": "I16", "torch.int8": "I8", "torch.uint8": "U8", "torch.bool": "BOOL"}


def read_torch_bin(path):
    """Yields (name, kind, array) from a pytorch_model.bin (needs torch)."""
    try:
        import torch
    except ImportError:
        raise ConvertError(f"{path}: reading a pytorch .bin checkpoint needs torch (pip install torch)") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise ConvertError(f"{path}: cannot load with torch.load ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise ConvertError(f"{path}: expected a state dict, found {type(state).__name__}")
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise ConvertError(f"{path}: entry {name} is not a tensor ({type(t).__name__})")
        kind = TORCH_KINDS.get(str(t.dtype))
        if kind is None:
            raise ConvertError(f"{path}: tensor {name}: unsupported dtype {t.dtype}")
        t = t.contiguous()
        arr = t.view(torch.int16).numpy().view("<u2") if kind == "BF16" else t.numpy()
        yield name, kind, arr


def hf_checkpoint_files(src):
    """The weight files of a Hugging Face directory, in order, and the reader for them."""
    for index_name, reader in (("model.safetensors.index.json", read_safetensors),
                               ("pytorch_model.bin.index.json", read_torch_bin)):
        index = src / index_name
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ConvertError(f"{index}: not a valid checkpoint index ({e})") from None
            files = sorted(set(weight_map.values()))
            for f in files:
                if not (src / f).is_file():
                    raise ConvertError(f"{index}: shard {f} is missing from {src}")
            return [src / f for f in files], reader, set(weight_map)
    if (src / "model.safetensors").is_file():
        return [src / "model.safetensors"], read_safetensors, None
    shards = sorted(src.glob("*.safetensors"))
    if shards:
        return shards, read_safetensors, None
    if (src / "pytorch_model.bin").is_file():
        return [src / "pytorch_model.bin"], read_torch_bin, None
    raise ConvertError(f"{src}: no model.safetensors, *.safetensors, model.safetensors.index.json, "
                       f"pytorch_model.bin or pytorch_model.bin.index.json found")


def check_name(name, where):
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise ConvertError(f"{where}: tensor name {name!r} cannot be used as a file name")


# The config.json fields include/crossbatch/model/config.hpp requires, per model_type.
HF_REQUIRED_FIELDS = {
    "gpt2": ("n_embd", "n_layer", "n_head", "n_positions", "vocab_size"),
    "llama": ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"),
    "qwen2": ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"),
    "bert": ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "max_position_embeddings", "vocab_size"),
}


def check_hf_config(config, where):
    """Refuses a config.json the library cannot load, naming the missing or bad fields."""
    if not isinstance(config, dict):
        raise ConvertError(f"{where}: expected a JSON object")
    kind = config.get("model_type")
    if kind not in HF_REQUIRED_FIELDS:
        raise ConvertError(f"{where}: model_type {kind!r} is not supported "
                           f"(supported: {', '.join(HF_REQUIRED_FIELDS)})")
    missing = [f for f in HF_REQUIRED_FIELDS[kind] if f not in config]
    if missing:
        raise ConvertError(f"{where}: model_type {kind!r} needs field(s) {', '.join(missing)}, missing")
    bad = [f"{f} = {config[f]!r}" for f in HF_REQUIRED_FIELDS[kind] + ("num_key_value_heads", "n_inner", "head_dim")
           if f in config and config[f] is not None
           and (isinstance(config[f], bool) or not isinstance(config[f], int) or config[f] <= 0)]
    if bad:
        raise ConvertError(f"{where}: field(s) must be positive integers: {', '.join(bad)}")


def convert_hf(src, out, dtype):
    if not (src / "config.json").is_file():
        raise ConvertError(f"{src / 'config.json'}: missing (a Hugging Face model directory needs one)")
    try:
        config = json.loads((src / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConvertError(f"{src / 'config.json'}: invalid JSON ({e})") from None
    check_hf_config(config, src / "config.json")
    files, reader, expected = hf_checkpoint_files(src)
    seen = set()
    for path in files:
        log(f"reading {path}")
        for name, kind, arr in reader(str(path)):
            check_name(name, path)
            if name in seen:
                raise ConvertError(f"{path}: tensor {name} appears in more than one shard")
            seen.add(name)
            np.save(out / f"{name}.npy", cast(kind, arr, dtype))
    if expected is not None and expected != seen:
        missing = sorted(expected - seen)[:5]
        raise ConvertError(f"{src}: tensors listed in the index but not found in the shards: {missing}")
    if not seen:
        raise ConvertError(f"{src}: the checkpoint holds no tensors")
    for side in SIDE_FILES:
        if (src / side).is_file():
            shutil.copyfile(src / side, out / side)
    log(f"wrote {len(seen)} tensors ({dtype})")


# ---------------------------------------------------------------------------------------------
# GGUF: llama, qwen2 (q/k/v biases) and gpt2, the families the library runs that GGUF carries.

GGUF_FAMILIES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "gpt2": "GPT2LMHeadModel"}
# GGUF block tensor -> Hugging Face name (after "model.layers.N." or "transformer.h.N.").
GGUF_BLOCK_NAMES = {
    "llama": {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
              "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm",
              "ffn_norm": "post_attention_layernorm"},
    "gpt2": {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj",
             "ffn_norm": "ln_2", "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"},
}
GGUF_BLOCK_NAMES["qwen2"] = GGUF_BLOCK_NAMES["llama"]
GGUF_GLOBAL_NAMES = {
    "llama": {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
              "output.weight": "lm_head.weight"},
    "gpt2": {"token_embd.weight": "transformer.wte.weight", "position_embd.weight": "transformer.wpe.weight",
             "output_norm.weight": "transformer.ln_f.weight", "output_norm.bias": "transformer.ln_f.bias",
             "output.weight": "lm_head.weight"},
}
GGUF_GLOBAL_NAMES["qwen2"] = GGUF_GLOBAL_NAMES["llama"]
# GPT-2's Conv1D weights are (in, out) in Hugging Face; llama.cpp's converter transposes them.
GPT2_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def gguf_to_hf_name(name, n_layers, arch="llama"):
    """The Hugging Face name of a GGUF tensor of family `arch`, or None if it has none."""
    if name in GGUF_GLOBAL_NAMES[arch]:
        return GGUF_GLOBAL_NAMES[arch][name]
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", name)
    if m and m.group(2) in GGUF_BLOCK_NAMES[arch] and int(m.group(1)) < n_layers:
        prefix = "transformer.h" if arch == "gpt2" else "model.layers"
        return f"{prefix}.{int(m.group(1))}.{GGUF_BLOCK_NAMES[arch][m.group(2)]}.{m.group(3)}"
    return None


def permute_qk(w, n_head):
    """llama.cpp's convert_hf_to_gguf `permute`: rows (n_head, 2, D/2) -> (n_head, D/2, 2)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w, n_head):
    """Inverse of permute_qk: rows (n_head, D/2, 2) -> (n_head, 2, D/2), HF's rotate_half order."""
    if w.shape[0] % (2 * n_head):
        raise ValueError(f"{w.shape[0]} rows do not split into {n_head} heads of even size")
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def f32_json(v):
    """A float32 metadata value as the shortest decimal that round-trips (9.99999975e-06 -> 1e-05)."""
    return float(str(np.float32(v)))


class GGUFMeta:
    def __init__(self, reader, path):
        self.reader, self.path = reader, path

    def get(self, key, default=None, required=False):
        field = self.reader.fields.get(key)
        if field is None:
            if required:
                raise ConvertError(f"{self.path}: metadata key {key} is missing")
            return default
        try:
            return field.contents()
        except Exception as e:
            raise ConvertError(f"{self.path}: metadata key {key} cannot be read ({e})") from None


# Pre-tokenizer regexes, as llama.cpp (src/llama-vocab.cpp) applies them for each tokenizer.ggml.pre.
_GPT2_NAMES = {"gpt-2", "gpt2"}
_DIGITS_GPT2_NAMES = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}
_LLAMA3_NAMES = {"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "dbrx", "smaug-bpe"}
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_NAMES = {"qwen2", "deepseek-r1-qwen"}
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def gguf_pre_tokenizer(pre, path):
    from tokenizers import Regex, pre_tokenizers

    if pre in _GPT2_NAMES:
        return pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True), False
    if pre in _DIGITS_GPT2_NAMES:  # llama.cpp: "\p{N}" isolated first, then the GPT-2 regex
        return pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)]), False
    for names, split, ignore_merges in ((_LLAMA3_NAMES, _LLAMA3_SPLIT, True), (_QWEN2_NAMES, _QWEN2_SPLIT, False)):
        if pre in names:
            return pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)]), ignore_merges
    supported = sorted(_GPT2_NAMES | _DIGITS_GPT2_NAMES | _LLAMA3_NAMES | _QWEN2_NAMES)
    raise ConvertError(f"{path}: tokenizer.ggml.pre = {pre!r} is not supported (supported: {supported}); "
                       f"use --no-tokenizer to convert the weights only")


def gguf_tokenizer(meta, path, out, context_length):
    """Writes tokenizer.json + tokenizer_config.json for a byte-level BPE ('gpt2') GGUF vocabulary."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors

    kind = meta.get("tokenizer.ggml.model", required=True)
    if kind != "gpt2":
        raise ConvertError(f"{path}: tokenizer.ggml.model = {kind!r} is not supported (only 'gpt2', "
                           f"byte-level BPE); use --no-tokenizer to convert the weights only")
    tokens = list(meta.get("tokenizer.ggml.tokens", required=True))
    merges = list(meta.get("tokenizer.ggml.merges", required=True))
    types = list(meta.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    if len(types) != len(tokens):
        raise ConvertError(f"{path}: tokenizer.ggml.token_type has {len(types)} entries, tokens has {len(tokens)}")
    vocab = {}
    for i, t in enumerate(tokens):
        if t in vocab:
            raise ConvertError(f"{path}: token {t!r} appears twice in tokenizer.ggml.tokens ({vocab[t]} and {i})")
        vocab[t] = i
    pairs = []
    for m in merges:
        parts = m.split(" ")
        if len(parts) != 2 or parts[0] not in vocab or parts[1] not in vocab or parts[0] + parts[1] not in vocab:
            raise ConvertError(f"{path}: merge {m!r} in tokenizer.ggml.merges does not join two vocabulary tokens")
        pairs.append((parts[0], parts[1]))
    pre = meta.get("tokenizer.ggml.pre", "gpt-2")
    pre_tokenizer, ignore_merges = gguf_pre_tokenizer(pre, path)

    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False,
                               ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    # 3 = CONTROL (special, never split), 4 = USER_DEFINED (matched whole, not special).
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types) if ty == 4])

    def special(key):
        i = meta.get(f"tokenizer.ggml.{key}_token_id")
        if i is not None and not 0 <= int(i) < len(tokens):
            raise ConvertError(f"{path}: tokenizer.ggml.{key}_token_id = {i} is outside the vocabulary")
        return None if i is None else tokens[int(i)]

    bos, eos, pad, unk = special("bos"), special("eos"), special("padding"), special("unknown")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False))
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
    if (add_bos and bos is None) or (add_eos and eos is None):
        raise ConvertError(f"{path}: add_bos_token/add_eos_token is set but the token id is missing")
    if add_bos or add_eos:
        a = ([f"{bos}:0"] if add_bos else []) + ["$A:0"] + ([f"{eos}:0"] if add_eos else [])
        b = ([f"{bos}:1"] if add_bos else []) + ["$B:1"] + ([f"{eos}:1"] if add_eos else [])
        used = {t for t, on in ((bos, add_bos), (eos, add_eos)) if on}
        tok.post_processor = processors.TemplateProcessing(
            single=" ".join(a), pair=" ".join(a + b), special_tokens=[(t, vocab[t]) for t in sorted(used)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)

    # The vocabulary must keep the GGUF ids exactly.
    if tok.get_vocab_size(with_added_tokens=True) != len(tokens):
        raise ConvertError(f"{path}: tokenizer has {tok.get_vocab_size()} tokens, the GGUF {len(tokens)}")
    for i, t in enumerate(tokens):
        if tok.token_to_id(t) != i:
            raise ConvertError(f"{path}: token {t!r} got id {tok.token_to_id(t)} instead of {i}")
    sample = "Hello world! 1234 naïve café, don't\n\tspaces   end"
    if tok.decode(tok.encode(sample, add_special_tokens=False).ids) != sample:
        raise ConvertError(f"{path}: built tokenizer does not round-trip {sample!r}")
    tok.save(str(out / "tokenizer.json"))

    tc = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": add_bos, "add_eos_token": add_eos,
          "clean_up_tokenization_spaces": False, "model_max_length": int(context_length)}
    for key, value in (("bos_token", bos), ("eos_token", eos), ("pad_token", pad), ("unk_token", unk)):
        if value is not None:
            tc[key] = value
    template = meta.get("tokenizer.chat_template")
    if template is not None:
        tc["chat_template"] = template
        (out / "chat_template.jinja").write_text(template)
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2, ensure_ascii=False) + "\n")
    log(f"tokenizer: {len(tokens)} tokens, {len(pairs)} merges, pre-tokenizer {pre!r}")


class TruncatedGGUF(Exception):
    pass


def open_gguf(src):
    """A gguf.GGUFReader on src. A file cut short is named as such: GGUFReader itself fails on one
    with a numpy reshape or index message, so the tensor table is checked against the file size
    before the tensors are mapped."""
    try:
        import gguf
    except ImportError:
        raise ConvertError("reading GGUF files needs the gguf package (pip install gguf)") from None

    class CheckedReader(gguf.GGUFReader):
        def _build_tensors(self, start_offs, fields):
            for field in fields:
                try:
                    _, name, _, dims, raw_dtype, offset = field.parts
                    block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(raw_dtype[0])]
                    end = int(start_offs + offset[0]) + int(np.prod(dims)) * type_size // block
                    name = bytes(name).decode("utf-8", "replace")
                except Exception:  # a layout this gguf version does not have: leave it to the reader
                    break
                if end > self.data.size:
                    raise TruncatedGGUF(f"tensor {name} needs bytes up to {end}, the file has {self.data.size}")
            super()._build_tensors(start_offs, fields)

    size = src.stat().st_size
    try:
        return CheckedReader(str(src))
    except TruncatedGGUF as e:
        raise ConvertError(f"{src}: truncated GGUF file: {e} (download it again)") from None
    except Exception as e:
        raise ConvertError(f"{src}: not a readable GGUF file: its header is truncated or corrupted "
                           f"({size} bytes; {type(e).__name__}: {e})") from None


def gguf_tensor_array(t, src):
    """One GGUF tensor dequantised to float32 with the numpy (row-major) shape: GGUF lists dims
    fastest first, so the shape is reversed. Every type gguf.quants dequantises is accepted."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    shape = tuple(int(d) for d in reversed(t.shape))
    try:
        if t.tensor_type == GGMLQuantizationType.F64:  # gguf.quants has no F64 path
            w = np.asarray(t.data, dtype=np.float64)
        else:
            w = dequantize(t.data, t.tensor_type)
    except NotImplementedError:
        raise ConvertError(f"{src}: tensor {t.name}: type {t.tensor_type.name} cannot be dequantised "
                           f"by gguf.quants (it holds no float weights)") from None
    except Exception as e:
        raise ConvertError(f"{src}: tensor {t.name}: dequantisation of {t.tensor_type.name} failed "
                           f"({type(e).__name__}: {e})") from None
    try:
        return np.asarray(w, dtype=np.float32).reshape(shape)
    except ValueError:
        raise ConvertError(f"{src}: tensor {t.name}: {np.size(w)} values do not fill shape {shape}") from None


def gguf_config(meta, arch, src, names, vocab, dtype):
    """config.json of a GGUF file and {hf name: shape} of the tensors that must be in it."""
    a = f"{arch}."
    n_layers = int(meta.get(a + "block_count", required=True))
    hidden = int(meta.get(a + "embedding_length", required=True))
    n_head = int(meta.get(a + "attention.head_count", required=True))
    inter = int(meta.get(a + "feed_forward_length", required=True))
    n_ctx = int(meta.get(a + "context_length", required=True))
    tied = "output.weight" not in names
    if arch == "gpt2":
        config = {"architectures": [GGUF_FAMILIES[arch]], "model_type": "gpt2", "n_embd": hidden,
                  "n_layer": n_layers, "n_head": n_head, "n_inner": inter, "n_positions": n_ctx,
                  "n_ctx": n_ctx, "layer_norm_epsilon": f32_json(meta.get(a + "attention.layer_norm_epsilon", 1e-5)),
                  "activation_function": "gelu_new", "vocab_size": vocab, "tie_word_embeddings": tied,
                  "torch_dtype": dtype}
        C, F = hidden, inter
        expected = {"transformer.wte.weight": (vocab, C), "transformer.wpe.weight": (n_ctx, C),
                    "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
        for i in range(n_layers):
            p = f"transformer.h.{i}."
            expected.update({p + "ln_1.weight": (C,), p + "ln_1.bias": (C,), p + "ln_2.weight": (C,),
                             p + "ln_2.bias": (C,), p + "attn.c_attn.weight": (C, 3 * C),
                             p + "attn.c_attn.bias": (3 * C,), p + "attn.c_proj.weight": (C, C),
                             p + "attn.c_proj.bias": (C,), p + "mlp.c_fc.weight": (C, F),
                             p + "mlp.c_fc.bias": (F,), p + "mlp.c_proj.weight": (F, C), p + "mlp.c_proj.bias": (C,)})
    else:
        n_head_kv = int(meta.get(a + "attention.head_count_kv", n_head))
        head_dim = int(meta.get(a + "attention.key_length", hidden // n_head))
        rope_dim = int(meta.get(a + "rope.dimension_count", head_dim))
        if rope_dim != head_dim or int(meta.get(a + "attention.value_length", head_dim)) != head_dim:
            raise ConvertError(f"{src}: rope.dimension_count {rope_dim} / value_length differ from head dim "
                               f"{head_dim}: partial rotary embeddings are not supported")
        scaling = meta.get(a + "rope.scaling.type", "none")
        if scaling != "none" or "rope_freqs.weight" in names:
            what = f"{a}rope.scaling.type = {scaling!r}" if scaling != "none" else "tensor rope_freqs.weight"
            raise ConvertError(f"{src}: {what}: scaled rotary embeddings are not supported from GGUF "
                               f"(convert the Hugging Face checkpoint instead)")
        if meta.get(a + "expert_count", 0):
            raise ConvertError(f"{src}: mixture-of-experts {arch} files are not supported")
        config = {
            "architectures": [GGUF_FAMILIES[arch]], "model_type": arch, "hidden_act": "silu",
            "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": n_layers,
            "num_attention_heads": n_head, "num_key_value_heads": n_head_kv, "head_dim": head_dim,
            "rms_norm_eps": f32_json(meta.get(a + "attention.layer_norm_rms_epsilon", 1e-5)),
            "rope_theta": f32_json(meta.get(a + "rope.freq_base", 10000.0)), "rope_scaling": None,
            "max_position_embeddings": n_ctx, "vocab_size": vocab, "tie_word_embeddings": tied,
            "torch_dtype": dtype,
        }
        if arch == "llama":
            config.update(attention_bias=False, mlp_bias=False)
        else:
            config.update(use_sliding_window=False, sliding_window=None, max_window_layers=n_layers)
        qd, kd = n_head * head_dim, n_head_kv * head_dim
        expected = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
        for i in range(n_layers):
            p = f"model.layers.{i}."
            expected.update({
                p + "self_attn.q_proj.weight": (qd, hidden), p + "self_attn.k_proj.weight": (kd, hidden),
                p + "self_attn.v_proj.weight": (kd, hidden), p + "self_attn.o_proj.weight": (hidden, qd),
                p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden),
                p + "mlp.down_proj.weight": (hidden, inter),
                p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
            })
            if arch == "qwen2":
                expected.update({p + "self_attn.q_proj.bias": (qd,), p + "self_attn.k_proj.bias": (kd,),
                                 p + "self_attn.v_proj.bias": (kd,)})
    if not tied:
        expected["lm_head.weight"] = (vocab, hidden)
    return config, expected


def convert_gguf(src, out, dtype, with_tokenizer, with_weights=True):
    reader = open_gguf(src)
    meta = GGUFMeta(reader, src)
    arch = meta.get("general.architecture", required=True)
    if arch not in GGUF_FAMILIES:
        raise ConvertError(f"{src}: general.architecture = {arch!r} is not supported "
                           f"(supported: {', '.join(GGUF_FAMILIES)})")
    n_layers = int(meta.get(f"{arch}.block_count", required=True))
    names = {t.name for t in reader.tensors}
    embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embd is None:
        raise ConvertError(f"{src}: tensor token_embd.weight is missing")
    vocab = int(meta.get(f"{arch}.vocab_size", int(embd.shape[-1])))
    tokens_field = reader.fields.get("tokenizer.ggml.tokens")
    if tokens_field is not None and len(tokens_field.data) != vocab:
        raise ConvertError(f"{src}: {len(tokens_field.data)} tokens but vocab_size {vocab}")

    # GPT-2: llama.cpp's converter writes output.weight as a copy of token_embd.weight for the
    # tied head; a copy that is identical stays tied (no lm_head.weight file).
    if arch == "gpt2" and "output.weight" in names:
        out_t = next(t for t in reader.tensors if t.name == "output.weight")
        if out_t.tensor_type == embd.tensor_type and np.array_equal(np.asarray(out_t.data), np.asarray(embd.data)):
            names.discard("output.weight")
    config, expected = gguf_config(meta, arch, src, names, vocab, dtype)
    n_head, n_head_kv = config.get("num_attention_heads"), config.get("num_key_value_heads")
    for key, cfg_key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("padding", "pad_token_id")):
        v = meta.get(f"tokenizer.ggml.{key}_token_id")
        if v is not None:
            config[cfg_key] = int(v)
    gen = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in config}

    written = set()
    for k, t in enumerate(reader.tensors):
        if t.name not in names:
            continue  # gpt2's duplicate of token_embd.weight
        hf = gguf_to_hf_name(t.name, n_layers, arch)
        if hf is None or hf not in expected:
            raise ConvertError(f"{src}: tensor {t.name} has no counterpart in the Hugging Face {arch} "
                               f"layout{' (biases are not part of it)' if t.name.endswith('.bias') else ''}")
        shape = tuple(int(d) for d in reversed(t.shape))
        if arch == "gpt2" and hf.endswith(GPT2_CONV1D):
            shape = shape[::-1]
        if shape != expected[hf]:
            raise ConvertError(f"{src}: tensor {t.name} has shape {shape}, expected {expected[hf]} "
                               f"for {hf} from the metadata")
        written.add(hf)
        if not with_weights:
            continue
        w = gguf_tensor_array(t, src)
        if arch == "gpt2" and hf.endswith(GPT2_CONV1D):
            w = np.ascontiguousarray(w.T)
        elif arch == "llama" and ".self_attn.q_proj." in hf:
            w = unpermute_qk(w, n_head)  # llama.cpp permutes llama's q/k rows; qwen2's it leaves
        elif arch == "llama" and ".self_attn.k_proj." in hf:
            w = unpermute_qk(w, n_head_kv)
        np.save(out / f"{hf}.npy", cast("F32", w, dtype))
        if (k + 1) % 50 == 0:
            log(f"{k + 1}/{len(reader.tensors)} tensors")
    missing = sorted(set(expected) - written)
    if missing:
        raise ConvertError(f"{src}: tensors missing for {missing[:5]}{' ...' if len(missing) > 5 else ''}")

    if with_tokenizer:
        gguf_tokenizer(meta, src, out, n_ctx_of(config))
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    what = f"wrote {len(written)} tensors ({dtype})" if with_weights else f"checked {len(written)} tensors (none written)"
    log(f"{what} of {arch} from {src.name} ({'tied' if config['tie_word_embeddings'] else 'untied'} embeddings)")


def n_ctx_of(config):
    return config.get("max_position_embeddings", config.get("n_positions"))


# ---------------------------------------------------------------------------------------------
# Reading a converted directory back (for checks; needs torch and transformers).

def load_npy_state_dict(model_dir):
    """{hf name: torch tensor} from the .npy files of a converted directory ('<u2' = bfloat16 bits)."""
    import torch

    state = {}
    for path in sorted(pathlib.Path(model_dir).glob("*.npy")):
        arr = np.load(path)
        if arr.dtype == np.dtype("<u2"):
            state[path.name[:-4]] = torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
        else:
            state[path.name[:-4]] = torch.from_numpy(arr.copy())
    if not state:
        raise ConvertError(f"{model_dir}: no .npy files")
    return state


def load_npy_model(model_dir, model_class=None, attn_implementation="eager", torch_dtype=None):
    """A transformers model built from a converted directory's config.json and .npy weights.
    Parameters are cast to the model's dtype (float32 unless torch_dtype says otherwise); a missing
    lm_head is accepted only where the config ties it to the embeddings."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(model_dir))
    config._attn_implementation = attn_implementation
    model_class = model_class or AutoModelForCausalLM
    make = getattr(model_class, "from_config", None) or model_class._from_config  # Auto* or concrete class
    model = make(config, attn_implementation=attn_implementation, dtype=torch_dtype or torch.float32)
    state = load_npy_state_dict(model_dir)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {}) if getattr(config, "tie_word_embeddings", False) else set()
    if unexpected or set(missing) - tied:
        raise ConvertError(f"{model_dir}: weights do not match {type(model).__name__}: "
                           f"missing {sorted(set(missing) - tied)[:5]}, unexpected {sorted(unexpected)[:5]}")
    if tied:
        model.tie_weights()
    return model.eval()


# ---------------------------------------------------------------------------------------------

def is_gguf(path):
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def convert(src, out, dtype="float32", force=False, with_tokenizer=True, with_weights=True):
    src, out = pathlib.Path(src), pathlib.Path(out)
    if dtype not in DTYPES:
        raise ConvertError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if not src.exists():
        raise ConvertError(f"{src}: no such file or directory")
    if out.exists() and not force:
        raise ConvertError(f"{out}: already exists (use --force to replace it)")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        if src.is_dir():
            if not with_weights or not with_tokenizer:
                raise ConvertError(f"{src}: --no-weights and --no-tokenizer apply to GGUF input only")
            convert_hf(src, partial, dtype)
        elif is_gguf(src):
            convert_gguf(src, partial, dtype, with_tokenizer, with_weights)
        else:
            raise ConvertError(f"{src}: neither a Hugging Face model directory nor a GGUF file")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    log(f"done: {out}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="Hugging Face model directory or .gguf file")
    ap.add_argument("out", help="output model directory")
    ap.add_argument("--dtype", default="float32", choices=DTYPES)
    ap.add_argument("--force", action="store_true", help="replace OUT if it exists")
    ap.add_argument("--no-tokenizer", action="store_true", help="GGUF: convert the weights and config only")
    ap.add_argument("--no-weights", action="store_true", help="GGUF: write the config and tokenizer files only")
    args = ap.parse_args(argv)
    try:
        convert(args.src, args.out, args.dtype, args.force, not args.no_tokenizer, not args.no_weights)
    except ConvertError as e:
        print(f"convert.py: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"convert.py: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
