/* extsort.h: stable external sort of records by a 64-bit key in bounded
 * memory.
 *
 * For event logs that are not in time order: the caller reads records (with
 * the CSV reader), parses the key (a timestamp) itself, and adds each record
 * with its original line number; after extsort_finish it reads them back in
 * (key, order added) order, so equal keys keep the order of the file, and
 * messages can still name the original FILE:LINE.
 *
 * Records are held in memory up to mem_budget bytes; beyond that sorted runs
 * are spilled to one temporary file in tmpdir (unlinked as soon as it is
 * created) and merged on the way out. Memory stays near mem_budget plus one
 * read buffer (64 KiB to 1 MiB) per spilled run; the spill file needs about
 * as many bytes as the records (their fields plus about 12 bytes and 2 per
 * field).
 * Not thread-safe; one handle per thread. */
#ifndef PT_EXTSORT_H
#define PT_EXTSORT_H

#include <stddef.h>
#include <stdint.h>

struct extsort;

/* tmpdir: folder for the spill file (created on the first spill only, with
 * mkstemp, unlinked at once; anything left is removed by extsort_free).
 * mem_budget: bytes of records (plus 32 bytes of index per record) held in
 * memory before a sorted run is spilled; at least 64 KiB (e.g. 256 MiB).
 * [out] *out: free with extsort_free. Errors: PT_EINVAL, PT_ENOMEM. */
int extsort_create(struct extsort **out, const char *tmpdir, size_t mem_budget);

/* Copies one record: nfields fields, fields[i][0, lens[i]) (any bytes,
 * NUL and newlines included; fields/lens may be NULL when nfields is 0).
 * line is kept for the caller's messages. May spill a run. Errors:
 * PT_EINVAL (after extsort_finish), PT_ENOMEM
 * (the record is not added; the sorter stays usable), PT_EIO (spill file
 * cannot be created or written: message names it; the sorter stays failed). */
int extsort_add(struct extsort *s, int64_t key, long line, char *const *fields, const size_t *lens,
                size_t nfields);

/* No more adds: sorts what is in memory and starts the merge of spilled
 * runs. Errors: PT_EINVAL (called twice), PT_ENOMEM, PT_EIO. */
int extsort_finish(struct extsort *s);

/* Next record in (key, order added) order. Returns 1 and sets *nfields,
 * *fields, *lens (each field NUL-terminated after its lens[i] bytes; owned
 * by the sorter, valid until the next call or extsort_free), *line and *key
 * (line and key may be NULL); 0 at the end (and on every later call);
 * PT_EINVAL before extsort_finish; PT_EIO if a spill file reads short or is
 * damaged (message names the file; the sorter stays failed). */
int extsort_next(struct extsort *s, size_t *nfields, char ***fields, size_t **lens, long *line,
                 int64_t *key);

/* Records added so far. */
int64_t extsort_count(const struct extsort *s);

/* Sorted runs spilled to disk so far (0: everything fits in memory). */
int extsort_runs(const struct extsort *s);

/* Frees everything and removes the spill file. NULL is a no-op. Fine at any
 * point: before or without extsort_finish, mid-read, after an error. */
void extsort_free(struct extsort *s);

#endif
