/*
 * The reference CONNECT relay of `natkit bench proxy --splice-reference`: the smallest proxy that moves a
 * tunnel with splice(2), as HAProxy-style C proxies do. It answers one CONNECT head with 200 (whatever it
 * names) and joins the client to 127.0.0.1:SINK_PORT with two blocking threads, each moving one direction
 * socket -> pipe -> socket. No parsing, no limits, no table: a ceiling for what a userspace splice tunnel costs
 * on this machine, not a proxy to run. Listens on 127.0.0.1:LISTEN_PORT only.
 *
 * Build: cc -O2 -pthread -o splice-relay splice-relay.c     Run: splice-relay LISTEN_PORT SINK_PORT [CC]
 * CC, when given, is the TCP congestion control of both legs (set on the listener, which the accepted socket
 * inherits, and on the server socket), as natkit's --congestion-control does.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct direction { int from, to; };

static void *move_bytes(void *arg)
{
    struct direction *d = arg;
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) return NULL;
    fcntl(pipe_fds[1], F_SETPIPE_SZ, 1 << 20);
    for (;;) {
        ssize_t n = splice(d->from, NULL, pipe_fds[1], NULL, 1 << 20, SPLICE_F_MOVE);
        if (n <= 0) break;
        while (n > 0) {
            ssize_t m = splice(pipe_fds[0], NULL, d->to, NULL, (size_t)n, SPLICE_F_MOVE);
            if (m <= 0) goto done;
            n -= m;
        }
    }
done:
    shutdown(d->to, SHUT_WR);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return NULL;
}

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) { fprintf(stderr, "usage: splice-relay LISTEN_PORT SINK_PORT [CC]\n"); return 2; }
    const char *cc = argc == 4 ? argv[3] : NULL;
    signal(SIGPIPE, SIG_IGN); /* a peer that went away is an error return, not the end of the relay */
    int one = 1;
    struct sockaddr_in listen_at = loopback(atoi(argv[1])), sink = loopback(atoi(argv[2]));
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (cc && setsockopt(listener, IPPROTO_TCP, TCP_CONGESTION, cc, strlen(cc)) != 0) { perror("TCP_CONGESTION"); return 1; }
    if (bind(listener, (struct sockaddr *)&listen_at, sizeof listen_at) != 0 || listen(listener, 16) != 0) {
        perror("listen");
        return 1;
    }
    for (;;) {
        int client = accept(listener, NULL, NULL);
        if (client < 0) continue;
        char head[8192];
        size_t got = 0;
        int complete = 0;
        while (got < sizeof head && !complete) {
            if (read(client, head + got, 1) != 1) break;
            got++;
            complete = got >= 4 && memcmp(head + got - 4, "\r\n\r\n", 4) == 0;
        }
        if (!complete) { close(client); continue; } /* no CONNECT head: nothing to relay */
        int server = socket(AF_INET, SOCK_STREAM, 0);
        if (cc) setsockopt(server, IPPROTO_TCP, TCP_CONGESTION, cc, strlen(cc));
        if (connect(server, (struct sockaddr *)&sink, sizeof sink) != 0) { close(server); close(client); continue; }
        setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        if (write(client, ok, sizeof ok - 1) != (ssize_t)(sizeof ok - 1)) { close(server); close(client); continue; }
        struct direction *up = malloc(sizeof *up), *down = malloc(sizeof *down);
        up->from = client; up->to = server;
        down->from = server; down->to = client;
        pthread_t a, b;
        pthread_create(&a, NULL, move_bytes, up);
        pthread_create(&b, NULL, move_bytes, down);
        pthread_detach(a);
        pthread_detach(b);
    }
}
