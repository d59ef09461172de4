/* modelfile.h: the polytask model file.
 *
 * Layout (all integers little-endian):
 *   offset 0   8 bytes  magic "PTMODEL\0"
 *          8   u32      format version (MODELFILE_VERSION)
 *         12   u32      flags (0)
 *         16   u64      meta_len: bytes of JSON metadata that follow the header
 *         24   u64      st_len: bytes of the safetensors blob after the metadata
 *         32   meta_len bytes  UTF-8 JSON metadata (an object)
 *              st_len bytes    safetensors: u64 header size, JSON header
 *                              {"name": {"dtype": "F32", "shape": [...],
 *                              "data_offsets": [a, b]}, ...}, then raw data
 *   end - 8    u32      CRC-32 (zlib) of every byte before it
 *   end - 4    4 bytes  "PTEN"
 * Python reads the weights with safetensors.torch.load(buf[32+meta_len:][:st_len]).
 * Written atomically (temp file, fsync, rename). Reading checks, in order:
 * size, magic, version, lengths against the file size, checksum, JSON, and
 * every tensor's dtype, shape and offsets, and refuses the file with a one-line
 * message "FILE: what is wrong" on the first failure. */
#ifndef PT_MODELFILE_H
#define PT_MODELFILE_H

#include <stddef.h>
#include <stdint.h>

#define MODELFILE_VERSION 1u
#define MODELFILE_MAX_DIMS 4

enum mf_dtype { MF_F32 = 0, MF_I32 = 1 };

struct mf_tensor {
    char *name;
    float *data; /* F32; I32 tensors keep their int32_t values here too (mf_i32) */
    int dtype;   /* enum mf_dtype */
    int ndim;
    int64_t shape[MODELFILE_MAX_DIMS];
};

/* Writes meta_json (a JSON object text) and tensors to path atomically.
 * Tensor data is read, not kept. Names must be unique. */
int modelfile_write(const char *path, const char *meta_json, const struct mf_tensor *tensors,
                    size_t ntensors);

struct mf_file {
    char *meta_json; /* NUL-terminated */
    struct mf_tensor *tensors;
    size_t ntensors;
};

/* Reads and checks a model file. [out] *out: free with modelfile_free(). */
int modelfile_read(const char *path, struct mf_file **out);
/* Same from memory (for the fuzzer); name used in messages. */
int modelfile_read_mem(const void *buf, size_t len, const char *name, struct mf_file **out);

/* Tensor by name, or NULL. */
const struct mf_tensor *modelfile_find(const struct mf_file *f, const char *name);

static inline int32_t *mf_i32(const struct mf_tensor *t) { return (int32_t *)(void *)t->data; }

void modelfile_free(struct mf_file *f);

#endif
