/*
 * filestore: a line-protocol server that keeps its data in files under
 * /data, using what a program's files go through: create, write, rename
 * over, append, unlink, hard links, directory listings, a journal kept
 * open in append mode, a reader with its own offset, and a scratch file
 * that stays open after it was unlinked. The tests of replicated
 * directories (live snapshots and failover with --map-dir) drive it.
 *
 * Protocol (one command per line, one reply per line):
 *   PUT <key> <value>     -> OK       data/kv/<key> := value (write a temp file, rename over)
 *   APPEND <key> <value>  -> OK       append to data/kv/<key>
 *   GET <key>             -> <value> | NIL
 *   DEL <key>             -> OK | NIL
 *   LINK <from> <to>      -> OK | ERR <errno>
 *   BIG <key> <kib>       -> OK       a file of <kib> KiB of a pattern
 *   COUNT                 -> entries of data/kv (a directory listing)
 *   JOURNAL               -> journal lines read so far by the reader (it reads on from its offset)
 *   SCRATCH               -> sum of the unlinked scratch file's 64 counters
 *   EXIT                  -> BYE, then the program exits (code 0)
 * Every PUT, APPEND and DEL is also appended to data/journal.
 *
 * Listening socket: fd 3 (or LISTEN_ADDR=host:port natively). The data
 * directory is /data, or the first argument.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXC 64
#define LINE 4096

struct client {
    int fd;
    char in[LINE];
    size_t n;
};

static struct client clients[MAXC];
static const char *root = "/data";
static int journal = -1, reader = -1, scratch = -1;
static long long journal_lines;
static unsigned long long ops;

static void path_of(char *out, size_t n, const char *key) { snprintf(out, n, "%s/kv/%s", root, key); }

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void reply(int fd, const char *s) {
    char buf[LINE + 2];
    int n = snprintf(buf, sizeof buf, "%s\n", s);
    write_all(fd, buf, (size_t)n);
}

static void journal_add(const char *op, const char *a, const char *b) {
    char line[LINE + 64];
    int n = snprintf(line, sizeof line, "%s %s %s\n", op, a, b ? b : "");
    if (write_all(journal, line, (size_t)n) < 0) perror("journal");
    ops++;
    /* The unlinked scratch file: counter (ops % 64) += 1, at its offset. */
    unsigned long long slot = ops % 64, v = 0;
    if (pread(scratch, &v, sizeof v, (off_t)(slot * 8)) < 0) perror("scratch read");
    v++;
    if (pwrite(scratch, &v, sizeof v, (off_t)(slot * 8)) != sizeof v) perror("scratch write");
}

static int put(const char *key, const char *val, size_t n) {
    char path[512], tmp[520];
    path_of(path, sizeof path, key);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    int r = write_all(fd, val, n);
    close(fd);
    if (r < 0 || rename(tmp, path) < 0) return -1;
    return 0;
}

/* Returns 0 to close the connection. */
static int command(int fd, char *line) {
    char *cmd = strtok(line, " \r");
    char *a = strtok(NULL, " \r");
    char *b = strtok(NULL, "\r");
    char out[LINE], path[512], path2[512];
    if (!cmd) return 1;
    if (!strcmp(cmd, "PUT") && a && b) {
        if (put(a, b, strlen(b)) < 0) {
            snprintf(out, sizeof out, "ERR %d", errno);
            reply(fd, out);
            return 1;
        }
        journal_add("PUT", a, b);
        reply(fd, "OK");
    } else if (!strcmp(cmd, "APPEND") && a && b) {
        path_of(path, sizeof path, a);
        int f = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (f < 0 || write_all(f, b, strlen(b)) < 0) {
            snprintf(out, sizeof out, "ERR %d", errno);
            reply(fd, out);
        } else {
            journal_add("APPEND", a, b);
            reply(fd, "OK");
        }
        if (f >= 0) close(f);
    } else if (!strcmp(cmd, "GET") && a) {
        path_of(path, sizeof path, a);
        int f = open(path, O_RDONLY);
        if (f < 0) {
            reply(fd, "NIL");
            return 1;
        }
        ssize_t n = read(f, out, sizeof out - 1);
        close(f);
        out[n < 0 ? 0 : n] = 0;
        reply(fd, out);
    } else if (!strcmp(cmd, "DEL") && a) {
        path_of(path, sizeof path, a);
        if (unlink(path) < 0) {
            reply(fd, "NIL");
        } else {
            journal_add("DEL", a, NULL);
            reply(fd, "OK");
        }
    } else if (!strcmp(cmd, "LINK") && a && b) {
        path_of(path, sizeof path, a);
        path_of(path2, sizeof path2, b);
        if (link(path, path2) < 0) {
            snprintf(out, sizeof out, "ERR %d", errno);
            reply(fd, out);
        } else {
            reply(fd, "OK");
        }
    } else if (!strcmp(cmd, "BIG") && a && b) {
        long kib = strtol(b, NULL, 10);
        char *buf = malloc((size_t)kib * 1024 + 1);
        for (long i = 0; i < kib * 1024; i++) buf[i] = (char)('a' + (i * 7 + kib) % 26);
        int r = put(a, buf, (size_t)kib * 1024);
        free(buf);
        reply(fd, r < 0 ? "ERR" : "OK");
    } else if (!strcmp(cmd, "COUNT")) {
        snprintf(path, sizeof path, "%s/kv", root);
        DIR *d = opendir(path);
        long n = 0;
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (e->d_name[0] != '.') n++;
        if (d) closedir(d);
        snprintf(out, sizeof out, "%ld", n);
        reply(fd, out);
    } else if (!strcmp(cmd, "JOURNAL")) {
        char buf[8192];
        ssize_t n;
        while ((n = read(reader, buf, sizeof buf)) > 0)
            for (ssize_t i = 0; i < n; i++) journal_lines += buf[i] == '\n';
        snprintf(out, sizeof out, "%lld", journal_lines);
        reply(fd, out);
    } else if (!strcmp(cmd, "SCRATCH")) {
        unsigned long long v[64] = {0}, sum = 0;
        if (pread(scratch, v, sizeof v, 0) < 0) perror("scratch");
        for (int i = 0; i < 64; i++) sum += v[i];
        snprintf(out, sizeof out, "%llu", sum);
        reply(fd, out);
    } else if (!strcmp(cmd, "EXIT")) {
        reply(fd, "BYE");
        exit(0);
    } else {
        reply(fd, "ERR unknown command");
    }
    return 1;
}

static void drop(struct client *c) {
    close(c->fd);
    c->fd = -1;
    c->n = 0;
}

static void serve(struct client *c) {
    ssize_t r = read(c->fd, c->in + c->n, sizeof c->in - 1 - c->n);
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        drop(c);
        return;
    }
    if (r < 0) return;
    c->n += (size_t)r;
    char *nl;
    while ((nl = memchr(c->in, '\n', c->n))) {
        *nl = 0;
        size_t used = (size_t)(nl - c->in) + 1;
        int keep = command(c->fd, c->in);
        memmove(c->in, c->in + used, c->n - used);
        c->n -= used;
        if (!keep) {
            drop(c);
            return;
        }
    }
    if (c->n == sizeof c->in - 1) {
        reply(c->fd, "ERR line too long");
        drop(c);
    }
}

static int open_or_die(const char *what, int flags) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, what);
    int fd = open(path, flags, 0644);
    if (fd < 0) {
        fprintf(stderr, "filestore: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    return fd;
}

int main(int argc, char **argv) {
    if (argc > 1) root = argv[1];
    char path[512];
    snprintf(path, sizeof path, "%s/kv", root);
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "filestore: %s: %s\n", path, strerror(errno));
        return 2;
    }
    journal = open_or_die("journal", O_WRONLY | O_CREAT | O_APPEND);
    reader = open_or_die("journal", O_RDONLY);
    scratch = open_or_die("scratch", O_RDWR | O_CREAT | O_TRUNC);
    snprintf(path, sizeof path, "%s/scratch", root);
    unlink(path);
    if (ftruncate(scratch, 64 * 8) < 0) perror("ftruncate");
    printf("filestore: serving %s\n", root);
    fflush(stdout);
    int lfd = 3;
    for (int i = 0; i < MAXC; i++) clients[i].fd = -1;
    for (;;) {
        struct pollfd p[MAXC + 1];
        int idx[MAXC + 1], n = 0;
        p[n].fd = lfd;
        p[n].events = POLLIN;
        idx[n++] = -1;
        for (int i = 0; i < MAXC; i++)
            if (clients[i].fd >= 0) {
                p[n].fd = clients[i].fd;
                p[n].events = POLLIN;
                idx[n++] = i;
            }
        int k = poll(p, (nfds_t)n, -1);
        if (k < 0) {
            if (errno == EINTR) continue;
            perror("poll");
            return 1;
        }
        if (p[0].revents & POLLIN) {
            int fd = accept(lfd, NULL, NULL);
            if (fd >= 0) {
                int i = 0;
                while (i < MAXC && clients[i].fd >= 0) i++;
                if (i == MAXC) close(fd);
                else clients[i].fd = fd;
            }
        }
        for (int j = 1; j < n; j++)
            if (p[j].revents & (POLLIN | POLLHUP | POLLERR)) serve(&clients[idx[j]]);
    }
}
