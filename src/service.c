/* service: `qdesk serve` — puts the parts together on one event loop and runs
 * them until SIGINT/SIGTERM. Stopping the service leaves the VMs running; the
 * next start reattaches them. */
#include "service.h"

#include "session/session.h"
#include "session/store.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/work.h"
#include "web/auth.h"
#include "web/http.h"
#include "web/viewer.h"
#include "web/wsproxy.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

static void on_signal(struct loop *l, int fd, uint32_t events, void *arg)
{
    (void)events;
    (void)arg;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        log_info("signal %d: stopping the service; the VMs keep running",
                 (int)si.ssi_signo);
        loop_stop(l);
    }
}

int service_main(const struct config *cfg_in, int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: qdesk serve [-c FILE]\n");
        return 2;
    }
    struct config cfg = *cfg_in;
    char err[1024] = "", db[PATH_MAX + 16];
    int rc = 1;
    if (cfg.www[0] != '/') {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof(cwd))) {
            char abs[PATH_MAX * 2];
            snprintf(abs, sizeof(abs), "%s/%s", cwd, cfg.www);
            snprintf(cfg.www, sizeof(cfg.www), "%s", abs);
        }
    }
    /* Others may enter it (QEMU's user reaches its run directory in STATE/run), not
     * list it; what is inside guards itself (the database is 0600). A state directory
     * an older qdesk made 0700 is opened up the same way. */
    struct stat st;
    int mk = fs_mkdir_p(cfg.state, 0711);
    if (mk < 0) {
        log_error("cannot create the state directory %s: %s", cfg.state, strerror(-mk));
        return 1;
    }
    if (stat(cfg.state, &st) == 0 && st.st_uid == geteuid() &&
        (st.st_mode & 0777) == 0700)
        chmod(cfg.state, 0711);
    snprintf(db, sizeof(db), "%s/state.db", cfg.state);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct web web = {.cfg = &cfg, .started_ms = loop_now()};
    int sfd = -1;
    if (!(web.loop = loop_new()) || !(web.auth = auth_new()) ||
        !(web.work = workq_new(web.loop, 2)) ||
        !(web.proxy = wsproxy_new(web.loop, NULL))) {
        log_error("out of memory");
        goto out;
    }
    if (!(web.store = store_open(db, err, sizeof(err))) ||
        !(web.sessions =
              sessions_new(&cfg, web.loop, web.store, web.work, err, sizeof(err)))) {
        log_error("%s", err);
        goto out;
    }
    viewer_init(&web);
    int n = sessions_reconcile(web.sessions);
    if (!http_new(&web, err, sizeof(err))) {
        log_error("%s", err);
        goto out;
    }
    sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0 || loop_add_fd(web.loop, sfd, EPOLLIN, on_signal, NULL) < 0) {
        log_error("signalfd: %s", strerror(errno));
        goto out;
    }
    log_info(
        "serving on %s://%s (auth %s, machines %s, state %s); %d session%s reattached",
        cfg.tls_cert[0] ? "https" : "http", cfg.listen, cfg.auth, cfg.machines, cfg.state,
        n, n == 1 ? "" : "s");
    rc = loop_run(web.loop) < 0 ? 1 : 0;
out:
    web.stopping = true;
    if (sfd >= 0) {
        loop_del_fd(web.loop, sfd);
        close(sfd);
    }
    wsproxy_free(web.proxy); /* its viewers hand their sockets back to the HTTP layer */
    http_free(web.http);
    workq_free(web.work);
    sessions_free(web.sessions);
    store_close(web.store);
    auth_free(web.auth);
    loop_free(web.loop);
    return rc;
}
