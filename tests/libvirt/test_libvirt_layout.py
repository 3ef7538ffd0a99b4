#!/usr/bin/env python3
"""test_libvirt_layout — real libvirt 12.8 checks `smmuctl layout --format xml` (issue 11.4).

On a fake host sysfs (two Grace-Blackwell-like GPUs and a NIC behind two host SMMUs on two NUMA nodes) it
runs `smmuctl layout --format xml`, puts the fragment into a minimal aarch64 domain the way the fragment's
comment says, and asks libvirt (tests/libvirt/oracle/oracle.sh, a chroot made by setup-libvirt.sh):
  1. --validate: the domain passes libvirt's own schema (virt-xml-validate);
  2. --lines:    the QEMU arguments libvirt makes of it contain every pxb-pcie, pcie-root-port, arm-smmuv3 and
                 iommufd argument of `smmuctl layout --format qemu` with the same id and the same properties
                 (libvirt adds only addresses), and nothing else of those kinds; each hostdev lands on the root
                 port layout chose for it.
Usage: test_libvirt_layout.py SMMUCTL_BINARY. Needs root and the libvirt tree: $LIBVIRT12, default
~/.cache/smmuctl/libvirt12 (scripts/check sets it up; by hand: tests/libvirt/oracle/setup-libvirt.sh DIR).
Exit 77 (ctest: skipped) with the reason when those are missing.
"""
import json, os, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ORACLE = os.path.join(HERE, "oracle", "oracle.sh")
SKIP = 77

Z = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
GPU = ("0x0000650010000000 0x0000650010ffffff 0x0000000000040200\n" + Z +
       "0x0000660000000000 0x0000661fffffffff 0x000000000014220c\n" + Z +
       "0x0000650012000000 0x0000650013ffffff 0x000000000014220c\n" + Z * 8)
NIC = ("0x0000650000000000 0x0000650001ffffff 0x000000000014220c\n" + Z +
       "0x0000650004000000 0x0000650004003fff 0x000000000014220c\n" + Z * 10)
DEVS = [("0009:01:00.0", "smmu3.0x0000000016000000", 0, GPU),
        ("0009:02:00.0", "smmu3.0x0000000016000000", 0, NIC),
        ("0019:01:00.0", "smmu3.0x0000000026000000", 1, GPU)]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def fake_sysfs(root):
    """The part of a sysfs tree `layout` reads: device dir, iommu link, numa_node, resource."""
    for bdf, smmu, numa, res in DEVS:
        real = os.path.join(root, "devices", "pci" + bdf[:4] + ":00", bdf)
        os.makedirs(real)
        sm = os.path.join(root, "devices", "platform", "arm-smmu-v3." + smmu[-10:-7], "iommu", smmu)
        os.makedirs(sm, exist_ok=True)
        os.symlink(os.path.relpath(sm, real), os.path.join(real, "iommu"))
        with open(os.path.join(real, "numa_node"), "w") as f:
            f.write("%d\n" % numa)
        with open(os.path.join(real, "resource"), "w") as f:
            f.write(res)
        os.makedirs(os.path.join(root, "bus", "pci", "devices"), exist_ok=True)
        link = os.path.join(root, "bus", "pci", "devices", bdf)
        os.symlink(os.path.relpath(real, os.path.dirname(link)), link)


def run(cmd, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return p.returncode, p.stdout, p.stderr


def domain_from_fragment(frag):
    """The fragment's <devices> into a domain's <devices>, its <qemu:override> under <domain> (xmlns:qemu)."""
    i = frag.index("\n<devices>\n") + 1
    j = frag.index("\n</devices>\n") + 1 + len("</devices>")
    return ("<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
            "  <name>smmuctl-layout</name>\n  <memory unit='MiB'>1024</memory>\n  <vcpu>2</vcpu>\n"
            "  <os><type arch='aarch64' machine='virt'>hvm</type></os>\n"
            "  <cpu><numa><cell id='0' cpus='0' memory='512' unit='MiB'/>"
            "<cell id='1' cpus='1' memory='512' unit='MiB'/></numa></cpu>\n"
            + frag[i:j] + "\n" + frag[j:].strip() + "\n</domain>\n")


def qemu_props(arg):
    """'pxb-pcie,id=pci.1,bus_nr=252' -> ('pxb-pcie', {'id': 'pci.1', 'bus_nr': '252'})"""
    head, *rest = arg.split(",")
    return head, dict(kv.split("=", 1) for kv in rest)


def as_qemu_str(v):
    if v is True:
        return "on"
    if v is False:
        return "off"
    return str(v)


def main():
    if len(sys.argv) != 2:
        print("usage: test_libvirt_layout.py SMMUCTL_BINARY")
        return 2
    smmuctl = sys.argv[1]
    lv = os.environ.get("LIBVIRT12") or os.path.expanduser("~/.cache/smmuctl/libvirt12")
    if os.geteuid() != 0:
        print("SKIP: the libvirt oracle needs root (it chroots into %s)" % lv)
        return SKIP
    if not os.path.exists(os.path.join(lv, ".libvirt12-setup-done")):
        print("SKIP: libvirt 12.8 is not set up in %s (set LIBVIRT12, or run scripts/check, or "
              "tests/libvirt/oracle/setup-libvirt.sh %s)" % (lv, lv))
        return SKIP
    env = dict(os.environ, LIBVIRT12=lv)
    with tempfile.TemporaryDirectory(prefix="smmu-libvirt-") as tmp:
        sysfs = os.path.join(tmp, "sys")
        fake_sysfs(sysfs)
        bdfs = [d[0] for d in DEVS]
        rc, frag, err = run([smmuctl, "--sysfs", sysfs, "layout", "--format", "xml", "--no-accel"] + bdfs)
        if rc != 0:
            fail("layout --format xml: exit %d: %s" % (rc, err))
        rc, qargs, err = run([smmuctl, "--sysfs", sysfs, "layout", "--format", "qemu", "--no-accel"] + bdfs)
        if rc != 0:
            fail("layout --format qemu: exit %d: %s" % (rc, err))
        rc, js, err = run([smmuctl, "--sysfs", sysfs, "--json", "layout", "--no-accel"] + bdfs)
        lay = json.loads(js)
        dom = os.path.join(tmp, "domain.xml")
        with open(dom, "w") as f:
            f.write(domain_from_fragment(frag))

        rc, out, err = run([ORACLE, "--validate", dom], env)
        if rc != 0:
            fail("libvirt's schema refuses the layout domain (exit %d):\n%s%s" % (rc, out, err))
        print("ok: virt-xml-validate accepts the layout domain")

        rc, out, err = run([ORACLE, "--lines", dom], env)
        if rc != 0:
            fail("libvirt cannot turn the layout domain into QEMU arguments (exit %d):\n%s" % (rc, err))
        lines = out.splitlines()
        libvirt = {}  # id -> properties (devices and objects)
        for opt, val in zip(lines, lines[1:]):
            if opt in ("-device", "-object") and val.startswith("{"):
                o = json.loads(val)
                libvirt[o.get("id")] = o

        ours = qargs.splitlines()
        want_ids = set()
        for opt, val in zip(ours[0::2], ours[1::2]):
            kind, props = qemu_props(val)
            i = props["id"]
            want_ids.add(i)
            got = libvirt.get(i)
            if got is None:
                fail("libvirt made no %s with id %s (layout: %s %s)" % (kind, i, opt, val))
            gkind = got.get("driver", got.get("qom-type"))
            if gkind != kind:
                fail("%s: libvirt made a %s, layout a %s" % (i, gkind, kind))
            for k, v in props.items():
                if as_qemu_str(got.get(k)) != v:
                    fail("%s: %s is %r in libvirt's arguments, %r in layout's" % (i, k, got.get(k), v))
            print("ok: %s %s matches libvirt's %s" % (opt, val, json.dumps(got)))
        for i, o in libvirt.items():
            kind = o.get("driver", o.get("qom-type"))
            if kind in ("pxb-pcie", "pcie-root-port", "arm-smmuv3", "iommufd") and i not in want_ids:
                fail("libvirt added a %s %s that layout did not ask for" % (kind, i))
        for v in lay["vsmmus"]:
            ports = [p["id"] for p in v["root_ports"]]
            for bdf in v["devices"]:
                alias = "ua-hostdev-" + bdf.replace(":", "-").replace(".", "-")
                got = libvirt.get(alias)
                if not got or got.get("driver") != "vfio-pci" or got.get("bus") not in ports:
                    fail("hostdev %s: libvirt put %r, not on a root port of %s (%s)" % (bdf, got, v["id"], ports))
                if got.get("iommufd") != "iommufd0":
                    fail("hostdev %s: no iommufd0 in %r" % (bdf, got))
        print("ok: every hostdev sits on a root port behind its vSMMU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
