/* http: the service's HTTP front, on libmicrohttpd driven by the event loop.
 *
 * One router serves the public listener (HTTP or HTTPS) and the local control
 * socket that `qdesk start/status/stop` use; on the control socket the caller is
 * identified by its unix credentials instead of a login. Before a handler runs,
 * the router has: matched the route (path segments marked '*' land in args[]),
 * read the body (bounded), identified the user, and checked that state-changing
 * requests carry the CSRF header. Every handler queues exactly one response with
 * one of the http_reply_*() functions, now or after http_suspend(). */
#ifndef QDESK_WEB_HTTP_H
#define QDESK_WEB_HTTP_H

#include "config.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct store;
struct sessions;
struct wsproxy;
struct workq;
struct http;

/* What handlers reach: the service's parts. */
struct web {
    const struct config *cfg;
    struct loop *loop;
    struct store *store;
    struct sessions *sessions;
    struct wsproxy *proxy;
    struct workq *work;
    struct http *http;
    struct auth *auth;
    struct viewer_conn *viewers; /* upgraded display connections (viewer.c) */
    uint64_t started_ms;
    bool stopping; /* the service is shutting down: viewers leaving end nothing */
};

struct identity {
    bool known; /* logged in, or no login needed */
    bool admin;
    bool via_control; /* the local control socket */
    char user[64];
    char csrf[64];  /* the login's CSRF token ("" without a login) */
    char login[65]; /* the login's token hash */
};

struct http_request {
    struct web *web;
    struct MHD_Connection *con;
    const char *method;
    const char *version; /* "HTTP/1.1" */
    char path[1024];
    const char *args[3]; /* the '*' segments of the route */
    char argbuf[1024];
    char *body;
    size_t body_len;
    bool body_too_large;
    struct identity who;
    char client[64]; /* the client's address */
    bool loopback;   /* ... which is on this host */
    bool tls;
    bool control; /* arrived on the control socket */

    /* a suspended request's response, queued when it resumes */
    bool suspended;
    struct MHD_Response *pending;
    unsigned pending_status;
    void *job; /* owned by the handler that suspended */
    void (*job_free)(void *job);
};

/* Starts the listener (cfg->listen, with TLS when cfg->tls_cert/key are set) and
 * the control socket. Returns NULL with err. */
struct http *http_new(struct web *web, char *err, size_t errsz);
void http_free(struct http *h);

/* Queues a JSON response; takes the reference to body. */
enum MHD_Result http_reply_json(struct http_request *r, unsigned status, json_t *body);
/* Queues {"error":{"code":...,"message":...}}. */
enum MHD_Result http_reply_error(struct http_request *r, unsigned status,
                                 const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Queues a response of the given type from a buffer (copied). */
enum MHD_Result http_reply_data(struct http_request *r, unsigned status, const char *type,
                                const void *data, size_t len);
/* Queues a file from disk (streamed), or 404. */
enum MHD_Result http_reply_file(struct http_request *r, const char *path,
                                const char *type);
/* Queues a prepared response (adds the common security headers). */
enum MHD_Result http_reply(struct http_request *r, unsigned status,
                           struct MHD_Response *resp);

/* Returns a response holding body as JSON (the reference is taken), or NULL. */
struct MHD_Response *http_json_response(json_t *body);

/* Parks r until http_resume(); the handler returns the value http_suspend()
 * gives. */
enum MHD_Result http_suspend(struct http_request *r);
/* Resumes a parked request with its response. */
void http_resume(struct http_request *r, unsigned status, struct MHD_Response *resp);

/* The public base URL for links: cfg->base_url, or derived from the request. */
void http_base_url(struct http_request *r, char *out, size_t outsz);
/* Value of a request header or cookie, or NULL. */
const char *http_header(struct http_request *r, const char *name);
const char *http_cookie(struct http_request *r, const char *name);
/* Adds a header to a response before it is queued by http_reply(). */
void http_add_header(struct MHD_Response *resp, const char *name, const char *value);

#endif
