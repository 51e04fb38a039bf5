/*
 * lineserver: a line-protocol counter server written the way a stranger
 * might write one, unlike kvserver: select() over non-blocking sockets,
 * read()/write() instead of recv()/send(), fcntl(O_NONBLOCK), and
 * clock_gettime timestamps. It is here so the hypervisor is tested against
 * more than one style of WASI server.
 *
 * Protocol (one command per line, one reply per line):
 *   SET <key> <value>   -> OK
 *   GET <key>           -> <value> | NIL
 *   INCR <key>          -> <n>
 *   COUNT               -> <number of keys>
 *   TIME                -> <milliseconds since the epoch>
 *   QUIT                -> BYE, then the connection closes
 *   EXIT                -> BYE, then the program exits (code 0)
 *
 * Listening socket: fd 3 (or LISTEN_ADDR=host:port natively).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef __wasi__
#include <arpa/inet.h>
#include <netinet/in.h>
#endif

#define MAXC 64
#define MAXK 4096
#define LINE 512

struct client {
    int fd;
    char in[LINE];
    size_t n;
};

static struct client clients[MAXC];
static char *keys[MAXK];
static char *vals[MAXK];
static int nkeys;

static int find(const char *k) {
    for (int i = 0; i < nkeys; i++)
        if (strcmp(keys[i], k) == 0) return i;
    return -1;
}

static void put(const char *k, const char *v) {
    int i = find(k);
    if (i < 0) {
        if (nkeys == MAXK) return;
        i = nkeys++;
        keys[i] = strdup(k);
        vals[i] = NULL;
    }
    free(vals[i]);
    vals[i] = strdup(v);
}

static void reply(int fd, const char *s) {
    char buf[LINE + 2];
    int n = snprintf(buf, sizeof buf, "%s\n", s);
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, (size_t)n);
        if (w < 0) {
            if (errno == EAGAIN) continue;
            return;
        }
        p += w;
        n -= (int)w;
    }
}

/* Returns 0 to close the connection. */
static int command(int fd, char *line) {
    char *cmd = strtok(line, " \r");
    char *a = strtok(NULL, " \r");
    char *b = strtok(NULL, "\r");
    char out[LINE];
    if (!cmd) return 1;
    if (!strcmp(cmd, "SET") && a && b) {
        put(a, b);
        reply(fd, "OK");
    } else if (!strcmp(cmd, "GET") && a) {
        int i = find(a);
        reply(fd, i < 0 ? "NIL" : vals[i]);
    } else if (!strcmp(cmd, "INCR") && a) {
        int i = find(a);
        long v = i < 0 ? 0 : strtol(vals[i], NULL, 10);
        snprintf(out, sizeof out, "%ld", v + 1);
        put(a, out);
        reply(fd, out);
    } else if (!strcmp(cmd, "COUNT")) {
        snprintf(out, sizeof out, "%d", nkeys);
        reply(fd, out);
    } else if (!strcmp(cmd, "TIME")) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(out, sizeof out, "%lld", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
        reply(fd, out);
    } else if (!strcmp(cmd, "QUIT")) {
        reply(fd, "BYE");
        return 0;
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
    for (;;) {
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
        if (c->n == sizeof c->in - 1) { /* line too long */
            reply(c->fd, "ERR line too long");
            drop(c);
            return;
        }
    }
}

int main(void) {
    int lfd = 3;
#ifndef __wasi__
    const char *addr = getenv("LISTEN_ADDR");
    if (addr) {
        char host[64];
        int port;
        if (sscanf(addr, "%63[^:]:%d", host, &port) != 2) return 2;
        int s = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
        inet_pton(AF_INET, host, &sa.sin_addr);
        if (bind(s, (struct sockaddr *)&sa, sizeof sa) || listen(s, 128)) return 2;
        dup2(s, 3);
    }
#endif
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
    for (int i = 0; i < MAXC; i++) clients[i].fd = -1;
    for (;;) {
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(lfd, &rd);
        int maxfd = lfd;
        for (int i = 0; i < MAXC; i++)
            if (clients[i].fd >= 0) {
                FD_SET(clients[i].fd, &rd);
                if (clients[i].fd > maxfd) maxfd = clients[i].fd;
            }
        struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
        int n = select(maxfd + 1, &rd, NULL, NULL, &tv);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("select");
            return 1;
        }
        if (FD_ISSET(lfd, &rd)) {
            int fd = accept(lfd, NULL, NULL);
            if (fd >= 0) {
                fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                int i = 0;
                while (i < MAXC && clients[i].fd >= 0) i++;
                if (i == MAXC) close(fd);
                else clients[i].fd = fd;
            }
        }
        for (int i = 0; i < MAXC; i++)
            if (clients[i].fd >= 0 && FD_ISSET(clients[i].fd, &rd)) serve(&clients[i]);
    }
}
