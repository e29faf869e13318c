/*
 * replay_main.c - run fuzz_http_parse.c's checks over files, without libFuzzer.
 *
 *   fuzz_http_parse_replay PATH...
 *
 * Each PATH is a file or a directory of files (not recursive); every file is
 * one input for LLVMFuzzerTestOneInput. Built with AddressSanitizer and
 * UndefinedBehaviorSanitizer by any compiler, so the seed corpus (and any
 * crash file libFuzzer saved) is checked even where clang's libFuzzer is
 * missing. Exits 0 after the last input, 1 if no input was found or a path
 * cannot be read; a broken invariant aborts (the harness prints the input).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *grown = realloc(buf, cap *= 2);
            if (!grown) {
                free(buf);
                buf = NULL;
            }
            buf = grown;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    /* An exact-size copy, so that a read past the input is caught. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    long inputs = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i]) != 0)
                return 1;
            inputs++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            perror(argv[i]);
            return 1;
        }
        char **names = NULL;
        size_t count = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            if (count == cap) {
                char **grown = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(*names));
                if (!grown)
                    return 1;
                names = grown;
            }
            size_t plen = strlen(argv[i]) + strlen(e->d_name) + 2;
            names[count] = malloc(plen);
            if (!names[count])
                return 1;
            snprintf(names[count++], plen, "%s/%s", argv[i], e->d_name);
        }
        closedir(d);
        qsort(names, count, sizeof(*names), by_name);
        for (size_t k = 0; k < count; k++) {
            if (stat(names[k], &st) == 0 && S_ISREG(st.st_mode)) {
                if (run_file(names[k]) != 0)
                    return 1;
                inputs++;
            }
            free(names[k]);
        }
        free(names);
    }
    if (inputs == 0) {
        fprintf(stderr, "fuzz_http_parse_replay: no inputs (give files or directories)\n");
        return 1;
    }
    printf("fuzz_http_parse_replay: %ld inputs, every invariant held\n", inputs);
    return 0;
}
