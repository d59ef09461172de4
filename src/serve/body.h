/* body.h: request-body checks before a JSON parser sees the body: its nesting
 * depth (jansson has no depth limit, and a body of 100,000 '[' would recurse
 * that deep), done in one linear pass that knows JSON strings. */
#ifndef PT_SERVE_BODY_H
#define PT_SERVE_BODY_H

#include <stddef.h>

/* Deepest nesting of arrays/objects in s[0..len) outside strings; -1 when
 * brackets do not balance or a string is unterminated. */
int serve_body_depth(const char *s, size_t len);

/* The top-level members of a JSON object body without parsing their values:
 * for each name in names[0..n) (compared as written, without unescaping), the
 * span [off[k], off[k] + len[k]) of its value, or len[k] = 0 when absent.
 * Checks the object's own syntax (braces, "name": value pairs, commas, only
 * white space around); values are only delimited (strings, brackets and
 * scalars), so a value the caller uses must still be parsed by it. A name
 * given twice is an error. Returns 0, or -1 with the byte offset of the
 * problem in *where. */
int serve_body_members(const char *s, size_t len, const char *const *names, int n, size_t *off, size_t *vlen,
                       size_t *where);

#endif
