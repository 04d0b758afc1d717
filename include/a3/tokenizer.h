/* tokenizer: text <-> token ids.
 *
 * Kinds:
 *  - HF tokenizer.json, model type BPE, in the two forms in real use:
 *    SentencePiece-style (Llama 2, Mistral, TinyLlama: normalizer/pre-tokenizer
 *    replaces ' ' with U+2581 "▁" and prepends one, byte_fallback tokens
 *    <0xNN>) and byte-level (GPT-2, Llama 3, Qwen2/3, SmolLM: bytes mapped to
 *    printable unicode, split by the pre-tokenizer regex with PCRE2).
 *    Merges by rank; added/special tokens matched before BPE; normalizers
 *    Prepend, Replace and the Unicode forms NFC/NFD/NFKC/NFKD (utf8proc);
 *    special tokens added by the post-processor (TemplateProcessing,
 *    RobertaProcessing, BertProcessing, ByteLevel, Sequence of them).
 *    Identical ids to Hugging Face tokenizers 0.23.2 on the Llama 2, Llama 3,
 *    Llama 3.1, Mistral v0.1 and Qwen3 tokenizer.json files
 *    (tests/test_tokenizer_hf.c).
 *  - llama2.c tokenizer.bin (int32 max_token_length, then per token float32
 *    score, int32 len, bytes): greedy merging of the adjacent pair whose
 *    concatenation has the highest score, after a leading space is added;
 *    byte fallback tokens at ids 3..258.
 *  - pre-tokenized ids: a file of little-endian uint32 (no tokenizer needed).
 */
#ifndef A3_TOKENIZER_H
#define A3_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "a3/util.h"

typedef struct a3_tokenizer a3_tokenizer;

/* Load tokenizer.json from a HF model directory (or a direct path to a
 * .json file), or a llama2.c tokenizer.bin (by path). On success *out owns
 * the tokenizer (free with a3_tok_free); on failure *out is NULL and err
 * says "<file>: <field or what>: <detail>": A3_EIO (cannot read),
 * A3_EFORMAT (malformed or hostile content), A3_EUNSUPPORTED (a model type
 * or pipeline step a3 does not reproduce exactly: WordPiece, Unigram,
 * Lowercase, Whitespace, a post-processor other than the ones above,
 * dropout, ...).
 * llama2.c: vocab_size > 0 requires exactly that many tokens in the file;
 * vocab_size <= 0 reads as many as the file holds. BOS 1, EOS 2, unk 0.
 * HF: BOS is the first token the post-processor adds before the text (-1
 * if it adds none); EOS the last it adds after the text, else an added
 * token named </s>, <|end_of_text|> or <|endoftext|>, else -1. Plain
 * vocabulary entries never become BOS/EOS. */
int a3_tok_load_hf(const char *path, a3_tokenizer **out, a3_err *err);
int a3_tok_load_llama2c(const char *path, int vocab_size, a3_tokenizer **out,
                        a3_err *err);
/* Directory: tokenizer.json if present, else tokenizer.bin. With
 * tokenizer.json, EOS is then taken from tokenizer_config.json (eos_token;
 * an explicit null means none), else from config.json (eos_token_id, first
 * of a list). BOS and what encoding adds stay the post-processor's, as in
 * HF (tokenizer_config.json's bos_token / add_bos_token are not read). */
int a3_tok_load_dir(const char *dir, a3_tokenizer **out, a3_err *err);
void a3_tok_free(a3_tokenizer *t);

int a3_tok_vocab_size(const a3_tokenizer *t);
int a3_tok_bos(const a3_tokenizer *t); /* -1 if none */
int a3_tok_eos(const a3_tokenizer *t); /* -1 if none */
/* The special tokens encoding with add_special puts before (after = 0) or
 * after (after = 1) the text: their count, and *ids pointing at them (owned
 * by the tokenizer). */
int a3_tok_special(const a3_tokenizer *t, int after, const int32_t **ids);
/* Token id's vocabulary entry as stored (HF: "▁the", "Ġthe", "<0x0A>";
 * llama2.c: " the"), not NUL-terminated; "" (length 0) for ids outside the
 * vocabulary or gaps in HF ids. */
const char *a3_tok_piece(const a3_tokenizer *t, int id, size_t *len);
/* "llama2.c tokenizer.bin", "tokenizer.json, byte-level BPE", ... */
const char *a3_tok_kind(const a3_tokenizer *t);

/* Encode UTF-8 text of length len. add_special adds the special tokens the
 * post-processor puts around one sequence (HF's add_special_tokens; BOS
 * for llama2.c, Llama 2, Llama 3.1; nothing for Qwen). *ids is malloc'd
 * (never NULL on success, even for no ids), caller frees. Invalid UTF-8 is
 * encoded byte by byte (byte fallback, or the bytes' byte-level tokens)
 * rather than refused; HF cannot take such text, so there is nothing to
 * match. The tokenizer is only read: concurrent encodes with one tokenizer
 * are safe. */
int a3_tok_encode(const a3_tokenizer *t, const char *text, size_t len,
                  int add_special, int32_t **ids, size_t *n_ids, a3_err *err);

/* Decode one token given the previous one (SentencePiece drops the leading
 * space after BOS), appending its bytes to buf. Returns bytes written, or a
 * negative code if buf is too small. Byte-fallback and byte-level tokens
 * may produce partial UTF-8 sequences; concatenating gives the text.
 * prev < 0 means "start of text" and strips that space too, so decoding
 * encode(x) (without BOS) from prev = -1 gives x back when the vocabulary
 * spells every byte (byte fallback or byte-level) and x holds neither the
 * space mark U+2581 nor an added token's text (after one, as in HF, a
 * SentencePiece layout encodes the rest as a new start, with its space:
 * "<unk>9" decodes as "<unk> 9"; tests/fuzz/, target encode). Special
 * tokens decode to their own text (llama2.c BOS: "\n<s>\n", HF: "<s>"). */
int a3_tok_decode(const a3_tokenizer *t, int prev, int id, char *buf,
                  size_t cap);

/* Write the tokenizer as a HF tokenizer.json (atomically) that encodes
 * and decodes identically (used by `a3 convert` for llama2.c models).
 * Only llama2.c tokenizers (A3_EUNSUPPORTED otherwise); refuses vocabularies
 * HF could not hold (ids 3..258 not <0x00>..<0xFF>, non-UTF-8 pieces, two
 * pieces with one name). Identical ids except: the text "<unk>", "<s>",
 * "</s>" becomes the special token in HF; and where two different tokens
 * share a score, run.c merges the leftmost pair but HF the lower id's. */
int a3_tok_save_hf(const a3_tokenizer *t, const char *path, a3_err *err);

/* Read a pre-tokenized file of little-endian uint32 ids (size a multiple
 * of 4, every id <= INT32_MAX). *ids is malloc'd, caller frees. */
int a3_tok_read_ids(const char *path, int32_t **ids, size_t *n_ids,
                    a3_err *err);

/* Token ids read from src (an ids file or a text) against the model's
 * vocabulary: A3_EFORMAT naming src, the id and its position when one is
 * not in [0, vocab). Checked where the ids are read, so the error names
 * the file instead of surfacing later as the model's complaint. */
int a3_tok_check_ids(const char *src, const int32_t *ids, size_t n, int vocab,
                     a3_err *err);

/* A tokenizer (loaded from dir) that can emit ids the model has no row
 * for: A3_EMISMATCH when it has more than vocab tokens. Fewer is normal
 * (embedding matrices are often padded). */
int a3_tok_check_vocab(const a3_tokenizer *t, const char *dir, int vocab,
                       a3_err *err);

#endif
