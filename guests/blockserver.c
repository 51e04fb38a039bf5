/*
 * blockserver: the simplest socket server a stranger writes, the third
 * style the hypervisor is tested against: blocking accept() on the
 * listening socket, then blocking read()/write() on one connection at a
 * time, no poll, no O_NONBLOCK. A host call that blocks (accept waiting for
 * a client, read waiting for bytes) is recorded when it returns, like any
 * other.
 *
 * Protocol (one command per line, one reply per line):
 *   INCR   -> the counter after adding one
 *   GET    -> the counter
 *   EXIT   -> BYE, then the program exits (code 0)
 *   other  -> ERR
 *
 * Listening socket: fd 3.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static long counter;

/* Answers every complete line in buf[0..*len); keeps a partial line. */
static int serve_lines(int c, char *buf, size_t *len) {
    size_t start = 0;
    for (size_t i = 0; i < *len; i++) {
        if (buf[i] != '\n') continue;
        buf[i] = '\0';
        if (i > start && buf[i - 1] == '\r') buf[i - 1] = '\0';
        const char *line = buf + start;
        char out[32];
        int k;
        if (strcmp(line, "INCR") == 0) {
            k = snprintf(out, sizeof out, "%ld\n", ++counter);
        } else if (strcmp(line, "GET") == 0) {
            k = snprintf(out, sizeof out, "%ld\n", counter);
        } else if (strcmp(line, "EXIT") == 0) {
            if (write(c, "BYE\n", 4) != 4) return -1;
            exit(0);
        } else {
            k = snprintf(out, sizeof out, "ERR\n");
        }
        if (write(c, out, (size_t)k) != k) return -1;
        start = i + 1;
    }
    memmove(buf, buf + start, *len - start);
    *len -= start;
    return 0;
}

int main(void) {
    for (;;) {
        int c = accept(3, NULL, NULL);
        if (c < 0) {
            perror("accept");
            return 1;
        }
        char buf[512];
        size_t len = 0;
        for (;;) {
            if (len == sizeof buf) break; /* a line longer than the buffer: drop the client */
            ssize_t r = read(c, buf + len, sizeof buf - len);
            if (r <= 0) break; /* hang-up, or reset (a failover resets every connection) */
            len += (size_t)r;
            if (serve_lines(c, buf, &len) < 0) break;
        }
        close(c);
    }
}
