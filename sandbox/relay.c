/*
 * relay.c - copying bytes between two sockets, for the egress proxy outside
 * the sandbox (proxy.c) and the helper inside it (helper/helper.c), which is
 * its own small program and links this file alone.
 */
#include "internal.h"

#include "base/error.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

int sbx_send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return FARM_EIO;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void sbx_relay(int a, int b)
{
    char data[16384];
    int open_ab = 1, open_ba = 1; /* a->b and b->a still flowing */
    while (open_ab || open_ba) {
        struct pollfd p[2] = {{a, open_ab ? POLLIN : 0, 0}, {b, open_ba ? POLLIN : 0, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if ((p[0].revents | p[1].revents) & POLLNVAL)
            return;
        for (int k = 0; k < 2; k++) {
            int from = k == 0 ? a : b, to = k == 0 ? b : a;
            int *open = k == 0 ? &open_ab : &open_ba;
            if (!*open || !(p[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = recv(from, data, sizeof(data), 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                if (r < 0)
                    return;
                *open = 0;
                shutdown(to, SHUT_WR);
                continue;
            }
            if (sbx_send_all(to, data, (size_t)r) < 0)
                return;
        }
    }
}
