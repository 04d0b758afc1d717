/* Private to the tokenizer module: the tokenizer object and its core
 * machinery. The module is layered, each file with one job, and every
 * dependency points down (no file calls a layer above it):
 *
 *   API      tokenizer.c        a3_tok_encode (adds the post-processor's
 *                               special tokens), a3_tok_read_ids
 *   loaders  tokenizer_hfload.c tokenizer.json and model directories -> object
 *            tokenizer_save.c   llama2.c object -> tokenizer.json
 *   models   tokenizer_hf.c     HF pipeline: added tokens, pre-tokenizer, BPE
 *            tokenizer_norm.c   HF normalizers (Unicode forms via utf8proc)
 *            tokenizer_l2c.c    llama2.c tokenizer.bin: read and encode
 *            (declared in tokenizer_model.h)
 *   core     tokenizer_core.c   this header: the object, lookup tables, the
 *                               BPE merge engine, decoding, freeing
 *
 * Both BPE flavours reduce to one algorithm: repeatedly merge the adjacent
 * pair with the best (lowest) rank, the leftmost one on ties. For HF the rank
 * is the merge's index in model.merges; for llama2.c it is the position of
 * the merged token's score among the distinct scores sorted high to low, so
 * equal scores share a rank and the leftmost pair wins as in run.c. */
#ifndef A3_TOKENIZER_CORE_H
#define A3_TOKENIZER_CORE_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "a3/tokenizer.h"

#define TOK_MAX_VOCAB (1 << 24)     /* cap on ids read from files */
#define TOK_MAX_PIECE (1 << 16)     /* cap on one token's length in bytes */
#define TOK_MAX_JSON ((size_t)1 << 28)

enum tok_kind { TOK_KIND_LLAMA2C, TOK_KIND_HF, TOK_KIND_COUNT };

/* Growable byte buffer. */
typedef struct {
    char *p;
    size_t n, cap;
} tok_buf;

/* piece bytes -> id, open addressing; slots hold id + 1 (0 = empty). */
typedef struct {
    int32_t *slot;
    size_t mask;
} tok_strmap;

/* (left id, right id) -> (rank, merged id), open addressing. */
typedef struct {
    uint64_t key; /* left << 32 | right; UINT64_MAX = empty */
    uint32_t rank;
    int32_t id;
} tok_pair;

typedef struct {
    tok_pair *slot;
    size_t mask, n;
} tok_pairmap;

/* One HF added token. pat is what is searched for: the content itself, or
 * for normalized tokens the content passed through the normalizer (as HF
 * does, so with a Prepend normalizer "<x>" is searched as "▁<x>"). */
typedef struct {
    char *content, *pat;
    size_t content_len, pat_len;
    int32_t id;
    unsigned char lstrip, rstrip, single_word, normalized;
} tok_added;

/* Added tokens of one pass grouped by first byte, longest first, so a text
 * position is compared only with tokens that can start there. */
typedef struct {
    uint32_t *order;    /* indices into added[] */
    uint32_t start[257];
} tok_matcher;

/* HF normalizer steps a3 reproduces; the Unicode forms use utf8proc. */
enum tok_norm_op {
    TOK_NORM_PREPEND,
    TOK_NORM_REPLACE,
    TOK_NORM_NFC,
    TOK_NORM_NFD,
    TOK_NORM_NFKC,
    TOK_NORM_NFKD,
    TOK_NORM_COUNT
};

typedef struct {
    int op;
    char *a, *b; /* PREPEND: a; REPLACE: a -> b; unused by the forms */
    size_t a_len, b_len;
} tok_norm;

enum tok_pre_op { TOK_PRE_SPLIT, TOK_PRE_BYTELEVEL, TOK_PRE_METASPACE, TOK_PRE_COUNT };

enum tok_split {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS,
    TOK_SPLIT_COUNT
};

enum tok_prepend { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER, TOK_PREPEND_COUNT };

typedef struct {
    int op;
    pcre2_code *re;       /* SPLIT; BYTELEVEL with use_regex */
    int behavior, invert; /* SPLIT */
    int add_prefix_space; /* BYTELEVEL */
    char repl[8];         /* METASPACE replacement (UTF-8) */
    size_t repl_len;
    int prepend, split;   /* METASPACE */
} tok_pre;

struct a3_tokenizer {
    int kind;
    int32_t n_vocab;
    /* Pieces as the model matches them (llama2.c: ' ' for spaces; HF: the
     * vocab strings, e.g. "▁the" or "Ġthe"). Gaps in HF ids are empty. */
    char *arena;
    size_t *off;
    uint32_t *len;
    unsigned char *in_model; /* HF: id is in model.vocab (BPE may use it) */
    unsigned char *is_added; /* HF: id is an added token (decodes as is) */
    /* Bytes each id decodes to (byte fallback and byte-level resolved). */
    char *dec_arena;
    size_t *dec_off;
    uint32_t *dec_len;
    tok_strmap map;  /* model piece -> lowest id with that piece */
    int32_t *canon;  /* llama2.c: id -> lowest id with the same piece */
    tok_pairmap pairs;
    /* cut[id]: no merge result contains id's first character anywhere but
     * at its start, so no merge can ever join a symbol id to its left
     * neighbour; BPE runs on the stretches between such symbols separately,
     * which keeps a whole-text merge (llama2.c, SentencePiece) local. */
    unsigned char *cut;
    float *score;    /* llama2.c scores, (n_vocab) */
    /* Special tokens the post-processor puts around one sequence (HF:
     * TemplateProcessing, RobertaProcessing, BertProcessing, in a Sequence
     * or not; llama2.c: BOS before). bos is before[0] or -1; eos is the
     * end-of-sequence token generation stops at (see tokenizer.h). */
    int32_t *before, *after;
    size_t n_before, n_after;
    int32_t bos, eos, unk;
    int32_t byte_id[256]; /* byte fallback ids, or byte-level base ids; -1 */
    int strip_first_space; /* decode: drop one leading ' ' at text start */
    /* HF only. */
    int byte_level, byte_fallback, fuse_unk, ignore_merges;
    int dec_space, dec_byte_fallback, dec_byte_level; /* decoder steps */
    tok_added *added;
    size_t n_added;
    tok_matcher raw_m, norm_m; /* pass 1 (normalized false), pass 2 */
    tok_norm *norm;
    size_t n_norm;
    tok_pre *pre;
    size_t n_pre;
    char bl_char[256][3]; /* GPT-2 bytes_to_unicode, UTF-8 */
    unsigned char bl_len[256];
    int16_t bl_rev[0x144]; /* code point -> byte, -1 if not a byte char */
};

/* Heap entry: merge the pair at symbol pos (ids left, right) into id. */
typedef struct {
    uint32_t rank, pos;
    int32_t left, right, id;
} tok_cand;

/* Interval of a split piece (SPLIT pre-tokenizer scratch). */
typedef struct {
    size_t s, e;
    int delim;
} tok_span;

#define TOK_MAX_LEVELS 8

/* Scratch for one encode call (the tokenizer itself stays const). */
typedef struct {
    int32_t *ids; /* output */
    size_t n_ids, cap_ids;
    int32_t *sym; /* current word's symbols */
    uint32_t *prev, *next;
    size_t n_sym, cap_sym;
    tok_cand *heap;
    size_t n_heap, cap_heap;
    tok_buf word;                 /* byte-level mapped word, prefixes */
    tok_buf normed;               /* normalized segment */
    tok_buf level_buf[TOK_MAX_LEVELS];
    tok_span *spans[TOK_MAX_LEVELS];
    size_t cap_spans[TOK_MAX_LEVELS];
    pcre2_match_data *md;
} tok_work;

/* ---- core functions (tokenizer_core.c) ---------------------------------
 * Return 0 or -1 / an A3_E* code on allocation failure; they never fail
 * otherwise and never set an a3_err (callers name the file). */

/* A new empty tokenizer (no ids, bos/eos/unk -1); a3_tok_free frees it and
 * everything the loaders attach, HF parts included. */
a3_tokenizer *tok_new(int kind);
int tok_buf_put(tok_buf *b, const void *p, size_t n);
int tok_grow(void **p, size_t *cap, size_t need, size_t sz);
int tok_ids_push(tok_work *w, int32_t id);
int tok_sym_push(tok_work *w, int32_t id);
void tok_work_free(tok_work *w);
const char *tok_piece(const a3_tokenizer *t, int32_t id, uint32_t *len);
/* Id of a model piece (lowest id on duplicates), -1 if none. */
int32_t tok_lookup(const a3_tokenizer *t, const char *s, size_t n);
/* Id of a token by name as HF's token_to_id finds it: added tokens first,
 * then the model's vocabulary; -1 if none. */
int32_t tok_name_id(const a3_tokenizer *t, const char *name);
/* Id of an added token with this content, -1 if none. */
int32_t tok_added_id(const a3_tokenizer *t, const char *name);
int tok_strmap_build(a3_tokenizer *t, int allow_dups, int32_t *dup_id);
int tok_pairmap_init(tok_pairmap *m, size_t n);
void tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id);
const tok_pair *tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b);
int tok_bpe(const a3_tokenizer *t, tok_work *w);
int tok_build_cuts(a3_tokenizer *t);
/* Add an initial symbol; at a cut, first merge the pending ones into ids. */
int tok_sym_add(const a3_tokenizer *t, tok_work *w, int32_t id);
/* Merge the pending symbols and append them to the output ids. */
int tok_sym_flush(const a3_tokenizer *t, tok_work *w);
/* "<0xNN>" (either case of hex) -> NN, else -1. */
int tok_parse_byte_piece(const char *s, size_t n);
/* Length of the UTF-8 character at s: 1..4, and 1 for an invalid or
 * truncated sequence (so every byte is consumed exactly once). */
size_t tok_utf8_len(const unsigned char *s, size_t n);
/* Code point of the character at s (its length in *len); an invalid byte
 * decodes as itself. */
uint32_t tok_utf8_cp(const unsigned char *s, size_t n, size_t *len);
/* Fill dec_* by calling fn(t, id, out) for every id. */
typedef int (*tok_dec_fn)(const a3_tokenizer *t, int32_t id, tok_buf *out);
int tok_build_decode(a3_tokenizer *t, tok_dec_fn fn);

/* A tokenizer.json merge as its two sides: "a b" (exactly one space, as HF
 * requires) or ["a", "b"]. -1 when it is neither. The pointers borrow from
 * m. Shared by the tokenizer.json loader and the GGUF vocabulary writer. */
struct cJSON;
int tok_merge_parts(const struct cJSON *m, const char **a, size_t *al, const char **b, size_t *bl);

#endif
