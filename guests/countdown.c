/*
 * countdown: a command-style job (no listener) for replicated runs. It
 * prints "line I of N" for I = 1..N on stdout, sleeping MS milliseconds
 * between lines, then exits with CODE.
 *
 *   countdown N MS CODE
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: countdown N MS CODE\n");
        return 2;
    }
    long n = strtol(argv[1], NULL, 10), ms = strtol(argv[2], NULL, 10);
    int code = (int)strtol(argv[3], NULL, 10);
    for (long i = 1; i <= n; i++) {
        printf("line %ld of %ld\n", i, n);
        fflush(stdout);
        struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
        nanosleep(&t, NULL);
    }
    return code;
}
