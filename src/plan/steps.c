/* steps.c — the ordered QMP commands of an attach (DESIGN §5), built from a finished placement.
 *
 * Argument members are added in a fixed order so that a dump with JSON_PRESERVE_ORDER is byte-stable (the
 * replay fixtures compare values, but people and the docs read the order). */
#include "plan_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* dev_root without trailing slashes, joined with rel; -EINVAL if it does not fit. */
static int steps_path(char out[SMMU_PATH_LEN], const char *dev_root, const char *rel, struct smmu_error *err)
{
    size_t len = strlen(dev_root);
    while (len > 0 && dev_root[len - 1] == '/')
        len--;
    int n = snprintf(out, SMMU_PATH_LEN, "%.*s/%s", (int)len, dev_root, rel);
    if (n < 0 || n >= SMMU_PATH_LEN)
        return smmu_error_set(err, -EINVAL, "device path %.*s/%s is too long", (int)len, dev_root, rel);
    return 0;
}

static struct smmu_step *steps_add(struct smmu_plan *p, enum smmu_step_kind kind, const char *name)
{
    struct smmu_step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->command = kind == SMMU_STEP_GETFD ? "getfd" : kind == SMMU_STEP_OBJECT_ADD ? "object-add" : "device_add";
    s->args = json_object();
    return s;
}

static int steps_getfd(struct smmu_plan *p, const char *fdname, const char *dev_root, const char *rel,
                       const char *bdf, struct smmu_error *err)
{
    struct smmu_step *s = steps_add(p, SMMU_STEP_GETFD, fdname);
    if (!s->args)
        return smmu_error_set(err, -ENOMEM, "planner: out of memory");
    snprintf(s->bdf, sizeof(s->bdf), "%s", bdf);
    json_object_set_new(s->args, "fdname", json_string(fdname));
    return steps_path(s->fd_path, dev_root, rel, err);
}

int plan_build_steps(struct smmu_plan *p, const struct smmu_host_dev *hosts, const struct smmu_plan_opts *opts,
                     struct smmu_error *err)
{
    const char *dev_root = opts->dev_root ? opts->dev_root : "/dev";
    size_t per = opts->fd_pass ? 2 : 1;
    size_t cap = (p->creates_iommufd ? per : 0) + p->n_placements * per;
    char fdname[SMMU_ID_LEN + 8], rel[64];
    int rc;

    p->steps = calloc(cap ? cap : 1, sizeof(*p->steps));
    if (!p->steps)
        return smmu_error_set(err, -ENOMEM, "planner: out of memory");

    if (p->creates_iommufd) {
        snprintf(fdname, sizeof(fdname), "%s-fd", p->iommufd_id);
        if (opts->fd_pass && (rc = steps_getfd(p, fdname, dev_root, "iommu", "", err)) < 0)
            return rc;
        struct smmu_step *s = steps_add(p, SMMU_STEP_OBJECT_ADD, p->iommufd_id);
        if (!s->args)
            return smmu_error_set(err, -ENOMEM, "planner: out of memory");
        json_object_set_new(s->args, "qom-type", json_string("iommufd"));
        json_object_set_new(s->args, "id", json_string(p->iommufd_id));
        if (opts->fd_pass)
            json_object_set_new(s->args, "fd", json_string(fdname));
    }

    for (size_t i = 0; i < p->n_placements; i++) {
        const struct smmu_placement *pl = &p->placements[i];
        snprintf(fdname, sizeof(fdname), "%s-cdev", pl->device_id);
        if (opts->fd_pass) {
            snprintf(rel, sizeof(rel), "vfio/devices/%s", hosts[i].cdev);
            if ((rc = steps_getfd(p, fdname, dev_root, rel, pl->bdf, err)) < 0)
                return rc;
        }
        struct smmu_step *s = steps_add(p, SMMU_STEP_DEVICE_ADD, pl->device_id);
        if (!s->args)
            return smmu_error_set(err, -ENOMEM, "planner: out of memory");
        snprintf(s->bdf, sizeof(s->bdf), "%s", pl->bdf);
        snprintf(s->port, sizeof(s->port), "%s", pl->port_id);
        json_object_set_new(s->args, "driver", json_string("vfio-pci"));
        /* Never host and fd together (QEMU refuses the pair). */
        if (opts->fd_pass)
            json_object_set_new(s->args, "fd", json_string(fdname));
        else
            json_object_set_new(s->args, "host", json_string(pl->bdf));
        json_object_set_new(s->args, "iommufd", json_string(p->iommufd_id));
        json_object_set_new(s->args, "bus", json_string(pl->port_id));
        json_object_set_new(s->args, "addr", json_string("0x0"));
        json_object_set_new(s->args, "id", json_string(pl->device_id));
    }
    return 0;
}
