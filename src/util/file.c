/* file.c: atomic file writes (temp file in the same folder, fsync, rename,
 * fsync of the folder), path helpers and a monotonic clock. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

int atomic_file_open(struct atomic_file *af, const char *path)
{
    memset(af, 0, sizeof *af);
    size_t n = strlen(path);
    af->path = pt_strdup(path);
    af->tmp = pt_malloc(n + 16);
    if (!af->path || !af->tmp) {
        atomic_file_abort(af);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    memcpy(af->tmp, path, n);
    memcpy(af->tmp + n, ".tmp.XXXXXX", 12);
    int fd = mkstemp(af->tmp);
    if (fd < 0) {
        int e = errno;
        pt_free(af->tmp);
        af->tmp = NULL;
        atomic_file_abort(af);
        return pt_error_at(PT_EIO, path, 0, "cannot create: %s", strerror(e));
    }
    /* mkstemp creates 0600; a model or report file should follow the umask */
    mode_t um = umask(0);
    umask(um);
    (void)fchmod(fd, 0666 & ~um);
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        close(fd);
        atomic_file_abort(af);
        return pt_error_at(PT_EIO, path, 0, "cannot open for writing");
    }
    return PT_OK;
}

static void fsync_dir(const char *path)
{
    char *dir = pt_path_dir(path);
    if (!dir) return;
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    pt_free(dir);
}

int atomic_file_commit(struct atomic_file *af)
{
    int rc = PT_OK;
    if (!af->f) return pt_error(PT_EIO, "atomic write: file not open");
    if (fflush(af->f) != 0 || ferror(af->f))
        rc = pt_error_at(PT_EIO, af->path, 0, "write failed: %s", strerror(errno));
    else if (fsync(fileno(af->f)) != 0)
        rc = pt_error_at(PT_EIO, af->path, 0, "fsync failed: %s", strerror(errno));
    if (fclose(af->f) != 0 && rc == PT_OK)
        rc = pt_error_at(PT_EIO, af->path, 0, "close failed: %s", strerror(errno));
    af->f = NULL;
    if (rc == PT_OK && rename(af->tmp, af->path) != 0)
        rc = pt_error_at(PT_EIO, af->path, 0, "rename failed: %s", strerror(errno));
    if (rc == PT_OK) {
        fsync_dir(af->path);
        pt_free(af->tmp);
        af->tmp = NULL;
    }
    atomic_file_abort(af);
    return rc;
}

void atomic_file_abort(struct atomic_file *af)
{
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    pt_free(af->tmp);
    pt_free(af->path);
    memset(af, 0, sizeof *af);
}

double pt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

char *pt_path_join(const char *dir, const char *rel)
{
    if (rel[0] == '/' || !dir || !dir[0] || strcmp(dir, ".") == 0) return pt_strdup(rel);
    size_t a = strlen(dir), b = strlen(rel);
    char *p = pt_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, rel, b + 1);
    return p;
}

char *pt_path_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return pt_strdup(".");
    if (slash == path) return pt_strdup("/");
    return pt_strndup(path, (size_t)(slash - path));
}
