/* cli tokens: the token stream of text files or of an ids file, shared by
 * calibrate, probe and apply --sequential: a3_tokens_read (the library's,
 * also used by the TUI). */
#include "a3/tokens.h"
#include "cli.h"

int cli_tokenize(const char *model, int vocab, const char *const *texts, int n_texts, const char *ids_path,
                 int32_t **ids, size_t *n, char (*sha)[65], a3_err *err)
{
    return a3_tokens_read(model, vocab, texts, n_texts, ids_path, ids, n, sha, err);
}
