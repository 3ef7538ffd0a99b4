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

#endif
