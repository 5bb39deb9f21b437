#!/usr/bin/env python3
"""Converts a trained ARMT checkpoint (the state dict of the reference's AssociativeRecurrentWrapper)
into a crossbatch ARMT model directory: the base model's npy files under their Hugging Face names,
the ARMT parameters under the reference's own state-dict names, config.json and armt_config.json.

    convert_armt.py CHECKPOINT BASE_CONFIG_JSON OUT_DIR --segment-size S --num-mem-tokens M
                    [--d-mem 64] [--no-correction] [--dtype float32|float16|bfloat16]

CHECKPOINT is a .safetensors file or a torch state dict (.pt/.bin). Its names look like
  memory_cell.memory                                          (M, d)
  memory_cell.model.<layers>.<i>.W_mq.weight / W_mk.weight    (d_mem, d)
  memory_cell.model.<layers>.<i>.W_mv.weight                  (d, d)
  memory_cell.model.<layers>.<i>.W_mb.weight / W_mb.bias      (1, d) / (1,)
  memory_cell.model.<layers>.<i>.layer.<block tensor>          the wrapped decoder block
  memory_cell.model.<anything else>                            the base model
with <layers> = model.layers (llama, qwen2) or transformer.h (gpt2). Base tensors lose the
`memory_cell.model.` prefix and the `.layer` of the wrapper; the ARMT tensors keep their names.
GPT-2 with wrap_pos (the reference's default) has a position table of n_positions + M rows, the
last M for the memory tokens: the base file gets the first n_positions rows (so the base model
loads unchanged) and memory_cell.model.transformer.wpe.weight keeps the whole table.
The output is written to OUT_DIR.partial and renamed at the end; errors exit 1 naming the tensor.
"""
import argparse
import json
import pathlib
import re
import shutil
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import convert  # noqa: E402

ARMT_PARAMS = ("W_mq.weight", "W_mk.weight", "W_mv.weight", "W_mb.weight", "W_mb.bias")


def layers_attr(model_type):
    return "transformer.h" if model_type == "gpt2" else "model.layers"


def read_checkpoint(path):
    path = str(path)
    reader = convert.read_safetensors if path.endswith(".safetensors") else convert.read_torch_bin
    return {name: (kind, arr) for name, kind, arr in reader(path)}


def convert_armt(checkpoint, base_config, out, segment_size, num_mem_tokens, d_mem=64,
                 correction=True, dtype="float32", wrap_pos=None):
    config = json.loads(pathlib.Path(base_config).read_text())
    model_type = config.get("model_type")
    if model_type not in ("gpt2", "llama", "qwen2"):
        raise convert.ConvertError(f"{base_config}: model_type {model_type!r} (gpt2, llama, qwen2)")
    layers = layers_attr(model_type)
    state = read_checkpoint(checkpoint)
    prefix = "memory_cell.model."
    if "memory_cell.memory" not in state:
        raise convert.ConvertError(f"{checkpoint}: no tensor memory_cell.memory (not an ARMT checkpoint?)")
    wpe_name = prefix + "transformer.wpe.weight"
    if wrap_pos is None:
        wrap_pos = model_type == "gpt2"
    out = pathlib.Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    layer_re = re.compile(re.escape(prefix + layers) + r"\.(\d+)\.(.*)$")
    for name, (kind, arr) in state.items():
        data = convert.cast(kind, arr, dtype)
        if name == "memory_cell.memory":
            np.save(tmp / f"{name}.npy", data)
            continue
        if not name.startswith(prefix):
            raise convert.ConvertError(f"{checkpoint}: tensor {name} is neither memory_cell.memory "
                                       f"nor under {prefix}")
        m = layer_re.match(name)
        if m and m.group(2) in ARMT_PARAMS:
            np.save(tmp / f"{name}.npy", data)
            continue
        base = name[len(prefix):]
        if m:
            rest = m.group(2)
            if not rest.startswith("layer."):
                raise convert.ConvertError(f"{checkpoint}: tensor {name}: expected the wrapped block "
                                           f"under '.layer.' or an ARMT parameter {ARMT_PARAMS}")
            base = f"{layers}.{m.group(1)}.{rest[len('layer.'):]}"
        if name == wpe_name and wrap_pos:
            n_pos = data.shape[0] - num_mem_tokens
            if n_pos != config.get("n_positions"):
                raise convert.ConvertError(
                    f"{checkpoint}: {name} has {data.shape[0]} rows; wrap_pos needs n_positions "
                    f"({config.get('n_positions')}) + num_mem_tokens ({num_mem_tokens})")
            np.save(tmp / f"{name}.npy", data)
            data = data[:n_pos]
        np.save(tmp / f"{base}.npy", np.ascontiguousarray(data))
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    armt = dict(segment_size=segment_size, num_mem_tokens=num_mem_tokens, d_mem=d_mem, nu=3,
                correction=correction, wrap_pos=bool(wrap_pos), layers_attr=layers)
    if wrap_pos:
        armt["memory_position_start"] = config["n_positions"]
    (tmp / "armt_config.json").write_text(json.dumps(armt, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("base_config")
    p.add_argument("out")
    p.add_argument("--segment-size", type=int, required=True)
    p.add_argument("--num-mem-tokens", type=int, required=True)
    p.add_argument("--d-mem", type=int, default=64)
    p.add_argument("--no-correction", action="store_true")
    p.add_argument("--no-wrap-pos", action="store_true", help="gpt2: memory positions continue the text's")
    p.add_argument("--dtype", choices=convert.DTYPES, default="float32")
    a = p.parse_args(argv)
    try:
        convert_armt(a.checkpoint, a.base_config, a.out, a.segment_size, a.num_mem_tokens, a.d_mem,
                     not a.no_correction, a.dtype, False if a.no_wrap_pos else None)
    except convert.ConvertError as e:
        print(f"convert_armt.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
