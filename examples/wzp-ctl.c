/*
 * wzp-ctl - look at and steer a running wzp-relay through its HTTP server
 * (--metrics-port): the state as a table (or JSON), and the admin actions.
 *
 *   wzp-ctl [--addr HOST:PORT] status [--json] [--interval SEC]
 *   wzp-ctl [--addr HOST:PORT] kick ID [--reason TEXT]
 *   wzp-ctl [--addr HOST:PORT] drain | reload
 *
 * Status reads /metrics twice, --interval apart, for the rates; then /rooms and each
 * room. Admin actions send the bearer token from --token-file FILE or WZP_ADMIN_TOKEN.
 * Exit status: 0 done; 1 the relay cannot be reached or answered an error; 2 usage;
 * 3 not authorized (no token, a wrong one, or admin actions disabled); 4 no such
 * participant.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_UNREACHABLE = 1, EXIT_USAGE = 2, EXIT_AUTH = 3, EXIT_NOTFOUND = 4 };

static char host[256] = "127.0.0.1", port[16] = "9090";
static char token[512];

/* One HTTP/1.0 request; the status (0 if unreachable) and the body (malloc'd). */
static int http(const char *method, const char *path, char **body)
{
    *body = NULL;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return 0;
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        freeaddrinfo(res);
        if (fd >= 0)
            close(fd);
        return 0;
    }
    freeaddrinfo(res);
    char req[1024];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: %s\r\n%s%s%s\r\n", method, path,
                     host, token[0] ? "Authorization: Bearer " : "", token, token[0] ? "\r\n" : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return 0;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (!buf || poll(&p, 1, 5000) != 1) { /* every wait has its timeout */
            free(buf);
            close(fd);
            return 0;
        }
        if (len + 4096 > cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) {
                free(buf);
                close(fd);
                return 0;
            }
            buf = bigger;
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    int status = 0;
    sscanf(buf, "HTTP/1.%*d %d", &status);
    const char *b = strstr(buf, "\r\n\r\n");
    *body = strdup(b ? b + 4 : "");
    free(buf);
    return status;
}

/* Sum of every series of a metric in a scrape (0 if absent). */
static double metric(const char *scrape, const char *name)
{
    double sum = 0;
    size_t n = strlen(name);
    for (const char *p = scrape; (p = strstr(p, name)); p += n) {
        if ((p != scrape && p[-1] != '\n') || (p[n] != ' ' && p[n] != '{'))
            continue;
        const char *v = strchr(p, ' ');
        if (v)
            sum += strtod(v + 1, NULL);
    }
    return sum;
}

/* The value of one labelled series, e.g. name{reason="x"} (NAN if absent). */
static double series(const char *scrape, const char *key)
{
    char needle[256];
    snprintf(needle, sizeof needle, "\n%s ", key);
    const char *p = strstr(scrape, needle);
    return p ? strtod(p + strlen(needle), NULL) : NAN;
}

/* Every reason label of the refusals family, with its rate over the interval. */
static json_t *refusal_rates(const char *a, const char *b, double secs)
{
    json_t *o = json_object();
    const char *prefix = "\nwzp_relay_refusals_total{reason=\"";
    for (const char *p = b; (p = strstr(p, prefix)); p++) {
        const char *r = p + strlen(prefix), *q = strchr(r, '"');
        if (!q || q - r > 64)
            continue;
        char key[128], reason[80];
        snprintf(reason, sizeof reason, "%.*s", (int)(q - r), r);
        snprintf(key, sizeof key, "wzp_relay_refusals_total{reason=\"%s\"}", reason);
        double before = series(a, key), after = series(b, key);
        double d = (isnan(after) ? 0 : after) - (isnan(before) ? 0 : before);
        if (d > 0)
            json_object_set_new(o, reason, json_real(d / secs));
    }
    return o;
}

/* The relay's own count of the last minute (wzp_relay_refusals_last_minute{reason}):
 * {"total": N, "by_reason": {reason: n, ...}} with the reasons that are not 0. */
static json_t *refusals_last_minute(const char *scrape)
{
    json_t *by = json_object();
    double total = 0;
    const char *prefix = "\nwzp_relay_refusals_last_minute{reason=\"";
    for (const char *p = scrape; (p = strstr(p, prefix)); p++) {
        const char *r = p + strlen(prefix), *q = strchr(r, '"');
        if (!q || q - r > 64 || strncmp(q, "\"} ", 3) != 0)
            continue;
        double n = strtod(q + 3, NULL);
        if (n > 0) {
            char reason[80];
            snprintf(reason, sizeof reason, "%.*s", (int)(q - r), r);
            json_object_set_new(by, reason, json_real(n));
            total += n;
        }
    }
    return json_pack("{s:f, s:o}", "total", total, "by_reason", by);
}

static int status_cmd(bool as_json, double interval)
{
    char *a, *b, *rooms;
    if (http("GET", "/metrics", &a) != 200) {
        fprintf(stderr, "wzp-ctl: no answer from http://%s:%s/metrics (is --metrics-port set?)\n",
                host, port);
        free(a);
        return EXIT_UNREACHABLE;
    }
    struct timespec ts = {(time_t)interval, (long)((interval - (double)(time_t)interval) * 1e9)};
    nanosleep(&ts, NULL);
    if (http("GET", "/metrics", &b) != 200 || http("GET", "/rooms", &rooms) != 200) {
        fprintf(stderr, "wzp-ctl: the relay stopped answering\n");
        return EXIT_UNREACHABLE;
    }
    json_t *doc = json_object(), *rl = json_loads(rooms, 0, NULL);
    json_object_set_new(doc, "sessions", json_real(metric(b, "wzp_relay_active_sessions")));
    json_object_set_new(doc, "rooms", json_real(metric(b, "wzp_relay_active_rooms")));
    json_object_set_new(doc, "connections", json_real(metric(b, "wzp_relay_connections")));
    json_object_set_new(doc, "handshakes",
                        json_real(metric(b, "wzp_relay_handshakes_in_progress")));
    json_object_set_new(doc, "presence", json_real(metric(b, "wzp_relay_presence_registered")));
    json_object_set_new(doc, "draining", json_boolean(metric(b, "wzp_relay_draining") > 0));
    static const char *const rates[][2] = {
        {"joins_per_s", "wzp_relay_joins_total"},
        {"leaves_per_s", "wzp_relay_leaves_total"},
        {"forwarded_per_s", "wzp_relay_packets_forwarded_total"},
        {"retries_per_s", "wzp_relay_retries_sent_total"},
    };
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++)
        json_object_set_new(
            doc, rates[i][0],
            json_real((metric(b, rates[i][1]) - metric(a, rates[i][1])) / interval));
    json_object_set_new(doc, "refusals_per_s", refusal_rates(a, b, interval));
    json_object_set_new(doc, "refusals_last_minute", refusals_last_minute(b));
    json_object_set_new(doc, "interval_s", json_real(interval));
    json_t *detail = json_array();
    size_t i;
    json_t *room;
    json_array_foreach(rl, i, room)
    {
        const char *name = json_string_value(json_object_get(room, "name"));
        char path[600], *one;
        snprintf(path, sizeof path, "/rooms/%s", name ? name : "");
        if (name && http("GET", path, &one) == 200) {
            json_t *r = json_loads(one, 0, NULL);
            if (r)
                json_array_append_new(detail, r);
        } else {
            one = NULL;
        }
        free(one);
    }
    json_object_set_new(doc, "room_list", detail);
    if (as_json) {
        char *s = json_dumps(doc, JSON_INDENT(2));
        puts(s);
        free(s);
    } else {
        printf("relay http://%s:%s/  %s\n", host, port,
               json_is_true(json_object_get(doc, "draining")) ? "DRAINING" : "serving");
        printf("  sessions %.0f  rooms %.0f  connections %.0f  handshakes %.0f  reachable %.0f\n",
               metric(b, "wzp_relay_active_sessions"), metric(b, "wzp_relay_active_rooms"),
               metric(b, "wzp_relay_connections"), metric(b, "wzp_relay_handshakes_in_progress"),
               metric(b, "wzp_relay_presence_registered"));
        printf("  over the last %.1f s: %.1f joins/s, %.1f leaves/s, %.0f datagrams forwarded/s, "
               "%.1f Retry/s\n",
               interval, json_real_value(json_object_get(doc, "joins_per_s")),
               json_real_value(json_object_get(doc, "leaves_per_s")),
               json_real_value(json_object_get(doc, "forwarded_per_s")),
               json_real_value(json_object_get(doc, "retries_per_s")));
        const char *reason;
        json_t *v;
        json_t *minute = json_object_get(doc, "refusals_last_minute");
        printf("  refused in the last minute: %.0f\n",
               json_real_value(json_object_get(minute, "total")));
        json_object_foreach(json_object_get(minute, "by_reason"), reason, v)
            printf("    %-26s %.0f\n", reason, json_real_value(v));
        json_object_foreach(json_object_get(doc, "refusals_per_s"), reason, v)
            printf("  refused now: %-20s %.1f/s\n", reason, json_real_value(v));
        json_array_foreach(detail, i, room)
        {
            json_t *parts = json_object_get(room, "participants");
            printf("\nroom %s  (%zu participant%s, tier %s)\n",
                   json_string_value(json_object_get(room, "name")), json_array_size(parts),
                   json_array_size(parts) == 1 ? "" : "s",
                   json_string_value(json_object_get(room, "tier")));
            printf("  %-6s %-39s %-16s %-9s %-11s %8s %6s\n", "id", "fingerprint", "alias", "role",
                   "tier", "packets", "worker");
            size_t k;
            json_t *p;
            json_array_foreach(parts, k, p)
            {
                const char *alias = json_string_value(json_object_get(p, "alias"));
                printf("  %-6lld %-39s %-16.16s %-9s %-11s %8lld %6lld\n",
                       (long long)json_integer_value(json_object_get(p, "id")),
                       json_string_value(json_object_get(p, "fingerprint")), alias ? alias : "-",
                       json_string_value(json_object_get(p, "role")),
                       json_string_value(json_object_get(p, "tier")),
                       (long long)json_integer_value(json_object_get(p, "packets")),
                       (long long)json_integer_value(json_object_get(p, "worker")));
            }
        }
    }
    json_decref(doc);
    json_decref(rl);
    free(a);
    free(b);
    free(rooms);
    return 0;
}

static int admin_cmd(const char *path)
{
    if (!token[0]) {
        fprintf(stderr, "wzp-ctl: admin actions need the relay's token: --token-file FILE or "
                        "WZP_ADMIN_TOKEN\n");
        return EXIT_AUTH;
    }
    char *body;
    int status = http("POST", path, &body);
    int rv = status == 0                      ? EXIT_UNREACHABLE
             : status == 401 || status == 403 ? EXIT_AUTH
             : status == 404                  ? EXIT_NOTFOUND
             : status >= 200 && status < 300  ? 0
                                              : EXIT_UNREACHABLE;
    if (status == 0)
        fprintf(stderr, "wzp-ctl: no answer from http://%s:%s/\n", host, port);
    else
        fprintf(rv ? stderr : stdout, "%s%s", rv ? "wzp-ctl: relay says: " : "", body ? body : "");
    free(body);
    return rv;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: wzp-ctl [--addr HOST:PORT] [--token-file FILE] COMMAND\n"
                 "\n"
                 "Look at and steer a running wzp-relay through its HTTP server (--metrics-port;\n"
                 "default address 127.0.0.1:9090).\n"
                 "\n"
                 "commands:\n"
                 "  status [--json] [--interval SEC]\n"
                 "                      sessions, rooms, connections, rates over SEC (default 1),\n"
                 "                      refusals in the last minute and now, by reason, then\n"
                 "                      every room and participant\n"
                 "  kick ID [--reason TEXT]\n"
                 "                      close participant ID (the id column of status)\n"
                 "  drain               stop new joins; the relay exits when the last call ends\n"
                 "  reload              reload the policy (the result is in the relay's log)\n"
                 "\n"
                 "Admin commands send the token from --token-file FILE (its first line) or the\n"
                 "WZP_ADMIN_TOKEN environment variable.\n"
                 "\n"
                 "Exit status: 0 done; 1 unreachable or an error; 2 usage; 3 not authorized;\n"
                 "4 no such participant.\n");
}

static bool read_token_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f || !fgets(token, sizeof token, f)) {
        fprintf(stderr, "wzp-ctl: cannot read the token from %s: %s\n", path, strerror(errno));
        if (f)
            fclose(f);
        return false;
    }
    fclose(f);
    token[strcspn(token, "\r\n")] = '\0';
    return true;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"addr", required_argument, NULL, 'a'},
                                         {"token-file", required_argument, NULL, 't'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"interval", required_argument, NULL, 'i'},
                                         {"reason", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool as_json = false;
    double interval = 1;
    const char *reason = NULL;
    const char *env = getenv("WZP_ADMIN_TOKEN");
    if (env)
        snprintf(token, sizeof token, "%s", env);
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'a': {
            const char *colon = strrchr(optarg, ':');
            if (!colon || colon == optarg || (size_t)(colon - optarg) >= sizeof host) {
                fprintf(stderr, "wzp-ctl: --addr expects HOST:PORT\n");
                return EXIT_USAGE;
            }
            snprintf(host, sizeof host, "%.*s", (int)(colon - optarg), optarg);
            snprintf(port, sizeof port, "%s", colon + 1);
            break;
        }
        case 't':
            if (!read_token_file(optarg))
                return EXIT_USAGE;
            break;
        case 'j':
            as_json = true;
            break;
        case 'i':
            interval = strtod(optarg, NULL);
            if (!(interval >= 0.1 && interval <= 600)) {
                fprintf(stderr, "wzp-ctl: --interval expects 0.1 to 600 seconds\n");
                return EXIT_USAGE;
            }
            break;
        case 'r':
            reason = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    const char *cmd = optind < argc ? argv[optind] : NULL;
    if (cmd && strcmp(cmd, "status") == 0)
        return status_cmd(as_json, interval);
    if (cmd && (strcmp(cmd, "drain") == 0 || strcmp(cmd, "reload") == 0)) {
        char path[32];
        snprintf(path, sizeof path, "/admin/%s", cmd);
        return admin_cmd(path);
    }
    if (cmd && strcmp(cmd, "kick") == 0 && optind + 1 < argc) {
        char *end;
        unsigned long long id = strtoull(argv[optind + 1], &end, 10);
        if (*end || !id) {
            fprintf(stderr, "wzp-ctl: kick expects a participant id (a number)\n");
            return EXIT_USAGE;
        }
        char path[700], esc[500] = "";
        for (size_t i = 0, o = 0; reason && reason[i] && o + 4 < sizeof esc; i++)
            o += (size_t)snprintf(esc + o, sizeof esc - o,
                                  isalnum((unsigned char)reason[i]) ? "%c" : "%%%02X",
                                  (unsigned char)reason[i]);
        snprintf(path, sizeof path, "/admin/kick?id=%llu%s%s", id, esc[0] ? "&reason=" : "", esc);
        return admin_cmd(path);
    }
    usage(stderr);
    return EXIT_USAGE;
}
