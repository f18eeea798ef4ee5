/* wsproxy: the display proxy between browsers (WebSocket, RFC 6455) and the VNC
 * servers of QEMU sessions (unix sockets).
 *
 * One proxy serves every viewer of the service on its single-threaded loop. A
 * viewer is a browser connection that has finished the HTTP Upgrade handshake;
 * the proxy connects it to one session's vnc.sock and forwards:
 *   browser -> VNC: the payload of every binary (or text) message, through an
 *                   rfb_filter (view-only viewers cannot send input; see rfb.h);
 *   VNC -> browser: the bytes as they come, in binary frames, never parsed.
 * Each direction has a bounded buffer: when the browser cannot take more, the
 * proxy stops reading the VNC socket, and when QEMU cannot take more it stops
 * reading the browser. Idle browsers are pinged; one that answers nothing for the
 * idle timeout is dropped. Errors close that viewer only.
 *
 * How a connection gets here does not matter: the service hands over sockets
 * upgraded by libmicrohttpd, `qdesk proxy` (proxycmd.c) accepts its own. */
#ifndef QDESK_WEB_WSPROXY_H
#define QDESK_WEB_WSPROXY_H

#include "util/loop.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wsproxy;

/* Tuning; a zero field takes its default. */
struct wsproxy_opts {
    size_t buffer_size; /* per direction and viewer (default 256 KiB, min 16 KiB) */
    unsigned ping_interval_ms; /* ping a browser silent this long (default 30 s) */
    unsigned idle_timeout_ms;  /* drop one silent this long (default 90 s) */
    unsigned close_timeout_ms; /* wait this long for the browser's close (default 2 s) */
};

struct wsproxy_stats {
    uint64_t viewers;          /* connected now */
    uint64_t viewers_total;    /* attached since the proxy started */
    uint64_t viewers_failed;   /* closed for a WebSocket, RFB or connect error */
    uint64_t bytes_to_vnc;     /* browser -> VNC, after filtering */
    uint64_t bytes_to_browser; /* VNC -> browser, payload bytes */
    uint64_t messages_dropped; /* input messages of view-only viewers */
    uint64_t bytes_buffered;   /* held in the proxy now, both directions */
};

/* Called exactly once per attached viewer when its connection has ended, with a
 * short human-readable reason. By then the proxy has stopped watching client_fd,
 * closed the VNC connection and forgotten ctx: it never touches either again. The
 * callee owns client_fd and must release it: close() for a socket it accepted
 * itself, MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE) for one from
 * libmicrohttpd's upgrade. Never called from inside wsproxy_attach(); it may be
 * called from inside wsproxy_close_ctx() and wsproxy_free(). */
typedef void (*wsproxy_close_cb)(void *ctx, int client_fd, const char *reason);

/* Returns a new proxy running on l (which must outlive it), or NULL when out of
 * memory. opts may be NULL for the defaults. */
struct wsproxy *wsproxy_new(struct loop *l, const struct wsproxy_opts *opts);

/* Ends every viewer (close 1001, their on_close is called) and frees p. Accepts
 * NULL. */
void wsproxy_free(struct wsproxy *p);

/* The answer to a WebSocket Upgrade request. */
struct wsproxy_accept {
    char accept[29];      /* the Sec-WebSocket-Accept value, NUL-terminated */
    const char *protocol; /* the Sec-WebSocket-Protocol to answer ("binary"), or
                           * NULL to send none (the client offered none) */
    int status;           /* on failure: the HTTP status to answer, 400, or 426 for
                           * a version other than 13 (then also send the header
                           * "Sec-WebSocket-Version: 13") */
};

/* Checks the WebSocket headers of an Upgrade request (each may be NULL when
 * absent): key must be base64 of 16 bytes, version must be "13", and when the
 * client offers protocols one of them must be "binary". Fills out and returns 0,
 * or returns -1 with out->status and the reason (naming the header) in err. The
 * HTTP layer checks the method, Upgrade and Connection headers itself. */
int wsproxy_handshake(const char *key, const char *version, const char *protocols,
                      struct wsproxy_accept *out, char *err, size_t errsz);

/* Returns true when the comma-separated header value list names token: protocol
 * names compare exactly, Upgrade and Connection values with any_case. */
bool wsproxy_list_has(const char *list, const char *token, bool any_case);

/* Takes over an upgraded, handshaken client socket and proxies it to the VNC
 * server at vnc_socket_path. extra_in (copied) are bytes the HTTP layer read past
 * the request; they are the start of the WebSocket stream. The socket is made
 * non-blocking. A VNC server that cannot be reached (the VM is gone) is reported
 * to the browser as close 1011 and then through on_close.
 * Returns 0: from then on on_close(ctx, client_fd, reason) will be called exactly
 * once. Returns -1 with err (bad argument, out of memory): nothing was taken over,
 * the caller still owns client_fd and on_close will not be called. */
int wsproxy_attach(struct wsproxy *p, int client_fd, const void *extra_in,
                   size_t extra_len, const char *vnc_socket_path, bool view_only,
                   wsproxy_close_cb on_close, void *ctx, char *err, size_t errsz);

/* Ends every viewer attached with ctx (the session is stopping): each is sent close
 * 1001 with reason (may be NULL) as far as its socket takes it without waiting,
 * and its on_close is called before this returns. Returns how many were ended. */
size_t wsproxy_close_ctx(struct wsproxy *p, void *ctx, const char *reason);

/* Returns how many viewers are attached with ctx. */
size_t wsproxy_count_ctx(const struct wsproxy *p, const void *ctx);

/* Fills *out with the proxy's counters (for /metrics). */
void wsproxy_stats(const struct wsproxy *p, struct wsproxy_stats *out);

/* --- qdesk proxy (proxycmd.c) -------------------------------------------------- */

/* A parsed WebSocket Upgrade request (values copied, NUL-terminated). */
struct wsproxy_request {
    char path[1024];
    char key[64];
    char version[16];
    char protocols[256]; /* every Sec-WebSocket-Protocol header, joined by ", " */
    size_t header_len;   /* bytes up to and including the blank line */
};

/* Parses an HTTP/1.1 WebSocket Upgrade request from buf[0..len). Returns 1 and
 * fills *out when the header is complete and well-formed, 0 when more bytes are
 * needed, or -1 with err and *status (400, 405 or 426) when it must be refused.
 * Strict: GET, HTTP/1.1, "Upgrade: websocket", "Connection" containing "upgrade",
 * one key and one version header (their values are wsproxy_handshake()'s to
 * check). Refusing a header that does not fit the caller's buffer is the
 * caller's job. */
int wsproxy_parse_request(const char *buf, size_t len, struct wsproxy_request *out,
                          int *status, char *err, size_t errsz);

/* `qdesk proxy [--view-only] LISTEN_ADDR:PORT UNIX_SOCKET_PATH`: a standalone
 * WebSocket-to-VNC proxy (a websockify replacement). argv[0] is "proxy". Runs
 * until SIGINT or SIGTERM; returns the exit status. */
int wsproxy_main(int argc, char **argv);

#endif
