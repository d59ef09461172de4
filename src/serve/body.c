/* body.c: see body.h. */
#include <string.h>

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

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

/* End of the string starting at s[i] == '"', or 0 when unterminated. */
static size_t string_end(const char *s, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\') i++;
        else if (s[i] == '"') return i + 1;
    }
    return 0;
}

/* End of the value starting at s[i], or 0. */
static size_t value_end(const char *s, size_t len, size_t i)
{
    if (i >= len) return 0;
    if (s[i] == '"') return string_end(s, len, i);
    if (s[i] == '[' || s[i] == '{') {
        int depth = 0;
        for (; i < len; i++) {
            if (s[i] == '"') {
                size_t e = string_end(s, len, i);
                if (!e) return 0;
                i = e - 1;
            } else if (s[i] == '[' || s[i] == '{') {
                depth++;
            } else if (s[i] == ']' || s[i] == '}') {
                if (--depth == 0) return i + 1;
            }
        }
        return 0;
    }
    /* a number or literal: up to the next delimiter */
    size_t b = i;
    while (i < len && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' &&
           s[i] != '\r' && s[i] != '"' && s[i] != '[' && s[i] != '{' && s[i] != ':')
        i++;
    return i > b ? i : 0;
}

int serve_body_members(const char *s, size_t len, const char *const *names, int n, size_t *off, size_t *vlen,
                       size_t *where)
{
    for (int k = 0; k < n; k++) off[k] = 0, vlen[k] = 0;
    size_t i = skip_ws(s, len, 0);
    if (i >= len || s[i] != '{') return *where = i, -1;
    i = skip_ws(s, len, i + 1);
    if (i < len && s[i] == '}') {
        i = skip_ws(s, len, i + 1);
        return i == len ? 0 : (*where = i, -1);
    }
    for (;;) {
        if (i >= len || s[i] != '"') return *where = i, -1;
        size_t ke = string_end(s, len, i);
        if (!ke) return *where = i, -1;
        const char *key = s + i + 1;
        size_t klen = ke - i - 2;
        i = skip_ws(s, len, ke);
        if (i >= len || s[i] != ':') return *where = i, -1;
        i = skip_ws(s, len, i + 1);
        size_t ve = value_end(s, len, i);
        if (!ve) return *where = i, -1;
        for (int k = 0; k < n; k++)
            if (strlen(names[k]) == klen && !memcmp(names[k], key, klen)) {
                if (vlen[k]) return *where = (size_t)(key - s), -1;
                off[k] = i, vlen[k] = ve - i;
            }
        i = skip_ws(s, len, ve);
        if (i < len && s[i] == ',') {
            i = skip_ws(s, len, i + 1);
            continue;
        }
        if (i < len && s[i] == '}') {
            i = skip_ws(s, len, i + 1);
            return i == len ? 0 : (*where = i, -1);
        }
        return *where = i, -1;
    }
}
