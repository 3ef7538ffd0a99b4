/* cmd_layout.c — `smmuctl layout DEV...`: the boot topology these devices need (DESIGN §9), from host facts
 * only. Reads sysfs, builds the model (src/layout, pure) and prints it as QEMU arguments, libvirt XML or JSON.
 * Exit 0, or 2 for bad input (nothing is ever sent anywhere). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "smmuctl/layout.h"

static json_t *layout_json(const struct smmu_layout *l, const char *qemu, const char *xml)
{
    json_t *vs = json_array(), *args = json_array(), *warn = json_array();
    char *copy = strdup(qemu), *save = NULL;

    for (size_t k = 0; k < l->n; k++) {
        const struct smmu_layout_vsmmu *v = &l->v[k];
        json_t *devs = json_array(), *ports = json_array();
        char id[32];
        for (size_t j = 0; j < v->ndevs; j++)
            json_array_append_new(devs, json_string(v->devs[j]));
        for (size_t j = 0; j < v->nports; j++) {
            snprintf(id, sizeof(id), "pci.%d", v->ports[j].index);
            json_array_append_new(ports, json_pack("{s:s,s:i,s:i,s:i}", "id", id, "chassis", v->ports[j].chassis,
                                                   "port", v->ports[j].port, "slot", v->ports[j].slot));
        }
        char pxb[16], smmu[16];
        snprintf(pxb, sizeof(pxb), "pci.%d", v->pxb_index);
        snprintf(smmu, sizeof(smmu), "iommu%d", v->iommu);
        json_array_append_new(
            vs, json_pack("{s:s,s:s,s:b,s:s,s:i,s:o,s:I,s:I,s:o,s:o}", "host_smmu", v->smmu, "id", smmu, "accel",
                          v->accel, "pxb", pxb, "bus_nr", v->bus_nr,
                          "numa_node", v->numa_node >= 0 ? json_integer(v->numa_node) : json_null(),
                          "pref64_reserve", (json_int_t)v->pref64_reserve, "mem_reserve", (json_int_t)v->mem_reserve,
                          "devices", devs, "root_ports", ports));
    }
    for (char *t = copy ? strtok_r(copy, "\n", &save) : NULL; t; t = strtok_r(NULL, "\n", &save))
        json_array_append_new(args, json_string(t));
    free(copy);
    for (size_t i = 0; i < l->nwarnings; i++)
        json_array_append_new(warn, json_string(l->warnings[i]));
    return json_pack("{s:b,s:s,s:o,s:s,s:o,s:s,s:o}", "ok", 1, "command", "layout", "vsmmus", vs, "iommufd",
                     "iommufd0", "qemu", args, "xml", xml, "warnings", warn);
}

int cmd_layout(struct cli *cli)
{
    struct smmu_layout_req req = {.accel = !cli->no_accel, .spare = cli->spare_set ? cli->spare : 1};
    struct smmu_error e = SMMU_ERROR_INIT;
    struct smmu_host_dev *hd = NULL;
    struct smmu_layout *l = NULL;
    char **devs = NULL, *qemu = NULL, *xml = NULL;
    size_t n = 0;
    int r, rc = EXIT_DONE;

    if (cli->nargs == 0)
        return cli_usage_error(cli, "layout", "usage: smmuctl layout DEV... [--format qemu|xml] [--spare N] "
                               "[--no-accel] (DEV: a PCI address like 0009:01:00.0, or @FILE)");
    if (cli->format && strcmp(cli->format, "qemu") != 0 && strcmp(cli->format, "xml") != 0)
        return cli_usage_error(cli, "layout", "--format: '%s' is neither qemu nor xml", cli->format);
    if ((r = cli_devices(cli, "layout", &devs, &n)) != 0)
        return r;
    if (!(hd = calloc(n, sizeof(*hd))) || !(l = malloc(sizeof(*l)))) {
        smmu_error_set(&e, -ENOMEM, "out of memory");
        rc = cli_fail(cli, "layout", EXIT_FAILED, &e, NULL);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (smmu_host_read(cli->sysfs, devs[i], &hd[i], &e) < 0) {
            rc = cli_fail(cli, "layout", EXIT_USAGE, &e, NULL);
            goto out;
        }
    if (smmu_layout_build(hd, n, &req, l, &e) < 0) {
        rc = cli_fail(cli, "layout", EXIT_USAGE, &e, NULL);
        goto out;
    }
    if (!(qemu = smmu_layout_qemu(l)) || !(xml = smmu_layout_xml(l))) {
        smmu_error_set(&e, -ENOMEM, "out of memory");
        rc = cli_fail(cli, "layout", EXIT_FAILED, &e, NULL);
        goto out;
    }
    if (cli->json) {
        cli_print_json(cli, layout_json(l, qemu, xml));
    } else {
        for (size_t i = 0; i < l->nwarnings; i++)
            fprintf(stderr, "smmuctl: warning: %s\n", l->warnings[i]);
        fputs(cli->format && !strcmp(cli->format, "xml") ? xml : qemu, stdout);
    }
out:
    free(qemu);
    free(xml);
    free(l);
    free(hd);
    cli_devices_free(devs);
    return rc;
}
