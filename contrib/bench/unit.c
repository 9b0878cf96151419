/* A minimal benchmark unit, so that the figures measure the supervisor, not the unit's
 * own start-up: waits until UNIT_READY_DELAY seconds after its own creation, binds
 * UNIT_PORT (answering every request with HTTP 200) if set, sends READY=1 to
 * $NOTIFY_SOCKET, then idles until signalled. Built by bench.py with the system's cc. */
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double own_age(void) {
    char buf[4096];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f || !fgets(buf, sizeof buf, f)) return 0;
    fclose(f);
    char *p = strrchr(buf, ')');
    unsigned long long start = 0;
    for (int field = 2; p && field < 22; field++) p = strchr(p + 1, ' ');
    if (p) start = strtoull(p + 1, NULL, 10);
    double uptime = 0;
    f = fopen("/proc/uptime", "r");
    if (f) { if (fscanf(f, "%lf", &uptime) != 1) uptime = 0; fclose(f); }
    return uptime - (double)start / sysconf(_SC_CLK_TCK);
}

int main(void) {
    const char *d = getenv("UNIT_READY_DELAY"), *p = getenv("UNIT_PORT"), *ns = getenv("NOTIFY_SOCKET");
    double wait = (d ? atof(d) : 0) - own_age();
    if (wait > 0) {
        struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
    }
    int srv = -1, port = p ? atoi(p) : 0;
    if (port) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
        int one = 1;
        srv = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(srv, (struct sockaddr *)&a, sizeof a) || listen(srv, 64)) return 1;
    }
    if (ns && *ns) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strncpy(a.sun_path, ns, sizeof a.sun_path - 1);
        if (ns[0] == '@') a.sun_path[0] = 0;
        int s = socket(AF_UNIX, SOCK_DGRAM, 0);
        sendto(s, "READY=1", 7, 0, (struct sockaddr *)&a, sizeof a);
        close(s);
    }
    if (srv < 0) for (;;) pause();
    /* answer every request with 200, keeping connections open as an HTTP/1.1 server does */
    const char *reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK";
    struct pollfd fds[64] = {{.fd = srv, .events = POLLIN}};
    int n = 1;
    for (;;) {
        if (poll(fds, n, -1) < 0) continue;
        for (int i = n - 1; i >= 0; i--) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (fds[i].fd == srv) {
                int c = accept(srv, NULL, NULL);
                if (c >= 0 && n < 64) fds[n++] = (struct pollfd){.fd = c, .events = POLLIN};
                else if (c >= 0) close(c);
                continue;
            }
            char buf[1024];
            if (recv(fds[i].fd, buf, sizeof buf, 0) > 0) {
                send(fds[i].fd, reply, strlen(reply), MSG_NOSIGNAL);
            } else {
                close(fds[i].fd);
                fds[i] = fds[--n];
            }
        }
    }
}
