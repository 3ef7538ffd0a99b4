/* main.c — smmuctl: parse options, pick the command, map outcomes to exit codes. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

struct command {
    const char *name;
    int (*run)(struct cli *cli);
    const char *synopsis;
    const char *help;
};

static const struct command commands[] = {
    {"topology", cmd_topology, "topology [--xml] [--domain FILE]",
     "Show the VM's vSMMUs (id, accel, pxb-pcie id and bus_nr, NUMA node, bound host SMMU), their root ports\n"
     "(chassis/port, hotplug, occupant id and driver), the root ports behind no vSMMU (anonymous ones marked:\n"
     "smmuctl never uses a port without an id) and the iommufd objects, as discovered from QEMU over QOM.\n"
     "A vSMMU's binding comes from its vfio-pci devices' hosts (read under --sysfs) and the VM's journal, if\n"
     "any. Changes nothing. --json prints the stable object documented in docs/topology-json.md.\n"
     "  --xml          the same facts as a libvirt <devices> fragment that libvirt turns back into the same\n"
     "                 QEMU topology: pcie-expander-bus controllers (busNr, NUMA node), pcie-root-ports on\n"
     "                 their buses (chassis/port), <iommu model='smmuv3'><driver pciBus=…/> in libvirt's\n"
     "                 iommuK order, the vfio-pci devices as <hostdev>s (<driver iommufd='yes'/>, alias\n"
     "                 ua-<id>). Ids that are not libvirt's pci.1..pci.M are renumbered, each noted in a\n"
     "                 comment. With --json: an \"xml\" member.\n"
     "  --domain FILE  check the VM's libvirt domain XML (virsh dumpxml) against it by libvirt's id rules\n"
     "                 (controller index N = pci.N, K-th <iommu> = iommuK, ua- aliases) and list every\n"
     "                 disagreement (pxb busNr/NUMA, root ports' bus/chassis/port, <iommu> pciBus/accel, missing\n"
     "                 or extra devices, hostdevs) with its line; --json: a \"domain\" member. Exit 0 either way.\n"
     "Exit 0, or 3 when QEMU cannot be reached or read.\n"},
    {"plan", cmd_plan, "plan DEV... [--fd-pass] [--iommufd ID] [--id ID] [--allow-mismatch] [--require-fit] [--domain FILE [--force]]",
     "Show where each device would go (host SMMU, chosen vSMMU, root port, and why) and the exact QMP\n"
     "commands attach would send, in order, as compact JSON (getfd steps name the file passed). Changes\n"
     "nothing. DEV is a PCI address or @FILE (libvirt <hostdev> XML); host facts are read under --sysfs and\n"
     "fd paths under --dev. The options mean what they mean for attach (--domain disagreements are listed and\n"
     "refuse the plan unless --force). --json: docs/plan-json.md.\n"
     "Exit 0 planned, 2 bad input or refused (the planner's reason), 3 QEMU unreachable or unreadable.\n"},
    {"attach", cmd_attach, "attach DEV... [--fd-pass] [--iommufd ID] [--id ID] [--allow-mismatch] [--require-fit] [--domain FILE [--force]]",
     "Plug host PCI devices (bound to vfio-pci) into the VM as one transaction: the iommufd object if missing\n"
     "(reused if present), then one device_add vfio-pci per device on a free root port behind the vSMMU that\n"
     "mirrors the device's host SMMU. Any failure undoes every completed step (exit 1, QEMU as before).\n"
     "  --fd-pass         open <dev>/iommu and <dev>/vfio/devices/vfioN here and pass them (getfd) instead of\n"
     "                    letting QEMU open the device by `host` (for a QEMU without access to /dev)\n"
     "  --iommufd ID      the iommufd object to use or create (default iommufd0)\n"
     "  --id ID           QEMU id for the device (one device only; default hostdev-dddd-bb-ss.f)\n"
     "  --allow-mismatch  allow a device behind a NON-accel vSMMU bound to another host SMMU\n"
     "  --domain FILE     the VM's libvirt domain XML: any disagreement with the live VM (see help topology)\n"
     "                    refuses the attach (exit 2, nothing sent, every one listed); a device that is one of\n"
     "                    its hostdevs takes its <alias name='ua-…'/> as QEMU id and goes to the root port its\n"
     "                    guest <address bus='0xN'/> names (pci.N), or is refused with the reason when that\n"
     "                    breaks the SMMU rules (no vSMMU there, a vSMMU bound to another host SMMU, taken)\n"
     "  --force           attach despite --domain disagreements (the aliases and guest addresses still apply)\n"
     "  --require-fit     refuse (exit 2, nothing sent) a device when no free root port behind its vSMMU has\n"
     "                    reserved windows (pref64-reserve, mem-reserve) that fit its BARs; without it such a\n"
     "                    device goes on the lowest free port with a warning (stderr; --json \"warnings\")\n"
     "Among the free ports behind the right vSMMU a port whose windows fit the device's BARs (sized as layout\n"
     "sizes them) is preferred over the lowest (chassis, port).\n"},
    {"detach", cmd_detach, "detach DEV... [--unplug-timeout SEC] [--no-wait]",
     "Unplug devices (QEMU id or host PCI address): every device_del is sent at once and DEVICE_DELETED is\n"
     "awaited for all in parallel. Each device ends detached, pending (the guest has not released it yet:\n"
     "`smmuctl status` finishes it later) or refused (the guest refused). The iommufd object smmuctl created\n"
     "is deleted once no vfio-pci device uses it. Exit 0 all gone, 1 none removed and none pending, 4 otherwise.\n"
     "  --unplug-timeout SEC  how long to wait for the guest (default 10)\n"
     "  --no-wait             do not wait: accepted unplugs are reported pending\n"},
    {"status", cmd_status, "status",
     "Compare the journal with live QEMU: attached devices, pending unplugs (finishing those QEMU has\n"
     "completed meanwhile) and any interrupted transaction. Exit 0 when nothing is pending or interrupted,\n"
     "4 when something is, 3 when QEMU is unreachable.\n"},
    {"recover", cmd_recover, "recover",
     "Finish or undo an interrupted transaction (smmuctl killed, QEMU gone mid-way): each step whose reply\n"
     "never came is checked against live QEMU, an interrupted attach is rolled back, an interrupted detach is\n"
     "finished. Idempotent. Exit 0 when nothing is left open, 4 when something still is.\n"},
    {"qmp", cmd_qmp, "qmp COMMAND [JSON-ARGS]",
     "Send one QMP command and print QEMU's reply. JSON-ARGS is the \"arguments\" object, e.g.\n"
     "  smmuctl --qmp /run/vm1.qmp qmp qom-list '{\"path\":\"/machine/peripheral\"}'\n"
     "Exit 1 with QEMU's error class and desc when QEMU refuses the command.\n"},
    {"doctor", cmd_doctor, "doctor [DEV...]",
     "Check that the host and (with --qmp) the VM are ready to hot-plug these devices, without changing\n"
     "anything. Host (under --sysfs and --dev): /dev/iommu, the VFIO cdevs (/dev/vfio/devices), each device's\n"
     "driver, IOMMU group viability, host SMMU, cdev and BAR sizes (sysfs resource). VM, from exactly the QOM\n"
     "discovery topology does (nothing else is sent): QEMU version, the iommufd object, a vSMMU for every host\n"
     "SMMU in use (placed as attach would) and its accel, free hot-pluggable ports per vSMMU, each free port's\n"
     "reserved windows (pref64-reserve, mem-reserve) against the devices' BARs, the pxb's numa_node (128 =\n"
     "unset) against the device's. Every finding is ok, warn or fail with what was seen, why it matters and\n"
     "the fix (the QEMU option or libvirt element). Without DEV only the host and VM-wide checks run.\n"
     "--json: {\"ok\",\"command\":\"doctor\",\"exit_code\",\"findings\":[{\"status\",\"check\",\"subject\",\"what\",\"why\",\"fix\"}…],\n"
     "\"summary\":{\"ok\",\"warn\",\"fail\"}}. Exit 0 every finding ok, 5 a warning, 6 a failure, 2 usage,\n"
     "3 QEMU unreachable or unreadable.\n"},
    {"layout", cmd_layout, "layout DEV... [--format qemu|xml] [--spare N] [--no-accel]",
     "Print the boot topology a VM needs so that these host devices can be hot-plugged later, from host facts\n"
     "alone (no --qmp): per host SMMU the devices sit behind, one pxb-pcie (numa_node from the devices, bus\n"
     "numbers that do not collide), one arm-smmuv3 on it (accel=on unless --no-accel) and (devices + N)\n"
     "hot-pluggable pcie-root-ports with pref64-reserve / mem-reserve sized from the devices' BARs (sysfs\n"
     "resource), and the iommufd object. Ids are libvirt's (pci.K, iommuK), so both formats name the same.\n"
     "  --format qemu     QEMU arguments, one per line (default): `mapfile -t A < file; qemu ... \"${A[@]}\"`\n"
     "  --format xml      a libvirt <devices> fragment (+ <qemu:override> for pref64-reserve); says where it goes\n"
     "  --spare N         free ports per vSMMU beyond one per device (default 1)\n"
     "  --no-accel        arm-smmuv3 without accel=on (TCG, or no nested-translation host)\n"
     "--json: {\"ok\":true,\"command\":\"layout\",\"vsmmus\":[…],\"qemu\":[…],\"xml\":\"…\",\"warnings\":[…]}.\n"
     "Exit 0, 2 bad input (unknown device, no host SMMU, devices of one SMMU on two NUMA nodes, too many ports).\n"},
    {"serve", cmd_serve, "serve --listen unix:PATH [--group NAME] [--qmp ADDR --vm NAME]... [--log FILE]", NULL},
    {NULL, NULL, NULL, NULL},
};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: smmuctl [GLOBAL OPTIONS] COMMAND [ARGS]\n"
            "\n"
            "Hot-plug VFIO PCI devices into a running QEMU, each behind the vSMMU (arm-smmuv3) that mirrors\n"
            "its host SMMU, all-or-nothing and crash-safe.\n"
            "\n"
            "Commands:\n");
    for (const struct command *c = commands; c->name; c++)
        fprintf(f, "  %s\n", c->synopsis);
    fprintf(f,
            "\n"
            "Global options:\n"
            "  -q, --qmp ADDR        the VM's QMP monitor: PATH | unix:PATH | tcp:HOST:PORT (env SMMUCTL_QMP)\n"
            "  -S, --server unix:PATH  go through a running `smmuctl serve` instead (env SMMUCTL_SERVER; needs\n"
            "                        --vm): topology, plan, attach, detach, status and recover print the same\n"
            "                        text, --json and exit codes; the daemon is unreachable: exit 3; a VM it does\n"
            "                        not hold: exit 2. Not with --qmp, --domain, --force, --require-fit, --xml,\n"
            "                        --no-wait, --record (--sysfs, --dev, --state-dir are the daemon's own)\n"
            "      --vm NAME         VM name (names the journal; default: derived from the QMP address; with\n"
            "                        --server: the name the daemon holds it by, required)\n"
            "      --state-dir DIR   journals and locks (default /run/smmuctl; env SMMUCTL_STATE_DIR)\n"
            "      --sysfs DIR       host sysfs root (default /sys)\n"
            "      --dev DIR         host /dev root used for fd passing (default /dev)\n"
            "      --timeout SEC     per QMP command (default 10)\n"
            "      --json            print exactly one JSON object on stdout (also on failure)\n"
            "      --unplug-timeout SEC, --no-wait, --fd-pass, --iommufd ID, --id ID, --allow-mismatch:\n"
            "                        command options, see smmuctl help attach / help detach\n"
            "      --xml, --domain FILE, --force: libvirt XML out and the domain cross-check, see\n"
            "                        smmuctl help topology / help attach\n"
            "      --record FILE     append the whole QMP exchange to FILE (qmp-fixtures format)\n"
            "  -v, --verbose         more diagnostics on stderr, every QMP message both ways among them;\n"
            "      --quiet           only errors (no progress line on a terminal, no notes)\n"
            "  -h, --help            this help (smmuctl help COMMAND for one command)\n"
            "  -V, --version         print the version\n"
            "\n"
            "DEV is a PCI address (0009:01:00.0, or 01:00.0 for domain 0000), for detach also a QEMU device id,\n"
            "or @FILE: a libvirt XML file with one or more <hostdev> elements.\n"
            "\n"
            "Exit codes: 0 done; 1 failed, every change rolled back; 2 usage, bad input or refused plan\n"
            "(nothing that changes QEMU was sent); 3 QEMU unreachable or protocol broken before any change;\n"
            "4 incomplete (an unplug is pending or a rollback could not finish: see status/recover);\n"
            "doctor: 0 every finding ok, 5 a warning, 6 a failure.\n");
}

static const struct command *find_command(const char *name)
{
    for (const struct command *c = commands; c->name; c++)
        if (!strcmp(c->name, name))
            return c;
    return NULL;
}

static int command_help(const char *name)
{
    const struct command *c = find_command(name);
    if (!c) {
        fprintf(stderr, "smmuctl: unknown command '%s' (see smmuctl --help)\n", name);
        return EXIT_USAGE;
    }
    printf("Usage: smmuctl [GLOBAL OPTIONS] %s\n\n%s", c->synopsis, c->help ? c->help : cmd_serve_help);
    return EXIT_DONE;
}

enum {
    OPT_VM = 1000, OPT_STATE_DIR, OPT_SYSFS, OPT_DEV, OPT_TIMEOUT, OPT_JSON, OPT_RECORD, OPT_QUIET,
    OPT_FD_PASS, OPT_IOMMUFD, OPT_ID, OPT_ALLOW_MISMATCH, OPT_UNPLUG_TIMEOUT, OPT_NO_WAIT,
    OPT_FORMAT, OPT_SPARE, OPT_NO_ACCEL, OPT_XML, OPT_DOMAIN, OPT_FORCE, OPT_REQUIRE_FIT,
};

static const struct option long_opts[] = {
    {"qmp", required_argument, NULL, 'q'},
    {"server", required_argument, NULL, 'S'},
    {"vm", required_argument, NULL, OPT_VM},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"sysfs", required_argument, NULL, OPT_SYSFS},
    {"dev", required_argument, NULL, OPT_DEV},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"json", no_argument, NULL, OPT_JSON},
    {"record", required_argument, NULL, OPT_RECORD},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {"fd-pass", no_argument, NULL, OPT_FD_PASS},
    {"iommufd", required_argument, NULL, OPT_IOMMUFD},
    {"id", required_argument, NULL, OPT_ID},
    {"allow-mismatch", no_argument, NULL, OPT_ALLOW_MISMATCH},
    {"unplug-timeout", required_argument, NULL, OPT_UNPLUG_TIMEOUT},
    {"no-wait", no_argument, NULL, OPT_NO_WAIT},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"spare", required_argument, NULL, OPT_SPARE},
    {"no-accel", no_argument, NULL, OPT_NO_ACCEL},
    {"require-fit", no_argument, NULL, OPT_REQUIRE_FIT},
    {"xml", no_argument, NULL, OPT_XML},
    {"domain", required_argument, NULL, OPT_DOMAIN},
    {"force", no_argument, NULL, OPT_FORCE},
    {NULL, 0, NULL, 0},
};

/* Seconds as a positive decimal ("10", "0.5"); -1 if malformed. */
static double parse_seconds(const char *s)
{
    char *end;
    double v;
    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || v <= 0 || v > 86400)
        return -1;
    return v;
}

/* Which command may take which command option. */
static int check_option_scope(struct cli *cli, int opt, const char *optname)
{
    static const struct { int opt; const char *cmds; } scope[] = {
        {OPT_FD_PASS, " attach plan "}, {OPT_IOMMUFD, " attach plan "}, {OPT_ID, " attach plan "},
        {OPT_ALLOW_MISMATCH, " attach plan "}, {OPT_REQUIRE_FIT, " attach plan "},
        {OPT_UNPLUG_TIMEOUT, " detach "}, {OPT_NO_WAIT, " detach "},
        {OPT_FORMAT, " layout "}, {OPT_SPARE, " layout "}, {OPT_NO_ACCEL, " layout "},
        {OPT_XML, " topology "}, {OPT_DOMAIN, " topology plan attach "}, {OPT_FORCE, " attach plan "},
    };
    for (size_t i = 0; i < sizeof(scope) / sizeof(scope[0]); i++) {
        if (scope[i].opt != opt)
            continue;
        char key[64];
        snprintf(key, sizeof(key), " %s ", cli->command ? cli->command : "");
        if (!strstr(scope[i].cmds, key))
            return cli_usage_error(cli, cli->command, "option --%s is only valid with:%s", optname, scope[i].cmds);
    }
    return 0;
}

static int cli_main(int argc, char **argv)
{
    struct cli cli = {0};
    int opt, r, longindex;
    struct { int opt; const char *name; } seen[64];
    size_t nseen = 0;

    signal(SIGPIPE, SIG_IGN);
    cli.qmp_addr = getenv("SMMUCTL_QMP");
    cli.server_addr = getenv("SMMUCTL_SERVER");
    bool qmp_flag = false, server_flag = false;
    cli.state_dir = getenv("SMMUCTL_STATE_DIR");
    if (!cli.state_dir || !*cli.state_dir)
        cli.state_dir = "/run/smmuctl";
    cli.sysfs = "/sys";
    cli.dev = "/dev";
    cli.timeout_s = 10;
    cli.unplug_timeout_s = 10;

    opterr = 0;
    while ((longindex = -1, opt = getopt_long(argc, argv, ":q:S:vhV", long_opts, &longindex)) != -1) {
        const char *name = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        switch (opt) {
        case 'q': cli.qmp_addr = optarg; qmp_flag = true; break;
        case 'S': cli.server_addr = optarg; server_flag = true; break;
        case OPT_VM: cli.vm = optarg; break;
        case OPT_STATE_DIR: cli.state_dir = optarg; break;
        case OPT_SYSFS: cli.sysfs = optarg; break;
        case OPT_DEV: cli.dev = optarg; break;
        case OPT_TIMEOUT:
            if ((cli.timeout_s = parse_seconds(optarg)) < 0)
                return cli_usage_error(&cli, NULL, "--timeout: '%s' is not a positive number of seconds", optarg);
            break;
        case OPT_JSON: cli.json = true; break;
        case OPT_RECORD: cli.record_path = optarg; break;
        case 'v': cli.verbose++; break;
        case OPT_QUIET: cli.verbose = -1; break;
        case 'h':
            usage(stdout);
            return EXIT_DONE;
        case 'V':
            printf("smmuctl %s\n", SMMUCTL_VERSION);
            return EXIT_DONE;
        case OPT_FD_PASS: cli.fd_pass = true; break;
        case OPT_IOMMUFD: cli.iommufd_id = optarg; break;
        case OPT_ID: cli.device_id = optarg; break;
        case OPT_ALLOW_MISMATCH: cli.allow_mismatch = true; break;
        case OPT_UNPLUG_TIMEOUT:
            if ((cli.unplug_timeout_s = parse_seconds(optarg)) < 0)
                return cli_usage_error(&cli, NULL, "--unplug-timeout: '%s' is not a positive number of seconds",
                                       optarg);
            break;
        case OPT_NO_WAIT: cli.no_wait = true; break;
        case OPT_FORMAT: cli.format = optarg; break;
        case OPT_SPARE: {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || !*optarg || *end || v < 0 || v > 31)
                return cli_usage_error(&cli, NULL, "--spare: '%s' is not a number of ports from 0 to 31", optarg);
            cli.spare = (unsigned)v;
            cli.spare_set = true;
            break;
        }
        case OPT_NO_ACCEL: cli.no_accel = true; break;
        case OPT_REQUIRE_FIT: cli.require_fit = true; break;
        case OPT_XML: cli.xml = true; break;
        case OPT_DOMAIN: cli.domain_path = optarg; break;
        case OPT_FORCE: cli.force = true; break;
        case ':':
            return cli_usage_error(&cli, NULL, "option %s needs a value (see smmuctl --help)", name);
        default:
            return cli_usage_error(&cli, NULL, "unknown option '%s' (see smmuctl --help)", name);
        }
        if (opt >= OPT_FD_PASS && nseen < sizeof(seen) / sizeof(seen[0])) {
            /* the option's own name: argv[optind - 1] is its value when given as "--opt VALUE" */
            const char *n = longindex >= 0 ? long_opts[longindex].name : name;
            while (*n == '-')
                n++;
            seen[nseen].opt = opt;
            seen[nseen++].name = n;
        }
    }
    if (optind >= argc) {
        if (cli.json)
            return cli_usage_error(&cli, NULL, "no command given (see smmuctl --help)");
        usage(stderr);
        return EXIT_USAGE;
    }
    cli.command = argv[optind];
    cli.args = argv + optind + 1;
    cli.nargs = argc - optind - 1;
    if (!strcmp(cli.command, "help")) {
        if (cli.nargs == 0) {
            usage(stdout);
            return EXIT_DONE;
        }
        return command_help(cli.args[0]);
    }
    const struct command *c = find_command(cli.command);
    if (!c)
        return cli_usage_error(&cli, NULL, "unknown command '%s' (see smmuctl --help)", cli.command);
    for (size_t i = 0; i < nseen; i++) {
        char nm[64];
        snprintf(nm, sizeof(nm), "%s", seen[i].name);
        char *eq = strchr(nm, '=');
        if (eq)
            *eq = 0;
        if ((r = check_option_scope(&cli, seen[i].opt, nm)) != 0)
            return r;
    }
    /* --server: through the daemon (cmd_server.c). An option beats the environment; both options, or both
     * variables and no option, is ambiguous. SMMUCTL_SERVER does not concern the commands the daemon does not
     * run (qmp, doctor, layout); --server with them is an error. */
    if (server_flag && qmp_flag)
        return cli_usage_error(&cli, cli.command, "--server and --qmp: choose one (the daemon owns the VM's QMP "
                               "connection; --qmp talks to QEMU directly)");
    if (qmp_flag)
        cli.server_addr = NULL;
    else if (server_flag)
        cli.qmp_addr = NULL;
    static const char *const via_server = " topology plan attach detach status recover ";
    char key[64];
    snprintf(key, sizeof(key), " %s ", cli.command);
    if (cli.server_addr && *cli.server_addr && (server_flag || strstr(via_server, key))) {
        if (!server_flag && cli.qmp_addr && *cli.qmp_addr)
            return cli_usage_error(&cli, cli.command, "both SMMUCTL_SERVER and SMMUCTL_QMP are set: choose with "
                                   "--server or --qmp");
        return cli_server_run(&cli);
    }
    cli.server_addr = NULL;
    if (cli.qmp_addr && *cli.qmp_addr) { /* a malformed address is a usage error with the parser's reason */
        struct qmp_addr a;
        struct smmu_error e = SMMU_ERROR_INIT;
        if (qmp_addr_parse(cli.qmp_addr, &a, &e) < 0)
            return cli_fail(&cli, cli.command, EXIT_USAGE, &e, NULL);
    }
    if (cli.record_path) {
        cli.record = fopen(cli.record_path, "a");
        if (!cli.record)
            return cli_usage_error(&cli, cli.command, "--record %s: %s", cli.record_path, strerror(errno));
    }
    cli.base = event_base_new();
    if (!cli.base) {
        fprintf(stderr, "smmuctl: cannot create the event loop\n");
        return EXIT_FAILED;
    }
    r = cli_load_domain(&cli, cli.command);
    if (r == 0)
        r = c->run(&cli);
    smmu_xml_domain_free(cli.domain);
    cli_disconnect(&cli);
    event_base_free(cli.base);
    if (cli.record)
        fclose(cli.record);
    return r;
}

int main(int argc, char **argv)
{
    int r = cli_is_serve(argc, argv) ? cmd_serve_main(argc, argv) : cli_main(argc, argv);
    /* What was printed must have arrived: a full disk or a closed pipe is a failure, not a silent success. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "smmuctl: cannot write to standard output: %s\n", strerror(errno ? errno : EIO));
        if (r == EXIT_DONE)
            r = EXIT_FAILED;
    }
    return r;
}
