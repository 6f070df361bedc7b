#!/usr/bin/env python3
"""Reference next-token logits of SmolLM2-135M-Instruct (the Q4_1 GGUF), from an
implementation independent of monarch-rl: the `gguf` package reads and dequantises
the file, numpy runs the Llama forward pass in llama.cpp's own layout (interleaved
rotary pairs, no un-permuting), and the `tokenizers` package tokenizes.

    python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install numpy gguf tokenizers
    /tmp/refenv/bin/python scripts/smollm2-reference.py "$(scripts/fetch-smollm2.sh)" \
        > monarch-rl/tests/data/smollm2_reference.json

monarch-rl/tests/pretrained.rs compares its own logits against the output.
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

PROMPTS = [
    "What is the zorplex value of 'cat'?",
    "<|im_start|>user\nLOOKUP[dog]\n[Result: 42]<|im_end|>\n<|im_start|>assistant\n",
    "The sum of 12 and 30 is",
]


def field(reader, key):
    f = reader.fields[key]
    if len(f.data) == 1 and f.types[0].name not in ("STRING", "ARRAY"):
        return f.parts[f.data[0]].item()
    if f.types[0].name == "STRING":
        return bytes(f.parts[f.data[0]]).decode()
    return [bytes(f.parts[i]).decode() if f.types[1].name == "STRING" else f.parts[i].item() for i in f.data]


def main(path):
    reader = GGUFReader(path)
    hidden = field(reader, "llama.embedding_length")
    layers = field(reader, "llama.block_count")
    heads = field(reader, "llama.attention.head_count")
    kv_heads = field(reader, "llama.attention.head_count_kv")
    theta = field(reader, "llama.rope.freq_base")
    eps = field(reader, "llama.attention.layer_norm_rms_epsilon")
    tokens = field(reader, "tokenizer.ggml.tokens")
    merges = field(reader, "tokenizer.ggml.merges")
    types = field(reader, "tokenizer.ggml.token_type")

    weights = {}
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float64)
        weights[t.name] = w.reshape([int(d) for d in reversed(t.shape)])
    head_dim = hidden // heads

    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[tuple(m.split(" ", 1)) for m in merges])
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([t for t, ty in zip(tokens, types) if ty == 3])

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rope_interleaved(x, pos):
        # x: (T, H, d); llama.cpp rotates adjacent pairs (2i, 2i+1).
        inv = theta ** (-np.arange(0, head_dim, 2) / head_dim)
        ang = pos[:, None] * inv[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    def forward(ids):
        n = len(ids)
        x = weights["token_embd.weight"][ids]
        pos = np.arange(n, dtype=np.float64)
        mask = np.triu(np.full((n, n), -np.inf), 1)
        for i in range(layers):
            p = f"blk.{i}."
            h = rms(x, weights[p + "attn_norm.weight"])
            q = rope_interleaved((h @ weights[p + "attn_q.weight"].T).reshape(n, heads, head_dim), pos)
            k = rope_interleaved((h @ weights[p + "attn_k.weight"].T).reshape(n, kv_heads, head_dim), pos)
            v = (h @ weights[p + "attn_v.weight"].T).reshape(n, kv_heads, head_dim)
            rep = heads // kv_heads
            k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
            s = np.einsum("thd,shd->hts", q, k) / np.sqrt(head_dim) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o = np.einsum("hts,shd->thd", s, v).reshape(n, hidden)
            x = x + o @ weights[p + "attn_output.weight"].T
            h = rms(x, weights[p + "ffn_norm.weight"])
            g = h @ weights[p + "ffn_gate.weight"].T
            u = h @ weights[p + "ffn_up.weight"].T
            x = x + ((g / (1 + np.exp(-g))) * u) @ weights[p + "ffn_down.weight"].T
        x = rms(x, weights["output_norm.weight"])
        head = weights.get("output.weight", weights["token_embd.weight"])
        return x[-1] @ head.T

    out = []
    for prompt in PROMPTS:
        ids = tok.encode(prompt).ids
        logits = forward(ids)
        top = np.argsort(-logits)[:20]
        out.append(
            {
                "prompt": prompt,
                "ids": ids,
                "top_ids": [int(i) for i in top],
                "top_logits": [float(logits[i]) for i in top],
                "logsumexp": float(np.log(np.exp(logits - logits.max()).sum()) + logits.max()),
            }
        )
    json.dump({"model": path.split("/")[-1], "tolerance": 1e-3, "prompts": out}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main(sys.argv[1])
