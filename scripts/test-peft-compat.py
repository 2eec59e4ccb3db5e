#!/usr/bin/env python3
"""Optional check that Condense's LoRA adapters are PEFT adapters, both ways.

1. PEFT loads an adapter Condense trained (`condense finetune`), and the adapted model's final hidden
   states equal what `condense embed --adapter` computes.
2. Condense loads an adapter PEFT wrote (`save_pretrained`, random non-zero B), with the same result.

Both sides get the same token ids (`condense tokenize`) and mean-pool the final (normed) hidden
states, unnormalised. The base model comes from the same GGUF file for both (transformers dequantises
it with gguf-py and undoes llama.cpp's Q/K permutation; Condense does the same), so what is compared
is the adapter arithmetic and the tensor naming. Each comparison is also made against the base model,
to show the check could fail: the adapter must move the vectors far more than the two sides differ.

Needs torch, transformers, peft and gguf (large: not part of scripts/test.sh). Usage:
    python -m venv /tmp/peftenv && /tmp/peftenv/bin/pip install torch transformers peft gguf numpy
    /tmp/peftenv/bin/python scripts/test-peft-compat.py --condense .build/release/condense --adapter OUT
Exits 0 when both directions agree, 1 when not, 77 (skipped) when the Python packages are missing.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModel
except ImportError as error:  # optional test
    print(f"SKIP: {error} (install torch, transformers, peft and gguf to run this check)")
    sys.exit(77)

TEXTS = [
    "The bank refused my card payment at the store.",
    "How do I reset the password of my online account?",
    "Protein folding is studied with molecular dynamics simulations.",
]
PROMPT = "eol"
TEMPLATE = 'This sentence: "{text}" means in one word:'


def condense_ids(binary, model, directory):
    """Ids of the prompted texts as Condense's tokenizer gives them; the base-model comparison below
    shows they are the ids `condense embed` runs on."""
    with open(os.path.join(directory, "texts.txt"), "w") as handle:
        handle.write("\n".join(TEXTS) + "\n")
    path = os.path.join(directory, "prompted.txt")
    with open(path, "w") as handle:
        handle.write("\n".join(TEMPLATE.format(text=text) for text in TEXTS) + "\n")
    out = os.path.join(directory, "ids.jsonl")
    subprocess.run([binary, "tokenize", "--model", model, "--input", path, "--output", out], check=True)
    with open(out) as handle:
        return [json.loads(line)["ids"] for line in handle]


def condense_vectors(binary, model, adapter, directory):
    path = os.path.join(directory, "texts.txt")
    out = os.path.join(directory, "vectors.jsonl")
    command = [binary, "embed", "--model", model, "--prompt", PROMPT, "--pooling", "mean", "--no-normalize",
               "--max-tokens", "512", "--input", path, "--output", out]
    if adapter:
        command += ["--adapter", adapter]
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    with open(out) as handle:
        return np.array([json.loads(line)["embedding"] for line in handle], dtype=np.float64)


def hf_vectors(model, ids):
    with torch.no_grad():
        return np.array([model(input_ids=torch.tensor([row])).last_hidden_state[0].double().mean(0).numpy() for row in ids])


def compare(name, ours, theirs, base=None):
    """Agreement within float32 rounding; with `base`, the adapter must also move the vectors far more
    than the two implementations differ (so an adapter silently not applied fails)."""
    gap = np.abs(ours - theirs).max() / np.abs(theirs).max()
    cosine = min(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(ours, theirs))
    ok = cosine > 0.99999 and gap < 1e-3
    line = f"{name}: min cosine {cosine:.8f}, max |diff| {gap:.2e} of max |value|"
    if base is not None:
        moved = np.abs(theirs - base).max() / np.abs(theirs).max()
        ok = ok and moved > 100 * gap
        line += f"; the adapter moves the vectors by {moved:.2e}"
    print(("ok   " if ok else "FAIL ") + line)
    return ok


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--condense", default=".build/release/condense")
    parser.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--adapter", required=True, help="a PEFT adapter directory written by condense finetune")
    args = parser.parse_args()
    model_path = os.path.abspath(args.model)
    torch.manual_seed(0)
    hf = AutoModel.from_pretrained(os.path.dirname(model_path), gguf_file=os.path.basename(model_path),
                                   torch_dtype=torch.float32).eval()
    with tempfile.TemporaryDirectory() as directory:
        ids = condense_ids(args.condense, model_path, directory)
        base_ours = condense_vectors(args.condense, model_path, None, directory)
        base_hf = hf_vectors(hf, ids)
        ok = compare("base model (no adapter), Condense vs transformers", base_ours, base_hf)

        # 1. Condense's adapter in PEFT.
        peft_model = PeftModel.from_pretrained(hf, args.adapter).eval()
        theirs = hf_vectors(peft_model, ids)
        ours = condense_vectors(args.condense, model_path, args.adapter, directory)
        ok &= compare("Condense adapter loaded by PEFT", ours, theirs, base_hf)
        hf = peft_model.unload()

        # 2. PEFT's adapter in Condense.
        config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        written = get_peft_model(hf, config)
        with torch.no_grad():
            for name, parameter in written.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.02)
        written.eval()
        theirs = hf_vectors(written, ids)
        peft_dir = os.path.join(directory, "peft-adapter")
        written.save_pretrained(peft_dir)
        ours = condense_vectors(args.condense, model_path, peft_dir, directory)
        ok &= compare("PEFT adapter loaded by Condense", ours, theirs, base_hf)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
