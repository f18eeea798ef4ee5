/* cmdline: a resolved VM spec → QEMU's argv, in fixed-order sections.
 *
 * The same function serves `qdesk args` (print only), `qdesk run` and the
 * service, so what the golden tests check is what runs. */
#ifndef QDESK_QEMU_CMDLINE_H
#define QDESK_QEMU_CMDLINE_H

#include "qemu/spec.h"
#include "util/argv.h"

/* File names inside a VM's run directory. */
#define RUNDIR_QMP     "qmp.sock"
#define RUNDIR_VNC     "vnc.sock"
#define RUNDIR_SERIAL  "serial.log"
#define RUNDIR_PID     "qemu.pid"
#define RUNDIR_OVERLAY "overlay.qcow2"
#define RUNDIR_DATA    "data.qcow2"
#define RUNDIR_VARS    "vars.fd"

/* QEMU's device id for a host USB device: "usb-BUS-PORTPATH" (as in QMP device_del). */
void qemu_usb_id(const struct vm_usb *u, char *out, size_t outsz);

/* Appends the whole command line for s to a (which must be empty). Returns 0, or
 * -1 with the first error recorded in a->err. */
int qemu_build_cmdline(struct argv *a, const struct vm_spec *s);

#endif
