#include "web/rfb.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Client-to-server message types (RFC 6143 section 7.5 and its registry). */
enum {
    TYPE_SET_PIXEL_FORMAT = 0,
    TYPE_SET_ENCODINGS = 2,
    TYPE_FB_UPDATE_REQUEST = 3,
    TYPE_KEY_EVENT = 4,
    TYPE_POINTER_EVENT = 5,
    TYPE_CLIENT_CUT_TEXT = 6,
    TYPE_ENABLE_CONTINUOUS_UPDATES = 150,
    TYPE_CLIENT_FENCE = 248,
    TYPE_XVP = 250,
    TYPE_SET_DESKTOP_SIZE = 251,
    TYPE_QEMU = 255,
};

#define QEMU_EXTENDED_KEY_EVENT 0
#define QEMU_AUDIO              1

static const char *const names[RFB_MSG_KINDS] = {
    [RFB_SET_PIXEL_FORMAT] = "SetPixelFormat",
    [RFB_SET_ENCODINGS] = "SetEncodings",
    [RFB_FB_UPDATE_REQUEST] = "FramebufferUpdateRequest",
    [RFB_KEY_EVENT] = "KeyEvent",
    [RFB_POINTER_EVENT] = "PointerEvent",
    [RFB_CLIENT_CUT_TEXT] = "ClientCutText",
    [RFB_ENABLE_CONTINUOUS_UPDATES] = "EnableContinuousUpdates",
    [RFB_CLIENT_FENCE] = "ClientFence",
    [RFB_XVP] = "xvp",
    [RFB_SET_DESKTOP_SIZE] = "SetDesktopSize",
    [RFB_QEMU_EXTENDED_KEY_EVENT] = "QEMU ExtendedKeyEvent",
    [RFB_QEMU_AUDIO] = "QEMU audio",
};

const char *rfb_msg_name(enum rfb_msg kind)
{
    return (unsigned)kind < RFB_MSG_KINDS ? names[kind] : "unknown";
}

/* Messages a view-only viewer may not send: input, clipboard, resize, power. */
static bool is_input(enum rfb_msg kind)
{
    switch (kind) {
    case RFB_KEY_EVENT:
    case RFB_POINTER_EVENT:
    case RFB_CLIENT_CUT_TEXT:
    case RFB_SET_DESKTOP_SIZE:
    case RFB_QEMU_EXTENDED_KEY_EVENT:
    case RFB_XVP:
        return true;
    default:
        return false;
    }
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void rfb_filter_init(struct rfb_filter *f, bool view_only)
{
    memset(f, 0, sizeof(*f));
    f->view_only = view_only;
    f->phase = RFB_PHASE_VERSION;
}

static int fail(struct rfb_filter *f, char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct rfb_filter *f, char *err, size_t errsz, const char *fmt, ...)
{
    f->phase = RFB_PHASE_FAILED;
    if (err && errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* What the type byte tells about a message: its kind, the header bytes needed
 * to know its length, and that length when it is fixed. */
struct msg_info {
    bool known;
    uint8_t kind, need, fixed;
};

static const struct msg_info by_type[256] = {
    [TYPE_SET_PIXEL_FORMAT] = {true, RFB_SET_PIXEL_FORMAT, 1, 20},
    [TYPE_SET_ENCODINGS] = {true, RFB_SET_ENCODINGS, 4, 0},
    [TYPE_FB_UPDATE_REQUEST] = {true, RFB_FB_UPDATE_REQUEST, 1, 10},
    [TYPE_KEY_EVENT] = {true, RFB_KEY_EVENT, 1, 8},
    [TYPE_POINTER_EVENT] = {true, RFB_POINTER_EVENT, 1, 6},
    [TYPE_CLIENT_CUT_TEXT] = {true, RFB_CLIENT_CUT_TEXT, 8, 0},
    [TYPE_ENABLE_CONTINUOUS_UPDATES] = {true, RFB_ENABLE_CONTINUOUS_UPDATES, 1, 10},
    [TYPE_CLIENT_FENCE] = {true, RFB_CLIENT_FENCE, 9, 0},
    [TYPE_XVP] = {true, RFB_XVP, 1, 4},
    [TYPE_SET_DESKTOP_SIZE] = {true, RFB_SET_DESKTOP_SIZE, 8, 0},
    [TYPE_QEMU] = {true, RFB_QEMU_EXTENDED_KEY_EVENT, 2, 0}, /* the subtype decides */
};

/* Called when hdr_len == hdr_need. Returns 1 when the message is known (body_left
 * set), 0 when more header is needed (hdr_need raised), -1 on an error. */
static int header_complete(struct rfb_filter *f, char *err, size_t errsz)
{
    const uint8_t *h = f->hdr;
    switch (f->kind) {
    case RFB_SET_ENCODINGS: {
        uint16_t n = be16(h + 2);
        if (n > RFB_MAX_ENCODINGS)
            return fail(f, err, errsz,
                        "RFB: SetEncodings with %u encodings is over the limit of %u", n,
                        RFB_MAX_ENCODINGS);
        f->body_left = 4u * n;
        return 1;
    }
    case RFB_CLIENT_CUT_TEXT: {
        /* a negative length is the Extended Clipboard form with -length bytes */
        uint32_t raw = be32(h + 4);
        uint64_t n = raw & 0x80000000u ? (1ull << 32) - raw : raw;
        if (n > RFB_MAX_CUT_TEXT)
            return fail(f, err, errsz,
                        "RFB: ClientCutText of %llu bytes is over the limit of %u",
                        (unsigned long long)n, RFB_MAX_CUT_TEXT);
        f->body_left = n;
        return 1;
    }
    case RFB_CLIENT_FENCE:
        if (h[8] > RFB_MAX_FENCE)
            return fail(f, err, errsz,
                        "RFB: ClientFence payload of %u bytes is over the limit of %u",
                        h[8], RFB_MAX_FENCE);
        f->body_left = h[8];
        return 1;
    case RFB_SET_DESKTOP_SIZE:
        f->body_left = 16u * h[6];
        return 1;
    case RFB_QEMU_EXTENDED_KEY_EVENT:
    case RFB_QEMU_AUDIO:
        if (f->hdr_len == 2) {
            if (h[1] == QEMU_EXTENDED_KEY_EVENT) {
                f->kind = RFB_QEMU_EXTENDED_KEY_EVENT;
                f->body_left = 10;
                return 1;
            }
            if (h[1] == QEMU_AUDIO) {
                f->kind = RFB_QEMU_AUDIO;
                f->hdr_need = 4;
                return 0;
            }
            return fail(f, err, errsz, "RFB: unknown QEMU client message subtype %u",
                        h[1]);
        }
        switch (be16(h + 2)) {
        case 0: /* enable */
        case 1: /* disable */
            f->body_left = 0;
            return 1;
        case 2: /* set format: u8 format, u8 channels, u32 frequency */
            f->body_left = 6;
            return 1;
        default:
            return fail(f, err, errsz, "RFB: unknown QEMU audio operation %u",
                        be16(h + 2));
        }
    default: /* fixed size: body_left was set from the type */
        return 1;
    }
}

/* Writes the version string for an error message, non-printing bytes escaped. */
static void quote_version(const uint8_t *v, char *out, size_t outsz)
{
    size_t o = 0;
    for (int i = 0; i < 12 && o + 5 < outsz; i++) {
        if (v[i] >= 0x20 && v[i] < 0x7f && v[i] != '"' && v[i] != '\\')
            out[o++] = (char)v[i];
        else
            o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", v[i]);
    }
    out[o] = 0;
}

static int check_version(struct rfb_filter *f, char *err, size_t errsz)
{
    static const char *const known[] = {"RFB 003.003\n", "RFB 003.007\n",
                                        "RFB 003.008\n"};
    static const int minors[] = {3, 7, 8};
    for (int i = 0; i < 3; i++)
        if (!memcmp(f->hdr, known[i], 12)) {
            f->minor = minors[i];
            return 0;
        }
    char q[64];
    quote_version(f->hdr, q, sizeof(q));
    return fail(f, err, errsz,
                "RFB: the client asked for protocol \"%s\"; the proxy "
                "speaks RFB 3.3, 3.7 and 3.8",
                q);
}

int rfb_filter_feed(struct rfb_filter *f, const uint8_t *in, size_t len, uint8_t *out,
                    size_t *out_len, char *err, size_t errsz)
{
    size_t i = 0, o = 0;
    int rc = 0;
    if (f->phase == RFB_PHASE_FAILED) {
        *out_len = 0;
        return fail(f, err, errsz, "RFB: the stream failed earlier");
    }
    f->bytes_in += len;
    while (i < len) {
        if (f->phase == RFB_PHASE_MESSAGES) {
            /* the body of a message: bulk copy or skip */
            if (f->body_left) {
                size_t n = len - i < f->body_left ? len - i : (size_t)f->body_left;
                if (f->forward) {
                    memcpy(out + o, in + i, n);
                    o += n;
                }
                i += n;
                f->body_left -= n;
                continue;
            }
            if (f->hdr_len == 0) { /* a new message */
                const struct msg_info *m = &by_type[in[i]];
                if (!m->known) {
                    rc =
                        fail(f, err, errsz, "RFB: unknown client message type %u", in[i]);
                    break;
                }
                f->kind = m->kind;
                f->hdr_need = m->need;
                f->body_left = m->fixed ? (uint64_t)(m->fixed - m->need) : 0;
            }
            while (i < len && f->hdr_len < f->hdr_need)
                f->hdr[f->hdr_len++] = in[i++];
            if (f->hdr_len < f->hdr_need)
                break;
            int r = header_complete(f, err, errsz);
            if (r < 0) {
                rc = -1;
                break;
            }
            if (r == 0)
                continue;
            f->forward = !(f->view_only && is_input(f->kind));
            if (f->forward) {
                f->forwarded[f->kind]++;
                memcpy(out + o, f->hdr, f->hdr_len);
                o += f->hdr_len;
            } else {
                f->dropped[f->kind]++;
            }
            f->hdr_len = 0;
        } else if (f->phase == RFB_PHASE_VERSION) {
            while (i < len && f->hdr_len < 12)
                f->hdr[f->hdr_len++] = in[i++];
            if (f->hdr_len < 12)
                break;
            if (check_version(f, err, errsz) < 0) {
                rc = -1;
                break;
            }
            memcpy(out + o, f->hdr, 12);
            o += 12;
            f->hdr_len = 0;
            /* 3.3: the server decides the security type; the client goes on to
             * ClientInit */
            f->phase = f->minor == 3 ? RFB_PHASE_INIT : RFB_PHASE_SECURITY;
        } else if (f->phase == RFB_PHASE_SECURITY) {
            if (in[i] != 1) {
                rc = fail(f, err, errsz,
                          "RFB: the client chose security type %u; the "
                          "proxy allows only 1 (None)",
                          in[i]);
                break;
            }
            out[o++] = in[i++];
            f->phase = RFB_PHASE_INIT;
        } else { /* RFB_PHASE_INIT */
            i++;
            out[o++] = 1; /* shared: never let a viewer disconnect the others */
            f->phase = RFB_PHASE_MESSAGES;
        }
    }
    f->bytes_out += o;
    *out_len = o;
    return rc;
}
