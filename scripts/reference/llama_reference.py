#!/usr/bin/env python3
"""Independent float64 NumPy reference of the Llama-family decoder forward pass (Llama/SmolLM, Qwen2,
Qwen3), written from the model definitions, not from Condense's Swift code. It writes the final hidden
states (after the final RMSNorm) of each token sequence, each sequence run on its own.

Two weight sources:

  --weights DIR   DIR/config.json (HF config names: architecture, vocab_size, hidden_size,
                  intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
                  head_dim, rms_norm_eps, rope_theta, rope_scaling {rope_type: llama3, factor,
                  low_freq_factor, high_freq_factor, original_max_position_embeddings} or null) and
                  DIR/tensors.json ({"<HF tensor name>": {"file": "<name>", "shape": [..]}}), each file raw
                  little-endian float32 in HF layout (linear weights [out][in], rotate-half Q/K order).
  --gguf FILE     a GGUF file read with gguf-py (GGUFReader + gguf.quants.dequantize). Q/K weights are used
                  exactly as stored: for the llama architecture llama.cpp's converter permuted their rows for
                  adjacent-pair ("normal") RoPE, so this mode applies adjacent-pair RoPE - independent of any
                  loader that un-permutes them for rotate-half RoPE.

  --tokens FILE   JSON list of token-id lists.
  --out FILE      raw little-endian float64 hidden states, sequences concatenated: [total tokens x hidden].
  --attention-out FILE  optional: last-layer attention probabilities, per sequence [heads*L x L], float64.
"""
import argparse
import json
import os
import sys

import numpy as np


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def silu(x):
    return x / (1.0 + np.exp(-x))


def inverse_frequencies(head_dim, theta, scaling):
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if not scaling:
        return inv
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    context = scaling["original_max_position_embeddings"]
    wavelength = 2 * np.pi / inv
    scaled = np.where(wavelength > context / low, inv / factor, inv)
    smooth = (context / wavelength - low) / (high - low)
    medium = (wavelength >= context / high) & (wavelength <= context / low)
    return np.where(medium, (1 - smooth) * scaled / factor + smooth * scaled, scaled)


def rope_rotate_half(x, cos, sin):
    """x: [L, heads, d]; rotates (x[i], x[i + d/2]) pairs (HF layout)."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def rope_adjacent_pairs(x, cos, sin):
    """x: [L, heads, d]; rotates (x[2i], x[2i + 1]) pairs (llama.cpp "normal" RoPE)."""
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


def forward(cfg, weights, tokens, rope, inv_freq):
    """Final hidden states [L x hidden] of one sequence, and its last-layer attention [heads, L, L]."""
    heads, kv_heads, head_dim = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    eps = cfg["eps"]
    length = len(tokens)
    x = weights["embed"][np.asarray(tokens, dtype=np.int64)]
    angles = np.arange(length, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    causal = np.triu(np.ones((length, length), dtype=bool), k=1)
    attention = None
    for layer in weights["layers"]:
        h = rms_norm(x, layer["attn_norm"], eps)
        q = h @ layer["wq"].T
        k = h @ layer["wk"].T
        v = h @ layer["wv"].T
        if "bq" in layer:
            q, k, v = q + layer["bq"], k + layer["bk"], v + layer["bv"]
        q = q.reshape(length, heads, head_dim)
        k = k.reshape(length, kv_heads, head_dim)
        v = v.reshape(length, kv_heads, head_dim)
        if "q_norm" in layer:
            q = rms_norm(q, layer["q_norm"], eps)
            k = rms_norm(k, layer["k_norm"], eps)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        out = np.empty((length, heads, head_dim))
        attention = np.empty((heads, length, length))
        for head in range(heads):
            group = head // (heads // kv_heads)
            scores = q[:, head, :] @ k[:, group, :].T / np.sqrt(head_dim)
            scores[causal] = -np.inf
            scores -= scores.max(axis=-1, keepdims=True)
            p = np.exp(scores)
            p /= p.sum(axis=-1, keepdims=True)
            attention[head] = p
            out[:, head, :] = p @ v[:, group, :]
        x = x + out.reshape(length, heads * head_dim) @ layer["wo"].T
        h = rms_norm(x, layer["ffn_norm"], eps)
        x = x + (silu(h @ layer["wg"].T) * (h @ layer["wu"].T)) @ layer["wd"].T
    return rms_norm(x, weights["final_norm"], eps), attention


def load_directory(path):
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(path, "tensors.json")) as f:
        manifest = json.load(f)

    def tensor(name):
        entry = manifest[name]
        data = np.fromfile(os.path.join(path, entry["file"]), dtype="<f4").astype(np.float64)
        return data.reshape(entry["shape"])

    cfg = {
        "heads": config["num_attention_heads"],
        "kv_heads": config["num_key_value_heads"],
        "head_dim": config["head_dim"],
        "eps": config["rms_norm_eps"],
    }
    layers = []
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        layer = {
            "attn_norm": tensor(p + "input_layernorm.weight"),
            "wq": tensor(p + "self_attn.q_proj.weight"),
            "wk": tensor(p + "self_attn.k_proj.weight"),
            "wv": tensor(p + "self_attn.v_proj.weight"),
            "wo": tensor(p + "self_attn.o_proj.weight"),
            "ffn_norm": tensor(p + "post_attention_layernorm.weight"),
            "wg": tensor(p + "mlp.gate_proj.weight"),
            "wu": tensor(p + "mlp.up_proj.weight"),
            "wd": tensor(p + "mlp.down_proj.weight"),
        }
        if p + "self_attn.q_proj.bias" in manifest:
            layer["bq"] = tensor(p + "self_attn.q_proj.bias")
            layer["bk"] = tensor(p + "self_attn.k_proj.bias")
            layer["bv"] = tensor(p + "self_attn.v_proj.bias")
        if p + "self_attn.q_norm.weight" in manifest:
            layer["q_norm"] = tensor(p + "self_attn.q_norm.weight")
            layer["k_norm"] = tensor(p + "self_attn.k_norm.weight")
        layers.append(layer)
    weights = {"embed": tensor("model.embed_tokens.weight"), "layers": layers, "final_norm": tensor("model.norm.weight")}
    scaling = config.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type")) != "llama3":
        sys.exit(f"unsupported rope_scaling {scaling}")
    inv_freq = inverse_frequencies(cfg["head_dim"], config["rope_theta"], scaling)
    return cfg, weights, rope_rotate_half, inv_freq


def load_gguf(path):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(path)

    def field(key, default=None):
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    arch = field("general.architecture")
    if arch not in ("llama", "qwen2", "qwen3"):
        sys.exit(f"unsupported GGUF architecture {arch}")
    tensors = {t.name: t for t in reader.tensors}

    def tensor(name):
        t = tensors[name]
        values = dequantize(t.data, t.tensor_type).astype(np.float64)
        return values.reshape(tuple(int(n) for n in reversed(t.shape)))  # GGUF lists ne0 (input dim) first

    heads = field(f"{arch}.attention.head_count")
    hidden = field(f"{arch}.embedding_length")
    head_dim = field(f"{arch}.attention.key_length", field(f"{arch}.rope.dimension_count", hidden // heads))
    cfg = {
        "heads": heads,
        "kv_heads": field(f"{arch}.attention.head_count_kv", heads),
        "head_dim": head_dim,
        "eps": field(f"{arch}.attention.layer_norm_rms_epsilon"),
    }
    layers = []
    for i in range(field(f"{arch}.block_count")):
        p = f"blk.{i}."
        layer = {
            "attn_norm": tensor(p + "attn_norm.weight"),
            "wq": tensor(p + "attn_q.weight"),
            "wk": tensor(p + "attn_k.weight"),
            "wv": tensor(p + "attn_v.weight"),
            "wo": tensor(p + "attn_output.weight"),
            "ffn_norm": tensor(p + "ffn_norm.weight"),
            "wg": tensor(p + "ffn_gate.weight"),
            "wu": tensor(p + "ffn_up.weight"),
            "wd": tensor(p + "ffn_down.weight"),
        }
        if p + "attn_q.bias" in tensors:
            layer["bq"], layer["bk"], layer["bv"] = (tensor(p + f"attn_{n}.bias") for n in "qkv")
        if p + "attn_q_norm.weight" in tensors:
            layer["q_norm"], layer["k_norm"] = tensor(p + "attn_q_norm.weight"), tensor(p + "attn_k_norm.weight")
        layers.append(layer)
    weights = {"embed": tensor("token_embd.weight"), "layers": layers, "final_norm": tensor("output_norm.weight")}
    inv_freq = inverse_frequencies(head_dim, field(f"{arch}.rope.freq_base", 10000.0), None)
    if "rope_freqs.weight" in tensors:  # llama3 scaling, stored by llama.cpp as per-frequency divisors
        inv_freq = inv_freq / tensor("rope_freqs.weight")
    # llama.cpp's converter permutes llama Q/K rows for adjacent-pair RoPE; qwen2/3 keep rotate-half (NEOX).
    rope = rope_adjacent_pairs if arch == "llama" else rope_rotate_half
    return cfg, weights, rope, inv_freq


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights")
    source.add_argument("--gguf")
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--attention-out")
    args = parser.parse_args()

    cfg, weights, rope, inv_freq = load_gguf(args.gguf) if args.gguf else load_directory(args.weights)
    with open(args.tokens) as f:
        sequences = json.load(f)
    hidden_parts, attention_parts = [], []
    for tokens in sequences:
        if not tokens:
            continue
        hidden, attention = forward(cfg, weights, tokens, rope, inv_freq)
        hidden_parts.append(hidden)
        attention_parts.append(attention.reshape(-1, len(tokens)))
    hidden_size = weights["final_norm"].shape[0]
    output = np.concatenate(hidden_parts) if hidden_parts else np.zeros((0, hidden_size))
    output.astype("<f8").tofile(args.out)
    if args.attention_out:
        attention = np.concatenate([a.ravel() for a in attention_parts]) if attention_parts else np.zeros(0)
        attention.astype("<f8").tofile(args.attention_out)


if __name__ == "__main__":
    main()
