/* host_check.c — is a device usable for VFIO passthrough? Pure: judges facts smmu_host_read gathered
 * (it never reads sysfs itself; smmu_host_probe in host_read.c combines the two).
 *
 * smmuctl never rebinds host drivers (a wrong rebind can take the host's own NIC or disk away), so every
 * refusal says exactly how a person moves the device to vfio-pci themselves.
 */
#include "smmuctl/host.h"

#include <errno.h>
#include <string.h>

int smmu_host_check(const struct smmu_host_dev *dev, bool need_cdev, struct smmu_error *err)
{
    const char *b = dev->bdf;

    if (!dev->smmu[0])
        return smmu_error_set(err, -ENODEV,
                              "%s: not behind an IOMMU (sysfs has no iommu link for it); VFIO passthrough needs "
                              "the host IOMMU enabled in firmware and its kernel driver loaded (arm-smmu-v3 on "
                              "Arm; intel_iommu=on or amd_iommu on x86)", b);
    if (dev->iommu_group < 0)
        return smmu_error_set(err, -ENODEV, "%s: behind %s but in no IOMMU group (sysfs has no iommu_group link)",
                              b, dev->smmu);
    if (!dev->driver[0])
        return smmu_error_set(err, -EBUSY,
                              "%s: bound to no driver, not vfio-pci (smmuctl never rebinds drivers). Bind it "
                              "with `driverctl set-override %s vfio-pci`, or: modprobe vfio-pci; "
                              "echo vfio-pci > /sys/bus/pci/devices/%s/driver_override; "
                              "echo %s > /sys/bus/pci/drivers/vfio-pci/bind", b, b, b, b);
    if (!smmu_host_driver_is_vfio(dev->driver))
        return smmu_error_set(err, -EBUSY,
                              "%s: bound to driver %s, not vfio-pci (smmuctl never rebinds drivers). Move it "
                              "with `driverctl set-override %s vfio-pci`, or: modprobe vfio-pci; "
                              "echo %s > /sys/bus/pci/drivers/%s/unbind; "
                              "echo vfio-pci > /sys/bus/pci/devices/%s/driver_override; "
                              "echo %s > /sys/bus/pci/drivers/vfio-pci/bind", b, dev->driver, b, b, dev->driver,
                              b, b);
    if (dev->group_culprits[0])
        return smmu_error_set(err, -EBUSY,
                              "%s: IOMMU group %d not viable: %s; every other device in the group must be bound "
                              "to vfio-pci (or a vfio-pci variant), pci-stub, pcieport or no driver (see /sys/kernel/iommu_groups/%d/devices)", b,
                              dev->iommu_group, dev->group_culprits, dev->iommu_group);
    if (need_cdev && !dev->cdev[0])
        return smmu_error_set(err, -ENODEV,
                              "%s: has no VFIO cdev (no vfio-dev/vfioN in sysfs): the kernel lacks VFIO device "
                              "cdev support (CONFIG_VFIO_DEVICE_CDEV), which fd passing needs; attach without "
                              "--fd-pass or use a kernel with it", b);
    return 0;
}
