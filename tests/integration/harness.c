/* harness.c - see harness.h. */
#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint16_t free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static char *read_log(struct relay_proc *r)
{
    FILE *f = fopen(r->log_path, "r");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

unsigned relay_log_count(struct relay_proc *r, const char *needle)
{
    char *log = read_log(r);
    unsigned n = 0;
    for (char *p = log; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(log);
    return n;
}

bool relay_log_wait(struct relay_proc *r, const char *needle, unsigned timeout_ms)
{
    for (unsigned waited = 0;; waited += 20) {
        if (relay_log_count(r, needle) > 0)
            return true;
        if (waited >= timeout_ms)
            return false;
        sleep_ms(20);
    }
}

void relay_dump_log(struct relay_proc *r)
{
    char *log = read_log(r);
    fprintf(stderr, "---- relay log (%s) ----\n%s---- end ----\n", r->log_path, log);
    free(log);
}

void relay_start(struct relay_proc *r, const char *const *extra_args)
{
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "/tmp/wzp-it-XXXXXX");
    cr_assert(mkdtemp(r->dir), "mkdtemp: %s", strerror(errno));
    snprintf(r->log_path, sizeof r->log_path, "%s/relay.log", r->dir);
    r->port = free_udp_port();
    char listen[64], identity[300];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", r->port);
    snprintf(identity, sizeof identity, "%s/identity", r->dir);
    const char *argv[64] = {WZP_RELAY_BIN, "--listen", listen, "-i", identity, "--log-level",
                            "debug"};
    int argc = 7;
    for (int i = 0; extra_args && extra_args[i] && argc < 62; i++)
        argv[argc++] = extra_args[i];
    argv[argc] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(r->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, STDERR_FILENO);
        dup2(fd, STDOUT_FILENO);
        execv(WZP_RELAY_BIN, (char *const *)argv);
        _exit(127);
    }
    r->pid = pid;
    if (!relay_log_wait(r, "listening on udp", 5000)) {
        relay_dump_log(r);
        kill(pid, SIGKILL);
        cr_assert_fail("relay did not start");
    }
    sleep_ms(50); /* workers enter their loops */
}

int relay_stop(struct relay_proc *r, unsigned timeout_ms)
{
    if (r->pid <= 0)
        return -1;
    kill(r->pid, SIGTERM);
    int status;
    for (unsigned waited = 0;; waited += 10) {
        pid_t p = waitpid(r->pid, &status, WNOHANG);
        if (p == r->pid)
            break;
        if (waited >= timeout_ms) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, &status, 0);
            r->pid = 0;
            return -1;
        }
        sleep_ms(10);
    }
    r->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

uint64_t relay_counter(struct relay_proc *r, const char *name)
{
    unsigned before = relay_log_count(r, "stats:");
    kill(r->pid, SIGUSR1);
    for (unsigned waited = 0; relay_log_count(r, "stats:") <= before && waited < 3000;
         waited += 10)
        sleep_ms(10);
    char *log = read_log(r);
    char key[96];
    snprintf(key, sizeof key, " %s=", name);
    uint64_t value = UINT64_MAX;
    /* the last stats line wins */
    for (char *p = log; (p = strstr(p, key)); p += strlen(key))
        value = strtoull(p + strlen(key), NULL, 10);
    free(log);
    cr_assert(value != UINT64_MAX, "counter %s not found in the relay log", name);
    return value;
}
