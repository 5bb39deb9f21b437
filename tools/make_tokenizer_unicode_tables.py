#!/usr/bin/env python3
"""Generates include/crossbatch/text/unicode_tables.hpp: the Unicode data the C++ tokenizers need
(decompositions, combining classes, compositions, lowercase, and the character classes that the
BERT normalizer, the BERT and Digits pre-tokenizers and the added-token matcher use).

Why generated tables and not a library: the goal is the exact ids of the Python `tokenizers` library,
and its Rust crates carry Unicode data of different ages (normalization about Unicode 11, general
categories about Unicode 9, lowercase from a recent Rust std). ICU or libunistring would normalize
by their own (newer) Unicode version and give different ids for the characters assigned since.
So each property is taken from Python's `unicodedata` (Unicode 14 here) and then checked code point
by code point against `tokenizers` itself; where they disagree, `tokenizers` wins. The script prints
how many code points each correction touched.

Usage: tools/make_tokenizer_unicode_tables.py [out.hpp]
"""
import pathlib
import sys
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, models
from tokenizers import normalizers as N
from tokenizers import pre_tokenizers as P

OUT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "include/crossbatch/text/unicode_tables.hpp")
CPS = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
HANGUL = range(0xAC00, 0xD7A4)
# Rust's char::is_whitespace, Rust regex \s and Oniguruma \s: the White_Space property.
WHITE_SPACE = [0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
               0x202F, 0x205F, 0x3000]


def batch_map(fn, items, chunk=8192):
    out = []
    for i in range(0, len(items), chunk):
        out.extend(fn(items[i:i + chunk]))
    return out


def per_char(normalizer):
    return [normalizer.normalize_str(chr(c)) for c in CPS]


def ranges(codes):
    codes = sorted(codes)
    out = []
    for c in codes:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def report(name, ours, theirs):
    ours, theirs = set(ours), set(theirs)
    print(f"{name}: {len(theirs)} code points; unicodedata disagrees on {len(ours ^ theirs)}", file=sys.stderr)
    return theirs


def main():
    nfd = dict(zip(CPS, per_char(N.NFD())))
    nfkd = dict(zip(CPS, per_char(N.NFKD())))
    nfc = N.NFC()

    # Full decompositions (Hangul syllables are algorithmic in the C++ code).
    canon = {c: d for c, d in nfd.items() if d != chr(c) and c not in HANGUL}
    compat = {c: d for c, d in nfkd.items() if d != chr(c) and c not in HANGUL and d != canon.get(c)}
    py_canon = {c for c in CPS if c not in HANGUL and unicodedata.normalize("NFD", chr(c)) != chr(c)}
    report("canonical decompositions", py_canon, canon)

    # Combining classes: unicodedata's values, kept only where tokenizers reorders the mark too
    # (class values never change once assigned; an unknown mark has class 0 in the older data).
    ccc = {}
    for c in CPS:
        v = unicodedata.combining(chr(c))
        if not v:
            continue
        probe = "\u0301" + chr(c) + "\u0334"
        if N.NFD().normalize_str(probe) == unicodedata.normalize("NFD", probe):
            ccc[c] = v
    report("non-zero combining classes", {c for c in CPS if unicodedata.combining(chr(c))}, ccc)

    # Primary composites: a two-character canonical decomposition that NFC recomposes.
    compose = []
    for c in CPS:
        if c in HANGUL or c not in canon:
            continue
        dec = unicodedata.decomposition(chr(c))
        if not dec or dec.startswith("<"):
            continue
        parts = [int(x, 16) for x in dec.split()]
        if len(parts) == 2 and nfc.normalize_str(canon[c]) == chr(c):
            compose.append((parts[0], parts[1], c))
    compose.sort()
    print(f"compositions: {len(compose)}", file=sys.stderr)

    low = dict(zip(CPS, per_char(N.Lowercase())))
    lower = {c: s for c, s in low.items() if s != chr(c)}
    report("lowercase mappings", {c for c in CPS if chr(c).lower() != chr(c)}, lower)

    bert_clean = N.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False,
                                  lowercase=False)
    cleaned = per_char(bert_clean)
    control = [c for c, s in zip(CPS, cleaned) if s == ""]
    report("BERT control (removed)", [c for c in CPS if unicodedata.category(chr(c)) in ("Cc", "Cf", "Co")
                                      and chr(c) not in "\t\n\r" or c == 0xFFFD], control)
    bad_space = [c for c, s in zip(CPS, cleaned) if s == " " and c not in WHITE_SPACE]
    assert not bad_space, bad_space

    hcc = N.BertNormalizer(clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    chinese = [c for c, s in zip(CPS, per_char(hcc)) if s == " " + chr(c) + " "]

    # Marks that strip_accents drops: NFD, then remove what the old tables call Mn.
    strip = N.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    marks = [c for c in CPS if nfd[c] == chr(c) and strip.normalize_str(chr(c)) == ""]
    report("nonspacing marks (strip_accents)", [c for c in CPS if unicodedata.category(chr(c)) == "Mn"], marks)

    bert_pre = P.BertPreTokenizer()
    punct = [c for c in CPS if c not in WHITE_SPACE
             and len(bert_pre.pre_tokenize_str("a" + chr(c) + "a")) == 3]
    report("BERT punctuation", [c for c in CPS if unicodedata.category(chr(c)).startswith("P")
                                or 33 <= c <= 47 or 58 <= c <= 64 or 91 <= c <= 96 or 123 <= c <= 126], punct)

    digits = P.Digits(individual_digits=True)
    numeric = [c for c in CPS if len(digits.pre_tokenize_str("a" + chr(c) + "a")) == 3]
    report("numeric (Digits)", [c for c in CPS if unicodedata.category(chr(c)).startswith("N")], numeric)

    # Rust regex \w, as the single_word check of added tokens sees it.
    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.add_tokens([AddedToken("q", single_word=True, normalized=False)])
    texts = [chr(c) + "q" for c in CPS]
    enc = batch_map(lambda xs: tok.encode_batch(xs), texts)
    word = [c for c, e in zip(CPS, enc) if len(e.ids) == 1]
    report("word characters (\\w)", [c for c in CPS if unicodedata.category(chr(c))[0] in "LMN"
                                     or unicodedata.category(chr(c)) == "Pc"], word)

    python_space = [c for c in CPS if chr(c).isspace()]

    # Oniguruma (the regex engine of `tokenizers`) has newer Unicode data than the PCRE2 we build
    # with (which matches unicodedata): the code points that it puts in \p{L}, \p{N}, ... beyond
    # unicodedata's are added to those properties when patterns are translated for PCRE2.
    regex_extra = {}
    for prop, cats in (("L", ("Lu", "Ll", "Lt", "Lm", "Lo")), ("N", ("Nd", "Nl", "No")),
                       ("M", ("Mn", "Mc", "Me")), ("Nd", ("Nd",)), ("Pc", ("Pc",))):
        split = P.Split(Regex(r"\p{" + prop + "}"), "isolated")
        onig = [c for c in CPS if len(split.pre_tokenize_str(" " + chr(c) + " ")) == 3]
        ours = {c for c in CPS if unicodedata.category(chr(c)) in cats}
        missing = sorted(set(ours) - set(onig))
        print(f"\\p{{{prop}}}: Oniguruma adds {len(set(onig) - ours)}, lacks {len(missing)}", file=sys.stderr)
        regex_extra[prop] = sorted(set(onig) - ours)

    emit(canon, compat, ccc, compose, lower, control, chinese, marks, punct, numeric, word, python_space,
         regex_extra)


def hexes(values, per_line=12):
    lines = []
    for i in range(0, len(values), per_line):
        lines.append("    " + ", ".join(f"0x{v:X}" for v in values[i:i + per_line]) + ",")
    return "\n".join(lines) if lines else "    0,"


def mapping(name, table):
    """A sorted map code point -> code point sequence: keys, (offset << 5 | length) and the pool."""
    keys, index, pool = [], [], []
    for c in sorted(table):
        seq = [ord(x) for x in table[c]]
        assert len(seq) < 32
        keys.append(c)
        index.append(len(pool) << 5 | len(seq))
        pool.extend(seq)
    return (f"inline constexpr std::uint32_t {name}_keys[] = {{\n{hexes(keys)}\n}};\n"
            f"inline constexpr std::uint32_t {name}_index[] = {{\n{hexes(index)}\n}};\n"
            f"inline constexpr std::uint32_t {name}_pool[] = {{\n{hexes(pool)}\n}};\n")


def range_set(name, codes, doc):
    flat = [v for r in ranges(codes) for v in r]
    return f"// {doc}\ninline constexpr std::uint32_t {name}[] = {{\n{hexes(flat)}\n}};\n"


WS_DOC = "White_Space (Rust char::is_whitespace, regex and Oniguruma \\s)."
WORD_DOC = "Rust regex \\w, used by single_word added tokens."


def regex_members(codes):
    out = []
    for lo, hi in ranges(codes):
        out.append(f"\\\\x{{{lo:X}}}" + (f"-\\\\x{{{hi:X}}}" if hi > lo else ""))
    return "".join(out)


def emit(canon, compat, ccc, compose, lower, control, chinese, marks, punct, numeric, word, python_space,
         regex_extra):
    extra = "\n".join(f'inline constexpr const char* regex_extra_{p} = "{regex_members(v)}";'
                       for p, v in regex_extra.items())
    ccc_flat = [v for c in sorted(ccc) for v in (c, ccc[c])]
    compose_flat = [v for t in compose for v in t]
    text = f"""// Unicode data for the tokenizers: decompositions, combining classes, compositions, lowercase
// and character classes. Generated by tools/make_tokenizer_unicode_tables.py from Python's unicodedata
// ({unicodedata.unidata_version}), corrected code point by code point to what the `tokenizers` library does. Do not edit.
#pragma once

#include <cstdint>

// clang-format off
namespace crossbatch::text::unicode_data {{

// Full canonical decompositions (NFD of one code point), Hangul syllables excluded.
{mapping("canonical", canon)}
// Full compatibility decompositions where they differ from the canonical one.
{mapping("compat", compat)}
// Lowercase mappings (Rust's char::to_lowercase, one code point at a time).
{mapping("lower", lower)}
// Non-zero canonical combining classes: code point, class.
inline constexpr std::uint32_t combining_class[] = {{
{hexes(ccc_flat)}
}};
// Primary composites sorted by pair: first, second, composite.
inline constexpr std::uint32_t composition[] = {{
{hexes(compose_flat)}
}};
// Inclusive ranges lo, hi of each character class.
{range_set("white_space", WHITE_SPACE, WS_DOC)}
{range_set("python_space", python_space, "Python str.isspace (what Jinja's trim removes).")}
{range_set("bert_control", control, "Removed by BertNormalizer clean_text (Cc, Cf, Co of the old tables, U+FFFD).")}
{range_set("bert_chinese", chinese, "Padded with spaces by BertNormalizer handle_chinese_chars.")}
{range_set("nonspacing_mark", marks, "Dropped by strip_accents after NFD (Mn of the old tables).")}
{range_set("bert_punctuation", punct, "Isolated by BertPreTokenizer (ASCII punctuation and P*).")}
{range_set("numeric", numeric, "Split by the Digits pre-tokenizer (Rust char::is_numeric: Nd, Nl, No).")}
{range_set("word", word, WORD_DOC)}
// Class members (PCRE2 syntax) that Oniguruma's \\p{{..}} has beyond PCRE2's Unicode data.
{extra}
}}  // namespace crossbatch::text::unicode_data
// clang-format on
"""
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({len(text)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
