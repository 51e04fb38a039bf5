/*
 * compress: a CPU-bound guest. Compresses its input with LZ77 (hash-chain
 * match finder, 32 KiB window) followed by a canonical Huffman code over the
 * literal/length symbols, then decompresses the LZ77 stream to check it, and
 * prints the sizes and a checksum.
 *
 * usage: compress [size]
 *   Reads stdin; if stdin is empty, generates `size` bytes (default 1 MiB)
 *   of deterministic, compressible text itself.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WINDOW 32768
#define MIN_MATCH 4
#define MAX_MATCH 258
#define HASH_BITS 15
#define MAX_CHAIN 64

static unsigned char *read_all(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        if (n == cap) b = realloc(b, cap *= 2);
        ssize_t r = read(0, b + n, cap - n);
        if (r <= 0) break;
        n += (size_t)r;
    }
    *len = n;
    return b;
}

static unsigned char *generate(size_t size) {
    static const char *words[] = {"primary", "backup", "replay", "log", "epoch", "deterministic", "output",
                                  "rule", "fault", "tolerance", "the", "a", "of", "and", "vmware", "wasm"};
    unsigned char *b = malloc(size + 32);
    uint64_t x = 88172645463325252ULL;
    size_t n = 0;
    while (n < size) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const char *w = words[x % 16];
        size_t l = strlen(w);
        memcpy(b + n, w, l);
        n += l;
        b[n++] = (x >> 20) % 11 == 0 ? '\n' : ' ';
    }
    return b;
}

/* LZ77 tokens: literal (byte) or match (length 4..258, distance 1..32768). */
typedef struct {
    uint16_t len; /* 0 = literal */
    uint16_t dist;
    unsigned char lit;
} token_t;

static size_t lz77(const unsigned char *in, size_t n, token_t *out) {
    int32_t *head = malloc(sizeof(int32_t) << HASH_BITS);
    int32_t *prev = malloc(sizeof(int32_t) * WINDOW);
    for (size_t i = 0; i < (1u << HASH_BITS); i++) head[i] = -1;
    size_t t = 0, i = 0;
    while (i < n) {
        size_t best = 0, bestd = 0;
        if (i + MIN_MATCH <= n) {
            uint32_t h = ((uint32_t)in[i] << 16 ^ (uint32_t)in[i + 1] << 8 ^ in[i + 2] ^ (uint32_t)in[i + 3] << 4) * 2654435761u >>
                         (32 - HASH_BITS);
            int32_t cand = head[h];
            int chain = 0;
            while (cand >= 0 && i - (size_t)cand <= WINDOW && chain++ < MAX_CHAIN) {
                size_t l = 0, max = n - i < MAX_MATCH ? n - i : MAX_MATCH;
                while (l < max && in[cand + l] == in[i + l]) l++;
                if (l > best) best = l, bestd = i - (size_t)cand;
                cand = prev[cand % WINDOW];
            }
            prev[i % WINDOW] = head[h];
            head[h] = (int32_t)i;
        }
        if (best >= MIN_MATCH) {
            out[t++] = (token_t){(uint16_t)best, (uint16_t)bestd, 0};
            i += best;
        } else {
            out[t++] = (token_t){0, 0, in[i]};
            i++;
        }
    }
    free(head);
    free(prev);
    return t;
}

/* Huffman code lengths (max 15) for `nsym` symbols with frequencies `f`. */
static void huffman_lengths(const uint64_t *f, int nsym, uint8_t *len) {
    int *parent = calloc(2 * nsym, sizeof(int));
    uint64_t *w = calloc(2 * nsym, sizeof(uint64_t));
    int *alive = calloc(2 * nsym, sizeof(int));
    int nodes = nsym;
    for (int i = 0; i < nsym; i++) w[i] = f[i], alive[i] = f[i] > 0;
    for (;;) {
        int a = -1, b = -1;
        for (int i = 0; i < nodes; i++) {
            if (!alive[i]) continue;
            if (a < 0 || w[i] < w[a]) b = a, a = i;
            else if (b < 0 || w[i] < w[b]) b = i;
        }
        if (b < 0) break;
        alive[a] = alive[b] = 0;
        w[nodes] = w[a] + w[b];
        parent[a] = parent[b] = nodes;
        alive[nodes++] = 1;
    }
    for (int i = 0; i < nsym; i++) {
        int d = 0;
        if (f[i]) {
            for (int p = i; p < nodes - 1 && parent[p]; p = parent[p]) d++;
            if (d == 0) d = 1;
        }
        len[i] = (uint8_t)(d > 15 ? 15 : d);
    }
    free(parent);
    free(w);
    free(alive);
}

int main(int argc, char **argv) {
    size_t n;
    unsigned char *in = read_all(&n);
    if (n == 0) {
        free(in);
        n = argc > 1 ? (size_t)atol(argv[1]) : (1u << 20);
        in = generate(n);
    }
    token_t *tok = malloc(sizeof(token_t) * (n + 1));
    size_t ntok = lz77(in, n, tok);

    /* Symbols: 0..255 literals, 256+ match-length buckets (len-MIN_MATCH). */
    enum { NSYM = 256 + MAX_MATCH - MIN_MATCH + 1 };
    static uint64_t freq[NSYM];
    for (size_t i = 0; i < ntok; i++) freq[tok[i].len ? 256 + tok[i].len - MIN_MATCH : tok[i].lit]++;
    static uint8_t len[NSYM];
    huffman_lengths(freq, NSYM, len);
    uint64_t bits = 0;
    for (int s = 0; s < NSYM; s++) bits += freq[s] * len[s];
    for (size_t i = 0; i < ntok; i++)
        if (tok[i].len) bits += 15; /* distance, fixed width */

    /* Decompress the token stream and check it. */
    unsigned char *out = malloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < ntok; i++) {
        if (!tok[i].len) out[o++] = tok[i].lit;
        else
            for (size_t k = 0; k < tok[i].len; k++, o++) out[o] = out[o - tok[i].dist];
    }
    if (o != n || memcmp(in, out, n) != 0) {
        fprintf(stderr, "compress: round trip failed\n");
        return 1;
    }
    uint32_t adler_a = 1, adler_b = 0;
    for (size_t i = 0; i < n; i++) adler_a = (adler_a + in[i]) % 65521, adler_b = (adler_b + adler_a) % 65521;
    printf("compress: %zu bytes in, %zu tokens, %llu bytes out (%.1f%%), adler32 %08x\n", n, ntok,
           (unsigned long long)((bits + 7) / 8), n ? 100.0 * (double)((bits + 7) / 8) / (double)n : 0.0,
           (unsigned)(adler_b << 16 | adler_a));
    return 0;
}
