/* tmpdir.h: removes a test's mkdtemp folder and the files in it (tests
 * write flat folders only). Header-only, for tests. */
#ifndef PT_TEST_TMPDIR_H
#define PT_TEST_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <unistd.h>

static void tmpdir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

#endif
