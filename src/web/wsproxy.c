#include "web/wsproxy.h"

#include "util/log.h"
#include "web/rfb.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#include <wslay/wslay.h>

#define DEFAULT_BUFFER   (256u << 10)
#define MIN_BUFFER       (16u << 10)
#define DEFAULT_PING_MS  30000u
#define DEFAULT_IDLE_MS  90000u
#define DEFAULT_CLOSE_MS 2000u

/* wslay's frame reader hands out at most this many payload bytes per call (its
 * input buffer); the browser is read only while that much, filtered, fits. */
#define WSLAY_CHUNK_MAX 4096u
#define RX_ROOM         (WSLAY_CHUNK_MAX + RFB_FILTER_SLACK)

#define VNC_MIN_ROOM     (16u << 10) /* read the VNC socket only into this much room */
#define CONNECT_RETRY_MS 20          /* a full listen backlog: try again shortly */
#define CONNECT_TRIES    50
#define DRAIN_MAX        (64u << 10) /* unread bytes discarded before close (no RST) */

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum tx_kind { TX_NONE, TX_DATA, TX_CTRL };

struct viewer {
    struct wsproxy *p;
    struct viewer *prev, *next;
    unsigned long id;
    void *ctx;
    wsproxy_close_cb on_close;
    char *vnc_path;
    int cfd, vfd;
    uint32_t cev, vev; /* events watched now */
    bool vwatched;
    wslay_frame_context_ptr ws;
    struct rfb_filter rfb;

    /* browser -> VNC */
    uint8_t *extra; /* bytes the HTTP layer read past the request */
    size_t extra_off, extra_len;
    uint8_t *up; /* filtered bytes for the VNC socket: up[up_off .. up_off+up_len) */
    size_t up_off, up_len;
    bool rx_in_frame; /* inside a frame with rx_left payload bytes to come */
    uint64_t rx_left;
    uint8_t rx_opcode;
    bool rx_fragmented; /* a data message continues in the next frame */
    uint8_t ctl[125];   /* the payload of the control frame being received */
    size_t ctl_len;
    bool rx_stalled;     /* stopped reading for lack of room (wslay may hold bytes) */
    bool rx_ignore_data; /* closing: frames are parsed, their data dropped */
    bool rx_raw;         /* after a framing error: bytes are discarded unparsed */
    bool rx_eof;
    bool rx_more;     /* the socket may hold more (no short read since EPOLLIN) */
    bool client_gone; /* hang-up or error on the client socket */
    int rx_errno, tx_errno;

    /* VNC -> browser */
    uint8_t *ring; /* ring buffer of VNC bytes: ring_len bytes from ring_head */
    size_t ring_head, ring_len;
    enum tx_kind tx; /* the frame being sent */
    uint8_t tx_opcode;
    size_t tx_total, tx_left;
    uint8_t tx_ctl[125];
    uint8_t hdr[14]; /* a frame header held back to go out with its payload */
    size_t hdr_off, hdr_len;
    bool pong_queued, ping_queued;
    uint8_t pong[125];
    size_t pong_len;
    bool close_queued;  /* a close frame was decided (never a second one) */
    bool close_pending; /* ... and has not started to go out */
    uint8_t close_msg[125];
    size_t close_len;
    bool close_sent, close_received, shut_wr;
    bool data_closed; /* no more data frames to the browser */
    bool vnc_eof;     /* the VNC connection is over (vfd closed) */
    bool vnc_hup;     /* the VNC peer hung up: read it without epoll until EOF */
    bool vnc_more;    /* the VNC socket may hold more (no short read since EPOLLIN) */
    bool failed;
    int connect_tries;
    uint64_t last_rx, last_ping;
    struct loop_timer *kick_timer, *ka_timer, *close_timer, *connect_timer;
    char reason[200];
};

struct wsproxy {
    struct loop *loop;
    struct wsproxy_opts o;
    struct viewer *viewers;
    unsigned long next_id;
    struct wsproxy_stats stats; /* messages_dropped: of finished viewers only */
};

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* --- handshake ----------------------------------------------------------------- */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void base64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t n = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            n |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            n |= in[i + 2];
        out[o++] = b64chars[n >> 18 & 63];
        out[o++] = b64chars[n >> 12 & 63];
        out[o++] = i + 1 < len ? b64chars[n >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? b64chars[n & 63] : '=';
    }
    out[o] = 0;
}

/* Returns true when s is the base64 form of exactly 16 bytes. */
static bool is_key(const char *s)
{
    if (strlen(s) != 24 || s[22] != '=' || s[23] != '=')
        return false;
    for (int i = 0; i < 22; i++)
        if (!s[i] || !strchr(b64chars, s[i]))
            return false;
    return true;
}

bool wsproxy_list_has(const char *list, const char *token, bool any_case)
{
    size_t tlen = strlen(token);
    const char *s = list;
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        const char *end = s;
        while (*end && *end != ',')
            end++;
        const char *last = end;
        while (last > s && (last[-1] == ' ' || last[-1] == '\t'))
            last--;
        if ((size_t)(last - s) == tlen &&
            (any_case ? !strncasecmp(s, token, tlen) : !memcmp(s, token, tlen)))
            return true;
        s = end;
    }
    return false;
}

int wsproxy_handshake(const char *key, const char *version, const char *protocols,
                      struct wsproxy_accept *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof(*out));
    out->status = 400;
    if (!version || strcmp(version, "13")) {
        out->status = 426;
        snprintf(err, errsz, "Sec-WebSocket-Version: %s; only 13 is supported",
                 version ? "unsupported version" : "missing");
        return -1;
    }
    if (!key || !is_key(key)) {
        snprintf(err, errsz, "Sec-WebSocket-Key: %s; want base64 of 16 bytes",
                 key ? "malformed" : "missing");
        return -1;
    }
    bool offered = false;
    for (const char *s = protocols; s && *s; s++)
        if (*s != ' ' && *s != '\t' && *s != ',')
            offered = true;
    if (offered && !wsproxy_list_has(protocols, "binary", false)) {
        snprintf(err, errsz, "Sec-WebSocket-Protocol: the proxy speaks only \"binary\"");
        return -1;
    }
    char buf[24 + sizeof(WS_GUID)];
    uint8_t digest[20];
    memcpy(buf, key, 24);
    memcpy(buf + 24, WS_GUID, sizeof(WS_GUID) - 1);
    if (gnutls_hash_fast(GNUTLS_DIG_SHA1, buf, 24 + sizeof(WS_GUID) - 1, digest) < 0) {
        out->status = 500;
        snprintf(err, errsz, "SHA-1 is not available");
        return -1;
    }
    base64_encode(digest, sizeof(digest), out->accept);
    out->protocol = offered ? "binary" : NULL;
    out->status = 101;
    return 0;
}

/* --- small helpers ------------------------------------------------------------- */

static void set_reason(struct viewer *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Records why the viewer ends; the first reason wins. */
static void set_reason(struct viewer *v, const char *fmt, ...)
{
    if (v->reason[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
    va_end(ap);
}

static bool valid_close_code(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

/* Returns true when s[0..len) is well-formed UTF-8 (no overlongs, surrogates or
 * code points above U+10FFFF). */
static bool utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += n + 1;
    }
    return true;
}

static size_t up_room(const struct viewer *v)
{
    return v->p->o.buffer_size - v->up_off - v->up_len;
}

static void on_close_timeout(struct loop *l, void *data);

/* Queues a close frame (code 0: without a status) unless one was queued already,
 * and starts the close timer: the browser has that long to take it and answer. */
static void queue_close(struct viewer *v, uint16_t code, const char *text)
{
    if (v->close_queued)
        return;
    v->close_queued = v->close_pending = true;
    v->close_len = 0;
    if (code) {
        v->close_msg[0] = (uint8_t)(code >> 8);
        v->close_msg[1] = (uint8_t)code;
        size_t n = text ? min_size(strlen(text), 123) : 0;
        if (n)
            memcpy(v->close_msg + 2, text, n);
        v->close_len = 2 + n;
    }
    v->close_timer =
        loop_timer_add(v->p->loop, v->p->o.close_timeout_ms, on_close_timeout, v);
}

/* Closes the viewer's stream for an error: the browser gets close code with text
 * (after the frame in flight), nothing more is forwarded either way. The owner
 * reports the reason when on_close tells it. */
static void fail_viewer(struct viewer *v, uint16_t code, const char *text)
{
    if (!v->failed && !v->close_queued) {
        v->failed = true;
        v->p->stats.viewers_failed++;
    }
    set_reason(v, "%s", text);
    v->data_closed = true;
    v->rx_ignore_data = true;
    queue_close(v, code, text);
}

/* A framing error: the rest of the stream cannot be parsed. */
static void protocol_error(struct viewer *v, const char *text)
{
    fail_viewer(v, 1002, text);
    v->rx_raw = true;
}

/* --- wslay I/O callbacks ------------------------------------------------------- */

static ssize_t ws_recv(uint8_t *buf, size_t len, int flags, void *user)
{
    struct viewer *v = user;
    (void)flags;
    if (v->extra_off < v->extra_len) {
        size_t n = min_size(len, v->extra_len - v->extra_off);
        memcpy(buf, v->extra + v->extra_off, n);
        v->extra_off += n;
        v->last_rx = loop_now();
        return (ssize_t)n;
    }
    if (!v->rx_more)
        return -1; /* a short read drained the socket; epoll says when more comes */
    for (;;) {
        ssize_t r = recv(v->cfd, buf, len, MSG_DONTWAIT);
        if (r > 0) {
            v->last_rx = loop_now();
            v->rx_more = (size_t)r == len;
            return r;
        }
        v->rx_more = false;
        if (r == 0)
            v->rx_eof = true;
        else if (errno == EINTR)
            continue;
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            v->rx_errno = errno;
        return -1;
    }
}

/* wslay sends a frame's header (flagged "more") and then its payload: the header
 * is held and goes out with the payload in one sendmsg(), one syscall a frame. */
static ssize_t ws_send(const uint8_t *data, size_t len, int flags, void *user)
{
    struct viewer *v = user;
    if ((flags & WSLAY_MSG_MORE) && v->hdr_len == 0 && len <= sizeof(v->hdr)) {
        memcpy(v->hdr, data, len);
        v->hdr_off = 0;
        v->hdr_len = len;
        return (ssize_t)len;
    }
    size_t held = v->hdr_len - v->hdr_off;
    struct iovec iov[2] = {{v->hdr + v->hdr_off, held}, {(void *)data, len}};
    struct msghdr m = {.msg_iov = held ? iov : iov + 1, .msg_iovlen = held ? 2 : 1};
    for (;;) {
        ssize_t r = sendmsg(v->cfd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0) {
            if ((size_t)r < held) { /* part of the header: the rest goes first */
                v->hdr_off += (size_t)r;
                return -1;
            }
            v->hdr_off = v->hdr_len = 0;
            return (size_t)r > held ? r - (ssize_t)held : -1;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            v->tx_errno = errno;
        return -1;
    }
}

static int ws_genmask(uint8_t *buf, size_t len, void *user)
{
    (void)user;
    memset(buf, 0, len); /* server frames are never masked */
    return 0;
}

/* --- browser -> VNC ------------------------------------------------------------ */

/* Puts payload bytes of a data message through the RFB filter into up. */
static void forward(struct viewer *v, const uint8_t *data, size_t len)
{
    char err[160];
    size_t out_len = 0;
    uint8_t *out = v->up + v->up_off + v->up_len;
    int rc = rfb_filter_feed(&v->rfb, data, len, out, &out_len, err, sizeof(err));
    v->up_len += out_len;
    if (rc < 0)
        fail_viewer(v, 1008, err);
}

/* A complete control frame from the browser. */
static void on_control(struct viewer *v)
{
    if (v->rx_opcode == WSLAY_PING) {
        if (!v->close_queued) {
            memcpy(v->pong, v->ctl, v->ctl_len);
            v->pong_len = v->ctl_len;
            v->pong_queued = true; /* only the latest ping is answered */
        }
    } else if (v->rx_opcode == WSLAY_CONNECTION_CLOSE) {
        unsigned code = 0;
        if (v->ctl_len == 1) {
            protocol_error(v, "WebSocket: close frame with a 1-byte payload");
            return;
        }
        if (v->ctl_len >= 2) {
            code = (unsigned)v->ctl[0] << 8 | v->ctl[1];
            if (!valid_close_code(code)) {
                protocol_error(v, "WebSocket: invalid close status code");
                return;
            }
            if (!utf8_valid(v->ctl + 2, v->ctl_len - 2)) {
                fail_viewer(v, 1007, "WebSocket: close reason is not UTF-8");
                v->rx_raw = true;
                return;
            }
        }
        v->close_received = true;
        v->rx_raw = true; /* nothing may follow a close */
        v->rx_ignore_data = true;
        v->data_closed = true;
        if (code)
            set_reason(v, "the browser closed the connection (%u)", code);
        else
            set_reason(v, "the browser closed the connection");
        queue_close(v, (uint16_t)code, NULL); /* echo the status code */
    }
}

/* One chunk of a frame from wslay's reader. */
static void on_chunk(struct viewer *v, const struct wslay_frame_iocb *io)
{
    if (!v->rx_in_frame) {
        if (!io->mask) {
            protocol_error(v, "WebSocket: unmasked client frame");
            return;
        }
        if (io->rsv) {
            protocol_error(v, "WebSocket: reserved bits set without an extension");
            return;
        }
        switch (io->opcode) {
        case WSLAY_CONTINUATION_FRAME:
            if (!v->rx_fragmented) {
                protocol_error(v, "WebSocket: continuation frame outside a message");
                return;
            }
            v->rx_fragmented = !io->fin;
            break;
        case WSLAY_TEXT_FRAME:
        case WSLAY_BINARY_FRAME:
            if (v->rx_fragmented) {
                protocol_error(v, "WebSocket: new message inside a fragmented one");
                return;
            }
            v->rx_fragmented = !io->fin;
            break;
        case WSLAY_CONNECTION_CLOSE:
        case WSLAY_PING:
        case WSLAY_PONG:
            v->ctl_len = 0; /* wslay has checked: at most 125 bytes, not fragmented */
            break;
        default:
            protocol_error(v, "WebSocket: unknown opcode");
            return;
        }
        v->rx_opcode = io->opcode;
        v->rx_left = io->payload_length;
        v->rx_in_frame = true;
    }
    size_t n = io->data_length;
    if (n > v->rx_left) { /* wslay guarantees this cannot happen */
        protocol_error(v, "WebSocket: frame overrun");
        return;
    }
    v->rx_left -= n;
    if (wslay_is_ctrl_frame(v->rx_opcode)) {
        if (n > sizeof(v->ctl) - v->ctl_len) {
            protocol_error(v, "WebSocket: control frame too long");
            return;
        }
        memcpy(v->ctl + v->ctl_len, io->data, n);
        v->ctl_len += n;
    } else if (n && !v->rx_ignore_data) {
        forward(v, io->data, n);
    }
    if (v->rx_left == 0) {
        v->rx_in_frame = false;
        if (wslay_is_ctrl_frame(v->rx_opcode))
            on_control(v);
    }
}

/* Discards what the browser sends, unparsed (after a framing error). */
static void discard_client(struct viewer *v)
{
    uint8_t scratch[4096];
    for (size_t total = 0; total < DRAIN_MAX;) {
        ssize_t r = recv(v->cfd, scratch, sizeof(scratch), MSG_DONTWAIT);
        if (r > 0) {
            total += (size_t)r;
            continue;
        }
        if (r == 0)
            v->rx_eof = true;
        else if (errno == EINTR)
            continue;
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            v->rx_errno = errno;
        return;
    }
}

/* Reads and handles frames from the browser while the VNC-bound buffer has room. */
static void read_client(struct viewer *v)
{
    v->rx_stalled = false;
    while (!v->rx_eof && !v->rx_errno && !v->client_gone) {
        if (v->rx_raw) {
            discard_client(v);
            return;
        }
        if (!v->rx_ignore_data && up_room(v) < RX_ROOM) {
            if (v->up_off) {
                memmove(v->up, v->up + v->up_off, v->up_len);
                v->up_off = 0;
            }
            if (up_room(v) < RX_ROOM) {
                v->rx_stalled = true;
                return;
            }
        }
        struct wslay_frame_iocb io;
        memset(&io, 0, sizeof(io));
        ssize_t r = wslay_frame_recv(v->ws, &io);
        if (r == WSLAY_ERR_WANT_READ)
            return;
        if (r < 0) {
            protocol_error(v, "WebSocket: malformed frame header");
            continue;
        }
        if (io.data_length > WSLAY_CHUNK_MAX) { /* would overrun the room kept */
            protocol_error(v, "WebSocket: internal chunk size exceeded");
            continue;
        }
        on_chunk(v, &io);
    }
}

/* Writes filtered bytes to the VNC server. */
static void flush_vnc(struct viewer *v)
{
    while (v->up_len && v->vfd >= 0 && !v->vnc_hup) {
        ssize_t r =
            send(v->vfd, v->up + v->up_off, v->up_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0) {
            v->up_off += (size_t)r;
            v->up_len -= (size_t)r;
            v->p->stats.bytes_to_vnc += (uint64_t)r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            /* the server went away: read what it left until EOF */
            v->vnc_hup = true;
            v->up_len = 0;
        }
    }
    if (!v->up_len)
        v->up_off = 0;
}

/* --- VNC -> browser ------------------------------------------------------------ */

static void close_vnc(struct viewer *v)
{
    if (v->vfd < 0)
        return;
    if (v->vwatched)
        loop_del_fd(v->p->loop, v->vfd);
    v->vwatched = false;
    close(v->vfd);
    v->vfd = -1;
    v->vnc_eof = true;
    v->up_len = v->up_off = 0;
}

/* The VNC connection has ended (error e, or 0 for EOF): what was read goes out
 * first, then close 1000. Returns -1. */
static ssize_t vnc_ended(struct viewer *v, int e)
{
    if (e)
        set_reason(v, "the display connection failed: %s", strerror(e));
    else
        set_reason(v, "the display closed");
    close_vnc(v);
    queue_close(v, 1000, "display closed");
    return -1;
}

/* Reads from the VNC server into the ring. Returns the bytes read, 0
 * when there is no room or nothing to read, -1 when the connection is over. */
static ssize_t read_vnc(struct viewer *v)
{
    size_t cap = v->p->o.buffer_size;
    size_t room = cap - v->ring_len;
    if (v->vfd < 0 || v->data_closed || room == 0)
        return 0;
    size_t tail = v->ring_head + v->ring_len;
    if (tail >= cap)
        tail -= cap;
    struct iovec iov[2];
    int n = 1;
    iov[0].iov_base = v->ring + tail;
    iov[0].iov_len = min_size(room, cap - tail);
    if (iov[0].iov_len < room) {
        iov[1].iov_base = v->ring;
        iov[1].iov_len = room - iov[0].iov_len;
        n = 2;
    }
    for (;;) {
        ssize_t r = readv(v->vfd, iov, n);
        if (r > 0) {
            v->ring_len += (size_t)r;
            v->vnc_more = (size_t)r == room;
            return r;
        }
        v->vnc_more = false;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return vnc_ended(v, r < 0 ? errno : 0);
    }
}

/* Picks the next frame for the browser: answers first, then data, then the close.
 * Returns false when there is nothing to send. */
static bool next_frame(struct viewer *v)
{
    if (v->pong_queued || v->ping_queued) {
        v->tx = TX_CTRL;
        if (v->pong_queued) {
            v->tx_opcode = WSLAY_PONG;
            memcpy(v->tx_ctl, v->pong, v->pong_len);
            v->tx_total = v->pong_len;
            v->pong_queued = false;
        } else {
            v->tx_opcode = WSLAY_PING;
            v->tx_total = 0;
            v->ping_queued = false;
        }
    } else if (!v->data_closed && v->ring_len) {
        v->tx = TX_DATA;
        v->tx_opcode = WSLAY_BINARY_FRAME;
        v->tx_total = min_size(v->ring_len, v->p->o.buffer_size - v->ring_head);
    } else if (v->close_pending) {
        v->tx = TX_CTRL;
        v->tx_opcode = WSLAY_CONNECTION_CLOSE;
        memcpy(v->tx_ctl, v->close_msg, v->close_len);
        v->tx_total = v->close_len;
        v->close_pending = false;
    } else {
        return false;
    }
    v->tx_left = v->tx_total;
    return true;
}

static bool tx_pending(const struct viewer *v)
{
    return !v->close_sent && !v->tx_errno && !v->client_gone &&
           (v->tx != TX_NONE || v->pong_queued || v->ping_queued || v->close_pending ||
            (!v->data_closed && v->ring_len));
}

/* Sends frames to the browser until its socket is full or nothing is left. */
static void flush_client(struct viewer *v)
{
    while (!v->close_sent && !v->tx_errno && !v->client_gone) {
        if (v->tx == TX_NONE && !next_frame(v))
            return;
        struct wslay_frame_iocb io;
        memset(&io, 0, sizeof(io));
        io.fin = 1;
        io.opcode = v->tx_opcode;
        io.payload_length = v->tx_total;
        io.data = v->tx == TX_DATA ? v->ring + v->ring_head
                                   : v->tx_ctl + (v->tx_total - v->tx_left);
        io.data_length = v->tx_left;
        ssize_t r = wslay_frame_send(v->ws, &io);
        if (r < 0) {
            if (r != WSLAY_ERR_WANT_WRITE && !v->tx_errno)
                v->tx_errno = EPROTO;
            return; /* the socket is full (or tx_errno is set) */
        }
        size_t n = (size_t)r;
        v->tx_left -= n;
        if (v->tx == TX_DATA) {
            v->ring_head += n;
            v->ring_len -= n;
            if (v->ring_head == v->p->o.buffer_size || v->ring_len == 0)
                v->ring_head = 0;
            v->p->stats.bytes_to_browser += n;
        }
        if (v->tx_left == 0) {
            if (v->tx_opcode == WSLAY_CONNECTION_CLOSE)
                v->close_sent = true;
            v->tx = TX_NONE;
        }
    }
}

/* --- the viewer's life --------------------------------------------------------- */

static void finish(struct viewer *v);

/* Drops the connection now (no close handshake). */
static void drop(struct viewer *v, const char *why)
{
    set_reason(v, "%s", why);
    finish(v);
}

static void update_events(struct viewer *v)
{
    struct loop *l = v->p->loop;
    uint32_t ce = 0;
    if (!v->rx_eof &&
        (v->rx_ignore_data || v->rx_raw || v->p->o.buffer_size - v->up_len >= RX_ROOM))
        ce |= EPOLLIN;
    if (tx_pending(v))
        ce |= EPOLLOUT;
    if (ce != v->cev && loop_mod_fd(l, v->cfd, ce) == 0)
        v->cev = ce;
    if (v->vwatched) {
        uint32_t ve = 0;
        size_t room = v->p->o.buffer_size - v->ring_len;
        if (!v->data_closed && room >= min_size(VNC_MIN_ROOM, v->p->o.buffer_size))
            ve |= EPOLLIN;
        if (v->up_len)
            ve |= EPOLLOUT;
        if (ve != v->vev && loop_mod_fd(l, v->vfd, ve) == 0)
            v->vev = ve;
    }
}

/* Reads the VNC server and writes to the browser in turn, within a budget. */
static void pump_down(struct viewer *v)
{
    size_t budget = 4 * v->p->o.buffer_size;
    while (budget) {
        ssize_t r = read_vnc(v);
        flush_client(v);
        if (r <= 0 || (!v->vnc_more && !v->vnc_hup))
            break;
        budget -= min_size((size_t)r, budget);
    }
}

/* Moves data as far as the sockets allow and settles the viewer's state. Returns
 * -1 when the viewer has ended (it is freed), else 0. */
static int run(struct viewer *v)
{
    if (v->extra_off < v->extra_len || v->rx_stalled)
        read_client(v);
    flush_vnc(v);
    if (v->rx_stalled && v->p->o.buffer_size - v->up_len >= RX_ROOM)
        read_client(v);
    if (v->vnc_hup && v->vfd >= 0)
        pump_down(v);
    flush_client(v);

    if (v->client_gone || v->rx_errno || v->tx_errno) {
        int e = v->rx_errno ? v->rx_errno : v->tx_errno;
        if (e)
            set_reason(v, "the browser connection failed: %s", strerror(e));
        drop(v, "the browser connection failed");
        return -1;
    }
    if (v->close_sent && v->close_received) {
        finish(v);
        return -1;
    }
    if (v->rx_eof && !(v->close_received && !v->close_sent)) {
        drop(v, "the browser disconnected");
        return -1;
    }
    if (v->close_sent && !v->shut_wr) {
        shutdown(v->cfd, SHUT_WR); /* the browser sees our FIN after the close */
        v->shut_wr = true;
    }
    update_events(v);
    return 0;
}

static void on_client(struct loop *l, int fd, uint32_t events, void *data)
{
    struct viewer *v = data;
    (void)l, (void)fd;
    if (events & EPOLLERR) {
        v->client_gone = true;
    } else {
        if (events & (EPOLLIN | EPOLLHUP)) {
            v->rx_more = true;
            read_client(v);
        }
        if (events & EPOLLHUP) /* both directions are down: nothing more comes */
            v->rx_eof = true;
    }
    run(v);
}

static void on_vnc(struct loop *l, int fd, uint32_t events, void *data)
{
    struct viewer *v = data;
    (void)fd;
    if (events & (EPOLLERR | EPOLLHUP)) {
        /* level-triggered HUP would repeat while we cannot read: stop watching and
         * read what is left whenever the ring has room */
        loop_del_fd(l, v->vfd);
        v->vwatched = false;
        v->vnc_hup = true;
        v->up_len = v->up_off = 0;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        v->vnc_more = true;
        pump_down(v);
    }
    run(v);
}

static void on_kick(struct loop *l, void *data)
{
    struct viewer *v = data;
    (void)l;
    v->kick_timer = NULL;
    run(v);
}

static void on_close_timeout(struct loop *l, void *data)
{
    struct viewer *v = data;
    (void)l;
    v->close_timer = NULL;
    drop(v, "the browser did not complete the close handshake");
}

static void arm_keepalive(struct viewer *v);

static void on_keepalive(struct loop *l, void *data)
{
    struct viewer *v = data;
    struct wsproxy *p = v->p;
    v->ka_timer = NULL;
    uint64_t now = loop_now();
    if (now - v->last_rx >= p->o.idle_timeout_ms) {
        set_reason(v, "the browser answered nothing for %u s",
                   (p->o.idle_timeout_ms + 999) / 1000);
        queue_close(v, 1001, "idle");
        v->data_closed = true;
        flush_client(v);
        drop(v, "");
        return;
    }
    if (now - v->last_rx >= p->o.ping_interval_ms &&
        now - v->last_ping >= p->o.ping_interval_ms && !v->close_queued) {
        v->ping_queued = true;
        v->last_ping = now;
    }
    arm_keepalive(v);
    (void)l;
    run(v);
}

static void arm_keepalive(struct viewer *v)
{
    unsigned period = v->p->o.ping_interval_ms / 3;
    if (period > v->p->o.idle_timeout_ms / 3)
        period = v->p->o.idle_timeout_ms / 3;
    v->ka_timer = loop_timer_add(v->p->loop, period ? period : 1, on_keepalive, v);
}

static void connect_vnc(struct viewer *v);

static void on_connect_retry(struct loop *l, void *data)
{
    struct viewer *v = data;
    (void)l;
    v->connect_timer = NULL;
    connect_vnc(v);
    run(v);
}

/* Connects to the VNC socket; a failure is reported to the browser as 1011. */
static void connect_vnc(struct viewer *v)
{
    struct wsproxy *p = v->p;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, v->vnc_path, strlen(v->vnc_path) + 1); /* length checked */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int e = fd < 0 ? errno : 0;
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        e = errno;
    if (fd >= 0 && !e) {
        int rc = loop_add_fd(p->loop, fd, EPOLLIN, on_vnc, v);
        if (rc == 0) {
            v->vfd = fd;
            v->vwatched = true;
            v->vev = EPOLLIN;
            return;
        }
        e = -rc;
    }
    if (fd >= 0)
        close(fd);
    if (e == EAGAIN && ++v->connect_tries < CONNECT_TRIES) {
        v->connect_timer = loop_timer_add(p->loop, CONNECT_RETRY_MS, on_connect_retry, v);
        if (v->connect_timer)
            return;
    }
    set_reason(v, "VM display %s unavailable: %s", v->vnc_path, strerror(e));
    v->vnc_eof = true;
    fail_viewer(v, 1011, "VM display unavailable");
}

/* Unlinks and frees the viewer, then tells its owner. */
static void finish(struct viewer *v)
{
    struct wsproxy *p = v->p;
    struct loop *l = p->loop;
    loop_timer_cancel(l, v->kick_timer);
    loop_timer_cancel(l, v->ka_timer);
    loop_timer_cancel(l, v->close_timer);
    loop_timer_cancel(l, v->connect_timer);
    loop_del_fd(l, v->cfd);
    close_vnc(v);
    /* unread input makes close() send a reset, which can destroy the close frame
     * in flight: read it away first */
    if (!v->rx_eof && !v->client_gone) {
        v->rx_raw = true;
        discard_client(v);
    }
    if (v->prev)
        v->prev->next = v->next;
    else
        p->viewers = v->next;
    if (v->next)
        v->next->prev = v->prev;
    p->stats.viewers--;
    for (int k = 0; k < RFB_MSG_KINDS; k++)
        p->stats.messages_dropped += v->rfb.dropped[k];
    log_debug("display: viewer %lu ended: %s", v->id,
              v->reason[0] ? v->reason : "closed");

    wsproxy_close_cb cb = v->on_close;
    void *ctx = v->ctx;
    int fd = v->cfd;
    char reason[sizeof(v->reason)];
    snprintf(reason, sizeof(reason), "%s", v->reason[0] ? v->reason : "closed");
    wslay_frame_context_free(v->ws);
    free(v->extra);
    free(v->up);
    free(v->ring);
    free(v->vnc_path);
    free(v);
    if (cb)
        cb(ctx, fd, reason);
}

/* --- the proxy ----------------------------------------------------------------- */

struct wsproxy *wsproxy_new(struct loop *l, const struct wsproxy_opts *opts)
{
    struct wsproxy *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->loop = l;
    if (opts)
        p->o = *opts;
    if (!p->o.buffer_size)
        p->o.buffer_size = DEFAULT_BUFFER;
    if (p->o.buffer_size < MIN_BUFFER)
        p->o.buffer_size = MIN_BUFFER;
    if (!p->o.ping_interval_ms)
        p->o.ping_interval_ms = DEFAULT_PING_MS;
    if (!p->o.idle_timeout_ms)
        p->o.idle_timeout_ms = DEFAULT_IDLE_MS;
    if (!p->o.close_timeout_ms)
        p->o.close_timeout_ms = DEFAULT_CLOSE_MS;
    p->next_id = 1;
    return p;
}

/* Ends a viewer at once for the service: close 1001 as far as the socket takes it. */
static void end_now(struct viewer *v, const char *reason)
{
    set_reason(v, "%s", reason);
    queue_close(v, 1001, reason);
    v->data_closed = true;
    flush_client(v);
    finish(v);
}

void wsproxy_free(struct wsproxy *p)
{
    if (!p)
        return;
    while (p->viewers)
        end_now(p->viewers, "the service is stopping");
    free(p);
}

size_t wsproxy_close_ctx(struct wsproxy *p, void *ctx, const char *reason)
{
    size_t n = 0;
    /* an on_close may end other viewers: start over from the head each time */
    for (;;) {
        struct viewer *v = p->viewers;
        while (v && v->ctx != ctx)
            v = v->next;
        if (!v)
            return n;
        end_now(v, reason ? reason : "the session ended");
        n++;
    }
}

size_t wsproxy_count_ctx(const struct wsproxy *p, const void *ctx)
{
    size_t n = 0;
    for (const struct viewer *v = p->viewers; v; v = v->next)
        n += v->ctx == ctx;
    return n;
}

void wsproxy_stats(const struct wsproxy *p, struct wsproxy_stats *out)
{
    *out = p->stats;
    out->bytes_buffered = 0;
    for (const struct viewer *v = p->viewers; v; v = v->next) {
        for (int k = 0; k < RFB_MSG_KINDS; k++)
            out->messages_dropped += v->rfb.dropped[k];
        out->bytes_buffered += v->ring_len + v->up_len;
    }
}

int wsproxy_attach(struct wsproxy *p, int client_fd, const void *extra_in,
                   size_t extra_len, const char *vnc_socket_path, bool view_only,
                   wsproxy_close_cb on_close, void *ctx, char *err, size_t errsz)
{
    struct sockaddr_un sa;
    if (client_fd < 0 || !vnc_socket_path || !on_close) {
        snprintf(err, errsz, "wsproxy_attach: bad arguments");
        return -1;
    }
    if (strlen(vnc_socket_path) >= sizeof(sa.sun_path)) {
        snprintf(err, errsz, "VNC socket path is longer than %zu bytes: %s",
                 sizeof(sa.sun_path) - 1, vnc_socket_path);
        return -1;
    }
    struct viewer *v = calloc(1, sizeof(*v));
    static const struct wslay_frame_callbacks cbs = {ws_send, ws_recv, ws_genmask};
    if (!v)
        goto nomem;
    v->p = p;
    v->cfd = client_fd;
    v->vfd = -1;
    v->ctx = ctx;
    v->on_close = on_close;
    v->vnc_path = strdup(vnc_socket_path);
    v->up = malloc(p->o.buffer_size);
    v->ring = malloc(p->o.buffer_size);
    if (extra_len) {
        v->extra = malloc(extra_len);
        if (v->extra)
            memcpy(v->extra, extra_in, extra_len);
        v->extra_len = extra_len;
    }
    if (!v->vnc_path || !v->up || !v->ring || (extra_len && !v->extra) ||
        wslay_frame_context_init(&v->ws, &cbs, v) != 0)
        goto nomem;
    rfb_filter_init(&v->rfb, view_only);

    int fl = fcntl(client_fd, F_GETFL);
    if (fl < 0 || fcntl(client_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        snprintf(err, errsz, "client socket: %s", strerror(errno));
        goto fail;
    }
    int one = 1; /* small updates must not wait for Nagle (fails harmlessly off TCP) */
    setsockopt(client_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = loop_add_fd(p->loop, client_fd, EPOLLIN, on_client, v);
    if (rc < 0) {
        snprintf(err, errsz, "client socket: %s", strerror(-rc));
        goto fail;
    }
    v->cev = EPOLLIN;
    v->rx_more = true;
    v->kick_timer = loop_timer_add(p->loop, 0, on_kick, v);
    if (!v->kick_timer) {
        loop_del_fd(p->loop, client_fd);
        goto nomem;
    }
    v->id = p->next_id++;
    v->last_rx = v->last_ping = loop_now();
    v->next = p->viewers;
    if (v->next)
        v->next->prev = v;
    p->viewers = v;
    p->stats.viewers++;
    p->stats.viewers_total++;
    arm_keepalive(v);
    connect_vnc(v);
    log_debug("display: viewer %lu attached to %s%s", v->id, vnc_socket_path,
              view_only ? " (view only)" : "");
    return 0;

nomem:
    snprintf(err, errsz, "out of memory");
fail:
    if (v) {
        if (v->ws)
            wslay_frame_context_free(v->ws);
        free(v->extra);
        free(v->up);
        free(v->ring);
        free(v->vnc_path);
        free(v);
    }
    return -1;
}
