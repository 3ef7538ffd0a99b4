/* xml_load.c — parse untrusted XML with libxml2 quietly and safely.
 *
 * Why so careful: the XML comes from users and from the HTTP API. libxml2 would by default print errors to
 * stderr (the library must never print) and, with a DTD, could expand entities (a "billion laughs" bomb) or
 * read external ones (XXE: local files, the network). libvirt XML never needs a DTD, so any DOCTYPE is
 * refused at the first SAX callback and the parser stopped before it reads the internal subset. Errors go
 * to a structured handler on the parser context (plus, for errors raised outside it, a thread-local
 * handler installed for the duration of the call and then restored).
 */
#define _GNU_SOURCE
#include "xml_int.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxml/parser.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlversion.h>

/* libxml2 2.12 made the structured handler take a const error. */
#if LIBXML_VERSION >= 21200
typedef const xmlError *xml_load_err_t;
#else
typedef xmlErrorPtr xml_load_err_t;
#endif

struct xml_load_state {
    int code;           /* first libxml2 error code, 0 = none */
    long line;
    char msg[512];
    bool doctype;       /* a DOCTYPE was seen and refused */
    long doctype_line;
};

static void xml_load_record(struct xml_load_state *st, xml_load_err_t e)
{
    size_t n;
    if (!st || !e || e->level < XML_ERR_ERROR || st->code)
        return;
    st->code = e->code ? e->code : -1;
    st->line = e->line;
    snprintf(st->msg, sizeof(st->msg), "%s", e->message ? e->message : "unknown error");
    n = strlen(st->msg);
    while (n && (st->msg[n - 1] == '\n' || st->msg[n - 1] == ' '))
        st->msg[--n] = 0;
}

/* Parser-context errors: libxml2 passes ctxt->userData, which is the context itself. */
static void xml_load_on_ctxt_error(void *user, xml_load_err_t e)
{
    xmlParserCtxtPtr ctxt = user;
    xml_load_record(ctxt ? ctxt->_private : NULL, e);
}

static void xml_load_on_thread_error(void *user, xml_load_err_t e)
{
    xml_load_record(user, e);
}

static void xml_load_silent(void *user, const char *fmt, ...)
{
    (void)user;
    (void)fmt;
}

static void xml_load_refuse_doctype(void *user, const xmlChar *name, const xmlChar *external_id,
                                    const xmlChar *system_id)
{
    xmlParserCtxtPtr ctxt = user;
    struct xml_load_state *st = ctxt->_private;
    (void)name;
    (void)external_id;
    (void)system_id;
    st->doctype = true;
    st->doctype_line = ctxt->input ? ctxt->input->line : 0;
    xmlStopParser(ctxt);
}

static xmlParserInputPtr xml_load_no_entity(void *user, const xmlChar *public_id, const xmlChar *system_id)
{
    (void)user;
    (void)public_id;
    (void)system_id;
    return NULL;
}

static xmlDocPtr xml_load_once(const char *buf, int len, const char *name, struct xml_load_state *st)
{
    xmlStructuredErrorFunc old_serror = xmlStructuredError;
    void *old_sctx = xmlStructuredErrorContext;
    xmlGenericErrorFunc old_gerror = xmlGenericError;
    void *old_gctx = xmlGenericErrorContext;
    xmlParserCtxtPtr ctxt;
    xmlDocPtr doc = NULL;

    xmlSetStructuredErrorFunc(st, xml_load_on_thread_error);
    xmlSetGenericErrorFunc(NULL, xml_load_silent);
    ctxt = xmlNewParserCtxt();
    if (ctxt) {
        ctxt->_private = st;
        ctxt->sax->serror = xml_load_on_ctxt_error;
        ctxt->sax->error = NULL;
        ctxt->sax->fatalError = NULL;
        ctxt->sax->warning = NULL;
        ctxt->sax->internalSubset = xml_load_refuse_doctype;
        ctxt->sax->externalSubset = NULL;
        ctxt->sax->resolveEntity = xml_load_no_entity;
        /* No XML_PARSE_NOENT / DTDLOAD / DTDATTR / XINCLUDE: nothing is substituted or loaded. */
        doc = xmlCtxtReadMemory(ctxt, buf, len, name, NULL, XML_PARSE_NONET | XML_PARSE_BIG_LINES |
                                                           XML_PARSE_NOWARNING);
        xmlFreeParserCtxt(ctxt);
    } else {
        st->code = XML_ERR_NO_MEMORY;
    }
    xmlSetStructuredErrorFunc(old_sctx, old_serror);
    xmlSetGenericErrorFunc(old_gctx, old_gerror);
    if (doc && (st->doctype || doc->intSubset || doc->extSubset)) { /* never expected: the SAX hook stops first */
        st->doctype = true;
        xmlFreeDoc(doc);
        doc = NULL;
    }
    return doc;
}

/* The wrapper may hold only <hostdev> elements, comments, PIs and blanks; otherwise the original error stands. */
static bool xml_load_wrapper_ok(xmlDocPtr doc)
{
    xmlNodePtr root = xmlDocGetRootElement(doc);
    for (xmlNodePtr c = root ? root->children : NULL; c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE) {
            if (c->ns || strcmp((const char *)c->name, "hostdev") != 0)
                return false;
        } else if (c->type == XML_TEXT_NODE) {
            if (!xmlIsBlankNode(c))
                return false;
        } else if (c->type != XML_COMMENT_NODE && c->type != XML_PI_NODE) {
            return false;
        }
    }
    return true;
}

/* Several bare top-level elements: parse "<decl?><smmuctl-hostdevs>…</smmuctl-hostdevs>" (no new lines). */
static xmlDocPtr xml_load_wrapped(const char *xml, size_t len, const char *name)
{
    static const char open_tag[] = "<" XML_WRAPPER_NAME ">", close_tag[] = "</" XML_WRAPPER_NAME ">";
    struct xml_load_state st = {0};
    size_t head = 0;
    xmlDocPtr doc;
    char *buf;

    if (len >= 3 && memcmp(xml, "\xef\xbb\xbf", 3) == 0)
        head = 3;
    if (len - head >= 5 && memcmp(xml + head, "<?xml", 5) == 0) {
        const char *end = memmem(xml + head, len - head, "?>", 2);
        if (!end)
            return NULL;
        head = (size_t)(end + 2 - xml);
    }
    if (len > (size_t)INT_MAX - sizeof(open_tag) - sizeof(close_tag))
        return NULL;
    if (!(buf = malloc(len + sizeof(open_tag) + sizeof(close_tag))))
        return NULL;
    memcpy(buf, xml, head);
    memcpy(buf + head, open_tag, sizeof(open_tag) - 1);
    memcpy(buf + head + sizeof(open_tag) - 1, xml + head, len - head);
    memcpy(buf + len + sizeof(open_tag) - 1, close_tag, sizeof(close_tag) - 1);
    doc = xml_load_once(buf, (int)(len + sizeof(open_tag) + sizeof(close_tag) - 2), name, &st);
    free(buf);
    if (doc && !xml_load_wrapper_ok(doc)) {
        xmlFreeDoc(doc);
        doc = NULL;
    }
    return doc;
}

int xml_load(const char *xml, size_t len, const char *name, xmlDocPtr *doc, struct smmu_error *err)
{
    struct xml_load_state st = {0};
    size_t i;

    *doc = NULL;
    for (i = 0; i < len && (xml[i] == ' ' || xml[i] == '\t' || xml[i] == '\n' || xml[i] == '\r'); i++)
        ;
    if (i == len)
        return smmu_error_set(err, -EINVAL, "%s: empty input: expected a <hostdev> element", name);
    if (len > INT_MAX)
        return smmu_error_set(err, -EINVAL, "%s: XML too large (%zu bytes)", name, len);
    xmlInitParser();
    *doc = xml_load_once(xml, (int)len, name, &st);
    if (*doc)
        return 0;
    if (st.doctype)
        return smmu_error_set(err, -EINVAL,
                              "%s:%ld: DOCTYPE declarations are not accepted (libvirt XML needs no DTD, and "
                              "entities are refused for safety)", name, st.doctype_line);
    if (st.code == XML_ERR_NO_MEMORY)
        return smmu_error_set(err, -ENOMEM, "%s: out of memory parsing XML", name);
    if (st.code == XML_ERR_DOCUMENT_END && (*doc = xml_load_wrapped(xml, len, name)))
        return 0;
    if (!st.code)
        return smmu_error_set(err, -EINVAL, "%s: not well-formed XML", name);
    return smmu_error_set(err, -EINVAL, "%s:%ld: not well-formed XML: %s", name, st.line, st.msg);
}
