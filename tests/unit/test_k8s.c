/* The kubeconfig as k3s and kubectl write it: the current context or a named one,
 * embedded or relative certificate files, tokens and token files, and clear
 * refusals of what qdesk cannot use (plugins, a missing server, bad base64). */
#include "runner/k8s.h"

#include "util/fs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/qd-k8s-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    fs_remove_tree(dir);
    return 0;
}

/* Writes text as DIR/name; returns its path (static). */
static const char *file(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(fs_write_file(path, text, strlen(text), 0600), 0);
    return path;
}

static struct k8s *open_config(const char *text, const char *context, char *err,
                               size_t errsz)
{
    struct k8s_opts o = {.kubeconfig = file("config", text), .context = context,
                         .private_dir = dir};
    return k8s_new(&o, err, errsz);
}

#define CLUSTERS                                                                         \
    "clusters:\n"                                                                        \
    "- name: lab\n  cluster:\n    server: https://10.0.0.1:6443/\n"                      \
    "    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==\n"         \
    "- name: edge\n  cluster:\n    server: https://edge.example.org\n"                   \
    "    certificate-authority: certs/edge-ca.crt\n"

static void current_context_embedded_ca_and_token(void **state)
{
    (void)state;
    char err[512];
    struct k8s *k = open_config(
        "apiVersion: v1\nkind: Config\n" CLUSTERS
        "contexts:\n- name: lab\n  context: {cluster: lab, user: qdesk, namespace: vdi}\n"
        "- name: edge\n  context:\n    cluster: edge\n    user: edge\n"
        "current-context: lab\nusers:\n- name: qdesk\n  user:\n    token: abc.def\n"
        "- name: edge\n  user:\n    tokenFile: edge.token\n",
        NULL, err, sizeof(err));
    assert_non_null(k);
    assert_string_equal(k8s_server(k), "https://10.0.0.1:6443"); /* no trailing '/' */
    assert_string_equal(k8s_namespace(k), "vdi");
    char path[128];
    snprintf(path, sizeof(path), "%s/ca.crt", dir);
    char *ca = fs_read_file(path, 4096, NULL);
    assert_non_null(ca);
    assert_string_equal(ca, "-----BEGIN CERTIFICATE-----\n"); /* decoded, written 0600 */
    free(ca);
    k8s_free(k);
}

static void named_context_relative_files(void **state)
{
    (void)state;
    char err[512];
    struct k8s *k = open_config(
        CLUSTERS "contexts:\n- name: edge\n  context:\n    cluster: edge\n    user: edge\n"
                 "current-context: lab\nusers:\n- name: edge\n  user:\n"
                 "    tokenFile: edge.token\n",
        "edge", err, sizeof(err));
    assert_non_null(k);
    assert_string_equal(k8s_server(k), "https://edge.example.org");
    assert_string_equal(k8s_namespace(k), "default"); /* the context names none */
    k8s_free(k);
}

static void refusals_name_what_is_wrong(void **state)
{
    (void)state;
    char err[512];
    assert_null(open_config(CLUSTERS "contexts: []\n", NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no current-context"));
    assert_null(open_config(CLUSTERS "current-context: gone\n", NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no context 'gone'"));
    assert_null(open_config("contexts:\n- name: x\n  context: {cluster: nowhere, user: u}\n"
                            "current-context: x\n",
                            NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "names no cluster with a server"));
    assert_null(open_config(CLUSTERS "contexts:\n- name: x\n  context: {cluster: lab, user: "
                                     "gke}\ncurrent-context: x\nusers:\n- name: gke\n  "
                                     "user:\n    exec:\n      command: gke-gcloud-auth\n",
                            NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "through a plugin (exec or auth-provider)"));
    assert_null(open_config(CLUSTERS "contexts:\n- name: x\n  context: {cluster: lab, user: "
                                     "u}\ncurrent-context: x\nusers:\n- name: u\n  user: "
                                     "{}\n",
                            NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no token, tokenFile or client certificate"));
    assert_null(open_config(CLUSTERS "contexts:\n- name: x\n  context: {cluster: lab, user: "
                                     "u}\ncurrent-context: x\nusers:\n- name: u\n  user:\n"
                                     "    client-certificate-data: '!!!'\n",
                            NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "client-certificate-data is not base64"));
    assert_null(open_config("clusters: [\n", NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "config:"));
    assert_null(open_config(
        "clusters:\n- name: c\n  cluster: {server: 'ftp://x'}\ncontexts:\n- name: x\n  "
        "context: {cluster: c, user: u}\ncurrent-context: x\nusers:\n- name: u\n  user: "
        "{token: t}\n",
        NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "is not an http(s) URL"));
}

static void in_cluster_needs_the_pod_environment(void **state)
{
    (void)state;
    char err[512];
    unsetenv("KUBERNETES_SERVICE_HOST");
    struct k8s_opts o = {.private_dir = dir, .sa_dir = dir};
    assert_null(k8s_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "not in a pod"));
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_null(k8s_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "token"));
    file("token", "t0ken\n");
    file("namespace", "vdi");
    struct k8s *k = k8s_new(&o, err, sizeof(err));
    assert_non_null(k);
    assert_string_equal(k8s_server(k), "https://[fd00::1]:443");
    assert_string_equal(k8s_namespace(k), "vdi");
    k8s_free(k);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

static void errors_read_the_status(void **state)
{
    (void)state;
    char out[256];
    struct k8s_response r = {.status = 422};
    r.body = json_pack("{s:s, s:s, s:s, s:i}", "kind", "Status", "message",
                       "spec.domain.cpu.cores: Invalid value", "reason", "Invalid", "code",
                       422);
    k8s_error(&r, out, sizeof(out));
    assert_string_equal(out, "spec.domain.cpu.cores: Invalid value (HTTP 422 Invalid)");
    json_decref(r.body);
    r.body = NULL;
    r.status = 502;
    k8s_error(&r, out, sizeof(out));
    assert_string_equal(out, "the cluster answered HTTP 502");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(current_context_embedded_ca_and_token, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(named_context_relative_files, setup, teardown),
        cmocka_unit_test_setup_teardown(refusals_name_what_is_wrong, setup, teardown),
        cmocka_unit_test_setup_teardown(in_cluster_needs_the_pod_environment, setup,
                                        teardown),
        cmocka_unit_test(errors_read_the_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
