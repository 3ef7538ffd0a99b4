#!/usr/bin/env python3
"""discover_synth.py — regenerate the SYNTHETIC discovery fixtures qmp-fixtures/discover-syn-*.txt.

Each fixture models a QEMU this machine cannot run (accel vSMMUs need KVM, a realized vfio-pci needs a real
host device, QEMU 10.0 has no qom-list-get, malformed replies need a broken peer). A small QMP server below
answers qom-list / qom-list-get / qom-get from a model of QEMU's QOM tree, built from what real QEMU 11.1.3
returns (qmp-fixtures/discover-a64-*.txt, qemu11/transcripts/a64-15) with the modelled differences, and
`smmuctl --record FILE --json topology` is run against it. The recording becomes the fixture, with a header
that says it is synthetic and why. The tests assert the discovered topology independently of this script.

    tests/replay/discover_synth.py BUILD_DIR/smmuctl qmp-fixtures/
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading

# ---- the QOM model -------------------------------------------------------------------------------------

PXB_HOST = {"pcie.1": "/machine/unattached/device[41]", "pcie.2": "/machine/unattached/device[42]"}
ROOT_BUS = "/machine/unattached/device[5]/pcie.0"


def P(name, typ, value=None):
    return (name, typ, value)


def smmuv3(pxb, identifier, accel):
    return [P("type", "string", "arm-smmuv3"), P("parent_bus", "link<bus>", "/machine/unattached/sysbus"),
            P("realized", "bool", True), P("hotplugged", "bool", False), P("hotpluggable", "bool", False),
            P("primary-bus", "link<PCI>", PXB_HOST[pxb] + "/" + pxb), P("bus_num", "uint8", 0),
            P("smmu_per_bus", "bool", True), P("cmdqv", "OnOffAuto", "auto"), P("ats", "OnOffAuto", "on" if accel else "auto"),
            P("oas", "OasMode", "auto"), P("ssidsize", "SsidSizeMode", "auto"), P("ril", "OnOffAuto", "auto"),
            P("accel", "bool", accel), P("stage", "str", ""), P("msi-gpa", "uint64", 0),
            P("identifier", "uint8", identifier)]


def pxb(bus_nr, numa, addr):
    return [P("type", "string", "pxb-pcie"), P("parent_bus", "link<bus>", ROOT_BUS), P("realized", "bool", True),
            P("hotplugged", "bool", False), P("hotpluggable", "bool", False), P("busnr", "busnr", 0),
            P("addr", "str", addr), P("multifunction", "bool", False), P("bypass_iommu", "bool", False),
            P("bus_nr", "uint8", bus_nr), P("numa_node", "uint16", numa)]


U64_UNSET = 18446744073709551615  # what QEMU reports for an unset "size" reserve (bus-reserve: 4294967295)


def root_port(path, bus, chassis, port, addr, busnr, secname, hotplug=True, reserves=None):
    """reserves: {"pref64-reserve": bytes, …} — then all five reserve properties are listed, the others unset,
    in QEMU's order and types (as real QEMU 11.1.3 lists them; QEMU 10 has the same properties)."""
    props = [P("type", "string", "pcie-root-port"), P("parent_bus", "link<bus>", bus), P("realized", "bool", True),
             P("hotplugged", "bool", False), P("hotpluggable", "bool", False), P("busnr", "busnr", busnr),
             P("addr", "str", addr), P("multifunction", "bool", False), P("port", "uint8", port),
             P("hotplug", "bool", hotplug), P("slot", "uint16", 0), P("chassis", "uint8", chassis)]
    if reserves is not None:
        props += [P("mem-reserve", "size", reserves.get("mem-reserve", U64_UNSET)),
                  P("bus-reserve", "uint32", reserves.get("bus-reserve", 4294967295)),
                  P("pref64-reserve", "size", reserves.get("pref64-reserve", U64_UNSET)),
                  P("io-reserve", "size", reserves.get("io-reserve", U64_UNSET)),
                  P("pref32-reserve", "size", reserves.get("pref32-reserve", U64_UNSET))]
    return props + [P(secname, "child<PCIE>", path + "/" + secname)]


def vfio(bus, host, iommufd, hotplugged, sysfsdev=""):
    # QEMU 11: host is a str, iommufd a link<iommufd>; fd is write-only (listed, no value).
    return [P("type", "string", "vfio-pci"), P("parent_bus", "link<bus>", bus), P("realized", "bool", True),
            P("hotplugged", "bool", hotplugged), P("hotpluggable", "bool", True), P("addr", "str", 0),
            P("multifunction", "bool", False), P("host", "str", host), P("sysfsdev", "str", sysfsdev),
            P("fd", "str"), P("iommufd", "link<iommufd>", iommufd), P("x-no-mmap", "bool", False),
            P("bootindex", "int32", -1)]


def e1000e(bus, hotplugged=False):
    return [P("type", "string", "e1000e"), P("parent_bus", "link<bus>", bus), P("realized", "bool", True),
            P("hotplugged", "bool", hotplugged), P("hotpluggable", "bool", True), P("addr", "str", 0),
            P("netdev", "str", "cold0")]


def sec_bus(occupant=None, driver=None):
    props = [P("type", "string", "PCIE"), P("realized", "bool", True)]
    if occupant:
        props.append(P("child[0]", "link<%s>" % driver, occupant))
    props.append(P("hotplug-handler", "link<hotplug-handler>", None))
    return props


class Model:
    """QOM paths → properties, plus the containers' child lists."""

    def __init__(self, version, package, has_list_get=True):
        self.version = version
        self.package = package
        self.has_list_get = has_list_get
        self.objs = {}
        self.containers = {"/machine/peripheral": [], "/machine/peripheral-anon": [], "/objects": []}
        self.override = {}  # (command, path or "*") -> raw reply JSON text (without id)

    def add(self, container, name, qtype, props):
        path = container + "/" + name
        self.containers[container].append((name, "child<%s>" % qtype))
        if props is not None:
            self.objs[path] = props
        return path

    def add_port(self, container, name, bus, chassis, port, addr, busnr, occupant=None, driver=None, secname=None,
                 reserves=None):
        path = container + "/" + name
        secname = secname or name
        self.add(container, name, "pcie-root-port", root_port(path, bus, chassis, port, addr, busnr, secname,
                                                              reserves=reserves))
        self.objs[path + "/" + secname] = sec_bus(occupant, driver)
        return path

    def qom_list(self, path):
        if path in self.containers:
            return [{"name": "type", "type": "string"}] + [{"name": n, "type": t} for n, t in self.containers[path]]
        if path in self.objs:
            return [{"name": n, "type": t} for n, t, _ in self.objs[path]]
        return None

    def qom_get(self, path, prop):
        for n, _, v in self.objs.get(path, []):
            if n == prop:
                return v
        return KeyError

    def qom_list_get(self, paths):
        out = []
        for p in paths:
            if p not in self.objs:
                return None
            props = []
            for n, t, v in self.objs[p]:
                e = {"name": n}
                if v is not None:
                    e["value"] = v
                e["type"] = t
                props.append(e)
            out.append({"properties": props})
        return out


# ---- a QMP server over the model ------------------------------------------------------------------------

def serve(model, sock_path, ready):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    ready.set()
    conn, _ = srv.accept()
    major, minor, micro = model.version
    greeting = {"QMP": {"version": {"qemu": {"micro": micro, "minor": minor, "major": major},
                                    "package": model.package}, "capabilities": ["oob"]}}

    def send(obj_text):
        conn.sendall(obj_text.encode() + b"\r\n")

    def reply(cmd_id, ret=None, error=None, raw=None):
        idtxt = json.dumps(cmd_id)
        if raw is not None:
            body = raw.rstrip()
            assert body.endswith("}")
            send(body[:-1] + (", " if body != "{}" else "") + '"id": %s}' % idtxt)
        elif error:
            send('{"id": %s, "error": %s}' % (idtxt, json.dumps(error)))
        else:
            send('{"return": %s, "id": %s}' % (json.dumps(ret), idtxt))

    send(json.dumps(greeting))
    buf = ""
    dec = json.JSONDecoder()
    while True:
        data = conn.recv(65536)
        if not data:
            break
        buf += data.decode()
        while True:
            buf = buf.lstrip()
            if not buf:
                break
            try:
                msg, end = dec.raw_decode(buf)
            except ValueError:
                break
            buf = buf[end:]
            cmd = msg.get("execute")
            args = msg.get("arguments", {})
            cid = msg.get("id")
            key_path = args.get("path") if "path" in args else "*"
            raw = model.override.get((cmd, key_path)) or model.override.get((cmd, "*"))
            if raw is not None:
                reply(cid, raw=raw)
            elif cmd == "qmp_capabilities":
                reply(cid, ret={})
            elif cmd == "qom-list":
                r = model.qom_list(args["path"])
                if r is None:
                    reply(cid, error={"class": "DeviceNotFound", "desc": "Device '%s' not found" % args["path"]})
                else:
                    reply(cid, ret=r)
            elif cmd == "qom-list-get" and model.has_list_get:
                r = model.qom_list_get(args["paths"])
                if r is None:
                    reply(cid, error={"class": "GenericError", "desc": "Path not found"})
                else:
                    reply(cid, ret=r)
            elif cmd == "qom-get":
                v = model.qom_get(args["path"], args["property"])
                if v is KeyError:
                    reply(cid, error={"class": "GenericError", "desc": "Property '%s.%s' not found" %
                                      (args["path"], args["property"])})
                else:
                    reply(cid, ret=v)
            else:
                reply(cid, error={"class": "CommandNotFound", "desc": "The command %s has not been found" % cmd})
    conn.close()
    srv.close()


def record(smmuctl, model, out_path, header):
    tmp = tempfile.mkdtemp(prefix="discover-synth-")
    sock = os.path.join(tmp, "qmp.sock")
    rec = os.path.join(tmp, "rec.txt")
    ready = threading.Event()
    t = threading.Thread(target=serve, args=(model, sock, ready), daemon=True)
    t.start()
    ready.wait(5)
    p = subprocess.run([smmuctl, "--qmp", sock, "--state-dir", tmp, "--sysfs", tmp, "--record", rec, "--json",
                        "topology"], capture_output=True, text=True, timeout=30)
    t.join(5)
    lines = [l for l in open(rec).read().splitlines() if not l.startswith("# recorded by smmuctl")]
    with open(out_path, "w") as f:
        for h in header:
            f.write("# " + h + "\n" if h else "#\n")
        f.write("# smmuctl printed (exit %d): %s\n" % (p.returncode, p.stdout.strip()[:300]))
        for l in lines:
            f.write(l + "\n")
    os.remove(rec)
    os.remove(sock)
    os.rmdir(tmp)
    print("%s: exit %d" % (out_path, p.returncode))


# ---- the models -----------------------------------------------------------------------------------------

Q11 = ((11, 1, 3), "Debian 1:11.1.3+ds-1~bpo13+1")
WHY_ACCEL = ["accel=on needs KVM with kernel-irqchip=on (refused under TCG here), and a realized vfio-pci needs",
             "a real host device: neither can run on this machine."]


def model_accel_vfio():
    m = Model(*Q11)
    pp = "/machine/peripheral"
    m.add(pp, "pcie.1", "pxb-pcie", pxb(252, 0, 8))
    m.add(pp, "pcie.2", "pxb-pcie", pxb(248, 1, 16))
    b1, b2 = PXB_HOST["pcie.1"] + "/pcie.1", PXB_HOST["pcie.2"] + "/pcie.2"
    m.add_port(pp, "rp1a", b1, 1, 1, 0, 252, pp + "/hostdev0", "vfio-pci")
    m.add_port(pp, "rp1b", b1, 2, 2, 8, 252)
    m.add_port(pp, "rp2a", b2, 3, 3, 0, 248, "/machine/peripheral-anon/device[0]", "vfio-pci")
    m.add_port(pp, "rp2b", b2, 4, 4, 8, 248)
    m.add(pp, "smmuv3.1", "arm-smmuv3", smmuv3("pcie.1", 0, True))
    m.add(pp, "smmuv3.2", "arm-smmuv3", smmuv3("pcie.2", 1, True))
    m.add(pp, "hostdev0", "vfio-pci", vfio(pp + "/rp1a/rp1a", "0009:01:00.0", "/objects/iommufd0", False))
    # an fd-passed device (no host), hot-plugged without an id
    m.add("/machine/peripheral-anon", "device[0]", "vfio-pci",
          vfio(pp + "/rp2a/rp2a", "", "/objects/iommufd0", True))
    m.add("/objects", "iommufd0", "iommufd", None)
    return m


def model_qemu10_no_list_get():
    m = Model((10, 0, 2), "Debian 1:10.0.2+ds-1", has_list_get=False)
    pp = "/machine/peripheral"
    m.add(pp, "pcie.1", "pxb-pcie", pxb(252, 128, 8))
    b1 = PXB_HOST["pcie.1"] + "/pcie.1"
    m.add_port(pp, "rp1a", b1, 1, 1, 0, 252, pp + "/hostdev0", "vfio-pci")
    m.add_port(pp, "rp0", ROOT_BUS, 8, 8, 16, 0, pp + "/coldnic", "e1000e")
    # the fallback fetches the resource reserve properties one qom-get each (issue 12)
    m.add_port(pp, "rp0b", ROOT_BUS, 8, 9, 24, 0, reserves={"pref64-reserve": 64 << 30, "bus-reserve": 2})
    # named by sysfsdev= instead of host=
    m.add(pp, "hostdev0", "vfio-pci", vfio(pp + "/rp1a/rp1a", "", "/objects/iommufd0", False,
                                           "/sys/bus/pci/devices/0009:01:00.0"))
    m.add(pp, "coldnic", "e1000e", e1000e(pp + "/rp0/rp0"))
    # an anonymous root port: its secondary bus is named like the root bus (FACTS)
    m.add_port("/machine/peripheral-anon", "device[0]", ROOT_BUS, 9, 0, 32, 0, secname="pcie.0")
    m.add("/objects", "iommufd0", "iommufd", None)
    return m


def model_small():
    """One vSMMU, one port: the base the malformed variants break."""
    m = Model(*Q11)
    pp = "/machine/peripheral"
    m.add(pp, "pcie.1", "pxb-pcie", pxb(252, 128, 8))
    m.add_port(pp, "rp1a", PXB_HOST["pcie.1"] + "/pcie.1", 1, 1, 0, 252)
    m.add(pp, "smmuv3.1", "arm-smmuv3", smmuv3("pcie.1", 0, False))
    return m


def broken(fn):
    m = model_small()
    fn(m)
    return m


def drop_prop(m, path, name):
    m.objs[path] = [p for p in m.objs[path] if p[0] != name]


MALFORMED = [
    ("discover-syn-bad-list-not-array.txt", "qom-list /machine/peripheral answers an object instead of an array",
     lambda m: m.override.__setitem__(("qom-list", "/machine/peripheral"), '{"return": {}}')),
    ("discover-syn-bad-list-entry.txt", "a qom-list /machine/peripheral entry has no type",
     lambda m: m.override.__setitem__(("qom-list", "/machine/peripheral"),
                                      '{"return": [{"name": "type", "type": "string"}, {"name": "rp1a"}]}')),
    ("discover-syn-bad-objects-not-array.txt", "qom-list /objects answers a string",
     lambda m: m.override.__setitem__(("qom-list", "/objects"), '{"return": "iommufd0"}')),
    ("discover-syn-bad-list-get-count.txt", "qom-list-get answers one entry for three paths",
     lambda m: m.override.__setitem__(("qom-list-get", "*"), '{"return": [{"properties": []}]}')),
    ("discover-syn-bad-list-get-entry.txt", "qom-list-get answers entries without \"properties\"",
     lambda m: m.override.__setitem__(("qom-list-get", "*"), '{"return": [{}, {}, {}]}')),
    ("discover-syn-bad-port-no-chassis.txt", "the root port's properties lack chassis",
     lambda m: drop_prop(m, "/machine/peripheral/rp1a", "chassis")),
    ("discover-syn-bad-vsmmu-no-primary-bus.txt", "the vSMMU's properties lack primary-bus",
     lambda m: drop_prop(m, "/machine/peripheral/smmuv3.1", "primary-bus")),
    ("discover-syn-bad-list-get-error.txt", "qom-list-get fails with a GenericError (not CommandNotFound)",
     lambda m: m.override.__setitem__(("qom-list-get", "*"),
                                      '{"error": {"class": "GenericError", "desc": "Path not found"}}')),
]


def main():
    smmuctl, outdir = sys.argv[1], sys.argv[2]
    gen = "Generated by tests/replay/discover_synth.py: smmuctl %s recorded against a scripted QMP model of QEMU's QOM."
    record(smmuctl, model_accel_vfio(), os.path.join(outdir, "discover-syn-accel-vfio.txt"), [
        "SYNTHETIC: two accel vSMMUs (pcie.1 NUMA 0, pcie.2 NUMA 1), a cold-plugged vfio-pci hostdev0",
        "(host 0009:01:00.0, iommufd /objects/iommufd0) on rp1a, an anonymous fd-passed hot-plugged vfio-pci",
        "(host \"\") on rp2a, iommufd0 under /objects. Why synthetic: " + " ".join(WHY_ACCEL),
        "Properties follow QEMU 11.1.3's replies (a64-15, discover-a64-qemu11.txt), trimmed to a realistic subset.",
        gen % "topology --json"])
    record(smmuctl, model_qemu10_no_list_get(), os.path.join(outdir, "discover-syn-qemu10-no-qom-list-get.txt"), [
        "SYNTHETIC: QEMU 10.0.2 — no qom-list-get (CommandNotFound, added in 10.1) and no user-creatable",
        "arm-smmuv3 (10.2): discovery falls back to qom-list + qom-get and finds no vSMMU. A pxb-pcie pcie.1",
        "with rp1a holding a cold-plugged vfio-pci (sysfsdev=/sys/bus/pci/devices/0009:01:00.0, no host), rp0",
        "(pcie.0) with e1000e coldnic, free rp0b (pref64-reserve=64G, bus-reserve=2: their qom-gets), an anonymous",
        "root port. Why synthetic: only QEMU 11 is installed here.",
        gen % "topology --json"])
    for name, what, fn in MALFORMED:
        record(smmuctl, broken(fn), os.path.join(outdir, name), [
            "SYNTHETIC malformed reply: " + what + ".",
            "Why synthetic: real QEMU never answers like this; discovery must fail with -EPROTO (or QEMU's error)",
            "naming the command and path, and smmuctl must exit 3.",
            "Base: one vSMMU smmuv3.1 on pxb pcie.1 with root port rp1a (shapes as QEMU 11.1.3 replies).",
            gen % "topology --json"])


if __name__ == "__main__":
    main()
