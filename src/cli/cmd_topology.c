/* cmd_topology.c — `smmuctl topology`: what the VM looks like to smmuctl. Changes nothing.
 *
 * Discovery plus the facts that complete it (host SMMUs of vfio-pci hosts from --sysfs, bindings from the
 * journal when one exists: a read-only command never creates one). --json prints
 * {"ok":true,"command":"topology", <docs/topology-json.md members>, "warnings":[…]}. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/render.h"
#include "smmuctl/libvirt_xml.h"

#define TOPOLOGY_XML_HEADER                                                                                  \
    "smmuctl topology, XML form: the live VM's vSMMU topology as libvirt elements. Put the elements of\n"      \
    "     <devices> below into the domain's <devices> (libvirt adds the pcie-root controller); a\n"            \
    "     <qemu:override> element, if any, goes directly under <domain>, which must then declare\n"           \
    "     xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0' (libvirt has no element for a root port's\n" \
    "     pref64-reserve). libvirt turns this into the same pxb-pcie buses, root ports and vSMMUs; ids\n"       \
    "     follow libvirt's rules (pci.N, iommuK, ua- aliases)."

/* The live topology as libvirt XML (DESIGN §9), with the writer `layout --format xml` uses. NULL: err set. */
static char *topology_xml(const struct smmu_facts *f, struct smmu_error *e)
{
    struct smmu_lvxml m;
    char *x;
    if (smmu_lvxml_from_topology(&f->topo, f->journal_hosts, f->n_journal_hosts, &m, e) < 0)
        return NULL;
    if (!(m.header = strdup(TOPOLOGY_XML_HEADER)) || !(x = smmu_lvxml_render(&m))) {
        smmu_lvxml_free(&m);
        smmu_error_set(e, -ENOMEM, "topology --xml: out of memory");
        return NULL;
    }
    smmu_lvxml_free(&m);
    return x;
}
#include "smmuctl/reply_json.h"

int cli_read_facts(struct cli *cli, const char *command, struct smmu_facts *f)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    smmu_journal *j = NULL;
    int r;
    if ((r = cli_connect(cli, command, &j)) != 0)
        return r;
    r = cli_facts_wait(cli, j, f, &e);
    if (j)
        smmu_journal_close(j);
    if (r < 0) {
        smmu_error_prefix(&e, "discovering the topology");
        /* a VM we cannot read is a VM we cannot reach: nothing was changed */
        return cli_fail(cli, command, r == -ENOMEM ? EXIT_FAILED : EXIT_UNREACHABLE, &e, NULL);
    }
    if (f->warnings[0] && !cli->json)
        cli_info(cli, "warning: %s", f->warnings);
    return 0;
}

int cmd_topology(struct cli *cli)
{
    struct smmu_error e = SMMU_ERROR_INIT;
    struct smmu_facts f;
    char *xml = NULL;
    int r;

    if (cli->nargs != 0)
        return cli_usage_error(cli, "topology", "topology takes no arguments (got '%s')", cli->args[0]);
    if ((r = cli_read_facts(cli, "topology", &f)) != 0)
        return r;
    if (cli->xml && !(xml = topology_xml(&f, &e))) {
        smmu_facts_free(&f);
        return cli_fail(cli, "topology", EXIT_FAILED, &e, NULL);
    }
    size_t ndis = 0;
    /* --domain: the report follows the topology (on stderr when stdout is XML); exit 0 either way */
    json_t *dom = cli_domain_report(cli, &f.topo, NULL, &ndis);
    if (cli->json) {
        json_t *o = smmu_topology_reply_json(&f);
        if (xml)
            json_object_set_new(o, "xml", json_string(xml));
        if (dom)
            json_object_set(o, "domain", dom);
        cli_print_json(cli, o);
    } else if (xml) {
        fputs(xml, stdout);
        json_decref(cli_domain_report(cli, &f.topo, stderr, &ndis));
    } else {
        render_topology(stdout, &f.topo);
        if (cli->domain) {
            fputc('\n', stdout);
            json_decref(cli_domain_report(cli, &f.topo, stdout, &ndis));
        }
        fflush(stdout);
    }
    json_decref(dom);
    free(xml);
    smmu_facts_free(&f);
    return EXIT_DONE;
}
