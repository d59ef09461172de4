/* error.c: error codes (one X-macro table), the per-thread last message, the
 * log callback and the version string. */
#include <stdio.h>
#include <string.h>

#include "util/util.h"

static _Thread_local char last_msg[1024];
static pt_log_fn log_fn;
static void *log_user;

const char *pt_version(void) { return PT_VERSION_STRING; }

const char *pt_strerror(int code)
{
    switch (code) {
#define PT_ERRNO_CASE(name, c, msg) case c: return msg;
        PT_ERRNO_MAP(PT_ERRNO_CASE)
#undef PT_ERRNO_CASE
    }
    return "unknown error";
}

const char *pt_errmsg(void) { return last_msg; }

void pt_error_clear(void) { last_msg[0] = 0; }

int pt_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof last_msg, fmt, ap);
    va_end(ap);
    return code;
}

int pt_error_at(int code, const char *file, long line, const char *fmt, ...)
{
    int n;
    if (line > 0)
        n = snprintf(last_msg, sizeof last_msg, "%s:%ld: ", file, line);
    else
        n = snprintf(last_msg, sizeof last_msg, "%s: ", file);
    if (n < 0 || (size_t)n >= sizeof last_msg) return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg + n, sizeof last_msg - (size_t)n, fmt, ap);
    va_end(ap);
    return code;
}

void pt_set_log_callback(pt_log_fn fn, void *user)
{
    log_fn = fn;
    log_user = user;
}

void pt_log(int level, const char *fmt, ...)
{
    if (!log_fn) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_fn(level, buf, log_user);
}
