#!/usr/bin/python3
"""torch_peer.py MODEL_DIR IDS_FILE THREADS: PyTorch prefill on the same
model and token ids as `a3 eval --ids IDS_FILE`, for make bench.

Loads the safetensors weights (F32/F16/BF16) to float32 tensors once (not
timed), then times one forward pass over all ids (one window, causal
attention, logits of every position, like a3 eval) under
torch.inference_mode with torch.set_num_threads(THREADS). Prints the rate
and the mean next-token NLL, which make bench compares with a3's (an
independent check that both ran the same computation):
    pytorch prefill tokens_per_s=X threads=T n=N nll=Y torch=VERSION blas=LIB
(LIB: the BLAS library mapped into the process, e.g. the same OpenBLAS as
a3's, whose kernel then runs both sides' GEMMs.)
Llama shapes only (no biases, no RoPE scaling): what `a3 synth` writes."""
import json
import os
import struct
import sys
import time

import numpy as np
import torch


def load_tensors(model_dir):
    path = os.path.join(model_dir, "model.safetensors")
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
        base = 8 + hlen
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b0, b1 = info["data_offsets"]
            f.seek(base + b0)
            raw = f.read(b1 - b0)
            dt = info["dtype"]
            if dt == "F32":
                a = np.frombuffer(raw, dtype="<f4")
            elif dt == "F16":
                a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
            elif dt == "BF16":
                a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                raise SystemExit(f"torch_peer: {path}: {name}: dtype {dt} not handled")
            out[name] = torch.from_numpy(a.reshape(info["shape"]).copy())
        return out


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin):  # x (heads, T, hd), HF rotate_half layout
    h = x.shape[-1] // 2
    rot = torch.cat((-x[..., h:], x[..., :h]), dim=-1)
    return x * cos + rot * sin


def forward(cfg, W, ids):
    d = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim", d // nh)
    eps = cfg.get("rms_norm_eps", 1e-5)
    theta = cfg.get("rope_theta", 10000.0)
    T = len(ids)
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    cos = torch.cat((ang.cos(), ang.cos()), -1)
    sin = torch.cat((ang.sin(), ang.sin()), -1)
    mask = torch.full((T, T), float("-inf")).triu(1)
    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(T, nh, hd).transpose(0, 1)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(T, nkv, hd).transpose(0, 1)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, nkv, hd).transpose(0, 1)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        k = k.repeat_interleave(nh // nkv, dim=0)
        v = v.repeat_interleave(nh // nkv, dim=0)
        att = torch.softmax(q @ k.transpose(1, 2) / hd ** 0.5 + mask, dim=-1)
        z = (att @ v).transpose(0, 1).reshape(T, nh * hd)
        x = x + z @ W[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else W["lm_head.weight"]
    return x @ head.T


def blas_lib():
    """Basename of the BLAS library torch loaded (after a matmul ran)."""
    with open("/proc/self/maps") as f:
        libs = {os.path.basename(line.split()[-1]) for line in f if "blas" in line.lower() and "/" in line}
    # libblas.so.3 is the Debian alternatives link: name what it resolves to
    real = sorted(x for x in libs if "openblas" in x or "mkl" in x) or sorted(x for x in libs if "lapack" not in x)
    return ",".join(real) or "unknown"


def main():
    if len(sys.argv) != 4:
        raise SystemExit("usage: torch_peer.py MODEL_DIR IDS_FILE THREADS")
    model_dir, ids_file, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(threads)
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    ids = np.fromfile(ids_file, dtype="<u4").astype(np.int64).tolist()
    W = load_tensors(model_dir)
    with torch.inference_mode():
        t0 = time.perf_counter()
        logits = forward(cfg, W, ids)
        dt = time.perf_counter() - t0
        lp = torch.log_softmax(logits[:-1].double(), dim=-1)
        nll = -lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean().item()
    print(f"pytorch prefill tokens_per_s={len(ids) / dt:.3f} threads={threads} n={len(ids)} "
          f"nll={nll:.6f} torch={torch.__version__} blas={blas_lib()}")


if __name__ == "__main__":
    main()
