/* csv.h: streaming CSV/TSV reader.
 *
 * RFC 4180 quoting (a quoted field may hold the delimiter, doubled quotes and
 * newlines), a delimiter of one or more bytes (",", "\t", ", "), CRLF or LF
 * line ends, a UTF-8 byte-order mark skipped at the start, gzip input detected
 * by its magic bytes (through zlib). Bytes are passed through as they are
 * (UTF-8 stays UTF-8). The reader never holds more than one record plus a
 * fixed input buffer in memory. */
#ifndef PT_CSV_H
#define PT_CSV_H

#include <stddef.h>

struct csv_opts {
    const char *delim; /* NULL: "," */
    char quote;        /* 0: '"' ; a field that starts with it is quoted */
};

struct csv_reader;

/* Opens a file (plain or gzip). name used in messages is the path.
 * [out] *out: free with csv_reader_close(). Errors: PT_EIO (with path). */
int csv_reader_open(struct csv_reader **out, const char *path, const struct csv_opts *opts);

/* Reads from memory (not copied: buf must outlive the reader); gzip detected
 * too. name is used in messages. */
int csv_reader_open_mem(struct csv_reader **out, const void *buf, size_t len, const char *name,
                        const struct csv_opts *opts);

void csv_reader_close(struct csv_reader *r);

/* Reads the next record. Returns 1 and sets *nfields, *fields (NUL-terminated,
 * unquoted) and *lens, valid until the next call; 0 at end of input; or a
 * negative PT_E* code with the message "FILE:LINE: what is wrong" (an
 * unterminated quote, a stray quote inside a quoted field, a gzip error,
 * a record over 16 MiB). A blank line is a record with one empty field.
 * After a PT_EPARSE the reader resumes at the next line, so callers may skip
 * bad records; after PT_EIO it stays failed. */
int csv_reader_next(struct csv_reader *r, size_t *nfields, char ***fields, size_t **lens);

/* 1-based physical line on which the last record returned began. */
long csv_reader_line(const struct csv_reader *r);

/* The name given at open (the path). */
const char *csv_reader_name(const struct csv_reader *r);

#endif
