/*
 * sqlserver: a poll-based, multi-connection RESP2 key-value server whose
 * data lives in an SQLite database file: a real database library, with its
 * rollback journal, fsyncs and page cache, under the hypervisor.
 *
 *   sqlserver [DBPATH]        (default /data/kv.db)
 *
 * Like kvserver it serves on the listening socket it is handed as file
 * descriptor 3, so the same source runs
 *   - as a wasm32-wasip1 guest under understudy (fd 3 is preopened; the
 *     database's directory is mapped with --map-dir HOST::/data), and
 *   - natively (gcc): if LISTEN_ADDR=host:port is set, it binds that address
 *     itself (port 0: any free port), prints "sqlserver: listening on
 *     HOST:PORT" to stderr and dup2()s the socket onto fd 3; otherwise fd 3
 *     must already be a listening socket.
 *
 * Storage: table kv(k TEXT PRIMARY KEY, v BLOB), journal_mode=DELETE (the
 * rollback journal is created and unlinked by every commit), synchronous
 * NORMAL unless SQLSERVER_SYNC=OFF|NORMAL|FULL says otherwise. Under WASI
 * the "unix-none" VFS (no locks: SQLite's default WASI locking leaves a
 * lock directory behind after kill -9; this process is the only user).
 *
 * Group commit: every command parsed in one poll round, from all readable
 * connections, runs inside ONE transaction, and the round's replies are
 * sent only after its COMMIT succeeded: an acknowledged write is in the
 * file. Reads see the round's earlier writes. If the transaction fails,
 * every command of the round is answered -ERR <sqlite message>.
 *
 * Commands: PING [msg], ECHO, SET k v [EX s|PX ms ignored], GET, DEL k..,
 * EXISTS k.., DBSIZE, FLUSHALL, CONFIG GET (an empty value), COMMAND (empty), INFO,
 * QUIT, SHUTDOWN (closes the database, exits 0). Inline commands and
 * pipelining are supported.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sqlite3.h"

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
    /* This poll round: where its replies start in out, how many commands. */
    size_t round_start;
    long round_cmds;
} conn_t;

static conn_t *conns[MAX_CONNS];
static int nconns;
static int shutting_down;
static uint64_t commands_served;

/* ---- the database ---- */

enum { Q_GET, Q_SET, Q_DEL, Q_EXISTS, Q_COUNT, Q_FLUSH, Q_BEGIN, Q_COMMIT, Q_ROLLBACK, Q_N };
static const char *const query_sql[Q_N] = {
    [Q_GET] = "SELECT v FROM kv WHERE k = ?1",
    [Q_SET] = "INSERT INTO kv(k, v) VALUES(?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
    [Q_DEL] = "DELETE FROM kv WHERE k = ?1",
    [Q_EXISTS] = "SELECT 1 FROM kv WHERE k = ?1",
    [Q_COUNT] = "SELECT count(*) FROM kv",
    [Q_FLUSH] = "DELETE FROM kv",
    [Q_BEGIN] = "BEGIN",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
};
static sqlite3 *db;
static const char *db_path;
static sqlite3_stmt *query[Q_N];
static int in_txn;            /* this round's BEGIN was run */
static int round_failed;      /* this round's transaction is lost */
static char round_err[512];   /* and why */

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "sqlserver: out of memory\n");
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
    if (n) memcpy(b->data + b->len, p, n);
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

/* -ERR <msg>, with the message on one line. */
static void reply_err(buf_t *b, const char *msg) {
    buf_str(b, "-ERR ");
    for (const char *p = msg; *p; p++) buf_put(b, (*p == '\r' || *p == '\n') ? " " : p, 1);
    buf_str(b, "\r\n");
}

/* An SQLite error: to stderr and, when there is a client, to it. */
static void db_error(buf_t *o, const char *what) {
    const char *msg = sqlite3_errmsg(db);
    fprintf(stderr, "sqlserver: %s: %s (%d)\n", what, msg, sqlite3_extended_errcode(db));
    if (o) reply_err(o, msg);
    /* Some errors (I/O, disk full, no memory) roll the transaction back:
     * then none of the round's writes is committed, and all of its commands
     * are answered with an error at the end of the round. */
    if (in_txn && sqlite3_get_autocommit(db)) {
        in_txn = 0;
        round_failed = 1;
        snprintf(round_err, sizeof round_err, "transaction rolled back: %s", msg);
    }
}

/* Runs a statement without results (BEGIN, COMMIT, ...): SQLITE_DONE or the error. */
static int exec_query(int q) {
    int rc = sqlite3_step(query[q]);
    sqlite3_reset(query[q]);
    return rc;
}

/* The round's transaction, begun by its first command that needs the
 * database (so that its reads, too, share one read transaction). */
static int ensure_txn(buf_t *o) {
    if (in_txn) return 1;
    if (round_failed) {
        reply_err(o, round_err);
        return 0;
    }
    if (exec_query(Q_BEGIN) != SQLITE_DONE) {
        db_error(o, "BEGIN");
        return 0;
    }
    in_txn = 1;
    return 1;
}

static sqlite3_stmt *bind_key(int q, const char *k, size_t klen) {
    sqlite3_stmt *s = query[q];
    sqlite3_bind_text(s, 1, k, (int)klen, SQLITE_STATIC);
    return s;
}

static void finish(sqlite3_stmt *s) {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Rows of kv; -1 after an error (reported to o). */
static long long count_keys(buf_t *o) {
    sqlite3_stmt *s = query[Q_COUNT];
    long long n = -1;
    if (sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
    else db_error(o, "count");
    sqlite3_reset(s);
    return n;
}

static void cmd_set(buf_t *o, const char *k, size_t klen, const char *v, size_t vlen) {
    sqlite3_stmt *s = bind_key(Q_SET, k, klen);
    sqlite3_bind_blob(s, 2, vlen ? v : "", (int)vlen, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_DONE) buf_str(o, "+OK\r\n");
    else db_error(o, "SET");
    finish(s);
}

static void cmd_get(buf_t *o, const char *k, size_t klen) {
    sqlite3_stmt *s = bind_key(Q_GET, k, klen);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const void *v = sqlite3_column_blob(s, 0);
        reply_bulk(o, v ? v : "", (size_t)sqlite3_column_bytes(s, 0));
    } else if (rc == SQLITE_DONE) {
        buf_str(o, "$-1\r\n");
    } else {
        db_error(o, "GET");
    }
    finish(s);
}

/* DEL (q = Q_DEL) and EXISTS (q = Q_EXISTS) over argv[1..argc). */
static void cmd_keys(buf_t *o, int q, int argc, char **argv, size_t *alen) {
    long long n = 0;
    for (int i = 1; i < argc; i++) {
        sqlite3_stmt *s = bind_key(q, argv[i], alen[i]);
        int rc = sqlite3_step(s);
        finish(s);
        if (q == Q_DEL && rc == SQLITE_DONE) n += sqlite3_changes(db);
        else if (q == Q_EXISTS && rc == SQLITE_ROW) n++;
        else if (rc != SQLITE_DONE) {
            db_error(o, q == Q_DEL ? "DEL" : "EXISTS");
            return;
        }
    }
    reply_int(o, n);
}

static int eq(const char *a, size_t n, const char *lit) { return strlen(lit) == n && strncasecmp(a, lit, n) == 0; }

static void command(conn_t *c, int argc, char **argv, size_t *alen) {
    buf_t *o = &c->out;
    const char *cmd = argv[0];
    size_t cl = alen[0];
    commands_served++;
    if (c->round_cmds++ == 0) c->round_start = o->len;
    if (eq(cmd, cl, "PING")) {
        if (argc > 1) reply_bulk(o, argv[1], alen[1]);
        else buf_str(o, "+PONG\r\n");
    } else if (eq(cmd, cl, "ECHO") && argc == 2) {
        reply_bulk(o, argv[1], alen[1]);
    } else if (eq(cmd, cl, "SET") && argc >= 3) {
        if (ensure_txn(o)) cmd_set(o, argv[1], alen[1], argv[2], alen[2]);
    } else if (eq(cmd, cl, "GET") && argc == 2) {
        if (ensure_txn(o)) cmd_get(o, argv[1], alen[1]);
    } else if (eq(cmd, cl, "DEL") && argc >= 2) {
        if (ensure_txn(o)) cmd_keys(o, Q_DEL, argc, argv, alen);
    } else if (eq(cmd, cl, "EXISTS") && argc >= 2) {
        if (ensure_txn(o)) cmd_keys(o, Q_EXISTS, argc, argv, alen);
    } else if (eq(cmd, cl, "DBSIZE")) {
        long long n;
        if (ensure_txn(o) && (n = count_keys(o)) >= 0) reply_int(o, n);
    } else if (eq(cmd, cl, "FLUSHALL") || eq(cmd, cl, "FLUSHDB")) {
        if (ensure_txn(o)) {
            if (exec_query(Q_FLUSH) == SQLITE_DONE) buf_str(o, "+OK\r\n");
            else db_error(o, "FLUSHALL");
        }
    } else if (eq(cmd, cl, "CONFIG") && argc == 3 && eq(argv[1], alen[1], "GET")) {
        buf_str(o, "*2\r\n"); /* the parameter with an empty value (as kvserver) */
        reply_bulk(o, argv[2], alen[2]);
        reply_bulk(o, "", 0);
    } else if (eq(cmd, cl, "CONFIG") || eq(cmd, cl, "COMMAND")) {
        buf_str(o, "*0\r\n");
    } else if (eq(cmd, cl, "INFO")) {
        long long n;
        if (ensure_txn(o) && (n = count_keys(o)) >= 0) {
            char s[256];
            int len = snprintf(s, sizeof s, "# Server\r\nsqlserver:1\r\nsqlite_version:%s\r\nkeys:%lld\r\ncommands:%llu\r\n",
                               sqlite3_libversion(), n, (unsigned long long)commands_served);
            reply_bulk(o, s, (size_t)len);
        }
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

/* Commits the round's transaction; if it (or the round) failed, every
 * command of the round is answered with the error instead. */
static void end_round(void) {
    if (in_txn) {
        in_txn = 0;
        if (exec_query(Q_COMMIT) != SQLITE_DONE) {
            const char *msg = sqlite3_errmsg(db);
            fprintf(stderr, "sqlserver: COMMIT: %s (%d)\n", msg, sqlite3_extended_errcode(db));
            round_failed = 1;
            snprintf(round_err, sizeof round_err, "commit failed: %s", msg);
            if (!sqlite3_get_autocommit(db) && exec_query(Q_ROLLBACK) != SQLITE_DONE)
                fprintf(stderr, "sqlserver: ROLLBACK: %s\n", sqlite3_errmsg(db));
        }
    }
    for (int i = 0; i < nconns; i++) {
        conn_t *c = conns[i];
        if (round_failed && c->round_cmds) {
            c->out.len = c->round_start;
            for (long j = 0; j < c->round_cmds; j++) reply_err(&c->out, round_err);
        }
        c->round_cmds = 0;
    }
    round_failed = 0;
}

static int pragma(const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sqlserver: %s: %s\n", sql, err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        return 0;
    }
    return 1;
}

/* Opens the database, sets it up, prepares the statements; 0 on failure. */
static int open_db(const char *path) {
#ifdef __wasi__
    const char *vfs = "unix-none";
#else
    const char *vfs = NULL;
#endif
    const char *sync = getenv("SQLSERVER_SYNC");
    if (!sync) sync = "NORMAL";
    if (strcasecmp(sync, "OFF") && strcasecmp(sync, "NORMAL") && strcasecmp(sync, "FULL")) {
        fprintf(stderr, "sqlserver: SQLSERVER_SYNC must be OFF, NORMAL or FULL, not %s\n", sync);
        return 0;
    }
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "sqlserver: cannot open %s: %s\n", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        return 0;
    }
    sqlite3_extended_result_codes(db, 1);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA synchronous=%s", sync);
    if (!pragma("PRAGMA journal_mode=DELETE") || !pragma(sql) ||
        !pragma("CREATE TABLE IF NOT EXISTS kv(k TEXT PRIMARY KEY, v BLOB)"))
        return 0;
    for (int q = 0; q < Q_N; q++) {
        if (sqlite3_prepare_v3(db, query_sql[q], -1, SQLITE_PREPARE_PERSISTENT, &query[q], NULL) != SQLITE_OK) {
            fprintf(stderr, "sqlserver: prepare %s: %s\n", query_sql[q], sqlite3_errmsg(db));
            return 0;
        }
    }
    return 1;
}

static int close_db(void) {
    for (int q = 0; q < Q_N; q++) sqlite3_finalize(query[q]);
    if (sqlite3_close(db) != SQLITE_OK) {
        fprintf(stderr, "sqlserver: close %s: %s\n", db_path, sqlite3_errmsg(db));
        return 0;
    }
    return 1;
}

/* ---- the network (as in kvserver) ---- */

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
    static char chunk[READ_CHUNK];
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
        fprintf(stderr, "sqlserver: LISTEN_ADDR must be host:port\n");
        exit(2);
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "sqlserver: bad LISTEN_ADDR host %s\n", host);
        exit(2);
    }
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(s, 1024) < 0) {
        perror("sqlserver: bind/listen");
        exit(2);
    }
    /* Port 0 picks a free port: say which, for whoever started us. */
    socklen_t salen = sizeof sa;
    if (getsockname(s, (struct sockaddr *)&sa, &salen) == 0) {
        fprintf(stderr, "sqlserver: listening on %s:%u\n", host, (unsigned)ntohs(sa.sin_port));
        fflush(stderr);
    }
    if (s != LISTEN_FD && (dup2(s, LISTEN_FD) < 0 || close(s) < 0)) {
        perror("sqlserver: dup2");
        exit(2);
    }
}
#endif

int main(int argc, char **argv) {
    if (argc > 2) {
        fprintf(stderr, "usage: sqlserver [DBPATH]   (default /data/kv.db)\n");
        return 2;
    }
    db_path = argc == 2 ? argv[1] : "/data/kv.db";
#ifndef __wasi__
    const char *addr = getenv("LISTEN_ADDR");
    if (addr) bind_listen_addr(addr);
#endif
    if (!open_db(db_path)) return 1;
    long long keys = count_keys(NULL);
    if (keys < 0) return 1;
    printf("sqlserver: serving %s (%lld keys)\n", db_path, keys);
    fflush(stdout);
    fcntl(LISTEN_FD, F_SETFL, fcntl(LISTEN_FD, F_GETFL) | O_NONBLOCK);
    static struct pollfd pfds[MAX_CONNS + 1];
    static char keep[MAX_CONNS];
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
            perror("sqlserver: poll");
            return 1;
        }
        /* Read and run everything that arrived, in one transaction... */
        int count = nconns;
        for (int i = 0; i < count; i++) {
            keep[i] = 1;
            if (pfds[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) {
                keep[i] = (char)read_in(conns[i]);
                handle_input(conns[i]);
            }
        }
        /* ...commit it, and only then answer. */
        end_round();
        for (int i = count - 1; i >= 0; i--) {
            conn_t *c = conns[i];
            int k = keep[i];
            if (c->out.len) k = flush_out(c) && k;
            else if (c->closing) k = 0;
            if (!k) close_conn(i);
        }
        if (pfds[0].revents & POLLIN) accept_all();
    }
    for (int i = nconns - 1; i >= 0; i--) {
        conns[i]->closing = 1;
        flush_out(conns[i]);
        close_conn(i);
    }
    if (!close_db()) return 1;
    printf("sqlserver: shutdown after %llu commands\n", (unsigned long long)commands_served);
    return 0;
}
