/*
 * clockrand: reads the realtime and monotonic clocks and the random source
 * many times and prints a digest of everything it saw. Its output differs
 * from run to run; a replay must reproduce it exactly.
 *
 * usage: clockrand [iterations]   (default 10000)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#ifdef __wasi__
#include <sys/random.h>
#else
#include <sys/random.h>
#endif

static uint64_t digest = 1469598103934665603ULL;

static void mix(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) digest = (digest ^ b[i]) * 1099511628211ULL;
}

int main(int argc, char **argv) {
    long iterations = argc > 1 ? atol(argv[1]) : 10000;
    uint64_t nonmonotonic = 0, prev_mono = 0;
    /* Keep what we saw in memory too, so the state hash depends on it. */
    static uint64_t seen[256];
    for (long i = 0; i < iterations; i++) {
        struct timespec rt, mono;
        clock_gettime(CLOCK_REALTIME, &rt);
        clock_gettime(CLOCK_MONOTONIC, &mono);
        uint64_t m = (uint64_t)mono.tv_sec * 1000000000u + (uint64_t)mono.tv_nsec;
        if (m < prev_mono) nonmonotonic++;
        prev_mono = m;
        unsigned char rnd[16];
        if (getentropy(rnd, sizeof rnd) != 0) {
            perror("getentropy");
            return 1;
        }
        mix(&rt, sizeof rt);
        mix(&mono, sizeof mono);
        mix(rnd, sizeof rnd);
        seen[i & 255] ^= digest;
    }
    struct timespec res;
    clock_getres(CLOCK_MONOTONIC, &res);
    mix(&res, sizeof res);
    printf("clockrand: %ld iterations, digest %016llx, non-monotonic %llu, resolution %ldns, seen[7] %016llx\n",
           iterations, (unsigned long long)digest, (unsigned long long)nonmonotonic, (long)res.tv_nsec,
           (unsigned long long)seen[7]);
    return 0;
}
