/* tap: the privileged step of bridged networking. qdesk makes the guest's tap
 * device, puts it on the bridge and hands QEMU only the open descriptor (QEMU's
 * sandbox forbids spawning qemu-bridge-helper). The tap goes away by itself when the
 * last descriptor closes, that is when QEMU exits. */
#ifndef QDESK_NET_TAP_H
#define QDESK_NET_TAP_H

#include <stddef.h>

/* Checks that bridge exists under sysroot. Returns 0, or -1 with err saying how to
 * make it. */
int tap_bridge_check(const char *sysroot, const char *bridge, char *err, size_t errsz);

/* Creates a tap device (named by the kernel, qdtapN), attaches it to bridge and sets
 * it up. Returns its descriptor (close-on-exec; the spawner passes it on) and its name
 * in name, or -1 with err naming the bridge and what to do. */
int tap_open(const char *bridge, char *name, size_t namesz, char *err, size_t errsz);

#endif
