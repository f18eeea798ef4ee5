/*
 * qdboot.c - a multiboot2 loader for the demo guest's Debian kernel.
 *
 * Why it exists: Debian ships its x86 kernel as an xz-compressed bzImage.
 * Under QEMU's TCG (no KVM) the bzImage's built-in xz decompression of the
 * ~60 MiB kernel takes about 3 s, more than half of the guest's boot budget.
 * guest/build therefore takes the kernel out of the bzImage once, at build
 * time, and stores it as an LZ4 "legacy" stream, which decompresses an order
 * of magnitude faster. GRUB cannot boot such an image itself, so GRUB loads
 * qdboot as a multiboot2 kernel with two modules:
 *
 *     multiboot2 /boot/qdboot <kernel command line>
 *     module2 --nounzip /boot/kernel.lz4 kernel
 *     module2 --nounzip /boot/initrd.img initrd
 *
 * qdboot (running in long mode, see qdboot.S) then
 *   1. copies what it needs out of the multiboot2 information,
 *   2. moves a module out of the way should one sit where the kernel goes
 *      (GRUB does not do that, because qdboot's ELF image reserves the
 *      kernel's memory as an empty segment; the move is a safety net),
 *   3. decompresses the kernel to its physical load address and zeroes the
 *      rest of its memory image,
 *   4. fills a Linux "zero page" (struct boot_params): e820 map, command
 *      line, initrd, ACPI RSDP and the framebuffer GRUB set up (efifb under
 *      UEFI), and
 *   5. jumps to the kernel's 64-bit entry with %rsi pointing at it.
 * The kernel boots as on a BIOS machine (no EFI runtime services), which
 * the demo does not need. Any error is printed on COM1 as
 * "QDESK-DEMO-FAILED qdboot: <reason>" and the CPU halts.
 *
 * Runs freestanding: no libc, identity-mapped memory, no interrupts.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* Layouts                                                                  */
/* ------------------------------------------------------------------------ */

#define MB2_BOOT_MAGIC 0x36d76289u
#define MB2_TAG_END 0
#define MB2_TAG_CMDLINE 1
#define MB2_TAG_MODULE 3
#define MB2_TAG_MMAP 6
#define MB2_TAG_FRAMEBUFFER 8
#define MB2_TAG_EFI32 11
#define MB2_TAG_EFI64 12
#define MB2_TAG_ACPI_OLD 14
#define MB2_TAG_ACPI_NEW 15
#define MB2_FB_TYPE_RGB 1
#define MB2_FB_TYPE_EGA_TEXT 2

#define E820_RAM 1
#define E820_RESERVED 2
#define E820_MAX 128

/* Offsets in struct boot_params (arch/x86/include/uapi/asm/bootparam.h). */
#define BP_SCREEN_INFO 0x000
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_E820_ENTRIES 0x1e8
#define BP_HDR_BOOT_FLAG 0x1fe
#define BP_HDR_HEADER 0x202
#define BP_HDR_VERSION 0x206
#define BP_HDR_TYPE_OF_LOADER 0x210
#define BP_HDR_LOADFLAGS 0x211
#define BP_HDR_RAMDISK_IMAGE 0x218
#define BP_HDR_RAMDISK_SIZE 0x21c
#define BP_HDR_CMD_LINE_PTR 0x228
#define BP_HDR_KERNEL_ALIGNMENT 0x230
#define BP_HDR_CMDLINE_SIZE 0x238
#define BP_HDR_INIT_SIZE 0x260
#define BP_E820_TABLE 0x2d0
#define BP_SIZE 4096

/* Offsets in struct screen_info (include/uapi/linux/screen_info.h). */
#define SI_ORIG_VIDEO_MODE 0x06
#define SI_ORIG_VIDEO_COLS 0x07
#define SI_ORIG_VIDEO_EGA_BX 0x0a
#define SI_ORIG_VIDEO_LINES 0x0e
#define SI_ORIG_VIDEO_IS_VGA 0x0f
#define SI_ORIG_VIDEO_POINTS 0x10
#define SI_LFB_WIDTH 0x12
#define SI_LFB_HEIGHT 0x14
#define SI_LFB_DEPTH 0x16
#define SI_LFB_BASE 0x18
#define SI_LFB_SIZE 0x1c
#define SI_LFB_LINELENGTH 0x24
#define SI_RED_SIZE 0x26 /* then red_pos, green_size, green_pos, blue..., rsvd... */
#define SI_CAPABILITIES 0x36
#define SI_EXT_LFB_BASE 0x3a
#define VIDEO_TYPE_VGA_TEXT 0x01
#define VIDEO_TYPE_VLFB 0x23
#define VIDEO_TYPE_EFI 0x70
#define VIDEO_CAPABILITY_64BIT_BASE 0x02

#define LOADED_HIGH 0x01
#define CMDLINE_SIZE 2048
#define MAX_MODULES 4
#define LZ4_LEGACY_MAGIC 0x184c2102u
#define LZ4_LEGACY_BLOCK (8u << 20)
#define LOW_LIMIT 0x100000ull       /* never place anything below 1 MiB */
#define HIGH_LIMIT 0x100000000ull   /* nor above 4 GiB (our identity map) */
#define PAGE 4096ull

struct region {
    uint64_t start, end;            /* [start, end) */
};

struct e820_entry {
    uint64_t addr, size;
    uint32_t type;
} __attribute__((packed));

struct module {
    struct region r;
    char line[256];                 /* the module's string from grub.cfg */
};

/* Everything copied out of the multiboot2 information. */
struct boot_info {
    char cmdline[CMDLINE_SIZE];
    struct module mod[MAX_MODULES];
    int nmod;
    struct e820_entry mmap[E820_MAX];
    int nmmap;
    bool efi;
    bool have_fb;
    uint64_t fb_addr;
    uint32_t fb_pitch, fb_width, fb_height;
    uint8_t fb_bpp, fb_type;
    uint8_t fb_colors[6];           /* red pos, size, green pos, size, blue... */
    bool have_rsdp;
};

/*
 * Linker symbols. qdboot_kernel_{load,entry,mem} come from guest/build
 * (--defsym): the kernel's physical load address, its 64-bit entry point
 * and the size of its memory image including .bss. qdboot.ld reserves that
 * range as an empty segment of qdboot itself, so GRUB never places modules
 * there; qdboot's own code and data end at __qdboot_end.
 */
extern char __qdboot_start[], __qdboot_end[];
extern char qdboot_kernel_load[], qdboot_kernel_entry[], qdboot_kernel_mem[];
void qdboot_main(uint32_t magic, uint32_t info);
__attribute__((noreturn)) void qdboot_jump(uint64_t entry, void *boot_params);

static struct boot_info bi;
static uint8_t boot_params[BP_SIZE] __attribute__((aligned(4096)));
static uint8_t rsdp_copy[64] __attribute__((aligned(16)));

/* ------------------------------------------------------------------------ */
/* Freestanding helpers: memory, strings, COM1                              */
/* ------------------------------------------------------------------------ */

/* The compiler may emit calls to these; they copy 8 bytes at a time where
 * they can, which matters under TCG. memmove handles any overlap. */
void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;

    if (d == s || n == 0)
        return dst;
    if (d < s) {
        for (; n >= 8; n -= 8, d += 8, s += 8) {
            uint64_t v;
            __builtin_memcpy(&v, s, 8);
            __builtin_memcpy(d, &v, 8);
        }
        while (n--)
            *d++ = *s++;
    } else {
        d += n;
        s += n;
        for (; n >= 8; n -= 8) {
            uint64_t v;
            d -= 8;
            s -= 8;
            __builtin_memcpy(&v, s, 8);
            __builtin_memcpy(d, &v, 8);
        }
        while (n--)
            *--d = *--s;
    }
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    return memmove(dst, src, n);
}

void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    uint64_t v = 0x0101010101010101ull * (uint8_t)c;

    for (; n >= 8; n -= 8, d += 8)
        __builtin_memcpy(d, &v, 8);
    while (n--)
        *d++ = (uint8_t)c;
    return dst;
}

static size_t str_len(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

/* Copies at most size-1 bytes of src and terminates dst. */
static void str_copy(char *dst, const char *src, size_t size)
{
    size_t i = 0;
    for (; i + 1 < size && src[i]; i++)
        dst[i] = src[i];
    dst[i] = '\0';
}

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

#define COM1 0x3f8

static void com1_putc(char c)
{
    for (int i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
        ;
    outb(COM1, (uint8_t)c);
}

static void com1_puts(const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            com1_putc('\r');
        com1_putc(*s);
    }
}

static void com1_hex(uint64_t v)
{
    char buf[19] = "0x";
    for (int i = 0; i < 16; i++)
        buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
    buf[18] = '\0';
    com1_puts(buf);
}

/* Reports an error in the guest's serial protocol and stops for good. */
__attribute__((noreturn)) static void fail(const char *what, uint64_t value)
{
    /* 115200 8N1 in case nothing set COM1 up before us. */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x80);
    outb(COM1 + 0, 0x01);
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);
    outb(COM1 + 2, 0xc7);
    com1_puts("\nQDESK-DEMO-FAILED qdboot: ");
    com1_puts(what);
    com1_puts(" ");
    com1_hex(value);
    com1_puts("\n");
    for (;;)
        __asm__ volatile("cli; hlt");
}

static bool debug_on;

/* With "qdboot.debug" on the command line: progress lines on COM1. */
static void debug(const char *what, uint64_t value)
{
    if (!debug_on)
        return;
    com1_puts("qdboot: ");
    com1_puts(what);
    com1_puts(" ");
    com1_hex(value);
    com1_puts("\n");
}

/* True if the command line contains word as a whole word. */
static bool cmdline_has(const char *cmdline, const char *word)
{
    size_t n = str_len(word);
    for (const char *p = cmdline; *p; p++) {
        if (p != cmdline && p[-1] != ' ')
            continue;
        size_t k = 0;
        while (k < n && p[k] == word[k])
            k++;
        if (k == n && (p[n] == ' ' || p[n] == '\0'))
            return true;
    }
    return false;
}

static void put16(uint8_t *p, size_t off, uint16_t v)
{
    __builtin_memcpy(p + off, &v, 2);
}

static void put32(uint8_t *p, size_t off, uint32_t v)
{
    __builtin_memcpy(p + off, &v, 4);
}

static void put64(uint8_t *p, size_t off, uint64_t v)
{
    __builtin_memcpy(p + off, &v, 8);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    __builtin_memcpy(&v, p, 8);
    return v;
}

static bool overlaps(struct region a, struct region b)
{
    return a.start < b.end && b.start < a.end;
}

/* ------------------------------------------------------------------------ */
/* Multiboot2 information                                                   */
/* ------------------------------------------------------------------------ */

/* Copies the parts of the multiboot2 information at addr into bi. */
static void mb2_parse(uint32_t addr)
{
    const uint8_t *p = (const uint8_t *)(uintptr_t)addr;
    uint32_t total = get32(p);

    if (total < 16 || total > (64u << 20))
        fail("implausible multiboot2 information size", total);
    const uint8_t *end = p + total;
    for (p += 8; p + 8 <= end;) {
        uint32_t type = get32(p), size = get32(p + 4);
        if (size < 8 || size > (uint32_t)(end - p))
            fail("bad multiboot2 tag size", size);
        if (type == MB2_TAG_END)
            break;
        switch (type) {
        case MB2_TAG_CMDLINE:
            str_copy(bi.cmdline, (const char *)p + 8,
                     size - 8 < sizeof(bi.cmdline) ? size - 8 : sizeof(bi.cmdline));
            break;
        case MB2_TAG_MODULE:
            if (bi.nmod == MAX_MODULES || size < 16)
                fail("too many or bad modules", size);
            bi.mod[bi.nmod].r.start = get32(p + 8);
            bi.mod[bi.nmod].r.end = get32(p + 12);
            str_copy(bi.mod[bi.nmod].line, (const char *)p + 16,
                     size - 16 < sizeof(bi.mod[0].line) ? size - 16
                                                       : sizeof(bi.mod[0].line));
            bi.nmod++;
            break;
        case MB2_TAG_MMAP: {
            uint32_t esize = get32(p + 8);
            if (esize < 24)
                fail("bad memory map entry size", esize);
            for (const uint8_t *e = p + 16; e + esize <= p + size; e += esize) {
                if (bi.nmmap == E820_MAX)
                    break;
                bi.mmap[bi.nmmap].addr = get64(e);
                bi.mmap[bi.nmmap].size = get64(e + 8);
                bi.mmap[bi.nmmap].type = get32(e + 16);
                bi.nmmap++;
            }
            break;
        }
        case MB2_TAG_FRAMEBUFFER:
            if (size < 32)
                break;
            bi.have_fb = true;
            bi.fb_addr = get64(p + 8);
            bi.fb_pitch = get32(p + 16);
            bi.fb_width = get32(p + 20);
            bi.fb_height = get32(p + 24);
            bi.fb_bpp = p[28];
            bi.fb_type = p[29];
            if (bi.fb_type == MB2_FB_TYPE_RGB && size >= 38)
                for (int i = 0; i < 6; i++)
                    bi.fb_colors[i] = p[32 + i];
            break;
        case MB2_TAG_EFI32:
        case MB2_TAG_EFI64:
            bi.efi = true;
            break;
        case MB2_TAG_ACPI_OLD:
        case MB2_TAG_ACPI_NEW:
            /* Prefer the ACPI 2.0 RSDP; take 1.0 only if nothing else. */
            if (type == MB2_TAG_ACPI_NEW || !bi.have_rsdp) {
                uint32_t n = size - 8 < sizeof(rsdp_copy) ? size - 8 : sizeof(rsdp_copy);
                memmove(rsdp_copy, p + 8, n);
                bi.have_rsdp = true;
            }
            break;
        default:
            break;
        }
        p += (size + 7) & ~7u;
    }
    if (bi.nmmap == 0)
        fail("no memory map from the boot loader", 0);
}

/* Finds the module whose string starts with the word name, or NULL. */
static struct module *module_find(const char *name)
{
    size_t n = str_len(name);
    for (int i = 0; i < bi.nmod; i++) {
        const char *s = bi.mod[i].line;
        size_t k = 0;
        while (k < n && s[k] == name[k])
            k++;
        if (k == n && (s[n] == '\0' || s[n] == ' '))
            return &bi.mod[i];
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Memory placement                                                         */
/* ------------------------------------------------------------------------ */

/* True if every byte of r is RAM in the firmware's memory map. */
static bool is_ram(struct region r)
{
    uint64_t pos = r.start;
    bool progress = true;

    while (pos < r.end && progress) {
        progress = false;
        for (int i = 0; i < bi.nmmap; i++) {
            const struct e820_entry *e = &bi.mmap[i];
            if (e->type == E820_RAM && e->addr <= pos && pos < e->addr + e->size) {
                pos = e->addr + e->size;
                progress = true;
            }
        }
    }
    return pos >= r.end;
}

/*
 * Moves module m to the highest place in RAM (between 1 MiB and 4 GiB)
 * that overlaps none of busy[0..nbusy). Fails if there is no such place.
 */
static void module_move_away(struct module *m, const struct region *busy, int nbusy)
{
    uint64_t size = m->r.end - m->r.start;
    uint64_t best = 0;

    for (int i = 0; i < bi.nmmap; i++) {
        const struct e820_entry *e = &bi.mmap[i];
        if (e->type != E820_RAM)
            continue;
        uint64_t lo = e->addr, hi = e->addr + e->size;
        if (hi > HIGH_LIMIT)
            hi = HIGH_LIMIT;
        if (lo < LOW_LIMIT)
            lo = LOW_LIMIT;
        /* Candidates: just below the top of the entry or below a busy region. */
        for (int c = -1; c < nbusy; c++) {
            uint64_t top = c < 0 ? hi : busy[c].start;
            if (top > hi || top < lo + size)
                continue;
            uint64_t at = (top - size) & ~(PAGE - 1);
            if (at < lo || at <= best)
                continue;
            struct region cand = { at, at + size };
            bool clash = false;
            for (int k = 0; k < nbusy; k++)
                clash = clash || overlaps(cand, busy[k]);
            if (!clash)
                best = at;
        }
    }
    if (best == 0)
        fail("no free memory to move a module to, size", size);
    memmove((void *)(uintptr_t)best, (const void *)(uintptr_t)m->r.start, size);
    m->r.start = best;
    m->r.end = best + size;
}

/*
 * Makes sure no module overlaps the kernel's destination or qdboot itself:
 * modules that do are moved, each avoiding all other regions.
 */
static void modules_make_room(struct region kernel, struct region self)
{
    for (int i = 0; i < bi.nmod; i++) {
        if (!overlaps(bi.mod[i].r, kernel) && !overlaps(bi.mod[i].r, self))
            continue;
        struct region busy[MAX_MODULES + 2];
        int n = 0;
        busy[n++] = kernel;
        busy[n++] = self;
        for (int k = 0; k < bi.nmod; k++)
            if (k != i)
                busy[n++] = bi.mod[k].r;
        module_move_away(&bi.mod[i], busy, n);
    }
}

/* ------------------------------------------------------------------------ */
/* LZ4 legacy stream ("lz4 -l"): 8 MiB independent blocks                   */
/* ------------------------------------------------------------------------ */

/* Copies n bytes forward; src and dst do not overlap. */
static inline void copy_fwd(uint8_t *d, const uint8_t *s, size_t n)
{
    for (; n >= 16; n -= 16, d += 16, s += 16) {
        uint64_t a, b;
        __builtin_memcpy(&a, s, 8);
        __builtin_memcpy(&b, s + 8, 8);
        __builtin_memcpy(d, &a, 8);
        __builtin_memcpy(d + 8, &b, 8);
    }
    for (; n >= 8; n -= 8, d += 8, s += 8) {
        uint64_t a;
        __builtin_memcpy(&a, s, 8);
        __builtin_memcpy(d, &a, 8);
    }
    while (n--)
        *d++ = *s++;
}

/* Copies an LZ4 match of n bytes from off bytes back (off >= 1). */
static inline void copy_match(uint8_t *d, size_t off, size_t n)
{
    const uint8_t *s = d - off;

    if (off >= 8) {
        for (; n >= 8; n -= 8, d += 8, s += 8) {
            uint64_t a;
            __builtin_memcpy(&a, s, 8);
            __builtin_memcpy(d, &a, 8);
        }
    } else if (off == 1) {
        uint64_t v = 0x0101010101010101ull * *s;
        for (; n >= 8; n -= 8, d += 8)
            __builtin_memcpy(d, &v, 8);
        s = d - 1;
    }
    while (n--)
        *d++ = *s++;
}

/* Decodes one LZ4 block [ip, iend) to op (at most oend); returns the new op. */
static uint8_t *lz4_block(const uint8_t *ip, const uint8_t *iend, uint8_t *op,
                          uint8_t *oend)
{
    uint8_t *ostart = op;

    for (;;) {
        if (ip >= iend)
            fail("lz4: truncated block", 0);
        unsigned token = *ip++;
        size_t lit = token >> 4;
        if (lit == 15) {
            unsigned b;
            do {
                if (ip >= iend)
                    fail("lz4: truncated literal length", 0);
                b = *ip++;
                lit += b;
            } while (b == 255);
        }
        if (lit > (size_t)(iend - ip) || lit > (size_t)(oend - op))
            fail("lz4: literals out of bounds", lit);
        copy_fwd(op, ip, lit);
        op += lit;
        ip += lit;
        if (ip == iend)
            return op; /* the last sequence has only literals */
        if (iend - ip < 2)
            fail("lz4: truncated offset", 0);
        size_t off = (size_t)ip[0] | (size_t)ip[1] << 8;
        ip += 2;
        if (off == 0 || off > (size_t)(op - ostart))
            fail("lz4: bad match offset", off);
        size_t ml = token & 15;
        if (ml == 15) {
            unsigned b;
            do {
                if (ip >= iend)
                    fail("lz4: truncated match length", 0);
                b = *ip++;
                ml += b;
            } while (b == 255);
        }
        ml += 4;
        if (ml > (size_t)(oend - op))
            fail("lz4: match out of bounds", ml);
        copy_match(op, off, ml);
        op += ml;
    }
}

/* Decompresses a legacy LZ4 stream into [dst, dst + cap); returns its size. */
static uint64_t lz4_legacy(const uint8_t *src, uint64_t len, uint8_t *dst, uint64_t cap)
{
    const uint8_t *end = src + len;
    uint8_t *op = dst;

    if (len < 4 || get32(src) != LZ4_LEGACY_MAGIC)
        fail("kernel module is not an lz4 -l stream", len);
    src += 4;
    while (end - src >= 4) {
        uint32_t n = get32(src);
        src += 4;
        if (n == LZ4_LEGACY_MAGIC)
            continue; /* concatenated streams */
        if (n == 0)
            break;
        if (n > (uint64_t)(end - src))
            fail("lz4: block larger than the module", n);
        uint64_t room = cap - (uint64_t)(op - dst);
        op = lz4_block(src, src + n, op, op + (room < LZ4_LEGACY_BLOCK ? room
                                                                     : LZ4_LEGACY_BLOCK));
        src += n;
    }
    return (uint64_t)(op - dst);
}

/* ------------------------------------------------------------------------ */
/* The zero page                                                            */
/* ------------------------------------------------------------------------ */

/* Appends an e820 entry; entries beyond the zero page's 128 are dropped. */
static void e820_add(int *n, uint64_t addr, uint64_t size, uint32_t type)
{
    if (*n == E820_MAX || size == 0)
        return;
    struct e820_entry e = { addr, size, type };
    memmove(boot_params + BP_E820_TABLE + (size_t)*n * sizeof(e), &e, sizeof(e));
    (*n)++;
}

/* Copies the firmware memory map, with [hole) carved out as reserved. */
static void bp_set_e820(struct region hole)
{
    int n = 0;

    for (int i = 0; i < bi.nmmap; i++) {
        const struct e820_entry *e = &bi.mmap[i];
        struct region r = { e->addr, e->addr + e->size };
        if (e->type != E820_RAM || !overlaps(r, hole)) {
            e820_add(&n, e->addr, e->size, e->type);
            continue;
        }
        uint64_t lo = r.start > hole.start ? r.start : hole.start;
        uint64_t hi = r.end < hole.end ? r.end : hole.end;
        e820_add(&n, r.start, lo - r.start, E820_RAM);
        e820_add(&n, lo, hi - lo, E820_RESERVED);
        e820_add(&n, hi, r.end - hi, E820_RAM);
    }
    boot_params[BP_E820_ENTRIES] = (uint8_t)n;
}

/* Describes GRUB's video mode to the kernel (efifb, vesafb or VGA text). */
static void bp_set_screen_info(void)
{
    uint8_t *si = boot_params + BP_SCREEN_INFO;

    if (!bi.have_fb)
        return;
    if (bi.fb_type == MB2_FB_TYPE_EGA_TEXT) {
        si[SI_ORIG_VIDEO_MODE] = 3;
        si[SI_ORIG_VIDEO_COLS] = (uint8_t)bi.fb_width;
        si[SI_ORIG_VIDEO_LINES] = (uint8_t)bi.fb_height;
        si[SI_ORIG_VIDEO_IS_VGA] = VIDEO_TYPE_VGA_TEXT;
        put16(si, SI_ORIG_VIDEO_EGA_BX, 3);
        put16(si, SI_ORIG_VIDEO_POINTS, 16);
        return;
    }
    if (bi.fb_type != MB2_FB_TYPE_RGB)
        return;
    uint64_t bytes = (uint64_t)bi.fb_pitch * bi.fb_height;
    si[SI_ORIG_VIDEO_IS_VGA] = bi.efi ? VIDEO_TYPE_EFI : VIDEO_TYPE_VLFB;
    put16(si, SI_LFB_WIDTH, (uint16_t)bi.fb_width);
    put16(si, SI_LFB_HEIGHT, (uint16_t)bi.fb_height);
    put16(si, SI_LFB_DEPTH, bi.fb_bpp);
    put32(si, SI_LFB_BASE, (uint32_t)bi.fb_addr);
    put32(si, SI_EXT_LFB_BASE, (uint32_t)(bi.fb_addr >> 32));
    if (bi.fb_addr >> 32)
        put32(si, SI_CAPABILITIES, VIDEO_CAPABILITY_64BIT_BASE);
    /* vesafb counts in 64 KiB units, efifb in bytes. */
    put32(si, SI_LFB_SIZE, (uint32_t)(bi.efi ? bytes : (bytes + 0xffff) >> 16));
    put16(si, SI_LFB_LINELENGTH, (uint16_t)bi.fb_pitch);
    /* multiboot2 gives position then size; screen_info wants size then pos. */
    for (int c = 0; c < 3; c++) {
        si[SI_RED_SIZE + 2 * c] = bi.fb_colors[2 * c + 1];
        si[SI_RED_SIZE + 2 * c + 1] = bi.fb_colors[2 * c];
    }
}

/* ------------------------------------------------------------------------ */
/* Entry from qdboot.S                                                      */
/* ------------------------------------------------------------------------ */

void qdboot_main(uint32_t magic, uint32_t info)
{
    if (magic != MB2_BOOT_MAGIC)
        fail("not started by a multiboot2 loader, magic", magic);
    mb2_parse(info);
    debug_on = cmdline_has(bi.cmdline, "qdboot.debug");
    debug("started, modules", (uint64_t)bi.nmod);

    struct module *kmod = module_find("kernel");
    struct module *initrd = module_find("initrd");
    if (!kmod)
        fail("no module named \"kernel\" in grub.cfg", (uint64_t)bi.nmod);
    uint64_t load = (uintptr_t)qdboot_kernel_load;
    uint64_t entry = (uintptr_t)qdboot_kernel_entry;
    uint64_t mem = (uintptr_t)qdboot_kernel_mem;
    struct region kernel = { load, load + mem };
    struct region self = { (uintptr_t)__qdboot_start,
                           ((uintptr_t)__qdboot_end + PAGE - 1) & ~(PAGE - 1) };

    if (kernel.end > HIGH_LIMIT || entry < kernel.start || entry >= kernel.end)
        fail("bad kernel load/entry/mem symbols at link time", load);
    if (!is_ram(kernel))
        fail("kernel destination is not all RAM, at", load);
    if (overlaps(kernel, self))
        fail("qdboot overlaps the kernel destination", load);
    modules_make_room(kernel, self);
    debug("kernel module at", kmod->r.start);
    if (initrd)
        debug("initrd module at", initrd->r.start);

    uint64_t got = lz4_legacy((const uint8_t *)(uintptr_t)kmod->r.start,
                              kmod->r.end - kmod->r.start, (uint8_t *)(uintptr_t)load, mem);
    memset((uint8_t *)(uintptr_t)load + got, 0, mem - got);
    debug("kernel decompressed, bytes", got);

    put16(boot_params, BP_HDR_BOOT_FLAG, 0xaa55);
    put32(boot_params, BP_HDR_HEADER, 0x53726448); /* "HdrS" */
    put16(boot_params, BP_HDR_VERSION, 0x020f);
    boot_params[BP_HDR_TYPE_OF_LOADER] = 0xff;     /* "undefined" */
    boot_params[BP_HDR_LOADFLAGS] = LOADED_HIGH;
    put32(boot_params, BP_HDR_KERNEL_ALIGNMENT, 0x200000);
    put32(boot_params, BP_HDR_CMDLINE_SIZE, CMDLINE_SIZE - 1);
    put32(boot_params, BP_HDR_INIT_SIZE, (uint32_t)mem);
    put32(boot_params, BP_HDR_CMD_LINE_PTR, (uint32_t)(uintptr_t)bi.cmdline);
    if (initrd) {
        put32(boot_params, BP_HDR_RAMDISK_IMAGE, (uint32_t)initrd->r.start);
        put32(boot_params, BP_HDR_RAMDISK_SIZE,
              (uint32_t)(initrd->r.end - initrd->r.start));
    }
    if (bi.have_rsdp)
        put64(boot_params, BP_ACPI_RSDP_ADDR, (uintptr_t)rsdp_copy);
    bp_set_e820(self);
    bp_set_screen_info();

    debug("entering kernel at", entry);
    qdboot_jump(entry, boot_params);
}
