/*
 * test_spill_dir.c - supervisor/spill_dir.c through ringmaster/spill_dir.h.
 *
 * flock(2) locks belong to open file descriptions, so a directory held open
 * by rm_spill_dir_open in this very process is "live" to a sweep here too.
 */
#include "ringmaster/spill_dir.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char parent[256];
static char err[1600];
static int lines;

static void count_line(const char *line)
{
    (void)line;
    lines++;
}

static void make_parent(void)
{
    snprintf(parent, sizeof(parent), "/tmp/rm-spill-test-XXXXXX");
    cr_assert(mkdtemp(parent) != NULL);
    lines = 0;
}

static void touch(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    cr_assert(fd >= 0, "%s: %s", path, strerror(errno));
    close(fd);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

Test(spill_dir, private_directory_and_files)
{
    make_parent();
    rm_spill_dir_t d;
    struct stat st;
    char path[RM_SPILL_DIR_PATH_MAX + 32], prefix[512];
    cr_assert_eq(rm_spill_dir_open(&d, parent, geteuid(), getegid(), err, sizeof(err)), 0, "%s",
                 err);
    snprintf(prefix, sizeof(prefix), "%s/ringmaster-%u-%d.", parent, (unsigned)geteuid(),
             (int)getpid());
    cr_assert(strncmp(d.path, prefix, strlen(prefix)) == 0, "%s", d.path);
    cr_assert_eq(lstat(d.path, &st), 0);
    cr_assert(S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700 && st.st_uid == geteuid());

    int fd = rm_spill_dir_create(&d, 7);
    cr_assert(fd >= 0, "%s", strerror(-fd));
    cr_assert(rm_spill_dir_file_path(&d, 7, path, sizeof(path)) > 0);
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert((st.st_mode & 07777) == 0600);
    cr_assert(exists(path), "%s", path);
    close(fd);
    cr_assert_eq(rm_spill_dir_create(&d, 7), -EEXIST, "never an existing name");

    /* A symlink where a file will go is not followed. */
    char link[RM_SPILL_DIR_PATH_MAX + 32];
    rm_spill_dir_file_path(&d, 8, link, sizeof(link));
    cr_assert_eq(symlink("/tmp/rm-spill-test-target-never-made", link), 0);
    cr_assert_eq(rm_spill_dir_create(&d, 8), -EEXIST);
    cr_assert(!exists("/tmp/rm-spill-test-target-never-made"));

    cr_assert_eq(rm_spill_dir_unlink(&d, 7), 0);
    cr_assert_eq(rm_spill_dir_unlink(&d, 7), -ENOENT);
    char mine[RM_SPILL_DIR_PATH_MAX];
    snprintf(mine, sizeof(mine), "%s", d.path);
    rm_spill_dir_close(&d);
    cr_assert_eq(d.fd, -1);
    cr_assert(!exists(mine), "closing removes the directory");
    rmdir(parent);
}

Test(spill_dir, sweep_removes_dead_leftovers_only)
{
    make_parent();
    uid_t me = geteuid();
    char dead[512], live_copy[RM_SPILL_DIR_PATH_MAX], open_mode[512], other[512], link[512],
        victim[512], path[RM_SPILL_DIR_PATH_MAX + 32];

    /* A dead instance's directory: nobody holds its lock. */
    snprintf(dead, sizeof(dead), "%s/ringmaster-%u-1.AAAAAA", parent, (unsigned)me);
    cr_assert_eq(mkdir(dead, 0700), 0);
    touch(dead, "1.body");
    touch(dead, "2.body");
    /* A live one: ours, open and locked. */
    rm_spill_dir_t live;
    cr_assert_eq(rm_spill_dir_open(&live, parent, me, getegid(), err, sizeof(err)), 0, "%s", err);
    snprintf(live_copy, sizeof(live_copy), "%s", live.path);
    int fd = rm_spill_dir_create(&live, 1);
    cr_assert(fd >= 0);
    close(fd);
    /* Not 0700: not ours to judge. */
    snprintf(open_mode, sizeof(open_mode), "%s/ringmaster-%u-2.BBBBBB", parent, (unsigned)me);
    cr_assert_eq(mkdir(open_mode, 0700), 0);
    cr_assert_eq(chmod(open_mode, 0755), 0);
    touch(open_mode, "1.body");
    /* Another user's prefix: not even looked at. */
    snprintf(other, sizeof(other), "%s/ringmaster-%u-3.CCCCCC", parent, (unsigned)me + 1);
    cr_assert_eq(mkdir(other, 0700), 0);
    touch(other, "1.body");
    /* A symlink under our pattern, to a directory with bodies in it. */
    snprintf(victim, sizeof(victim), "%s/victim", parent);
    cr_assert_eq(mkdir(victim, 0700), 0);
    touch(victim, "1.body");
    snprintf(link, sizeof(link), "%s/ringmaster-%u-4.DDDDDD", parent, (unsigned)me);
    cr_assert_eq(symlink(victim, link), 0);

    cr_assert_eq(rm_spill_dir_sweep(parent, me, count_line), 1);
    cr_assert(!exists(dead), "the dead instance's directory is gone");
    snprintf(path, sizeof(path), "%s/1.body", live_copy);
    cr_assert(exists(path), "a live instance's body stays");
    snprintf(path, sizeof(path), "%s/1.body", open_mode);
    cr_assert(exists(path));
    snprintf(path, sizeof(path), "%s/1.body", other);
    cr_assert(exists(path));
    snprintf(path, sizeof(path), "%s/1.body", victim);
    cr_assert(exists(path), "the symlink was not followed");
    cr_assert(exists(link));
    cr_assert_eq(lines, 3, "one line for the removal, one for each refused look-alike");

    /* Once its instance is gone, the live one is a leftover too. */
    close(live.fd);
    cr_assert_eq(rm_spill_dir_sweep(parent, me, NULL), 1);
    cr_assert(!exists(live_copy));
    cr_assert_eq(rm_spill_dir_sweep("/nonexistent-rm-dir", me, NULL), -ENOENT);

    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", parent);
    cr_assert_eq(system(cmd), 0);
}
