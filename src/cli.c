#include "cli.h"

#include "catalog/catalog.h"
#include "net/usernet.h"
#include "qemu/cmdline.h"
#include "qemu/spec.h"
#include "qemu/vm.h"
#include "session/alloc.h"
#include "session/store.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/units.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The catalogue, the host and the resolved VM of a foreground command. */
struct cli_vm {
    struct catalog *catalog;
    struct spec_host host;
    struct spec_request req;
    struct vm_spec spec;
    char qemu_img[PATH_MAX];
};

static void cli_vm_free(struct cli_vm *v)
{
    catalog_free(v->catalog);
    v->catalog = NULL;
}

static struct catalog *load_catalog(const struct config *cfg, char *qemu_img, size_t size)
{
    char err[1024];
    if (cfg->qemu_img[0])
        snprintf(qemu_img, size, "%s", cfg->qemu_img);
    if ((cfg->qemu_img[0] && access(qemu_img, X_OK) < 0) ||
        (!cfg->qemu_img[0] && proc_find_exe("qemu-img", qemu_img, size) < 0)) {
        fprintf(stderr,
                "qdesk: qemu-img%s%s is not installed (Debian package qemu-utils)\n",
                cfg->qemu_img[0] ? " at " : "", cfg->qemu_img);
        return NULL;
    }
    struct catalog *c = catalog_load(cfg->machines, qemu_img, err, sizeof(err));
    if (!c)
        fprintf(stderr, "qdesk: %s\n", err);
    return c;
}

static void format_size(uint64_t bytes, char *out, size_t outsz)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, outsz, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

int cli_machines(const struct config *cfg, int argc, char **argv)
{
    bool json = argc == 2 && !strcmp(argv[1], "--json");
    if (argc > 2 || (argc == 2 && !json)) {
        fprintf(stderr, "usage: qdesk machines [--json]\n");
        return 2;
    }
    char qemu_img[PATH_MAX];
    struct catalog *c = load_catalog(cfg, qemu_img, sizeof(qemu_img));
    if (!c)
        return 1;
    if (json) {
        json_t *list = json_array();
        for (size_t i = 0; i < c->n; i++)
            json_array_append_new(list, catalog_machine_json(&c->machines[i]));
        json_dumpf(list, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(list);
    } else {
        printf("%-20s %-6s %-6s %10s  %-8s %s\n", "NAME", "FORMAT", "MEDIA", "SIZE",
               "ARCH", "DESCRIPTION");
        for (size_t i = 0; i < c->n; i++) {
            const struct catalog_machine *m = &c->machines[i];
            static const char *const media[] = {"disk", "cdrom", "kernel"};
            char size[32];
            if (m->refused[0])
                continue;
            format_size(m->virtual_size, size, sizeof(size));
            printf("%-20s %-6s %-6s %10s  %-8s %s\n", m->name,
                   m->n_chain ? m->chain[0].format : "-", media[m->media],
                   m->n_chain ? size : "-", m->arch, m->description);
        }
        for (size_t i = 0; i < c->n; i++)
            if (c->machines[i].refused[0])
                fprintf(stderr, "refused: %s: %s\n", c->machines[i].name,
                        c->machines[i].refused);
    }
    catalog_free(c);
    return 0;
}

/* Parses MACHINE [OPTS] into v->req. Returns 0, or 2 after printing the error. */
static int parse_opts(struct cli_vm *v, int argc, char **argv, bool *json)
{
    static const struct option opts[] = {
        {"cpus", required_argument, NULL, 0},
        {"memory", required_argument, NULL, 0},
        {"lifetime", required_argument, NULL, 0},
        {"disk", required_argument, NULL, 0},
        {"gpu", required_argument, NULL, 0},
        {"usb", required_argument, NULL, 0},
        {"net", required_argument, NULL, 0},
        {"mount", required_argument, NULL, 0},
        {"script", required_argument, NULL, 0},
        {"oneshot", no_argument, NULL, 0},
        {"persistent", no_argument, NULL, 0},
        {"json", no_argument, NULL, 0},
        {NULL, 0, NULL, 0},
    };
    char err[1024];
    int index;
    v->req.source = SPEC_FROM_CLI;
    optind = 1;
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, "", opts, &index);
        if (c == -1)
            break;
        if (c != 0) {
            fprintf(stderr, "qdesk %s: unknown or incomplete option '%s'\n", argv[0],
                    argv[optind - 1]);
            return 2;
        }
        const char *name = opts[index].name;
        if (!strcmp(name, "oneshot"))
            v->req.oneshot = true;
        else if (!strcmp(name, "persistent"))
            v->req.persistent = true;
        else if (!strcmp(name, "json") && json)
            *json = true;
        else if (!strcmp(name, "json") ||
                 spec_request_set(&v->req, name, optarg, err, sizeof(err)) < 0) {
            fprintf(stderr, "qdesk %s: %s\n", argv[0],
                    strcmp(name, "json") ? err : "--json is not an option here");
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: qdesk %s MACHINE [OPTS]\n", argv[0]);
        return 2;
    }
    if (spec_request_set(&v->req, "machine", argv[optind], err, sizeof(err)) < 0) {
        fprintf(stderr, "qdesk %s: %s\n", argv[0], err);
        return 2;
    }
    return 0;
}

/* Loads everything a foreground VM needs and resolves it as name in rundir.
 * Returns 0, or an exit status after printing the error. */
static int resolve(const struct config *cfg, struct cli_vm *v, const char *name,
                   const char *rundir, bool plan_devices)
{
    char err[1024];
    struct spec_limits lim;
    v->catalog = load_catalog(cfg, v->qemu_img, sizeof(v->qemu_img));
    if (!v->catalog)
        return 1;
    const struct catalog_machine *m =
        catalog_lookup(v->catalog, v->req.machine, err, sizeof(err));
    if (!m) {
        fprintf(stderr, "qdesk: %s\n", err);
        return 1;
    }
    if (spec_host_probe(cfg, &v->host, err, sizeof(err)) < 0) {
        fprintf(stderr, "qdesk: %s\n", err);
        return 1;
    }
    spec_limits_from_config(cfg, &lim);
    if (spec_resolve(&v->req, m, &v->host, &lim, name, rundir, &v->spec, err,
                     sizeof(err)) < 0 ||
        (plan_devices && alloc_plan(cfg, &v->req, &v->spec, err, sizeof(err)) < 0)) {
        fprintf(stderr, "qdesk: %s\n", err);
        return 1;
    }
    char warning[600];
    spec_warnings(&v->spec, warning, sizeof(warning));
    if (warning[0])
        fprintf(stderr, "qdesk: warning: %s\n", warning);
    return 0;
}

int cli_args(const struct config *cfg, int argc, char **argv)
{
    struct cli_vm v = {0};
    char rundir[PATH_MAX + 64];
    int rc = parse_opts(&v, argc, argv, NULL);
    if (rc)
        return rc;
    snprintf(rundir, sizeof(rundir), "%s/run/%s", cfg->state, v.req.machine);
    rc = resolve(cfg, &v, v.req.machine, rundir, true);
    if (rc == 0) {
        struct argv a;
        argv_init(&a);
        if (qemu_build_cmdline(&a, &v.spec) < 0) {
            fprintf(stderr, "qdesk: %s\n", a.err);
            rc = 1;
        } else {
            char *text = argv_format(&a), *net = NULL;
            /* the helper qdesk starts first, as a shell comment */
            if (v.spec.net == SPEC_NET_USER && (net = usernet_format(&v.spec.usernet)))
                printf("# network helper: %s\n", net);
            fputs(text ? text : "", stdout);
            free(net);
            free(text);
        }
        argv_free(&a);
    }
    cli_vm_free(&v);
    return rc;
}

/* The signals that stop a foreground VM: Ctrl-C, Ctrl-\, kill, and the terminal
 * going away. */
static void stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGQUIT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
}

/* Copies what the guest wrote to its serial console since *offset to standard
 * output. Returns 0, or -1 when standard output takes no more (its reader went
 * away). */
static int copy_serial(const char *path, off_t *offset)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[65536];
    ssize_t r;
    int rc = 0;
    while (rc == 0 && (r = pread(fd, buf, sizeof(buf), *offset)) > 0) {
        rc = fs_write_all(STDOUT_FILENO, buf, (size_t)r);
        *offset += r;
    }
    close(fd);
    return rc < 0 ? -1 : 0;
}

/* A stop in the foreground: the VM, how long its guest has to power off, and the
 * phase the user was last told about. */
struct run_stop {
    struct vm *vm;
    uint64_t grace_s;
    enum vm_stop_phase said;
};

/* Tells the user, once per phase, what the stop does now and why: why is what
 * asked for it, or NULL when the previous phase ran out of time. */
static void say_phase(struct run_stop *st, const char *why)
{
    static const char *const action[] = {
        [VM_STOP_POWERDOWN] = "pressing the guest's power button",
        [VM_STOP_QUIT] = "quitting QEMU",
        [VM_STOP_KILL] = "killing QEMU (SIGKILL)",
    };
    enum vm_stop_phase now = st->vm->stop_phase;
    if (now == st->said)
        return;
    char grace[32], quit[32];
    units_format_duration(st->grace_s, grace, sizeof(grace));
    units_format_duration(VM_QUIT_TIMEOUT_MS / 1000, quit, sizeof(quit));
    if (why)
        fprintf(stderr, "qdesk: %s (%s): %s",
                st->said == VM_STOP_NONE ? "stopping the VM" : "forcing the stop", why,
                action[now]);
    else if (st->said == VM_STOP_POWERDOWN)
        fprintf(stderr, "qdesk: the guest did not power off within %s; %s", grace,
                action[now]);
    else
        fprintf(stderr, "qdesk: QEMU did not quit within %s; %s", quit, action[now]);
    if (now == VM_STOP_POWERDOWN)
        fprintf(stderr, " (it has %s to power off; Ctrl-C again forces the stop)", grace);
    fputc('\n', stderr);
    st->said = now;
}

/* Starts the stop, or hurries it on a phase, because of why. */
static void stop_step(struct run_stop *st, const char *why)
{
    vm_stop_escalate(st->vm, (int)st->grace_s * 1000);
    say_phase(st, why);
}

/* Runs the started VM until it exits. Stops it on a stop signal, when its lifetime
 * ends, or when nobody reads its console any more (standard output closed); tells
 * the user each phase of the stop. Returns the exit status for qdesk run. */
static int supervise(struct vm *vm, const struct config *cfg, uint64_t lifetime_s)
{
    char serial[PATH_MAX + 32], why[64];
    snprintf(serial, sizeof(serial), "%s/%s", vm->rundir, RUNDIR_SERIAL);
    sigset_t mask;
    stop_signals(&mask);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    int ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (ifd >= 0 && inotify_add_watch(ifd, serial, IN_MODIFY) < 0) {
        close(ifd);
        ifd = -1;
    }
    int pidfd = proc_pidfd(vm->pid);
    uint64_t expires = proc_now_ms() + lifetime_s * 1000;
    off_t offset = 0;
    bool out_open = true; /* somebody reads the console on standard output */
    struct run_stop st = {vm, cfg->stop_grace_s, VM_STOP_NONE};

    while (vm_alive(vm)) {
        uint64_t now = proc_now_ms();
        int timeout = ifd < 0 ? 100 : 60000; /* without inotify, poll the serial log */
        if (vm->stop_phase == VM_STOP_NONE) {
            if (now >= expires) {
                char life[32];
                units_format_duration(lifetime_s, life, sizeof(life));
                snprintf(why, sizeof(why), "its lifetime of %s ended", life);
                stop_step(&st, why);
                continue;
            }
            if (expires - now < (uint64_t)timeout)
                timeout = (int)(expires - now);
        } else {
            int stop_wait = vm_stop_tick(vm);
            say_phase(&st, NULL);
            if (stop_wait >= 0 && stop_wait < timeout)
                timeout = stop_wait;
        }
        /* Standard output is watched for its reader going away (POLLERR on a pipe,
         * POLLHUP on a terminal), not for room to write. */
        struct pollfd p[5] = {{sfd, POLLIN, 0},
                              {ifd, POLLIN, 0},
                              {pidfd, POLLIN, 0},
                              {vm->qmp ? qmp_fd(vm->qmp) : -1, POLLIN, 0},
                              {out_open ? STDOUT_FILENO : -1, 0, 0}};
        if (poll(p, 5, timeout) < 0 && errno != EINTR)
            break;
        if (p[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                snprintf(why, sizeof(why), "SIG%s", sigabbrev_np((int)si.ssi_signo));
                stop_step(&st, why);
            }
        }
        if (p[1].revents & POLLIN) {
            char ev[4096];
            while (read(ifd, ev, sizeof(ev)) > 0)
                ;
        }
        if (out_open &&
            ((p[4].revents & (POLLERR | POLLHUP)) || copy_serial(serial, &offset) < 0)) {
            out_open = false;
            if (vm->stop_phase == VM_STOP_NONE)
                stop_step(&st, "nobody reads its console: standard output was closed");
        }
        if (vm->qmp && (p[3].revents & (POLLIN | POLLHUP))) {
            if (qmp_read(vm->qmp) < 0) {
                qmp_close(vm->qmp);
                vm->qmp = NULL;
            }
            json_t *ev;
            while (vm->qmp && (ev = qmp_next_event(vm->qmp))) {
                const char *name = json_string_value(json_object_get(ev, "event"));
                if (name && !strcmp(name, "SHUTDOWN"))
                    fprintf(stderr, "qdesk: the guest shut down\n");
                json_decref(ev);
            }
        }
    }
    if (out_open)
        copy_serial(serial, &offset);
    if (sfd >= 0)
        close(sfd);
    if (ifd >= 0)
        close(ifd);
    if (pidfd >= 0)
        close(pidfd);
    int status = vm->exit_status;
    if (vm->stop_phase == VM_STOP_NONE && WIFSIGNALED(status)) {
        fprintf(stderr, "qdesk: QEMU was killed by signal %d\n", WTERMSIG(status));
        return 1;
    }
    if (vm->stop_phase == VM_STOP_NONE && WIFEXITED(status) && WEXITSTATUS(status)) {
        char line[512];
        vm_last_log_line(vm->rundir, line, sizeof(line));
        fprintf(stderr, "qdesk: QEMU failed: %s\n", line[0] ? line : "see qemu.log");
        return 1;
    }
    fprintf(stderr, "qdesk: the VM has stopped\n");
    return 0;
}

/* Returns true when the VM takes something from the host that the allocator hands
 * out (a GPU, USB devices, hugepages, pinned CPUs) or checks (a bridge). */
static bool takes_from_host(const struct spec_request *req, const struct vm_spec *spec)
{
    return req->gpu != SPEC_GPU_NONE || req->n_usb || spec->hugepages_kb ||
           spec->pin_cpus || req->net == SPEC_NET_BRIDGE;
}

int cli_run(const struct config *cfg, int argc, char **argv)
{
    struct cli_vm v = {0};
    char id[32], rundir[PATH_MAX + 64], runbase[PATH_MAX + 8], err[1024];
    int rc = parse_opts(&v, argc, argv, NULL);
    if (rc)
        return rc;
    if (sodium_init() < 0)
        return 1;
    unsigned char rnd[4];
    randombytes_buf(rnd, sizeof(rnd));
    snprintf(id, sizeof(id), "run-%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    snprintf(runbase, sizeof(runbase), "%s/run", cfg->state);
    snprintf(rundir, sizeof(rundir), "%s/%s", runbase, id);
    rc = resolve(cfg, &v, id, rundir, false);
    if (rc) {
        cli_vm_free(&v);
        return rc;
    }

    struct vm_user user;
    if (spec_qemu_user(cfg, &user, err, sizeof(err)) < 0) {
        fprintf(stderr, "qdesk: %s\n", err);
        cli_vm_free(&v);
        return 1;
    }

    /* Signals are taken through a signalfd once QEMU runs; block them now so a
     * Ctrl-C during start-up is not lost, and QEMU (which resets its mask) is not
     * affected. A closed standard output is an error to handle (the VM is stopped
     * and cleaned up), not a signal that kills qdesk and leaves QEMU behind. */
    sigset_t mask;
    stop_signals(&mask);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Host devices are claimed in the service's store, so the service never hands
     * out what this VM holds; a VM that takes nothing from the host neither opens
     * the store nor creates it. */
    struct argv a;
    struct vm vm = {0};
    struct session_error se = {0};
    struct store *st = NULL;
    argv_init(&a);
    char db[PATH_MAX + 16];
    snprintf(db, sizeof(db), "%s/state.db", cfg->state);
    bool allocate = takes_from_host(&v.req, &v.spec);
    bool made_state = !fs_exists(cfg->state), made_runbase = !fs_exists(runbase);
    int mk = fs_mkdir_p(runbase, 0755);
    if (mk < 0) {
        fprintf(stderr, "qdesk: cannot create %s: %s\n", runbase, strerror(-mk));
        rc = 1;
    } else if (vm_check_runbase(&user, runbase, err, sizeof(err)) < 0) {
        fprintf(stderr, "qdesk: %s\n", err);
        rc = 1;
    } else if (allocate && !(st = store_open(db, err, sizeof(err)))) {
        fprintf(stderr, "qdesk: %s\n", err);
        rc = 1;
    } else if (allocate && alloc_acquire(st, cfg, id, &v.req, &v.spec, &user, &se) < 0) {
        fprintf(stderr, "qdesk: %s\n", se.message);
        rc = 1;
    } else if (qemu_build_cmdline(&a, &v.spec) < 0) {
        fprintf(stderr, "qdesk: %s\n", a.err);
        rc = 1;
    } else if (vm_prepare(&v.spec, v.qemu_img, &user, err, sizeof(err)) < 0) {
        fprintf(stderr, "qdesk: %s\n", err);
        rc = 1;
    } else if (vm_spawn(&vm, &v.spec, &a, &user, err, sizeof(err)) < 0 ||
               vm_connect(&vm, (int)cfg->start_timeout_s * 1000, err, sizeof(err)) < 0) {
        fprintf(stderr, "qdesk: %s\n", err);
        snprintf(vm.rundir, sizeof(vm.rundir), "%s", rundir);
        vm_cleanup(&vm);
        rc = 1;
    } else {
        char life[32];
        units_format_duration(v.spec.lifetime_s, life, sizeof(life));
        fprintf(stderr,
                "qdesk: %s is running (pid %d, %s under %s, lifetime %s)\n"
                "qdesk: run directory: %s\n"
                "qdesk: VNC socket: %s/%s\n",
                v.req.machine, (int)vm.pid, v.spec.arch, v.spec.kvm ? "KVM" : "TCG", life,
                rundir, rundir, RUNDIR_VNC);
        if (!v.spec.kvm)
            fprintf(stderr, "qdesk: TCG, not KVM, because %s\n", v.spec.accel_why);
        rc = supervise(&vm, cfg, v.spec.lifetime_s);
        vm_cleanup(&vm);
    }
    if (st) {
        alloc_release(st, cfg, id);
        store_close(st);
    }
    /* The directories this run made for itself go with it, unless something else
     * (a service, another run) has put files there meanwhile. */
    if (made_runbase)
        rmdir(runbase);
    if (made_state)
        rmdir(cfg->state);
    argv_free(&a);
    cli_vm_free(&v);
    return rc;
}

/* ---- talking to the service over its control socket ---------------------------- */

struct reply {
    char *body;
    size_t len;
};

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    char *grown = realloc(r->body, r->len + size * n + 1);
    if (!grown)
        return 0;
    r->body = grown;
    memcpy(r->body + r->len, data, size * n);
    r->len += size * n;
    r->body[r->len] = 0;
    return size * n;
}

/* Sends one request to the service. Returns the HTTP status and the parsed JSON
 * body in *out (NULL when the body is not JSON), or -1 after printing why the
 * service cannot be reached. */
static long call_service(const struct config *cfg, const char *method, const char *path,
                         json_t *body, json_t **out)
{
    char sock[PATH_MAX + 32], url[512];
    if (cfg->control_socket[0])
        snprintf(sock, sizeof(sock), "%s", cfg->control_socket);
    else
        snprintf(sock, sizeof(sock), "%s/control.sock", cfg->state);
    snprintf(url, sizeof(url), "http://localhost%s", path);
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    struct reply reply = {0};
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct curl_slist *headers =
        curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (text)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    CURLcode rc = curl_easy_perform(c);
    long status = -1;
    if (rc != CURLE_OK)
        fprintf(stderr,
                "qdesk: cannot reach the service at %s: %s (is qdesk serve running, "
                "and are you root?)\n",
                sock, curl_easy_strerror(rc));
    else
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    free(text);
    json_error_t jerr;
    *out = reply.body ? json_loads(reply.body, 0, &jerr) : NULL;
    free(reply.body);
    return status;
}

/* Prints the service's error and returns 1. */
static int service_error(json_t *reply, long status)
{
    const char *msg =
        json_string_value(json_object_get(json_object_get(reply, "error"), "message"));
    fprintf(stderr, "qdesk: %s (HTTP %ld)\n", msg ? msg : "the service refused", status);
    return 1;
}

static void print_session(json_t *s)
{
    int64_t left =
        json_integer_value(json_object_get(s, "expires_at")) - (int64_t)time(NULL);
    char life[32] = "-";
    const char *state = json_string_value(json_object_get(s, "state"));
    if (left > 0 && state && strcmp(state, "stopped") && strcmp(state, "failed"))
        units_format_duration((uint64_t)left, life, sizeof(life));
    const char *url = json_string_value(json_object_get(s, "url")),
               *error = json_string_value(json_object_get(s, "error"));
    printf("%-17s %-9s %-16s %-10s %4lld %7lld  %-9s %s\n",
           json_string_value(json_object_get(s, "id")), state,
           json_string_value(json_object_get(s, "machine")),
           json_string_value(json_object_get(s, "owner")),
           (long long)json_integer_value(json_object_get(s, "cpus")),
           (long long)json_integer_value(json_object_get(s, "memory_mb")), life,
           url     ? url
           : error ? error
                   : "");
}

static void print_header(void)
{
    printf("%-17s %-9s %-16s %-10s %4s %7s  %-9s %s\n", "ID", "STATE", "MACHINE", "OWNER",
           "CPUS", "MEM(MB)", "LEFT", "URL");
}

/* The API body for what parse_opts() read. */
static json_t *request_json(const struct spec_request *r)
{
    json_t *o = json_pack("{s:s}", "machine", r->machine);
    if (r->given & (1u << SPEC_FIELD_CPUS))
        json_object_set_new(o, "cpus", json_integer(r->cpus));
    if (r->given & (1u << SPEC_FIELD_MEMORY))
        json_object_set_new(o, "memory_mb", json_integer((json_int_t)r->memory_mb));
    if (r->given & (1u << SPEC_FIELD_LIFETIME))
        json_object_set_new(o, "lifetime_s", json_integer((json_int_t)r->lifetime_s));
    if (r->given & (1u << SPEC_FIELD_DISK))
        json_object_set_new(o, "disk_gb", json_integer(r->disk_gb));
    if (r->gpu != SPEC_GPU_NONE) {
        char gpu[96];
        snprintf(gpu, sizeof(gpu), "%s%s%s", spec_gpu_name(r->gpu),
                 r->gpu_type[0] ? ":" : "", r->gpu_type);
        json_object_set_new(o, "gpu", json_string(gpu));
    }
    if (r->n_usb) {
        json_t *usb = json_array();
        for (size_t i = 0; i < r->n_usb; i++)
            json_array_append_new(usb, json_string(r->usb[i]));
        json_object_set_new(o, "usb", usb);
    }
    if (r->net != SPEC_NET_USER) {
        char net[32];
        snprintf(net, sizeof(net), r->net == SPEC_NET_NONE ? "none" : "bridge=%s",
                 r->bridge);
        json_object_set_new(o, "net", json_string(net));
    }
    if (r->n_mounts) {
        json_t *m = json_array();
        for (size_t i = 0; i < r->n_mounts; i++)
            json_array_append_new(m, json_string(r->mounts[i]));
        json_object_set_new(o, "mounts", m);
    }
    if (r->script[0])
        json_object_set_new(o, "script", json_string(r->script));
    if (r->oneshot)
        json_object_set_new(o, "oneshot", json_true());
    if (r->persistent)
        json_object_set_new(o, "persistent", json_true());
    return o;
}

int cli_start(const struct config *cfg, int argc, char **argv)
{
    struct cli_vm v = {0};
    bool json = false;
    int rc = parse_opts(&v, argc, argv, &json);
    if (rc)
        return rc;
    json_t *reply = NULL, *body = request_json(&v.req);
    long status = call_service(cfg, "POST", "/api/v1/sessions", body, &reply);
    json_decref(body);
    if (status < 0)
        return 1;
    if (status != 201) {
        rc = service_error(reply, status);
    } else if (json) {
        json_dumpf(reply, stdout, JSON_INDENT(2));
        putchar('\n');
    } else {
        printf("session  %s (%s)\nlink     %s\nview     %s\nqr       %s\n",
               json_string_value(json_object_get(reply, "id")),
               json_string_value(json_object_get(reply, "state")),
               json_string_value(json_object_get(reply, "url")),
               json_string_value(json_object_get(reply, "view_url")),
               json_string_value(json_object_get(reply, "qr_svg_url")));
    }
    json_decref(reply);
    return rc;
}

int cli_status(const struct config *cfg, int argc, char **argv)
{
    bool json = false;
    const char *id = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!id && argv[i][0] != '-')
            id = argv[i];
        else {
            fprintf(stderr, "usage: qdesk status [ID] [--json]\n");
            return 2;
        }
    }
    char path[128];
    if (id && strspn(id, "0123456789abcdef") != strlen(id)) {
        fprintf(stderr, "qdesk status: '%s' is not a session id\n", id);
        return 2;
    }
    snprintf(path, sizeof(path), "/api/v1/sessions%s%s", id ? "/" : "", id ? id : "");
    json_t *reply = NULL;
    long status = call_service(cfg, "GET", path, NULL, &reply);
    int rc = 0;
    if (status < 0)
        return 1;
    if (status != 200) {
        rc = service_error(reply, status);
    } else if (json) {
        json_dumpf(reply, stdout, JSON_INDENT(2));
        putchar('\n');
    } else {
        print_header();
        if (json_is_array(reply)) {
            size_t i;
            json_t *s;
            json_array_foreach(reply, i, s) print_session(s);
        } else {
            print_session(reply);
        }
    }
    json_decref(reply);
    return rc;
}

int cli_stop(const struct config *cfg, int argc, char **argv)
{
    bool json = false;
    const char *which = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!which &&
                 (!strcmp(argv[i], "--all") ||
                  (argv[i][0] && strspn(argv[i], "0123456789abcdef") == strlen(argv[i]))))
            which = argv[i];
        else
            which = "";
    }
    if (!which || !which[0]) {
        fprintf(stderr, "usage: qdesk stop ID|--all [--json]\n");
        return 2;
    }
    char path[128];
    bool all = !strcmp(which, "--all");
    snprintf(path, sizeof(path), "/api/v1/sessions%s%s", all ? "" : "/",
             all ? "" : which);
    json_t *reply = NULL;
    long status = call_service(cfg, "DELETE", path, NULL, &reply);
    int rc = 0;
    if (status < 0)
        return 1;
    if (status != 200 && status != 202) {
        rc = service_error(reply, status);
    } else if (json) {
        json_dumpf(reply, stdout, JSON_INDENT(2));
        putchar('\n');
    } else if (all) {
        printf("stopping %lld sessions\n",
               (long long)json_integer_value(json_object_get(reply, "stopping")));
    } else {
        printf("session %s is %s\n", which,
               json_string_value(json_object_get(reply, "state")));
    }
    json_decref(reply);
    return rc;
}

int cli_usb(const struct config *cfg, int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "attach") && strcmp(argv[1], "detach")) ||
        strspn(argv[2], "0123456789abcdef") != strlen(argv[2]) ||
        strspn(argv[3], "abcdefghijklmnopqrstuvwxyzABCDEF0123456789:.-") !=
            strlen(argv[3])) {
        fprintf(stderr, "usage: qdesk usb attach|detach ID DEVICE\n"
                        "  DEVICE: VID:PID, BUS-PORT, or " SPEC_USB_EMULATED
                        " (detach also takes the id attach printed)\n");
        return 2;
    }
    bool attach = !strcmp(argv[1], "attach");
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/usb%s%s", argv[2],
             attach ? "" : "/", attach ? "" : argv[3]);
    json_t *reply = NULL, *body = attach ? json_pack("{s:s}", "device", argv[3]) : NULL;
    long status = call_service(cfg, attach ? "POST" : "DELETE", path, body, &reply);
    json_decref(body);
    int rc = 0;
    if (status < 0)
        return 1;
    if (status != 200)
        rc = service_error(reply, status);
    else
        printf("%s %s\n", attach ? "attached" : "detached",
               json_string_value(json_object_get(reply, "device")));
    json_decref(reply);
    return rc;
}
