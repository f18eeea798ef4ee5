/* The KubeVirt runner against the simulated API server (tests/cluster/apiserver.py),
 * which runs every VMI as a real QEMU of the demo guest: a session's VMI is
 * created and runs, its display carries the guest's RFB through the runner's
 * stream, the watch resumes after a dropped connection and relists after 410,
 * a stop deletes the VMI (and its QEMU, and its cloud-init Secret), a restarted
 * runner finds its VMIs by label and reattaches or sweeps them, an unschedulable
 * VMI's reason reaches the caller, the cluster's refusals come back as sentences,
 * and the three ways to hold credentials (token, client certificate, in-cluster
 * service account) each reach the server over verified TLS. Prints TAP. */
#include "catalog/catalog.h"
#include "config.h"
#include "runner/k8s.h"
#include "runner/kubevirt.h"
#include "runner/vmi.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOKEN "sim-token-0123456789"
#define NS    "desktops"

static char root[PATH_MAX], dir[PATH_MAX + 16], kubeconfig[PATH_MAX + 32];
static char server[64];
static pid_t sim_pid;
static struct loop *loop;
static int n_test, n_failed;

/* ---- TAP -------------------------------------------------------------------------- */

static bool failed_now;
static char why[2048];

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    if (failed_now)
        return;
    failed_now = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
}

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fail(__VA_ARGS__);                                                           \
            return;                                                                      \
        }                                                                                \
    } while (0)

static void run(const char *name, void (*fn)(void))
{
    failed_now = false;
    why[0] = 0;
    uint64_t t = proc_now_ms();
    fn();
    n_test++;
    if (failed_now) {
        n_failed++;
        printf("not ok %d - %s\n# %s\n", n_test, name, why);
    } else {
        printf("ok %d - %s (%.1fs)\n", n_test, name, (double)(proc_now_ms() - t) / 1000);
    }
    fflush(stdout);
}

/* ---- set-up ------------------------------------------------------------------------ */

static int sh(const char *const *args, char *err, size_t errsz)
{
    char exe[PATH_MAX];
    if (proc_find_exe(args[0], exe, sizeof(exe)) < 0) {
        snprintf(err, errsz, "%s is not installed", args[0]);
        return -1;
    }
    char *argv[32] = {exe};
    size_t n = 1;
    for (size_t i = 1; args[i] && n < 31; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    struct proc_spawn s = {.argv = argv, .stdout_fd = -1, .stderr_fd = -1, .cwd = dir};
    return proc_run(&s, 60000, NULL, 0, err, errsz) == 0 ? 0 : -1;
}

/* A CA, a server certificate for 127.0.0.1 and a client certificate, by openssl. */
static int make_certs(char *err, size_t errsz)
{
    char ext[PATH_MAX + 32];
    snprintf(ext, sizeof(ext), "%s/san.ext", dir);
    fs_write_file(ext, "subjectAltName=IP:127.0.0.1\n", 28, 0600);
    const char *ca[] = {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out",
                        "ca.crt", "-subj", "/CN=sim-cluster-ca", "-days", "2", NULL};
    const char *req[] = {"openssl", "req", "-newkey", "ec", "-pkeyopt",
                         "ec_paramgen_curve:P-256", "-nodes", "-keyout", "srv.key", "-out",
                         "srv.csr", "-subj", "/CN=127.0.0.1", NULL};
    const char *sign[] = {"openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.crt",
                          "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.crt",
                          "-days", "2", "-extfile", "san.ext", NULL};
    const char *creq[] = {"openssl", "req", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:P-256", "-nodes", "-keyout", "client.key",
                          "-out", "client.csr", "-subj", "/CN=qdesk/O=qdesk", NULL};
    const char *csign[] = {"openssl", "x509", "-req", "-in", "client.csr", "-CA",
                           "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
                           "client.crt", "-days", "2", NULL};
    return sh(ca, err, errsz) || sh(req, err, errsz) || sh(sign, err, errsz) ||
                   sh(creq, err, errsz) || sh(csign, err, errsz)
               ? -1
               : 0;
}

static char *b64_file(const char *name)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    size_t len;
    char *data = fs_read_file(path, 1 << 20, &len);
    if (!data)
        return NULL;
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(cap);
    sodium_bin2base64(out, cap, (unsigned char *)data, len, sodium_base64_VARIANT_ORIGINAL);
    free(data);
    return out;
}

/* A kubeconfig as k3s writes one (YAML), for the token or the client certificate. */
static void write_kubeconfig(const char *path, bool client_cert)
{
    char *ca = b64_file("ca.crt"), *crt = b64_file("client.crt"),
         *key = b64_file("client.key");
    char text[16384];
    int n = snprintf(text, sizeof(text),
                     "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: "
                     "%s\n    server: https://%s\n  name: sim\n"
                     "- cluster:\n    server: https://192.0.2.1:6443\n  name: other\n"
                     "contexts:\n- context:\n    cluster: other\n    user: nobody\n"
                     "  name: other\n- context:\n    cluster: sim\n    user: qdesk\n"
                     "    namespace: " NS "\n  name: sim\ncurrent-context: sim\n"
                     "kind: Config\npreferences: {}\nusers:\n- name: nobody\n  user:\n"
                     "    token: wrong\n- name: qdesk\n  user:\n",
                     ca, server);
    if (client_cert)
        n += snprintf(text + n, sizeof(text) - (size_t)n,
                      "    client-certificate-data: %s\n    client-key-data: %s\n", crt,
                      key);
    else
        n += snprintf(text + n, sizeof(text) - (size_t)n, "    token: " TOKEN "\n");
    fs_write_file(path, text, (size_t)n, 0600);
    free(ca);
    free(crt);
    free(key);
}

static int start_sim(char *err, size_t errsz)
{
    char py[PATH_MAX], script[PATH_MAX], machines[PATH_MAX], logpath[PATH_MAX + 32];
    snprintf(script, sizeof(script), "%s/tests/cluster/apiserver.py", root);
    snprintf(machines, sizeof(machines), "%s/machines", root);
    if (proc_find_exe("python3", py, sizeof(py)) < 0) {
        snprintf(err, errsz, "python3 is not installed");
        return -1;
    }
    char a_dir[PATH_MAX + 32], cert[PATH_MAX + 32], key[PATH_MAX + 32], ca[PATH_MAX + 32];
    snprintf(a_dir, sizeof(a_dir), "%s", dir);
    snprintf(cert, sizeof(cert), "%s/srv.crt", dir);
    snprintf(key, sizeof(key), "%s/srv.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    char *argv[] = {py, script, "--dir", a_dir, "--machines", machines, "--token", TOKEN,
                    "--cert", cert, "--key", key, "--client-ca", ca, "--quota-cpu", "8",
                    "--quota-memory", "16Gi", "--devices",
                    "{\"intel.com/sriov-gpu\": 0}", NULL};
    snprintf(logpath, sizeof(logpath), "%s/apiserver.log", dir);
    int logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    char *env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    struct proc_spawn s = {.argv = argv, .env = env, .stdout_fd = logfd,
                           .stderr_fd = logfd, .cwd = dir};
    sim_pid = proc_spawn(&s, err, errsz);
    close(logfd);
    if (sim_pid < 0)
        return -1;
    char ready[PATH_MAX + 16];
    snprintf(ready, sizeof(ready), "%s/ready", dir);
    for (int i = 0; i < 200 && !fs_exists(ready); i++)
        usleep(50000);
    json_t *j = json_load_file(ready, 0, NULL);
    if (!j) {
        snprintf(err, errsz, "the simulated API server did not start (see %s)", logpath);
        return -1;
    }
    snprintf(server, sizeof(server), "127.0.0.1:%d",
             (int)json_integer_value(json_object_get(j, "port")));
    json_decref(j);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------ */

static struct k8s *admin; /* the tests' own client, for /_sim/ and checks */

static json_t *sim(const char *method, const char *what, json_t *body)
{
    char path[128], err[512];
    snprintf(path, sizeof(path), "/_sim/%s", what);
    struct k8s_response r;
    if (k8s_request(admin, method, path, body, NULL, &r, err, sizeof(err)) < 0)
        return NULL;
    json_t *out = json_incref(r.body);
    k8s_response_free(&r);
    return out;
}

static long get_status(const char *path)
{
    struct k8s_response r;
    char err[512];
    if (k8s_request(admin, "GET", path, NULL, NULL, &r, err, sizeof(err)) < 0)
        return -1;
    long s = r.status;
    k8s_response_free(&r);
    return s;
}

/* Runs the loop until done() or timeout_ms passes. */
static bool until(bool (*done)(void *), void *arg, int timeout_ms)
{
    uint64_t end = proc_now_ms() + (uint64_t)timeout_ms;
    while (!done(arg) && proc_now_ms() < end)
        loop_run_once(loop, 100);
    return done(arg);
}

/* One session's VM as the tests hold it. */
struct vm {
    char id[24];
    struct runner_vm *rv;
    struct catalog_machine m;
    struct vm_spec spec;
    int states[16];
    char msgs[16][512];
    size_t n;
    int display_fd;
    char display_err[512];
    bool display_done;
};

static void on_state(struct runner_vm *rv, enum runner_state st, const char *msg,
                     void *arg)
{
    (void)rv;
    struct vm *v = arg;
    if (v->n < 16) {
        v->states[v->n] = (int)st;
        snprintf(v->msgs[v->n], sizeof(v->msgs[0]), "%s", msg);
        v->n++;
    }
}

static int last_state(const struct vm *v)
{
    return v->n ? v->states[v->n - 1] : -1;
}

struct wait_for {
    struct vm *v;
    int state;
};

static bool reached(void *arg)
{
    struct wait_for *w = arg;
    return last_state(w->v) == w->state;
}

static bool wait_state(struct vm *v, int state, int timeout_ms)
{
    struct wait_for w = {v, state};
    return until(reached, &w, timeout_ms);
}

static void fill_vm(struct vm *v, const char *id, const char *gpu)
{
    memset(v, 0, sizeof(*v));
    v->display_fd = -1;
    snprintf(v->id, sizeof(v->id), "%s", id);
    snprintf(v->m.name, sizeof(v->m.name), "demo-disk");
    snprintf(v->m.kubevirt_disk, sizeof(v->m.kubevirt_disk),
             "containerdisk:registry.example.org/qdesk/demo:1");
    struct vm_spec *s = &v->spec;
    snprintf(s->name, sizeof(s->name), "%s", id);
    snprintf(s->arch, sizeof(s->arch), "x86_64");
    snprintf(s->machine_type, sizeof(s->machine_type), "q35");
    snprintf(s->disk_bus, sizeof(s->disk_bus), "virtio");
    snprintf(s->mac, sizeof(s->mac), "52:54:00:12:34:56");
    s->cpus = s->sockets = s->cores = s->threads = 1;
    s->memory_mb = 256;
    s->net = SPEC_NET_USER;
    s->n_chain = 1;
    s->gpu = gpu ? (enum spec_gpu)spec_gpu_parse(gpu) : SPEC_GPU_NONE;
}

static struct runner *runner;

/* plan + prepare + start, as the session layer will (prepare inline here). */
static int launch(struct vm *v, const char *user_data, bool secret, char *err,
                  size_t errsz)
{
    struct runner_launch l = {.session_id = v->id, .owner = "alice", .spec = &v->spec,
                              .machine = &v->m, .gpu_type = "", .user_data = user_data,
                              .seed_has_secret = secret};
    struct runner_events ev = {on_state, v};
    v->rv = runner->ops->plan(runner, &l, &ev, err, errsz);
    if (!v->rv)
        return -1;
    if (runner->ops->prepare(v->rv, err, errsz) < 0) {
        runner->ops->release(v->rv);
        v->rv = NULL;
        return -1;
    }
    return runner->ops->start(v->rv, err, errsz);
}

static struct runner *new_runner(const char *config_path, const char *extra_key,
                                 const char *extra_value, char *err, size_t errsz)
{
    static struct config cfg;
    config_defaults(&cfg);
    snprintf(cfg.state, sizeof(cfg.state), "%s/state", dir);
    fs_mkdir_p(cfg.state, 0700);
    cfg.stop_grace_s = 5;
    struct config_entry e[] = {{"kind", "kubevirt", 2},
                               {"kubeconfig", (char *)config_path, 3},
                               {"gpu.vf", "intel.com/sriov-gpu", 4},
                               {"schedule_timeout", "0s", 5},
                               {(char *)extra_key, (char *)extra_value, 6}};
    struct config_named sec = {.kind = "runner", .name = "kubevirt", .line = 2,
                               .entries = e, .n = extra_key ? 5 : 4};
    snprintf(sec.file, sizeof(sec.file), "qdesk.conf");
    return kubevirt_runner_new(&cfg, &sec, loop, err, errsz);
}

/* ---- the tests --------------------------------------------------------------------- */

static struct vm a, b, c;

static void create_runs(void)
{
    char err[1024];
    fill_vm(&a, "a000000000000001", NULL);
    CHECK(launch(&a, "#cloud-config\nhostname: desk\n", false, err, sizeof(err)) == 0,
          "launch: %s", err);
    CHECK(wait_state(&a, RUNNER_RUNNING, 60000), "never running; states seen: %zu, last %d %s",
          a.n, last_state(&a), a.n ? a.msgs[a.n - 1] : "");
    CHECK(a.states[0] == RUNNER_STARTING, "the first state is %d, not starting", a.states[0]);
    struct runner_placement p;
    runner->ops->placement(a.rv, &p);
    CHECK(!strcmp(p.node, "sim-node-1"), "placed on '%s'", p.node);
    CHECK(!strncmp(p.ref, NS "/qdesk-a000000000000001 ", strlen(NS) + 24),
          "placement ref '%s'", p.ref);
    CHECK(get_status("/apis/kubevirt.io/v1/namespaces/" NS
                     "/virtualmachineinstances/qdesk-a000000000000001") == 200,
          "the VMI is not on the cluster");
}

static void on_display(struct runner_vm *rv, int fd, const char *err, void *arg)
{
    (void)rv;
    struct vm *v = arg;
    v->display_fd = fd;
    snprintf(v->display_err, sizeof(v->display_err), "%s", err ? err : "");
    v->display_done = true;
}

static bool display_done(void *arg)
{
    return ((struct vm *)arg)->display_done;
}

/* Reads exactly n bytes within timeout_ms. */
static bool read_n(int fd, void *buf, size_t n, int timeout_ms)
{
    size_t got = 0;
    uint64_t end = proc_now_ms() + (uint64_t)timeout_ms;
    while (got < n && proc_now_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return got == n;
}

static int open_display(struct vm *v, char *err, size_t errsz)
{
    v->display_done = false;
    v->display_fd = -1;
    if (runner->ops->open_display(v->rv, on_display, v, err, errsz) < 0)
        return -1;
    until(display_done, v, 20000);
    if (v->display_fd < 0)
        snprintf(err, errsz, "%s", v->display_err[0] ? v->display_err : "timed out");
    return v->display_fd;
}

static void vnc_flows(void)
{
    char err[512];
    int fd = open_display(&a, err, sizeof(err));
    CHECK(fd >= 0, "open_display: %s", err);
    char version[13] = "";
    CHECK(read_n(fd, version, 12, 10000), "no RFB greeting from the guest's QEMU");
    CHECK(!strncmp(version, "RFB 003.008\n", 12), "the greeting is '%.12s'", version);
    CHECK(write(fd, "RFB 003.008\n", 12) == 12, "cannot answer");
    unsigned char n, types[16];
    CHECK(read_n(fd, &n, 1, 10000) && n > 0 && read_n(fd, types, n, 10000),
          "no security types: the client's bytes did not reach QEMU");
    bool none = false;
    for (unsigned i = 0; i < n; i++)
        none |= types[i] == 1;
    CHECK(none, "QEMU offers no None security");
    unsigned char one = 1, result[4];
    CHECK(write(fd, &one, 1) == 1 && read_n(fd, result, 4, 10000) &&
              !memcmp(result, "\0\0\0\0", 4),
          "security handshake failed");
    unsigned char shared = 1, init[24];
    CHECK(write(fd, &shared, 1) == 1 && read_n(fd, init, 24, 10000),
          "no ServerInit from the guest");
    unsigned w = (unsigned)init[0] << 8 | init[1], h = (unsigned)init[2] << 8 | init[3];
    CHECK(w >= 640 && h >= 400, "a %ux%u framebuffer", w, h);
    close(fd);
}

static void second_viewer_closes_first(void)
{
    char err[512];
    int first = open_display(&a, err, sizeof(err));
    CHECK(first >= 0, "first: %s", err);
    char version[12];
    CHECK(read_n(first, version, 12, 10000), "no greeting on the first");
    int second = open_display(&a, err, sizeof(err));
    CHECK(second >= 0, "second: %s", err);
    CHECK(read_n(second, version, 12, 10000), "no greeting on the second");
    /* the first stream ends: KubeVirt keeps one VNC connection per VMI */
    char byte;
    struct pollfd p = {first, POLLIN, 0};
    bool ended = poll(&p, 1, 10000) == 1 && read(first, &byte, 1) <= 0;
    close(first);
    close(second);
    CHECK(ended, "the first viewer's stream still runs beside the second");
}

static void screenshot_taken_cb(struct runner_vm *rv, void *png, size_t len,
                                const char *err, void *arg)
{
    (void)rv;
    int *out = arg;
    *out = png && len > 8 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8) ? 1 : -1;
    if (err)
        fprintf(stderr, "screenshot: %s\n", err);
    free(png);
}

static bool nonzero(void *arg)
{
    return *(int *)arg != 0;
}

static void screenshot(void)
{
    int got = 0;
    char err[512];
    CHECK(runner->ops->screenshot(a.rv, screenshot_taken_cb, &got, err, sizeof(err)) == 0,
          "screenshot: %s", err);
    CHECK(until(nonzero, &got, 20000) && got == 1, "no PNG from vnc/screenshot");
}

static int json_int(json_t *o, const char *key)
{
    return (int)json_integer_value(json_object_get(o, key));
}

static void watch_resumes(void)
{
    json_t *before = sim("GET", "state", NULL);
    int lists = json_int(before, "lists");
    size_t watches = json_array_size(json_object_get(before, "watch_rvs"));
    json_decref(sim("POST", "drop-watches", NULL));
    /* a change while the watch is down must still arrive */
    char err[512];
    fill_vm(&b, "b000000000000002", NULL);
    CHECK(launch(&b, NULL, false, err, sizeof(err)) == 0, "launch: %s", err);
    CHECK(wait_state(&b, RUNNER_RUNNING, 60000), "b never running (last %d: %s)",
          last_state(&b), b.n ? b.msgs[b.n - 1] : "");
    json_t *after = sim("GET", "state", NULL);
    json_t *rvs = json_object_get(after, "watch_rvs");
    CHECK(json_array_size(rvs) > watches, "the watch was not made again");
    const char *rv = json_string_value(json_array_get(rvs, watches));
    CHECK(rv && rv[0] && strcmp(rv, "0"), "the new watch did not resume from a resourceVersion");
    CHECK(json_int(after, "lists") == lists, "it listed again (%d -> %d) instead of resuming",
          lists, json_int(after, "lists"));
    json_decref(before);
    json_decref(after);
}

static void watch_relists_after_410(void)
{
    json_t *before = sim("GET", "state", NULL);
    int lists = json_int(before, "lists");
    json_decref(sim("POST", "compact", NULL));
    json_decref(sim("POST", "drop-watches", NULL));
    char err[512];
    fill_vm(&c, "c000000000000003", NULL);
    CHECK(launch(&c, NULL, false, err, sizeof(err)) == 0, "launch: %s", err);
    CHECK(wait_state(&c, RUNNER_RUNNING, 60000), "c never running after the 410 (last %d)",
          last_state(&c));
    json_t *after = sim("GET", "state", NULL);
    CHECK(json_int(after, "lists") > lists, "no list after the resourceVersion expired");
    json_decref(before);
    json_decref(after);
}

static bool pid_gone(void *arg)
{
    return kill(*(int *)arg, 0) < 0 && errno == ESRCH;
}

static void stop_deletes(void)
{
    json_t *st = sim("GET", "state", NULL);
    int pid = json_int(json_object_get(st, "pids"), NS "/qdesk-b000000000000002");
    json_decref(st);
    CHECK(pid > 0, "the simulation runs no QEMU for b");
    runner->ops->stop(b.rv, 5, false);
    CHECK(wait_state(&b, RUNNER_STOPPED, 30000), "b never stopped (last %d: %s)",
          last_state(&b), b.n ? b.msgs[b.n - 1] : "");
    CHECK(until(pid_gone, &pid, 10000), "b's QEMU (pid %d) still runs", pid);
    CHECK(get_status("/apis/kubevirt.io/v1/namespaces/" NS
                     "/virtualmachineinstances/qdesk-b000000000000002") == 404,
          "the VMI is still there");
    runner->ops->release(b.rv);
    b.rv = NULL;
}

static void secret_for_password(void)
{
    char err[512];
    struct vm d;
    fill_vm(&d, "d000000000000004", NULL);
    CHECK(launch(&d, "#cloud-config\npassword: s3cret\n", true, err, sizeof(err)) == 0,
          "launch: %s", err);
    json_t *st = sim("GET", "state", NULL);
    json_t *secret = json_object_get(json_object_get(st, "secrets"),
                                     NS "/qdesk-d000000000000004");
    json_t *owner = json_array_get(
        json_object_get(json_object_get(secret, "metadata"), "ownerReferences"), 0);
    const char *kind = json_string_value(json_object_get(owner, "kind"));
    bool owned = kind && !strcmp(kind, "VirtualMachineInstance");
    bool has_data = json_object_get(json_object_get(secret, "data"), "userdata") != NULL;
    bool found = secret != NULL;
    json_decref(st);
    CHECK(found, "no Secret holds the password");
    CHECK(has_data, "the Secret has no userdata key");
    CHECK(owned, "the Secret is not owned by the VMI");
    CHECK(wait_state(&d, RUNNER_RUNNING, 60000), "d never running");
    runner->ops->stop(d.rv, 0, true);
    CHECK(wait_state(&d, RUNNER_STOPPED, 30000), "d never stopped");
    runner->ops->release(d.rv);
    CHECK(get_status("/api/v1/namespaces/" NS "/secrets/qdesk-d000000000000004") == 404,
          "the Secret outlived its VMI");
}

static void unschedulable(void)
{
    char err[512];
    struct vm g;
    fill_vm(&g, "e000000000000005", "vf");
    CHECK(launch(&g, NULL, false, err, sizeof(err)) == 0, "launch: %s", err);
    CHECK(wait_state(&g, RUNNER_FAILED, 30000), "never failed (last %d: %s)",
          last_state(&g), g.n ? g.msgs[g.n - 1] : "");
    CHECK(strstr(g.msgs[g.n - 1], "Insufficient intel.com/sriov-gpu"),
          "the reason is '%s'", g.msgs[g.n - 1]);
    CHECK(strstr(g.msgs[g.n - 1], "cannot place"), "the reason is '%s'", g.msgs[g.n - 1]);
    runner->ops->release(g.rv);
    json_t *st = sim("GET", "state", NULL);
    bool left = false;
    size_t i;
    json_t *n;
    for (int tries = 0; tries < 50; tries++) {
        json_decref(st);
        loop_run_once(loop, 100);
        st = sim("GET", "state", NULL);
        left = false;
        json_array_foreach(json_object_get(st, "vmis"), i, n) left |=
            !strcmp(json_string_value(n), NS "/qdesk-e000000000000005");
        if (!left)
            break;
    }
    json_decref(st);
    CHECK(!left, "the unschedulable VMI was left on the cluster");
}

static void refusal_reaches_caller(void)
{
    char err[1024], path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/bad-token.yaml", dir);
    write_kubeconfig(path, false);
    char *text = fs_read_file(path, 1 << 20, NULL);
    char *t = strstr(text, TOKEN);
    memcpy(t, "not-the-right-token!", 20);
    fs_write_file(path, text, strlen(text), 0600);
    free(text);
    struct runner *bad = new_runner(path, NULL, NULL, err, sizeof(err));
    CHECK(bad, "runner: %s", err);
    struct runner *saved = runner;
    runner = bad;
    struct vm v;
    fill_vm(&v, "f000000000000006", NULL);
    int rc = launch(&v, NULL, false, err, sizeof(err));
    runner = saved;
    bad->ops->free(bad);
    CHECK(rc < 0, "a bad token created a VMI");
    CHECK(strstr(err, "Unauthorized") && strstr(err, "401"), "the error is '%s'", err);
}

static bool live_c_only(const char *id, void *arg)
{
    (void)arg;
    return !strcmp(id, "c000000000000003");
}

static bool a_gone(void *arg)
{
    (void)arg;
    return get_status("/apis/kubevirt.io/v1/namespaces/" NS
                      "/virtualmachineinstances/qdesk-a000000000000001") == 404;
}

static void restart_reattach_and_sweep(void)
{
    char err[1024];
    struct runner_placement pc;
    runner->ops->placement(c.rv, &pc);
    runner->ops->free(runner); /* the service stops: its VMIs keep running */
    runner = new_runner(kubeconfig, NULL, NULL, err, sizeof(err));
    CHECK(runner, "runner: %s", err);
    struct vm again;
    memset(&again, 0, sizeof(again));
    struct runner_events ev = {on_state, &again};
    again.rv = runner->ops->reattach(runner, &pc, &ev, err, sizeof(err));
    CHECK(again.rv, "reattach: %s", err);
    CHECK(wait_state(&again, RUNNER_RUNNING, 20000), "c is not running after the restart");
    /* a is not live any more: the sweep removes its VMI */
    runner->ops->sweep(runner, live_c_only, NULL);
    CHECK(until(a_gone, NULL, 40000), "a's VMI, which no session owns, was not swept");
    struct runner_placement pa = pc;
    snprintf(pa.ref, sizeof(pa.ref), NS "/qdesk-a000000000000001 %s", "-");
    struct vm dead;
    memset(&dead, 0, sizeof(dead));
    struct runner_events ev2 = {on_state, &dead};
    dead.rv = runner->ops->reattach(runner, &pa, &ev2, err, sizeof(err));
    CHECK(dead.rv, "reattach: %s", err);
    CHECK(wait_state(&dead, RUNNER_FAILED, 20000), "a gone VMI was not reported failed");
    runner->ops->release(dead.rv);
    runner->ops->stop(again.rv, 0, true);
    CHECK(wait_state(&again, RUNNER_STOPPED, 30000), "c never stopped");
    runner->ops->release(again.rv);
    c.rv = NULL;
    a.rv = NULL;
}

static void quota_capacity(void)
{
    struct runner_capacity cap;
    char err[256];
    runner->ops->capacity(runner, &cap, err, sizeof(err));
    CHECK(cap.known, "the namespace's quota was not read");
    CHECK(cap.memory_free_mb == 16384, "%llu MiB free, want 16384",
          (unsigned long long)cap.memory_free_mb);
    CHECK(cap.cpus_free <= 8, "%u vCPUs free of 8", cap.cpus_free);
}

static void client_certificate(void)
{
    char err[512], path[PATH_MAX + 32], priv[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/cert.yaml", dir);
    snprintf(priv, sizeof(priv), "%s/certs", dir);
    fs_mkdir_p(priv, 0700);
    write_kubeconfig(path, true);
    struct k8s_opts o = {.kubeconfig = path, .private_dir = priv};
    struct k8s *k = k8s_new(&o, err, sizeof(err));
    CHECK(k, "k8s_new: %s", err);
    struct k8s_response r;
    int rc = k8s_request(k, "GET", "/apis/kubevirt.io/v1/namespaces/" NS
                                   "/virtualmachineinstances", NULL, NULL, &r, err,
                         sizeof(err));
    long status = rc == 0 ? r.status : -1;
    if (rc == 0)
        k8s_response_free(&r);
    CHECK(!strcmp(k8s_namespace(k), NS), "namespace '%s'", k8s_namespace(k));
    k8s_free(k);
    CHECK(status == 200, "a client certificate gave %ld (%s)", status, err);
}

static void in_cluster_account(void)
{
    char err[512], sa[PATH_MAX + 32], f[PATH_MAX + 64], ca[PATH_MAX + 32];
    snprintf(sa, sizeof(sa), "%s/serviceaccount", dir);
    fs_mkdir_p(sa, 0700);
    snprintf(f, sizeof(f), "%s/token", sa);
    fs_write_file(f, TOKEN "\n", strlen(TOKEN) + 1, 0600);
    snprintf(f, sizeof(f), "%s/namespace", sa);
    fs_write_file(f, NS, strlen(NS), 0600);
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    snprintf(f, sizeof(f), "%s/ca.crt", sa);
    fs_copy_file(ca, f, 0600);
    setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", strchr(server, ':') + 1, 1);
    struct k8s_opts o = {.sa_dir = sa, .private_dir = sa};
    struct k8s *k = k8s_new(&o, err, sizeof(err));
    unsetenv("KUBERNETES_SERVICE_HOST");
    CHECK(k, "k8s_new: %s", err);
    long status;
    struct k8s_response r;
    int rc = k8s_request(k, "GET", "/api/v1/namespaces/" NS "/resourcequotas", NULL, NULL,
                         &r, err, sizeof(err));
    status = rc == 0 ? r.status : -1;
    if (rc == 0)
        k8s_response_free(&r);
    bool ns_ok = !strcmp(k8s_namespace(k), NS);
    k8s_free(k);
    CHECK(ns_ok, "the service account's namespace was not read");
    CHECK(status == 200, "the service account's token gave %ld (%s)", status, err);
}

int main(void)
{
    /* The tests build on each other: with a filter (tests/run -k) they run all or
     * none, as the filter names one of them or not. */
    const char *filter = getenv("QDESK_TEST_FILTER");
    const char *names = "kubevirt-runner create display screenshot watch stop cloud-init "
                        "unschedulable refusal capacity restart credentials";
    if (filter && filter[0] && !strstr(names, filter)) {
        printf("1..0\n");
        return 0;
    }
    log_set_level(getenv("QDESK_TEST_VERBOSE") ? LOG_DEBUG : LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    const char *r = getenv("QDESK_ROOT");
    snprintf(root, sizeof(root), "%s", r ? r : ".");
    char tmp[] = "/tmp/qd-kv-XXXXXX";
    if (!mkdtemp(tmp) || sodium_init() < 0)
        return 2;
    snprintf(dir, sizeof(dir), "%s", tmp);
    char err[1024];
    printf("1..14\n");
    if (make_certs(err, sizeof(err)) < 0 || start_sim(err, sizeof(err)) < 0) {
        printf("not ok 1 - set-up: %s\n", err);
        n_failed++;
        goto out;
    }
    snprintf(kubeconfig, sizeof(kubeconfig), "%s/k3s.yaml", dir);
    write_kubeconfig(kubeconfig, false);
    loop = loop_new();
    char priv[PATH_MAX + 32];
    snprintf(priv, sizeof(priv), "%s/admin", dir);
    fs_mkdir_p(priv, 0700);
    struct k8s_opts o = {.kubeconfig = kubeconfig, .private_dir = priv};
    admin = k8s_new(&o, err, sizeof(err));
    runner = admin ? new_runner(kubeconfig, NULL, NULL, err, sizeof(err)) : NULL;
    if (!runner) {
        printf("not ok 1 - set-up: %s\n", err);
        n_failed++;
        goto out;
    }
    run("create: the VMI is scheduled and runs, placed on its node", create_runs);
    run("display: the guest's RFB handshake flows both ways through the stream", vnc_flows);
    run("display: a second VNC connection ends the first, as KubeVirt does",
        second_viewer_closes_first);
    run("screenshot: vnc/screenshot gives a PNG", screenshot);
    run("watch: a dropped watch resumes from its resourceVersion", watch_resumes);
    run("watch: an expired resourceVersion (410) makes it list again",
        watch_relists_after_410);
    run("stop: the VMI and its QEMU are deleted, the session is stopped", stop_deletes);
    run("cloud-init: a seed with a password is a Secret owned by the VMI", secret_for_password);
    run("unschedulable: no free GPU fails the session with the scheduler's reason",
        unschedulable);
    run("refusal: the cluster's Status message reaches the caller", refusal_reaches_caller);
    run("capacity: the namespace's ResourceQuota", quota_capacity);
    run("restart: found again by label, reattached; an orphan is swept",
        restart_reattach_and_sweep);
    run("credentials: a client certificate from the kubeconfig", client_certificate);
    run("credentials: the in-cluster service account", in_cluster_account);
out:
    if (runner)
        runner->ops->free(runner);
    k8s_free(admin);
    loop_free(loop);
    if (sim_pid > 0) {
        kill(sim_pid, SIGTERM);
        waitpid(sim_pid, NULL, 0);
    }
    if (!n_failed && !getenv("QDESK_KEEP"))
        fs_remove_tree(dir);
    else
        fprintf(stderr, "kept %s\n", dir);
    return n_failed ? 1 : 0;
}
