#!/usr/bin/env bash
# test_completion.sh SMMUCTL SOURCE_DIR — drives dist/bash-completion/smmuctl the way bash does (COMP_WORDS,
# COMP_CWORD, then the completion function) and checks what it offers: commands and options from the
# binary's own help, PCI addresses of vfio-pci-bound devices from a fake sysfs, ids of attached devices from
# a journal (by --vm and by the name derived from --qmp), option values (issue 14.3).
set -uo pipefail
BIN=$1
SRC=$2
S=$(mktemp -d /tmp/smmu-completion-XXXXXX)
trap 'rm -rf "$S"' EXIT
# shellcheck source=../../dist/bash-completion/smmuctl
source "$SRC/dist/bash-completion/smmuctl" || { echo "FAIL: the completion file does not source"; exit 1; }
failed=0

# offered WORD... — what the completion offers for the command line WORD... (the last word is completed),
# sorted, space-separated
offered()
{
    COMP_WORDS=("$BIN" "$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _smmuctl
    printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}
expect()
{
    local want=$1 got
    shift
    got=$(offered "$@")
    if [[ $got != "$want" ]]; then
        echo "FAIL: smmuctl $* → '$got', want '$want'"
        failed=1
    else
        echo "ok: smmuctl $* → $got"
    fi
}
contains()
{
    local want=$1 got
    shift
    got=" $(offered "$@") "
    for w in $want; do
        if [[ $got != *" $w "* ]]; then
            echo "FAIL: smmuctl $* does not offer $w (offers:$got)"
            failed=1
            return
        fi
    done
    echo "ok: smmuctl $* offers $want"
}

# a fake sysfs: two devices on vfio drivers, one on nvme, one unbound
sys=$S/sys
mkdir -p "$sys/bus/pci/drivers/vfio-pci" "$sys/bus/pci/drivers/nvgrace_gpu_vfio_pci" "$sys/bus/pci/drivers/nvme"
for d in 0009:01:00.0:vfio-pci 0019:01:00.0:nvgrace_gpu_vfio_pci 0008:01:00.0:nvme 0008:02:00.0:; do
    bdf=${d%:*}
    drv=${d##*:}
    mkdir -p "$sys/bus/pci/devices/$bdf"
    [[ -n $drv ]] && ln -s "../../../bus/pci/drivers/$drv" "$sys/bus/pci/devices/$bdf/driver"
done
# journals as smmuctl writes them (JSON_INDENT(1)): one for --vm vm1, one named after /run/vm2.qmp
state=$S/state
mkdir -p "$state"
journal()
{
    cat >"$state/$1.json" <<J
{
 "version": 1,
 "vm": "$1",
 "qmp": "unix:/run/$1.qmp",
 "iommufd": {
  "id": "iommufd0",
  "owned": true
 },
 "devices": [
  {
   "id": "$2",
   "bdf": "$3",
   "host_smmu": "smmu3.0x0000000016000000",
   "vsmmu": "smmuv3.1",
   "port": "rp1a",
   "fd_pass": false,
   "state": "attached"
  }
 ],
 "txn": {
  "op": "attach",
  "steps": [
   {
    "kind": "device_add",
    "name": "inflight0",
    "state": "sent"
   }
  ]
 }
}
J
}
journal vm1 gpu0 0009:01:00.0
journal run_vm2.qmp nic7 0009:02:00.0

contains "topology plan attach detach status recover qmp layout help" ""
expect "attach" at
expect "--state-dir" --st
contains "--fd-pass --iommufd --id --allow-mismatch --qmp" attach --
expect "--unplug-timeout" detach --unp
expect "0009:01:00.0 0019:01:00.0" --sysfs "$sys" attach ""
expect "0019:01:00.0" --sysfs "$sys" plan 0019
expect "0009:01:00.0 gpu0" --state-dir "$state" --vm vm1 detach ""
expect "0009:02:00.0 nic7" --state-dir "$state" --qmp /run/vm2.qmp detach ""
expect "0009:02:00.0 nic7" --state-dir "$state" --qmp unix:/run/vm2.qmp detach ""
SMMUCTL_STATE_DIR=$state expect "gpu0" --vm vm1 detach g
expect "" --state-dir "$state" --vm nosuchvm detach ""
expect "run_vm2.qmp vm1" --state-dir "$state" --vm ""
expect "qemu xml" layout --format ""
expect "attach" help att
expect "" --timeout ""
exit $failed
