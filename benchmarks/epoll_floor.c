/* epoll_floor.c - the kernel floor for a selector's select(0): epoll_wait()
 * with timeout 0 in a C loop on the very fds the benchmark registered
 * (inherited), so bench_selectors.py can say how close fastsel gets.
 *
 *   epoll_floor LOOPS REPEATS EVENTS FD...
 *
 * EVENTS is 1 (EPOLLIN) or 2 (EPOLLOUT).  Prints the median over REPEATS of
 * nanoseconds per epoll_wait() call, and the events the last call returned.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int
main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s LOOPS REPEATS EVENTS FD...\n", argv[0]);
        return 2;
    }
    long loops = atol(argv[1]);
    int repeats = atoi(argv[2]);
    int events = atoi(argv[3]) == 2 ? EPOLLOUT : EPOLLIN;
    int nfds = argc - 4;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("epoll_create1");
        return 1;
    }
    for (int i = 0; i < nfds; i++) {
        struct epoll_event ev = {.events = events};
        ev.data.fd = atoi(argv[4 + i]);
        if (epoll_ctl(ep, EPOLL_CTL_ADD, ev.data.fd, &ev) < 0) {
            perror("epoll_ctl");
            return 1;
        }
    }
    struct epoll_event *buf = calloc((size_t)nfds, sizeof(*buf));
    double *samples = calloc((size_t)repeats, sizeof(*samples));
    if (buf == NULL || samples == NULL) {
        return 1;
    }
    int n = 0;
    for (int r = 0; r < repeats; r++) {
        double t0 = now_ns();
        for (long i = 0; i < loops; i++) {
            n = epoll_wait(ep, buf, nfds, 0);
        }
        samples[r] = (now_ns() - t0) / (double)loops;
    }
    qsort(samples, (size_t)repeats, sizeof(*samples), cmp_double);
    printf("%.1f %d\n", samples[repeats / 2], n);
    return 0;
}
