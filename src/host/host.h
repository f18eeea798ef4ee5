/* host: the `qdesk host` command — readiness and inventory reports of the host below
 * the configured sysroot, and the boot configuration GPUs need.
 *
 *   qdesk host check [--json]                  one verdict and fix per feature
 *   qdesk host iommu [--json]                  IOMMU groups, their devices, viability
 *   qdesk host gpus [--json]                   GPUs and what each can give guests
 *   qdesk host usb [--json]                    USB devices and which can be given
 *   qdesk host cmdline --gpu ADDR... [--apply] [--json]
 *                                              kernel parameters and modules for them
 *
 * --pci-ids FILE and --usb-ids FILE choose the name databases. */
#ifndef QDESK_HOST_HOST_H
#define QDESK_HOST_HOST_H

#include "config.h"

#include <stdio.h>

/* The subcommand in argv (argv[0] is "host"), printing to stdout and stderr. Returns
 * the exit status: 0 success, 1 failure (or, for check, a failing feature), 2 bad
 * usage. */
int host_main(const struct config *cfg, int argc, char **argv);

/* host_main() with its output and errors going to out and errf. */
int host_command(const struct config *cfg, int argc, char **argv, FILE *out, FILE *errf);

#endif
