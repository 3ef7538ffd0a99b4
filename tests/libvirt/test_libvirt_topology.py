#!/usr/bin/env python3
"""test_libvirt_topology — real libvirt 12.8 turns `smmuctl topology --xml` back into the VM's topology (issue 11.2).

1. Real QEMU 11 runs a topology (the layout of test_libvirt_layout's fake host: two pxb-pcie with NUMA nodes,
   root ports with mem-reserve/pref64-reserve, two arm-smmuv3); `smmuctl topology --xml` on it goes into a
   minimal aarch64 domain, and libvirt (tests/libvirt/oracle/oracle.sh) must
     --validate it (virt-xml-validate), and
     --lines:  make of it exactly the VM's pxb-pcie, pcie-root-port and arm-smmuv3 arguments — same ids, same
               properties, nothing more of those kinds (libvirt adds the addresses QEMU chose itself: the pxbs'
               slots on pcie.0 must be the ones the VM has).
2. The FACTS topology (ids pcie.1, rp1a…, not libvirt's): the XML renumbers them; libvirt's arguments are the VM's
   once the ids are mapped back through the comment that lists the renames.
   libvirt's canonical form (--dumpxml) of layout's domain, given back as `topology --domain`, agrees with the
   layout VM; the FACTS VM against libvirt's (renumbered) copy lists missing and extra pxbs, ports and vSMMUs.
3. A VM with an attached vfio-pci device (the recorded synthetic discover-syn-accel-vfio.txt served by qmp-replay:
   no real device can be realized here): libvirt puts the hostdev (ua-hostdev0, iommufd0) on the root port
   that stands for the VM's port, behind the same vSMMU, and makes both accel vSMMUs.
Usage: test_libvirt_topology.py SMMUCTL QMP_REPLAY. Needs root, the libvirt tree ($LIBVIRT12, default
~/.cache/smmuctl/libvirt12) and QEMU 11 ($SMMUCTL_QEMU_DIR, default ~/.cache/smmuctl/qemu11). Exit 77 (ctest:
skipped) with the reason when one is missing.
"""
import json, os, re, socket, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ORACLE = os.path.join(HERE, "oracle", "oracle.sh")
FIXTURES = os.path.join(HERE, "..", "..", "qmp-fixtures")
sys.path.insert(0, HERE)
import test_libvirt_layout as lay  # noqa: E402  (fake sysfs, domain wrapper)

SKIP = 77
KINDS = ("pxb-pcie", "pcie-root-port", "arm-smmuv3")


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def run(cmd, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    return p.returncode, p.stdout, p.stderr


def wait_socket(path, proc, what):
    for _ in range(500):
        if proc.poll() is not None:
            fail("%s exited early (%s)" % (what, proc.returncode))
        if os.path.exists(path):
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(path)
                s.close()
                return
            except OSError:
                pass
        time.sleep(0.02)
    fail("%s: no socket %s" % (what, path))


class Qemu:
    """QEMU 11 paused, no defaults, QMP on a socket; stopped by PID."""

    def __init__(self, qdir, tmp, args):
        self.sock = os.path.join(tmp, "qmp.sock")
        self.log = open(os.path.join(tmp, "qemu.log"), "w")
        cmd = [os.path.join(qdir, "bin", "qemu-system-aarch64"), "-nodefaults", "-display", "none", "-S",
               "-qmp", "unix:%s,server=on,wait=off" % self.sock, "-M", "virt"] + args
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, pass_fds=self.pass_fds(args))
        wait_socket(self.sock, self.p, "QEMU")
        # QEMU greets before it parses -device: one query proves the command line was accepted
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sock)
        f = s.makefile("rw")
        f.readline()
        f.write('{"execute":"qmp_capabilities"}\n{"execute":"query-status"}\n')
        f.flush()
        f.readline()
        if "return" not in f.readline():
            fail("QEMU refused the command line: " + open(self.log.name).read())
        s.close()

    @staticmethod
    def pass_fds(args):
        return tuple(int(m.group(1)) for a in args for m in [re.search(r"iommufd,id=iommufd0,fd=(\d+)", a)] if m)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def parse_qemu_arg(a):
    """'pxb-pcie,id=pci.1,bus_nr=252' -> {'driver': 'pxb-pcie', 'id': 'pci.1', 'bus_nr': '252'}"""
    head, *rest = a.split(",")
    d = dict(kv.split("=", 1) for kv in rest)
    d["driver"] = head
    return d


def libvirt_devices(env, dom):
    rc, out, err = run([ORACLE, "--validate", dom], env)
    if rc != 0:
        fail("libvirt's schema refuses the topology domain (exit %d):\n%s%s\n%s" % (rc, out, err, open(dom).read()))
    rc, out, err = run([ORACLE, "--lines", dom], env)
    if rc != 0:
        fail("libvirt cannot turn the topology domain into QEMU arguments (exit %d):\n%s\n%s" % (rc, err,
                                                                                               open(dom).read()))
    lines = out.splitlines()
    devs = {}
    for opt, val in zip(lines, lines[1:]):
        if opt in ("-device", "-object") and val.startswith("{"):
            o = json.loads(val)
            devs[o.get("id")] = o
    return devs


def topology_xml(smmuctl, sock, tmp, sysfs=None):
    cmd = [smmuctl, "--qmp", sock, "--state-dir", os.path.join(tmp, "state")]
    if sysfs:
        cmd += ["--sysfs", sysfs]
    rc, out, err = run(cmd + ["topology", "--xml"])
    if rc != 0:
        fail("topology --xml: exit %d: %s" % (rc, err))
    dom = os.path.join(tmp, "domain-%d.xml" % len(os.listdir(tmp)))
    with open(dom, "w") as f:
        f.write(lay.domain_from_fragment(out))
    return out, dom


def compare(vm_args, libvirt, rename, what):
    """Every pxb/root port/vSMMU of the VM (ids mapped by rename) in libvirt's arguments with the same
    properties, and nothing more of those kinds."""
    want = set()
    for a in vm_args:
        kind = a["driver"]
        if kind not in KINDS:
            continue
        i = rename.get(a["id"], a["id"])
        want.add(i)
        got = libvirt.get(i)
        if got is None or got.get("driver") != kind:
            fail("%s: libvirt made no %s %s (VM: %s); it made %s" % (what, kind, i, a, sorted(libvirt)))
        for k, v in a.items():
            if k == "id":
                continue
            if k in ("bus", "primary-bus"):
                v = rename.get(v, v)
            if k == "addr":
                v = "0x%x" % int(v, 0)
            if lay.as_qemu_str(got.get(k)) != v:
                fail("%s: %s %s: %s is %r in libvirt's arguments, %r in the VM's" % (what, kind, i, k, got.get(k), v))
        print("ok: %s: %s %s = libvirt's %s" % (what, kind, i, json.dumps(got)))
    for i, o in libvirt.items():
        if o.get("driver") in KINDS and i not in want:
            fail("%s: libvirt added a %s %s the VM does not have" % (what, o.get("driver"), i))


def renames(xml):
    m = re.search(r"renumbered \(same topology, libvirt's ids\): ([^>]*?) -->", xml)
    return dict(kv.split("=") for kv in m.group(1).split()) if m else {}


def main():
    if len(sys.argv) != 3:
        print("usage: test_libvirt_topology.py SMMUCTL QMP_REPLAY")
        return 2
    smmuctl, replay = sys.argv[1:]
    lv = os.environ.get("LIBVIRT12") or os.path.expanduser("~/.cache/smmuctl/libvirt12")
    qdir = os.environ.get("SMMUCTL_QEMU_DIR") or os.path.expanduser("~/.cache/smmuctl/qemu11")
    if os.geteuid() != 0:
        print("SKIP: the libvirt oracle needs root (it chroots into %s)" % lv)
        return SKIP
    if not os.path.exists(os.path.join(lv, ".libvirt12-setup-done")):
        print("SKIP: libvirt 12.8 is not set up in %s (set LIBVIRT12, or run scripts/check, or "
              "tests/libvirt/oracle/setup-libvirt.sh %s)" % (lv, lv))
        return SKIP
    if not os.access(os.path.join(qdir, "bin", "qemu-system-aarch64"), os.X_OK):
        print("SKIP: QEMU 11 is not installed in %s (run scripts/install-qemu11)" % qdir)
        return SKIP
    env = dict(os.environ, LIBVIRT12=lv)

    with tempfile.TemporaryDirectory(prefix="smmu-libvirt-topo-") as tmp:
        # 1. the layout topology, booted by real QEMU
        sysfs = os.path.join(tmp, "sys")
        lay.fake_sysfs(sysfs)
        bdfs = [d[0] for d in lay.DEVS]
        rc, qargs, err = run([smmuctl, "--sysfs", sysfs, "layout", "--format", "qemu", "--no-accel"] + bdfs)
        if rc != 0:
            fail("layout: exit %d: %s" % (rc, err))
        args = qargs.splitlines()
        fd = os.open("/dev/null", os.O_RDWR)  # no /dev/iommu here: QEMU does not check the fd (FACTS)
        args = [a + ",fd=%d" % fd if a == "iommufd,id=iommufd0" else a for a in args]
        numa = ["-m", "1G", "-smp", "2", "-object", "memory-backend-ram,id=m0,size=512M",
                "-object", "memory-backend-ram,id=m1,size=512M",
                "-numa", "node,nodeid=0,cpus=0,memdev=m0", "-numa", "node,nodeid=1,cpus=1,memdev=m1"]
        d1 = os.path.join(tmp, "vm1")
        os.mkdir(d1)
        q = Qemu(qdir, d1, numa + args)
        try:
            xml, dom = topology_xml(smmuctl, q.sock, d1, sysfs)
            # libvirt's own canonical form of layout's domain (defaults and addresses filled in, hostdevs
            # that are not attached yet) is the definition of this VM: --domain must find it agrees
            rc, lxml, err = run([smmuctl, "--sysfs", sysfs, "layout", "--format", "xml", "--no-accel"] + bdfs)
            ldom = os.path.join(d1, "layout-domain.xml")
            with open(ldom, "w") as f:
                f.write(lay.domain_from_fragment(lxml))
            rc, canon, err = run([ORACLE, "--dumpxml", ldom], env)
            if rc != 0:
                fail("libvirt --dumpxml of layout's domain: exit %d: %s" % (rc, err))
            cdom = os.path.join(d1, "libvirt-canonical.xml")
            with open(cdom, "w") as f:
                f.write(canon)
            rc, out, err = run([smmuctl, "--qmp", q.sock, "--state-dir", os.path.join(d1, "state"), "--sysfs", sysfs,
                                "--json", "topology", "--domain", cdom])
            dres = json.loads(out).get("domain") if rc == 0 else None
            if not dres or not dres.get("agrees"):
                fail("topology --domain with libvirt's canonical layout domain: exit %d %s %s" % (rc, dres, err))
            print("ok: libvirt's canonical form of layout's domain agrees with the VM (%d notes)" % len(dres["notes"]))
        finally:
            q.stop()
            os.close(fd)
        if renames(xml):
            fail("a VM with libvirt's ids was renumbered:\n" + xml)
        vm = [parse_qemu_arg(v) for o, v in zip(args[0::2], args[1::2]) if o == "-device"]
        # the pxbs' slots on pcie.0 are QEMU's choice: the XML must carry them, libvirt must keep them
        for a in vm:
            if a["driver"] == "pxb-pcie":
                m = re.search(r"index='%s' model='pcie-expander-bus'>.*?slot='(0x[0-9a-f]+)'" % a["id"][4:], xml, re.S)
                if not m:
                    fail("no slot for pxb %s in\n%s" % (a["id"], xml))
                a["addr"] = m.group(1)
        compare(vm, libvirt_devices(env, dom), {}, "layout VM")

        # 2. the FACTS topology: not libvirt's ids
        facts = ["-device", "pxb-pcie,id=pcie.1,bus_nr=252,bus=pcie.0",
                 "-device", "pcie-root-port,id=rp1a,bus=pcie.1,chassis=1,port=1",
                 "-device", "pcie-root-port,id=rp1b,bus=pcie.1,chassis=2,port=2",
                 "-device", "pxb-pcie,id=pcie.2,bus_nr=248,bus=pcie.0",
                 "-device", "pcie-root-port,id=rp2a,bus=pcie.2,chassis=3,port=3",
                 "-device", "pcie-root-port,id=rp2b,bus=pcie.2,chassis=4,port=4",
                 "-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=8,port=8",
                 "-device", "arm-smmuv3,primary-bus=pcie.1,id=smmuv3.1",
                 "-device", "arm-smmuv3,primary-bus=pcie.2,id=smmuv3.2"]
        d2 = os.path.join(tmp, "vm2")
        os.mkdir(d2)
        q = Qemu(qdir, d2, facts)
        try:
            xml, dom = topology_xml(smmuctl, q.sock, d2)
            # the renumbered XML describes libvirt's copy of this VM, not the VM: --domain says where they differ
            rc, canon, err = run([ORACLE, "--dumpxml", dom], env)
            cdom = os.path.join(d2, "libvirt-canonical.xml")
            with open(cdom, "w") as f:
                f.write(canon)
            rc, out, err = run([smmuctl, "--qmp", q.sock, "--state-dir", os.path.join(d2, "state"), "--json",
                                "topology", "--domain", cdom])
            kinds = sorted({d["kind"] for d in json.loads(out)["domain"]["disagreements"]})
            if kinds != ["extra-pxb", "extra-root-port", "extra-vsmmu", "missing-pxb", "missing-root-port",
                         "missing-vsmmu"]:
                fail("FACTS VM against libvirt's renumbered copy: disagreement kinds %r\n%s" % (kinds, out))
            print("ok: FACTS VM vs libvirt's renumbered copy: %s" % ", ".join(kinds))
        finally:
            q.stop()
        rn = renames(xml)
        if rn.get("rp1a") != "pci.3" or rn.get("pcie.1") != "pci.1":
            fail("FACTS VM: renames not listed as expected: %r\n%s" % (rn, xml))
        rn.update({"smmuv3.1": "iommu0", "smmuv3.2": "iommu1"})
        vm = [parse_qemu_arg(v) for o, v in zip(facts[0::2], facts[1::2])]
        compare(vm, libvirt_devices(env, dom), rn, "FACTS VM")

        # 3. attached hostdevs (synthetic discovery: accel vSMMUs, a cold-plugged vfio-pci on rp1a)
        d3 = os.path.join(tmp, "vm3")
        os.mkdir(d3)
        sock = os.path.join(d3, "qmp.sock")
        rp = subprocess.Popen([replay, os.path.join(FIXTURES, "discover-syn-accel-vfio.txt"), sock],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if not rp.stdout.readline().startswith("listening"):  # it serves one client: do not probe it
                fail("qmp-replay did not start: " + rp.stderr.read())
            xml, dom = topology_xml(smmuctl, sock, d3)
            rp.wait(10)
        finally:
            if rp.poll() is None:
                rp.kill()
                rp.wait()
        if rp.returncode != 0:
            fail("qmp-replay: topology --xml sent something else than discovery: " + rp.stderr.read())
        devs = libvirt_devices(env, dom)
        rn = renames(xml)
        hd = devs.get("ua-hostdev0")
        if not hd or hd.get("driver") != "vfio-pci" or hd.get("bus") != rn["rp1a"] or hd.get("iommufd") != "iommufd0":
            fail("hostdev: libvirt made %r, want vfio-pci ua-hostdev0 on %s (rp1a) with iommufd0" % (hd, rn["rp1a"]))
        port = devs[rn["rp1a"]]
        if port.get("bus") != rn["pcie.1"]:
            fail("rp1a's stand-in %r is not on %s (pcie.1)" % (port, rn["pcie.1"]))
        smmus = {o["primary-bus"]: o for o in devs.values() if o.get("driver") == "arm-smmuv3"}
        if set(smmus) != {rn["pcie.1"], rn["pcie.2"]} or not all(o.get("accel") is True for o in smmus.values()):
            fail("accel vSMMUs: libvirt made %r" % smmus)
        if devs.get("iommufd0", {}).get("qom-type") != "iommufd":
            fail("no iommufd0 object in libvirt's arguments")
        print("ok: hostdev %s on %s behind the accel vSMMU on %s" % (json.dumps(hd), rn["rp1a"], rn["pcie.1"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
