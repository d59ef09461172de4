/* util.h: internal helpers shared by every module: allocation (with fault
 * injection for tests), error messages, logging, random numbers, atomic file
 * writes. Not part of the public API. */
#ifndef PT_UTIL_H
#define PT_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "polytask.h"

/* ---- allocation: all heap goes through these; blocks of 4 MiB or more
 * come 2 MiB aligned and advised for huge pages ---- */
void *pt_malloc(size_t n);
void *pt_calloc(size_t count, size_t size);
void *pt_realloc(void *p, size_t n);
void pt_free(void *p);
char *pt_strdup(const char *s);
char *pt_strndup(const char *s, size_t n);
/* Grows *p (elem bytes each) to hold at least need, doubling *cap from 64;
 * big buffers get huge pages. PT_ENOMEM (with the message set) leaves *p
 * and *cap as they were. */
int pt_grow(void **p, size_t *cap, size_t need, size_t elem);
/* Tests: make the k-th allocation from now fail (k >= 1), 0 to disarm.
 * pt_alloc_count() counts allocations since the last arming. */
void pt_alloc_fail_at(long k);
long pt_alloc_count(void);

/* ---- errors: set the thread's message, return the code ---- */
int pt_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes "FILE:LINE: " when line > 0, "FILE: " when line == 0. */
int pt_error_at(int code, const char *file, long line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void pt_error_clear(void);

/* ---- logging to the host's callback ---- */
void pt_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- random numbers: xoshiro256** seeded by splitmix64 ---- */
struct rng {
    uint64_t s[4];
};
void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
float rng_uniform(struct rng *r);              /* [0, 1) */
float rng_normal(struct rng *r);               /* N(0, 1) */
uint64_t rng_below(struct rng *r, uint64_t n); /* [0, n) without modulo bias */
void rng_shuffle_i32(struct rng *r, int32_t *a, size_t n);

/* ---- hashing ---- */
uint64_t pt_hash64(const void *data, size_t n, uint64_t seed);

/* ---- text ---- */
/* 1 when s[0..n) is well-formed UTF-8 (no overlong forms, surrogates or
 * code points past U+10FFFF), as a JSON string must be. */
int pt_utf8_valid(const char *s, size_t n);

/* ---- atomic file writes: temp file in the same folder, fsync, rename ---- */
struct atomic_file {
    FILE *f;
    char *path, *tmp;
};
int atomic_file_open(struct atomic_file *af, const char *path);
/* Flushes, fsyncs, closes and renames over path; on any failure removes the
 * temp file and returns an error. */
int atomic_file_commit(struct atomic_file *af);
/* Discards the temp file (safe after a failed commit or on an unopened af). */
void atomic_file_abort(struct atomic_file *af);

/* ---- threads (OpenMP when built with it; oneDNN follows the same count) ---- */
void pt_set_threads(int n);
int pt_get_threads(void);

/* ---- time ---- */
double pt_now(void); /* monotonic seconds */

/* ---- path helpers ---- */
/* Joins dir and rel unless rel is absolute; returns a pt_malloc'd string. */
char *pt_path_join(const char *dir, const char *rel);
/* Folder part of path ("." if none); pt_malloc'd. */
char *pt_path_dir(const char *path);

/* Prefetch for the random row accesses of embedding tables (no-op where the
 * compiler lacks it). rw: 0 read, 1 write. */
#if defined(__GNUC__)
#define PT_PREFETCH(p, rw) __builtin_prefetch((p), (rw), 1)
#else
#define PT_PREFETCH(p, rw) ((void)(p))
#endif

/* Compiles a hot loop also for AVX2 and AVX-512 and picks the one the CPU
 * runs at load time (the build targets baseline x86-64, so without this the
 * vector loops are SSE only). The results are the same: no FMA contraction
 * in ISO C mode, and element-wise IEEE operations round alike at any width. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8 && defined(__gnu_linux__)
#define PT_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PT_VECTOR_CLONES
#endif

#define PT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
