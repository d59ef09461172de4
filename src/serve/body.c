/* body.c: see body.h. */
#include "serve/body.h"

int serve_body_depth(const char *s, size_t len)
{
    int depth = 0, max = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++; /* the escaped character never ends the string */
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') in_str = 1;
        else if (c == '[' || c == '{') {
            if (++depth > max) max = depth;
        } else if (c == ']' || c == '}') {
            if (--depth < 0) return -1;
        }
    }
    return in_str || depth ? -1 : max;
}
