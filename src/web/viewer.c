#include "web/viewer.h"

#include "session/session.h"
#include "util/log.h"
#include "web/wsproxy.h"

#include <qrencode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* One WebSocket viewer, admitted to its session when its Upgrade request was
 * answered. Two parties hold it: the HTTP request (until libmicrohttpd completes
 * it) and, once upgraded, the display proxy (until the viewer leaves); whichever
 * lets go last frees it. A request that completes without an upgrade (the browser
 * went away before the 101 reached it) gives the admission back: a one-shot link
 * stays usable. */
struct viewer_conn {
    int fd;
    struct MHD_UpgradeResponseHandle *urh;
    struct web *web;
    struct session *session;
    bool view_only;
    bool upgraded;     /* the proxy carries it: on_viewer_closed() will run */
    bool closed;       /* ... and has run */
    bool request_done; /* libmicrohttpd has completed the HTTP request */
    struct viewer_conn *next;
};

static void on_session_change(struct session *s, void *arg)
{
    struct web *web = arg;
    if (s->state == SESSION_RUNNING)
        return;
    /* each close takes a viewer off the list: start over after one */
    for (struct viewer_conn *c = web->viewers; c;) {
        if (c->session == s) {
            wsproxy_close_ctx(web->proxy, c, "the session has ended");
            c = web->viewers;
        } else {
            c = c->next;
        }
    }
}

void viewer_init(struct web *web)
{
    sessions_set_observer(web->sessions, on_session_change, web);
}

void viewer_proxy_counters(struct web *web, struct viewer_counters *out)
{
    struct wsproxy_stats st;
    wsproxy_stats(web->proxy, &st);
    out->bytes_to_browser = st.bytes_to_browser;
    out->bytes_to_vm = st.bytes_to_vnc;
}

/* A token is 43 base64url characters; anything else is not worth a lookup. */
static bool token_shape(const char *t)
{
    return strlen(t) == SESSION_TOKEN_LEN - 1 &&
           strspn(t,
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
               SESSION_TOKEN_LEN - 1;
}

static struct session *by_token(struct http_request *r, bool ended, bool *view_only)
{
    if (!token_shape(r->args[0]))
        return NULL;
    return sessions_by_token(r->web->sessions, r->args[0], ended, view_only);
}

static enum MHD_Result gone(struct http_request *r)
{
    return http_reply_error(r, MHD_HTTP_NOT_FOUND, "not_found",
                            "this link has expired or never existed");
}

enum MHD_Result viewer_page(struct http_request *r)
{
    if (!token_shape(r->args[0]))
        return gone(r);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/viewer.html", r->web->cfg->www);
    return http_reply_file(r, path, "text/html; charset=utf-8");
}

enum MHD_Result viewer_info(struct http_request *r)
{
    bool view_only;
    struct session *s = by_token(r, true, &view_only);
    if (!s)
        return gone(r);
    json_t *info = json_pack(
        "{s:s, s:s, s:I, s:b, s:b, s:b}", "state", session_state_name(s->state),
        "machine", s->machine, "expires_at", (json_int_t)s->expires_at, "view_only",
        view_only, "oneshot", s->oneshot, "used", s->oneshot && s->viewers_total > 0);
    /* an ended session's link opens nothing, but says what became of it while the
     * session is remembered */
    if (!session_state_live(s->state))
        json_object_set_new(info, "ended_at", json_integer(s->ended_at));
    return http_reply_json(r, MHD_HTTP_OK, info);
}

/* Draws the QR code as one SVG path of unit squares, with the quiet zone the
 * standard asks for. */
static char *qr_svg(const char *text)
{
    QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    if (!qr)
        return NULL;
    int w = qr->width, border = 4, size = w + 2 * border;
    size_t cap = (size_t)w * (size_t)w * 16 + 512, len = 0;
    char *svg = malloc(cap);
    if (svg) {
        len += (size_t)snprintf(
            svg, cap,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
            "shape-rendering=\"crispEdges\"><rect width=\"%d\" height=\"%d\" "
            "fill=\"#fff\"/><path fill=\"#000\" d=\"",
            size, size, size, size);
        for (int y = 0; y < w; y++)
            for (int x = 0; x < w; x++)
                if (qr->data[y * w + x] & 1)
                    len += (size_t)snprintf(svg + len, cap - len, "M%d %dh1v1h-1z",
                                            x + border, y + border);
        snprintf(svg + len, cap - len, "\"/></svg>\n");
    }
    QRcode_free(qr);
    return svg;
}

enum MHD_Result viewer_qr(struct http_request *r)
{
    bool view_only;
    if (!by_token(r, false, &view_only))
        return gone(r);
    char base[512], url[700];
    http_base_url(r, base, sizeof(base));
    snprintf(url, sizeof(url), "%s/s/%s", base, r->args[0]);
    char *svg = qr_svg(url);
    if (!svg)
        return MHD_NO;
    enum MHD_Result rc =
        http_reply_data(r, MHD_HTTP_OK, "image/svg+xml", svg, strlen(svg));
    free(svg);
    return rc;
}

/* The viewer's admission ends: its session may end with it (a one-shot link). */
static void leave(struct viewer_conn *c)
{
    if (!c->web->stopping)
        sessions_viewer_closed(c->web->sessions, c->session);
}

/* r->job_free of the Upgrade request. */
static void on_request_done(void *job)
{
    struct viewer_conn *c = job;
    c->request_done = true;
    if (!c->upgraded) {
        log_info("session %s: a viewer went away before its connection was upgraded",
                 c->session->id);
        sessions_viewer_cancel(c->web->sessions, c->session);
        free(c);
    } else if (c->closed) {
        free(c);
    }
}

/* The proxy's on_close: ctx is the viewer_conn. */
static void on_viewer_closed(void *ctx, int fd, const char *reason)
{
    struct viewer_conn *c = ctx;
    (void)fd;
    for (struct viewer_conn **p = &c->web->viewers; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    log_info("session %s: %s viewer left (%s)", c->session->id,
             c->view_only ? "view-only" : "control", reason);
    MHD_upgrade_action(c->urh, MHD_UPGRADE_ACTION_CLOSE);
    c->closed = true;
    leave(c);
    if (c->request_done)
        free(c);
}

static void on_upgraded(void *cls, struct MHD_Connection *con, void *req_cls,
                        const char *extra_in, size_t extra_len, MHD_socket sock,
                        struct MHD_UpgradeResponseHandle *urh)
{
    (void)con;
    (void)req_cls;
    struct viewer_conn *c = cls;
    struct session *s = c->session;
    char vnc[PATH_MAX + 32], err[256];
    c->fd = sock;
    c->urh = urh;
    c->upgraded = true;
    c->next = c->web->viewers;
    c->web->viewers = c;
    sessions_vnc_path(s, vnc, sizeof(vnc));
    if (wsproxy_attach(c->web->proxy, sock, extra_in, extra_len, vnc, c->view_only,
                       on_viewer_closed, c, err, sizeof(err)) < 0) {
        on_viewer_closed(c, sock, err);
        return;
    }
    log_info("session %s: %s viewer connected", s->id,
             c->view_only ? "view-only" : "control");
}

enum MHD_Result viewer_websocket(struct http_request *r)
{
    bool view_only;
    struct session *s = by_token(r, false, &view_only);
    if (!s)
        return gone(r);
    const char *upgrade = http_header(r, "Upgrade"),
               *connection = http_header(r, "Connection");
    if (!upgrade || strcasecmp(upgrade, "websocket") != 0 || !connection ||
        !wsproxy_list_has(connection, "upgrade", true))
        return http_reply_error(r, MHD_HTTP_BAD_REQUEST, "not_websocket",
                                "this address speaks WebSocket only");
    if (strcmp(r->version, MHD_HTTP_VERSION_1_1) !=
        0) /* libmicrohttpd upgrades no other */
        return http_reply_error(r, MHD_HTTP_BAD_REQUEST, "not_websocket",
                                "a WebSocket needs HTTP/1.1, not %s", r->version);
    struct wsproxy_accept acc;
    char err[256];
    if (wsproxy_handshake(
            http_header(r, "Sec-WebSocket-Key"), http_header(r, "Sec-WebSocket-Version"),
            http_header(r, "Sec-WebSocket-Protocol"), &acc, err, sizeof(err)) < 0) {
        struct MHD_Response *resp = http_json_response(json_pack(
            "{s:{s:s, s:s}}", "error", "code", "bad_handshake", "message", err));
        if (resp && acc.status == 426)
            http_add_header(resp, "Sec-WebSocket-Version", "13");
        return http_reply(r, (unsigned)acc.status, resp);
    }
    if (s->state != SESSION_RUNNING)
        return http_reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "not_running",
                                "the desktop is %s; try again in a moment",
                                session_state_name(s->state));
    if (!sessions_viewer_open(r->web->sessions, s))
        return http_reply_error(r, MHD_HTTP_FORBIDDEN, "used",
                                "this one-shot link has been used");
    struct viewer_conn *c = calloc(1, sizeof(*c));
    struct MHD_Response *resp =
        c ? MHD_create_response_for_upgrade(on_upgraded, c) : NULL;
    if (!resp) {
        free(c);
        sessions_viewer_cancel(r->web->sessions, s);
        return MHD_NO;
    }
    c->fd = -1;
    c->web = r->web;
    c->session = s;
    c->view_only = view_only;
    r->job = c;
    r->job_free = on_request_done;
    http_add_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
    http_add_header(resp, "Sec-WebSocket-Accept", acc.accept);
    if (acc.protocol)
        http_add_header(resp, "Sec-WebSocket-Protocol", acc.protocol);
    return http_reply(r, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
}
