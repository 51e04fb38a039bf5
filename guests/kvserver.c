/*
 * kvserver: a poll-based, multi-connection RESP2 key-value server.
 *
 * It serves on the listening socket it is handed as file descriptor 3
 * (systemd socket activation style), so the same source runs:
 *   - as a wasm32-wasip1 guest under understudy (fd 3 is preopened), and
 *   - natively (gcc): if LISTEN_ADDR=host:port is set, it binds that address
 *     itself (port 0: any free port), prints "kvserver: listening on
 *     HOST:PORT" to stderr and dup2()s the socket onto fd 3; otherwise fd 3
 *     must already be a listening socket.
 *
 * Commands: PING [msg], ECHO, SET k v [EX s|PX ms ignored], GET, DEL k..,
 * EXISTS k.., INCR, INCRBY, DECR, DBSIZE, FLUSHALL, CONFIG GET (empty),
 * COMMAND (empty), INFO, QUIT, SHUTDOWN (exits 0). Inline commands and
 * pipelining are supported.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef __wasi__
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#endif

#define LISTEN_FD 3
#define MAX_CONNS 1024
#define MAX_ARGS 64
#define READ_CHUNK 16384
#define MAX_REQUEST (64 * 1024 * 1024)

typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

typedef struct {
    int fd;
    buf_t in, out;
    size_t out_off;
    int closing;
} conn_t;

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    size_t klen, vlen;
    char *key, *val;
} entry_t;

static entry_t **table;
static size_t table_cap = 1024, table_len;
static conn_t *conns[MAX_CONNS];
static int nconns;
static int shutting_down;
static uint64_t commands_served;

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "kvserver: out of memory\n");
        abort();
    }
    return q;
}

static void buf_put(buf_t *b, const char *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_str(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

static void reply_bulk(buf_t *b, const char *p, size_t n) {
    char head[32];
    int h = snprintf(head, sizeof head, "$%zu\r\n", n);
    buf_put(b, head, (size_t)h);
    buf_put(b, p, n);
    buf_put(b, "\r\n", 2);
}

static void reply_int(buf_t *b, long long v) {
    char s[32];
    int n = snprintf(s, sizeof s, ":%lld\r\n", v);
    buf_put(b, s, (size_t)n);
}

static uint64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

static entry_t **find(const char *k, size_t klen, uint64_t h) {
    entry_t **e = &table[h & (table_cap - 1)];
    while (*e && !((*e)->hash == h && (*e)->klen == klen && memcmp((*e)->key, k, klen) == 0)) e = &(*e)->next;
    return e;
}

static void grow_table(void) {
    size_t ncap = table_cap * 2;
    entry_t **nt = calloc(ncap, sizeof *nt);
    if (!nt) abort();
    for (size_t i = 0; i < table_cap; i++) {
        entry_t *e = table[i];
        while (e) {
            entry_t *next = e->next;
            e->next = nt[e->hash & (ncap - 1)];
            nt[e->hash & (ncap - 1)] = e;
            e = next;
        }
    }
    free(table);
    table = nt;
    table_cap = ncap;
}

static void kv_set(const char *k, size_t klen, const char *v, size_t vlen) {
    uint64_t h = fnv1a(k, klen);
    entry_t **slot = find(k, klen, h);
    entry_t *e = *slot;
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e) abort();
        e->hash = h;
        e->klen = klen;
        e->key = xrealloc(NULL, klen ? klen : 1);
        memcpy(e->key, k, klen);
        *slot = e;
        if (++table_len > table_cap) grow_table();
    }
    e->val = xrealloc(e->val, vlen ? vlen : 1);
    memcpy(e->val, v, vlen);
    e->vlen = vlen;
}

static int kv_del(const char *k, size_t klen) {
    entry_t **slot = find(k, klen, fnv1a(k, klen));
    entry_t *e = *slot;
    if (!e) return 0;
    *slot = e->next;
    free(e->key);
    free(e->val);
    free(e);
    table_len--;
    return 1;
}

static void kv_flush(void) {
    for (size_t i = 0; i < table_cap; i++) {
        while (table[i]) {
            entry_t *e = table[i];
            table[i] = e->next;
            free(e->key);
            free(e->val);
            free(e);
        }
    }
    table_len = 0;
}

static int eq(const char *a, size_t n, const char *lit) { return strlen(lit) == n && strncasecmp(a, lit, n) == 0; }

static int parse_ll(const char *p, size_t n, long long *out) {
    if (n == 0 || n > 20) return 0;
    char tmp[24];
    memcpy(tmp, p, n);
    tmp[n] = 0;
    char *end;
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

static void incr_by(buf_t *o, const char *k, size_t klen, long long by) {
    entry_t *e = *find(k, klen, fnv1a(k, klen));
    long long v = 0;
    if (e && !parse_ll(e->val, e->vlen, &v)) {
        buf_str(o, "-ERR value is not an integer or out of range\r\n");
        return;
    }
    v += by;
    char s[32];
    int n = snprintf(s, sizeof s, "%lld", v);
    kv_set(k, klen, s, (size_t)n);
    reply_int(o, v);
}

static void command(conn_t *c, int argc, char **argv, size_t *alen) {
    buf_t *o = &c->out;
    const char *cmd = argv[0];
    size_t cl = alen[0];
    commands_served++;
    if (eq(cmd, cl, "PING")) {
        if (argc > 1) reply_bulk(o, argv[1], alen[1]);
        else buf_str(o, "+PONG\r\n");
    } else if (eq(cmd, cl, "ECHO") && argc == 2) {
        reply_bulk(o, argv[1], alen[1]);
    } else if (eq(cmd, cl, "SET") && argc >= 3) {
        kv_set(argv[1], alen[1], argv[2], alen[2]);
        buf_str(o, "+OK\r\n");
    } else if (eq(cmd, cl, "GET") && argc == 2) {
        entry_t *e = *find(argv[1], alen[1], fnv1a(argv[1], alen[1]));
        if (e) reply_bulk(o, e->val, e->vlen);
        else buf_str(o, "$-1\r\n");
    } else if (eq(cmd, cl, "DEL") && argc >= 2) {
        long long n = 0;
        for (int i = 1; i < argc; i++) n += kv_del(argv[i], alen[i]);
        reply_int(o, n);
    } else if (eq(cmd, cl, "EXISTS") && argc >= 2) {
        long long n = 0;
        for (int i = 1; i < argc; i++) n += *find(argv[i], alen[i], fnv1a(argv[i], alen[i])) != NULL;
        reply_int(o, n);
    } else if (eq(cmd, cl, "INCR") && argc == 2) {
        incr_by(o, argv[1], alen[1], 1);
    } else if (eq(cmd, cl, "DECR") && argc == 2) {
        incr_by(o, argv[1], alen[1], -1);
    } else if (eq(cmd, cl, "INCRBY") && argc == 3) {
        long long by;
        if (!parse_ll(argv[2], alen[2], &by)) buf_str(o, "-ERR value is not an integer or out of range\r\n");
        else incr_by(o, argv[1], alen[1], by);
    } else if (eq(cmd, cl, "DBSIZE")) {
        reply_int(o, (long long)table_len);
    } else if (eq(cmd, cl, "FLUSHALL") || eq(cmd, cl, "FLUSHDB")) {
        kv_flush();
        buf_str(o, "+OK\r\n");
    } else if (eq(cmd, cl, "CONFIG") && argc == 3 && eq(argv[1], alen[1], "GET")) {
        buf_str(o, "*2\r\n"); /* the parameter with an empty value */
        reply_bulk(o, argv[2], alen[2]);
        reply_bulk(o, "", 0);
    } else if (eq(cmd, cl, "CONFIG") || eq(cmd, cl, "COMMAND")) {
        buf_str(o, "*0\r\n");
    } else if (eq(cmd, cl, "INFO")) {
        char s[128];
        int n = snprintf(s, sizeof s, "# Server\r\nkvserver:1\r\nkeys:%zu\r\ncommands:%llu\r\n", table_len,
                         (unsigned long long)commands_served);
        reply_bulk(o, s, (size_t)n);
    } else if (eq(cmd, cl, "QUIT")) {
        buf_str(o, "+OK\r\n");
        c->closing = 1;
    } else if (eq(cmd, cl, "SHUTDOWN")) {
        buf_str(o, "+OK\r\n");
        shutting_down = 1;
    } else {
        buf_str(o, "-ERR unknown command or wrong number of arguments\r\n");
    }
}

/* Parses one request at p[0..n). Returns bytes consumed, 0 if incomplete, -1 on a protocol error. */
static long parse_request(char *p, size_t n, int *argc, char **argv, size_t *alen) {
    char *end = p + n, *q = p;
    *argc = 0;
    if (n == 0) return 0;
    if (*q != '*') { /* inline command */
        char *nl = memchr(q, '\n', n);
        if (!nl) return n > MAX_REQUEST ? -1 : 0;
        char *s = q;
        while (s < nl && *argc < MAX_ARGS) {
            while (s < nl && (*s == ' ' || *s == '\r')) s++;
            if (s >= nl) break;
            char *t = s;
            while (t < nl && *t != ' ' && *t != '\r') t++;
            argv[*argc] = s;
            alen[(*argc)++] = (size_t)(t - s);
            s = t;
        }
        return nl + 1 - p;
    }
    char *nl = memchr(q, '\n', n);
    if (!nl) return 0;
    long count = strtol(q + 1, NULL, 10);
    if (count < 1 || count > MAX_ARGS) return -1;
    q = nl + 1;
    for (long i = 0; i < count; i++) {
        if (q >= end) return 0;
        if (*q != '$') return -1;
        nl = memchr(q, '\n', (size_t)(end - q));
        if (!nl) return 0;
        long len = strtol(q + 1, NULL, 10);
        if (len < 0 || len > MAX_REQUEST) return -1;
        q = nl + 1;
        if ((size_t)(end - q) < (size_t)len + 2) return 0;
        argv[i] = q;
        alen[i] = (size_t)len;
        q += len + 2;
    }
    *argc = (int)count;
    return q - p;
}

static void handle_input(conn_t *c) {
    char *argv[MAX_ARGS];
    size_t alen[MAX_ARGS];
    size_t off = 0;
    while (off < c->in.len && !c->closing && !shutting_down) {
        int argc;
        long used = parse_request(c->in.data + off, c->in.len - off, &argc, argv, alen);
        if (used == 0) break;
        if (used < 0) {
            buf_str(&c->out, "-ERR Protocol error\r\n");
            c->closing = 1;
            break;
        }
        off += (size_t)used;
        if (argc > 0) command(c, argc, argv, alen);
    }
    memmove(c->in.data, c->in.data + off, c->in.len - off);
    c->in.len -= off;
}

static void close_conn(int i) {
    conn_t *c = conns[i];
    close(c->fd);
    free(c->in.data);
    free(c->out.data);
    free(c);
    conns[i] = conns[--nconns];
}

/* Returns 0 if the connection is to be closed. */
static int flush_out(conn_t *c) {
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, 0);
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
        c->out_off += (size_t)n;
    }
    c->out.len = c->out_off = 0;
    return !c->closing;
}

static int read_in(conn_t *c) {
    char chunk[READ_CHUNK];
    for (;;) {
        ssize_t n = recv(c->fd, chunk, sizeof chunk, 0);
        if (n > 0) {
            buf_put(&c->in, chunk, (size_t)n);
            if ((size_t)n < sizeof chunk) return 1;
            continue;
        }
        if (n == 0) return 0;
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
}

static void accept_all(void) {
    for (;;) {
        int fd = accept(LISTEN_FD, NULL, NULL);
        if (fd < 0) return;
        if (nconns == MAX_CONNS) {
            close(fd);
            continue;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
#ifndef __wasi__
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#endif
        conn_t *c = calloc(1, sizeof *c);
        if (!c) abort();
        c->fd = fd;
        conns[nconns++] = c;
    }
}

#ifndef __wasi__
static void bind_listen_addr(const char *addr) {
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) {
        fprintf(stderr, "kvserver: LISTEN_ADDR must be host:port\n");
        exit(2);
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "kvserver: bad LISTEN_ADDR host %s\n", host);
        exit(2);
    }
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(s, 1024) < 0) {
        perror("kvserver: bind/listen");
        exit(2);
    }
    /* Port 0 picks a free port: say which, for whoever started us. */
    socklen_t salen = sizeof sa;
    if (getsockname(s, (struct sockaddr *)&sa, &salen) == 0) {
        fprintf(stderr, "kvserver: listening on %s:%u\n", host, (unsigned)ntohs(sa.sin_port));
        fflush(stderr);
    }
    if (s != LISTEN_FD && (dup2(s, LISTEN_FD) < 0 || close(s) < 0)) {
        perror("kvserver: dup2");
        exit(2);
    }
}
#endif

int main(void) {
#ifndef __wasi__
    const char *addr = getenv("LISTEN_ADDR");
    if (addr) bind_listen_addr(addr);
#endif
    table = calloc(table_cap, sizeof *table);
    if (!table) abort();
    fcntl(LISTEN_FD, F_SETFL, fcntl(LISTEN_FD, F_GETFL) | O_NONBLOCK);
    static struct pollfd pfds[MAX_CONNS + 1];
    while (!shutting_down) {
        pfds[0].fd = LISTEN_FD;
        pfds[0].events = POLLIN;
        for (int i = 0; i < nconns; i++) {
            pfds[i + 1].fd = conns[i]->fd;
            pfds[i + 1].events = POLLIN | (conns[i]->out.len ? POLLOUT : 0);
            pfds[i + 1].revents = 0;
        }
        int n = poll(pfds, (nfds_t)nconns + 1, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("kvserver: poll");
            return 1;
        }
        int count = nconns;
        for (int i = count - 1; i >= 0; i--) {
            conn_t *c = conns[i];
            short re = pfds[i + 1].revents;
            int keep = 1;
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                keep = read_in(c);
                handle_input(c);
            }
            if (c->out.len) keep = flush_out(c) && keep;
            else if (c->closing) keep = 0;
            if (!keep) close_conn(i);
        }
        if (pfds[0].revents & POLLIN) accept_all();
    }
    for (int i = nconns - 1; i >= 0; i--) {
        conns[i]->closing = 1;
        flush_out(conns[i]);
        close_conn(i);
    }
    printf("kvserver: shutdown after %llu commands, %zu keys\n", (unsigned long long)commands_served, table_len);
    return 0;
}
