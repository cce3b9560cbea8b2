/* delayline: add a fixed delay and random loss to every packet that crosses a TUN device.
 *
 * Usage: delayline TUNNAME DELAY_US LOSS_PPM [SEED]
 *
 * netem is not available in the lab's kernel, so the router namespace routes forwarded traffic
 * into a TUN device; this program reads each packet, drops it with probability LOSS_PPM / 1e6, and
 * writes the rest back into the same device DELAY_US microseconds after it arrived. The kernel then
 * routes the packet on as if it had been received on the TUN device. The delay is constant, so a
 * FIFO ring keeps packets in order. On SIGTERM/SIGINT it prints its counters to stderr and exits.
 *
 * Without loss the device takes TCP segmentation offload (IFF_VNET_HDR + TUNSETOFFLOAD): the
 * kernel hands over a sender's TSO/GSO super-packet (up to 64 KB) in one read and segments it again
 * after the write, as a NIC would. One packet per read/write capped the path at 0.95 of a
 * 900 Mbit/s link's goodput limit (the process saturated a core at ~100k packets/s). With loss every
 * segment must be dropped on its own, so the device then carries plain packets.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 16384 /* packets held at once: 900 Mbit/s x 50 ms one way is ~3,700 full-size packets */
#define MAX_BYTES (65536 + 64) /* a GSO super-packet and its virtio-net header; longer: dropped */

struct slot {
    uint64_t due_ns;
    uint32_t len, cap;
    unsigned char *data; /* grown to the largest packet this slot has held, then reused */
};

static struct slot *ring;
static volatile sig_atomic_t stop;
static uint64_t rng_state;

static void on_signal(int sig) { (void)sig; stop = 1; }

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t random_ppm(void) { /* xorshift64*: fast, and good enough to decide a drop */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)(((rng_state * 2685821657736338717ull) >> 32) % 1000000u);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s TUNNAME DELAY_US LOSS_PPM [SEED]\n", argv[0]);
        return 2;
    }
    uint64_t delay_ns = strtoull(argv[2], NULL, 10) * 1000ull;
    uint32_t loss_ppm = (uint32_t)strtoul(argv[3], NULL, 10);
    rng_state = argc > 4 ? strtoull(argv[4], NULL, 10) : (uint64_t)now_ns();
    if (rng_state == 0) rng_state = 88172645463325252ull;

    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
    if (fd < 0) { perror("open /dev/net/tun"); return 1; }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    int offload = loss_ppm == 0;
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0);
    strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) { perror("TUNSETIFF"); return 1; }
    /* Each packet then starts with a virtio-net header, passed back unchanged with it on write. */
    if (offload && ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) {
        perror("TUNSETOFFLOAD");
        return 1;
    }
    static unsigned char packet[MAX_BYTES];

    ring = calloc(SLOTS, sizeof *ring);
    if (!ring) { perror("calloc"); return 1; }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    /* The parent waits for this line before it routes traffic through the device. */
    printf("ready\n");
    fflush(stdout);

    uint64_t head = 0, tail = 0; /* ring[head % SLOTS] is the oldest packet held */
    uint64_t forwarded = 0, lost = 0, overflow = 0, oversize = 0;
    while (!stop) {
        /* Read everything that has arrived. */
        for (;;) {
            ssize_t n = read(fd, packet, sizeof packet);
            if (n < 0) break;
            if (tail - head == SLOTS) { overflow++; continue; } /* ring full: dropped, like a full queue */
            if (n >= (ssize_t)sizeof packet) { oversize++; continue; }
            if (loss_ppm && random_ppm() < loss_ppm) { lost++; continue; }
            struct slot *s = &ring[tail % SLOTS];
            if (s->cap < (uint32_t)n) {
                unsigned char *grown = realloc(s->data, (size_t)n);
                if (!grown) { overflow++; continue; }
                s->data = grown;
                s->cap = (uint32_t)n;
            }
            memcpy(s->data, packet, (size_t)n);
            s->len = (uint32_t)n;
            s->due_ns = now_ns() + delay_ns;
            tail++;
        }
        /* Write everything that is due. */
        uint64_t t = now_ns();
        while (head != tail && ring[head % SLOTS].due_ns <= t) {
            struct slot *s = &ring[head % SLOTS];
            if (write(fd, s->data, s->len) < 0 && errno == EAGAIN) break;
            head++;
            forwarded++;
        }
        /* Sleep until the next packet arrives or the oldest held one is due. */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        struct timespec wait = {.tv_sec = 1, .tv_nsec = 0};
        if (head != tail) {
            t = now_ns();
            uint64_t due = ring[head % SLOTS].due_ns;
            uint64_t left = due > t ? due - t : 0;
            wait.tv_sec = (time_t)(left / 1000000000ull);
            wait.tv_nsec = (long)(left % 1000000000ull);
        }
        if (ppoll(&p, 1, &wait, NULL) < 0 && errno != EINTR) { perror("ppoll"); return 1; }
    }
    fprintf(stderr, "forwarded=%llu lost=%llu overflow=%llu oversize=%llu\n",
            (unsigned long long)forwarded, (unsigned long long)lost, (unsigned long long)overflow,
            (unsigned long long)oversize);
    return 0;
}
