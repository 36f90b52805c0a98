/* ws_follow HOST PORT TOKEN: a WebSocket client for the shell tests (tests/cli_svc_netns.sh). It opens GET /v1/socket
 * on HOST:PORT (IPv4), sends {"type":"task_info","tasktoken":TOKEN} and prints every text frame on a line of its own
 * until the server's close frame (exit 0), EOF or 120 s without a frame (exit 1). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int read_full(int fd, uint8_t *b, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4 || strlen(argv[3]) > 200) {
        fprintf(stderr, "usage: ws_follow HOST PORT TOKEN\n");
        return 2;
    }
    int port = atoi(argv[2]);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (fd < 0 || inet_pton(AF_INET, argv[1], &a.sin_addr) != 1 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        perror("ws_follow: connect");
        return 1;
    }
    struct timeval tv = {120, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /v1/socket HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     argv[1], port);
    if (write(fd, req, (size_t)n) != n) return 1;
    char head[2048];
    size_t got = 0;
    while (got < sizeof head - 1 && read(fd, head + got, 1) == 1) {
        head[++got] = 0;
        if (got >= 4 && !memcmp(head + got - 4, "\r\n\r\n", 4)) break;
    }
    head[got] = 0;
    if (!strstr(head, " 101 ")) {
        fprintf(stderr, "ws_follow: handshake: %s\n", head);
        return 1;
    }
    char msg[300];
    size_t len = (size_t)snprintf(msg, sizeof msg, "{\"type\":\"task_info\",\"tasktoken\":\"%s\"}", argv[3]);
    /* the length in its shortest form (RFC 6455: the server refuses another) */
    uint8_t frame[320] = {0x81}, mask[4] = {0x12, 0x34, 0x56, 0x78};
    size_t hl = 2;
    if (len < 126) frame[1] = (uint8_t)(0x80 | len);
    else {
        frame[1] = 0x80 | 126;
        frame[2] = (uint8_t)(len >> 8);
        frame[3] = (uint8_t)len;
        hl = 4;
    }
    memcpy(frame + hl, mask, 4);
    for (size_t i = 0; i < len; i++) frame[hl + 4 + i] = (uint8_t)msg[i] ^ mask[i % 4];
    if (write(fd, frame, hl + 4 + len) != (ssize_t)(hl + 4 + len)) return 1;
    for (;;) {
        uint8_t h[2], e[8];
        if (read_full(fd, h, 2)) return 1;
        uint64_t l = h[1] & 0x7f;
        if (l == 126) {
            if (read_full(fd, e, 2)) return 1;
            l = ((uint64_t)e[0] << 8) | e[1];
        } else if (l == 127) {
            if (read_full(fd, e, 8)) return 1;
            l = 0;
            for (int i = 0; i < 8; i++) l = (l << 8) | e[i];
        }
        if (l > (1u << 24)) return 1;
        uint8_t *p = malloc(l + 1);
        if (!p || read_full(fd, p, l)) return 1;
        p[l] = 0;
        int op = h[0] & 0x0f;
        if (op == 1) printf("%s\n", (char *)p);
        fflush(stdout);
        free(p);
        if (op == 8) return 0;
    }
}
