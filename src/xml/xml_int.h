/* xml_int.h — private to src/xml/: safe libxml2 document loading. */
#ifndef SMMU_XML_INT_H
#define SMMU_XML_INT_H

#include <stddef.h>
#include <libxml/tree.h>
#include "smmuctl/error.h"

/* Root element name given to a document made of several bare top-level elements (see xml_load). */
#define XML_WRAPPER_NAME "smmuctl-hostdevs"

/* Parse len bytes into *doc (free with xmlFreeDoc) without printing, without network, refusing any DOCTYPE.
 * A run of bare <hostdev> elements (not well-formed on its own: several roots) is accepted by parsing it
 * again inside a synthetic <smmuctl-hostdevs> root; line numbers are kept. On failure -EINVAL (or -ENOMEM)
 * with "<name>:<line>: not well-formed XML: <libxml2's reason>" or the DOCTYPE refusal. */
int xml_load(const char *xml, size_t len, const char *name, xmlDocPtr *doc, struct smmu_error *err);

/* ---- shared by the hostdev and domain readers (hostdev.c) ---- */
#include <stdbool.h>
#include "smmuctl/xml.h"

#define XML_FILE_MAX (16u << 20)

struct xml_walk {
    const char *src;
    struct smmu_xml_hostdev *v;
    size_t n, cap;
    enum smmu_xml_iommufd domain_iommufd;
    struct smmu_error *err;
};

/* -EINVAL with "<src>:<line of node>: <message>". */
int xml_fail(struct xml_walk *w, xmlNodePtr node, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool xml_is(xmlNodePtr n, const char *name);                  /* an element named name, no namespace */
xmlNodePtr xml_child(xmlNodePtr parent, const char *name);   /* its first such child, or NULL */
bool xml_attr(xmlNodePtr n, const char *name, char *buf, size_t size); /* false when absent */
int xml_yesno(struct xml_walk *w, xmlNodePtr n, const char *attr);      /* 1, 0, -1 absent, <-1 error */
int xml_number(const char *s, unsigned long *out);           /* libvirt's strtoul base 0; -EINVAL/-ERANGE */
int xml_pci_addr(struct xml_walk *w, xmlNodePtr n, const char *what, bool strict, struct smmu_xml_pci_addr *a);
int xml_one_hostdev(struct xml_walk *w, xmlNodePtr hd);      /* append one <hostdev> to w->v */
/* Read a whole regular file of at most XML_FILE_MAX bytes ("what" names it in the -EFBIG message). */
int xml_read_file(const char *path, const char *what, char **out, size_t *len, struct smmu_error *err);

#endif
