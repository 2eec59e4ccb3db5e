#!/usr/bin/env python3
"""Regenerates the tokenizer test fixtures from HF `tokenizers` (the reference implementation).

(a) Trains a small byte-level BPE tokenizer per supported pre-tokenizer family (the HF pre_tokenizer
    configs of SmolLM2, Llama 3, Qwen2 and GPT-2), saves each tokenizer.json and the expected ids of
    the test corpus:    Tests/CondenseTokenizerTests/Fixtures/tokenizer-<family>.json
                        Tests/CondenseTokenizerTests/Fixtures/expected-ids.json
(b) Rebuilds the real SmolLM2 tokenizer from the GGUF file's vocab/merges with SmolLM2's
    tokenizer.json configuration and writes the expected ids of the same corpus (ids only, no vocab):
                        Tests/CondenseTokenizerTests/Fixtures/smollm2-expected-ids.json

Usage: pip install tokenizers gguf
       scripts/gen-tokenizer-fixtures.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
(default: $CONDENSE_TEST_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf)
"""
import json
import os
import sys
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests" / "CondenseTokenizerTests" / "Fixtures"

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
USER_DEFINED_TOKEN = "[NOTE]"
# In the llama-bpe fixture only: a vocabulary word no merge sequence builds, so `ignore_merges` matters.
UNMERGEABLE_WORD = "Ġzqxjv"


def pre_tokenizer_for(family):
    byte_level_regex = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    byte_level_plain = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)
    if family == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level_regex])
    if family == "llama-bpe":
        return pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False), byte_level_plain])
    if family == "qwen2":
        return pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False), byte_level_plain])
    if family == "gpt2":
        return byte_level_regex
    raise ValueError(family)


def lcg_letters(count, seed):
    """Deterministic pseudo-random lowercase letters (no dependency on Python's random across versions)."""
    state, out = seed, []
    for _ in range(count):
        state = (state * 1103515245 + 12345) % (1 << 31)
        out.append(chr(ord("a") + (state >> 16) % 26))
    return "".join(out)


# Fragments that stress the pre-tokenizers' edges when glued together at random.
FRAGMENTS = [
    "a", "Z", "é", "ſ", "ß", "中", "😀", "👍🏽", "\u200d", "1", "22", "333", "٣", "²", " ", "  ", "\t", "\n",
    "\r\n", "\r", "\u00a0", "\u3000", "'", "'s", "'S", "'ll", "'LL", "'re", "'Ve", "'d", ".", ",", "!?", "...",
    "(", "\"", "-", "#", "<|im_start|>", "<|im_end|>", "[NOTE]", "<|", "hello", " the", "The", "don't", "\u0301",
    "\u0007", "\U00011de0", "\U00010940",
]


def mixed_strings(count, seed):
    state, out = seed, []
    for _ in range(count):
        state = (state * 1103515245 + 12345) % (1 << 31)
        parts = []
        for _ in range(1 + (state >> 16) % 30):
            state = (state * 1103515245 + 12345) % (1 << 31)
            parts.append(FRAGMENTS[(state >> 16) % len(FRAGMENTS)])
        out.append("".join(parts))
    return out


def corpus():
    return mixed_strings(60, 7) + [
        "Hello world",
        'This sentence: "The quick brown fox jumps over the lazy dog." belongs to the following cluster:',
        "I'm sure it's fine: they're here, we've won, you'll see, he'd go, don't stop.",
        "I'M LOUD! YOU'LL SEE, THEY'RE HERE, WE'VE, SHE'S, HE'D, I'Ll, 'tis, rock'n'roll, O'Neil's",
        "x'ſa 'Sa 'LLa 'Ka ''' ' 's",
        "12345678901234567890 and 3.14159, 1,000,000, 2024-11-25, v1.2.3, 0x1F, 1e-9",
        "a1b22c333d4444e55555 ٣٤٥ ² ½ Ⅻ",
        "  leading spaces",
        "trailing spaces   ",
        "tabs\tand\t\tdouble\t tabs \t",
        "new\nlines\n\n\nmany\n",
        "windows\r\nline\r\n\r\nendings \r\n",
        "mixed \t \n  \n\t x \n y\n\n z",
        "   ",
        "\n",
        "",
        " ",
        "a  b   c    d     e",
        "café naïve résumé Ünïcödé ÅÄÖ ß Œuvre",
        "Ελληνικά κείμενο, Русский текст, עברית, العربية, हिन्दी",
        "e\u0301 combining and ﬁ ligature and İstanbul",
        "\u00a0nbsp\u00a0between \u2003em\u2003space \u3000ideographic\u3000 \u202fnarrow\u2028sep\u2029",
        "bell\u0007 unit\u001fsep NEL\u0085next vt\u000bff\u000c end\u200bzero-width",
        "中文文本测试，包括标点。日本語のテキストです。한국어 텍스트입니다.",
        "emoji 😀🎉👍🏽 family 👨\u200d👩\u200d👧\u200d👦 flag 🇫🇷 heart ❤️ done",
        "func main() {\n    let x = [1, 2, 3].map { $0 * 2 }\n    print(\"\\(x)\")\n}\n",
        "def f(a, b):\n\treturn a**2 + b // 3  # comment\n\n\nclass X: pass\n",
        '<html><body class="x">&nbsp;</body></html>',
        "SELECT * FROM t WHERE id >= 10 AND name <> 'x';",
        "Wait... what?!? (yes) [no] {maybe} -- 'quoted' \"double\" `back` ~!@#$%^&*_+=|\\/<> ...!!!???",
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|><|endoftext|>text<|im_end|>",
        "almost <|im_start special <|im_end| and <| |>",
        "[NOTE] a user-defined token [NOTE][NOTE]",
        "new digits \U00011de0\U00011de1 and letters \U00010940\U00010941 of Unicode 17",
        "naïve中文abc123DEF!!?",
        "the zqxjv word and zqxjv",
        lcg_letters(5000, 42),
        "a" * 5000,
        "7" * 5000,
    ]


def training_text():
    sentences = (ROOT.parent / "shared" / "bench" / "sentences.txt")
    if not sentences.exists():
        sentences = Path("/work/shared/bench/sentences.txt")
    lines = sentences.read_text(encoding="utf-8").splitlines() if sentences.exists() else []
    # Short corpus items help the merges cover the test text; the unmergeable word must stay unlearnt.
    return lines + [item for item in corpus() if len(item) < 1000 and "zqxjv" not in item] * 3


def train(family, text):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizer_for(family)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024, min_frequency=2, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(text, trainer=trainer)
    config = json.loads(tokenizer.to_str())
    if family == "llama-bpe":
        config["model"]["ignore_merges"] = True
        assert UNMERGEABLE_WORD not in config["model"]["vocab"]
        config["model"]["vocab"][UNMERGEABLE_WORD] = len(config["model"]["vocab"])
    if family == "gpt2":
        # Exercise the legacy "left right" merge form; the others keep the [left, right] form.
        config["model"]["merges"] = [" ".join(pair) for pair in config["model"]["merges"]]
    tokenizer = Tokenizer.from_str(json.dumps(config))
    tokenizer.add_tokens([AddedToken(USER_DEFINED_TOKEN, special=False)])
    ids = list(tokenizer.get_vocab(with_added_tokens=True).values())
    assert len(set(ids)) == len(ids), "token ids must be unique"
    return tokenizer


def write_json(path, value):
    path.write_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


def family_fixtures():
    text = training_text()
    expected = {}
    for family in ["smollm", "llama-bpe", "qwen2", "gpt2"]:
        tokenizer = train(family, text)
        path = FIXTURES / f"tokenizer-{family}.json"
        path.write_text(tokenizer.to_str() + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")
        ids = [tokenizer.encode(item).ids for item in corpus()]
        for item, item_ids in zip(corpus(), ids):
            assert tokenizer.decode(item_ids, skip_special_tokens=False) == item, item
        expected[family] = ids
    write_json(FIXTURES / "expected-ids.json", {"corpus": corpus(), "ids": expected})


def smollm2_fixture(gguf_path):
    from gguf import GGUFReader

    reader = GGUFReader(gguf_path)
    field = lambda name: reader.fields[name].contents()
    tokens, merges, types = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.merges"), field("tokenizer.ggml.token_type")
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "smollm"
    assert field("tokenizer.ggml.add_bos_token") is False
    model = models.BPE(vocab={token: i for i, token in enumerate(tokens)},
                       merges=[tuple(merge.split(" ", 1)) for merge in merges])
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizer_for("smollm")
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token, kind in zip(tokens, types) if kind == 3])

    # SmolLM2's published tokenizer.json, as far as the reference depends on it.
    config = json.loads(tokenizer.to_str())
    assert config["normalizer"] is None
    assert config["pre_tokenizer"] == {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}, config["pre_tokenizer"]
    assert config["decoder"]["type"] == "ByteLevel"
    assert config["post_processor"] is None  # no BOS/EOS added
    assert tokenizer.encode("<|im_start|>user").ids[:1] == [1]
    assert tokenizer.encode("Hello").ids[0] != field("tokenizer.ggml.bos_token_id")

    ids = [tokenizer.encode(item).ids for item in corpus()]
    for item, item_ids in zip(corpus(), ids):
        assert tokenizer.decode(item_ids, skip_special_tokens=False) == item, item
    write_json(FIXTURES / "smollm2-expected-ids.json", {
        "model": "SmolLM2-135M-Instruct (GGUF tokenizer.ggml.* rebuilt in HF tokenizers)",
        "corpus": corpus(), "ids": ids})


def main():
    FIXTURES.mkdir(parents=True, exist_ok=True)
    family_fixtures()
    gguf_path = (sys.argv[1] if len(sys.argv) > 1
                 else os.environ.get("CONDENSE_TEST_MODEL", str(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")))
    if Path(gguf_path).exists():
        smollm2_fixture(gguf_path)
    else:
        print(f"skipping the SmolLM2 fixture: {gguf_path} not found", file=sys.stderr)


if __name__ == "__main__":
    main()
