/* rfb: a filter over the byte stream a VNC client sends to the server.
 *
 * The display proxy puts every byte a browser sends through one filter before it
 * reaches QEMU's VNC socket. The filter follows the client side of RFC 6143 (plus
 * the extensions QEMU and noVNC use) incrementally: it may be fed any slice of the
 * stream, split anywhere, and never needs more than a message header of memory.
 *
 * It enforces the display's security model:
 *   - only protocol versions 3.3, 3.7 and 3.8 and security type 1 (None);
 *   - the ClientInit shared flag is forced to 1, so no viewer can make QEMU drop
 *     the others;
 *   - a view-only viewer's input (key, pointer, clipboard, resize, QEMU extended
 *     key and xvp power messages) is dropped, whole messages at a time;
 *   - an unknown message type or an oversized length is an error, after which the
 *     caller closes that viewer (no byte of the bad message has been forwarded).
 *
 * Server-to-client bytes are not parsed. */
#ifndef QDESK_WEB_RFB_H
#define QDESK_WEB_RFB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits on client message lengths (larger is an error). */
#define RFB_MAX_ENCODINGS 1024       /* SetEncodings count */
#define RFB_MAX_CUT_TEXT  (1u << 20) /* ClientCutText, either form, in bytes */
#define RFB_MAX_FENCE     64         /* ClientFence payload */

/* A header is held back until it is complete and valid, so one call may output up
 * to this many bytes more than it was fed. */
#define RFB_FILTER_SLACK 12

/* Client message kinds, for the counters. */
enum rfb_msg {
    RFB_SET_PIXEL_FORMAT,
    RFB_SET_ENCODINGS,
    RFB_FB_UPDATE_REQUEST,
    RFB_KEY_EVENT,
    RFB_POINTER_EVENT,
    RFB_CLIENT_CUT_TEXT,
    RFB_ENABLE_CONTINUOUS_UPDATES,
    RFB_CLIENT_FENCE,
    RFB_XVP,
    RFB_SET_DESKTOP_SIZE,
    RFB_QEMU_EXTENDED_KEY_EVENT,
    RFB_QEMU_AUDIO,
    RFB_MSG_KINDS
};

enum rfb_phase {
    RFB_PHASE_VERSION,  /* reading the 12-byte ProtocolVersion */
    RFB_PHASE_SECURITY, /* 3.7/3.8: reading the chosen security type */
    RFB_PHASE_INIT,     /* reading the ClientInit shared flag */
    RFB_PHASE_MESSAGES, /* normal operation */
    RFB_PHASE_FAILED    /* an error was reported; every further feed fails */
};

struct rfb_filter {
    bool view_only;
    enum rfb_phase phase;
    int minor;       /* protocol version 3.minor once read: 3, 7 or 8 */
    uint8_t hdr[16]; /* the current header (or version string) so far */
    uint8_t hdr_len;
    uint8_t hdr_need;   /* bytes of header needed before the message is known */
    uint8_t kind;       /* enum rfb_msg of the current message */
    bool forward;       /* the current message is forwarded, not dropped */
    uint64_t body_left; /* bytes of the current message after its header */
    uint64_t forwarded[RFB_MSG_KINDS]; /* messages, counted when their header is */
    uint64_t dropped[RFB_MSG_KINDS];   /* complete and valid */
    uint64_t bytes_in, bytes_out;
};

/* Starts a filter at the beginning of a client's stream. */
void rfb_filter_init(struct rfb_filter *f, bool view_only);

/* Feeds the next len bytes of the client's stream. Writes the bytes to forward to
 * out, which must have room for len + RFB_FILTER_SLACK bytes, and sets *out_len.
 * Over a whole stream the output is never longer than the input. Returns 0, or -1
 * with the reason in err (the output of that call may then hold bytes of earlier,
 * valid messages: forward them or not, the viewer is closed either way). */
int rfb_filter_feed(struct rfb_filter *f, const uint8_t *in, size_t len, uint8_t *out,
                    size_t *out_len, char *err, size_t errsz);

/* Returns a short name for a message kind ("KeyEvent"), for logs and errors. */
const char *rfb_msg_name(enum rfb_msg kind);

#endif
