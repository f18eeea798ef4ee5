/* usernet: the default guest network, net = user — the outside world, never the host.
 *
 * passt (Debian package passt) is the guest's network: it answers the guest's
 * DHCP, ARP and NDP itself and carries each of its TCP, UDP and ICMP flows on an
 * ordinary socket of the host. qdesk starts it (the privileged step; QEMU keeps
 * -sandbox spawn=deny) with one end of a socketpair and hands QEMU the other end
 * (-netdev stream on descriptor 3). passt quits when QEMU's end closes, so it dies
 * with its VM; qdesk records its pid and start time beside QEMU's all the same, to
 * reattach it after a restart of the service and to kill it on every way out.
 *
 * Those sockets are the host's own, so by themselves they would let the guest reach
 * the host: its loopback (passt maps the gateway address to 127.0.0.1 unless told
 * --no-map-gw, which it is) and every address the host holds — a portal listening
 * on 0.0.0.0 answers on the host's LAN address too, and a rule per address would go
 * stale when addresses change. So passt runs as the QEMU user (never root; qdesk-qemu
 * by default) and one nftables table rejects every packet a process of that user
 * sends to an address that is the host's own at that moment (fib daddr type local:
 * loopback, LAN, any interface's, IPv4 and IPv6), or to a broadcast or multicast
 * address. The kernel decides per packet, so addresses added later are covered. The
 * table holds a set of such users, so services with different QEMU users share it;
 * it is made (idempotently, in one transaction) before every guest starts, which
 * also restores it should something have flushed the ruleset. The QEMU user must be
 * an account of its own: nothing else running as it reaches the host's addresses. */
#ifndef QDESK_NET_USERNET_H
#define QDESK_NET_USERNET_H

#include "util/argv.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* What the guest is told by passt's DHCP: its address, and its gateway (which
 * passt answers for; with --no-map-gw it is no way to the host). */
#define USERNET_GUEST_ADDR   "10.0.2.15"
#define USERNET_GUEST_PREFIX "24"
#define USERNET_GATEWAY      "10.0.2.2"
#define USERNET_FD           3 /* passt's end of the socketpair, and QEMU's */
#define USERNET_LOG          "passt.log" /* passt's standard error, in the run directory */
#define USERNET_MAX_DNS      4

/* net = user for one VM: the helper, the resolvers its DHCP offers, the firewall. */
struct usernet {
    char passt[4096];                 /* the helper program */
    char dns[USERNET_MAX_DNS][48];    /* resolvers offered by DHCP; none: the host's */
    size_t n_dns;
    char nft[4096];                   /* nft(8), which makes the table */
    char table[32];                   /* the nftables table (family inet) */
};

/* Parses [usernet] dns, addresses separated by commas or spaces, into u. Returns 0,
 * or -1 with err naming the address that is not one. */
int usernet_parse_dns(struct usernet *u, const char *list, char *err, size_t errsz);

/* Returns true when an nftables table name is one qdesk accepts (letters, digits,
 * '_', up to 31 characters). */
bool usernet_table_ok(const char *table);

/* Adds passt's command line for u to a (argv_init()ed by the caller). */
int usernet_build_argv(struct argv *a, const struct usernet *u);

/* Returns passt's command line for u on one line, shell-quoted, newly allocated (the
 * caller frees it), or NULL. */
char *usernet_format(const struct usernet *u);

/* Makes sure u's table exists with its rule and that uid is in its set of guest
 * users, in one nft transaction. Returns 0, or -1 with err (nft's complaint and the
 * fix). */
int usernet_firewall(const struct usernet *u, uid_t uid, char *err, size_t errsz);

/* Returns true when /etc/resolv.conf (under sysroot) names a resolver guests can
 * use, one that is not on the host's loopback; else fills why. */
bool usernet_host_dns_usable(const char *sysroot, char *why, size_t whysz);

#endif
