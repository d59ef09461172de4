/* body.h: request-body checks before a JSON parser sees the body: its nesting
 * depth (jansson has no depth limit, and a body of 100,000 '[' would recurse
 * that deep), done in one linear pass that knows JSON strings. */
#ifndef PT_SERVE_BODY_H
#define PT_SERVE_BODY_H

#include <stddef.h>

/* Deepest nesting of arrays/objects in s[0..len) outside strings; -1 when
 * brackets do not balance or a string is unterminated. */
int serve_body_depth(const char *s, size_t len);

#endif
