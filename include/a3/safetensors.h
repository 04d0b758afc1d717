/* safetensors: read (memory-mapped, hostile-input safe) and write.
 *
 * File layout (https://huggingface.co/docs/safetensors):
 *   u64 little-endian N            length of the JSON header
 *   N bytes UTF-8 JSON             {"name": {"dtype": "F16", "shape": [..],
 *                                   "data_offsets": [begin, end]}, ...,
 *                                   "__metadata__": {"k": "v"}}  (optional)
 *   data section                   offsets are relative to its start
 * Every length, offset and shape from the file is checked before use:
 * header length vs file size and a 100 MB cap, offsets inside the data
 * section, end - begin == numel * dtype size (overflow-checked), no two
 * tensors overlapping, no duplicate names, known dtype, rank <= 8.
 *
 * A set (a3_st_set) is one model's tensors across one file or the shards
 * named by model.safetensors.index.json; names are unique across the set. */
#ifndef A3_SAFETENSORS_H
#define A3_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "a3/util.h"

typedef enum {
    A3_DT_F32,
    A3_DT_F16,
    A3_DT_BF16,
    A3_DT_F64,
    A3_DT_I32,
    A3_DT_I64,
    A3_DT_U8,
    A3_DT_COUNT
} a3_dtype;

#define A3_ST_MAX_DIMS 8

typedef struct {
    const char *name;             /* owned by the set */
    a3_dtype dtype;
    int ndim;
    int64_t shape[A3_ST_MAX_DIMS];
    size_t numel;
    const void *data;             /* borrowed from the mmap, nbytes long;
                                   * little-endian and possibly unaligned
                                   * for its dtype (offsets are any byte) */
    size_t nbytes;
    const char *file;             /* path of the shard holding it */
} a3_st_tensor;

typedef struct a3_st_set a3_st_set;

/* Bytes per element; 0 for an invalid dtype. */
size_t a3_dtype_size(a3_dtype dt);
/* "F32", "F16", "BF16", ...; parse returns -1 for an unknown name. */
const char *a3_dtype_name(a3_dtype dt);
int a3_dtype_parse(const char *s, a3_dtype *out);

/* Open one .safetensors file. */
int a3_st_open_file(const char *path, a3_st_set **out, a3_err *err);
/* Open a model directory: model.safetensors, or the shards listed in
 * model.safetensors.index.json (every shard mapped, weight_map checked). */
int a3_st_open_dir(const char *dir, a3_st_set **out, a3_err *err);
void a3_st_free(a3_st_set *st); /* accepts NULL */

/* Tensors in header order, file by file (shards in file-name order); a3_st_get
 * returns NULL past the end. Pointers stay valid until a3_st_free. */
size_t a3_st_count(const a3_st_set *st);
const a3_st_tensor *a3_st_get(const a3_st_set *st, size_t i);
/* O(log n) by binary search over names sorted at open; NULL when absent. */
const a3_st_tensor *a3_st_find(const a3_st_set *st, const char *name);

/* Find `name`, check it has exactly the given shape (ndim dims), and convert
 * it to float32 into dst (numel floats). Errors name the file and tensor:
 * missing, wrong shape, or a dtype that is not F32/F16/BF16. */
int a3_st_load_f32(const a3_st_set *st, const char *name, int ndim,
                   const int64_t *shape, float *dst, a3_err *err);

/* Elements [first, first + n) of `name` (in row-major order, any shape)
 * to float32, with the same dtype and NaN/Inf checks: for tensors copied
 * in pieces. */
int a3_st_load_f32_part(const a3_st_set *st, const char *name, size_t first,
                        size_t n, float *dst, a3_err *err);

/* Element conversions (round to nearest even for the narrowing ones). */
float a3_f16_to_f32(uint16_t h);
uint16_t a3_f32_to_f16(float f);
float a3_bf16_to_f32(uint16_t h);
uint16_t a3_f32_to_bf16(float f);
/* Convert n elements of src (dtype dt) to float32. */
int a3_convert_to_f32(a3_dtype dt, const void *src, size_t n, float *dst);

/* Streaming writer: a model written tensor by tensor, with no more than
 * one encode buffer (1 MB) held, into one file or Hugging Face-style
 * shards. Every tensor is declared first (name, dtype, shape; the order of
 * declaration is the order in the files), so each file's header and
 * offsets are known before any data: each file is written front to back
 * once, with no header patching, through a temp name renamed into place
 * when its last tensor is in.
 *
 *   declare ... declare, begin_file or begin_dir, write/put in declaration
 *   order, finish, free.
 *
 * begin_dir: when the data fits max_shard_bytes, dir/model.safetensors;
 * else dir/model-00001-of-0000N.safetensors ... and
 * dir/model.safetensors.index.json ({"metadata": {"total_size": bytes of
 * tensor data}, "weight_map": {tensor: shard file}}), the layout
 * transformers writes and a3_st_open_dir reads. A new shard starts when
 * the next tensor would take the current one past max_shard_bytes of
 * tensor data (headers not counted, as Hugging Face counts); a tensor
 * larger than that gets a shard of its own. At most A3_ST_MAX_SHARDS shards
 * (the five digits of the names); more is A3_EINVAL.
 * write stores a whole tensor (shape checked against the declaration);
 * put appends n elements to the tensor being written, for callers that
 * produce it in pieces. Data is float32, stored in the declared dtype
 * (F32, F16 or BF16). free on a stream that did not finish removes every
 * file it wrote, including the finished shards. */
#define A3_ST_MAX_SHARDS 99999
typedef struct a3_st_stream a3_st_stream;
a3_st_stream *a3_st_stream_new(void); /* NULL when out of memory */
int a3_st_stream_declare(a3_st_stream *s, const char *name, a3_dtype dtype,
                         int ndim, const int64_t *shape, a3_err *err);
int a3_st_stream_begin_file(a3_st_stream *s, const char *path, a3_err *err);
int a3_st_stream_begin_dir(a3_st_stream *s, const char *dir,
                           uint64_t max_shard_bytes, a3_err *err);
/* Files begun (1 = a single file); 0 before begin. */
size_t a3_st_stream_nfiles(const a3_st_stream *s);
int a3_st_stream_write(a3_st_stream *s, const char *name, int ndim,
                       const int64_t *shape, const float *data, a3_err *err);
int a3_st_stream_put(a3_st_stream *s, const char *name, const float *data,
                     size_t n, a3_err *err);
int a3_st_stream_finish(a3_st_stream *s, a3_err *err);
void a3_st_stream_free(a3_st_stream *s); /* accepts NULL */

/* Buffered writer for small outputs: tensors are added from float32 data
 * and stored in `dtype` (F32, F16 or BF16); the writer copies the data, so
 * callers may free their buffers after add. save writes one file
 * atomically (temp file + rename) through a stream, with the tensors in
 * the order added and a "__metadata__" {"format": "pt"} entry. */
typedef struct a3_st_writer a3_st_writer;
a3_st_writer *a3_st_writer_new(void); /* NULL when out of memory */
int a3_st_writer_add(a3_st_writer *w, const char *name, a3_dtype dtype,
                     int ndim, const int64_t *shape, const float *data,
                     a3_err *err);
int a3_st_writer_save(a3_st_writer *w, const char *path, a3_err *err);
void a3_st_writer_free(a3_st_writer *w);

#endif
