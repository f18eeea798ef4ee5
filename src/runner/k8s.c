#include "runner/k8s.h"

#include "util/fs.h"
#include "util/log.h"

#include <curl/curl.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>
#include <yaml.h>

#define SA_DIR       "/var/run/secrets/kubernetes.io/serviceaccount"
#define MAX_BODY     (16u << 20) /* a VMI list of a busy namespace fits */
#define MAX_LINE     (4u << 20)  /* one watch event */
#define CONNECT_S    10L
#define REQUEST_S    30L

struct k8s {
    char server[512];
    char ns[64];
    char ca_file[PATH_MAX];
    bool insecure;
    char cert_file[PATH_MAX];
    char key_file[PATH_MAX];
    char token[4096];          /* a literal token ... */
    char token_file[PATH_MAX]; /* ... or the file to read it from each time */
};

/* ---- YAML to JSON ------------------------------------------------------------ */

/* Turns the YAML node into JSON: mappings into objects, sequences into arrays,
 * scalars into strings (a kubeconfig holds nothing else that qdesk reads). */
static json_t *yaml_to_json(yaml_document_t *doc, yaml_node_t *n, int depth)
{
    if (!n || depth > 32)
        return NULL;
    if (n->type == YAML_SCALAR_NODE)
        return json_stringn((const char *)n->data.scalar.value, n->data.scalar.length);
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        for (yaml_node_item_t *i = n->data.sequence.items.start;
             i < n->data.sequence.items.top; i++)
            json_array_append_new(a, yaml_to_json(doc, yaml_document_get_node(doc, *i),
                                                  depth + 1) ?: json_null());
        return a;
    }
    json_t *o = json_object();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(doc, p->key);
        if (!key || key->type != YAML_SCALAR_NODE)
            continue;
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)key->data.scalar.length,
                 (const char *)key->data.scalar.value);
        json_object_set_new(
            o, name,
            yaml_to_json(doc, yaml_document_get_node(doc, p->value), depth + 1) ?: json_null());
    }
    return o;
}

/* Reads a YAML (or JSON) file into JSON. Returns NULL with err. */
static json_t *load_yaml(const char *path, char *err, size_t errsz)
{
    size_t len;
    char *text = fs_read_file(path, 1 << 20, &len);
    if (!text) {
        snprintf(err, errsz, "kubeconfig %s: %s", path, strerror(errno));
        return NULL;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    json_t *out = NULL;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errsz, "kubeconfig %s:%zu: %s", path, parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "not YAML");
    } else {
        out = yaml_to_json(&doc, yaml_document_get_root_node(&doc), 0);
        yaml_document_delete(&doc);
        if (!json_is_object(out)) {
            snprintf(err, errsz, "kubeconfig %s: not a kubeconfig (no mapping)", path);
            json_decref(out);
            out = NULL;
        }
    }
    yaml_parser_delete(&parser);
    free(text);
    return out;
}

/* ---- kubeconfig --------------------------------------------------------------- */

/* The entry called name in the list key ("clusters", "contexts", "users"): its
 * inner object (the "cluster", "context" or "user" field). */
static json_t *named(json_t *cfg, const char *list, const char *inner, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(cfg, list), i, e)
    {
        const char *n = json_string_value(json_object_get(e, "name"));
        if (n && !strcmp(n, name))
            return json_object_get(e, inner);
    }
    return NULL;
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && s[0] ? s : NULL;
}

/* A path from the kubeconfig: relative paths are relative to its directory. */
static void config_path(const char *kubeconfig, const char *p, char *out, size_t outsz)
{
    const char *slash = strrchr(kubeconfig, '/');
    if (p[0] == '/' || !slash)
        snprintf(out, outsz, "%s", p);
    else
        snprintf(out, outsz, "%.*s/%s", (int)(slash - kubeconfig), kubeconfig, p);
}

/* Decodes base64 data of field into DIR/file (0600) and names it in out. */
static int write_data(const char *dir, const char *file, const char *field,
                      const char *b64, char *out, size_t outsz, char *err, size_t errsz)
{
    size_t cap = strlen(b64), len = 0;
    unsigned char *bin = malloc(cap + 1);
    if (!bin || sodium_base642bin(bin, cap, b64, strlen(b64), " \n\r\t", &len, NULL,
                                  sodium_base64_VARIANT_ORIGINAL) < 0) {
        snprintf(err, errsz, "kubeconfig: %s is not base64", field);
        free(bin);
        return -1;
    }
    snprintf(out, outsz, "%s/%s", dir, file);
    int rc = fs_write_file(out, bin, len, 0600);
    sodium_memzero(bin, len);
    free(bin);
    if (rc < 0) {
        snprintf(err, errsz, "cannot write %s: %s", out, strerror(-rc));
        return -1;
    }
    return 0;
}

/* A file or its embedded -data twin, e.g. certificate-authority(-data). */
static int file_or_data(struct k8s *k, const struct k8s_opts *o, json_t *obj,
                        const char *key, const char *file, char *out, size_t outsz,
                        char *err, size_t errsz)
{
    char data_key[64];
    snprintf(data_key, sizeof(data_key), "%s-data", key);
    (void)k;
    if (str(obj, data_key))
        return write_data(o->private_dir, file, data_key, str(obj, data_key), out, outsz,
                          err, errsz);
    if (str(obj, key))
        config_path(o->kubeconfig, str(obj, key), out, outsz);
    return 0;
}

static int from_kubeconfig(struct k8s *k, const struct k8s_opts *o, char *err,
                           size_t errsz)
{
    json_t *cfg = load_yaml(o->kubeconfig, err, errsz);
    if (!cfg)
        return -1;
    int rc = -1;
    const char *ctx_name = o->context && o->context[0] ? o->context
                                                       : str(cfg, "current-context");
    json_t *ctx = ctx_name ? named(cfg, "contexts", "context", ctx_name) : NULL;
    json_t *cluster = ctx && str(ctx, "cluster")
                          ? named(cfg, "clusters", "cluster", str(ctx, "cluster"))
                          : NULL;
    json_t *user = ctx && str(ctx, "user") ? named(cfg, "users", "user", str(ctx, "user"))
                                           : NULL;
    if (!ctx_name)
        snprintf(err, errsz, "kubeconfig %s: no current-context; set [runner] context",
                 o->kubeconfig);
    else if (!ctx)
        snprintf(err, errsz, "kubeconfig %s: no context '%s'", o->kubeconfig, ctx_name);
    else if (!cluster || !str(cluster, "server"))
        snprintf(err, errsz, "kubeconfig %s: context '%s' names no cluster with a server",
                 o->kubeconfig, ctx_name);
    else if (user && (json_object_get(user, "exec") ||
                      json_object_get(user, "auth-provider")))
        snprintf(err, errsz,
                 "kubeconfig %s: user '%s' authenticates through a plugin (exec or "
                 "auth-provider), which qdesk does not run; give it a token, a token "
                 "file or a client certificate",
                 o->kubeconfig, str(ctx, "user"));
    else if (file_or_data(k, o, cluster, "certificate-authority", "ca.crt", k->ca_file,
                          sizeof(k->ca_file), err, errsz) == 0 &&
             file_or_data(k, o, user, "client-certificate", "client.crt", k->cert_file,
                          sizeof(k->cert_file), err, errsz) == 0 &&
             file_or_data(k, o, user, "client-key", "client.key", k->key_file,
                          sizeof(k->key_file), err, errsz) == 0) {
        snprintf(k->server, sizeof(k->server), "%s", str(cluster, "server"));
        const char *skip = str(cluster, "insecure-skip-tls-verify");
        k->insecure = skip && !strcmp(skip, "true");
        snprintf(k->ns, sizeof(k->ns), "%s", str(ctx, "namespace") ?: "default");
        if (str(user, "token"))
            snprintf(k->token, sizeof(k->token), "%s", str(user, "token"));
        else if (str(user, "tokenFile"))
            config_path(o->kubeconfig, str(user, "tokenFile"), k->token_file,
                        sizeof(k->token_file));
        if (!k->token[0] && !k->token_file[0] && !k->cert_file[0])
            snprintf(err, errsz,
                     "kubeconfig %s: user '%s' has no token, tokenFile or client "
                     "certificate",
                     o->kubeconfig, str(ctx, "user") ?: "");
        else if (k->cert_file[0] && !k->key_file[0])
            snprintf(err, errsz, "kubeconfig %s: a client certificate without its key",
                     o->kubeconfig);
        else
            rc = 0;
    }
    json_decref(cfg);
    return rc;
}

static int in_cluster(struct k8s *k, const struct k8s_opts *o, char *err, size_t errsz)
{
    const char *dir = o->sa_dir ? o->sa_dir : SA_DIR;
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !host[0]) {
        snprintf(err, errsz,
                 "no kubeconfig is set and qdesk is not in a pod "
                 "(KUBERNETES_SERVICE_HOST is unset): set [runner] kubeconfig");
        return -1;
    }
    snprintf(k->server, sizeof(k->server), strchr(host, ':') ? "https://[%s]:%s"
                                                             : "https://%s:%s",
             host, port && port[0] ? port : "443");
    snprintf(k->token_file, sizeof(k->token_file), "%s/token", dir);
    snprintf(k->ca_file, sizeof(k->ca_file), "%s/ca.crt", dir);
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/namespace", dir);
    if (fs_read_line(path, k->ns, sizeof(k->ns)) < 0)
        snprintf(k->ns, sizeof(k->ns), "default");
    if (!fs_exists(k->token_file)) {
        snprintf(err, errsz, "the service account token %s is missing", k->token_file);
        return -1;
    }
    return 0;
}

struct k8s *k8s_new(const struct k8s_opts *o, char *err, size_t errsz)
{
    struct k8s *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    int rc = o->kubeconfig && o->kubeconfig[0] ? from_kubeconfig(k, o, err, errsz)
                                               : in_cluster(k, o, err, errsz);
    if (rc == 0 && strncmp(k->server, "https://", 8) && strncmp(k->server, "http://", 7)) {
        snprintf(err, errsz, "the cluster's server '%s' is not an http(s) URL", k->server);
        rc = -1;
    }
    if (rc < 0) {
        k8s_free(k);
        return NULL;
    }
    size_t n = strlen(k->server);
    while (n > 0 && k->server[n - 1] == '/')
        k->server[--n] = 0;
    if (k->insecure)
        log_warn("kubernetes %s: insecure-skip-tls-verify: the server is not verified",
                 k->server);
    return k;
}

void k8s_free(struct k8s *k)
{
    if (k)
        sodium_memzero(k->token, sizeof(k->token));
    free(k);
}

const char *k8s_namespace(const struct k8s *k)
{
    return k->ns;
}

const char *k8s_server(const struct k8s *k)
{
    return k->server;
}

/* ---- HTTP ----------------------------------------------------------------------- */

/* The bearer token as a header line ("" when the client uses a certificate). */
static int auth_header(const struct k8s *k, char *out, size_t outsz, char *err,
                       size_t errsz)
{
    char token[4096];
    out[0] = 0;
    if (k->token_file[0]) {
        if (fs_read_line(k->token_file, token, sizeof(token)) < 0) {
            snprintf(err, errsz, "cannot read the token file %s", k->token_file);
            return -1;
        }
    } else {
        snprintf(token, sizeof(token), "%s", k->token);
    }
    if (token[0])
        snprintf(out, outsz, "Authorization: Bearer %s", token);
    sodium_memzero(token, sizeof(token));
    return 0;
}

/* A curl handle for k with TLS and credentials set; headers gets the auth line. */
static CURL *handle(const struct k8s *k, const char *path, struct curl_slist **headers,
                    char *err, size_t errsz)
{
    char url[2048], auth[4200];
    if (auth_header(k, auth, sizeof(auth), err, errsz) < 0)
        return NULL;
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, errsz, "libcurl cannot start");
        return NULL;
    }
    snprintf(url, sizeof(url), "%s%s", k->server, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_S);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (k->ca_file[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, k->ca_file);
    if (k->insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (k->cert_file[0]) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, k->cert_file);
        curl_easy_setopt(c, CURLOPT_SSLKEY, k->key_file);
    }
    *headers = curl_slist_append(NULL, "Accept: application/json");
    if (auth[0])
        *headers = curl_slist_append(*headers, auth);
    sodium_memzero(auth, sizeof(auth));
    return c;
}

struct buffer {
    char *data;
    size_t len, max;
    bool overflow;
};

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    struct buffer *b = arg;
    size_t add = size * n;
    if (b->len + add > b->max) {
        b->overflow = true;
        return 0;
    }
    char *grown = realloc(b->data, b->len + add + 1);
    if (!grown)
        return 0;
    b->data = grown;
    memcpy(b->data + b->len, p, add);
    b->len += add;
    b->data[b->len] = 0;
    return add;
}

int k8s_request(struct k8s *k, const char *method, const char *path, const json_t *body,
                const char *content_type, struct k8s_response *r, char *err,
                size_t errsz)
{
    memset(r, 0, sizeof(*r));
    struct curl_slist *headers = NULL;
    CURL *c = handle(k, path, &headers, err, errsz);
    if (!c)
        return -1;
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    char ctype[128];
    if (text) {
        snprintf(ctype, sizeof(ctype), "Content-Type: %s",
                 content_type ? content_type : "application/json");
        headers = curl_slist_append(headers, ctype);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    }
    struct buffer b = {.max = MAX_BODY};
    char why[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, REQUEST_S);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, why);
    CURLcode rc = curl_easy_perform(c);
    int ret = 0;
    if (rc != CURLE_OK) {
        snprintf(err, errsz, "%s %s%s: %s", method, k->server, path,
                 b.overflow ? "the answer is larger than 16 MiB"
                 : why[0]   ? why
                            : curl_easy_strerror(rc));
        free(b.data);
        ret = -1;
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        r->raw = b.data ? b.data : strdup("");
        r->len = b.len;
        r->body = b.len ? json_loadb(b.data, b.len, 0, NULL) : NULL;
    }
    free(text);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return ret;
}

void k8s_response_free(struct k8s_response *r)
{
    if (!r)
        return;
    json_decref(r->body);
    free(r->raw);
    memset(r, 0, sizeof(*r));
}

void k8s_error(const struct k8s_response *r, char *out, size_t outsz)
{
    const char *msg = json_string_value(json_object_get(r->body, "message"));
    const char *reason = json_string_value(json_object_get(r->body, "reason"));
    if (msg && msg[0])
        snprintf(out, outsz, "%s (HTTP %ld%s%s)", msg, r->status, reason ? " " : "",
                 reason ? reason : "");
    else
        snprintf(out, outsz, "the cluster answered HTTP %ld", r->status);
}

/* ---- watch -------------------------------------------------------------------- */

struct watch {
    k8s_event_cb cb;
    void *arg;
    const volatile bool *cancel;
    struct buffer line;
    bool stopped; /* cb said stop, or cancel */
};

static size_t watch_data(char *p, size_t size, size_t n, void *arg)
{
    struct watch *w = arg;
    size_t total = size * n;
    for (size_t i = 0; i < total; i++) {
        if (p[i] != '\n') {
            if (collect(p + i, 1, 1, &w->line) != 1)
                return 0; /* a line over MAX_LINE: stop */
            continue;
        }
        if (!w->line.len)
            continue;
        json_t *ev = json_loadb(w->line.data, w->line.len, 0, NULL);
        w->line.len = 0;
        const char *type = json_string_value(json_object_get(ev, "type"));
        int stop = type ? w->cb(type, json_object_get(ev, "object"), w->arg) : 0;
        json_decref(ev);
        if (stop) {
            w->stopped = true;
            return 0;
        }
    }
    return total;
}

static int watch_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c,
                          curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    struct watch *w = arg;
    if (*w->cancel) {
        w->stopped = true;
        return 1;
    }
    return 0;
}

int k8s_watch(struct k8s *k, const char *path, k8s_event_cb cb, void *arg,
              const volatile bool *cancel, long *status, char *err, size_t errsz)
{
    *status = 0;
    struct curl_slist *headers = NULL;
    CURL *c = handle(k, path, &headers, err, errsz);
    if (!c)
        return -1;
    struct watch w = {.cb = cb, .arg = arg, .cancel = cancel, .line = {.max = MAX_LINE}};
    char why[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, watch_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &w);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, watch_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &w);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, why);
    /* a watch that goes silent for 2 minutes is dead (the server sends bookmarks) */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 120L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    int ret = 0;
    if (w.stopped)
        ret = 1;
    else if (rc != CURLE_OK) {
        snprintf(err, errsz, "watch %s%s: %s", k->server, path,
                 rc == CURLE_HTTP_RETURNED_ERROR ? "refused"
                 : why[0]                        ? why
                                                 : curl_easy_strerror(rc));
        ret = -1;
    }
    free(w.line.data);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return ret;
}

/* ---- WebSocket ------------------------------------------------------------------ */

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct k8s_ws {
    CURL *c;
    curl_socket_t sock;
    char pending[4096]; /* bytes read past the 101 response: the first frames */
    size_t n_pending, pending_off;
    int fd; /* the bridge's stream, while bridging */
    bool fd_eof, closed;
    char why[256];
};

/* Sends all of buf on a connect-only handle, waiting for room. */
static int send_all(struct k8s_ws *ws, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        size_t sent = 0;
        CURLcode rc = curl_easy_send(ws->c, p, len, &sent);
        if (rc == CURLE_AGAIN) {
            struct pollfd pf = {ws->sock, POLLOUT, 0};
            poll(&pf, 1, 1000);
            continue;
        }
        if (rc != CURLE_OK)
            return -1;
        p += sent;
        len -= sent;
    }
    return 0;
}

struct k8s_ws *k8s_ws_open(struct k8s *k, const char *path, const char *protocol,
                           char *err, size_t errsz)
{
    struct curl_slist *headers = NULL;
    CURL *c = handle(k, path, &headers, err, errsz);
    if (!c)
        return NULL;
    struct k8s_ws *ws = calloc(1, sizeof(*ws));
    char why[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, why);
    CURLcode rc = ws ? curl_easy_perform(c) : CURLE_OUT_OF_MEMORY;
    if (rc != CURLE_OK) {
        snprintf(err, errsz, "%s%s: %s", k->server, path, why[0] ? why : curl_easy_strerror(rc));
        curl_slist_free_all(headers);
        curl_easy_cleanup(c);
        free(ws);
        return NULL;
    }
    ws->c = c;
    ws->fd = -1;
    curl_easy_getinfo(c, CURLINFO_ACTIVESOCKET, &ws->sock);

    unsigned char raw[16];
    char key[32], expect[64], host[512] = "";
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(key, sizeof(key), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
    char concat[96];
    unsigned char digest[20];
    snprintf(concat, sizeof(concat), "%s%s", key, WS_GUID);
    gnutls_hash_fast(GNUTLS_DIG_SHA1, concat, strlen(concat), digest);
    sodium_bin2base64(expect, sizeof(expect), digest, sizeof(digest),
                      sodium_base64_VARIANT_ORIGINAL);
    const char *h = strstr(k->server, "://") + 3;
    snprintf(host, sizeof(host), "%.*s", (int)strcspn(h, "/"), h);

    /* the request line and headers; the auth header comes from handle() */
    size_t cap = 8192, len = 0;
    char *req = malloc(cap);
    len += (size_t)snprintf(req, cap,
                            "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n",
                            path, host, key, protocol);
    for (struct curl_slist *s = headers; s && len < cap; s = s->next)
        len += (size_t)snprintf(req + len, cap - len, "%s\r\n", s->data);
    if (len < cap)
        len += (size_t)snprintf(req + len, cap - len, "\r\n");
    int sent = len < cap ? send_all(ws, req, len) : -1;
    sodium_memzero(req, cap);
    free(req);
    curl_slist_free_all(headers);

    /* the response head, then what followed it */
    char head[16384];
    size_t n = 0;
    char *end = NULL;
    for (int tries = 0; sent == 0 && !end && n < sizeof(head) - 1 && tries < 200;) {
        size_t got = 0;
        rc = curl_easy_recv(c, head + n, sizeof(head) - 1 - n, &got);
        if (rc == CURLE_AGAIN) {
            struct pollfd pf = {ws->sock, POLLIN, 0};
            tries += poll(&pf, 1, 100) == 0;
            continue;
        }
        if (rc != CURLE_OK || got == 0)
            break;
        n += got;
        head[n] = 0;
        end = strstr(head, "\r\n\r\n");
    }
    int status = 0;
    if (end)
        sscanf(head, "HTTP/1.%*d %d", &status);
    char want_accept[96];
    snprintf(want_accept, sizeof(want_accept), "sec-websocket-accept: %s", expect);
    bool accepted = false;
    for (char *l = head; end && l < end; l = strstr(l, "\r\n") + 2)
        accepted |= strncasecmp(l, want_accept, strlen(want_accept)) == 0;
    if (status == 101 && accepted) {
        size_t rest = n - (size_t)(end + 4 - head);
        if (rest > sizeof(ws->pending))
            rest = sizeof(ws->pending);
        memcpy(ws->pending, end + 4, rest);
        ws->n_pending = rest;
        return ws;
    }
    if (!end)
        snprintf(err, errsz, "%s%s: no WebSocket answer", k->server, path);
    else if (status == 101)
        snprintf(err, errsz, "%s%s: the WebSocket answer has a wrong Sec-WebSocket-Accept",
                 k->server, path);
    else {
        /* the refusal's body is a Status; what arrived of it is enough */
        struct k8s_response r = {.status = status};
        r.body = json_loads(end + 4, 0, NULL);
        char what[400];
        k8s_error(&r, what, sizeof(what));
        snprintf(err, errsz, "%s: %s", path, what);
        json_decref(r.body);
    }
    k8s_ws_close(ws);
    return NULL;
}

void k8s_ws_close(struct k8s_ws *ws)
{
    if (!ws)
        return;
    curl_easy_cleanup(ws->c);
    free(ws);
}

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *arg)
{
    (void)flags;
    struct k8s_ws *ws = arg;
    if (ws->pending_off < ws->n_pending) {
        size_t n = ws->n_pending - ws->pending_off;
        n = n < len ? n : len;
        memcpy(buf, ws->pending + ws->pending_off, n);
        ws->pending_off += n;
        return (ssize_t)n;
    }
    size_t got = 0;
    CURLcode rc = curl_easy_recv(ws->c, buf, len, &got);
    if (rc == CURLE_AGAIN) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (rc != CURLE_OK || got == 0) {
        snprintf(ws->why, sizeof(ws->why), "the cluster closed the connection");
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)got;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                       int flags, void *arg)
{
    (void)flags;
    struct k8s_ws *ws = arg;
    size_t sent = 0;
    CURLcode rc = curl_easy_send(ws->c, data, len, &sent);
    if (rc == CURLE_AGAIN) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (rc != CURLE_OK) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)sent;
}

static int ws_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *arg)
{
    (void)ctx;
    (void)arg;
    randombytes_buf(buf, len);
    return 0;
}

/* A message from the cluster: binary (and text) payloads go to fd as they are. */
static void ws_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *m,
                   void *arg)
{
    (void)ctx;
    struct k8s_ws *ws = arg;
    if (m->opcode == WSLAY_CONNECTION_CLOSE) {
        ws->closed = true;
        return;
    }
    if (m->opcode != WSLAY_BINARY_FRAME && m->opcode != WSLAY_TEXT_FRAME)
        return;
    if (fs_write_all(ws->fd, m->msg, m->msg_length) < 0) {
        snprintf(ws->why, sizeof(ws->why), "the display's reader went away");
        ws->fd_eof = true;
    }
}

int k8s_ws_bridge(struct k8s_ws *ws, int fd, const volatile bool *cancel, char *err,
                  size_t errsz)
{
    struct wslay_event_callbacks cbs = {.recv_callback = ws_recv,
                                        .send_callback = ws_send,
                                        .genmask_callback = ws_genmask,
                                        .on_msg_recv_callback = ws_msg};
    wslay_event_context_ptr ctx;
    if (wslay_event_context_client_init(&ctx, &cbs, ws) != 0) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    wslay_event_config_set_max_recv_msg_length(ctx, 64u << 20);
    ws->fd = fd;
    ws->why[0] = 0;
    int ret = 0;
    /* first frames may have come with the 101 */
    if (ws->n_pending && wslay_event_recv(ctx) != 0)
        ret = -1;
    while (ret == 0 && !*cancel && !ws->closed && !ws->fd_eof) {
        struct pollfd pf[2] = {
            {ws->sock, (short)(POLLIN | (wslay_event_want_write(ctx) ? POLLOUT : 0)), 0},
            {fd, wslay_event_get_queued_msg_count(ctx) < 8 ? POLLIN : 0, 0}};
        if (poll(pf, 2, 200) < 0 && errno != EINTR) {
            ret = -1;
            break;
        }
        if ((pf[0].revents & (POLLIN | POLLHUP | POLLERR)) && wslay_event_recv(ctx) != 0)
            ret = -1;
        if (ret == 0 && (pf[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            uint8_t buf[65536];
            ssize_t r = read(fd, buf, sizeof(buf));
            if (r > 0) {
                struct wslay_event_msg msg = {WSLAY_BINARY_FRAME, buf, (size_t)r};
                wslay_event_queue_msg(ctx, &msg);
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                ws->fd_eof = true;
            }
        }
        if (ret == 0 && wslay_event_want_write(ctx) && wslay_event_send(ctx) != 0)
            ret = -1;
    }
    if (ws->fd_eof || *cancel) { /* say goodbye: the reader left, or the VM stops */
        wslay_event_queue_close(ctx, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0);
        for (int i = 0; i < 10 && wslay_event_want_write(ctx); i++)
            if (wslay_event_send(ctx) != 0)
                break;
        ret = 0;
    }
    if (ret < 0)
        snprintf(err, errsz, "%s", ws->why[0] ? ws->why : "the WebSocket failed");
    wslay_event_context_free(ctx);
    ws->fd = -1;
    return ret;
}
