/* models.c: `polytask models --registry FILE.db SUBCOMMAND ...`: the model
 * registry (docs/operations.md) from the command line: list, import,
 * activate, rollback, A/B splits, API keys and the audit log. The actor
 * recorded in the audit log is $USER, else "cli". */
#define _GNU_SOURCE
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"

static const char HELP[] =
    "usage: polytask models --registry FILE.db COMMAND [ARGS] [options]\n"
    "\n"
    "The model registry: one SQLite database (created when missing) that records model\n"
    "files and their versions, which version is served, A/B splits, API keys for\n"
    "`polytask serve` and an audit log of every change (docs/operations.md).\n"
    "\n"
    "commands:\n"
    "  list [NAME]                   models, their versions, the active one and the split\n"
    "  import NAME MODEL             check MODEL (it must load; multi-task or recommender)\n"
    "                                and record it as NAME's next version; the first\n"
    "                                version of a model becomes active\n"
    "  activate NAME VERSION         serve VERSION (its file must be unchanged since import)\n"
    "  rollback NAME                 serve the version active before the current one\n"
    "  split NAME V1=W1,V2=W2,...    serve versions by weight, each user always the same\n"
    "                                one; `split NAME off` ends the split\n"
    "  resolve NAME [--user ID]      the version and file served (to ID)\n"
    "  keys create LABEL --scope S   a new API key, scope read or admin, printed once\n"
    "  keys revoke LABEL             the key stops working at once\n"
    "  keys list                     labels, scopes and dates (never the keys)\n"
    "  audit [--limit N]             the audit log, newest first (default 50 rows)\n"
    "\n"
    "options:\n"
    "  --registry FILE.db    the registry database (required)\n"
    "  --parent N            import: the version MODEL was derived from\n"
    "  --scope read|admin    keys create: what the key may do\n"
    "  --user ID             resolve: the user to pick a split variant for\n"
    "  --limit N             audit: rows to show (0: all)\n"
    "  --json                list, resolve, keys list, audit: JSON output\n"
    "  -h, --help            this help\n";

#define CMD "models"

static const char *actor(void)
{
    const char *u = getenv("USER");
    return u && *u ? u : "cli";
}

static void print_time(long long t)
{
    char buf[32];
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) && strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm)) printf("%s", buf);
    else printf("%lld", t);
}

static int parse_version(const char *s, int *v)
{
    long long x;
    if (cli_parse_int(s, &x) || x < 1 || x > 1000000000) return -1;
    *v = (int)x;
    return 0;
}

/* "V1=W1,V2=W2": versions and weights (caller frees both). */
static int parse_split(const char *spec, int **versions, double **weights, int *n)
{
    int cap = 1;
    for (const char *p = spec; *p; p++) cap += *p == ',';
    *versions = calloc((size_t)cap, sizeof **versions);
    *weights = calloc((size_t)cap, sizeof **weights);
    *n = 0;
    if (!*versions || !*weights) return -1;
    char *copy = strdup(spec), *save = NULL;
    if (!copy) return -1;
    int bad = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && !bad; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '='), *end;
        if (!eq) { bad = 1; break; }
        *eq = 0;
        double w = strtod(eq + 1, &end);
        if (parse_version(tok, &(*versions)[*n]) || end == eq + 1 || *end || !isfinite(w) || w < 0) bad = 1;
        else (*weights)[(*n)++] = w;
    }
    free(copy);
    return bad || *n == 0 ? -1 : 0;
}

static void print_list(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    size_t i, k;
    json_t *m, *v;
    json_array_foreach(json_object_get(j, "models"), i, m) {
        long long active = json_integer_value(json_object_get(m, "active"));
        printf("%s%s  (active: version %lld", i ? "\n" : "", json_string_value(json_object_get(m, "name")), active);
        json_t *split = json_object_get(m, "split");
        if (json_array_size(split)) {
            printf("; split");
            json_array_foreach(split, k, v)
                printf("%s%lld=%g", k ? "," : " ", (long long)json_integer_value(json_object_get(v, "version")),
                       json_number_value(json_object_get(v, "weight")));
        }
        printf(")\n");
        printf("  %-3s %7s %6s  %-19s  %-14s  %-12s  %s\n", "", "version", "parent", "created (UTC)", "by", "sha256",
               "path");
        json_array_foreach(json_object_get(m, "versions"), k, v) {
            long long ver = json_integer_value(json_object_get(v, "version"));
            json_t *parent = json_object_get(v, "parent");
            printf("  %-3s %7lld ", ver == active ? "*" : "", ver);
            if (json_is_integer(parent)) printf("%6lld  ", (long long)json_integer_value(parent));
            else printf("%6s  ", "-");
            print_time(json_integer_value(json_object_get(v, "created_unix")));
            printf("  %-14s  %.12s  %s\n", json_string_value(json_object_get(v, "created_by")),
                   json_string_value(json_object_get(v, "sha256")), json_string_value(json_object_get(v, "path")));
        }
    }
    if (!json_array_size(json_object_get(j, "models"))) printf("no models\n");
    json_decref(j);
}

static void print_keys(const char *text)
{
    json_t *j = json_loads(text, 0, NULL), *k;
    size_t i;
    printf("%-24s %-6s %-19s  %s\n", "label", "scope", "created (UTC)", "revoked (UTC)");
    json_array_foreach(j, i, k) {
        printf("%-24s %-6s ", json_string_value(json_object_get(k, "label")), json_string_value(json_object_get(k, "scope")));
        print_time(json_integer_value(json_object_get(k, "created_unix")));
        printf("  ");
        if (json_is_true(json_object_get(k, "revoked"))) print_time(json_integer_value(json_object_get(k, "revoked_unix")));
        else printf("-");
        printf("\n");
    }
    json_decref(j);
}

static void print_audit(const char *text)
{
    json_t *j = json_loads(text, 0, NULL), *a;
    size_t i;
    printf("%6s  %-19s  %-12s %-11s %s\n", "id", "time (UTC)", "actor", "action", "detail");
    json_array_foreach(j, i, a) {
        char *d = json_dumps(json_object_get(a, "detail"), JSON_COMPACT);
        printf("%6lld  ", (long long)json_integer_value(json_object_get(a, "id")));
        print_time(json_integer_value(json_object_get(a, "unix")));
        printf("  %-12s %-11s %s\n", json_string_value(json_object_get(a, "actor")),
               json_string_value(json_object_get(a, "action")), d ? d : "{}");
        free(d);
    }
    json_decref(j);
}

/* Runs one subcommand on an open registry; pos[0] is the subcommand. */
static int run(pt_registry *r, char **pos, int npos, const char *parent_s, const char *scope_s, const char *user,
               long long limit, int json)
{
    const char *sub = pos[0];
    char *out = NULL;
    int rc, v = 0;
    if (!strcmp(sub, "list")) {
        if ((rc = pt_registry_list(r, npos > 1 ? pos[1] : NULL, &out))) return cli_fail(rc);
        if (json) printf("%s\n", out);
        else print_list(out);
    } else if (!strcmp(sub, "import")) {
        int parent = 0;
        if (parent_s && parse_version(parent_s, &parent))
            return cli_usage_error(CMD, "--parent needs a version number >= 1");
        if ((rc = pt_registry_import(r, pos[1], pos[2], parent, actor(), &v))) return cli_fail(rc);
        if ((rc = pt_registry_list(r, pos[1], &out))) return cli_fail(rc);
        json_t *j = json_loads(out, 0, NULL);
        json_t *m = json_array_get(json_object_get(j, "models"), 0);
        json_t *ver = json_array_get(json_object_get(m, "versions"), json_array_size(json_object_get(m, "versions")) - 1);
        printf("%s: imported version %d (sha256 %s)%s\n", pos[1], v, json_string_value(json_object_get(ver, "sha256")),
               json_integer_value(json_object_get(m, "active")) == v ? ", active" : "");
        json_decref(j);
    } else if (!strcmp(sub, "activate")) {
        if (parse_version(pos[2], &v)) return cli_usage_error(CMD, "VERSION must be a number >= 1, not '%s'", pos[2]);
        if ((rc = pt_registry_activate(r, pos[1], v, actor()))) return cli_fail(rc);
        printf("%s: version %d is active\n", pos[1], v);
    } else if (!strcmp(sub, "rollback")) {
        if ((rc = pt_registry_rollback(r, pos[1], actor(), &v))) return cli_fail(rc);
        printf("%s: rolled back to version %d\n", pos[1], v);
    } else if (!strcmp(sub, "split")) {
        int *vs = NULL, n = 0;
        double *ws = NULL;
        if (strcmp(pos[2], "off") && parse_split(pos[2], &vs, &ws, &n)) {
            free(vs), free(ws);
            return cli_usage_error(CMD, "split: want V1=W1,V2=W2,... (versions >= 1, weights >= 0) or 'off', not '%s'",
                                   pos[2]);
        }
        rc = pt_registry_split(r, pos[1], vs, ws, n, actor());
        free(vs), free(ws);
        if (rc) return cli_fail(rc);
        if (n) printf("%s: split %s\n", pos[1], pos[2]);
        else printf("%s: no split, every user gets the active version\n", pos[1]);
    } else if (!strcmp(sub, "resolve")) {
        if ((rc = pt_registry_resolve(r, pos[1], user, &out, &v))) return cli_fail(rc);
        if (json) {
            json_t *j = json_pack("{s:s, s:i, s:s}", "model", pos[1], "version", v, "path", out);
            char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
            printf("%s\n", s ? s : "{}");
            free(s);
            json_decref(j);
        } else {
            printf("%d %s\n", v, out);
        }
    } else if (!strcmp(sub, "keys") && !strcmp(pos[1], "create")) {
        int scope = !strcmp(scope_s, "read") ? PT_SCOPE_READ : !strcmp(scope_s, "admin") ? PT_SCOPE_ADMIN : 0;
        if (!scope) return cli_usage_error(CMD, "--scope must be read or admin, not '%s'", scope_s);
        if ((rc = pt_registry_key_create(r, pos[2], scope, actor(), &out))) return cli_fail(rc);
        /* the key alone on stdout, so scripts can capture it */
        printf("%s\n", out);
        fprintf(stderr, "polytask: key '%s' (%s) created; it is shown only now: store it safely\n", pos[2], scope_s);
    } else if (!strcmp(sub, "keys") && !strcmp(pos[1], "revoke")) {
        if ((rc = pt_registry_key_revoke(r, pos[2], actor()))) return cli_fail(rc);
        printf("key '%s' revoked\n", pos[2]);
    } else if (!strcmp(sub, "keys")) {
        if ((rc = pt_registry_key_list(r, &out))) return cli_fail(rc);
        if (json) printf("%s\n", out);
        else print_keys(out);
    } else {
        if ((rc = pt_registry_audit(r, (int)limit, &out))) return cli_fail(rc);
        if (json) printf("%s\n", out);
        else print_audit(out);
    }
    pt_string_free(out);
    return EXIT_OK;
}

/* Positional arguments each subcommand takes (after its name), and its options. */
struct sub {
    const char *name, *name2;
    int min, max;
    const char *opts; /* letters of the options it accepts */
};

static const struct sub SUBS[] = {
    {"list", NULL, 0, 1, "j"},   {"import", NULL, 2, 2, "p"},   {"activate", NULL, 2, 2, ""},
    {"rollback", NULL, 1, 1, ""}, {"split", NULL, 2, 2, ""},     {"resolve", NULL, 1, 1, "uj"},
    {"keys", "create", 1, 1, "s"}, {"keys", "revoke", 1, 1, ""}, {"keys", "list", 0, 0, "j"},
    {"audit", NULL, 0, 0, "lj"},
};

int cmd_models(int argc, char **argv)
{
    static const struct option opts[] = {
        {"registry", required_argument, 0, 'r'}, {"parent", required_argument, 0, 'p'},
        {"scope", required_argument, 0, 's'},    {"user", required_argument, 0, 'u'},
        {"limit", required_argument, 0, 'l'},    {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    const char *registry = NULL, *parent = NULL, *scope = NULL, *user = NULL;
    long long limit = 50;
    int json = 0, c;
    char given[8] = {0}, *g = given;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'r': registry = optarg; break;
        case 'p': parent = optarg; break;
        case 's': scope = optarg; break;
        case 'u': user = optarg; break;
        case 'l':
            if (cli_parse_int(optarg, &limit) || limit > 1000000000) return cli_usage_error(CMD, "--limit needs a number >= 0");
            break;
        case 'j': json = 1; break;
        case 'h': fputs(HELP, stdout); return EXIT_OK;
        case ':': return cli_usage_error(CMD, "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error(CMD, "unknown option '%s'", argv[optind - 1]);
        }
        if (c != 'r' && !strchr(given, c) && g < given + sizeof given - 1) *g++ = (char)c;
    }
    char **pos = argv + optind;
    int npos = argc - optind;
    if (npos == 0) return cli_usage_error(CMD, "give a command: list, import, activate, rollback, split, resolve, keys, audit");
    const struct sub *s = NULL;
    for (size_t k = 0; k < sizeof SUBS / sizeof SUBS[0] && !s; k++)
        if (!strcmp(pos[0], SUBS[k].name) && (!SUBS[k].name2 || (npos > 1 && !strcmp(pos[1], SUBS[k].name2)))) s = &SUBS[k];
    if (!s && !strcmp(pos[0], "keys"))
        return cli_usage_error(CMD, "keys: give create LABEL --scope read|admin, revoke LABEL or list");
    if (!s) return cli_usage_error(CMD, "unknown command '%s'", pos[0]);
    int skip = s->name2 ? 2 : 1, nargs = npos - skip;
    if (nargs < s->min || nargs > s->max) {
        static const char *const usage[] = {"list [NAME]", "import NAME MODEL [--parent N]", "activate NAME VERSION",
                                            "rollback NAME", "split NAME V1=W1,V2=W2|off", "resolve NAME [--user ID]",
                                            "keys create LABEL --scope read|admin", "keys revoke LABEL", "keys list",
                                            "audit [--limit N]"};
        return cli_usage_error(CMD, "usage: polytask models --registry FILE.db %s", usage[s - SUBS]);
    }
    for (const char *o = given; *o; o++)
        if (!strchr(s->opts, *o)) {
            const char *names = "p--parent s--scope u--user l--limit j--json";
            const char *at = strchr(names, *o);
            int len = (int)strcspn(at + 1, " ");
            return cli_usage_error(CMD, "%.*s does not apply to %s%s%s", len, at + 1, s->name, s->name2 ? " " : "",
                                   s->name2 ? s->name2 : "");
        }
    if (strchr(s->opts, 's') && !scope) return cli_usage_error(CMD, "keys create needs --scope read|admin");
    if (!registry) return cli_usage_error(CMD, "--registry FILE.db is required");
    pt_registry *r = NULL;
    int rc = pt_registry_open(registry, &r);
    if (rc) return cli_fail(rc);
    rc = run(r, pos, npos, parent, scope, user, limit, json);
    pt_registry_close(r);
    return rc;
}
