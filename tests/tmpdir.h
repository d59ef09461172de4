/* tmpdir.h: a test's temp folder, made with mkdtemp and removed with
 * everything in it. Header-only, for tests. */
#ifndef PT_TEST_TMPDIR_H
#define PT_TEST_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Makes /tmp/pt_<tag>_XXXXXX into buf; 0 on success, -1 otherwise (a
 * cmocka setup's return value). */
static int tmpdir_make(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/pt_%s_XXXXXX", tag);
    return mkdtemp(buf) ? 0 : -1;
}

/* Removes dir and what it holds, folders included. */
static void tmpdir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) continue;
        tmpdir_remove(p); /* a folder: emptied and removed; a file: nothing */
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

#endif
