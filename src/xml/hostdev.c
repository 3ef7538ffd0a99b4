/* hostdev.c — libvirt <hostdev mode='subsystem' type='pci'> elements into struct smmu_xml_hostdev.
 *
 * Reads what libvirt reads, the way it reads it (numbers via strtoul base 0, user aliases only when they
 * start with "ua-"), but refuses anything it cannot attach instead of skipping it: a file naming a USB
 * device should not silently attach only the rest. Every message is "<source>:<line>: …".
 */
#include "smmuctl/xml.h"
#include "xml_int.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

int xml_fail(struct xml_walk *w, xmlNodePtr node, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return smmu_error_set(w->err, -EINVAL, "%s:%ld: %s", w->src, node ? xmlGetLineNo(node) : 0L, msg);
}

bool xml_is(xmlNodePtr n, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && !n->ns && strcmp((const char *)n->name, name) == 0;
}

xmlNodePtr xml_child(xmlNodePtr parent, const char *name)
{
    for (xmlNodePtr c = parent->children; c; c = c->next)
        if (xml_is(c, name))
            return c;
    return NULL;
}

/* Attribute value into buf (truncated to fit); false when absent. */
bool xml_attr(xmlNodePtr n, const char *name, char *buf, size_t size)
{
    xmlChar *v = xmlGetNoNsProp(n, (const xmlChar *)name);
    if (!v)
        return false;
    snprintf(buf, size, "%s", (const char *)v);
    xmlFree(v);
    return true;
}

/* yes/no attribute: 1 yes, 0 no, -1 absent; -EINVAL (err set) otherwise. */
int xml_yesno(struct xml_walk *w, xmlNodePtr n, const char *attr)
{
    char v[64];
    if (!xml_attr(n, attr, v, sizeof(v)))
        return -1;
    if (strcmp(v, "yes") == 0)
        return 1;
    if (strcmp(v, "no") == 0)
        return 0;
    return xml_fail(w, n, "<%s %s='%s'>: expected 'yes' or 'no'", (const char *)n->name, attr, v);
}

/* libvirt's virStrToLong_uip(s, NULL, 0, …): 0x… hex, 0… octal, else decimal; no sign, no blanks. */
int xml_number(const char *s, unsigned long *out)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return -EINVAL;
    errno = 0;
    *out = strtoul(s, &end, 0);
    if (*end)
        return -EINVAL;
    if (errno == ERANGE || *out > UINT_MAX)
        return -ERANGE;
    return 0;
}

/* A PCI address element. strict: every part required (the host device); else missing parts are 0, as
 * libvirt does for guest addresses. */
int xml_pci_addr(struct xml_walk *w, xmlNodePtr n, const char *what, bool strict,
                        struct smmu_xml_pci_addr *a)
{
    static const struct { const char *name; unsigned max; size_t off; } parts[] = {
        {"domain", 0xffff, offsetof(struct smmu_xml_pci_addr, domain)},
        {"bus", 0xff, offsetof(struct smmu_xml_pci_addr, bus)},
        {"slot", 0x1f, offsetof(struct smmu_xml_pci_addr, slot)},
        {"function", 7, offsetof(struct smmu_xml_pci_addr, function)},
    };
    memset(a, 0, sizeof(*a));
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        char v[64];
        unsigned long val;
        int r;
        if (!xml_attr(n, parts[i].name, v, sizeof(v))) {
            if (strict)
                return xml_fail(w, n, "%s: missing %s= (expected domain, bus, slot and function)", what,
                                parts[i].name);
            continue;
        }
        r = xml_number(v, &val);
        if (r == -EINVAL)
            return xml_fail(w, n, "%s: %s='%s' is not a number (0x-prefixed hex or decimal)", what,
                            parts[i].name, v);
        if (r < 0 || val > parts[i].max)
            return xml_fail(w, n, "%s: %s='%s' out of range (0-0x%x)", what, parts[i].name, v, parts[i].max);
        *(unsigned *)((char *)a + parts[i].off) = (unsigned)val;
    }
    return 0;
}

/* QEMU ids: a letter, then letters, digits, '-', '.', '_'. The alias becomes the QEMU device id. */
static bool xml_is_qemu_id(const char *s)
{
    if (!isalpha((unsigned char)s[0]))
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_')
            return false;
    return true;
}

int xml_one_hostdev(struct xml_walk *w, xmlNodePtr hd)
{
    struct smmu_xml_hostdev h;
    struct smmu_xml_pci_addr a;
    xmlNodePtr n, addr;
    char v[256];
    int r;

    memset(&h, 0, sizeof(h));
    h.line = xmlGetLineNo(hd);
    if (xml_attr(hd, "mode", v, sizeof(v)) && strcmp(v, "subsystem") != 0)
        return xml_fail(w, hd, "<hostdev mode='%s'> is not supported: smmuctl attaches PCI devices "
                        "(mode='subsystem' type='pci') only", v);
    if (!xml_attr(hd, "type", v, sizeof(v)))
        return xml_fail(w, hd, "<hostdev> has no type= (expected type='pci')");
    if (strcmp(v, "pci") != 0)
        return xml_fail(w, hd, "<hostdev type='%s'> is not supported: smmuctl attaches PCI devices "
                        "(type='pci') only", v);
    if ((r = xml_yesno(w, hd, "managed")) < -1)
        return r;
    h.managed = r == 1;

    h.iommufd = w->domain_iommufd;
    if ((n = xml_child(hd, "driver"))) {
        if (xml_attr(n, "name", v, sizeof(v)) && strcmp(v, "vfio") != 0)
            return xml_fail(w, n, "<driver name='%s'> is not supported (only VFIO: name='vfio' or none)", v);
        if ((r = xml_yesno(w, n, "iommufd")) < -1)
            return r;
        if (r >= 0)
            h.iommufd = r ? SMMU_XML_IOMMUFD_YES : SMMU_XML_IOMMUFD_NO;
    }

    if (!(n = xml_child(hd, "source")))
        return xml_fail(w, hd, "<hostdev> has no <source> naming the host device");
    if (!(addr = xml_child(n, "address")))
        return xml_fail(w, n, "<source> has no <address domain=… bus=… slot=… function=…/>");
    if (xml_attr(addr, "type", v, sizeof(v)) && strcmp(v, "pci") != 0)
        return xml_fail(w, addr, "hostdev source address: type='%s' is not a PCI address", v);
    if ((r = xml_pci_addr(w, addr, "hostdev source address", true, &a)) < 0)
        return r;
    snprintf(h.bdf, sizeof(h.bdf), "%04x:%02x:%02x.%x", a.domain, a.bus, a.slot, a.function);

    if ((n = xml_child(hd, "alias")) && xml_attr(n, "name", v, sizeof(v)) && strncmp(v, "ua-", 3) == 0) {
        if (strlen(v) >= sizeof(h.alias) || !xml_is_qemu_id(v))
            return xml_fail(w, n, "<alias name='%s'>: not usable as a QEMU device id (letters, digits, '-', "
                            "'.', '_'; at most %zu characters)", v, sizeof(h.alias) - 1);
        snprintf(h.alias, sizeof(h.alias), "%s", v);
    }

    if ((addr = xml_child(hd, "address"))) {
        if (!xml_attr(addr, "type", v, sizeof(v)))
            return xml_fail(w, addr, "guest <address> has no type= (expected type='pci')");
        if (strcmp(v, "pci") != 0)
            return xml_fail(w, addr, "guest <address type='%s'> is not supported (only type='pci')", v);
        if ((r = xml_pci_addr(w, addr, "hostdev guest address", false, &h.guest_addr)) < 0)
            return r;
        /* all-zero means "pick one" to libvirt */
        h.has_guest_addr = h.guest_addr.domain || h.guest_addr.bus || h.guest_addr.slot;
        if (!h.has_guest_addr)
            memset(&h.guest_addr, 0, sizeof(h.guest_addr));
    }

    for (size_t i = 0; i < w->n; i++) {
        if (strcmp(w->v[i].bdf, h.bdf) == 0)
            return xml_fail(w, hd, "host device %s is listed twice (first at line %ld)", h.bdf, w->v[i].line);
        if (h.alias[0] && strcmp(w->v[i].alias, h.alias) == 0)
            return xml_fail(w, hd, "alias %s is used twice (first at line %ld)", h.alias, w->v[i].line);
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 4;
        struct smmu_xml_hostdev *nv = realloc(w->v, cap * sizeof(*nv));
        if (!nv)
            return smmu_error_set(w->err, -ENOMEM, "%s: out of memory", w->src);
        w->v = nv;
        w->cap = cap;
    }
    w->v[w->n++] = h;
    return 0;
}

/* Every <hostdev> child of parent, in document order. */
static int xml_hostdev_children(struct xml_walk *w, xmlNodePtr parent)
{
    for (xmlNodePtr c = parent->children; c; c = c->next) {
        int r;
        if (xml_is(c, "hostdev") && (r = xml_one_hostdev(w, c)) < 0)
            return r;
    }
    return 0;
}

static int xml_walk_root(struct xml_walk *w, xmlNodePtr root)
{
    xmlNodePtr n;
    int r;

    if (xml_is(root, "hostdev"))
        return xml_one_hostdev(w, root);
    if (xml_is(root, "devices") || xml_is(root, XML_WRAPPER_NAME))
        return xml_hostdev_children(w, root);
    if (!xml_is(root, "domain"))
        return xml_fail(w, root, "expected <hostdev>, <devices> or <domain>, found <%s>", (const char *)root->name);
    if ((n = xml_child(root, "iommufd"))) {
        if ((r = xml_yesno(w, n, "enabled")) < -1)
            return r;
        if (r >= 0)
            w->domain_iommufd = r ? SMMU_XML_IOMMUFD_YES : SMMU_XML_IOMMUFD_NO;
    }
    if ((n = xml_child(root, "devices")))
        return xml_hostdev_children(w, n);
    return 0;
}

int smmu_xml_hostdevs(const char *xml, size_t len, const char *source_name, struct smmu_xml_hostdev **out,
                      size_t *n, struct smmu_error *err)
{
    struct xml_walk w = {.src = source_name ? source_name : "<xml>", .err = err};
    xmlNodePtr root;
    xmlDocPtr doc;
    int r;

    *out = NULL;
    *n = 0;
    if ((r = xml_load(xml ? xml : "", xml ? len : 0, w.src, &doc, err)) < 0)
        return r;
    root = xmlDocGetRootElement(doc);
    r = xml_walk_root(&w, root);
    if (r == 0 && w.n == 0)
        r = xml_fail(&w, root, "<%s> holds no <hostdev> element", (const char *)root->name);
    xmlFreeDoc(doc);
    if (r < 0) {
        free(w.v);
        return r;
    }
    *out = w.v;
    *n = w.n;
    return 0;
}

int xml_read_file(const char *path, const char *what, char **out, size_t *len, struct smmu_error *err)
{
    struct stat st;
    size_t got = 0;
    char *buf;
    int fd, r;

    *out = NULL;
    *len = 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return smmu_error_set(err, -errno, "%s: cannot read: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        r = -errno;
        close(fd);
        return smmu_error_set(err, r, "%s: cannot read: %s", path, strerror(-r));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return smmu_error_set(err, S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL, "%s: cannot read: not a regular file",
                              path);
    }
    if ((size_t)st.st_size > XML_FILE_MAX) {
        close(fd);
        return smmu_error_set(err, -EFBIG, "%s: too large for a %s (%lld bytes, max %u)", path, what,
                              (long long)st.st_size, XML_FILE_MAX);
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        close(fd);
        return smmu_error_set(err, -ENOMEM, "%s: out of memory", path);
    }
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r = -errno;
            free(buf);
            close(fd);
            return smmu_error_set(err, r, "%s: cannot read: %s", path, strerror(-r));
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    *out = buf;
    *len = got;
    return 0;
}

int smmu_xml_hostdevs_file(const char *path, struct smmu_xml_hostdev **out, size_t *n, struct smmu_error *err)
{
    char *buf;
    size_t len;
    int r;

    *out = NULL;
    *n = 0;
    if ((r = xml_read_file(path, "hostdev XML file", &buf, &len, err)) < 0)
        return r;
    r = smmu_xml_hostdevs(buf, len, path, out, n, err);
    free(buf);
    return r;
}

void smmu_xml_hostdevs_free(struct smmu_xml_hostdev *v)
{
    free(v);
}
