/* fixture: what the host unit tests (tests/unit/test_*.c for src/host/) share — the
 * captured trees in tests/sysfs/, copies of them to write into, the fixed name
 * databases, and a small fake kernel that reacts to qdesk's writes the way Linux does
 * (a bind makes the driver link, sriov_numvfs makes or removes the VFs and, with
 * autoprobe on, hands them to the PF's driver, an mdev create makes the device,
 * nr_hugepages fills free_hugepages) and refuses what Linux refuses (a new VF count
 * while VFs exist, an mdev create with no instance left). Include it after cmocka.h. */
#ifndef QDESK_TESTS_SYSFS_FIXTURE_H
#define QDESK_TESTS_SYSFS_FIXTURE_H

#include "host/hostw.h"
#include "host/ids.h"
#include "util/log.h"
#include "util/fs.h"
#include "util/proc.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FX static __attribute__((unused))

/* The repository: QDESK_ROOT (tests/run sets it), else the source tree the test was
 * built from, else found from the working directory. */
FX const char *fx_root(void)
{
    static char root[PATH_MAX];
    const char *r = getenv("QDESK_ROOT");
#ifdef SOURCE_ROOT
    if (!r || !r[0])
        r = SOURCE_ROOT;
#endif
    if (!r || !r[0])
        r = access("tests/sysfs/ids/pci.ids", F_OK) == 0 ? "." : "..";
    if (!realpath(r, root)) /* absolute: cp runs in / */
        abort();
    return root;
}

/* tests/sysfs/NAME, read-only. */
FX const char *fx_tree(const char *name)
{
    static char path[4][PATH_MAX];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, PATH_MAX, "%s/tests/sysfs/%s", fx_root(), name);
    return p;
}

/* Names come from the trimmed copies of pci.ids and usb.ids beside the trees. */
FX void fx_ids(void)
{
    char pci[PATH_MAX], usb[PATH_MAX];
    snprintf(pci, sizeof(pci), "%s/tests/sysfs/ids/pci.ids", fx_root());
    snprintf(usb, sizeof(usb), "%s/tests/sysfs/ids/usb.ids", fx_root());
    ids_set_files(pci, usb);
}

/* Group set-up and tear-down for tests that only need the name databases (quiet
 * logs: the tests check messages themselves). */
FX int fx_setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR);
    fx_ids();
    return 0;
}

FX int fx_teardown(void **state)
{
    (void)state;
    ids_cleanup();
    hostw_record(false);
    return 0;
}

/* Copies tree NAME to a new directory to write into; the caller removes it with
 * fx_drop(). */
FX char *fx_copy(const char *name)
{
    char *dir = malloc(64);
    snprintf(dir, 64, "/tmp/qdesk-sysfs-XXXXXX");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        abort();
    }
    char src[PATH_MAX];
    snprintf(src, sizeof(src), "%s/.", fx_tree(name));
    char *argv[] = {"/bin/cp", "-a", src, dir, NULL};
    struct proc_spawn s = {.argv = argv, .stdout_fd = -1, .stderr_fd = -1};
    char err[256];
    if (proc_run(&s, 20000, NULL, 0, err, sizeof(err)) != 0) {
        fprintf(stderr, "cp -a %s %s: %s\n", src, dir, err);
        abort();
    }
    return dir;
}

FX void fx_drop(char *dir)
{
    if (!dir)
        return;
    fs_remove_tree(dir);
    free(dir);
}

FX void fx_put(const char *root, const char *rel, const char *text)
{
    char path[PATH_MAX];
    fs_join(path, sizeof(path), root, rel);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "fx_put %s: %s\n", path, strerror(errno));
        abort();
    }
    fputs(text, f);
    fclose(f);
}

/* The first line of root + rel, without the newline ("" when missing). */
FX const char *fx_get(const char *root, const char *rel)
{
    static char buf[4][512];
    static int next;
    char *b = buf[next++ % 4], path[PATH_MAX];
    fs_join(path, sizeof(path), root, rel);
    if (fs_read_line(path, b, 512) < 0)
        b[0] = 0;
    return b;
}

/* The name the link root + rel resolves to ("" when it is no link). */
FX const char *fx_link(const char *root, const char *rel)
{
    static char buf[4][PATH_MAX];
    static int next;
    char *b = buf[next++ % 4], path[PATH_MAX], target[PATH_MAX];
    fs_join(path, sizeof(path), root, rel);
    b[0] = 0;
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && realpath(path, target)) {
        const char *base = strrchr(target, '/');
        snprintf(b, PATH_MAX, "%s", base ? base + 1 : target);
    }
    return b;
}

/* --- the fake kernel ------------------------------------------------------------- */

struct fx_kernel {
    char last_driver[64][2][64]; /* address -> the driver it was unbound from */
    int n_last;
    long hugepages_limit; /* the most pages the kernel can find (-1: any) */
    int next_group;
    int writes;
};

/* Depth of dir below root ("sys/devices/pci0000:00/0000:00:02.0" is 4) and the part
 * after "sys/". */
static const char *fx_below(const char *root, const char *dir, int *depth)
{
    char rroot[PATH_MAX];
    if (!realpath(root, rroot))
        abort();
    size_t n = strlen(rroot);
    const char *rel = dir + n + 1;
    *depth = 1;
    for (const char *p = rel; *p; p++)
        *depth += *p == '/';
    return rel + 4; /* "sys/" */
}

static void fx_symlink(const char *root, const char *rel, const char *text)
{
    char path[PATH_MAX];
    fs_join(path, sizeof(path), root, rel);
    unlink(path);
    if (symlink(text, path) < 0) {
        fprintf(stderr, "symlink %s: %s\n", path, strerror(errno));
        abort();
    }
}

static void fx_unlink(const char *root, const char *rel)
{
    char path[PATH_MAX];
    fs_join(path, sizeof(path), root, rel);
    unlink(path);
}

/* Binds addr to driver as the kernel does: the device's driver link, the driver's link
 * to the device, and for vfio-pci the group's /dev/vfio node. */
static void fx_bind(const char *root, const char *addr, const char *driver)
{
    char path[PATH_MAX], dir[PATH_MAX], rel[PATH_MAX], text[PATH_MAX * 2];
    snprintf(rel, sizeof(rel), "/sys/bus/pci/drivers/%s", driver);
    fs_join(path, sizeof(path), root, rel);
    if (!fs_exists(path))
        return; /* no such driver loaded: the device stays unbound */
    snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s", addr);
    fs_join(path, sizeof(path), root, rel);
    if (!realpath(path, dir))
        abort();
    int depth;
    const char *below = fx_below(root, dir, &depth);
    text[0] = 0;
    for (int i = 0; i < depth - 1; i++)
        strcat(text, "../");
    snprintf(text + strlen(text), sizeof(text) - strlen(text), "bus/pci/drivers/%s",
             driver);
    snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s/driver", addr);
    fx_symlink(root, rel, text);
    snprintf(rel, sizeof(rel), "/sys/bus/pci/drivers/%s/%s", driver, addr);
    snprintf(text, sizeof(text), "../../../../%s", below);
    fx_symlink(root, rel, text);
    if (!strcmp(driver, "vfio-pci")) {
        char group[64];
        snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s/iommu_group", addr);
        snprintf(group, sizeof(group), "%s", fx_link(root, rel));
        snprintf(rel, sizeof(rel), "/dev/vfio/%s", group);
        fx_put(root, rel, "");
    }
}

/* Remembers the driver whose id table matches addr (it takes the device again on a
 * probe); vfio-pci only takes devices through driver_override. */
static void fx_remember(struct fx_kernel *k, const char *addr, const char *driver)
{
    if (!strcmp(driver, "vfio-pci"))
        return;
    for (int i = 0; i < k->n_last; i++)
        if (!strcmp(k->last_driver[i][0], addr)) {
            snprintf(k->last_driver[i][1], 64, "%s", driver);
            return;
        }
    if (k->n_last < 64) {
        snprintf(k->last_driver[k->n_last][0], 64, "%s", addr);
        snprintf(k->last_driver[k->n_last++][1], 64, "%s", driver);
    }
}

static const char *fx_recalled(const struct fx_kernel *k, const char *addr)
{
    for (int i = 0; i < k->n_last; i++)
        if (!strcmp(k->last_driver[i][0], addr))
            return k->last_driver[i][1];
    return "";
}

static void fx_add_available(const char *root, const char *type_dir, int delta)
{
    char rel[PATH_MAX], value[32];
    snprintf(rel, sizeof(rel), "%s/available_instances", type_dir);
    snprintf(value, sizeof(value), "%d\n", atoi(fx_get(root, rel)) + delta);
    fx_put(root, rel, value);
}

/* The path of rel (a kernel path, "/sys/bus/pci/devices/X") with every link resolved,
 * as a kernel path again ("/sys/devices/pci0000:00/X"). */
static void fx_real(const char *root, const char *rel, char *out, size_t outsz)
{
    char path[PATH_MAX], real[PATH_MAX], rroot[PATH_MAX];
    fs_join(path, sizeof(path), root, rel);
    if (!realpath(path, real) || !realpath(root, rroot))
        abort();
    snprintf(out, outsz, "%s", real + strlen(rroot));
}

/* Makes the link at (a kernel path) point to target (a kernel path without links)
 * with a relative text, as the kernel's links are. */
static void fx_link_to(const char *root, const char *at, const char *target)
{
    char text[PATH_MAX] = "";
    size_t common = 0;
    for (size_t i = 0; at[i] && at[i] == target[i]; i++)
        if (at[i] == '/')
            common = i + 1;
    for (const char *p = at + common; *p; p++)
        if (*p == '/')
            strcat(text, "../");
    strcat(text, target + common);
    fx_symlink(root, at, text);
}

static void fx_mkdir(const char *root, const char *rel)
{
    char path[PATH_MAX];
    fs_join(path, sizeof(path), root, rel);
    fs_mkdir_p(path, 0755);
}

static void fx_rmtree(const char *root, const char *rel)
{
    char path[PATH_MAX];
    fs_join(path, sizeof(path), root, rel);
    fs_remove_tree(path);
}

/* A fresh IOMMU group number: one more than the highest. */
static int fx_new_group(const char *root)
{
    char path[PATH_MAX];
    fs_join(path, sizeof(path), root, "/sys/kernel/iommu_groups");
    int top = -1;
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && atoi(e->d_name) > top && atoi(e->d_name) < 100)
            top = atoi(e->d_name);
    if (d)
        closedir(d);
    return top + 1;
}

/* How many VFs pf has now: its virtfnN links. */
static int fx_vf_count(const char *root, const char *pf)
{
    int n = 0;
    for (;; n++) {
        char rel[128];
        snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s/virtfn%d", pf, n);
        if (!fx_link(root, rel)[0])
            return n;
    }
}

/* Enables n VFs on pf as the PCI core does: a device per VF beside the PF (its ids
 * from the PF and sriov_vf_device), its own IOMMU group, the virtfnN and physfn links;
 * with sriov_drivers_autoprobe on, the PF's driver takes each new VF. */
static void fx_vfs_enable(const char *root, const char *pf, int n)
{
    char rel[PATH_MAX], pfdir[PATH_MAX], pfrel[128];
    snprintf(pfrel, sizeof(pfrel), "/sys/bus/pci/devices/%s", pf);
    fx_real(root, pfrel, pfdir, sizeof(pfdir));
    unsigned dom, bus, slot, fn;
    if (sscanf(pf, "%x:%x:%x.%x", &dom, &bus, &slot, &fn) != 4)
        abort();
#define FX_PF(attr) (snprintf(rel, sizeof(rel), "%s/%s", pfrel, attr), fx_get(root, rel))
    int offset = atoi(FX_PF("sriov_offset")), stride = atoi(FX_PF("sriov_stride"));
    bool autoprobe = atoi(FX_PF("sriov_drivers_autoprobe")) == 1;
    char driver[64], vf_device[16],
        attrs[6][2][64] = {{"vendor"},           {"class"},    {"subsystem_vendor"},
                           {"subsystem_device"}, {"revision"}, {"device"}};
    snprintf(rel, sizeof(rel), "%s/driver", pfrel);
    snprintf(driver, sizeof(driver), "%s", fx_link(root, rel));
    snprintf(vf_device, sizeof(vf_device), "0x%s\n", FX_PF("sriov_vf_device"));
    for (int a = 0; a < 5; a++)
        snprintf(attrs[a][1], sizeof(attrs[a][1]), "%s\n", FX_PF(attrs[a][0]));
    snprintf(attrs[5][1], sizeof(attrs[5][1]), "%s", vf_device);
#undef FX_PF
    for (int i = 0; i < n; i++) {
        unsigned rid = (bus << 8 | slot << 3 | fn) + (unsigned)(offset + i * stride);
        char addr[16], dir[PATH_MAX], at[PATH_MAX], group[64];
        snprintf(addr, sizeof(addr), "%04x:%02x:%02x.%x", dom, rid >> 8,
                 (rid >> 3) & 0x1f, rid & 7);
        snprintf(dir, sizeof(dir), "%.*s/%s", (int)(strrchr(pfdir, '/') - pfdir), pfdir,
                 addr);
        fx_mkdir(root, dir);
        for (int a = 0; a < 6; a++) {
            snprintf(rel, sizeof(rel), "%s/%s", dir, attrs[a][0]);
            fx_put(root, rel, attrs[a][1]);
        }
        static const char *const plain[][2] = {{"driver_override", "(null)\n"},
                                               {"boot_vga", "0\n"},
                                               {"reset", ""},
                                               {"reset_method", "flr\n"},
                                               {"remove", ""}};
        for (size_t a = 0; a < sizeof(plain) / sizeof(plain[0]); a++) {
            snprintf(rel, sizeof(rel), "%s/%s", dir, plain[a][0]);
            fx_put(root, rel, plain[a][1]);
        }
        snprintf(at, sizeof(at), "/sys/bus/pci/devices/%s", addr);
        fx_link_to(root, at, dir);
        snprintf(at, sizeof(at), "%s/virtfn%d", pfdir, i);
        fx_link_to(root, at, dir);
        snprintf(at, sizeof(at), "%s/physfn", dir);
        fx_link_to(root, at, pfdir);
        snprintf(group, sizeof(group), "/sys/kernel/iommu_groups/%d", fx_new_group(root));
        snprintf(rel, sizeof(rel), "%s/devices", group);
        fx_mkdir(root, rel);
        snprintf(rel, sizeof(rel), "%s/type", group);
        fx_put(root, rel, "identity\n");
        snprintf(at, sizeof(at), "%s/devices/%s", group, addr);
        fx_link_to(root, at, dir);
        snprintf(at, sizeof(at), "%s/iommu_group", dir);
        fx_link_to(root, at, group);
        if (autoprobe && driver[0])
            fx_bind(root, addr, driver);
    }
}

/* Disables pf's VFs: every VF device, its links and its IOMMU group go. */
static void fx_vfs_disable(const char *root, const char *pf)
{
    for (int i = fx_vf_count(root, pf); i-- > 0;) {
        char rel[PATH_MAX], addr[64], dir[PATH_MAX], group[64], driver[64];
        snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s/virtfn%d", pf, i);
        snprintf(addr, sizeof(addr), "%s", fx_link(root, rel));
        fx_real(root, rel, dir, sizeof(dir));
        fx_unlink(root, rel);
        snprintf(rel, sizeof(rel), "%s/iommu_group", dir);
        snprintf(group, sizeof(group), "%s", fx_link(root, rel));
        snprintf(rel, sizeof(rel), "%s/driver", dir);
        snprintf(driver, sizeof(driver), "%s", fx_link(root, rel));
        if (driver[0]) {
            snprintf(rel, sizeof(rel), "/sys/bus/pci/drivers/%s/%s", driver, addr);
            fx_unlink(root, rel);
        }
        snprintf(rel, sizeof(rel), "/sys/kernel/iommu_groups/%s", group);
        fx_rmtree(root, rel);
        snprintf(rel, sizeof(rel), "/dev/vfio/%s", group);
        fx_unlink(root, rel);
        snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s", addr);
        fx_unlink(root, rel);
        fx_rmtree(root, dir);
    }
}

/* sriov_numvfs as the PCI core takes it: the same count changes nothing, more than
 * sriov_totalvfs is ERANGE, a new count while VFs exist is EBUSY (0 first). */
static int fx_numvfs(const char *root, const char *path, const char *pf, int n)
{
    char rel[128], text[16];
    int now = fx_vf_count(root, pf);
    snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s/sriov_totalvfs", pf);
    int rc = n > atoi(fx_get(root, rel)) ? -ERANGE : now && n && n != now ? -EBUSY : 0;
    snprintf(text, sizeof(text), "%d\n", rc ? now : n);
    fx_put(root, path, text);
    if (rc || n == now)
        return rc;
    if (n)
        fx_vfs_enable(root, pf, n);
    else
        fx_vfs_disable(root, pf);
    return 0;
}

/* The hostw observer: Linux's side of each write qdesk makes. */
FX int fx_kernel_react(const char *root, const char *path, const char *value, void *data)
{
    struct fx_kernel *k = data;
    char rel[PATH_MAX], driver[64], addr[64];
    k->writes++;
    if (!value)
        return 0;
    if (sscanf(path, "/sys/bus/pci/drivers/%63[^/]/unbind", driver) == 1) {
        snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s/driver", value);
        fx_unlink(root, rel);
        snprintf(rel, sizeof(rel), "/sys/bus/pci/drivers/%s/%s", driver, value);
        fx_unlink(root, rel);
        fx_remember(k, value, driver);
    } else if (!strcmp(path, "/sys/bus/pci/drivers_probe")) {
        snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s/driver", value);
        if (fx_link(root, rel)[0])
            return 0;
        snprintf(rel, sizeof(rel), "/sys/bus/pci/devices/%s/driver_override", value);
        const char *over = fx_get(root, rel);
        fx_bind(root, value,
                strcmp(over, "(null)") && over[0] ? over : fx_recalled(k, value));
    } else if (!strcmp(strrchr(path, '/'), "/driver_override")) {
        if (!value[0])
            fx_put(root, path, "(null)\n");
    } else if (sscanf(path, "/sys/bus/pci/devices/%63[^/]/", addr) == 1 &&
               !strcmp(strrchr(path, '/'), "/sriov_numvfs")) {
        return fx_numvfs(root, path, addr, atoi(value));
    } else if (strstr(path, "/mdev_supported_types/") && strstr(path, "/create")) {
        /* /sys/class/mdev_bus/PARENT/mdev_supported_types/TYPE/create */
        char parent[64], type[128], dir[PATH_MAX], full[PATH_MAX];
        if (sscanf(path,
                   "/sys/class/mdev_bus/%63[^/]/mdev_supported_types/%127[^/]/create",
                   parent, type) != 2)
            return 0;
        snprintf(rel, sizeof(rel),
                 "/sys/class/mdev_bus/%s/mdev_supported_types/%s/available_instances",
                 parent, type);
        if (atoi(fx_get(root, rel)) <= 0)
            return -EUSERS; /* mdev core: no instance left */
        snprintf(rel, sizeof(rel), "/sys/class/mdev_bus/%s", parent);
        fs_join(full, sizeof(full), root, rel);
        if (!realpath(full, dir))
            abort();
        int depth;
        const char *below = fx_below(root, dir, &depth);
        char devrel[PATH_MAX], text[PATH_MAX * 2];
        snprintf(devrel, sizeof(devrel), "/sys/%s/%s", below, value);
        char devpath[PATH_MAX];
        fs_join(devpath, sizeof(devpath), root, devrel);
        fs_mkdir_p(devpath, 0755);
        snprintf(rel, sizeof(rel), "%s/remove", devrel);
        fx_put(root, rel, "");
        snprintf(rel, sizeof(rel), "%s/mdev_type", devrel);
        snprintf(text, sizeof(text), "../mdev_supported_types/%s", type);
        fx_symlink(root, rel, text);
        int group = 100 + k->next_group++;
        snprintf(rel, sizeof(rel), "/sys/kernel/iommu_groups/%d/devices", group);
        fs_join(full, sizeof(full), root, rel);
        fs_mkdir_p(full, 0755);
        snprintf(rel, sizeof(rel), "/sys/kernel/iommu_groups/%d/devices/%s", group,
                 value);
        snprintf(text, sizeof(text), "../../../../%s/%s", below, value);
        fx_symlink(root, rel, text);
        snprintf(rel, sizeof(rel), "%s/iommu_group", devrel);
        text[0] = 0; /* from the device, one level below its parent, up to sys/ */
        for (int i = 0; i < depth; i++)
            strcat(text, "../");
        snprintf(text + strlen(text), sizeof(text) - strlen(text),
                 "kernel/iommu_groups/%d", group);
        fx_symlink(root, rel, text);
        snprintf(rel, sizeof(rel), "/dev/vfio/%d", group);
        fx_put(root, rel, "");
        snprintf(rel, sizeof(rel), "/sys/bus/mdev/devices");
        fs_join(full, sizeof(full), root, rel);
        fs_mkdir_p(full, 0755);
        snprintf(rel, sizeof(rel), "/sys/bus/mdev/devices/%s", value);
        snprintf(text, sizeof(text), "../../../%s/%s", below, value);
        fx_symlink(root, rel, text);
        snprintf(rel, sizeof(rel), "/sys/class/mdev_bus/%s/mdev_supported_types/%s",
                 parent, type);
        fx_add_available(root, rel, -1);
        /* the type lists its instances */
        char typedir[PATH_MAX], at[PATH_MAX];
        fx_real(root, rel, typedir, sizeof(typedir));
        snprintf(at, sizeof(at), "%s/devices/%s", typedir, value);
        snprintf(full, sizeof(full), "%s/devices", typedir);
        fx_mkdir(root, full);
        snprintf(full, sizeof(full), "/sys/%s/%s", below, value);
        fx_link_to(root, at, full);
    } else if (!strncmp(path, "/sys/bus/mdev/devices/", 22) && strstr(path, "/remove")) {
        char uuid[64], type[PATH_MAX], full[PATH_MAX], dir[PATH_MAX];
        snprintf(uuid, sizeof(uuid), "%.36s", path + 22);
        snprintf(rel, sizeof(rel), "/sys/bus/mdev/devices/%s/mdev_type", uuid);
        fs_join(full, sizeof(full), root, rel);
        if (!realpath(full, type))
            abort();
        snprintf(rel, sizeof(rel), "/sys/bus/mdev/devices/%s", uuid);
        fs_join(full, sizeof(full), root, rel);
        if (!realpath(full, dir))
            abort();
        char avail[PATH_MAX + 32], text[32];
        snprintf(avail, sizeof(avail), "%s/available_instances", type);
        FILE *f = fopen(avail, "r+");
        int n = 0;
        if (f && fscanf(f, "%d", &n) == 1) {
            rewind(f);
            snprintf(text, sizeof(text), "%d\n", n + 1);
            fputs(text, f);
        }
        if (f)
            fclose(f);
        snprintf(avail, sizeof(avail), "%s/devices/%s", type, uuid);
        unlink(avail);
        fs_remove_tree(dir);
        fx_unlink(root, rel);
    } else if (strstr(path, "/nr_hugepages")) {
        long nr = atol(value);
        if (k->hugepages_limit >= 0 && nr > k->hugepages_limit) {
            nr = k->hugepages_limit;
            char text[32];
            snprintf(text, sizeof(text), "%ld\n", nr);
            fx_put(root, path, text);
        }
        char free_rel[PATH_MAX], text[32];
        snprintf(free_rel, sizeof(free_rel), "%.*sfree_hugepages",
                 (int)(strstr(path, "nr_hugepages") - path), path);
        snprintf(text, sizeof(text), "%ld\n", nr);
        fx_put(root, free_rel, text);
    }
    return 0;
}

/* Starts recording hostw's writes with the fake kernel reacting to them. */
FX void fx_kernel_start(struct fx_kernel *k)
{
    memset(k, 0, sizeof(*k));
    k->hugepages_limit = -1;
    hostw_observe(fx_kernel_react, k);
    hostw_record(true);
}

FX void fx_kernel_stop(void)
{
    hostw_observe(NULL, NULL);
    hostw_record(false);
}

#endif
