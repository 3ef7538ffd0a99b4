/* cmd_serve.c — `smmuctl serve`: its own options (pairs of --qmp/--vm may repeat, unlike elsewhere), the engine
 * backend, then the daemon (serve/daemon.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "serve/backend_engine.h"
#include "serve/daemon.h"
#include "serve/notify.h"

const char cmd_serve_help[] =
    "Run the sidecar: one process and one event loop holding any number of VMs, each VM's only QMP connection\n"
    "(reconnected with backoff, reconciled on every connect as `recover` does), serving the HTTP/1.1 + JSON API\n"
    "of docs/openapi.json on a unix socket (README \"serve\"; curl --unix-socket PATH http://localhost/healthz).\n"
    "Registrations persist in <state-dir>/vms/ and are taken back on restart; a direct `smmuctl --qmp` on a VM\n"
    "the daemon holds fails at once, naming it.\n"
    "  --listen unix:PATH  the API socket (mode 0600; a stale socket file is replaced, a live one refused)\n"
    "  --group NAME        make the socket 0660 and owned by group NAME\n"
    "  --qmp ADDR --vm NAME  register this VM at start (repeatable, in pairs; an existing registration with\n"
    "                      another address is an error)\n"
    "  --state-dir DIR     journals, locks, vms/, idempotency keys (default /run/smmuctl; env SMMUCTL_STATE_DIR)\n"
    "  --log FILE          log there instead of stderr (reopened on SIGHUP)\n"
    "  --sysfs DIR, --dev DIR, --timeout SEC, -v/--verbose, --quiet: as for the other commands\n"
    "SIGTERM/SIGINT: stop accepting, let in-flight work finish up to 10 s (the journal keeps the rest), exit 0.\n"
    "SIGHUP: reopen the log. Under systemd (the unit dist/systemd/smmuctl.service): READY=1 once listening with the\n"
    "registrations loaded, STATUS= with VM counts, STOPPING=1, WATCHDOG=1 when WatchdogSec= is set; log lines\n"
    "carry journal priorities. Exit 0 after a clean stop, 2 when it cannot start (usage, socket, state dir).\n";

enum { O_LISTEN = 1000, O_GROUP, O_VM, O_STATE_DIR, O_SYSFS, O_DEV, O_TIMEOUT, O_LOG, O_QUIET };

static const struct option serve_opts[] = {
    {"listen", required_argument, NULL, O_LISTEN},
    {"group", required_argument, NULL, O_GROUP},
    {"qmp", required_argument, NULL, 'q'},
    {"vm", required_argument, NULL, O_VM},
    {"state-dir", required_argument, NULL, O_STATE_DIR},
    {"sysfs", required_argument, NULL, O_SYSFS},
    {"dev", required_argument, NULL, O_DEV},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"log", required_argument, NULL, O_LOG},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, O_QUIET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_err(const char *fmt, ...)
{
    va_list ap;
    fputs("smmuctl serve: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see smmuctl serve --help)\n", stderr);
    return EXIT_USAGE;
}

static void engine_log(int level, const char *vm, const char *msg, void *payload)
{
    char buf[1200];
    int prio = level <= 0 ? SV_LOG_DEBUG : level == 1 ? SV_LOG_INFO : SV_LOG_WARNING;
    if (vm)
        snprintf(buf, sizeof(buf), "vm %s: %s", vm, msg);
    else
        snprintf(buf, sizeof(buf), "%s", msg);
    sv_daemon_log(prio, buf);
}

/* Where the command word `serve` is in argv (0: not a serve command line). Globals may come first: skip
 * them (and the values of those that take one) up to the first word. */
static int serve_index(int argc, char **argv)
{
    static const char *const with_value[] = { "-q", "--qmp", "-S", "--server", "--vm", "--state-dir", "--sysfs",
                                              "--dev", "--timeout", "--record", "--listen", "--group", "--log", NULL };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool takes = false;
        if (!strcmp(a, "--"))
            return i + 1 < argc && !strcmp(argv[i + 1], "serve") ? i + 1 : 0;
        if (a[0] != '-')
            return !strcmp(a, "serve") ? i : 0;
        for (size_t k = 0; with_value[k]; k++)
            if (!strcmp(a, with_value[k]))
                takes = true;
        if (takes)
            i++;
    }
    return 0;
}

bool cli_is_serve(int argc, char **argv)
{
    return serve_index(argc, argv) > 0;
}

int cmd_serve_main(int argc, char **argv)
{
    const char *listen = NULL, *group = NULL, *log_path = NULL, *sysfs = NULL, *dev = NULL;
    const char *state_dir = getenv("SMMUCTL_STATE_DIR");
    const char *qmps[256], *names[256];
    size_t nq = 0, nn = 0;
    double timeout_s = 10;
    int verbose = 0, opt, rc;
    char **av = calloc((size_t)argc + 1, sizeof(char *));
    int ac = 0;
    struct sv_daemon_vm vms[256];
    struct sv_daemon_opts o;
    struct sv_engine_opts eo = {0};
    struct smmu_error e = SMMU_ERROR_INIT;
    struct sv_backend *b;
    struct event_base *base;
    char server_addr[PATH_MAX + 8], abs_listen[PATH_MAX];

    int word = serve_index(argc, argv);

    /* drop the command word (and a "--" before it); getopt then sees only options */
    for (int i = 0; i < argc; i++)
        if (i != word && !(i == word - 1 && !strcmp(argv[i], "--")))
            av[ac++] = argv[i];
    if (!state_dir || !*state_dir)
        state_dir = "/run/smmuctl";
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(ac, av, ":q:vh", serve_opts, NULL)) != -1) {
        switch (opt) {
        case O_LISTEN: listen = optarg; break;
        case O_GROUP: group = optarg; break;
        case 'q':
            if (nq == 256) { free(av); return usage_err("at most 256 --qmp/--vm pairs"); }
            qmps[nq++] = optarg;
            break;
        case O_VM:
            if (nn == 256) { free(av); return usage_err("at most 256 --qmp/--vm pairs"); }
            names[nn++] = optarg;
            break;
        case O_STATE_DIR: state_dir = optarg; break;
        case O_SYSFS: sysfs = optarg; break;
        case O_DEV: dev = optarg; break;
        case O_TIMEOUT: {
            char *end;
            timeout_s = strtod(optarg, &end);
            if (*end || !(timeout_s > 0 && timeout_s <= 86400)) {
                free(av);
                return usage_err("--timeout: '%s' is not a positive number of seconds", optarg);
            }
            break;
        }
        case O_LOG: log_path = optarg; break;
        case 'v': verbose++; break;
        case O_QUIET: verbose = -1; break;
        case 'h':
            free(av);
            printf("Usage: smmuctl serve --listen unix:PATH [--group NAME] [--qmp ADDR --vm NAME]... "
                   "[--state-dir DIR] [--log FILE]\n\n%s", cmd_serve_help);
            return EXIT_DONE;
        case ':': {
            const char *n = av[optind - 1];
            free(av);
            return usage_err("option %s needs a value", n);
        }
        default: {
            const char *n = av[optind - 1];
            free(av);
            return usage_err("unknown option '%s'", n);
        }
        }
    }
    if (optind < ac) {
        const char *n = av[optind];
        free(av);
        return usage_err("unexpected argument '%s'", n);
    }
    free(av);
    if (!listen)
        return usage_err("--listen unix:PATH is required");
    if (!strncmp(listen, "unix:", 5))
        listen += 5;
    if (!*listen)
        return usage_err("--listen: an empty path");
    if (nq != nn)
        return usage_err("--qmp and --vm come in pairs (%zu --qmp, %zu --vm)", nq, nn);
    for (size_t i = 0; i < nq; i++) {
        vms[i].qmp = qmps[i];
        vms[i].name = names[i];
    }
    /* the lock files name the daemon by an address that works from any directory */
    if (listen[0] != '/' && realpath(".", abs_listen))
        snprintf(server_addr, sizeof(server_addr), "unix:%s/%s", abs_listen, listen);
    else
        snprintf(server_addr, sizeof(server_addr), "unix:%s", listen);

    sv_daemon_log_setup(verbose);
    base = event_base_new();
    if (!base) {
        fprintf(stderr, "smmuctl serve: cannot create the event loop\n");
        return EXIT_FAILED;
    }
    eo.state_dir = state_dir;
    eo.sysfs_root = sysfs;
    eo.dev_root = dev;
    eo.server = server_addr;
    eo.command_timeout_ms = (int)(timeout_s * 1000);
    eo.log = engine_log;
    b = sv_backend_engine_new(base, &eo, &e);
    if (!b) {
        fprintf(stderr, "smmuctl serve: %s\n", e.message);
        event_base_free(base);
        return EXIT_USAGE;
    }
    memset(&o, 0, sizeof(o));
    sv_server_opts_default(&o.server);
    o.server.listen_path = listen;
    o.server.group = group;
    o.server.state_dir = state_dir;
    o.vms = vms;
    o.nvms = nq;
    o.log_path = log_path;
    o.verbose = verbose;
    rc = sv_daemon_run(base, b, &o);
    b->ops->free(b);
    event_base_free(base);
    return rc;
}

int cmd_serve(struct cli *cli)
{
    /* main() hands `serve` command lines to cmd_serve_main before the global parser sees them */
    return cli_usage_error(cli, "serve", "put serve's options after the word serve (see smmuctl serve --help)");
}
