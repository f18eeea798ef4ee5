/* api: the JSON API v1 (see DESIGN.md), /metrics and /healthz. Handlers run after
 * the router has identified the user; a user sees and touches only their own
 * sessions (admins: all), and another user's session is reported as not found. */
#ifndef QDESK_WEB_API_H
#define QDESK_WEB_API_H

#include "web/http.h"

struct session;

enum MHD_Result api_healthz(struct http_request *r);
enum MHD_Result api_metrics(struct http_request *r);
enum MHD_Result api_machines(struct http_request *r);
enum MHD_Result api_host(struct http_request *r);
enum MHD_Result api_sessions_list(struct http_request *r);
enum MHD_Result api_session_create(struct http_request *r);
enum MHD_Result api_sessions_stop_all(struct http_request *r);
enum MHD_Result api_session_get(struct http_request *r);
enum MHD_Result api_session_stop(struct http_request *r);
enum MHD_Result api_session_extend(struct http_request *r);
enum MHD_Result api_session_serial(struct http_request *r);
enum MHD_Result api_session_screenshot(struct http_request *r);
enum MHD_Result api_session_usb_attach(struct http_request *r);
enum MHD_Result api_session_usb_detach(struct http_request *r);

/* The API's view of a session: {id, state, machine, owner, cpus, memory_mb,
 * created_at, expires_at, url, view_url, qr_svg_url, ...}. New reference. */
json_t *api_session_json(struct http_request *r, const struct session *s);

#endif
