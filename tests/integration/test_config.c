/*
 * test_config.c - the relay started from TOML config files (-c), upstream-style ones too.
 */
#include "harness.h"

#include "common.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct ev_loop *loop;
static struct relay_proc relay;

static void stop_relay(void)
{
    relay_finish(&relay);
}

TestSuite(config, .fini = stop_relay, .timeout = 60);

static const char *write_config(const char *text)
{
    static char path[96];
    char dir[64];
    scratch_dir(dir, sizeof dir, "cfg");
    snprintf(path, sizeof path, "%s/relay.toml", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* An upstream relay.toml, as upstream's own template writes it. */
static const char *const upstream_config =
    "# WarzonePhone relay configuration\n"
    "listen_addr = \"0.0.0.0:4433\"\n"
    "max_sessions = 2\n"
    "jitter_target_depth = 50\n"
    "jitter_max_depth = 250\n"
    "log_level = \"info\"\n"
    "probe_targets = []\n"
    "probe_mesh = false\n"
    "trunking_enabled = false\n"
    "\n"
    "[[peers]]\n"
    "url = \"192.0.2.10:4433\"\n"
    "fingerprint = \"aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:"
    "44:55:66:77:88:99\"\n"
    "label = \"Relay B\"\n"
    "\n"
    "[[global_rooms]]\n"
    "name = \"podcast\"\n";

Test(config, upstream_config_starts_the_relay)
{
    const char *path = write_config(upstream_config);
    const char *const args[] = {"-c", path, NULL};
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, args); /* the harness's --listen (a free port) comes first */
    cr_assert(relay_log_count(&relay, "peers/trusted/global_rooms is accepted but ignored") > 0,
              "say what is not implemented");
    cr_assert(relay_log_count(&relay, "max-sessions 2") > 0, "max_sessions from the file");
    struct tc a, b, c;
    tc_connect(&a, loop, &relay, "room", 1, NULL);
    tc_connect(&b, loop, &relay, "room", 2, NULL);
    cr_assert(tc_wait_state(&a, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_state(&b, loop, WZPC_JOINED, 5000));
    tc_connect(&c, loop, &relay, "room", 3, NULL);
    cr_assert(tc_wait_state(&c, loop, WZPC_CLOSED, 5000), "the third is over max_sessions");
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
}

Test(config, flags_override_the_file)
{
    const char *path = write_config("max_sessions = 1\nthreads = 1\n");
    const char *const args[] = {"-c", path, "--max-sessions", "5", NULL};
    relay_start(&relay, args);
    cr_assert(relay_log_count(&relay, "max-sessions 5") > 0);
    cr_assert(relay_log_count(&relay, "with 1 worker") > 0, "threads from the file");
}

Test(config, room_affinity_can_be_turned_off_in_the_file)
{
    const char *path = write_config("threads = 2\nroom_affinity = false\n");
    const char *const args[] = {"-c", path, NULL};
    relay_start(&relay, args);
    cr_assert(relay_log_count(&relay, "room affinity off (--no-room-affinity)") > 0);
}

Test(config, broken_config_fails_with_file_and_line)
{
    const char *path = write_config("listen_addr = \"0.0.0.0:4433\"\n"
                                    "max_sesions = 10\n");
    const char *const args[] = {"-c", path, NULL};
    cr_assert_eq(relay_run_to_exit(&relay, NULL, args, 5000), 2);
    char expect[160];
    snprintf(expect, sizeof expect,
             "%s:2: unknown key 'max_sesions' (did you mean 'max_sessions'?)", path);
    cr_assert(relay_log_count(&relay, expect) > 0, "want: %s", expect);

    path = write_config("max_sessions = \"many\"\n");
    const char *const args2[] = {"-c", path, NULL};
    cr_assert_eq(relay_run_to_exit(&relay, NULL, args2, 5000), 2);
    cr_assert(relay_log_count(&relay, ":1:") > 0);
}

Test(config, auth_url_from_the_file_turns_authentication_on)
{
    const char *path = write_config("auth_url = \"http://127.0.0.1:7700/v1/auth/validate\"\n");
    const char *const args[] = {"-c", path, NULL};
    relay_start(&relay, args);
    cr_assert(relay_log_wait(&relay, "featherChat authentication on", 2000));
    cr_assert(relay_log_count(&relay, "validated at http://127.0.0.1:7700/v1/auth/validate") > 0);
    relay_finish(&relay);
    path = write_config("auth_url = \"chat.example.org\"\n");
    const char *const args2[] = {"-c", path, NULL};
    cr_assert_eq(relay_run_to_exit(&relay, NULL, args2, 5000), 2);
    cr_assert(relay_log_count(&relay, "must be an http:// or https:// URL") > 0);
}

Test(config, missing_config_file_is_an_error)
{
    const char *const args[] = {"-c", "/nonexistent/relay.toml", NULL};
    cr_assert_eq(relay_run_to_exit(&relay, NULL, args, 5000), 2);
    cr_assert(relay_log_count(&relay, "does not exist") > 0);
}

Test(config, shipped_example_config_starts_the_relay)
{
    const char *const args[] = {"-c", WZP_SOURCE_DIR "/examples/relay.toml", NULL};
    relay_start(&relay, args);
}

Test(config, an_identity_others_can_read_is_warned_about)
{
    /* The harness writes the seed with fopen: mode 0644 under umask 022. */
    mode_t old = umask(022);
    relay_start_with_identity(
        &relay, "4242424242424242424242424242424242424242424242424242424242424242\n", NULL);
    umask(old);
    cr_assert(relay_log_wait(&relay, "readable or writable by others", 0));
    cr_assert(relay_log_wait(&relay, "chmod 600", 0), "the warning says what to do");
}
