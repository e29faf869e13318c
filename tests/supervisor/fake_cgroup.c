/*
 * fake_cgroup.c - see fake_cgroup.h.
 */
#include "fake_cgroup.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

char fake_cgroup_root[256];

void fake_cgroup_setup(void)
{
    snprintf(fake_cgroup_root, sizeof(fake_cgroup_root), "/tmp/rm-cgroup-XXXXXX");
    cr_assert_not_null(mkdtemp(fake_cgroup_root), "mkdtemp: %s", strerror(errno));
}

void fake_cgroup_put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", fake_cgroup_root, rel);
    for (char *p = path + strlen(fake_cgroup_root) + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

const char *fake_cgroup_self(const char *text)
{
    static char self[512];
    fake_cgroup_put("self-cgroup", text);
    snprintf(self, sizeof(self), "%s/self-cgroup", fake_cgroup_root);
    return self;
}
