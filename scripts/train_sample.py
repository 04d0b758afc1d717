#!/usr/bin/python3
"""Train the embedded sample model in samples/sample-model/ (developer tool).

This is not part of the build or of CI: the files it writes are committed.
It needs Debian's PyTorch (``apt-get install -y python3-torch``) and must be
run with Debian's interpreter, ``/usr/bin/python3`` (a pyenv python3 first on
PATH has no torch).  No other package is used.

Usage (from the repository root):

    /usr/bin/python3 scripts/train_sample.py            # full run, ~25 min on 2 cores
    /usr/bin/python3 scripts/train_sample.py --bench    # time 20 steps, write nothing

Options: --data DIR (default ../shared/data/text/tinystories next to the
repository), --out DIR (default samples/), --steps N (1800), --threads N (1),
--seed N (1337).

Threads: --threads sets PyTorch's intra-op (OpenMP) threads.  Debian's build
does its matrix products in OpenBLAS, which uses both cores of a 2-core
machine by itself; giving OpenMP 2 threads as well was measured 2-5x slower
per step (2x idle, up to 6x with another process busy) on a 2-core machine,
as the element-wise ops wait on each other, so the default is 1.

What it does, in order:

1. Reads TinyStories text from the shared data (train-head-lowercase.txt, the
   start of the lowercased train split, stories separated by a single newline
   and paragraphs by a blank line; valid-head.txt, the start of the validation
   split, which it lowercases to match).  The last ~50 KB of train stories are
   held out of training and written to samples/calib.txt; ~50 KB of validation
   paragraphs go to samples/eval.txt.  Both use blank-line-separated paragraphs.
2. Trains a SentencePiece-style BPE tokenizer in pure Python (spaces become
   U+2581, one U+2581 is prepended to the text, byte fallback tokens
   <0x00>..<0xFF>, 512 tokens: <unk>=0, <s>=1, </s>=2, bytes 3..258, the base
   characters seen at least --min-char-count times, then merges).  Merges are
   learned within pieces that start at a U+2581 and, inside those, within runs
   of one character class (letters, digits, newlines, punctuation), so a merged
   token holds one class and a U+2581 only as its first character; encoding
   applies the merges by rank exactly as Hugging Face tokenizers' BPE model
   does (lowest rank first, leftmost first) with no pre-tokenizer.
   Writes tokenizer.json, tokenizer_config.json.
3. Trains a small LLaMA (HF LlamaForCausalLM semantics: RMSNorm eps 1e-5,
   rotate_half RoPE theta 10000, GQA via repeat_kv, SwiGLU, tied embeddings,
   no biases) with AdamW and a cosine schedule on 256-token windows drawn from
   the stream <s> story1 <s> story2 ..., printing losses.
4. Writes samples/sample-model/: config.json, generation_config.json,
   model.safetensors (F16, standard HF tensor names, written by hand since the
   safetensors package is not available), tokenizer files and README.md with
   the run's figures.

A full run takes about 25 minutes of training (0.7-0.85 s per step) plus
~10 seconds of tokenizer training and encoding on a 2-core machine.  The
tokenizer is deterministic; the weights are for a given seed, thread count,
PyTorch and BLAS build.

Reference logits for testing the C forward pass are made afterwards by
scripts/make_reference.py, which imports the tokenizer code from this file.
"""

import argparse
import collections
import json
import math
import os
import re
import struct
import sys
import time

SPACE = "\u2581"
N_SPECIAL = 3                     # <unk>, <s>, </s>
BYTE_BASE = N_SPECIAL             # <0x00> has id 3
FIRST_CHAR_ID = BYTE_BASE + 256   # 259

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# ---------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------


def split_train_stories(text):
    """train-head-lowercase.txt: a single newline ends a story, a blank line
    separates paragraphs inside one."""
    stories = re.split(r"(?<!\n)\n(?!\n)", text)
    out = []
    for s in stories:
        s = s.strip("\n")
        s = re.sub(r"\n{3,}", "\n\n", s)
        if s.strip():
            out.append(s)
    return out


def make_extracts(train_stories, valid_text, calib_bytes=50000, eval_bytes=50000):
    """Returns (training stories, calib text, eval text)."""
    # calibration: the last train stories, held out of training
    n = 0
    k = len(train_stories)
    while n < calib_bytes:
        k -= 1
        n += len(train_stories[k].encode("utf-8")) + 2
    calib = "\n\n".join(train_stories[k:]) + "\n"
    train = train_stories[:k]
    # evaluation: validation paragraphs from the first "once upon a time"
    paras = [p.strip("\n") for p in re.split(r"\n\s*\n", valid_text.lower())]
    paras = [p for p in paras if p.strip()]
    start = next(i for i, p in enumerate(paras) if p.startswith("once upon a time"))
    out, n = [], 0
    for p in paras[start:]:
        out.append(p)
        n += len(p.encode("utf-8")) + 2
        if n >= eval_bytes:
            break
    evaltext = "\n\n".join(out) + "\n"
    return train, calib, evaltext


# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------


def normalize(text):
    """HF normalizer Sequence[Prepend("\u2581"), Replace(" ", "\u2581")]."""
    if not text:
        return text
    return (SPACE + text).replace(" ", SPACE)


def pieces(norm):
    """Splits a normalized string before every U+2581.  Merges never join a
    symbol to a following symbol that begins with U+2581, so encoding piece by
    piece equals encoding the whole string."""
    return re.findall(SPACE + "[^" + SPACE + "]*|[^" + SPACE + "]+", norm)


def _cclass(c):
    if c.isalpha():
        return "L"
    if c.isdigit():
        return "D"
    if c == "\n":
        return "N"
    if c.isspace():
        return "S"
    return "P"


def segments(piece):
    """Training-time split of a piece into runs of one character class
    (letters, digits, newlines, other whitespace, punctuation); a leading
    U+2581 joins the run after it, as in SentencePiece's split by Unicode
    script.  Merges are learned inside segments only, so no merge joins two
    classes and encoding needs no such split: HF's BPE on the whole text
    gives the same ids."""
    out = []
    start = 0
    cur = None
    for j, c in enumerate(piece):
        if c == SPACE:
            continue
        k = _cclass(c)
        if cur is not None and k != cur:
            out.append(piece[start:j])
            start = j
        cur = k
    out.append(piece[start:])
    return out


def train_bpe(texts, vocab_size=512, min_char_count=300, log=print):
    """Returns (vocab: list of token strings in id order, merges: list of
    (a, b) pairs in rank order)."""
    chars = collections.Counter()
    words = collections.Counter()
    for t in texts:
        norm = normalize(t)
        chars.update(norm)
        for p in pieces(norm):
            words.update(segments(p))
    base = [c for c, n in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))
            if n >= min_char_count]
    vocab = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + base
    known = set(vocab)
    basechars = set(base)
    # a word is a list of symbols; None stands for a character outside the
    # vocabulary (it becomes byte tokens, which never merge)
    wlist = []
    for w, n in words.items():
        wlist.append(([c if c in basechars else None for c in w], n))
    pair_counts = collections.Counter()
    where = collections.defaultdict(set)
    for i, (sym, n) in enumerate(wlist):
        for a, b in zip(sym, sym[1:]):
            if a is not None and b is not None:
                pair_counts[(a, b)] += n
                where[(a, b)].add(i)
    merges = []
    while len(vocab) < vocab_size and pair_counts:
        best, cnt = max(pair_counts.items(), key=lambda kv: (kv[1], kv[0]))
        if cnt <= 0:
            break
        a, b = best
        new = a + b
        merges.append(best)
        if new not in known:
            vocab.append(new)
            known.add(new)
        for i in list(where[best]):
            sym, n = wlist[i]
            for x, y in zip(sym, sym[1:]):
                if x is not None and y is not None:
                    pair_counts[(x, y)] -= n
                    if pair_counts[(x, y)] <= 0:
                        del pair_counts[(x, y)]
            out, j = [], 0
            while j < len(sym):
                if j + 1 < len(sym) and sym[j] == a and sym[j + 1] == b:
                    out.append(new)
                    j += 2
                else:
                    out.append(sym[j])
                    j += 1
            wlist[i] = (out, n)
            for x, y in zip(out, out[1:]):
                if x is not None and y is not None:
                    pair_counts[(x, y)] += n
                    where[(x, y)].add(i)
        pair_counts.pop(best, None)
        where.pop(best, None)
    log("tokenizer: %d base characters, %d merges, vocab %d"
        % (len(base), len(merges), len(vocab)))
    return vocab, merges


class Tokenizer:
    """Encoder/decoder with the exact semantics of the tokenizer.json this
    file writes, as Hugging Face tokenizers runs it."""

    def __init__(self, vocab, merges):
        self.vocab = list(vocab)
        self.ids = {t: i for i, t in enumerate(self.vocab)}
        self.ranks = {}
        for r, (a, b) in enumerate(merges):
            key = (self.ids[a], self.ids[b])
            if key not in self.ranks:
                self.ranks[key] = (r, self.ids[a + b])
        self.merges = list(merges)
        self.cache = {}

    @classmethod
    def from_file(cls, path):
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        m = tj["model"]
        vocab = [None] * len(m["vocab"])
        for t, i in m["vocab"].items():
            vocab[i] = t
        merges = []
        for s in m["merges"]:
            if isinstance(s, str):
                a, b = s.split(" ")
            else:
                a, b = s
            merges.append((a, b))
        return cls(vocab, merges)

    def _initial(self, piece):
        syms = []
        for c in piece:
            i = self.ids.get(c)
            if i is not None:
                syms.append(i)
            else:
                syms.extend(BYTE_BASE + b for b in c.encode("utf-8"))
        return syms

    def encode_piece(self, piece):
        """Merges the lowest-ranked adjacent pair, leftmost on ties, until
        none is left (HF's Word::merge_all without dropout)."""
        r = self.cache.get(piece)
        if r is not None:
            return r
        syms = self._initial(piece)
        ranks = self.ranks
        while len(syms) > 1:
            best = None
            for j in range(len(syms) - 1):
                m = ranks.get((syms[j], syms[j + 1]))
                if m is not None and (best is None or m[0] < best[0]):
                    best = (m[0], j, m[1])
            if best is None:
                break
            _, j, new = best
            syms[j:j + 2] = [new]
        self.cache[piece] = syms
        return syms

    def encode(self, text, bos=False):
        """Ids of text; with bos=True a leading <s> as the post-processor
        adds.  As in HF, the special tokens' literal strings found in the raw
        text become their ids, and each stretch of text between them is
        normalized (so gets its own leading U+2581) and encoded separately."""
        out = [1] if bos else []
        specials = self.vocab[:N_SPECIAL]
        for part in re.split("(" + "|".join(map(re.escape, specials)) + ")", text):
            if part in specials:
                out.append(self.ids[part])
            elif part:
                for p in pieces(normalize(part)):
                    out.extend(self.encode_piece(p))
        return out

    def encode_whole(self, text):
        """Same as encode() but without splitting into pieces (for checks)."""
        self.cache, saved = {}, self.cache
        try:
            return self.encode_piece(normalize(text)) if text else []
        finally:
            self.cache = saved

    def decode(self, ids):
        """HF decoder Sequence[Replace(U+2581 -> ' '), ByteFallback, Fuse,
        Strip(' ', 1, 0)]; special tokens skipped."""
        buf = bytearray()
        out = []
        for i in ids:
            if i < N_SPECIAL:
                continue
            if i < FIRST_CHAR_ID:
                buf.append(i - BYTE_BASE)
                continue
            if buf:
                out.append(buf.decode("utf-8", errors="replace"))
                buf = bytearray()
            out.append(self.vocab[i].replace(SPACE, " "))
        if buf:
            out.append(buf.decode("utf-8", errors="replace"))
        s = "".join(out)
        return s[1:] if s.startswith(" ") else s

    def to_json(self, model_max_length=512):
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [
                {"id": i, "content": t, "single_word": False, "lstrip": False,
                 "rstrip": False, "normalized": False, "special": True}
                for i, t in enumerate(self.vocab[:N_SPECIAL])
            ],
            "normalizer": {
                "type": "Sequence",
                "normalizers": [
                    {"type": "Prepend", "prepend": SPACE},
                    {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
                ],
            },
            "pre_tokenizer": None,
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [
                    {"SpecialToken": {"id": "<s>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}},
                ],
                "pair": [
                    {"SpecialToken": {"id": "<s>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": "<s>", "type_id": 1}},
                    {"Sequence": {"id": "B", "type_id": 1}},
                ],
                "special_tokens": {
                    "<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                },
            },
            "decoder": {
                "type": "Sequence",
                "decoders": [
                    {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
                    {"type": "ByteFallback"},
                    {"type": "Fuse"},
                    {"type": "Strip", "content": " ", "start": 1, "stop": 0},
                ],
            },
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": "<unk>",
                "continuing_subword_prefix": None,
                "end_of_word_suffix": None,
                "fuse_unk": True,
                "byte_fallback": True,
                "ignore_merges": False,
                "vocab": {t: i for i, t in enumerate(self.vocab)},
                "merges": ["%s %s" % (a, b) for a, b in self.merges],
            },
        }


def tokenizer_config(model_max_length=512):
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


# ---------------------------------------------------------------------------
# safetensors (written and read by hand)
# ---------------------------------------------------------------------------

_ST_DTYPES = {"F16": 2, "F32": 4, "F64": 8, "BF16": 2}


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, dtype string, shape, raw little-endian bytes)."""
    header = {}
    off = 0
    for name, dt, shape, raw in tensors:
        n = _ST_DTYPES[dt]
        for d in shape:
            n *= d
        assert n == len(raw), name
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    if metadata:
        header["__metadata__"] = metadata
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for _, _, _, raw in tensors:
            f.write(raw)


def read_safetensors(path):
    """Returns {name: (dtype string, shape, raw bytes)}."""
    with open(path, "rb") as f:
        data = f.read()
    (hl,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hl])
    base = 8 + hl
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[name] = (v["dtype"], v["shape"], data[base + a:base + b])
    return out


# ---------------------------------------------------------------------------
# Model (HF LlamaForCausalLM semantics)
# ---------------------------------------------------------------------------

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 352,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "num_hidden_layers": 4,
    "head_dim": 16,
    "vocab_size": 512,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "mlp_bias": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "torch_dtype": "float16",
    "use_cache": True,
}


def build_model(cfg):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class RMSNorm(nn.Module):
        def __init__(self, n, eps):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))
            self.eps = eps

        def forward(self, x):
            v = x.pow(2).mean(-1, keepdim=True)
            return self.weight * (x * torch.rsqrt(v + self.eps))

    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            d, hd = cfg["hidden_size"], cfg["head_dim"]
            self.nh, self.nkv, self.hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], hd
            self.q_proj = nn.Linear(d, self.nh * hd, bias=False)
            self.k_proj = nn.Linear(d, self.nkv * hd, bias=False)
            self.v_proj = nn.Linear(d, self.nkv * hd, bias=False)
            self.o_proj = nn.Linear(self.nh * hd, d, bias=False)

        def forward(self, x, cos, sin, mask):
            B, T, _ = x.shape
            q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
            k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
            v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            rep = self.nh // self.nkv
            if rep > 1:   # repeat_kv: query head h uses kv head h // rep
                k = k[:, :, None].expand(B, self.nkv, rep, T, self.hd).reshape(B, self.nh, T, self.hd)
                v = v[:, :, None].expand(B, self.nkv, rep, T, self.hd).reshape(B, self.nh, T, self.hd)
            # softmax(q k^T / sqrt(head_dim) + causal mask) v, as one baddbmm
            s = torch.baddbmm(mask[:T, :T], q.reshape(B * self.nh, T, self.hd),
                              k.reshape(B * self.nh, T, self.hd).transpose(1, 2),
                              alpha=1.0 / math.sqrt(self.hd))
            a = torch.bmm(torch.softmax(s, dim=-1), v.reshape(B * self.nh, T, self.hd))
            a = a.view(B, self.nh, T, self.hd)
            return self.o_proj(a.transpose(1, 2).reshape(B, T, self.nh * self.hd))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            d, f = cfg["hidden_size"], cfg["intermediate_size"]
            self.gate_proj = nn.Linear(d, f, bias=False)
            self.up_proj = nn.Linear(d, f, bias=False)
            self.down_proj = nn.Linear(f, d, bias=False)

        def forward(self, x):
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.self_attn = Attention()
            self.mlp = MLP()
            self.input_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
            self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])

        def forward(self, x, cos, sin, mask):
            x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
            return x + self.mlp(self.post_attention_layernorm(x))

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
            self.layers = nn.ModuleList([Layer() for _ in range(cfg["num_hidden_layers"])])
            self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Inner()
            hd, P = cfg["head_dim"], cfg["max_position_embeddings"]
            inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
            fr = torch.outer(torch.arange(P, dtype=torch.float64), inv)
            emb = torch.cat((fr, fr), dim=-1)
            self.register_buffer("cos", emb.cos(), persistent=False)   # float64, cast in forward
            self.register_buffer("sin", emb.sin(), persistent=False)
            self.register_buffer("mask", torch.full((P, P), float("-inf")).triu(1), persistent=False)

        def forward(self, ids):
            T = ids.shape[1]
            x = self.model.embed_tokens(ids)
            cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
            for layer in self.model.layers:
                x = layer(x, cos, sin, self.mask.to(x.dtype))
            x = self.model.norm(x)
            return x @ self.model.embed_tokens.weight.t()   # tied lm_head

    m = Llama()
    std = cfg["initializer_range"]
    for name, p in m.named_parameters():
        if p.dim() == 2:
            s = std
            if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                s = std / math.sqrt(2 * cfg["num_hidden_layers"])
            nn.init.normal_(p, 0.0, s)
    return m


def export_tensors(model, dtype="F16"):
    """(name, dtype, shape, raw bytes) in HF naming; the tied lm_head is not
    stored (as HF does)."""
    import torch
    tdt = {"F16": torch.float16, "F32": torch.float32}[dtype]
    out = []
    for name, p in sorted(model.state_dict().items()):
        t = p.detach().to(tdt).contiguous()
        out.append((name, dtype, list(t.shape), t.numpy().tobytes()))
    return out


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(os.path.dirname(REPO), "shared", "data", "text", "tinystories"))
    ap.add_argument("--out", default=os.path.join(REPO, "samples"))
    ap.add_argument("--steps", type=int, default=1800)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--min-char-count", type=int, default=300)
    ap.add_argument("--bench", action="store_true", help="time 20 steps and write nothing")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.time()

    def log(*a):
        print("[%7.1fs]" % (time.time() - t_start), *a, flush=True)

    with open(os.path.join(args.data, "train-head-lowercase.txt"), encoding="utf-8") as f:
        train_text = f.read()
    with open(os.path.join(args.data, "valid-head.txt"), encoding="utf-8") as f:
        valid_text = f.read()
    stories, calib, evaltext = make_extracts(split_train_stories(train_text), valid_text)
    log("train stories %d (%d chars), calib %d bytes, eval %d bytes"
        % (len(stories), sum(map(len, stories)), len(calib.encode()), len(evaltext.encode())))

    vocab, merges = train_bpe(stories, CONFIG["vocab_size"], args.min_char_count, log)
    assert len(vocab) == CONFIG["vocab_size"], len(vocab)
    tok = Tokenizer(vocab, merges)
    for s in stories[:200] + [evaltext[:3000], "  a  b\u00e9 \u4e2d\n\nx "]:
        assert tok.encode(s) == tok.encode_whole(s)
        assert tok.decode(tok.encode(s)) == s

    stream = []
    for s in stories:
        stream.append(1)
        stream.extend(tok.encode(s))
    vstream = [1] + tok.encode(valid_text.lower())
    log("train tokens %d (%.2f chars/token), valid tokens %d"
        % (len(stream), sum(map(len, stories)) / len(stream), len(vstream)))

    # unigram baseline: train unigram (add-one) cross-entropy on valid
    uc = collections.Counter(stream)
    tot = len(stream) + len(vocab)
    unigram = -sum(math.log((uc[t] + 1) / tot) for t in vstream[1:]) / (len(vstream) - 1)
    log("unigram baseline on valid: %.4f nats (ppl %.1f)" % (unigram, math.exp(unigram)))

    data = torch.tensor(stream, dtype=torch.long)
    vdata = torch.tensor(vstream, dtype=torch.long)
    T, B = args.seq, args.batch
    gen = torch.Generator().manual_seed(args.seed)

    def batch():
        ix = torch.randint(0, len(data) - T - 1, (B,), generator=gen)
        x = torch.stack([data[i:i + T] for i in ix.tolist()])
        y = torch.stack([data[i + 1:i + 1 + T] for i in ix.tolist()])
        return x, y

    # fixed validation windows
    nv = min(48, (len(vdata) - 1) // T)
    vstep = (len(vdata) - 1 - T) // max(1, nv - 1)
    vx = torch.stack([vdata[i * vstep:i * vstep + T] for i in range(nv)])
    vy = torch.stack([vdata[i * vstep + 1:i * vstep + 1 + T] for i in range(nv)])

    model = build_model(CONFIG)
    nparams = sum(p.numel() for p in model.parameters())
    log("model parameters: %d (%.2f MB as F16)" % (nparams, nparams * 2 / 1e6))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    nodecay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    F = torch.nn.functional

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))

    def val_loss():
        model.eval()
        with torch.no_grad():
            tot = 0.0
            for i in range(0, nv, 8):
                lg = model(vx[i:i + 8])
                tot += F.cross_entropy(lg.reshape(-1, lg.shape[-1]), vy[i:i + 8].reshape(-1),
                                       reduction="sum").item()
        model.train()
        return tot / (nv * T)

    steps = 20 if args.bench else args.steps
    t_train = time.time()
    ema = None
    history = []
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, y = batch()
        lg = model(x)
        loss = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        li = loss.item()
        ema = li if ema is None else 0.98 * ema + 0.02 * li
        if step % 50 == 0 or step == steps - 1:
            el = time.time() - t_train
            msg = "step %5d/%d loss %.4f (avg %.4f) lr %.2e  %.0fs, %.2fs/step" % (
                step, steps, li, ema, lr_at(step), el, el / (step + 1))
            if (step % 250 == 0 and step > 0) or step == steps - 1:
                vl = val_loss()
                history.append((step, ema, vl))
                msg += "  val %.4f (ppl %.2f)" % (vl, math.exp(vl))
            log(msg)
    train_secs = time.time() - t_train
    if args.bench:
        log("bench: %.3f s/step at batch %d x %d" % (train_secs / steps, B, T))
        return

    # final losses, measured the same way for both splits
    model.eval()
    with torch.no_grad():
        g2 = torch.Generator().manual_seed(args.seed + 1)
        tl = 0.0
        for _ in range(6):
            ix = torch.randint(0, len(data) - T - 1, (8,), generator=g2).tolist()
            xx = torch.stack([data[i:i + T] for i in ix])
            yy = torch.stack([data[i + 1:i + 1 + T] for i in ix])
            lg = model(xx)
            tl += F.cross_entropy(lg.reshape(-1, lg.shape[-1]), yy.reshape(-1), reduction="sum").item()
        final_train = tl / (48 * T)
    final_val = val_loss()
    log("final: train %.4f, valid %.4f (ppl %.2f), unigram %.4f"
        % (final_train, final_val, math.exp(final_val), unigram))

    # greedy sample from <s>
    with torch.no_grad():
        ids = [1]
        for _ in range(60):
            lg = model(torch.tensor([ids]))
            ids.append(int(lg[0, -1].argmax()))
    sample = tok.decode(ids)
    log("greedy from <s>: %r" % sample)

    # write everything
    mdir = os.path.join(args.out, "sample-model")
    os.makedirs(mdir, exist_ok=True)
    with open(os.path.join(args.out, "calib.txt"), "w", encoding="utf-8") as f:
        f.write(calib)
    with open(os.path.join(args.out, "eval.txt"), "w", encoding="utf-8") as f:
        f.write(evaltext)
    with open(os.path.join(mdir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok.to_json(), f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(mdir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(CONFIG["max_position_embeddings"]), f, indent=2)
        f.write("\n")
    cfg = {k: v for k, v in CONFIG.items()}
    with open(os.path.join(mdir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(mdir, "generation_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2, "do_sample": False}, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(mdir, "model.safetensors"), export_tensors(model, "F16"),
                      {"format": "pt"})

    # NLL of eval.txt with the F16-rounded weights (protocol of make_reference.py)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
        ev = torch.tensor([1] + tok.encode(evaltext))
        tot, n = 0.0, 0
        for s in range(0, len(ev) - 1, T):
            x = ev[s:s + T]
            y = ev[s + 1:s + 1 + T]
            x = x[:len(y)]
            lg = model(x[None])[0]
            tot += F.cross_entropy(lg, y, reduction="sum").item()
            n += len(y)
        eval_nll = tot / n
    log("eval.txt NLL (F16 weights, float32): %.4f over %d tokens (ppl %.3f)"
        % (eval_nll, n, math.exp(eval_nll)))

    size = os.path.getsize(os.path.join(mdir, "model.safetensors"))
    readme = README.format(
        params=nparams, size=size, steps=args.steps, batch=B, seq=T, lr=args.lr,
        warmup=args.warmup, seed=args.seed, threads=args.threads,
        minutes=train_secs / 60, ntok=len(stream), nstories=len(stories),
        final_train=final_train, final_val=final_val, ppl_val=math.exp(final_val),
        unigram=unigram, ppl_unigram=math.exp(unigram), eval_nll=eval_nll,
        eval_ppl=math.exp(eval_nll), eval_n=n, sample=sample.replace("\n", "\n> "),
        torch=torch.__version__, nbase=FIRST_CHAR_ID, nchars=len(vocab) - len(merges) - FIRST_CHAR_ID,
        nmerges=len(merges), history="\n".join(
            "| %d | %.4f | %.4f |" % h for h in history))
    with open(os.path.join(mdir, "README.md"), "w", encoding="utf-8") as f:
        f.write(readme)
    log("wrote %s (model.safetensors %d bytes)" % (mdir, size))


README = """# sample-model: a tiny TinyStories LLaMA made by this project

A small `LlamaForCausalLM` in the Hugging Face layout (config.json,
model.safetensors, tokenizer.json), used by a3's tests and demo.  It was
trained from scratch by `scripts/train_sample.py` in this repository; nothing
in it comes from another model.

## Architecture

| | |
|---|---|
| parameters | {params:,} ({size:,} bytes as F16 safetensors) |
| layers | 4 |
| hidden / intermediate | 128 / 352 (SwiGLU: `down(silu(gate(x)) * up(x))`) |
| attention | 8 query heads, 4 KV heads (GQA, 2 query heads per KV head), head_dim 16 |
| positions | RoPE, theta 10000, HF `rotate_half` layout (first/second half of each head), max 512 |
| norm | RMSNorm with weight, eps 1e-5 |
| vocabulary | 512, embeddings tied to the LM head (no `lm_head.weight` tensor), no biases |
| dtype | float16 (`torch_dtype` "float16") |

## Tokenizer

SentencePiece-style BPE trained by the same script, in pure Python: the text
gets one `▁` (U+2581) prepended and every space replaced by `▁`; ids 0, 1, 2
are `<unk>`, `<s>`, `</s>`; 3..258 are the byte-fallback tokens
`<0x00>`..`<0xFF>`; {nchars} base characters follow (those seen at least 300
times in the training text), then {nmerges} merges.  No pre-tokenizer; merges
are applied by rank (lowest first, leftmost on ties) as Hugging Face
tokenizers' BPE model does; a character that is not in the vocabulary becomes
its UTF-8 bytes.  `<s>` is added in front by the post-processor.  Merges were
learned only inside runs of one character class (letters, digits, newlines,
punctuation), each run keeping a leading `▁`, so no token mixes classes.

## Training

    /usr/bin/python3 scripts/train_sample.py

(Debian's `python3-torch`, PyTorch {torch}; {threads} intra-op thread, OpenBLAS
on both cores of a 2-core machine.)

- Text: `train-head-lowercase.txt` of the project's shared data, the start of
  the TinyStories train split, lowercased: {nstories:,} stories,
  {ntok:,} tokens, each story preceded by `<s>`.  The last ~50 KB of stories
  were held out and are `samples/calib.txt`.  Validation: `valid-head.txt`
  (start of the validation split), lowercased; `samples/eval.txt` is a ~50 KB
  extract of it.
- AdamW (betas 0.9/0.95, weight decay 0.1 on matrices), peak lr {lr}, {warmup}
  warm-up steps, cosine decay to lr/10, gradient clipping 1.0, batch
  {batch} x {seq} tokens, {steps} steps, seed {seed}, float32.
- Training time: {minutes:.1f} minutes of wall-clock on a 2-core machine
  (other jobs were running on it too; ~0.7 s per step when it is idle).

| step | train loss (moving avg) | valid loss |
|---:|---:|---:|
{history}

Final: train loss {final_train:.4f}, validation loss {final_val:.4f} nats
(perplexity {ppl_val:.2f}); a unigram model of the training tokens scores
{unigram:.4f} (perplexity {ppl_unigram:.1f}) on the same text.

Mean next-token NLL over `samples/eval.txt` with the stored F16 weights
(protocol: `<s>` + the whole file as one token stream, non-overlapping
256-token windows, every token after `<s>` predicted once; see
`scripts/make_reference.py`): {eval_nll:.4f} nats over {eval_n:,} tokens
(perplexity {eval_ppl:.3f}) in float32.

Greedy continuation of `<s>` (60 tokens, float32):

> {sample}

## Checks

- `tokenizer.json` was loaded by Hugging Face tokenizers 0.23.2 (the Rust
  library, through its Node binding, outside the project) and gave the same
  ids and decoded text as the script's encoder on ~3,000 strings: the sample
  texts, 300 KB of training text, mixed-case text, special-token strings and
  random strings of letters, spaces, newlines, tabs, punctuation and non-ASCII
  characters.
- `scripts/make_reference.py` re-reads `model.safetensors`, runs it in float64
  with a second, independent implementation (checked against the training
  module to 1e-9) and writes `tests/data/sample_ref.json`: logits, greedy
  tokens and the eval.txt NLL in float64.

## Licence

The weights and tokenizer were produced by this project's script and are
distributed under the project's licence.  They were trained on TinyStories
(Eldan & Li, 2023), which is licensed CDLA-Sharing-1.0; see
`samples/TEXT-LICENSE.md`.
"""

if __name__ == "__main__":
    main()
