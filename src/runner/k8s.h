/* k8s: the small Kubernetes API client the KubeVirt runner needs — libcurl for
 * HTTP and TLS, jansson for JSON, libyaml for the kubeconfig, wslay for the
 * WebSocket of a VMI's VNC subresource. Blocking calls, safe to use from several
 * threads at once (each call has its own curl handle); the runner calls them from
 * its worker and watch threads, never from the loop.
 *
 * Credentials come from a kubeconfig (clusters/contexts/users: server,
 * certificate-authority[-data], insecure-skip-tls-verify, token, tokenFile,
 * client-certificate[-data], client-key[-data]; the context's namespace), or, with
 * no kubeconfig, from the pod's service account: KUBERNETES_SERVICE_HOST/_PORT and
 * /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}. A token
 * file is read again for every request (projected tokens rotate). exec and
 * auth-provider plugins are refused with a clear error.
 * See kubernetes.io/docs/concepts/configuration/organize-cluster-access-kubeconfig/
 * and .../reference/access-authn-authz/service-accounts-admin/.
 *
 * Errors: the API answers a failure with a Status object (kind Status, message,
 * reason, code; community/contributors/devel/sig-architecture/api-conventions.md,
 * "Response Status Kind"); k8s_error() turns a response into one sentence. */
#ifndef QDESK_RUNNER_K8S_H
#define QDESK_RUNNER_K8S_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct k8s;

/* Where the client finds its credentials. */
struct k8s_opts {
    const char *kubeconfig; /* a file; NULL or "": the in-cluster service account */
    const char *context;    /* NULL or "": current-context */
    const char *sa_dir;     /* the service account's files (NULL: the standard path) */
    const char *private_dir; /* where embedded certificates and keys are written for
                                libcurl (mode 0700, files 0600); must exist */
};

/* Returns a client, or NULL with err naming the file, context or field. */
struct k8s *k8s_new(const struct k8s_opts *o, char *err, size_t errsz);
void k8s_free(struct k8s *k);

/* The namespace the kubeconfig's context or the service account names ("default"
 * when neither does), and the server's URL. */
const char *k8s_namespace(const struct k8s *k);
const char *k8s_server(const struct k8s *k);

struct k8s_response {
    long status;  /* HTTP status */
    json_t *body; /* parsed JSON body, or NULL (not JSON, or empty) */
    char *raw;    /* the body's bytes (NUL-terminated) */
    size_t len;
};
void k8s_response_free(struct k8s_response *r);

/* One request: method and path (with its query), body (borrowed) sent as
 * content_type (NULL: application/json). Returns 0 when the server answered (any
 * status: see r->status), or -1 with err when it could not be reached. */
int k8s_request(struct k8s *k, const char *method, const char *path, const json_t *body,
                const char *content_type, struct k8s_response *r, char *err,
                size_t errsz);

/* Writes the failure r reports as one sentence: the Status message when there is
 * one, else the HTTP status. */
void k8s_error(const struct k8s_response *r, char *out, size_t outsz);

/* Called for each watch event ("ADDED", "MODIFIED", "DELETED", "BOOKMARK",
 * "ERROR") with its object (borrowed). Returns 0 to go on, non-zero to stop. */
typedef int (*k8s_event_cb)(const char *type, json_t *object, void *arg);

/* Streams a watch (path must hold ?watch=true...): newline-delimited JSON events
 * as they come, until the server ends the stream (returns 0), *cancel becomes true
 * or cb stops it (returns 1), or it fails (-1 with err; *status gets the HTTP
 * status when the server refused the watch, e.g. 410 for a resourceVersion too
 * old). */
int k8s_watch(struct k8s *k, const char *path, k8s_event_cb cb, void *arg,
              const volatile bool *cancel, long *status, char *err, size_t errsz);

/* A WebSocket to path (a subresource such as .../vnc), with subprotocol protocol
 * ("plain.kubevirt.io"), made over a connect-only libcurl handle so TLS and the
 * credentials are the client's. */
struct k8s_ws;
/* Returns the connection, or NULL with err (the Status message of a refusal, such
 * as "VMI is not running"). */
struct k8s_ws *k8s_ws_open(struct k8s *k, const char *path, const char *protocol,
                           char *err, size_t errsz);
/* Carries bytes between the WebSocket (binary messages) and fd (a stream socket)
 * until either side ends or *cancel becomes true (checked at least every 200 ms).
 * Closes nothing. Returns 0 when it ended cleanly, -1 with err otherwise. */
int k8s_ws_bridge(struct k8s_ws *ws, int fd, const volatile bool *cancel, char *err,
                  size_t errsz);
void k8s_ws_close(struct k8s_ws *ws);

#endif
