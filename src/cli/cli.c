/* cli.c — output, errors and the QMP connection for the command-line front-end. */
#include "cli/cli.h"
#include "cli/progress.h"
#include "smmuctl/xml.h"
#include "smmuctl/error_json.h"
#include "smmuctl/reply_json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cli_escape(const char *in, char *out, size_t len)
{
    size_t o = 0;
    if (!len)
        return;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 5 < len; p++) {
        if (*p < 0x20 || *p == 0x7f) /* QEMU echoes what it was given: never let it drive the terminal */
            o += (size_t)snprintf(out + o, len - o, *p == '\n' ? "\\n" : *p == '\t' ? "\\t" : "\\x%02x", *p);
        else
            out[o++] = (char)*p;
    }
    out[o] = 0;
}

int cli_timeout_ms(const struct cli *cli)
{
    int ms = (int)(cli->timeout_s * 1000.0 + 0.5);
    return ms > 0 ? ms : 1; /* 0 would mean "the default" to the client */
}

json_t *cli_error_json(const struct smmu_error *e)
{
    return smmu_error_json(e); /* shared with the daemon's error replies */
}

void cli_print_json(struct cli *cli, json_t *obj)
{
    char *s = json_dumps(obj, JSON_PRESERVE_ORDER | (cli->json ? JSON_COMPACT : JSON_INDENT(2)) | JSON_ENCODE_ANY);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
    fflush(stdout);
    json_decref(obj);
}

int cli_fail(struct cli *cli, const char *command, int exit_code, const struct smmu_error *e, json_t *extra)
{
    if (cli->json) {
        cli_print_json(cli, smmu_fail_json(command, exit_code, e, extra));
    } else {
        json_decref(extra);
        char msg[4 * sizeof(e->message)];
        cli_escape(e && e->message[0] ? e->message : "failed", msg, sizeof(msg));
        fprintf(stderr, "smmuctl: %s%s%s\n", command ? command : "", command ? ": " : "", msg);
    }
    return exit_code;
}

int cli_usage_error(struct cli *cli, const char *command, const char *fmt, ...)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    e.code = -EINVAL;
    return cli_fail(cli, command, EXIT_USAGE, &e, NULL);
}

void cli_info(struct cli *cli, const char *fmt, ...)
{
    va_list ap;
    if (cli->verbose < 0)
        return;
    cli_progress_clear(cli);
    va_start(ap, fmt);
    fputs("smmuctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_debug(struct cli *cli, const char *fmt, ...)
{
    va_list ap;
    if (cli->verbose < 1)
        return;
    cli_progress_clear(cli);
    va_start(ap, fmt);
    fputs("smmuctl: debug: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void cli_qmp_log(int level, const char *msg, void *payload)
{
    struct cli *cli = payload;
    if (level == 0)
        cli_debug(cli, "%s", msg); /* "qmp -> …" */
    else if (level >= 2 || cli->verbose >= 1) {
        cli_progress_clear(cli);
        fprintf(stderr, "smmuctl: qmp: %s\n", msg);
    }
}

static int cli_connect_locked(struct cli *cli, const char *command);

int cli_connect(struct cli *cli, const char *command, smmu_journal **lock)
{
    int r;
    *lock = NULL;
    if ((r = cli_open_journal(cli, command, true, lock)) != 0)
        return r;
    if ((r = cli_connect_locked(cli, command)) != 0 && *lock) {
        smmu_journal_close(*lock);
        *lock = NULL;
    }
    return r;
}

static int cli_connect_locked(struct cli *cli, const char *command)
{
    struct qmp_client_opts o = QMP_CLIENT_OPTS_INIT;
    struct smmu_error e = SMMU_ERROR_INIT;
    int r;
    if (!cli->qmp_addr || !*cli->qmp_addr)
        return cli_usage_error(cli, command, "no QMP monitor given: use --qmp PATH|unix:PATH|tcp:HOST:PORT or set "
                               "SMMUCTL_QMP");
    o.connect_timeout_ms = cli_timeout_ms(cli);
    o.command_timeout_ms = cli_timeout_ms(cli);
    o.record = cli->record;
    o.negotiate_oob = true; /* FACTS: ~0.83x QEMU CPU per command; we always send ids anyway */
    o.log = cli_qmp_log;
    o.log_payload = cli;
    o.log_traffic = cli->verbose >= 1; /* -v: every QMP message, at debug level */
    if ((r = qmp_client_new(&cli->qmp, cli->base, &o)) < 0) {
        smmu_error_set(&e, r, "cannot create a QMP client: %s", strerror(-r));
        return cli_fail(cli, command, EXIT_UNREACHABLE, &e, NULL);
    }
    r = cli_connect_wait(cli, cli->qmp, cli->qmp_addr, &e);
    if (r < 0)
        return cli_fail(cli, command, r == -EINVAL ? EXIT_USAGE : EXIT_UNREACHABLE, &e, NULL);
    const struct qmp_greeting *g = qmp_client_greeting(cli->qmp);
    cli_debug(cli, "connected to QEMU %d.%d.%d at %s", g->major, g->minor, g->micro, cli->qmp_addr);
    return 0;
}

void cli_disconnect(struct cli *cli)
{
    if (cli->qmp) {
        qmp_client_free(cli->qmp);
        cli->qmp = NULL;
    }
}

int cli_vm_name(struct cli *cli, const char *command, char *out, size_t len)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    if (cli->vm) {
        if (smmu_journal_check_name(cli->vm, &e) < 0)
            return cli_fail(cli, command, EXIT_USAGE, &e, NULL);
        snprintf(out, len, "%s", cli->vm);
        return 0;
    }
    struct qmp_addr a;
    char canon[512];
    if (cli->qmp_addr && *cli->qmp_addr && qmp_addr_parse(cli->qmp_addr, &a, &e) < 0)
        return cli_fail(cli, command, EXIT_USAGE, &e, NULL); /* the parser says what is wrong with it */
    if (!cli->qmp_addr || qmp_addr_canonical(&a, canon, sizeof(canon)) < 0)
        return cli_usage_error(cli, command, "cannot derive a VM name: give --vm NAME or a valid --qmp address");
    smmu_journal_name_from_addr(canon, out, len);
    return 0;
}

int cli_open_journal(struct cli *cli, const char *command, bool must_exist, smmu_journal **out)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    char vm[128], path[4096], canon[512] = "";
    struct qmp_addr a;
    int r;
    *out = NULL;
    if ((r = cli_vm_name(cli, command, vm, sizeof(vm))) != 0)
        return r;
    if (cli->qmp_addr && qmp_addr_parse(cli->qmp_addr, &a, NULL) == 0)
        qmp_addr_canonical(&a, canon, sizeof(canon));
    if (must_exist) { /* a read-only command creates no state file, but waits behind any holder of the lock */
        char lock[4096];
        snprintf(path, sizeof(path), "%s/%s.json", cli->state_dir, vm);
        snprintf(lock, sizeof(lock), "%s/%s.lock", cli->state_dir, vm);
        if (access(path, F_OK) != 0 && access(lock, F_OK) != 0)
            return 0;
    }
    r = smmu_journal_open(cli->state_dir, vm, canon, 60000, out, &e);
    if (r < 0)
        return cli_fail_journal(cli, command, &e);
    return 0;
}

int cli_fail_journal(struct cli *cli, const char *command, const struct smmu_error *e)
{
    struct smmu_error h = *e;
    smmu_journal_error_explain(&h, cli->state_dir);
    return cli_fail(cli, command, EXIT_USAGE, &h, NULL);
}

static int cli_devices_push(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 2) * sizeof(char *));
    if (!nv)
        return -ENOMEM;
    *v = nv;
    if (!(nv[*n] = strdup(s)))
        return -ENOMEM;
    nv[++*n] = NULL;
    return 0;
}

void cli_devices_free(char **devs)
{
    for (size_t i = 0; devs && devs[i]; i++)
        free(devs[i]);
    free(devs);
}

int cli_devices(struct cli *cli, const char *command, char ***out, size_t *n)
{
    char **v = calloc(1, sizeof(char *));
    size_t count = 0;
    if (!v)
        return EXIT_FAILED;
    for (int i = 0; i < cli->nargs; i++) {
        const char *a = cli->args[i];
        if (!a[0] || (a[0] == '@' && !a[1])) {
            cli_devices_free(v);
            return cli_usage_error(cli, command, "argument %d: empty device name (DEV is a PCI address like "
                                   "0009:01:00.0, a QEMU id for detach, or @FILE)", i + 1);
        }
        if (a[0] != '@') {
            if (cli_devices_push(&v, &count, a) < 0)
                goto oom;
            continue;
        }
        struct smmu_xml_hostdev *hd = NULL;
        size_t nh = 0;
        struct smmu_error e = SMMU_ERROR_INIT;
        if (smmu_xml_hostdevs_file(a + 1, &hd, &nh, &e) < 0) {
            cli_devices_free(v);
            return cli_fail(cli, command, EXIT_USAGE, &e, NULL);
        }
        for (size_t k = 0; k < nh; k++)
            if (cli_devices_push(&v, &count, hd[k].bdf) < 0) {
                smmu_xml_hostdevs_free(hd);
                goto oom;
            }
        smmu_xml_hostdevs_free(hd);
    }
    if (count == 0) {
        cli_devices_free(v);
        return cli_usage_error(cli, command, "no device given (DEV is a PCI address like 0009:01:00.0, a QEMU id "
                               "for detach, or @FILE with libvirt <hostdev> XML)");
    }
    *out = v;
    *n = count;
    return 0;
oom:
    cli_devices_free(v);
    return cli_usage_error(cli, command, "out of memory");
}
