/*
 * wzp-flood - a handshake flood against a relay on this machine, to see its protections
 * at work: real client Initials (captured from real clients first, each with its own
 * connection IDs) sent at a fixed rate from many loopback source addresses (127.1.0.1,
 * 127.1.0.2, ...) that never answer, as spoofed sources would. Prints what was sent and
 * what came back, then exits; it stops by itself after --duration.
 *
 * Loopback only: the sources are loopback addresses, so the target must be one too.
 */
#include "benchutil.h"
#include "wzpc.h"

#include <getopt.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct opts {
    unsigned rate, sources, unique;
    double duration;
    const char *sni;
    char host[64];
    uint16_t port;
};

static void usage(FILE *out, const char *argv0)
{
    fprintf(out,
            "usage: %s [options] HOST[:PORT]\n"
            "\n"
            "Send a handshake flood to the wzp-relay at HOST (a loopback address, default\n"
            "port 4433): real client Initials at a fixed rate from many loopback source\n"
            "addresses that never answer, as spoofed sources would. Then print what was\n"
            "sent and what the relay sent back.\n"
            "\n"
            "options:\n"
            "  --rate PPS          Initials per second (default 2000)\n"
            "  --sources N         source addresses 127.1.0.1 ... (1..62500, default 300)\n"
            "  --duration SEC      how long (default 5)\n"
            "  --unique N          distinct Initials to capture first and cycle through\n"
            "                      (default 2000)\n"
            "  --sni NAME          the room the Initials name (default \"flood\")\n"
            "  -h, --help          show this help\n"
            "\n"
            "Exit status: 0 after the flood, 1 if it could not run, 2 on a usage error.\n",
            argv0);
}

static int parse(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {{"rate", required_argument, NULL, 'r'},
                                             {"sources", required_argument, NULL, 's'},
                                             {"duration", required_argument, NULL, 'd'},
                                             {"unique", required_argument, NULL, 'u'},
                                             {"sni", required_argument, NULL, 'n'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    *o = (struct opts){.rate = 2000, .sources = 300, .unique = 2000, .duration = 5, .sni = "flood"};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'r':
            ok = bu_set_uint(optarg, 1, 1000000, &o->rate);
            break;
        case 's':
            ok = bu_set_uint(optarg, 1, 250 * 250, &o->sources);
            break;
        case 'u':
            ok = bu_set_uint(optarg, 1, 100000, &o->unique);
            break;
        case 'd':
            ok = bu_parse_seconds(optarg, &o->duration) && o->duration > 0;
            break;
        case 'n':
            o->sni = optarg;
            break;
        case 'h':
            usage(stdout, argv[0]);
            return 1;
        default:
            usage(stderr, argv[0]);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "wzp-flood: bad option value \"%s\" (see --help for ranges)\n", optarg);
            return -1;
        }
    }
    if (optind != argc - 1 ||
        !bu_parse_target(argv[optind], 4433, o->host, sizeof o->host, &o->port)) {
        usage(stderr, argv[0]);
        return -1;
    }
    struct in_addr a;
    if (inet_pton(AF_INET, o->host, &a) != 1 || (ntohl(a.s_addr) >> 24) != 127) {
        fprintf(stderr,
                "wzp-flood: %s is not an IPv4 loopback address: the flood's sources are "
                "loopback addresses, so only a relay on this machine can be its target\n",
                o->host);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    int prv = parse(argc, argv, &o);
    if (prv)
        return prv > 0 ? 0 : 2;
    bu_raise_nofile();
    uint8_t(*pkts)[WZPC_INITIAL_MAX] = calloc(o.unique, WZPC_INITIAL_MAX);
    size_t *lens = calloc(o.unique, sizeof *lens);
    int *fds = calloc(o.sources, sizeof *fds);
    if (!pkts || !lens || !fds) {
        fprintf(stderr, "wzp-flood: out of memory\n");
        return 1;
    }
    size_t n = wzpc_capture_initials(o.sni, o.unique, pkts, lens, 60000);
    if (n == 0) {
        fprintf(stderr, "wzp-flood: could not capture client Initials\n");
        return 1;
    }
    for (unsigned i = 0; i < o.sources; i++) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl((127u << 24) | (1u << 16) | ((i / 250) << 8) | (i % 250 + 1));
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&src, sizeof src) != 0) {
            fprintf(stderr, "wzp-flood: cannot bind source %u: %s\n", i, strerror(errno));
            return 1;
        }
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(o.port)};
    inet_pton(AF_INET, o.host, &to.sin_addr);
    uint64_t sent = 0, errors = 0, replies = 0, reply_bytes = 0;
    uint64_t start = bu_now_ns(), end = start + (uint64_t)(o.duration * 1e9);
    size_t next = 0;
    unsigned src = 0;
    uint8_t buf[2048];
    for (uint64_t now = start; now < end; now = bu_now_ns()) {
        uint64_t due = (now - start) * o.rate / 1000000000ull + 1;
        for (; sent < due; sent++) {
            if (sendto(fds[src], pkts[next], lens[next], 0, (struct sockaddr *)&to, sizeof to) < 0)
                errors++;
            src = (src + 1) % o.sources;
            next = (next + 1) % n;
        }
        for (unsigned i = 0; i < o.sources; i++) {
            ssize_t len;
            while ((len = recv(fds[i], buf, sizeof buf, 0)) > 0) {
                replies++;
                reply_bytes += (uint64_t)len;
            }
        }
        bu_sleep_until(now + 2000000ull, NULL);
    }
    double secs = (double)(bu_now_ns() - start) / 1e9;
    printf("{\"initials_sent\": %llu, \"send_errors\": %llu, \"seconds\": %.2f, \"sources\": %u, "
           "\"distinct_initials\": %zu, \"replies\": %llu, \"reply_bytes\": %llu}\n",
           (unsigned long long)sent, (unsigned long long)errors, secs, o.sources, n,
           (unsigned long long)replies, (unsigned long long)reply_bytes);
    for (unsigned i = 0; i < o.sources; i++)
        close(fds[i]);
    free(fds);
    free(lens);
    free(pkts);
    return 0;
}
