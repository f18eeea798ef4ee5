/* viewer: what a link opens. /s/TOKEN is the viewer page, /s/TOKEN/info its
 * status, /s/TOKEN/qr.svg the link as a QR code, /ws/TOKEN the WebSocket that the
 * display proxy (wsproxy.c) carries to the session's VNC socket. A token is the
 * only credential these routes need: the control token gives input, the view
 * token only the picture. */
#ifndef QDESK_WEB_VIEWER_H
#define QDESK_WEB_VIEWER_H

#include "web/http.h"

struct viewer_counters {
    uint64_t bytes_to_browser;
    uint64_t bytes_to_vm;
};

/* Hooks the viewers to the sessions: a session that stops closes its viewers. */
void viewer_init(struct web *web);
void viewer_proxy_counters(struct web *web, struct viewer_counters *out);

enum MHD_Result viewer_page(struct http_request *r);
enum MHD_Result viewer_info(struct http_request *r);
enum MHD_Result viewer_qr(struct http_request *r);
enum MHD_Result viewer_websocket(struct http_request *r);

#endif
