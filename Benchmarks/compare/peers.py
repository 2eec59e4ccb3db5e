#!/usr/bin/env python3
"""The peers' side of the comparison: one measurement per process, printed as a `RESULT {json}` line.

    peers.py hf-embed    --model GGUF --sentences FILE --pooling mean|last --order sorted|input --batch-size N
    peers.py llama-embed --model GGUF --sentences FILE --pooling mean|last [--flash-attn] [--n-batch N]
    peers.py hf-train    --model GGUF --sentences FILE --pairs 16 --rank 64 --steps N

Every peer runs on 2 threads, on the same GGUF file as Condense, with the same workload: each sentence
wrapped in the `cluster1` prompt. transformers dequantises the GGUF to fp32 (gguf-py) and undoes
llama.cpp's Q/K permutation; llama.cpp computes on the Q4_1 weights as shipped. Run by compare.py.
"""
import argparse
import json
import os
import resource
import sys
import time

THREADS = 2
CLUSTER1 = 'This sentence: "{text}" belongs to the following cluster:'
SHORT_TEXT = "The cat sat on the mat."


def prompts(path):
    with open(path, encoding="utf-8") as handle:
        return [CLUSTER1.format(text=line.rstrip("\n")) for line in handle if line.strip()]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result, vectors=None, path=None):
    if vectors is not None and path:
        import numpy as np
        np.save(path, np.asarray(vectors, dtype=np.float32))
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result, sort_keys=True), flush=True)


def load_hf(model_path):
    import torch
    from transformers import AutoModel, AutoTokenizer
    torch.set_num_threads(THREADS)
    directory, name = os.path.split(os.path.abspath(model_path))
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model = AutoModel.from_pretrained(directory, gguf_file=name, dtype=torch.float32).eval()
    return tokenizer, model


def hf_pool(hidden, mask, pooling):
    """Mean over the real tokens, or the last real token (right padding)."""
    import torch
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1)
    last = mask.sum(1) - 1
    return hidden[torch.arange(hidden.shape[0]), last]


def hf_embed(args):
    import torch
    texts = prompts(args.sentences)
    start = time.perf_counter()
    tokenizer, model = load_hf(args.model)
    load_seconds = time.perf_counter() - start
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i]) if args.order == "sorted" else list(range(len(texts)))
    batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]

    def run(indexes):
        encoded = tokenizer([texts[i] for i in indexes], padding=True, return_tensors="pt")
        hidden = model(**encoded).last_hidden_state
        return hf_pool(hidden, encoded["attention_mask"], args.pooling)

    with torch.inference_mode():
        run(order[:8])  # warm-up
        passes, vectors = [], [None] * len(texts)
        for _ in range(args.passes):
            begin = time.perf_counter()
            for batch in batches:
                for index, vector in zip(batch, run(batch)):
                    vectors[index] = vector.numpy()
            passes.append(time.perf_counter() - begin)
        latencies = []
        for _ in range(args.latency_runs):
            begin = time.perf_counter()
            encoded = tokenizer([CLUSTER1.format(text=SHORT_TEXT)], return_tensors="pt")
            hf_pool(model(**encoded).last_hidden_state, encoded["attention_mask"], args.pooling)
            latencies.append(time.perf_counter() - begin)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    import transformers
    emit({"system": "transformers", "config": f"{args.order} batches of {args.batch_size}", "pooling": args.pooling,
          "texts": len(texts), "tokens": sum(lengths), "padded_tokens": padded, "pass_seconds": passes,
          "latency_seconds": latencies, "load_seconds": load_seconds,
          "version": f"transformers {transformers.__version__}, torch {torch.__version__}"},
         vectors, args.vectors)


def llama_embed(args):
    import llama_cpp
    texts = prompts(args.sentences)
    pooling = {"mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN, "last": llama_cpp.LLAMA_POOLING_TYPE_LAST}[args.pooling]
    settings = dict(embedding=True, pooling_type=pooling, n_threads=THREADS, n_threads_batch=THREADS, verbose=False)
    if args.n_batch:
        settings.update(n_batch=args.n_batch, n_ubatch=args.n_batch, n_ctx=max(512, args.n_batch))
    if args.flash_attn:
        settings.update(flash_attn=True)
    start = time.perf_counter()
    model = llama_cpp.Llama(model_path=args.model, **settings)
    load_seconds = time.perf_counter() - start
    tokens = sum(len(model.tokenize(text.encode(), add_bos=True, special=False)) for text in texts)
    model.embed(texts[:8], normalize=False)  # warm-up
    passes, vectors = [], None
    for _ in range(args.passes):
        begin = time.perf_counter()
        vectors = model.embed(texts, normalize=False)
        passes.append(time.perf_counter() - begin)
    latencies = []
    for _ in range(args.latency_runs):
        begin = time.perf_counter()
        model.embed([CLUSTER1.format(text=SHORT_TEXT)], normalize=False)
        latencies.append(time.perf_counter() - begin)
    config = ", ".join(filter(None, ["flash attention" if args.flash_attn else "",
                                     f"n_batch {args.n_batch}" if args.n_batch else "defaults"]))
    emit({"system": "llama.cpp", "config": config, "pooling": args.pooling, "texts": len(texts), "tokens": tokens,
          "pass_seconds": passes, "latency_seconds": latencies, "load_seconds": load_seconds,
          "version": f"llama-cpp-python {llama_cpp.__version__}"},
         vectors, args.vectors)


def hf_train(args):
    """One contrastive LoRA step as the paper's code takes it: PEFT LoRA (r, alpha 16, dropout 0.05) on
    q/v/o/gate/up/down, both sides of 16 pairs in one padded batch, mean pooling, InfoNCE over in-batch
    negatives (cosine / 0.2), gradient clipping at 1, AdamW. The pairs are sentences (2i, 2i + 1), as in
    condense-bench-finetune, so both see the same token sequences."""
    import torch
    from peft import LoraConfig, get_peft_model
    import peft
    import transformers
    torch.manual_seed(0)
    with open(args.sentences, encoding="utf-8") as handle:
        sentences = [line.rstrip("\n") for line in handle if line.strip()]
    texts = [CLUSTER1.format(text=sentences[2 * i]) for i in range(args.pairs)]
    positives = [CLUSTER1.format(text=sentences[2 * i + 1]) for i in range(args.pairs)]
    tokenizer, model = load_hf(args.model)
    config = LoraConfig(r=args.rank, lora_alpha=16, lora_dropout=0.05,
                        target_modules=["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, config)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5, weight_decay=0.0)
    encoded = tokenizer(texts + positives, padding=True, return_tensors="pt")
    lengths = encoded["attention_mask"].sum(1).tolist()

    def step():
        pooled = hf_pool(model(**encoded).last_hidden_state, encoded["attention_mask"], "mean")
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        similarity = pooled[:args.pairs] @ pooled[args.pairs:].T / 0.2
        loss = torch.nn.functional.cross_entropy(similarity, torch.arange(args.pairs))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    step()  # warm-up
    seconds, losses = [], []
    for _ in range(args.steps):
        begin = time.perf_counter()
        losses.append(step())
        seconds.append(time.perf_counter() - begin)
    emit({"system": "transformers+peft", "pairs": args.pairs, "rank": args.rank, "tokens": sum(lengths),
          "lengths": lengths, "step_seconds": seconds, "losses": losses,
          "version": f"transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}"})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("hf-embed", "llama-embed", "hf-train"):
        command = commands.add_parser(name)
        command.add_argument("--model", required=True)
        command.add_argument("--sentences", required=True)
        if name == "hf-train":
            command.add_argument("--pairs", type=int, default=16)
            command.add_argument("--rank", type=int, default=64)
            command.add_argument("--steps", type=int, default=2)
            continue
        command.add_argument("--pooling", choices=["mean", "last"], default="mean")
        command.add_argument("--passes", type=int, default=1)
        command.add_argument("--latency-runs", type=int, default=0)
        command.add_argument("--vectors")
        if name == "hf-embed":
            command.add_argument("--order", choices=["sorted", "input"], default="sorted")
            command.add_argument("--batch-size", type=int, default=32)
        else:
            command.add_argument("--flash-attn", action="store_true")
            command.add_argument("--n-batch", type=int, default=0)
    args = parser.parse_args()
    {"hf-embed": hf_embed, "llama-embed": llama_embed, "hf-train": hf_train}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
