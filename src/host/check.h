/* check: is this host ready for GPU desktops? One verdict per feature (KVM, the IOMMU
 * and its mode, interrupt remapping, vfio, hugepages, UEFI firmware, virgl's render
 * nodes, SR-IOV GPUs, mediated devices) and, for each problem, the fix: a kernel
 * parameter, a module or a Debian package. */
#ifndef QDESK_HOST_CHECK_H
#define QDESK_HOST_CHECK_H

#include "config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum check_status {
    CHECK_OK,
    CHECK_INFO, /* optional hardware this host does not have */
    CHECK_WARN, /* works, but not as well as it could */
    CHECK_FAIL, /* a feature guests cannot use until it is fixed */
};

struct check_item {
    char feature[24]; /* kvm, iommu, interrupt-remapping, vfio, hugepages, ovmf,
                         aavmf, virgl, sr-iov, mdev */
    enum check_status status;
    char detail[1024];
    char fix[512]; /* "" when there is nothing to do */
};

#define CHECK_MAX 16

struct check_report {
    struct check_item item[CHECK_MAX];
    size_t n;
};

/* Checks the host below cfg->sysroot (firmware paths from cfg). */
void check_run(const struct config *cfg, struct check_report *r);

/* "ok", "info", "warn", "fail". */
const char *check_status_name(enum check_status s);

/* True when some feature fails. */
bool check_failed(const struct check_report *r);

/* One line per feature ("ok    kvm          KVM can run guests ..."), each fix on an
 * indented "fix:" line below it. */
void check_print(const struct check_report *r, FILE *f);

/* {"ok": bool, "checks": [{"feature", "status", "detail", "fix"}]}: a new reference. */
json_t *check_json(const struct check_report *r);

#endif
