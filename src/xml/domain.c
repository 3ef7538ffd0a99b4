/* domain.c — a libvirt domain definition's PCI controllers, <iommu> elements and hostdevs (`--domain FILE`).
 *
 * Only what the cross-check with the live VM needs is kept; everything else in a domain is ignored, but what
 * is kept is read strictly: a value smmuctl would otherwise have to guess is a "<file>:<line>: what" error.
 * Loading is xml_load's (no DTD, no entities, no network, libxml2 silent); the file limit is the hostdev
 * reader's. Document order is kept (the K-th <iommu> is QEMU's iommuK, counting those without pciBus).
 */
#include "smmuctl/xml.h"
#include "xml_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dom_walk {
    struct xml_walk w;     /* src, err, hostdevs (w.v/w.n), domain_iommufd */
    struct smmu_domain *d;
    size_t cap_ctrls, cap_iommus;
};

/* A number attribute in [lo, hi]: 0 and *out; 1 when absent (*out untouched); <0 error. */
static int dom_num(struct dom_walk *dw, xmlNodePtr n, const char *attr, long lo, long hi, int *out)
{
    char v[64];
    unsigned long val;
    int r;
    if (!xml_attr(n, attr, v, sizeof(v)))
        return 1;
    r = xml_number(v, &val);
    if (r == -EINVAL)
        return xml_fail(&dw->w, n, "<%s %s='%s'>: not a number (0x-prefixed hex or decimal)", (const char *)n->name,
                        attr, v);
    if (r < 0 || (long)val < lo || (long)val > hi)
        return xml_fail(&dw->w, n, "<%s %s='%s'>: out of range (%ld-%ld)", (const char *)n->name, attr, v, lo, hi);
    *out = (int)val;
    return 0;
}

static int dom_onoff(struct dom_walk *dw, xmlNodePtr n, const char *attr, int *out)
{
    char v[64];
    if (!xml_attr(n, attr, v, sizeof(v)))
        return 0;
    if (!strcmp(v, "on"))
        *out = 1;
    else if (!strcmp(v, "off"))
        *out = 0;
    else
        return xml_fail(&dw->w, n, "<%s %s='%s'>: expected 'on' or 'off'", (const char *)n->name, attr, v);
    return 0;
}

static int dom_too_many(struct dom_walk *dw, xmlNodePtr n, const char *what)
{
    return xml_fail(&dw->w, n, "more than %d %s: not a domain smmuctl can check", SMMU_DOMAIN_MAX, what);
}

static int dom_controller(struct dom_walk *dw, xmlNodePtr c)
{
    struct smmu_domain *d = dw->d;
    struct smmu_domain_ctrl k;
    xmlNodePtr t, a;
    char v[64];
    int r;

    if (!xml_attr(c, "type", v, sizeof(v)) || strcmp(v, "pci"))
        return 0; /* usb, virtio-serial, scsi…: not PCI topology */
    memset(&k, 0, sizeof(k));
    k.line = xmlGetLineNo(c);
    k.bus_nr = k.numa_node = k.chassis = k.port = k.hotplug = -1;
    if ((r = dom_num(dw, c, "index", 0, 255, &k.index)) < 0)
        return r;
    if (r == 1)
        return xml_fail(&dw->w, c, "<controller type='pci'> has no index= (libvirt's index names its QEMU id "
                        "pci.<index>: use the definition `virsh dumpxml` prints)");
    if (!xml_attr(c, "model", k.model_name, sizeof(k.model_name)))
        return xml_fail(&dw->w, c, "<controller type='pci' index='%d'> has no model=", k.index);
    if (!strcmp(k.model_name, "pcie-root"))
        k.model = SMMU_DOMAIN_PCIE_ROOT;
    else if (!strcmp(k.model_name, "pcie-expander-bus"))
        k.model = SMMU_DOMAIN_PXB;
    else if (!strcmp(k.model_name, "pcie-root-port"))
        k.model = SMMU_DOMAIN_ROOT_PORT;
    else
        k.model = SMMU_DOMAIN_OTHER_PCI;
    if ((k.model == SMMU_DOMAIN_PCIE_ROOT) != (k.index == 0))
        return xml_fail(&dw->w, c, "<controller type='pci' index='%d' model='%s'>: %s", k.index, k.model_name,
                        k.index == 0 ? "index 0 is the pcie-root (pcie.0)" : "a pcie-root must have index 0");
    if ((t = xml_child(c, "target"))) {
        xmlNodePtr node = xml_child(t, "node");
        if ((r = dom_num(dw, t, "busNr", 1, 254, &k.bus_nr)) < 0 ||
            (r = dom_num(dw, t, "chassis", 0, 255, &k.chassis)) < 0 ||
            (r = dom_num(dw, t, "port", 0, 255, &k.port)) < 0 || (r = dom_onoff(dw, t, "hotplug", &k.hotplug)) < 0)
            return r;
        if (node) {
            xmlChar *txt = xmlNodeGetContent(node);
            unsigned long val = 0;
            char s[64];
            snprintf(s, sizeof(s), "%s", txt ? (const char *)txt : "");
            xmlFree(txt);
            if (xml_number(s, &val) < 0 || val > 65535)
                return xml_fail(&dw->w, node, "<node>%s</node>: not a NUMA node number", s);
            k.numa_node = (int)val;
        }
    }
    if (k.model == SMMU_DOMAIN_PXB && k.bus_nr < 0)
        return xml_fail(&dw->w, c, "pcie-expander-bus index %d has no <target busNr=…/>", k.index);
    if ((a = xml_child(c, "address"))) {
        if (xml_attr(a, "type", v, sizeof(v)) && strcmp(v, "pci"))
            return xml_fail(&dw->w, a, "controller index %d: <address type='%s'> is not a PCI address", k.index, v);
        if ((r = xml_pci_addr(&dw->w, a, "controller address", false, &k.addr)) < 0)
            return r;
        k.has_addr = true;
    }
    for (size_t i = 0; i < d->n_ctrls; i++)
        if (d->ctrls[i].index == k.index)
            return xml_fail(&dw->w, c, "two PCI controllers with index %d (the first at line %ld)", k.index,
                            d->ctrls[i].line);
    if (d->n_ctrls == SMMU_DOMAIN_MAX)
        return dom_too_many(dw, c, "PCI controllers");
    if (d->n_ctrls == dw->cap_ctrls) {
        size_t cap = dw->cap_ctrls ? dw->cap_ctrls * 2 : 8;
        void *nv = realloc(d->ctrls, cap * sizeof(*d->ctrls));
        if (!nv)
            return smmu_error_set(dw->w.err, -ENOMEM, "%s: out of memory", dw->w.src);
        d->ctrls = nv;
        dw->cap_ctrls = cap;
    }
    d->ctrls[d->n_ctrls++] = k;
    return 0;
}

static int dom_iommu(struct dom_walk *dw, xmlNodePtr n)
{
    struct smmu_domain *d = dw->d;
    struct smmu_domain_iommu m;
    xmlNodePtr drv;
    int r;

    memset(&m, 0, sizeof(m));
    m.k = (int)d->n_iommus;
    m.line = xmlGetLineNo(n);
    m.pci_bus = m.accel = -1;
    if (!xml_attr(n, "model", m.model, sizeof(m.model)))
        return xml_fail(&dw->w, n, "<iommu> has no model= (expected model='smmuv3')");
    if ((drv = xml_child(n, "driver"))) {
        if ((r = dom_num(dw, drv, "pciBus", 0, 255, &m.pci_bus)) < 0 || (r = dom_onoff(dw, drv, "accel", &m.accel)) < 0)
            return r;
    }
    if (d->n_iommus == SMMU_DOMAIN_MAX)
        return dom_too_many(dw, n, "<iommu> elements");
    if (d->n_iommus == dw->cap_iommus) {
        size_t cap = dw->cap_iommus ? dw->cap_iommus * 2 : 4;
        void *nv = realloc(d->iommus, cap * sizeof(*d->iommus));
        if (!nv)
            return smmu_error_set(dw->w.err, -ENOMEM, "%s: out of memory", dw->w.src);
        d->iommus = nv;
        dw->cap_iommus = cap;
    }
    d->iommus[d->n_iommus++] = m;
    return 0;
}

static int dom_devices(struct dom_walk *dw, xmlNodePtr devs)
{
    for (xmlNodePtr c = devs->children; c; c = c->next) {
        int r = 0;
        if (xml_is(c, "controller"))
            r = dom_controller(dw, c);
        else if (xml_is(c, "iommu"))
            r = dom_iommu(dw, c);
        else if (xml_is(c, "hostdev")) {
            char type[32] = "";
            xml_attr(c, "type", type, sizeof(type));
            if (strcmp(type, "pci"))
                continue; /* a USB or SCSI hostdev is no concern of the PCI topology */
            if (dw->w.n == SMMU_DOMAIN_MAX)
                return dom_too_many(dw, c, "hostdevs");
            r = xml_one_hostdev(&dw->w, c);
        }
        if (r < 0)
            return r;
    }
    return 0;
}

void smmu_xml_domain_free(struct smmu_domain *d)
{
    if (!d)
        return;
    free(d->ctrls);
    free(d->iommus);
    free(d->hostdevs);
    free(d);
}

const struct smmu_domain_ctrl *smmu_domain_find_ctrl(const struct smmu_domain *d, int index)
{
    for (size_t i = 0; d && i < d->n_ctrls; i++)
        if (d->ctrls[i].index == index)
            return &d->ctrls[i];
    return NULL;
}

int smmu_xml_domain(const char *xml, size_t len, const char *source_name, struct smmu_domain **out,
                    struct smmu_error *err)
{
    struct dom_walk dw;
    xmlNodePtr root, n;
    xmlDocPtr doc;
    size_t i;
    int r;

    *out = NULL;
    memset(&dw, 0, sizeof(dw));
    dw.w.src = source_name ? source_name : "<xml>";
    dw.w.err = err;
    for (i = 0; xml && i < len && (xml[i] == ' ' || xml[i] == '\t' || xml[i] == '\n' || xml[i] == '\r'); i++)
        ;
    if (!xml || i == len)
        return smmu_error_set(err, -EINVAL, "%s: empty input: expected a libvirt <domain>", dw.w.src);
    if ((r = xml_load(xml, len, dw.w.src, &doc, err)) < 0)
        return r;
    if (!(dw.d = calloc(1, sizeof(*dw.d)))) {
        xmlFreeDoc(doc);
        return smmu_error_set(err, -ENOMEM, "%s: out of memory", dw.w.src);
    }
    root = xmlDocGetRootElement(doc);
    if (xml_is(root, "devices")) {
        r = dom_devices(&dw, root);
    } else if (!xml_is(root, "domain")) {
        r = xml_fail(&dw.w, root, "expected a libvirt <domain> (or its <devices>), found <%s>",
                     xml_is(root, XML_WRAPPER_NAME) ? "hostdev" : (const char *)root->name);
    } else {
        if ((n = xml_child(root, "name"))) {
            xmlChar *txt = xmlNodeGetContent(n);
            snprintf(dw.d->name, sizeof(dw.d->name), "%s", txt ? (const char *)txt : "");
            xmlFree(txt);
        }
        r = 0;
        if ((n = xml_child(root, "iommufd")) && (r = xml_yesno(&dw.w, n, "enabled")) >= 0)
            dw.w.domain_iommufd = r ? SMMU_XML_IOMMUFD_YES : SMMU_XML_IOMMUFD_NO;
        if (r >= -1)
            r = (n = xml_child(root, "devices")) ? dom_devices(&dw, n) : 0;
    }
    xmlFreeDoc(doc);
    dw.d->hostdevs = dw.w.v;
    dw.d->n_hostdevs = dw.w.n;
    if (r < 0) {
        smmu_xml_domain_free(dw.d);
        return r;
    }
    *out = dw.d;
    return 0;
}

int smmu_xml_domain_file(const char *path, struct smmu_domain **out, struct smmu_error *err)
{
    char *buf;
    size_t len;
    int r;

    *out = NULL;
    if ((r = xml_read_file(path, "domain XML file", &buf, &len, err)) < 0)
        return r;
    r = smmu_xml_domain(buf, len, path, out, err);
    free(buf);
    return r;
}
