/* hugepages: reserving a session's guest memory as huge pages (2 MiB or 1 GiB) in the
 * kernel's pools (/sys/kernel/mm/hugepages/hugepages-SIZEkB) and giving it back.
 *
 * A reservation takes what the pool has spare (pages reserved at boot that no other
 * session was promised), raises nr_hugepages by the rest and checks that those pages
 * are really there (the kernel gives fewer when memory is fragmented); a release
 * lowers it by what that reservation added. The session store records both. QEMU then
 * backs the guest with memory-backend-memfd, hugetlb=on,hugetlbsize=SIZE,prealloc=on: a
 * memfd draws on the kernel's pool of that page size, so no hugetlbfs mount of the right
 * page size is needed and a 1G guest really gets the 1G pages reserved for it. */
#ifndef QDESK_HOST_HUGEPAGES_H
#define QDESK_HOST_HUGEPAGES_H

#include <stddef.h>
#include <stdint.h>

#define HUGEPAGES_2M 2048UL
#define HUGEPAGES_1G 1048576UL

struct hugepages_pool {
    unsigned long size_kb; /* 2048, 1048576 */
    unsigned long nr;      /* nr_hugepages: reserved */
    unsigned long free;    /* free_hugepages: reserved and not in use */
    unsigned long resv;    /* resv_hugepages: promised to a mapping, not faulted */
    unsigned long surplus;
};

/* Reads the pools in size order into out (at most max). Returns how many there are,
 * or -1 with err. No pools (no hugetlbfs support) gives 0. */
int hugepages_pools(const char *sysroot, struct hugepages_pool *out, size_t max,
                    char *err, size_t errsz);

/* Writes the page size as QEMU and the kernel's boot parameters spell it ("2M",
 * "1G") into out. */
void hugepages_size_name(unsigned long size_kb, char *out, size_t outsz);

/* The number of size_kb pages that hold memory_mb (rounded up). */
unsigned long hugepages_count(uint64_t memory_mb, unsigned long size_kb);

/* Reserves count pages of size_kb for a guest. promised is how many pages of that
 * size earlier reservations hold. Free pages in the pool beyond those (pages
 * reserved at boot, the way to have 1G pages) are taken first; the pool grows by
 * what is missing, and the new pages are checked to exist and be free. *grown says
 * how many pages were added: give exactly those back with hugepages_release(). On
 * a shortfall the pool goes back to what it was. Returns 0, or -1 with err (the
 * sizes this host has, or how many pages the kernel managed). */
int hugepages_reserve(const char *sysroot, unsigned long size_kb, unsigned long count,
                      unsigned long promised, unsigned long *grown, char *err,
                      size_t errsz);

/* Takes count pages of size_kb out of the pool (never below 0): the pages a
 * reservation added. Returns 0, or -1 with err. */
int hugepages_release(const char *sysroot, unsigned long size_kb, unsigned long count,
                      char *err, size_t errsz);

#endif
