/* qmp-replay — serve one QMP transcript fixture on a unix socket to one client (e.g. a spawned smmuctl).
 *
 *   qmp-replay [--timeout MS] [--end-timeout MS] FIXTURE SOCKET
 *
 * Prints "listening SOCKET" on stdout once the socket accepts connections (the path itself appears only
 * then, too). Exit 0 when the client played the whole fixture exactly (and then closed, or stayed quiet for
 * the end timeout), 1 with the report on stderr otherwise, 2 for usage errors and bad fixtures.
 */
#include "replay_server.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: qmp-replay [--timeout MS] [--end-timeout MS] FIXTURE SOCKET\n"
               "  --timeout MS      bound for each wait on the client (default 5000)\n"
               "  --end-timeout MS  after the last line, wait this long for the client to close (default 5000)\n");
}

static int parse_ms(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v <= 0 || v > 3600000)
        return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"timeout", required_argument, NULL, 't'},
        {"end-timeout", required_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct replay_opts opts = REPLAY_OPTS_INIT;
    struct smmu_error err = SMMU_ERROR_INIT;
    struct replay_server *s;
    int c, r;

    while ((c = getopt_long(argc, argv, "t:e:h", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
        case 'e':
            if (parse_ms(optarg, c == 't' ? &opts.line_timeout_ms : &opts.end_timeout_ms) < 0) {
                fprintf(stderr, "qmp-replay: --%s needs milliseconds, got '%s'\n",
                        c == 't' ? "timeout" : "end-timeout", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return 2;
    }
    r = replay_server_start_opts(&s, argv[optind], argv[optind + 1], NULL, &opts, &err);
    if (r < 0) {
        fprintf(stderr, "qmp-replay: %s\n", err.message);
        return 2;
    }
    printf("listening %s\n", argv[optind + 1]);
    fflush(stdout);
    r = replay_server_wait(s, -1);
    if (r < 0)
        fprintf(stderr, "qmp-replay: the client did not play %s exactly:\n%s", argv[optind],
                replay_server_report(s));
    replay_server_free(s);
    return r < 0 ? 1 : 0;
}
