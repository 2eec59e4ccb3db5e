#!/usr/bin/env python3
"""Writes the tiny test models under Tests/CondenseModelTests/Fixtures/.

Each model is written twice, with the same weights: as a GGUF file laid out the way llama.cpp's
convert_hf_to_gguf.py lays it out (Llama: attn_q/attn_k rows permuted for adjacent-pair RoPE;
Qwen2/Qwen3: not permuted) and as a Hugging Face directory (config.json + model.safetensors +
tokenizer.json + tokenizer_config.json). Every weight is representable exactly in BF16 and F16, so
all storage types decode to identical F32 and the Swift tests can demand exact equality.

Storage types are spread over the fixtures to cover every reader path:
  tiny-llama:  GGUF F32,                  safetensors BF16
  tiny-qwen2:  GGUF F16 (norms F32),      safetensors F32   (q/k/v biases)
  tiny-qwen3:  GGUF BF16 (norms F32),     safetensors F16   (q/k norms, head_dim != hidden/heads)

The vocabulary is a real byte-level BPE: 3 special tokens, the 256 GPT-2 byte symbols and 41 merges
learned from a fixed sentence list.

Requires: numpy, gguf (pip install gguf). Run from the package root: python3 scripts/gen-test-models.py
"""
import json
import os
import re
import struct
from collections import Counter

import gguf
import numpy as np

OUT = os.path.join("Tests", "CondenseModelTests", "Fixtures")
SEED = 20260725
VOCAB_SIZE = 300
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A text embedding model maps sentences to vectors.",
    "Contrastive training pulls related sentences together and pushes the others apart.",
    "The model reads the text and the tokenizer splits the text into tokens.",
    "Tiny models make tests fast; the real model is tested when it is present.",
]
# GPT-2's pre-tokenization pattern restricted to ASCII (the corpus is ASCII).
PRE_TOKENIZE = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")


def byte_symbols():
    """GPT-2's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {}
    extra = 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def train_bpe():
    symbols = byte_symbols()
    tokens = list(SPECIAL_TOKENS) + [symbols[b] for b in range(256)]
    words = Counter()
    for sentence in CORPUS:
        for piece in PRE_TOKENIZE.findall(sentence):
            words[tuple(symbols[b] for b in piece.encode("utf-8"))] += 1
    merges = []
    while len(tokens) < VOCAB_SIZE:
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        # Most frequent pair; ties broken by the pair itself so the result is deterministic.
        (left, right), _ = max(pairs.items(), key=lambda item: (item[1], item[0]))
        merges.append(f"{left} {right}")
        tokens.append(left + right)
        merged = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == left and word[i + 1] == right:
                    out.append(left + right)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    return tokens, merges


def exact_weights(rng, shape, scale=0.1, offset=0.0):
    """Random values exactly representable in BF16 and F16 (8 significant bits, |x| >= 2^-10)."""
    values = (offset + scale * rng.standard_normal(shape)).astype(np.float32)
    values = np.where(np.abs(values) < 2.0 ** -10, np.float32(2.0 ** -10), values).astype(np.float32)
    bits = values.view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return rounded.view(np.float32)


def make_weights(spec, rng):
    hidden, ffn, heads, kv_heads, head_dim = spec["hidden"], spec["ffn"], spec["heads"], spec["kv_heads"], spec["head_dim"]
    weights = {"model.embed_tokens.weight": exact_weights(rng, (VOCAB_SIZE, hidden))}
    for layer in range(spec["layers"]):
        p = f"model.layers.{layer}."
        weights[p + "input_layernorm.weight"] = exact_weights(rng, (hidden,), 0.1, 1.0)
        weights[p + "self_attn.q_proj.weight"] = exact_weights(rng, (heads * head_dim, hidden))
        weights[p + "self_attn.k_proj.weight"] = exact_weights(rng, (kv_heads * head_dim, hidden))
        weights[p + "self_attn.v_proj.weight"] = exact_weights(rng, (kv_heads * head_dim, hidden))
        weights[p + "self_attn.o_proj.weight"] = exact_weights(rng, (hidden, heads * head_dim))
        if spec["arch"] == "qwen2":
            weights[p + "self_attn.q_proj.bias"] = exact_weights(rng, (heads * head_dim,))
            weights[p + "self_attn.k_proj.bias"] = exact_weights(rng, (kv_heads * head_dim,))
            weights[p + "self_attn.v_proj.bias"] = exact_weights(rng, (kv_heads * head_dim,))
        if spec["arch"] == "qwen3":
            weights[p + "self_attn.q_norm.weight"] = exact_weights(rng, (head_dim,), 0.1, 1.0)
            weights[p + "self_attn.k_norm.weight"] = exact_weights(rng, (head_dim,), 0.1, 1.0)
        weights[p + "post_attention_layernorm.weight"] = exact_weights(rng, (hidden,), 0.1, 1.0)
        weights[p + "mlp.gate_proj.weight"] = exact_weights(rng, (ffn, hidden))
        weights[p + "mlp.up_proj.weight"] = exact_weights(rng, (ffn, hidden))
        weights[p + "mlp.down_proj.weight"] = exact_weights(rng, (hidden, ffn))
    weights["model.norm.weight"] = exact_weights(rng, (hidden,), 0.1, 1.0)
    return weights


GGUF_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf_name):
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    match = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", hf_name)
    return f"blk.{match.group(1)}.{GGUF_NAMES[match.group(2)]}"


def permute(weights, n_head):
    """llama.cpp's LlamaModel.permute: rotate-half row order -> adjacent-pair row order, per head."""
    return weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def to_bf16_bits(values):
    return (values.view(np.uint32) >> 16).astype(np.uint16)


def write_gguf(path, spec, weights, tokens, merges):
    arch = spec["arch"]
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(spec["name"])
    writer.add_context_length(spec["context"])
    writer.add_embedding_length(spec["hidden"])
    writer.add_block_count(spec["layers"])
    writer.add_feed_forward_length(spec["ffn"])
    writer.add_head_count(spec["heads"])
    writer.add_head_count_kv(spec["kv_heads"])
    writer.add_rope_freq_base(spec["rope_theta"])
    writer.add_layer_norm_rms_eps(spec["eps"])
    writer.add_rope_dimension_count(spec["head_dim"])
    if spec["head_dim"] != spec["hidden"] // spec["heads"]:
        writer.add_key_length(spec["head_dim"])
        writer.add_value_length(spec["head_dim"])
    writer.add_vocab_size(VOCAB_SIZE)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types([3 if t in SPECIAL_TOKENS else 1 for t in tokens])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    for hf_name, value in weights.items():
        if arch == "llama" and hf_name.endswith("self_attn.q_proj.weight"):
            value = permute(value, spec["heads"])
        if arch == "llama" and hf_name.endswith("self_attn.k_proj.weight"):
            value = permute(value, spec["kv_heads"])
        if value.ndim == 1 or spec["gguf_type"] == "F32":
            writer.add_tensor(gguf_name(hf_name), value)
        elif spec["gguf_type"] == "F16":
            writer.add_tensor(gguf_name(hf_name), value.astype(np.float16))
        else:
            writer.add_tensor(gguf_name(hf_name), to_bf16_bits(value), raw_dtype=gguf.GGMLQuantizationType.BF16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_safetensors(path, weights, dtype):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, value in weights.items():
        if dtype == "F32":
            blob = value.astype("<f4").tobytes()
        elif dtype == "F16":
            blob = value.astype("<f2").tobytes()
        else:
            blob = to_bf16_bits(value).astype("<u2").tobytes()
        header[name] = {"dtype": dtype, "shape": list(value.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)


def write_hf_directory(directory, spec, weights, tokens, merges):
    os.makedirs(directory, exist_ok=True)
    config = {
        "architectures": [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[spec["arch"]]],
        "model_type": spec["arch"],
        "vocab_size": VOCAB_SIZE,
        "hidden_size": spec["hidden"],
        "intermediate_size": spec["ffn"],
        "num_hidden_layers": spec["layers"],
        "num_attention_heads": spec["heads"],
        "num_key_value_heads": spec["kv_heads"],
        "rms_norm_eps": spec["eps"],
        "rope_theta": spec["rope_theta"],
        "max_position_embeddings": spec["context"],
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }
    if spec["arch"] == "qwen3":
        config["head_dim"] = spec["head_dim"]
    if spec["arch"] == "llama":
        config["rope_scaling"] = None
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    write_safetensors(os.path.join(directory, "model.safetensors"), weights, spec["safetensors_type"])

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
            for i, t in enumerate(SPECIAL_TOKENS)
        ],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": merges,
        },
    }
    with open(os.path.join(directory, "tokenizer.json"), "w") as f:
        json.dump(tokenizer, f, ensure_ascii=False, separators=(",", ":"))
    tokenizer_config = {
        "add_bos_token": False, "add_eos_token": False,
        "bos_token": SPECIAL_TOKENS[1], "eos_token": SPECIAL_TOKENS[2], "model_max_length": spec["context"],
    }
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config, f, indent=2)


MODELS = [
    {"name": "tiny-llama", "arch": "llama", "hidden": 32, "ffn": 64, "layers": 2, "heads": 4, "kv_heads": 2,
     "head_dim": 8, "eps": 1e-5, "rope_theta": 100000.0, "context": 256, "gguf_type": "F32", "safetensors_type": "BF16"},
    {"name": "tiny-qwen2", "arch": "qwen2", "hidden": 32, "ffn": 64, "layers": 2, "heads": 4, "kv_heads": 2,
     "head_dim": 8, "eps": 1e-6, "rope_theta": 1000000.0, "context": 256, "gguf_type": "F16", "safetensors_type": "F32"},
    {"name": "tiny-qwen3", "arch": "qwen3", "hidden": 32, "ffn": 64, "layers": 2, "heads": 4, "kv_heads": 2,
     "head_dim": 16, "eps": 1e-6, "rope_theta": 1000000.0, "context": 256, "gguf_type": "BF16", "safetensors_type": "F16"},
]


def main():
    os.makedirs(OUT, exist_ok=True)
    tokens, merges = train_bpe()
    for number, spec in enumerate(MODELS):
        weights = make_weights(spec, np.random.default_rng(SEED + number))
        write_gguf(os.path.join(OUT, spec["name"] + ".gguf"), spec, weights, tokens, merges)
        write_hf_directory(os.path.join(OUT, spec["name"]), spec, weights, tokens, merges)
        print(f"wrote {spec['name']}: {sum(v.size for v in weights.values())} parameters")


if __name__ == "__main__":
    main()
