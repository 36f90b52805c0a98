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

#include "ws_frame.h"

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
    snprintf(msg, sizeof msg, "{\"type\":\"task_info\",\"tasktoken\":\"%s\"}", argv[3]);
    if (cvx_test_ws_send_text(fd, msg)) return 1;
    for (;;) {
        int op;
        char *p;
        uint64_t l;
        if (cvx_test_ws_read_frame(fd, &op, &p, &l)) return 1;
        if (op == 1) printf("%s\n", p);
        fflush(stdout);
        free(p);
        if (op == 8) return 0;
    }
}
