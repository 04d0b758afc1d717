/* tokens: see include/a3/tokens.h. */
#include "a3/tokens.h"

#include <stdlib.h>
#include <string.h>

#include "a3/sha256.h"
#include "a3/tokenizer.h"

int a3_tokens_read(const char *model_dir, int vocab, const char *const *texts, int n_texts, const char *ids_path,
                   int32_t **ids, size_t *n, char (*sha)[65], a3_err *err)
{
    if (ids_path) {
        int rc = a3_tok_read_ids(ids_path, ids, n, err);
        if (rc == A3_OK && (rc = a3_tok_check_ids(ids_path, *ids, *n, vocab, err))) free(*ids), *ids = NULL, *n = 0;
        return rc;
    }
    a3_tokenizer *tok = NULL;
    int rc = a3_tok_load_dir(model_dir, &tok, err);
    if (rc == A3_OK) rc = a3_tok_check_vocab(tok, model_dir, vocab, err);
    *ids = NULL, *n = 0;
    for (int i = 0; rc == A3_OK && i < n_texts; i++) {
        char *text;
        size_t len, k;
        int32_t *part;
        if ((rc = a3_read_file(texts[i], (size_t)1 << 34, &text, &len, err))) break;
        if (sha) {
            uint8_t dg[A3_SHA256_BYTES];
            a3_sha256(text, len, dg);
            a3_sha256_hex(dg, sha[i]);
        }
        rc = a3_tok_encode(tok, text, len, 1, &part, &k, err);
        free(text);
        if (rc) break;
        int32_t *grown = realloc(*ids, (*n + k + 1) * sizeof **ids);
        if (!grown) {
            free(part);
            rc = a3_err_set(err, A3_ENOMEM, "out of memory tokenizing %s", texts[i]);
            break;
        }
        memcpy(grown + *n, part, k * sizeof *part);
        *ids = grown, *n += k;
        free(part);
    }
    a3_tok_free(tok); /* also when a text file failed to read or encode */
    if (rc) free(*ids), *ids = NULL, *n = 0;
    return rc;
}
