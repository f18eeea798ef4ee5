/*
 * demo.c - the qdesk demo guest's desktop.
 *
 * Runs inside the demo guest's initramfs (started by guest/init) and
 *   - draws a small "desktop" on /dev/fb0: gradient background, a title bar
 *     reading "qdesk demo", a clock, a panel with the last input event and a
 *     mouse pointer that follows the absolute (tablet) or relative position;
 *   - reads every /dev/input/event* device (and devices that appear later)
 *     and reports key presses and mouse buttons on the serial console;
 *   - copies interesting kernel messages from /dev/kmsg to the serial console;
 *   - powers the machine off when the power button (KEY_POWER) is pressed;
 *   - brings the other CPUs online once the desktop is up (maxcpus=1).
 *
 * The serial protocol (one line each, on /dev/ttyS0) is documented in
 * guest/README.md: QDESK-DEMO-READY, QDESK-KEY <code>,
 * QDESK-BUTTON <n> <x> <y>, QDESK-INPUT <node> <name>, QDESK-POWEROFF,
 * QDESK-KMSG <text>, QDESK-DEMO-FAILED <reason>.
 *
 * Reading order: main() at the bottom, then the sections from top to bottom:
 * serial_, psf_ (fonts), fb_ (framebuffer and dirty rectangles), scene_
 * (what is drawn), input_ (evdev), kmsg_, cpu_.
 *
 * Exit status: 0 never (the program runs until power off); DEMO_EXIT_REPORTED
 * when it has already printed its own QDESK-DEMO-FAILED line; anything else is
 * reported by guest/init.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fb.h>
#include <linux/input.h>
#include <linux/kd.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define DEMO_EXIT_REPORTED 3

#define FONT_BODY_PATH "/usr/share/qdesk/body.psf"
#define FONT_TITLE_PATH "/usr/share/qdesk/title.psf"
#define SERIAL_PATH "/dev/ttyS0"
#define FB_PATH "/dev/fb0"
#define INPUT_DIR "/dev/input"

#define INPUT_MAX_DEVICES 32
#define INPUT_RESCAN_MS 2000
#define FONT_MAX_BYTES (1024 * 1024)

/* ------------------------------------------------------------------------ */
/* serial_: the test channel                                                */
/* ------------------------------------------------------------------------ */

static int serial_fd = -1;

/* Opens the serial console; falls back to stdout (the kernel console). */
static void serial_open(void)
{
    serial_fd = open(SERIAL_PATH, O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (serial_fd < 0)
        serial_fd = STDOUT_FILENO;
}

/*
 * Writes one protocol line (printf format, no trailing newline needed) to the
 * serial console with a single write(), so lines never interleave with each
 * other. Lines longer than 1023 bytes are cut.
 */
__attribute__((format(printf, 1, 2)))
static void serial_line(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';

    size_t off = 0;
    while (off < (size_t)n) {
        ssize_t w = write(serial_fd, buf + off, (size_t)n - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        off += (size_t)w;
    }
}

/* Prints QDESK-DEMO-FAILED with the reason and exits DEMO_EXIT_REPORTED. */
__attribute__((format(printf, 1, 2), noreturn))
static void serial_fail(const char *fmt, ...)
{
    char reason[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    serial_line("QDESK-DEMO-FAILED %s", reason);
    exit(DEMO_EXIT_REPORTED);
}

/* ------------------------------------------------------------------------ */
/* psf_: PC Screen Font (PSF1 and PSF2) bitmap fonts                        */
/* ------------------------------------------------------------------------ */

#define PSF1_MAGIC0 0x36
#define PSF1_MAGIC1 0x04
#define PSF1_MODE512 0x01
#define PSF1_MODEHASTAB 0x02
#define PSF1_MODESEQ 0x04
#define PSF2_MAGIC 0x864ab572u
#define PSF2_HAS_UNICODE_TABLE 0x01

struct psf_font {
    uint8_t *data;           /* whole file, owned */
    size_t size;
    const uint8_t *glyphs;   /* first glyph inside data */
    uint32_t count;          /* number of glyphs */
    uint32_t width;          /* pixels */
    uint32_t height;         /* pixels */
    uint32_t row_bytes;      /* bytes per glyph row */
    uint32_t glyph_bytes;    /* bytes per glyph */
    uint32_t map[256];       /* code point (Latin-1) -> glyph index */
};

static uint32_t psf_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Decodes one UTF-8 sequence at p (< end); returns bytes used, 0 if invalid. */
static size_t psf_utf8(const uint8_t *p, const uint8_t *end, uint32_t *cp)
{
    size_t len;
    uint32_t c = p[0];

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xe0) == 0xc0) {
        len = 2;
        c &= 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        c &= 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        c &= 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (p[i] & 0x3f);
    }
    *cp = c;
    return len;
}

/* Records glyph g for code point cp if cp is Latin-1 and not yet mapped. */
static void psf_map_set(struct psf_font *f, uint32_t cp, uint32_t g, bool *set)
{
    if (cp < 256 && !set[cp]) {
        f->map[cp] = g;
        set[cp] = true;
    }
}

/*
 * Parses the unicode table (PSF1: 16-bit little-endian entries, PSF2: UTF-8)
 * that starts at tab and runs to the end of the file. Only single code
 * points before the first sequence marker of each glyph are used.
 */
static void psf_parse_table(struct psf_font *f, const uint8_t *tab, bool psf2)
{
    const uint8_t *end = f->data + f->size;
    bool set[256] = { false };
    uint32_t g = 0;
    bool in_seq = false;

    while (tab < end && g < f->count) {
        if (psf2) {
            if (*tab == 0xff) {
                g++;
                in_seq = false;
                tab++;
            } else if (*tab == 0xfe) {
                in_seq = true;
                tab++;
            } else {
                uint32_t cp;
                size_t n = psf_utf8(tab, end, &cp);
                if (n == 0)
                    return;
                if (!in_seq)
                    psf_map_set(f, cp, g, set);
                tab += n;
            }
        } else {
            if (end - tab < 2)
                return;
            uint32_t v = (uint32_t)tab[0] | (uint32_t)tab[1] << 8;
            tab += 2;
            if (v == 0xffff) {
                g++;
                in_seq = false;
            } else if (v == 0xfffe) {
                in_seq = true;
            } else if (!in_seq) {
                psf_map_set(f, v, g, set);
            }
        }
    }
}

/* Releases the font's memory; accepts a zeroed or NULL font. */
static void psf_free(struct psf_font *f)
{
    if (!f)
        return;
    free(f->data);
    memset(f, 0, sizeof(*f));
}

/*
 * Reads the whole file at path into a new buffer (at most FONT_MAX_BYTES).
 * Returns the buffer, which the caller frees with free(), and its size in
 * *size; NULL with reason[] set on failure.
 */
static uint8_t *psf_read_file(const char *path, size_t *size, char *reason, size_t rlen)
{
    uint8_t *data = NULL;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(reason, rlen, "cannot open font %s: %s", path, strerror(errno));
        goto cleanup;
    }
    if (fstat(fd, &st) < 0 || st.st_size < 4 || st.st_size > FONT_MAX_BYTES) {
        snprintf(reason, rlen, "font %s: missing or implausible size", path);
        goto cleanup;
    }
    data = malloc((size_t)st.st_size);
    if (!data) {
        snprintf(reason, rlen, "font %s: out of memory", path);
        goto cleanup;
    }
    for (size_t got = 0; got < (size_t)st.st_size;) {
        ssize_t r = read(fd, data + got, (size_t)st.st_size - got);
        if (r <= 0) {
            snprintf(reason, rlen, "font %s: short read", path);
            free(data);
            data = NULL;
            goto cleanup;
        }
        got += (size_t)r;
    }
    *size = (size_t)st.st_size;
cleanup:
    if (fd >= 0)
        close(fd);
    return data;
}

/*
 * Loads a PSF1 or PSF2 font from a plain (not gzipped) file. Returns 0 and
 * fills *f (release with psf_free()), or -1 with reason[] set and *f empty.
 */
static int psf_load(struct psf_font *f, const char *path, char *reason, size_t rlen)
{
    memset(f, 0, sizeof(*f));
    f->data = psf_read_file(path, &f->size, reason, rlen);
    if (!f->data)
        return -1;

    const uint8_t *d = f->data;
    const uint8_t *table = NULL;
    bool psf2 = false;
    size_t header;

    if (d[0] == PSF1_MAGIC0 && d[1] == PSF1_MAGIC1) {
        header = 4;
        f->count = (d[2] & PSF1_MODE512) ? 512 : 256;
        f->width = 8;
        f->height = d[3];
        f->row_bytes = 1;
        f->glyph_bytes = d[3];
        if (d[2] & (PSF1_MODEHASTAB | PSF1_MODESEQ))
            table = d + header + (size_t)f->count * f->glyph_bytes;
    } else if (f->size >= 32 && psf_le32(d) == PSF2_MAGIC) {
        psf2 = true;
        header = psf_le32(d + 8);
        uint32_t flags = psf_le32(d + 12);
        f->count = psf_le32(d + 16);
        f->glyph_bytes = psf_le32(d + 20);
        f->height = psf_le32(d + 24);
        f->width = psf_le32(d + 28);
        f->row_bytes = (f->width + 7) / 8;
        if (f->width == 0 || f->width > 64 || f->height == 0 || f->height > 128 ||
            f->glyph_bytes < f->row_bytes * f->height || header < 32) {
            snprintf(reason, rlen, "font %s: bad PSF2 header", path);
            goto fail;
        }
        if (flags & PSF2_HAS_UNICODE_TABLE)
            table = d + header + (size_t)f->count * f->glyph_bytes;
    } else {
        snprintf(reason, rlen, "font %s: not a PSF1/PSF2 font", path);
        goto fail;
    }
    if (f->height == 0 || f->count == 0 ||
        header + (uint64_t)f->count * f->glyph_bytes > f->size) {
        snprintf(reason, rlen, "font %s: truncated glyph data", path);
        goto fail;
    }
    f->glyphs = d + header;
    for (uint32_t i = 0; i < 256; i++)
        f->map[i] = i < f->count ? i : 0;
    if (table && table < d + f->size)
        psf_parse_table(f, table, psf2);
    return 0;

fail:
    psf_free(f);
    return -1;
}


/* ------------------------------------------------------------------------ */
/* fb_: the framebuffer, a 32-bit scene buffer and dirty rectangles         */
/* ------------------------------------------------------------------------ */

struct rect {
    int x, y, w, h;
};

#define FB_MAX_DIRTY 8

struct fb {
    int fd;
    uint8_t *map;          /* mmap of the whole fb memory */
    size_t map_len;
    uint8_t *origin;       /* first visible pixel */
    int width, height;     /* visible size */
    int bpp;               /* 16, 24 or 32 */
    size_t stride;         /* bytes per line */
    struct fb_bitfield red, green, blue;
    bool xrgb8888;         /* fast path: pixel == scene value */
    char id[17];
    uint32_t *scene;       /* width * height, 0x00RRGGBB, without pointer */
    uint8_t *row;          /* one converted line */
    struct rect dirty[FB_MAX_DIRTY];
    int ndirty;
};

/* Unmaps and closes the framebuffer and frees its buffers; accepts NULL and
 * a partly opened fb. */
static void fb_close(struct fb *fb)
{
    if (!fb)
        return;
    if (fb->map && fb->map != MAP_FAILED)
        munmap(fb->map, fb->map_len);
    if (fb->fd >= 0)
        close(fb->fd);
    free(fb->scene);
    free(fb->row);
    memset(fb, 0, sizeof(*fb));
    fb->fd = -1;
}

/*
 * Opens and maps the framebuffer device at path and allocates the scene
 * buffer. Returns 0 (release with fb_close()), or -1 with reason[] set.
 */
static int fb_open(struct fb *fb, const char *path, char *reason, size_t rlen)
{
    struct fb_var_screeninfo var;
    struct fb_fix_screeninfo fix;

    memset(fb, 0, sizeof(*fb));
    fb->fd = open(path, O_RDWR | O_CLOEXEC);
    if (fb->fd < 0) {
        snprintf(reason, rlen, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    if (ioctl(fb->fd, FBIOGET_VSCREENINFO, &var) < 0 ||
        ioctl(fb->fd, FBIOGET_FSCREENINFO, &fix) < 0) {
        snprintf(reason, rlen, "%s: screeninfo ioctl: %s", path, strerror(errno));
        goto fail;
    }
    if (var.bits_per_pixel != 16 && var.bits_per_pixel != 24 &&
        var.bits_per_pixel != 32) {
        snprintf(reason, rlen, "%s: unsupported depth %u bpp", path,
                 var.bits_per_pixel);
        goto fail;
    }
    if (fix.type != FB_TYPE_PACKED_PIXELS || fix.visual != FB_VISUAL_TRUECOLOR) {
        snprintf(reason, rlen, "%s: not a packed truecolor framebuffer", path);
        goto fail;
    }
    fb->width = (int)var.xres;
    fb->height = (int)var.yres;
    fb->bpp = (int)var.bits_per_pixel;
    fb->stride = fix.line_length;
    fb->red = var.red;
    fb->green = var.green;
    fb->blue = var.blue;
    memcpy(fb->id, fix.id, sizeof(fix.id));
    fb->id[sizeof(fb->id) - 1] = '\0';

    size_t bytes_pp = (size_t)fb->bpp / 8;
    size_t need = ((size_t)var.yoffset + var.yres) * fb->stride;
    if (fb->width <= 0 || fb->height <= 0 ||
        fb->stride < ((size_t)var.xoffset + (size_t)fb->width) * bytes_pp ||
        need > fix.smem_len) {
        snprintf(reason, rlen, "%s: inconsistent geometry %dx%d stride %zu mem %u",
                 path, fb->width, fb->height, fb->stride, fix.smem_len);
        goto fail;
    }
    fb->map_len = fix.smem_len;
    fb->map = mmap(NULL, fb->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fb->fd, 0);
    if (fb->map == MAP_FAILED) {
        snprintf(reason, rlen, "%s: mmap: %s", path, strerror(errno));
        goto fail;
    }
    fb->origin = fb->map + (size_t)var.yoffset * fb->stride +
                 (size_t)var.xoffset * bytes_pp;
    fb->xrgb8888 = fb->bpp == 32 && var.red.offset == 16 && var.red.length == 8 &&
                   var.green.offset == 8 && var.green.length == 8 &&
                   var.blue.offset == 0 && var.blue.length == 8;
    fb->scene = calloc((size_t)fb->width * (size_t)fb->height, sizeof(uint32_t));
    fb->row = malloc((size_t)fb->width * 4);
    if (!fb->scene || !fb->row) {
        snprintf(reason, rlen, "%s: out of memory for %dx%d", path, fb->width,
                 fb->height);
        goto fail;
    }
    return 0;

fail:
    fb_close(fb);
    return -1;
}

/* Scales an 8-bit channel value to the bitfield's width and position. */
static uint32_t fb_channel(uint32_t v8, const struct fb_bitfield *bf)
{
    if (bf->length == 0 || bf->length > 16 || bf->offset > 31)
        return 0;
    uint32_t v = bf->length <= 8 ? v8 >> (8 - bf->length) : v8 << (bf->length - 8);
    return v << bf->offset;
}

/* Converts one 0xRRGGBB value to the fb's pixel layout. */
static uint32_t fb_pixel(const struct fb *fb, uint32_t rgb)
{
    return fb_channel((rgb >> 16) & 0xff, &fb->red) |
           fb_channel((rgb >> 8) & 0xff, &fb->green) | fb_channel(rgb & 0xff, &fb->blue);
}

/* Clips r to the screen; returns false if nothing is left. */
static bool fb_clip(const struct fb *fb, struct rect *r)
{
    int x1 = r->x + r->w, y1 = r->y + r->h;

    if (r->x < 0)
        r->x = 0;
    if (r->y < 0)
        r->y = 0;
    if (x1 > fb->width)
        x1 = fb->width;
    if (y1 > fb->height)
        y1 = fb->height;
    r->w = x1 - r->x;
    r->h = y1 - r->y;
    return r->w > 0 && r->h > 0;
}

static struct rect rect_union(struct rect a, struct rect b)
{
    int x0 = a.x < b.x ? a.x : b.x, y0 = a.y < b.y ? a.y : b.y;
    int x1 = a.x + a.w > b.x + b.w ? a.x + a.w : b.x + b.w;
    int y1 = a.y + a.h > b.y + b.h ? a.y + a.h : b.y + b.h;

    return (struct rect){ x0, y0, x1 - x0, y1 - y0 };
}

/* Marks r as needing a copy to the screen at the next fb_flush(). */
static void fb_damage(struct fb *fb, struct rect r)
{
    if (!fb_clip(fb, &r))
        return;
    if (fb->ndirty == FB_MAX_DIRTY) {
        struct rect all = fb->dirty[0];
        for (int i = 1; i < fb->ndirty; i++)
            all = rect_union(all, fb->dirty[i]);
        fb->dirty[0] = all;
        fb->ndirty = 1;
    }
    fb->dirty[fb->ndirty++] = r;
}

/* ------------------------------------------------------------------------ */
/* scene_: what the desktop looks like                                      */
/* ------------------------------------------------------------------------ */

/* The pointer: 'X' outline, '.' fill, anything else transparent. */
static const char *const pointer_shape[] = {
    "X           ",
    "XX          ",
    "X.X         ",
    "X..X        ",
    "X...X       ",
    "X....X      ",
    "X.....X     ",
    "X......X    ",
    "X.......X   ",
    "X........X  ",
    "X.........X ",
    "X......XXXXX",
    "X...X..X    ",
    "X..XX..X    ",
    "X.X  X..X   ",
    "XX   X..X   ",
    "X     X..X  ",
    "      X..X  ",
    "       XX   ",
};
#define POINTER_W 12
#define POINTER_H 19
#define POINTER_SCALE 2

#define COLOR_TITLE_BG 0x1b2033u
#define COLOR_TITLE_FG 0xffffffu
#define COLOR_CLOCK_FG 0xffd75fu
#define COLOR_PANEL_BG 0xeceff4u
#define COLOR_PANEL_HEAD 0x3b4d7au
#define COLOR_PANEL_FG 0x1b2033u
#define COLOR_STATUS_BG 0x10131fu
#define COLOR_STATUS_FG 0xb8c4d8u

struct scene {
    struct fb *fb;
    struct psf_font *body;
    struct psf_font *title;
    int title_h;           /* height of the title bar */
    struct rect clock;     /* where the clock text goes */
    struct rect panel;     /* the "last input" panel */
    int ptr_x, ptr_y;      /* pointer hot spot, fb pixels */
    char last_input[64];   /* shown in the panel */
};

static void scene_fill(struct fb *fb, struct rect r, uint32_t rgb)
{
    if (!fb_clip(fb, &r))
        return;
    for (int y = r.y; y < r.y + r.h; y++) {
        uint32_t *p = fb->scene + (size_t)y * (size_t)fb->width + (size_t)r.x;
        for (int x = 0; x < r.w; x++)
            p[x] = rgb;
    }
}

/* Background: vertical gradient with soft diagonal bands (never one colour). */
static uint32_t scene_background_at(const struct fb *fb, int x, int y)
{
    int h = fb->height > 1 ? fb->height - 1 : 1;
    int r = 24 + 40 * y / h, g = 64 + 96 * y / h, b = 120 + 90 * y / h;
    int band = ((x + y) / 48) & 3;

    r += band * 6;
    g += band * 6;
    b += band * 4;
    return (uint32_t)(r > 255 ? 255 : r) << 16 | (uint32_t)(g > 255 ? 255 : g) << 8 |
           (uint32_t)(b > 255 ? 255 : b);
}

/*
 * Draws text at (x, y) (top left) with integer scale, transparent
 * background. Returns the x after the last glyph.
 */
static int scene_text(struct fb *fb, const struct psf_font *f, int x, int y,
                      const char *s, uint32_t rgb, int scale)
{
    for (; *s; s++) {
        uint32_t g = f->map[(uint8_t)*s];
        if (g >= f->count)
            g = 0;
        const uint8_t *glyph = f->glyphs + (size_t)g * f->glyph_bytes;
        for (uint32_t gy = 0; gy < f->height; gy++) {
            const uint8_t *row = glyph + gy * f->row_bytes;
            for (uint32_t gx = 0; gx < f->width; gx++) {
                if (!(row[gx / 8] & (0x80 >> (gx % 8))))
                    continue;
                struct rect px = { x + (int)gx * scale, y + (int)gy * scale, scale,
                                   scale };
                scene_fill(fb, px, rgb);
            }
        }
        x += (int)f->width * scale;
    }
    return x;
}

static int scene_text_width(const struct psf_font *f, const char *s, int scale)
{
    return (int)(strlen(s) * f->width) * scale;
}

/* Redraws the clock area with the current local time. */
static void scene_draw_clock(struct scene *sc)
{
    char buf[16];
    time_t now = time(NULL);
    struct tm tm;

    localtime_r(&now, &tm);
    snprintf(buf, sizeof(buf), "%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
    scene_fill(sc->fb, sc->clock, COLOR_TITLE_BG);
    scene_text(sc->fb, sc->title, sc->clock.x, sc->clock.y, buf, COLOR_CLOCK_FG, 1);
    fb_damage(sc->fb, sc->clock);
}

/* Redraws the panel that shows the last input event and pointer position. */
static void scene_draw_panel(struct scene *sc)
{
    struct fb *fb = sc->fb;
    struct rect p = sc->panel;
    int lh = (int)sc->body->height + 6;
    char buf[64];

    scene_fill(fb, p, COLOR_PANEL_BG);
    scene_fill(fb, (struct rect){ p.x, p.y, p.w, lh + 6 }, COLOR_PANEL_HEAD);
    scene_text(fb, sc->body, p.x + 10, p.y + 6, "Last input", COLOR_TITLE_FG, 1);
    scene_text(fb, sc->body, p.x + 10, p.y + lh + 16, sc->last_input, COLOR_PANEL_FG, 1);
    snprintf(buf, sizeof(buf), "pointer %d,%d", sc->ptr_x, sc->ptr_y);
    scene_text(fb, sc->body, p.x + 10, p.y + 2 * lh + 16, buf, COLOR_PANEL_FG, 1);
    fb_damage(fb, p);
}

/* Draws the whole desktop into the scene buffer and damages the screen. */
static void scene_draw_all(struct scene *sc)
{
    struct fb *fb = sc->fb;
    int tfh = (int)sc->title->height;
    char buf[128];

    for (int y = 0; y < fb->height; y++) {
        uint32_t *p = fb->scene + (size_t)y * (size_t)fb->width;
        for (int x = 0; x < fb->width; x++)
            p[x] = scene_background_at(fb, x, y);
    }

    /* Title bar with the name on the left and the clock on the right. */
    sc->title_h = tfh + 12;
    scene_fill(fb, (struct rect){ 0, 0, fb->width, sc->title_h }, COLOR_TITLE_BG);
    scene_fill(fb, (struct rect){ 0, sc->title_h, fb->width, 2 }, 0x5e81acu);
    scene_fill(fb, (struct rect){ 12, 10, tfh - 8, tfh - 8 }, 0x88c0d0u);
    scene_text(fb, sc->title, 12 + tfh, 6, "qdesk demo", COLOR_TITLE_FG, 1);
    int cw = scene_text_width(sc->title, "00:00:00", 1);
    sc->clock = (struct rect){ fb->width - cw - 12, 6, cw, tfh };

    /* A few "icons" so the desktop is recognisable at a glance. */
    static const uint32_t icon_colors[] = { 0xbf616au, 0xa3be8cu, 0xebcb8bu, 0xb48eadu };
    for (int i = 0; i < 4; i++) {
        int y = sc->title_h + 24 + i * 72;
        if (y + 48 > fb->height)
            break;
        scene_fill(fb, (struct rect){ 24, y, 48, 48 }, icon_colors[i]);
        scene_fill(fb, (struct rect){ 30, y + 6, 36, 8 }, 0xffffffu);
    }

    /* The panel in the middle. */
    int pw = 360, ph = 3 * ((int)sc->body->height + 6) + 30;
    if (pw > fb->width - 20)
        pw = fb->width - 20;
    sc->panel = (struct rect){ (fb->width - pw) / 2, (fb->height - ph) / 2, pw, ph };

    /* Status line at the bottom. */
    int sh = (int)sc->body->height + 8;
    scene_fill(fb, (struct rect){ 0, fb->height - sh, fb->width, sh }, COLOR_STATUS_BG);
    snprintf(buf, sizeof(buf), "%dx%d %dbpp %s - keyboard, mouse and tablet welcome",
             fb->width, fb->height, fb->bpp, fb->id);
    scene_text(fb, sc->body, 10, fb->height - sh + 4, buf, COLOR_STATUS_FG, 1);

    fb->ndirty = 0;
    fb_damage(fb, (struct rect){ 0, 0, fb->width, fb->height });
    scene_draw_panel(sc);
    scene_draw_clock(sc);
}

static struct rect scene_pointer_rect(const struct scene *sc)
{
    return (struct rect){ sc->ptr_x, sc->ptr_y, POINTER_W * POINTER_SCALE,
                          POINTER_H * POINTER_SCALE };
}

/* Returns the pointer's colour at screen (x, y), or -1 if transparent there. */
static int64_t scene_pointer_at(const struct scene *sc, int x, int y)
{
    int px = (x - sc->ptr_x) / POINTER_SCALE, py = (y - sc->ptr_y) / POINTER_SCALE;

    if (x < sc->ptr_x || y < sc->ptr_y || px >= POINTER_W || py >= POINTER_H)
        return -1;
    char c = pointer_shape[py][px];
    if (c == 'X')
        return 0x000000;
    if (c == '.')
        return 0xffffff;
    return -1;
}

/*
 * Copies the dirty rectangles of the scene, with the pointer on top, to the
 * framebuffer, then asks the driver to push them out (deferred-I/O drivers
 * such as the DRM fbdev emulation flush on fsync).
 */
static void fb_flush(struct scene *sc)
{
    struct fb *fb = sc->fb;
    struct rect pr = scene_pointer_rect(sc);
    size_t bytes_pp = (size_t)fb->bpp / 8;

    if (fb->ndirty == 0)
        return;
    for (int i = 0; i < fb->ndirty; i++) {
        struct rect r = fb->dirty[i];
        for (int y = r.y; y < r.y + r.h; y++) {
            const uint32_t *src = fb->scene + (size_t)y * (size_t)fb->width;
            bool ptr_row = y >= pr.y && y < pr.y + pr.h;
            uint8_t *dst = fb->row;
            for (int x = r.x; x < r.x + r.w; x++) {
                uint32_t c = src[x];
                if (ptr_row && x >= pr.x && x < pr.x + pr.w) {
                    int64_t pc = scene_pointer_at(sc, x, y);
                    if (pc >= 0)
                        c = (uint32_t)pc;
                }
                uint32_t v = fb->xrgb8888 ? c : fb_pixel(fb, c);
                if (bytes_pp == 4) {
                    memcpy(dst, &v, 4);
                } else if (bytes_pp == 3) {
                    dst[0] = (uint8_t)v;
                    dst[1] = (uint8_t)(v >> 8);
                    dst[2] = (uint8_t)(v >> 16);
                } else {
                    uint16_t v16 = (uint16_t)v;
                    memcpy(dst, &v16, 2);
                }
                dst += bytes_pp;
            }
            memcpy(fb->origin + (size_t)y * fb->stride + (size_t)r.x * bytes_pp,
                   fb->row, (size_t)r.w * bytes_pp);
        }
    }
    fb->ndirty = 0;
    fsync(fb->fd);
}

/* Moves the pointer to (x, y) (clamped) and damages old and new places. */
static void scene_move_pointer(struct scene *sc, int x, int y)
{
    if (x < 0)
        x = 0;
    if (y < 0)
        y = 0;
    if (x >= sc->fb->width)
        x = sc->fb->width - 1;
    if (y >= sc->fb->height)
        y = sc->fb->height - 1;
    if (x == sc->ptr_x && y == sc->ptr_y)
        return;
    fb_damage(sc->fb, scene_pointer_rect(sc));
    sc->ptr_x = x;
    sc->ptr_y = y;
    fb_damage(sc->fb, scene_pointer_rect(sc));
    scene_draw_panel(sc);
}

/* ------------------------------------------------------------------------ */
/* input_: evdev devices, including ones that are plugged in later          */
/* ------------------------------------------------------------------------ */

#define BITS_PER_LONG_ (8 * sizeof(unsigned long))
#define NLONGS(n) (((n) + BITS_PER_LONG_ - 1) / BITS_PER_LONG_)

struct input_dev {
    int fd;                  /* -1 when the slot is free */
    char node[32];           /* "event3" */
    char name[80];
    bool has_abs;
    struct input_absinfo abs_x, abs_y;
    /* State of the frame being read (until SYN_REPORT). */
    int pending_abs_x, pending_abs_y; /* -1: unchanged */
    int pending_rel_x, pending_rel_y;
    int pending_buttons[8];           /* protocol button numbers pressed */
    int npending_buttons;
};

struct input {
    struct input_dev dev[INPUT_MAX_DEVICES];
    int inotify_fd;
};

static bool input_test_bit(const unsigned long *bits, unsigned int bit)
{
    return (bits[bit / BITS_PER_LONG_] >> (bit % BITS_PER_LONG_)) & 1;
}

static bool input_is_open(const struct input *in, const char *node)
{
    for (int i = 0; i < INPUT_MAX_DEVICES; i++)
        if (in->dev[i].fd >= 0 && strcmp(in->dev[i].node, node) == 0)
            return true;
    return false;
}

/* Opens /dev/input/<node> if it is an event device not yet open. */
static void input_open_node(struct input *in, const char *node)
{
    if (strncmp(node, "event", 5) != 0 || input_is_open(in, node))
        return;
    struct input_dev *d = NULL;
    for (int i = 0; i < INPUT_MAX_DEVICES; i++) {
        if (in->dev[i].fd < 0) {
            d = &in->dev[i];
            break;
        }
    }
    if (!d)
        return;

    char path[64];
    snprintf(path, sizeof(path), INPUT_DIR "/%s", node);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return;

    memset(d, 0, sizeof(*d));
    d->fd = fd;
    snprintf(d->node, sizeof(d->node), "%s", node);
    if (ioctl(fd, EVIOCGNAME(sizeof(d->name) - 1), d->name) < 0)
        snprintf(d->name, sizeof(d->name), "?");

    unsigned long absbits[NLONGS(ABS_CNT)] = { 0 };
    if (ioctl(fd, EVIOCGBIT(EV_ABS, sizeof(absbits)), absbits) >= 0 &&
        input_test_bit(absbits, ABS_X) && input_test_bit(absbits, ABS_Y) &&
        ioctl(fd, EVIOCGABS(ABS_X), &d->abs_x) >= 0 &&
        ioctl(fd, EVIOCGABS(ABS_Y), &d->abs_y) >= 0 &&
        d->abs_x.maximum > d->abs_x.minimum && d->abs_y.maximum > d->abs_y.minimum)
        d->has_abs = true;
    d->pending_abs_x = d->pending_abs_y = -1;
    serial_line("QDESK-INPUT %s %s", d->node, d->name);
}

static void input_close(struct input_dev *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
}

/* Opens every event device in /dev/input that is not open yet. */
static void input_scan(struct input *in)
{
    DIR *dir = opendir(INPUT_DIR);
    if (!dir)
        return;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        input_open_node(in, e->d_name);
    closedir(dir);
}

/* Sets up the device table and the inotify watch (which may fail: then only
 * the periodic rescan finds new devices). */
static void input_init(struct input *in)
{
    for (int i = 0; i < INPUT_MAX_DEVICES; i++)
        in->dev[i].fd = -1;
    in->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (in->inotify_fd >= 0 &&
        inotify_add_watch(in->inotify_fd, INPUT_DIR,
                          IN_CREATE | IN_ATTRIB | IN_MOVED_TO) < 0) {
        close(in->inotify_fd);
        in->inotify_fd = -1;
    }
    input_scan(in);
}

/* Reads pending inotify events and opens the devices they name. */
static void input_handle_inotify(struct input *in)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

    for (;;) {
        ssize_t n = read(in->inotify_fd, buf, sizeof(buf));
        if (n <= 0)
            return;
        for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
            const struct inotify_event *ev = (const void *)(buf + off);
            if (ev->len > 0)
                input_open_node(in, ev->name);
            off += (ssize_t)sizeof(*ev) + ev->len;
        }
    }
}

/* Writes QDESK-POWEROFF, flushes everything and powers the machine off. */
static void input_power_off(void)
{
    serial_line("QDESK-POWEROFF");
    if (serial_fd >= 0)
        tcdrain(serial_fd);
    sync();
    reboot(RB_POWER_OFF);
    /* Only reached without CAP_SYS_BOOT. */
    serial_fail("reboot(RB_POWER_OFF): %s", strerror(errno));
}

static int input_scale(int v, const struct input_absinfo *a, int size)
{
    if (v < a->minimum)
        v = a->minimum;
    if (v > a->maximum)
        v = a->maximum;
    return (int)((int64_t)(v - a->minimum) * (size - 1) / (a->maximum - a->minimum));
}

/* Applies one finished frame (SYN_REPORT): pointer motion, then buttons. */
static void input_end_frame(struct input_dev *d, struct scene *sc)
{
    int x = sc->ptr_x, y = sc->ptr_y;

    if (d->pending_abs_x >= 0)
        x = input_scale(d->pending_abs_x, &d->abs_x, sc->fb->width);
    if (d->pending_abs_y >= 0)
        y = input_scale(d->pending_abs_y, &d->abs_y, sc->fb->height);
    x += d->pending_rel_x;
    y += d->pending_rel_y;
    scene_move_pointer(sc, x, y);
    d->pending_abs_x = d->pending_abs_y = -1;
    d->pending_rel_x = d->pending_rel_y = 0;

    for (int i = 0; i < d->npending_buttons; i++) {
        int b = d->pending_buttons[i];
        serial_line("QDESK-BUTTON %d %d %d", b, sc->ptr_x, sc->ptr_y);
        snprintf(sc->last_input, sizeof(sc->last_input), "button %d at %d,%d", b,
                 sc->ptr_x, sc->ptr_y);
        scene_draw_panel(sc);
    }
    d->npending_buttons = 0;
}

static void input_handle_event(struct input_dev *d, const struct input_event *ev,
                               struct scene *sc)
{
    switch (ev->type) {
    case EV_KEY:
        if (ev->value != 1)
            break;
        if (ev->code == KEY_POWER) {
            input_power_off();
        } else if (ev->code < BTN_MISC) {
            serial_line("QDESK-KEY %u", ev->code);
            snprintf(sc->last_input, sizeof(sc->last_input), "key %u", ev->code);
            scene_draw_panel(sc);
        } else if (ev->code == BTN_LEFT || ev->code == BTN_MIDDLE ||
                   ev->code == BTN_RIGHT) {
            int b = ev->code == BTN_LEFT ? 1 : ev->code == BTN_MIDDLE ? 2 : 3;
            if (d->npending_buttons < (int)(sizeof(d->pending_buttons) / sizeof(int)))
                d->pending_buttons[d->npending_buttons++] = b;
        }
        break;
    case EV_ABS:
        if (!d->has_abs)
            break;
        if (ev->code == ABS_X)
            d->pending_abs_x = ev->value;
        else if (ev->code == ABS_Y)
            d->pending_abs_y = ev->value;
        break;
    case EV_REL:
        if (ev->code == REL_X)
            d->pending_rel_x += ev->value;
        else if (ev->code == REL_Y)
            d->pending_rel_y += ev->value;
        break;
    case EV_SYN:
        if (ev->code == SYN_REPORT)
            input_end_frame(d, sc);
        else if (ev->code == SYN_DROPPED)
            d->npending_buttons = 0;
        break;
    default:
        break;
    }
}

/* Reads everything pending on one device; closes it when it went away. */
static void input_read(struct input_dev *d, struct scene *sc)
{
    struct input_event ev[64];

    for (;;) {
        ssize_t n = read(d->fd, ev, sizeof(ev));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                input_close(d);
            return;
        }
        if (n == 0) {
            input_close(d);
            return;
        }
        for (size_t i = 0; i < (size_t)n / sizeof(ev[0]); i++)
            input_handle_event(d, &ev[i], sc);
    }
}

/* ------------------------------------------------------------------------ */
/* kmsg_: copy selected kernel messages to the serial console               */
/* ------------------------------------------------------------------------ */

/* True for messages the tests look for (see README: QDESK-KMSG). */
static bool kmsg_interesting(const char *msg)
{
    return strstr(msg, "[drm]") != NULL || strstr(msg, "virgl") != NULL ||
           strncmp(msg, "usb ", 4) == 0;
}

/* Opens /dev/kmsg at its oldest record; returns the fd or -1. */
static int kmsg_open(void)
{
    int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0)
        lseek(fd, 0, SEEK_SET);
    return fd;
}

/* Reads all pending records and copies the interesting ones. */
static void kmsg_read(int fd)
{
    char rec[8192];

    for (;;) {
        ssize_t n = read(fd, rec, sizeof(rec) - 1);
        if (n < 0) {
            if (errno == EINTR || errno == EPIPE)
                continue; /* EPIPE: records were overwritten, go on */
            return;
        }
        if (n == 0)
            return;
        rec[n] = '\0';
        /* "prio,seq,usec,flags[,more];message\n KEY=value\n..." */
        char *msg = strchr(rec, ';');
        if (!msg)
            continue;
        msg++;
        char *nl = strchr(msg, '\n');
        if (nl)
            *nl = '\0';
        if (kmsg_interesting(msg))
            serial_line("QDESK-KMSG %s", msg);
    }
}

/* ------------------------------------------------------------------------ */
/* cpu_: secondary CPUs                                                     */
/* ------------------------------------------------------------------------ */

/*
 * Brings every offline CPU online, in a child process so the desktop does
 * not wait. The kernel boots with maxcpus=1 because bringing up a CPU takes
 * about 0.5 s under TCG; doing it after QDESK-DEMO-READY keeps that out of
 * the boot time. The child is reaped automatically (SIGCHLD is ignored).
 */
static void cpu_online_all_async(void)
{
    if (fork() != 0)
        return; /* the parent, or fork() failed: nothing else to do */
    for (int i = 1; i < 4096; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d", i);
        if (access(path, F_OK) != 0)
            break;
        snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/online", i);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (write(fd, "1", 1) < 0) {
            /* Already online or not hot-pluggable: nothing to do. */
        }
        close(fd);
    }
    _exit(0);
}

/* ------------------------------------------------------------------------ */
/* main                                                                     */
/* ------------------------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds until the wall clock's next full second (at least 1). */
static int ms_to_next_second(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return 1000 - (int)(ts.tv_nsec / 1000000);
}

/* Switches the console to graphics mode so fbcon leaves the screen alone. */
static void vt_graphics_mode(void)
{
    int fd = open("/dev/tty0", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return;
    ioctl(fd, KDSETMODE, KD_GRAPHICS);
    /* Deliberately kept open: the mode belongs to this process's lifetime. */
}

int main(void)
{
    static struct fb fb;
    static struct psf_font body, title;
    static struct scene sc;
    static struct input in;
    char reason[256];

    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN);
    serial_open();

    int kmsg_fd = kmsg_open();
    if (kmsg_fd >= 0)
        kmsg_read(kmsg_fd);

    if (psf_load(&body, FONT_BODY_PATH, reason, sizeof(reason)) < 0 ||
        psf_load(&title, FONT_TITLE_PATH, reason, sizeof(reason)) < 0)
        serial_fail("%s", reason);
    if (fb_open(&fb, FB_PATH, reason, sizeof(reason)) < 0)
        serial_fail("%s", reason);

    vt_graphics_mode();
    sc.fb = &fb;
    sc.body = &body;
    sc.title = &title;
    sc.ptr_x = fb.width / 2;
    sc.ptr_y = fb.height / 2;
    snprintf(sc.last_input, sizeof(sc.last_input), "(none yet)");
    /* Input first: evdev queues events only for open devices, and a key
     * pressed right after QDESK-DEMO-READY must not get lost. */
    input_init(&in);
    scene_draw_all(&sc);
    fb_flush(&sc);
    serial_line("QDESK-DEMO-READY");
    cpu_online_all_async();
    int64_t next_scan = now_ms() + INPUT_RESCAN_MS;
    time_t shown = time(NULL);

    for (;;) {
        struct pollfd pfd[INPUT_MAX_DEVICES + 2];
        int slot[INPUT_MAX_DEVICES + 2];
        nfds_t n = 0;

        if (in.inotify_fd >= 0) {
            pfd[n] = (struct pollfd){ .fd = in.inotify_fd, .events = POLLIN };
            slot[n++] = -1;
        }
        if (kmsg_fd >= 0) {
            pfd[n] = (struct pollfd){ .fd = kmsg_fd, .events = POLLIN };
            slot[n++] = -2;
        }
        for (int i = 0; i < INPUT_MAX_DEVICES; i++) {
            if (in.dev[i].fd < 0)
                continue;
            pfd[n] = (struct pollfd){ .fd = in.dev[i].fd, .events = POLLIN };
            slot[n++] = i;
        }

        int r = poll(pfd, n, ms_to_next_second());
        if (r < 0 && errno != EINTR)
            serial_fail("poll: %s", strerror(errno));
        for (nfds_t i = 0; r > 0 && i < n; i++) {
            if (!pfd[i].revents)
                continue;
            if (slot[i] == -1)
                input_handle_inotify(&in);
            else if (slot[i] == -2)
                kmsg_read(kmsg_fd);
            else if (pfd[i].revents & (POLLERR | POLLHUP | POLLNVAL))
                input_close(&in.dev[slot[i]]);
            else
                input_read(&in.dev[slot[i]], &sc);
        }

        if (now_ms() >= next_scan) {
            input_scan(&in);
            next_scan = now_ms() + INPUT_RESCAN_MS;
        }
        time_t t = time(NULL);
        if (t != shown) {
            shown = t;
            scene_draw_clock(&sc);
        }
        fb_flush(&sc);
    }
    /* Not reached: the loop ends only by power off or serial_fail(). */
    fb_close(&fb);
    psf_free(&body);
    psf_free(&title);
    return 0;
}
