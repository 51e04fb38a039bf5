/*
 * fsprobe: tries to open each path given as an argument (relative paths
 * through the preopened directory /data, or through a directory descriptor
 * with the "@" prefix: "@dir:path" opens dir, then path relative to it,
 * after renaming dir to dir.moved) and prints, per path, "PATH ok BYTES"
 * with the first bytes read, or "PATH errno N". The test of the sandbox
 * (tests/wasm_files.rs) runs it against escapes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void report(const char *what, int fd) {
    if (fd < 0) {
        printf("%s errno %d\n", what, errno);
        return;
    }
    char buf[32] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    printf("%s ok %s\n", what, n > 0 ? buf : "");
    close(fd);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '@') {
            char dir[256], moved[300];
            const char *colon = strchr(a, ':');
            if (!colon || (size_t)(colon - a - 1) >= sizeof dir) return 2;
            memcpy(dir, a + 1, (size_t)(colon - a - 1));
            dir[colon - a - 1] = 0;
            int d = open(dir, O_RDONLY | O_DIRECTORY);
            if (d < 0) {
                printf("%s errno %d\n", a, errno);
                continue;
            }
            snprintf(moved, sizeof moved, "%s.moved", dir);
            if (rename(dir, moved) != 0) printf("rename errno %d\n", errno);
            report(a, openat(d, colon + 1, O_RDONLY));
            close(d);
        } else {
            report(a, open(a, O_RDONLY));
        }
    }
    return 0;
}
