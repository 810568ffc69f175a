/* floor.c - the kernel floor for `python -m fastsel bench`: one zero-timeout
 * wait in a tight C loop, with no interpreter around it, on a set of pipes
 * laid out exactly as the Python cases lay theirs out (both ends of
 * ceil(NFDS/2) pipes, the first NFDS of those fds watched for reading, NREADY
 * read ends spread evenly holding one byte).  With the optional last
 * argument ``writable``, the layout is instead the write ends of NFDS pipes
 * watched for writing: all of them ready, NREADY ignored.
 *
 *   floor MECH NFDS NREADY MIN_MS REPEATS [writable]   MECH: epoll | poll | select
 *
 * The loop count is grown until one timed run lasts MIN_MS milliseconds;
 * prints "<median ns per call> <events the last call reported>".
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

enum mech { M_EPOLL, M_POLL, M_SELECT };

static enum mech mech;
static int nfds, *fds, maxfd, ep = -1, writable;
static struct pollfd *pfds;
static struct epoll_event *evbuf;
static uint64_t *set_tmpl, *set_work;
static size_t set_words;

static double
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int
wait_once(void)
{
    switch (mech) {
    case M_EPOLL:
        return epoll_wait(ep, evbuf, nfds, 0);
    case M_POLL:
        return poll(pfds, (nfds_t)nfds, 0);
    default: {
        /* select() overwrites its set: copy the template in, as every
           caller must; the set is sized for maxfd, not FD_SETSIZE. */
        struct timeval tv = {0, 0};
        memcpy(set_work, set_tmpl, set_words * sizeof(uint64_t));
        fd_set *set = (fd_set *)set_work;
        return select(maxfd + 1, writable ? NULL : set, writable ? set : NULL, NULL, &tv);
    }
    }
}

static double
time_loops(long loops, int *n)
{
    double t0 = now_ns();
    for (long i = 0; i < loops; i++) {
        *n = wait_once();
    }
    return now_ns() - t0;
}

/* The watched fds: read ends and write ends of ceil(NFDS/2) pipes, NREADY
   read ends holding a byte; or, writable, the write ends of NFDS pipes. */
static int
make_layout(int nready)
{
    int npipes = writable ? nfds : (nfds + 1) / 2;
    int *ends = calloc((size_t)npipes * 2, sizeof(int));
    fds = calloc((size_t)nfds, sizeof(int));
    if (ends == NULL || fds == NULL) {
        perror("calloc");
        return -1;
    }
    for (int i = 0; i < npipes; i++) {
        if (pipe(ends + 2 * i) < 0) {
            perror("pipe");
            return -1;
        }
    }
    if (nready > npipes || writable) {
        nready = writable ? 0 : npipes;
    }
    for (int k = 0; k < nready; k++) {
        int i = (int)((long)k * npipes / nready);
        if (write(ends[2 * i + 1], "x", 1) != 1) {
            perror("write");
            return -1;
        }
    }
    maxfd = 0;
    for (int i = 0; i < nfds; i++) {
        fds[i] = writable ? ends[2 * i + 1] : ends[i];
        if (fds[i] > maxfd) {
            maxfd = fds[i];
        }
    }
    return 0;
}

/* The mechanism's own structures, watching fds[] for reading (writing). */
static int
setup_mech(void)
{
    if (mech == M_EPOLL) {
        ep = epoll_create1(EPOLL_CLOEXEC);
        evbuf = calloc((size_t)nfds, sizeof(*evbuf));
        if (ep < 0 || evbuf == NULL) {
            perror("epoll_create1");
            return -1;
        }
        for (int i = 0; i < nfds; i++) {
            struct epoll_event ev = {.events = writable ? EPOLLOUT : EPOLLIN};
            ev.data.fd = fds[i];
            if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) {
                perror("epoll_ctl");
                return -1;
            }
        }
    }
    else if (mech == M_POLL) {
        pfds = calloc((size_t)nfds, sizeof(*pfds));
        if (pfds == NULL) {
            perror("calloc");
            return -1;
        }
        for (int i = 0; i < nfds; i++) {
            pfds[i].fd = fds[i];
            pfds[i].events = writable ? POLLOUT : POLLIN;
        }
    }
    else {
        set_words = (size_t)maxfd / 64 + 1;
        set_tmpl = calloc(set_words, sizeof(uint64_t));
        set_work = calloc(set_words, sizeof(uint64_t));
        if (set_tmpl == NULL || set_work == NULL) {
            perror("calloc");
            return -1;
        }
        for (int i = 0; i < nfds; i++) {
            set_tmpl[fds[i] / 64] |= (uint64_t)1 << (fds[i] % 64);
        }
    }
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc != 6 && !(argc == 7 && strcmp(argv[6], "writable") == 0)) {
        fprintf(stderr, "usage: %s epoll|poll|select NFDS NREADY MIN_MS REPEATS "
                "[writable]\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "epoll") == 0) {
        mech = M_EPOLL;
    }
    else if (strcmp(argv[1], "poll") == 0) {
        mech = M_POLL;
    }
    else if (strcmp(argv[1], "select") == 0) {
        mech = M_SELECT;
    }
    else {
        fprintf(stderr, "unknown mechanism %s\n", argv[1]);
        return 2;
    }
    writable = argc == 7;
    nfds = atoi(argv[2]);
    int nready = atoi(argv[3]);
    double min_ns = atof(argv[4]) * 1e6;
    int repeats = atoi(argv[5]);
    double *samples = calloc(repeats > 0 ? (size_t)repeats : 1, sizeof(double));
    if (nfds < 1 || nready < 0 || repeats < 1 || samples == NULL) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    if (make_layout(nready) < 0 || setup_mech() < 0) {
        return 1;
    }
    int n = 0;
    long loops = 1;
    for (;;) {
        double t = time_loops(loops, &n);
        if (n < 0) {
            perror(argv[1]);
            return 1;
        }
        if (t >= min_ns || loops >= 100000000L) {
            break;
        }
        loops = t > min_ns / 100 ? (long)(loops * min_ns * 1.2 / t) + 1 : loops * 10;
    }
    for (int r = 0; r < repeats; r++) {
        samples[r] = time_loops(loops, &n) / (double)loops;
    }
    qsort(samples, (size_t)repeats, sizeof(double), cmp_double);
    printf("%.1f %d\n", samples[repeats / 2], n);
    return 0;
}
