/* loadgen.c - the client side of the asyncio echo benchmark of
 * `python -m fastsel bench`, in C so that the client is not the bottleneck.
 *
 *   loadgen HOST PORT CONNS SIZE WARMUP_S DURATION_S
 *
 * Opens CONNS TCP connections; on each, sends a SIZE-byte message, waits
 * until SIZE bytes came back, and sends the next (closed loop, one request
 * in flight per connection), all on one epoll loop.  Requests completing in
 * the first WARMUP_S seconds are counted but not timed; the next DURATION_S
 * seconds are measured.  Prints one JSON object.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    size_t sent, received;
    double started;
};

static size_t size;
static char *out_buf, *in_buf;
static size_t in_cap;
static int ep;

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int
watch(struct conn *c, unsigned events)
{
    struct epoll_event ev = {.events = events};
    ev.data.ptr = c;
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Send what the socket takes; watch for writability only while blocked. */
static int
pump_send(struct conn *c)
{
    while (c->sent < size) {
        ssize_t k = send(c->fd, out_buf + c->sent, size - c->sent, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return watch(c, EPOLLIN | EPOLLOUT);
            }
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        c->sent += (size_t)k;
    }
    return watch(c, EPOLLIN);
}

static int
start_request(struct conn *c, double now)
{
    c->sent = c->received = 0;
    c->started = now;
    return pump_send(c);
}

int
main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT CONNS SIZE WARMUP_S DURATION_S\n", argv[0]);
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
        fprintf(stderr, "bad host %s\n", argv[1]);
        return 2;
    }
    int nconns = atoi(argv[3]);
    size = (size_t)atol(argv[4]);
    double warmup = atof(argv[5]), duration = atof(argv[6]);
    if (nconns < 1 || size < 1 || duration <= 0) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    in_cap = size < 65536 ? 65536 : size;
    struct conn *conns = calloc((size_t)nconns, sizeof(*conns));
    struct epoll_event *events = calloc((size_t)nconns, sizeof(*events));
    size_t lat_cap = 1 << 16, nlat = 0;
    double *lat = malloc(lat_cap * sizeof(double));
    out_buf = malloc(size);
    in_buf = malloc(in_cap);
    if (conns == NULL || events == NULL || lat == NULL || out_buf == NULL || in_buf == NULL) {
        perror("malloc");
        return 1;
    }
    memset(out_buf, 'x', size);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("epoll_create1");
        return 1;
    }
    for (int i = 0; i < nconns; i++) {
        int one = 1;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
            perror("connect");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
            perror("fcntl");
            return 1;
        }
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN};
        ev.data.ptr = &conns[i];
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            perror("epoll_ctl");
            return 1;
        }
    }
    double t_start = now_s();
    double t_measure = t_start + warmup, t_end = t_measure + duration;
    long total = 0, measured = 0;
    for (int i = 0; i < nconns; i++) {
        if (start_request(&conns[i], t_start) < 0) {
            perror("send");
            return 1;
        }
    }
    double now = t_start;
    while (now < t_end) {
        int n = epoll_wait(ep, events, nconns, 100);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("epoll_wait");
            return 1;
        }
        now = now_s();
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (events[i].events & EPOLLOUT) {
                if (pump_send(c) < 0) {
                    perror("send");
                    return 1;
                }
            }
            if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                continue;
            }
            for (;;) {
                ssize_t k = recv(c->fd, in_buf, in_cap, 0);
                if (k < 0) {
                    if (errno == EINTR) {
                        continue;
                    }
                    if (errno == EAGAIN || errno == EWOULDBLOCK) {
                        break;
                    }
                    perror("recv");
                    return 1;
                }
                if (k == 0) {
                    fprintf(stderr, "server closed a connection\n");
                    return 1;
                }
                c->received += (size_t)k;
                if (c->received >= size) {
                    break;
                }
            }
            if (c->received < size) {
                continue;
            }
            if (c->received > size) {
                fprintf(stderr, "server sent more than was asked\n");
                return 1;
            }
            total++;
            if (c->started >= t_measure && now <= t_end) {
                measured++;
                if (nlat == lat_cap) {
                    double *bigger = realloc(lat, 2 * lat_cap * sizeof(double));
                    if (bigger == NULL) {
                        perror("realloc");
                        return 1;
                    }
                    lat = bigger;
                    lat_cap *= 2;
                }
                lat[nlat++] = now - c->started;
            }
            if (start_request(c, now) < 0) {
                perror("send");
                return 1;
            }
        }
    }
    /* Requests still in flight are counted by the server's CPU too; they
       are a few per connection and included in the total below. */
    for (int i = 0; i < nconns; i++) {
        close(conns[i].fd);
    }
    qsort(lat, nlat, sizeof(double), cmp_double);
    double p50 = nlat ? lat[nlat / 2] : -1, p99 = nlat ? lat[(size_t)(nlat * 0.99)] : -1;
    printf("{\"requests\": %ld, \"total_requests\": %ld, \"seconds\": %.6f, "
           "\"p50_s\": %.9f, \"p99_s\": %.9f, \"client\": \"c\"}\n",
           measured, total + nconns, duration, p50, p99);
    return 0;
}
