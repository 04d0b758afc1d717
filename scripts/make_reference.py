#!/usr/bin/python3
"""Write float64 reference data for testing a3's C forward pass (developer tool).

Run from the repository root with Debian's interpreter and python3-torch
(``apt-get install -y python3-torch``), after scripts/train_sample.py:

    /usr/bin/python3 scripts/make_reference.py

Takes about a minute.  Writes (files are committed; not run by the build or CI):

- tests/data/sample_ref.json: for samples/sample-model (weights read back
  from the F16 safetensors and computed in float64): tokenizer test vectors,
  logits for <s> + the first 64 tokens of samples/eval.txt, the greedy
  continuation of <s>, and the mean NLL of samples/eval.txt under the protocol
  below.
- tests/data/tiny-qwen2/{config.json,model.safetensors,ref.json}: a random
  Qwen2ForCausalLM (q/k/v biases, GQA, untied lm_head, no head_dim in the
  config), F32.
- tests/data/tiny-llama3/{config.json,model.safetensors,ref.json}: a random
  LlamaForCausalLM with llama3 rope_scaling, rope_theta 500000 and head_dim 16
  != hidden/heads = 12, tied embeddings, F32.
- tests/data/README.md: the JSON schema.

The forward pass here is a plain functional float64 re-implementation of HF's
LlamaForCausalLM / Qwen2ForCausalLM (RMSNorm, rotate_half RoPE on the two
halves of each head, repeat_kv GQA, causal softmax attention scaled by
1/sqrt(head_dim), SwiGLU, optional q/k/v biases, tied or untied lm_head); RoPE
inverse frequencies, including HF's _compute_llama3_parameters, are computed in
float64 (HF computes them in float32, a difference of ~1e-7 relative).  For the
sample model it is checked against the training code's nn.Module run in float64.

NLL protocol (sample model): ids = [<s>] + encode(eval.txt) as one stream;
windows start at 0, 256, 512, ...; each window feeds ids[s:s+256] (fresh
context, positions from 0) and scores the targets ids[s+1:s+257]; so every
token after <s> is predicted exactly once; mean NLL = total / count (nats).
"""

import argparse
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import train_sample as ts  # noqa: E402

import torch  # noqa: E402

D = torch.float64


def sig(x, digits=12):
    """Rounds floats for JSON (12 significant digits)."""
    if isinstance(x, (list, tuple)):
        return [sig(v, digits) for v in x]
    return float("%.*g" % (digits, x))


def load_model(mdir):
    with open(os.path.join(mdir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    raw = ts.read_safetensors(os.path.join(mdir, "model.safetensors"))
    W = {}
    for name, (dt, shape, data) in raw.items():
        if dt == "BF16":
            t = torch.frombuffer(bytearray(data), dtype=torch.int16).to(torch.int32) << 16
            t = t.view(torch.float32)
        else:
            t = torch.frombuffer(bytearray(data), dtype={"F16": torch.float16, "F32": torch.float32,
                                                         "F64": torch.float64}[dt])
        W[name] = t.reshape(shape).to(D)
    return cfg, W


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def inv_freq(cfg):
    """HF default RoPE frequencies, and _compute_llama3_parameters for
    rope_scaling {"rope_type": "llama3", ...}; float64."""
    dim = head_dim(cfg)
    base = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(D) / dim))
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "default":
        return inv
    assert kind == "llama3", kind
    factor = rs["factor"]
    low_freq_factor = rs["low_freq_factor"]
    high_freq_factor = rs["high_freq_factor"]
    old_context_len = rs["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv
    inv_llama = torch.where(wavelen > low_freq_wavelen, inv / factor, inv)
    smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * inv_llama / factor + smooth * inv_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_llama)


def forward(cfg, W, ids):
    """Logits [T, vocab] in float64 for one sequence (positions 0..T-1)."""
    T = len(ids)
    H, KV, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim(cfg)
    eps = cfg["rms_norm_eps"]
    assert cfg.get("hidden_act", "silu") == "silu"

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def lin(x, name):
        y = x @ W[name + ".weight"].t()
        b = W.get(name + ".bias")
        return y if b is None else y + b

    def rot(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    fr = torch.outer(torch.arange(T, dtype=D), inv_freq(cfg))
    emb = torch.cat((fr, fr), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((T, T), float("-inf"), dtype=D).triu(1)
    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        h = rms(x, W[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj").view(T, H, hd).transpose(0, 1)
        k = lin(h, p + "self_attn.k_proj").view(T, KV, hd).transpose(0, 1)
        v = lin(h, p + "self_attn.v_proj").view(T, KV, hd).transpose(0, 1)
        q = q * cos + rot(q) * sin
        k = k * cos + rot(k) * sin
        k = k.repeat_interleave(H // KV, dim=0)   # repeat_kv: head j uses kv head j // (H/KV)
        v = v.repeat_interleave(H // KV, dim=0)
        a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + mask, dim=-1) @ v
        x = x + lin(a.transpose(0, 1).reshape(T, H * hd), p + "self_attn.o_proj")
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = lin(h, p + "mlp.gate_proj")
        x = x + lin(torch.nn.functional.silu(g) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms(x, W["model.norm.weight"])
    lm = W.get("lm_head.weight")
    if lm is None:
        assert cfg.get("tie_word_embeddings", True)
        lm = W["model.embed_tokens.weight"]
    return x @ lm.t()


def eval_nll(cfg, W, ids, window=256):
    tot, n, per = 0.0, 0, []
    for s in range(0, len(ids) - 1, window):
        x = ids[s:s + window]
        y = ids[s + 1:s + 1 + window]
        x = x[:len(y)]
        lp = torch.log_softmax(forward(cfg, W, x), dim=-1)
        nll = -lp[torch.arange(len(y)), torch.tensor(y)].sum().item()
        tot += nll
        n += len(y)
        per.append(nll / len(y))
    return tot, n, per


# ---------------------------------------------------------------------------


def sample_reference(mdir, evalpath, ntok=64, ngreedy=40):
    cfg, W = load_model(mdir)
    tok = ts.Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
    with open(evalpath, encoding="utf-8") as f:
        evaltext = f.read()

    # cross-check against the training code's module in float64
    m = ts.build_model(cfg).to(D)
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(W[name])
    eval_ids = tok.encode(evaltext)
    tokens = [1] + eval_ids[:ntok]
    logits = forward(cfg, W, tokens)
    with torch.no_grad():
        other = m(torch.tensor([tokens]))[0]
    diff = (other - logits).abs().max().item()
    assert diff < 1e-9, diff

    T = len(tokens)
    positions = sorted(set([0, 1, 2, 3, 7, 15, 16, 31, 32, 47, 63, T - 1]))
    lse = torch.logsumexp(logits, dim=-1)
    top = logits.topk(5, dim=-1)
    per_pos = {
        "argmax": top.indices[:, 0].tolist(),
        "top5": top.indices.tolist(),
        "max_logit": sig(top.values[:, 0].tolist()),
        "logsumexp": sig(lse.tolist()),
        "next_logprob": sig([(logits[i, tokens[i + 1]] - lse[i]).item() for i in range(T - 1)]),
    }

    greedy, margins = [1], []
    for _ in range(ngreedy):
        lg = forward(cfg, W, greedy)[-1]
        tv = lg.topk(2)
        greedy.append(int(tv.indices[0]))
        margins.append(sig((tv.values[0] - tv.values[1]).item(), 8))

    ids = [1] + eval_ids
    tot, n, per = eval_nll(cfg, W, ids)

    cases = []
    for s in ["", " ", "once upon a time", "Hello, World!", "  two  spaces ", "line one\n\nline two\n",
              "tab\there", "caf\u00e9 \u4e2d\u6587 \U0001F600", "\u2581already\u2581marked",
              "it's 3:45, lily's \"red\" ball-toy!?", "x<s>y</s> <unk>",
              evaltext[:400]]:
        cases.append({"text": s, "ids": tok.encode(s), "decoded": tok.decode(tok.encode(s))})

    return {
        "model": "samples/sample-model",
        "dtype_note": "weights read from the F16 file, widened to float64; all arithmetic float64",
        "tokens": tokens,
        "tokens_note": "<s> (id 1) + the first %d ids of samples/eval.txt encoded without <s>" % ntok,
        "logit_positions": positions,
        "logits": [sig(logits[i].tolist()) for i in positions],
        "per_position": per_pos,
        "greedy": {
            "prompt": [1],
            "tokens": greedy[1:],
            "text": tok.decode(greedy),
            "top1_minus_top2": margins,
        },
        "nll": {
            "file": "samples/eval.txt",
            "protocol": "ids = [1] + encode(eval.txt) as one stream; windows start at 0, 256, 512, ...; "
                        "each feeds ids[s:s+256] from position 0 and scores targets ids[s+1:s+257]; "
                        "every token after <s> predicted once; mean = sum / count, nats",
            "window": 256,
            "n_tokens_in_stream": len(ids),
            "n_predicted": n,
            "n_windows": len(per),
            "sum_nll": sig(tot),
            "mean_nll": sig(tot / n),
            "perplexity": sig(math.exp(tot / n)),
            "window_mean_nll": sig(per, 10),
        },
        "tokenizer_cases": cases,
        "tokenizer_note": "ids without <s>; special tokens' literal text becomes their id and each "
                          "stretch between them is normalized (gets its own leading U+2581), as in HF",
    }


def random_model(cfg, seed, biases=False):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=1.0, mean=0.0):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * std + mean

    d, f, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, KV, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim(cfg)
    W = {"model.embed_tokens.weight": rnd(V, d)}
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        W[p + "input_layernorm.weight"] = rnd(d, std=0.2, mean=1.0)
        W[p + "post_attention_layernorm.weight"] = rnd(d, std=0.2, mean=1.0)
        W[p + "self_attn.q_proj.weight"] = rnd(H * hd, d, std=1.5 / math.sqrt(d))
        W[p + "self_attn.k_proj.weight"] = rnd(KV * hd, d, std=1.5 / math.sqrt(d))
        W[p + "self_attn.v_proj.weight"] = rnd(KV * hd, d, std=1 / math.sqrt(d))
        W[p + "self_attn.o_proj.weight"] = rnd(d, H * hd, std=1 / math.sqrt(H * hd))
        if biases:
            W[p + "self_attn.q_proj.bias"] = rnd(H * hd, std=0.5)
            W[p + "self_attn.k_proj.bias"] = rnd(KV * hd, std=0.5)
            W[p + "self_attn.v_proj.bias"] = rnd(KV * hd, std=0.5)
        W[p + "mlp.gate_proj.weight"] = rnd(f, d, std=1 / math.sqrt(d))
        W[p + "mlp.up_proj.weight"] = rnd(f, d, std=1 / math.sqrt(d))
        W[p + "mlp.down_proj.weight"] = rnd(d, f, std=1 / math.sqrt(f))
    W["model.norm.weight"] = rnd(d, std=0.2, mean=1.0)
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = rnd(V, d, std=2 / math.sqrt(d))
    return W


def tiny_reference(outdir, cfg, seed, biases, ntok=40, note=""):
    os.makedirs(outdir, exist_ok=True)
    W32 = random_model(cfg, seed, biases)
    with open(os.path.join(outdir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    ts.write_safetensors(os.path.join(outdir, "model.safetensors"),
                         [(k, "F32", list(v.shape), v.contiguous().numpy().tobytes())
                          for k, v in sorted(W32.items())], {"format": "pt"})
    cfg2, W = load_model(outdir)          # read back, as the C code will
    g = torch.Generator().manual_seed(seed + 1)
    tokens = [1] + torch.randint(3, cfg["vocab_size"], (ntok - 1,), generator=g).tolist()
    logits = forward(cfg2, W, tokens)
    ref = {
        "model": os.path.relpath(outdir, REPO),
        "note": note,
        "dtype_note": "F32 weights widened to float64; all arithmetic float64",
        "tokens": tokens,
        "logit_positions": list(range(len(tokens))),
        "logits": [sig(r) for r in logits.tolist()],
        "per_position": {
            "argmax": logits.argmax(-1).tolist(),
            "logsumexp": sig(torch.logsumexp(logits, -1).tolist()),
        },
        "inv_freq": sig(inv_freq(cfg2).tolist(), 17),
    }
    with open(os.path.join(outdir, "ref.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, separators=(",", ":"))
        f.write("\n")
    return ref


QWEN2 = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 64,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "sliding_window": None,
    "max_window_layers": 2,
    "attention_dropout": 0.0,
    "hidden_act": "silu",
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
}

LLAMA3 = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 48,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "num_hidden_layers": 2,
    "vocab_size": 64,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    "tie_word_embeddings": True,
    "attention_bias": False,
    "mlp_bias": False,
    "hidden_act": "silu",
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
}

SCHEMA = """# Reference data for the forward-pass tests

Written by `scripts/make_reference.py` (float64 PyTorch; see its header for
the exact semantics and for how to re-run it).  Do not edit by hand.

| path | what |
|---|---|
| `sample_ref.json` | references for `samples/sample-model` (weights read from its F16 file) |
| `tiny-qwen2/` | random `Qwen2ForCausalLM`, F32: hidden 32, 4 heads, 2 KV heads, head_dim 8 (not in config.json: hidden/heads), intermediate 64, 2 layers, vocab 64, q/k/v biases, untied `lm_head.weight`, rope_theta 1e6, rms eps 1e-6 |
| `tiny-llama3/` | random `LlamaForCausalLM`, F32: hidden 48, 4 heads, 2 KV heads, head_dim 16 (set explicitly; hidden/heads would be 12), intermediate 64, 2 layers, vocab 64, tied embeddings, rope_theta 5e5, llama3 rope_scaling (factor 8, low 1, high 4, original max 64: frequency 0 is kept, 1 is smoothed, 2..7 are divided by 8) |

Floats are rounded to 12 significant digits (`inv_freq`: 17).

## Common fields (all three `*.json`)

```
{
  "model":           string, model directory relative to the repository root,
  "tokens":          [int], the input sequence, fed from position 0 (starts with <s> = 1),
  "logit_positions": [int], positions whose full logits are stored,
  "logits":          [[float]], len(logit_positions) rows of vocab_size logits;
                     row r is the output at position logit_positions[r]
                     (predicting the token after tokens[logit_positions[r]]),
  "per_position": {  one entry per position 0..len(tokens)-1
    "argmax":        [int],
    "logsumexp":     [float],
    ...
  }
}
```

The tiny models store every position (`logit_positions` = 0..39) and also
`"inv_freq"`: the head_dim/2 RoPE inverse frequencies after scaling.

## `sample_ref.json` only

```
  "tokens": <s> + the first 64 ids of samples/eval.txt (65 tokens),
  "logit_positions": [0, 1, 2, 3, 7, 15, 16, 31, 32, 47, 63, 64],
  "per_position": {"argmax", "top5": [[int x5]], "max_logit", "logsumexp",
                   "next_logprob": log p(tokens[i+1] | tokens[..i]) for i < 64},
  "greedy": {"prompt": [1], "tokens": [40 ids], "text": decoded string,
             "top1_minus_top2": [40 floats], the logit margin at each step
             (a margin below ~1e-3 may flip under float32)},
  "nll": {"file", "protocol", "window": 256, "n_tokens_in_stream",
          "n_predicted", "n_windows", "sum_nll", "mean_nll", "perplexity",
          "window_mean_nll": [per-window mean]},
  "tokenizer_cases": [{"text", "ids" (without <s>), "decoded"}]
```

NLL protocol: `ids = [1] + encode(eval.txt)` as one stream; windows start at
0, 256, 512, ...; each window feeds `ids[s:s+256]` with positions from 0
(fresh context) and scores the targets `ids[s+1:s+257]`, so every token after
`<s>` is predicted exactly once; `mean_nll = sum_nll / n_predicted` in nats.
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", default=os.path.join(REPO, "samples", "sample-model"))
    ap.add_argument("--eval", default=os.path.join(REPO, "samples", "eval.txt"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)

    ref = sample_reference(args.sample, args.eval)
    with open(os.path.join(args.out, "sample_ref.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, separators=(",", ":"), ensure_ascii=False)
        f.write("\n")
    print("sample: greedy %r" % ref["greedy"]["text"])
    print("sample: eval.txt mean NLL %.6f over %d tokens (ppl %.4f)"
          % (ref["nll"]["mean_nll"], ref["nll"]["n_predicted"], ref["nll"]["perplexity"]))

    q = tiny_reference(os.path.join(args.out, "tiny-qwen2"), QWEN2, 1001, True,
                       note="random weights (seed 1001); q/k/v biases; untied lm_head")
    l3 = tiny_reference(os.path.join(args.out, "tiny-llama3"), LLAMA3, 2002, False,
                        note="random weights (seed 2002); llama3 rope scaling; head_dim 16 != 48/4")
    print("tiny-qwen2 argmax", q["per_position"]["argmax"][:10])
    print("tiny-llama3 inv_freq", l3["inv_freq"])
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(SCHEMA)


if __name__ == "__main__":
    main()
