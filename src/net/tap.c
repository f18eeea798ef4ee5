#include "net/tap.h"

#include "util/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Copies an interface name into an ifreq, refusing one that does not fit. */
static int set_name(struct ifreq *ifr, const char *name)
{
    if (strlen(name) >= sizeof(ifr->ifr_name))
        return -1;
    memcpy(ifr->ifr_name, name, strlen(name) + 1);
    return 0;
}

int tap_bridge_check(const char *sysroot, const char *bridge, char *err, size_t errsz)
{
    char rel[64], path[PATH_MAX];
    struct stat st;
    snprintf(rel, sizeof(rel), "/sys/class/net/%s/bridge", bridge);
    if (strlen(bridge) >= IFNAMSIZ || fs_join(path, sizeof(path), sysroot, rel) < 0 ||
        stat(path, &st) < 0) {
        snprintf(
            err, errsz,
            "net: there is no bridge '%s' on this host (an operator makes it: ip link "
            "add %s type bridge)",
            bridge, bridge);
        return -1;
    }
    return 0;
}

int tap_open(const char *bridge, char *name, size_t namesz, char *err, size_t errsz)
{
    if (tap_bridge_check("/", bridge, err, errsz) < 0)
        return -1;
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errsz, "net: /dev/net/tun: %s (the tun module)", strerror(errno));
        return -1;
    }
    struct ifreq ifr = {0};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    set_name(&ifr, "qdtap%d");
    int sock = -1;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        snprintf(err, errsz, "net: cannot create a tap device: %s", strerror(errno));
        goto fail;
    }
    snprintf(name, namesz, "%s", ifr.ifr_name);
    sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq br = {0};
    set_name(&br, bridge);
    br.ifr_ifindex = (int)if_nametoindex(name);
    if (sock < 0 || br.ifr_ifindex == 0 || ioctl(sock, SIOCBRADDIF, &br) < 0) {
        snprintf(err, errsz, "net: cannot put %s on bridge %s: %s", name, bridge,
                 strerror(errno));
        goto fail;
    }
    struct ifreq up = {0};
    set_name(&up, name);
    int got = ioctl(sock, SIOCGIFFLAGS, &up);
    up.ifr_flags |= IFF_UP;
    if (got < 0 || ioctl(sock, SIOCSIFFLAGS, &up) < 0) {
        snprintf(err, errsz, "net: cannot bring %s up: %s", name, strerror(errno));
        goto fail;
    }
    close(sock);
    return fd;
fail:
    if (sock >= 0)
        close(sock);
    close(fd); /* a tap without descriptors vanishes */
    return -1;
}
