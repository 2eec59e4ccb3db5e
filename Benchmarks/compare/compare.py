#!/usr/bin/env python3
"""Condense side by side with llama.cpp and transformers(+PEFT), measured in one run on this machine.

Runs every measurement in its own process, alternating systems within each round so that a change in
machine load hits all of them alike, and writes a markdown report (default docs/results/benchmarks.md):

1. embedding throughput (texts/s, tokens/s) on the default GGUF model, 256 prompt-wrapped sentences,
   mean and last pooling, 2 threads each; peers in their best configuration and their defaults;
2. single-text latency (one short prompt-wrapped sentence, batch of 1);
3. one contrastive LoRA training step (16 pairs, r=64, q/v/o/gate/up/down): seconds and peak RSS;
4. agreement: cosine similarity of Condense's vectors with transformers' (fp32 on the dequantised
   weights) and llama.cpp's for the same inputs and pooling.

Usage (Benchmarks/compare/run.sh sets up the virtualenv and the release build first):
    python compare.py --bin .build/release [--rounds 3] [--output docs/results/benchmarks.md]
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Targets of issue 8, as ratios of Condense over the peer (higher is better for Condense).
TARGET_VS_TRANSFORMERS = 1.25
TARGET_VS_LLAMA_CPP = 4.8
TARGET_LATENCY = 2.0
TARGET_TRAIN_SPEED = 2.1
TARGET_TRAIN_MEMORY = 3.0
TARGET_COSINE = 0.9999


def run(command, label):
    """Runs one measurement process; returns its RESULT object."""
    print(f"-- {label}: {' '.join(command)}", file=sys.stderr, flush=True)
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            result["label"] = label
            return result
    sys.stderr.write(completed.stdout[-3000:] + completed.stderr[-3000:])
    raise SystemExit(f"{label} failed (exit {completed.returncode})")


def embed_systems(args, python):
    """(label, command builder) per embedding configuration; `vectors` is a path or None."""
    peers = [python, os.path.join(HERE, "peers.py")]
    common = ["--model", args.model, "--sentences", args.sentences]

    def condense(pooling, latency, vectors):
        return [os.path.join(args.bin, "condense-bench-embed"), *common, "--pooling", pooling, "--passes", str(args.passes),
                "--latency-runs", str(latency)] + (["--vectors", vectors] if vectors else [])

    def transformers(order, batch):
        def build(pooling, latency, vectors):
            return [*peers, "hf-embed", *common, "--pooling", pooling, "--order", order, "--batch-size", str(batch),
                    "--passes", str(args.passes), "--latency-runs", str(latency)] + (["--vectors", vectors] if vectors else [])
        return build

    def llama(flash, n_batch):
        def build(pooling, latency, vectors):
            return [*peers, "llama-embed", *common, "--pooling", pooling, "--passes", "1", "--latency-runs", str(latency)] \
                + (["--flash-attn"] if flash else []) + (["--n-batch", str(n_batch)] if n_batch else []) \
                + (["--vectors", vectors] if vectors else [])
        return build

    return [
        ("Condense", condense),
        ("transformers, length-sorted batches of 32 (best)", transformers("sorted", 32)),
        ("transformers, input-order batches of 32 (default)", transformers("input", 32)),
        ("llama.cpp, flash attention, n_batch 512 (best)", llama(True, 512)),
        ("llama.cpp, defaults", llama(False, 0)),
    ]


def train_systems(args, python):
    return [
        ("Condense", [os.path.join(args.bin, "condense-bench-finetune"), "--model", args.model, "--sentences", args.sentences,
                      "--pairs", "16", "--rank", "64", "--steps", str(args.train_steps)]),
        ("transformers + PEFT", [python, os.path.join(HERE, "peers.py"), "hf-train", "--model", args.model,
                                 "--sentences", args.sentences, "--pairs", "16", "--rank", "64", "--steps", str(args.train_steps)]),
    ]


def rotated(items, round_index):
    """Each round starts with a different system, so none always runs first (or last)."""
    shift = round_index % len(items)
    return items[shift:] + items[:shift]


def spread(values):
    return statistics.median(values), min(values), max(values)


def cosines(ours, theirs):
    a = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    b = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
    return (a * b).sum(1)


def machine():
    model_name = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            model_name = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model_name}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.platform()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build", "release"), help="directory of the release build")
    parser.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--sentences", default=os.path.join(os.path.dirname(ROOT), "shared", "bench", "sentences.txt"))
    parser.add_argument("--python", default=sys.executable, help="interpreter with torch, transformers, peft, llama-cpp-python")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=1, help="passes over the workload per embedding process")
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--train-steps", type=int, default=2, help="timed steps per training process (after one warm-up)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "results", "benchmarks.md"))
    args = parser.parse_args()

    poolings = ["mean", "last"]
    embedding = embed_systems(args, args.python)
    results = {}      # (label, pooling) -> [result per round]
    training = {}     # label -> [result per round]
    vectors = {}      # (label, pooling) -> path of the first round's vectors
    scratch = tempfile.mkdtemp(prefix="condense-compare-")
    for round_index in range(args.rounds):
        for pooling in poolings:
            for label, build in rotated(embedding, round_index):
                path = None
                if round_index == 0 and "default" not in label:
                    path = os.path.join(scratch, f"{len(vectors)}.npy")
                    vectors[(label, pooling)] = path
                # Batch-of-1 latency does not depend on the batching configuration: once per system.
                latency = args.latency_runs if pooling == "mean" and "default" not in label else 0
                results.setdefault((label, pooling), []).append(run(build(pooling, latency, path), f"{label} [{pooling}]"))
        if not args.skip_train:
            for label, command in rotated(train_systems(args, args.python), round_index):
                training.setdefault(label, []).append(run(command, label))

    report = render(args, results, training, vectors)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as handle:
        handle.write(report)
    print(report)


def render(args, results, training, vectors):
    lines = []
    add = lines.append
    versions = sorted({r.get("version", "") for rs in list(results.values()) + list(training.values()) for r in rs} - {""})
    blas = next((r["blas"] for rs in results.values() for r in rs if "blas" in r), "?")
    kernels = next((r["linear_kernels"] for rs in results.values() for r in rs if "linear_kernels" in r), "?")
    add("# Condense side by side with llama.cpp and transformers (+PEFT)")
    add("")
    add(f"Measured {datetime.date.today().isoformat()} by `Benchmarks/compare/run.sh` ({args.rounds} rounds, systems "
        "alternating within each round, every measurement in its own process, 2 threads each).")
    add("")
    add(f"- Machine: {machine()}")
    add(f"- Condense: {kernels} (inference); {blas} (training)")
    add(f"- Peers: {'; '.join(versions)}")
    add(f"- Model: `{os.path.basename(args.model)}` (SmolLM2-135M-Instruct, Q4_1). Condense and transformers compute in "
        "fp32 on the dequantised weights; llama.cpp computes on the Q4_1 weights as shipped.")
    add("- Workload: `shared/bench/sentences.txt`, 256 sentences, each in the `cluster1` prompt "
        "(`This sentence: \"{text}\" belongs to the following cluster:`).")
    add("")
    add("## Embedding throughput")
    add("")
    add("Median (min–max) over the rounds of one pass over the 256 texts, after a warm-up; model loading not included.")
    add("")
    add("| system | pooling | tokens | seconds | texts/s | tokens/s | Condense is |")
    add("|---|---|---:|---:|---:|---:|---:|")
    condense_seconds = {}
    for (label, pooling), rs in results.items():
        if label == "Condense":
            condense_seconds[pooling] = statistics.median(s for r in rs for s in r["pass_seconds"])
    for pooling in ["mean", "last"]:
        for (label, p), rs in results.items():
            if p != pooling:
                continue
            seconds = [s for r in rs for s in r["pass_seconds"]]
            med, low, high = spread(seconds)
            tokens, texts = rs[0]["tokens"], rs[0]["texts"]
            ratio = "—" if label == "Condense" else f"{med / condense_seconds[pooling]:.2f}× faster"
            add(f"| {label} | {pooling} | {tokens:,} | {med:.2f} ({low:.2f}–{high:.2f}) | {texts / med:.1f} | "
                f"{tokens / med:,.0f} ({tokens / high:,.0f}–{tokens / low:,.0f}) | {ratio} |")
    add("")
    add("## Single-text latency")
    add("")
    add("One short text (`The cat sat on the mat.` in the `cluster1` prompt), batch of 1, tokenize + forward + pool; "
        "median (min–max) of all runs in all rounds.")
    add("")
    add("| system | ms | Condense is |")
    add("|---|---:|---:|")
    condense_latency = statistics.median(s for r in results[("Condense", "mean")] for s in r["latency_seconds"])
    for (label, pooling), rs in results.items():
        latencies = [s for r in rs for s in r.get("latency_seconds", [])]
        if pooling != "mean" or not latencies:
            continue
        med, low, high = spread(latencies)
        ratio = "—" if label == "Condense" else f"{med / condense_latency:.2f}× faster"
        add(f"| {label} | {med * 1e3:.1f} ({low * 1e3:.1f}–{high * 1e3:.1f}) | {ratio} |")
    add("")
    if training:
        add("## One contrastive LoRA training step")
        add("")
        add("16 pairs (sentences 2i and 2i+1 in the `cluster1` prompt), r=64, alpha 16, dropout 0.05 on "
            "q/v/o/gate/up/down, mean pooling, InfoNCE over in-batch negatives (τ = 0.2), clipping, AdamW; "
            "seconds per step after one warm-up step, peak RSS of the whole process.")
        add("")
        add("| system | tokens | seconds per step | peak RSS (MB) | Condense is |")
        add("|---|---:|---:|---:|---:|")
        ours = training.get("Condense", [])
        our_seconds = statistics.median(s for r in ours for s in r["step_seconds"]) if ours else None
        our_rss = statistics.median(r["peak_rss_mb"] for r in ours) if ours else None
        for label, rs in training.items():
            med, low, high = spread([s for r in rs for s in r["step_seconds"]])
            rss = statistics.median(r["peak_rss_mb"] for r in rs)
            ratio = "—" if label == "Condense" or our_seconds is None else \
                f"{med / our_seconds:.2f}× faster, {rss / our_rss:.2f}× less memory"
            add(f"| {label} | {rs[0]['tokens']:,} | {med:.2f} ({low:.2f}–{high:.2f}) | {rss:,.0f} | {ratio} |")
        add("")
    add("## Agreement")
    add("")
    add("Cosine similarity between Condense's vector and the peer's for each of the 256 texts (no normalisation "
        "before pooling; first round's vectors).")
    add("")
    add("| peer | pooling | min cosine | mean cosine |")
    add("|---|---|---:|---:|")
    agreement = {}
    for pooling in ["mean", "last"]:
        ours = vectors.get(("Condense", pooling))
        if ours is None:
            continue
        mine = np.load(ours).astype(np.float64)
        for (label, p), path in vectors.items():
            if p != pooling or label == "Condense":
                continue
            values = cosines(mine, np.load(path).astype(np.float64))
            agreement[(label, pooling)] = values.min()
            add(f"| {label} | {pooling} | {values.min():.6f} | {values.mean():.6f} |")
    add("")
    add("## Targets (issue 8)")
    add("")
    add(target_lines(results, training, agreement, condense_seconds, condense_latency))
    add("")
    add("Where the time goes, and why a missed target is missed: `engine.md` (profiles) and `finetune.md`.")
    add("")
    add("Reproduce: `bash Benchmarks/compare/run.sh` (about 20 minutes on 2 cores; installs the peers into a virtualenv).")
    return "\n".join(lines) + "\n"


def target_lines(results, training, agreement, condense_seconds, condense_latency):
    rows = ["| target | measured | met |", "|---|---:|:---:|"]

    def median_seconds(label, pooling):
        rs = results.get((label, pooling), [])
        return statistics.median(s for r in rs for s in r["pass_seconds"]) if rs else None

    def row(name, value, target, unit="×"):
        if value is None:
            return
        rows.append(f"| {name} | {value:.{6 if unit == '' else 2}f}{unit} | {'yes' if value >= target else 'no'} |")

    hf_best = "transformers, length-sorted batches of 32 (best)"
    llama_shipped = "llama.cpp, flash attention, n_batch 512 (best)"
    for pooling in ["mean", "last"]:
        theirs = median_seconds(hf_best, pooling)
        row(f"embedding ≥ {TARGET_VS_TRANSFORMERS}× transformers' best ({pooling})",
            theirs / condense_seconds[pooling] if theirs else None, TARGET_VS_TRANSFORMERS)
        theirs = median_seconds(llama_shipped, pooling)
        row(f"embedding ≥ {TARGET_VS_LLAMA_CPP}× llama.cpp on the shipped file ({pooling})",
            theirs / condense_seconds[pooling] if theirs else None, TARGET_VS_LLAMA_CPP)
    hf_latency = [s for r in results.get((hf_best, "mean"), []) for s in r.get("latency_seconds", [])]
    if hf_latency:
        row(f"single-text latency ≤ 1/{TARGET_LATENCY:g} of transformers'", statistics.median(hf_latency) / condense_latency, TARGET_LATENCY)
    if "Condense" in training and "transformers + PEFT" in training:
        ours, theirs = training["Condense"], training["transformers + PEFT"]
        speed = statistics.median(s for r in theirs for s in r["step_seconds"]) / statistics.median(s for r in ours for s in r["step_seconds"])
        memory = statistics.median(r["peak_rss_mb"] for r in theirs) / statistics.median(r["peak_rss_mb"] for r in ours)
        row(f"training step ≥ {TARGET_TRAIN_SPEED}× faster than transformers + PEFT", speed, TARGET_TRAIN_SPEED)
        row(f"training peak memory ≤ 1/{TARGET_TRAIN_MEMORY:g} of transformers + PEFT", memory, TARGET_TRAIN_MEMORY)
    for (label, pooling), value in agreement.items():
        if label.startswith("transformers"):
            row(f"cosine ≥ {TARGET_COSINE} vs transformers ({pooling}, min over texts)", value, TARGET_COSINE, unit="")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
