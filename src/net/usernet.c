#include "net/usernet.h"

#include "util/fs.h"
#include "util/proc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int usernet_parse_dns(struct usernet *u, const char *list, char *err, size_t errsz)
{
    char copy[512];
    snprintf(copy, sizeof(copy), "%s", list);
    u->n_dns = 0;
    for (char *save, *tok = strtok_r(copy, ", \t", &save); tok;
         tok = strtok_r(NULL, ", \t", &save)) {
        unsigned char addr[16];
        if (inet_pton(AF_INET, tok, addr) != 1 && inet_pton(AF_INET6, tok, addr) != 1) {
            snprintf(err, errsz, "dns: '%s' is not an IPv4 or IPv6 address", tok);
            return -1;
        }
        if (u->n_dns == USERNET_MAX_DNS) {
            snprintf(err, errsz, "dns: at most %d resolvers", USERNET_MAX_DNS);
            return -1;
        }
        snprintf(u->dns[u->n_dns++], sizeof(u->dns[0]), "%s", tok);
    }
    return 0;
}

bool usernet_table_ok(const char *table)
{
    size_t n = strlen(table);
    return n > 0 && n < 32 && isalpha((unsigned char)table[0]) &&
           strspn(table, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") ==
               n;
}

int usernet_build_argv(struct argv *a, const struct usernet *u)
{
    argv_add(a, u->passt);
    /* In the foreground: the pid qdesk started is passt's (no fork into a detached
     * PID namespace), and errors only, to its standard error (RUNDIR/passt.log). */
    argv_add(a, "--foreground");
    argv_add(a, "--quiet");
    /* the socket qdesk made; passt quits once QEMU's end of it closes */
    argv_add(a, "--fd");
    argv_addf(a, "%d", USERNET_FD);
    /* the gateway address is no way to the host's loopback (the firewall would stop
     * it anyway) */
    argv_add(a, "--no-map-gw");
    /* nothing of the host's is forwarded into the guest */
    argv_add(a, "--tcp-ports");
    argv_add(a, "none");
    argv_add(a, "--udp-ports");
    argv_add(a, "none");
    /* A guest address of its own, not the host's: what a guest sends to the host's
     * LAN address leaves through passt (and meets the firewall) rather than staying
     * in the guest. The addresses are the ones QEMU's slirp gave. */
    argv_add(a, "--address");
    argv_add(a, USERNET_GUEST_ADDR);
    argv_add(a, "--netmask");
    argv_add(a, USERNET_GUEST_PREFIX);
    argv_add(a, "--gateway");
    argv_add(a, USERNET_GATEWAY);
    for (size_t i = 0; i < u->n_dns; i++) {
        argv_add(a, "--dns");
        argv_add(a, u->dns[i]);
    }
    return argv_status(a);
}

char *usernet_format(const struct usernet *u)
{
    struct argv a;
    argv_init(&a);
    char *out = NULL;
    if (usernet_build_argv(&a, u) == 0) {
        size_t size = 64;
        for (size_t i = 0; i < a.n; i++)
            size += strlen(a.v[i]) * 4 + 3;
        out = calloc(1, size);
        for (size_t i = 0; out && i < a.n; i++) {
            if (i)
                strcat(out, " ");
            argv_shell_quote(a.v[i], out, size);
        }
    }
    argv_free(&a);
    return out;
}

int usernet_firewall(const struct usernet *u, uid_t uid, char *err, size_t errsz)
{
    if (!usernet_table_ok(u->table)) {
        snprintf(err, errsz, "[usernet] firewall_table: '%s' is not a table name",
                 u->table);
        return -1;
    }
    /* One transaction: the table, its set of guest users and its chain are made when
     * missing, the chain's rules are replaced (so a table from any earlier version
     * gets today's), and uid joins the set (which keeps other services' users). */
    char script[2048];
    const char *t = u->table;
    snprintf(script, sizeof(script),
             "add table inet %s\n"
             "add set inet %s guest_users { type uid; comment \"QEMU users of qdesk\"; }\n"
             "add chain inet %s output { type filter hook output priority filter; "
             "policy accept; }\n"
             "flush chain inet %s output\n"
             "add rule inet %s output meta skuid @guest_users "
             "fib daddr type { local, broadcast, multicast } meta l4proto tcp "
             "reject with tcp reset comment \"guests never reach the host\"\n"
             "add rule inet %s output meta skuid @guest_users "
             "fib daddr type { local, broadcast, multicast } "
             "reject with icmpx type admin-prohibited\n"
             "add element inet %s guest_users { %u }\n",
             t, t, t, t, t, t, t, (unsigned)uid);
    char *const argv[] = {(char *)u->nft, "--", script, NULL};
    struct proc_spawn s = {.argv = argv, .stdout_fd = -1, .stderr_fd = -1};
    char why[512] = "";
    int rc = proc_run(&s, 10000, NULL, 0, why, sizeof(why));
    if (rc != 0) {
        snprintf(err, errsz,
                 "net: guests on the default network are kept off the host by the "
                 "nftables table inet %s, which nft could not make: %s%s",
                 t, why[0] ? why : "it failed",
                 rc < 0 && !fs_exists(u->nft) ? " (Debian package nftables)" : "");
        return -1;
    }
    return 0;
}

bool usernet_host_dns_usable(const char *sysroot, char *why, size_t whysz)
{
    char path[PATH_MAX];
    fs_join(path, sizeof(path), sysroot, "/etc/resolv.conf");
    char *text = fs_read_file(path, 1 << 16, NULL);
    bool usable = false, any = false;
    for (char *save, *line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        char addr[64];
        if (sscanf(line, " nameserver %63s", addr) != 1)
            continue;
        any = true;
        usable = usable || (strncmp(addr, "127.", 4) != 0 && strcmp(addr, "::1") != 0);
    }
    free(text);
    if (!usable)
        snprintf(why, whysz,
                 any ? "%s lists only resolvers on the host's loopback, which guests may "
                       "not reach; set [usernet] dns to resolvers they can use"
                     : "%s lists no resolver; set [usernet] dns for guests",
                 path);
    return usable;
}
