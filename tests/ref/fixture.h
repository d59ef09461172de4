/* fixture.h: header-only reader for the reference fixtures the tests/ref/
 * gen_*.py scripts write, plus a tolerance comparison. Static functions only,
 * so each ref test includes it directly.
 *
 * Format (text, versioned):
 *     polytask-ref v1 <name>        magic, format version, fixture name
 *     # comment                     lines starting with '#' are skipped
 *     <array> <ndim> <dim0> ...     then prod(dims) values (1 when ndim 0),
 *     <values ...>                  whitespace separated; "nan" allowed
 * Values are float32 printed with %.9g, so strtof round-trips them exactly;
 * integer arrays (ids, offsets) are stored the same way.
 *
 * Does not: validate more than the magic/version/name line and the counts;
 * uses plain malloc (not pt_malloc) so it never disturbs fault-injection
 * counters in the code under test. */
#ifndef PT_TEST_FIXTURE_H
#define PT_TEST_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE_MAGIC "polytask-ref"
#define FIXTURE_VERSION "v1"
#define FIXTURE_MAX_DIMS 8

struct fx_array {
    char name[64];
    int ndim;
    int dims[FIXTURE_MAX_DIMS];
    size_t n; /* product of dims (1 for a scalar) */
    float *v;
};

struct fixture {
    char name[64];
    int narr;
    struct fx_array *arr;
};

static void fixture_free(struct fixture *fx)
{
    if (!fx) return;
    for (int i = 0; i < fx->narr; i++) free(fx->arr[i].v);
    free(fx->arr);
    memset(fx, 0, sizeof *fx);
}

/* Next whitespace-separated token of *p, skipping '#' comments that start a
 * token; NUL-terminates it in place. NULL at end of text. */
static char *fixture_token_(char **p)
{
    char *s = *p;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
        if (*s != '#') break;
        while (*s && *s != '\n') s++;
    }
    if (!*s) {
        *p = s;
        return NULL;
    }
    char *tok = s;
    while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') s++;
    if (*s) *s++ = '\0';
    *p = s;
    return tok;
}

static int fixture_long_(const char *tok, long *out)
{
    char *end;
    if (!tok) return -1;
    long v = strtol(tok, &end, 10);
    if (*end || end == tok) return -1;
    *out = v;
    return 0;
}

/* Loads path into fx. If want_name is not NULL the fixture's name must equal
 * it. Returns 0, or -1 after printing why to stderr (fx left empty).
 * Free with fixture_free. */
static int fixture_load(struct fixture *fx, const char *path, const char *want_name)
{
    memset(fx, 0, sizeof *fx);
    char *text = NULL;
    int cap = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open (regenerate with `make ref`)\n", path);
        return -1;
    }
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) goto bad_read;
    text = malloc((size_t)size + 1);
    if (!text) goto bad_read;
    if (fread(text, 1, (size_t)size, f) != (size_t)size) goto bad_read;
    text[size] = '\0';
    fclose(f);
    f = NULL;

    char *p = text;
    /* Header line: magic, version, name (checked before anything else). */
    char *nl = strchr(p, '\n');
    if (nl) *nl = '\0';
    char magic[32], version[16], name[64];
    if (sscanf(p, "%31s %15s %63s", magic, version, name) != 3 || strcmp(magic, FIXTURE_MAGIC)) {
        fprintf(stderr, "%s:1: not a polytask-ref fixture\n", path);
        goto fail;
    }
    if (strcmp(version, FIXTURE_VERSION)) {
        fprintf(stderr, "%s:1: fixture version %s, this test reads %s\n", path, version,
                FIXTURE_VERSION);
        goto fail;
    }
    if (want_name && strcmp(name, want_name)) {
        fprintf(stderr, "%s:1: fixture is '%s', expected '%s'\n", path, name, want_name);
        goto fail;
    }
    snprintf(fx->name, sizeof fx->name, "%s", name);
    p = nl ? nl + 1 : p + strlen(p);

    char *tok;
    while ((tok = fixture_token_(&p)) != NULL) {
        if (fx->narr == cap) {
            int ncap = cap ? 2 * cap : 16;
            struct fx_array *na = realloc(fx->arr, (size_t)ncap * sizeof *na);
            if (!na) goto oom;
            fx->arr = na;
            cap = ncap;
        }
        struct fx_array *a = &fx->arr[fx->narr];
        memset(a, 0, sizeof *a);
        if (strlen(tok) >= sizeof a->name) {
            fprintf(stderr, "%s: array name too long: %.40s...\n", path, tok);
            goto fail;
        }
        strcpy(a->name, tok);
        long ndim;
        if (fixture_long_(fixture_token_(&p), &ndim) || ndim < 0 || ndim > FIXTURE_MAX_DIMS) {
            fprintf(stderr, "%s: array %s: bad ndim\n", path, a->name);
            goto fail;
        }
        a->ndim = (int)ndim;
        a->n = 1;
        for (int d = 0; d < a->ndim; d++) {
            long dim;
            if (fixture_long_(fixture_token_(&p), &dim) || dim < 0 || dim > (1L << 24)) {
                fprintf(stderr, "%s: array %s: bad dim %d\n", path, a->name, d);
                goto fail;
            }
            a->dims[d] = (int)dim;
            a->n *= (size_t)dim;
        }
        fx->narr++; /* owns a->v from here, so fixture_free releases it */
        a->v = malloc((a->n ? a->n : 1) * sizeof(float));
        if (!a->v) goto oom;
        for (size_t i = 0; i < a->n; i++) {
            char *vt = fixture_token_(&p), *end;
            if (!vt) {
                fprintf(stderr, "%s: array %s: %zu of %zu values\n", path, a->name, i, a->n);
                goto fail;
            }
            a->v[i] = strtof(vt, &end);
            if (*end || end == vt) {
                fprintf(stderr, "%s: array %s: bad value '%s'\n", path, a->name, vt);
                goto fail;
            }
        }
    }
    free(text);
    return 0;

bad_read:
    fprintf(stderr, "%s: read failed\n", path);
    goto fail;
oom:
    fprintf(stderr, "%s: out of memory\n", path);
fail:
    if (f) fclose(f);
    free(text);
    fixture_free(fx);
    return -1;
}

/* The named array, or NULL (with a message) if absent. */
static const struct fx_array *fixture_find(const struct fixture *fx, const char *name)
{
    for (int i = 0; i < fx->narr; i++)
        if (!strcmp(fx->arr[i].name, name)) return &fx->arr[i];
    fprintf(stderr, "fixture %s: no array '%s'\n", fx->name, name);
    return NULL;
}

/* Values of the named array, which must hold exactly n of them; NULL (with a
 * message) otherwise. The pointer lives until fixture_free. */
static const float *fixture_get(const struct fixture *fx, const char *name, size_t n)
{
    const struct fx_array *a = fixture_find(fx, name);
    if (!a) return NULL;
    if (a->n != n) {
        fprintf(stderr, "fixture %s: array '%s' has %zu values, expected %zu\n", fx->name, name,
                a->n, n);
        return NULL;
    }
    return a->v;
}

/* Scalar (any array's first value); NAN if absent. */
static float fixture_scalar(const struct fixture *fx, const char *name)
{
    const struct fx_array *a = fixture_find(fx, name);
    return a && a->n ? a->v[0] : NAN;
}

/* Integer copy of the named array (exactly n values, each integral) into out;
 * returns 0 or -1 with a message. */
static int fixture_get_i32(const struct fixture *fx, const char *name, int32_t *out, size_t n)
{
    const float *v = fixture_get(fx, name, n);
    if (!v) return -1;
    for (size_t i = 0; i < n; i++) {
        if (v[i] != floorf(v[i])) {
            fprintf(stderr, "fixture %s: array '%s'[%zu] = %g is not an integer\n", fx->name,
                    name, i, (double)v[i]);
            return -1;
        }
        out[i] = (int32_t)v[i];
    }
    return 0;
}

/* Compares got[i] (stride 1) with want[i]: |got - want| <= atol + rtol*|want|,
 * NaN only equal to NaN. Prints the first few mismatches with what, returns
 * their number (0 = match). */
static size_t fixture_compare(const char *what, const float *got, const float *want, size_t n,
                              double atol, double rtol)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        int ok;
        if (isnan(w) || isnan(g))
            ok = isnan(w) && isnan(g);
        else
            ok = fabs(g - w) <= atol + rtol * fabs(w);
        if (!ok) {
            if (bad < 5)
                fprintf(stderr, "  %s[%zu]: got %.9g, want %.9g (diff %.3g)\n", what, i, g, w,
                        g - w);
            bad++;
        }
    }
    if (bad) fprintf(stderr, "%s: %zu of %zu values out of tolerance\n", what, bad, n);
    return bad;
}

#endif
