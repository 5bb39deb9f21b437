#!/usr/bin/env python3
"""The hard-string corpus for the tokenizer parity tests, and the text the small test tokenizers are
trained on. Everything is deterministic (fixed seeds, no files read), so the fixtures can be rebuilt
bit for bit by tools/make_tokenizer_fixtures.py; bench/tokenizer reuses the pools for its text."""
import random

# Hand-written cases: each one aims at a rule of a normalizer, pre-tokenizer, added-token matcher or
# BPE/WordPiece model that a naive implementation gets wrong.
HAND = [
    "", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n\n", " \n ", "\t\t  \n", "a", "ab", "A",
    "Hello world", "Hello  world ", "Hello world   ", "   leading spaces", "trailing tab\t",
    "line one\nline two\n", "windows\r\nline\r\n", "mixed \t \n\n  \u00a0 runs", "\u3000ideographic space",
    "nbsp\u00a0between", "narrow\u202fnbsp", "ogham\u1680space", "en\u2002em\u2003thin\u2009hair\u200a",
    "mongolian\u180evowel\u180e separator", "zero\u200bwidth\u200bspace", "line\u2028sep\u2029para",
    "next\u0085line", "vt\x0bff\x0c", "fs\x1cgs\x1drs\x1eus\x1f", "nul\x00byte", "bell\x07 and esc\x1b[0m",
    "bom\ufeffinside", "soft\u00adhyphen", "replacement \ufffd char", "private \ue000\uf8ff use",
    "noncharacter \ufdd0 \uffff", "astral private \U000f0000",
    # contractions and case-insensitive suffixes
    "I'm sure you're right, they'll see we've done it'd've", "DON'T SHOUT, IT'S FINE", "they'LL",
    "O'Neil's 'quoted' ''s", "X'ſ Y'S Z'K w'\u212a", "it\u2019s curly", "rock'n'roll", "'s", "'",
    "''", "' s", "don't'", "l'amour d'été", "ca'n't",
    # CJK, Japanese, Korean
    "你好，世界！", "我爱自然语言处理。", "日本語のテキスト、カタカナとひらがな。", "東京タワー",
    "한국어 텍스트 입니다", "\u1100\u1161\u11a8 decomposed jamo", "\u4e00\u9fff\u3400\u4dbf",
    "\U00020000\U0002a6df\U0002a700\U0002b73f\U0002b740\U0002b81f\U0002b820\U0002ceaf",
    "\uf900\ufaff\U0002f800\U0002fa1f", "abc你def好ghi", "中文English混合123", "半角ｶﾀｶﾅ and ｆｕｌｌｗｉｄｔｈ ＡＢＣ１２３",
    # emoji and ZWJ sequences
    "👍", "👍🏽", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "🇺🇳🇯🇵🇫🇷", "❤️ red heart", "1️⃣ keycap",
    "🥲 smiling with tear", "🫠 melting", "🧑🏿‍🚀 astronaut", "emoji🙂inside🙃words", "🙂🙂🙂🙂🙂",
    "☕️ coffee ☕", "✈\ufe0e text style", "🤷‍♀️🤷🏻‍♂️",
    # combining marks and normalization
    "e\u0301", "\u00e9", "cafe\u0301 vs caf\u00e9", "\u212b angstrom vs \u00c5", "\ufb01ne ligature \ufb02ow",
    "① ② ③", "x² + y³ = z⁴", "½ ¼ ¾", "Ⅻ Ⅳ ⅷ", "\u0301 leading combining", "a\u0308\u0323 reorder a\u0323\u0308",
    "Z̷̢̛͓a̸̖͊l̶̡̈g̵͎̈́o̴̝͝ text", "s\u0323\u0307 vs \u1e69", "\u1e9b\u0323 long s dot", "\u0958 qa", "\u2126 ohm",
    "\u00c5\u030a double ring", "Å̈ stacked", "\u0f73 tibetan", "\uac00\u11a8 hangul lv+t", "\u1100\u1161",
    "ﷺ arabic ligature", "㍻ square era", "ℌ𝔢𝔩𝔩𝔬 fraktur 𝐛𝐨𝐥𝐝", "\u2460\u2474\u2488", "ｶﾞ halfwidth voiced",
    # scripts
    "مرحبا بالعالم", "اللغة العربية ١٢٣٤٥", "שָׁלוֹם עוֹלָם", "नमस्ते दुनिया", "क्षत्रिय १२३", "สวัสดีครับ ภาษาไทย",
    "வணக்கம் உலகம்", "ಕನ್ನಡ ಭಾಷೆ", "Σίσυφος ΣΑΣ ὁ λόγος", "ΌΣΟΣ σοφός", "Привет, мир! Ёжик", "Україна Їжак",
    "İstanbul ıi İI", "Straße STRASSE ß ẞ", "Ærøskøbing Ĳssel", "Việt Nam Tiếng Việt", "ქართული ენა",
    "Հայերեն", "አማርኛ", "ᐃᓄᒃᑎᑐᑦ", "ꦗꦮ", "𐌰𐌱𐌲 gothic", "𓀀𓀁 hieroglyphs", "ᚠᚢᚦ runes", "Ⲁⲃ coptic",
    # code
    "def f(x):\n    return x ** 2  # square\n", "int main() {\n\treturn 0;\n}\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }", "if x==1:\n\tpass\nelse:\n\t\tpass",
    "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}", "<div class=\"x\">Hello &amp; bye</div>",
    "SELECT * FROM users WHERE id = 42;", "#include <vector>\n#define MAX(a,b) ((a)>(b)?(a):(b))",
    "x=>x*2; let y = `template ${x}`;", "regex: ^[a-z]+\\d{3,}$", "path C:\\Users\\me\\file.txt",
    "/usr/local/bin/python3 --version", "https://example.com/a/b?c=d&e=f#frag", "mail me: a.b+c@d-e.org",
    "    indented four\n        eight\n", "\t\tdouble tab", "a_b_c __init__ snake_case CamelCase", "i++ --j !=",
    "$ ls -la | grep '^d' > out.txt 2>&1", "std::vector<std::pair<int, float>> v{};", "λx.x → ∀y∃z",
    # numbers
    "1234567890123456789012345678901234567890", "3.14159265358979", "1,000,000.00", "-42", "+7", "0x1F2E",
    "1e-10", "2024-01-15T12:34:56Z", "٣٤٥٦٧", "१२३४", "１２３４５", "𝟙𝟚𝟛", "10%", "$99.99", "€1.234,56",
    "phone: +1 (555) 123-4567", "12 345 678", "v1.2.3-rc4", "0.000001", "123abc456def",
    # punctuation and BERT pre-tokenizer cases
    "hello...world", "a--b---c", "wait!!! really???", "¿Qué? ¡Sí!", "«quotes» „low“ ‘single’", "(a)[b]{c}<d>",
    "semi;colon:colon", "tilde~caret^back`", "em—dash–en", "ellipsis… bullet •", "§ ¶ † ‡", "@#$%^&*",
    "under_score", "snake_case_words", "___", "a.b.c", "3.5.7",
    # BERT long words and accents
    "a" * 99, "b" * 100, "c" * 101, "supercalifragilisticexpialidocious" * 4, "Héllo Wörld ÀÉÎÕÜ ñ ç",
    "CRÈME BRÛLÉE", "naïve coöperate résumé", "\u0130\u0131 dotted", "Ǆ ǅ ǆ digraphs", "ΣΑΣ",
    # special tokens inside text (every family's markers)
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>", "text<|endoftext|>text",
    "<|im_start|><|im_end|>", "<|im_sta", "<<|im_end|>>", "< |im_end| >", "<|IM_END|>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>", "<|eot_id|><|eot_id|>",
    "[CLS] a [SEP] b [SEP]", "[MASK] is [mask]", "[UNK][PAD]", "x[SEP]y", "<mask>", " <mask> ", "a<mask>b",
    "hello <mask>  world", "<s> </s>", "<pad>", "<unk>", "<|fim_prefix|>code<|fim_suffix|>", "<filename>a.py",
    # mixtures
    "Hello 世界 🌍 مرحبا ١٢٣ — done.", "CamelCase123under_score\tTab", "A\u0301\u0302\u0303 b\u0300",
    "   \n\t  mixed   whitespace\t\t\n  end  ", "The year 2024 had 366 days and 8784 hours.",
]


WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but "
    "have an they you were her she there one all we can their has been if more when will would who so "
    "no time about into only other people could new some these two may first then do any like my now "
    "over such our man me even most made after also did many before must through years where much your "
    "way well down should because each just those how too little state good very make world still own "
    "see men work long here get both between life being under never day same another know while last "
    "might us great old year off come since against go came right used take three tokenizer model "
    "batch attention sequence vector matrix kernel encode decode merge vocabulary byte level piece "
    "normalize unicode character string number python function return class import print value"
).split()

SCRIPT_WORDS = [
    "你好", "世界", "语言", "模型", "東京", "カタカナ", "ひらがな", "한국어", "텍스트", "مرحبا", "العالم", "שלום",
    "नमस्ते", "दुनिया", "สวัสดี", "வணக்கம்", "Привет", "мир", "Ελληνικά", "λόγος", "Straße", "naïve", "café",
    "İstanbul", "ıi", "Việt", "ქართული", "Ærø", "résumé", "jalapeño", "Zürich", "Kraków", "Ελλάδα",
]
EMOJI = ["👍", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "❤️", "1️⃣", "🥲", "🫠", "🧑🏿‍🚀", "🙂", "🚀", "✨", "🔥",
         "😂", "🤷‍♀️", "☕️", "🎉", "🐍", "💡"]
COMBINING = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u0323", "\u0327", "\u030a", "\u0338",
             "\u20dd", "\u0591", "\u064b", "\u093c", "\u0e31", "\u302a", "\u1ab0"]
SPACES = [" ", " ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\u00a0", "\u3000", "\u2003",
          " \t", "\u180e", "\u200b", "\u2028", "\x85"]
PUNCT = list(".,;:!?-—–()[]{}<>\"'`~@#$%^&*_+=/\\|") + ["...", "…", "«", "»", "“", "”", "‘", "’", "¿", "¡",
                                                       "·", "•", "§", "°", "€", "£", "¥", "©", "®", "™"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>",
            "<|start_header_id|>", "<|end_header_id|>", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]",
            "<mask>", "<s>", "</s>", "<pad>", "<|im_sta", "<|", "|>"]
CODE = [
    "def {w}({a}, {b}):\n    return {a} + {b}\n", "if ({a} > {n}) {{ {b}++; }}", "{w} = [{n}, {m}, {n}]",
    "for {a} in range({n}):\n\tprint({a})", "#include <{w}.h>", "{w}_{a} = {{\"{b}\": {n}}}",
    "    {w}.{a}({b}) # {w}", "x += {n}; y -= {m};", "<{w} id=\"{a}\">{b}</{w}>", "SELECT {a} FROM {w};",
    "{w}::{a}<{b}> v;", "/* {w} */ int {a} = 0x{h};", "`{w}` => {n}", "{w}\t{a}\t{b}",
]


def _number(rng):
    kind = rng.randrange(8)
    if kind == 0:
        return str(rng.randrange(10))
    if kind == 1:
        return str(rng.randrange(10 ** rng.randrange(2, 25)))
    if kind == 2:
        return f"{rng.random() * 10 ** rng.randrange(0, 8):.{rng.randrange(1, 6)}f}"
    if kind == 3:
        return f"{rng.randrange(1, 10 ** 7):,}"
    if kind == 4:
        return "".join(rng.choice("٠١٢٣٤٥٦٧٨٩") for _ in range(rng.randrange(1, 7)))
    if kind == 5:
        return "".join(rng.choice("０１２３４５６７８９") for _ in range(rng.randrange(1, 5)))
    if kind == 6:
        return f"{rng.randrange(1, 100)}.{rng.randrange(100)}.{rng.randrange(1000)}"
    return f"-{rng.randrange(1, 10 ** 6)}e{rng.randrange(-20, 20)}"


def _word(rng):
    r = rng.random()
    if r < 0.55:
        w = rng.choice(WORDS)
        t = rng.random()
        if t < 0.12:
            w = w.capitalize()
        elif t < 0.16:
            w = w.upper()
        elif t < 0.2:
            w = w + rng.choice(["'s", "'t", "'re", "'ll", "'d", "'ve", "'m", "'S", "n't"])
        return w
    if r < 0.72:
        return rng.choice(SCRIPT_WORDS)
    if r < 0.8:
        return _number(rng)
    if r < 0.86:
        return rng.choice(EMOJI)
    if r < 0.9:
        w = rng.choice(WORDS + SCRIPT_WORDS)
        i = rng.randrange(len(w) + 1)
        return w[:i] + rng.choice(COMBINING) + w[i:]
    if r < 0.94:
        return rng.choice(PUNCT) * rng.randrange(1, 4)
    if r < 0.97:
        return rng.choice(SPECIALS)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randrange(20, 130)))


def _code(rng):
    t = rng.choice(CODE)
    return t.format(w=rng.choice(WORDS), a=rng.choice(WORDS), b=rng.choice(WORDS), n=rng.randrange(1000),
                    m=rng.randrange(10 ** 6), h=f"{rng.randrange(1 << 32):X}")


def generated(count, seed):
    """`count` random strings mixing words of many scripts, numbers, emoji, combining marks, special
    token strings, code and unusual whitespace."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        if rng.random() < 0.15:
            s = _code(rng)
            if rng.random() < 0.5:
                s += rng.choice(SPACES) + _code(rng)
        else:
            n = rng.choice([1, 2, 3, 5, 8, 13, 21])
            parts = []
            for i in range(n):
                if i:
                    parts.append(" " if rng.random() < 0.7 else rng.choice(SPACES))
                parts.append(_word(rng))
            s = "".join(parts)
        r = rng.random()
        if r < 0.08:
            s = rng.choice(SPACES) + s
        elif r < 0.16:
            s = s + rng.choice(SPACES)
        elif r < 0.2:
            s = s + " " * rng.randrange(2, 6)
        out.append(s)
    return out


def random_code_points(count, seed):
    """Strings of code points drawn from every plane (assigned or not), mixed with marks, digits,
    spaces and contractions: they reach the corners of the Unicode tables."""
    rng = random.Random(seed)

    def one():
        r = rng.random()
        lo, hi = ((0x20, 0x250) if r < 0.3 else (0x250, 0x3000) if r < 0.6 else (0x3000, 0x10000) if r < 0.8
                  else (0x10000, 0x30000) if r < 0.95 else (0, 0x110000))
        c = rng.randrange(lo, hi)
        return "A" if 0xD800 <= c < 0xE000 else chr(c)

    extras = [" ", "a", "e\u0301", "1", "'s", "\n", "  ", "A", "\u0308", "\u0323"]
    return ["".join(one() if rng.random() < 0.6 else rng.choice(extras) for _ in range(rng.randrange(1, 12)))
            for _ in range(count)]


def corpus():
    """The parity corpus: hand-written cases, generated mixtures, random code points (2300 in all)."""
    return HAND + generated(2050 - len(HAND), seed=20240611) + random_code_points(250, seed=99)


def training_text(seed=7, lines=6000):
    """Lines to train the small BPE test tokenizers on: mostly English-like prose and code, with the
    other scripts present often enough to get merges of their own."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        if rng.random() < 0.2:
            out.append(_code(rng))
            continue
        n = rng.randrange(4, 30)
        words = []
        for _ in range(n):
            words.append(rng.choice(WORDS) if rng.random() < 0.8 else _word(rng))
        line = " ".join(words)
        out.append(line[0].upper() + line[1:] + rng.choice([".", ".", "!", "?", ":", ""]))
    return out + HAND
