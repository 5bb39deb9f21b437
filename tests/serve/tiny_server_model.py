"""Writes a tiny random model directory that crossbatch_server can load, for the server tests.

A llama-family model (2 layers, hidden 32, 64 positions) with float32 npy weights under their
Hugging Face names (as model/random_weights.hpp's checkpoint_tensors lists them), the test BPE
tokenizer of tests/data/text/gpt2 (1500 tokens, <|endoftext|>) plus the ChatML tokens
<|im_start|> and <|im_end|> as added tokens, and a tokenizer_config.json holding SmolLM2's chat
template. Two seeds give an after/before pair with the same vocabulary.
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "text")

CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a tiny test model<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def write_tiny_model(directory, seed, max_positions=64, layers=2, hidden=32, intermediate=48):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(DATA, "gpt2", "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    size = max(len(tok["model"]["vocab"]), max(a["id"] for a in tok["added_tokens"]) + 1)
    for name in ("<|im_start|>", "<|im_end|>"):
        tok["added_tokens"].append({"id": size, "content": name, "single_word": False,
                                    "lstrip": False, "rstrip": False, "normalized": False,
                                    "special": True})
        size += 1
    im_end = size - 1
    with open(os.path.join(directory, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f)
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                   "chat_template": CHAT_TEMPLATE}, f)
    heads, kv_heads, inter = 4, 2, intermediate
    config = {"model_type": "llama", "vocab_size": size, "hidden_size": hidden,
              "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv_heads, "intermediate_size": inter,
              "max_position_embeddings": max_positions, "rms_norm_eps": 1e-6,
              "rope_theta": 10000.0, "tie_word_embeddings": True, "eos_token_id": im_end}
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    rng = np.random.default_rng(seed)
    dh = hidden // heads

    def save(name, shape, bound, base=0.0):
        w = (base + rng.uniform(-bound, bound, size=shape)).astype(np.float32)
        np.save(os.path.join(directory, name + ".npy"), w)

    save("model.embed_tokens.weight", (size, hidden), 1.0)
    for i in range(layers):
        p = f"model.layers.{i}."
        save(p + "input_layernorm.weight", (hidden,), 0.1, 1.0)
        save(p + "self_attn.q_proj.weight", (heads * dh, hidden), 2 * np.sqrt(3 / hidden))
        save(p + "self_attn.k_proj.weight", (kv_heads * dh, hidden), 2 * np.sqrt(3 / hidden))
        save(p + "self_attn.v_proj.weight", (kv_heads * dh, hidden), 2 * np.sqrt(3 / hidden))
        save(p + "self_attn.o_proj.weight", (hidden, heads * dh), 2 * np.sqrt(3 / hidden))
        save(p + "post_attention_layernorm.weight", (hidden,), 0.1, 1.0)
        save(p + "mlp.gate_proj.weight", (inter, hidden), 2 * np.sqrt(3 / hidden))
        save(p + "mlp.up_proj.weight", (inter, hidden), 2 * np.sqrt(3 / hidden))
        save(p + "mlp.down_proj.weight", (hidden, inter), 2 * np.sqrt(3 / inter))
    save("model.norm.weight", (hidden,), 0.1, 1.0)
    return config


if __name__ == "__main__":
    write_tiny_model(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)
