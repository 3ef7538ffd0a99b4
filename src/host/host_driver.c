/* host_driver.c — which host drivers count as VFIO, and which may share an IOMMU group with one. Pure;
 * a leaf of the module: host_read.c (group viability) and host_check.c (refusals) both use it. */
#include "smmuctl/host.h"

#include <string.h>

#define HOST_VFIO_DRIVER "vfio-pci"

bool smmu_host_driver_is_vfio(const char *driver)
{
    return driver && (!strcmp(driver, HOST_VFIO_DRIVER) || strstr(driver, "_vfio_pci") || strstr(driver, "-vfio-pci"));
}

bool smmu_host_driver_group_ok(const char *driver)
{
    return !driver || !*driver || smmu_host_driver_is_vfio(driver) || !strcmp(driver, "pci-stub") ||
           !strcmp(driver, "pcieport");
}
