/* qdesk: subcommand dispatch. Global options are taken out of argv wherever they
 * stand; the rest goes to the subcommand. */
#include "cli.h"
#include "config.h"
#include "host/host.h"
#include "service.h"
#include "util/log.h"
#include "web/auth.h"
#include "web/wsproxy.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: qdesk [-c FILE] [--machines DIR] [--sysroot DIR] [-v] COMMAND [ARGS]\n"
    "\n"
    "  serve                        the service: portal, API, display proxy\n"
    "  machines [--json]            the machine catalogue\n"
    "  args MACHINE [OPTS]          print the QEMU command line, run nothing\n"
    "  run MACHINE [OPTS]           one VM in the foreground, no service needed\n"
    "  start MACHINE [OPTS] [--json]  ask the service for a session\n"
    "  status [ID] [--json]         sessions\n"
    "  stop ID|--all                stop sessions\n"
    "  usb attach|detach ID DEVICE  hot-plug USB into a running session\n"
    "  user add|del|passwd|list     local accounts\n"
    "  proxy [--view-only] ADDR:PORT SOCKET   a standalone WebSocket-to-VNC proxy\n"
    "  host check|iommu|gpus|usb [--json] | cmdline --gpu ADDR... [--apply]\n"
    "                               host readiness and inventory\n"
    "\n"
    "OPTS: --cpus N --memory SIZE --lifetime DUR --disk GB\n"
    "      --gpu none|virgl|vf|passthrough|mdev[:TYPE] --usb VID:PID|BUS-PORT|usb-kbd\n"
    "      --net user|none|bridge=BR --oneshot\n";

struct command {
    const char *name;
    int (*run)(const struct config *cfg, int argc, char **argv);
};

static int proxy(const struct config *cfg, int argc, char **argv)
{
    (void)cfg;
    return wsproxy_main(argc, argv);
}

static const struct command commands[] = {
    {"serve", service_main}, {"machines", cli_machines}, {"args", cli_args},
    {"run", cli_run},        {"start", cli_start},       {"status", cli_status},
    {"stop", cli_stop},      {"user", auth_local_main},  {"proxy", proxy},
    {"host", host_main},     {"usb", cli_usb},
};

/* Makes a relative path absolute against the working directory: QEMU runs in its
 * run directory, so every path handed to it must be absolute. */
static int absolute(char *path, size_t size)
{
    if (path[0] == '/' || !path[0])
        return 0;
    char cwd[PATH_MAX], joined[PATH_MAX * 2];
    if (!getcwd(cwd, sizeof(cwd)))
        return -1;
    snprintf(joined, sizeof(joined), "%s/%s", cwd, path);
    if (strlen(joined) >= size)
        return -1;
    memcpy(path, joined, strlen(joined) + 1);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *machines = NULL, *sysroot = NULL;
    int verbose = 0, n = 0;
    char **rest = calloc((size_t)argc + 1, sizeof(*rest));
    if (!rest)
        return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool takes_value = !strcmp(a, "-c") || !strcmp(a, "--config") ||
                           !strcmp(a, "--machines") || !strcmp(a, "--sysroot");
        if (takes_value && i + 1 >= argc) {
            fprintf(stderr, "qdesk: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "-c") || !strcmp(a, "--config"))
            config_path = argv[++i];
        else if (!strcmp(a, "--machines"))
            machines = argv[++i];
        else if (!strcmp(a, "--sysroot"))
            sysroot = argv[++i];
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose"))
            verbose++;
        else if (n == 0 && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            fputs(usage, stdout);
            return 0;
        } else
            rest[n++] = argv[i];
    }
    if (n == 0) {
        fputs(usage, stderr);
        return 2;
    }
    /* The service logs one line per event; foreground commands only what is wrong. */
    log_set_level(verbose ? LOG_DEBUG : strcmp(rest[0], "serve") ? LOG_WARN : LOG_INFO);

    struct config cfg;
    char err[1024];
    config_defaults(&cfg);
    if (config_load(&cfg, config_path ? config_path : CONFIG_DEFAULT_PATH,
                    config_path != NULL, err, sizeof(err)) < 0 ||
        (machines &&
         config_set(&cfg, "paths", "machines", machines, err, sizeof(err)) < 0) ||
        (sysroot &&
         config_set(&cfg, "paths", "sysroot", sysroot, err, sizeof(err)) < 0)) {
        fprintf(stderr, "qdesk: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    if (absolute(cfg.machines, sizeof(cfg.machines)) < 0 ||
        absolute(cfg.state, sizeof(cfg.state)) < 0 ||
        absolute(cfg.sysroot, sizeof(cfg.sysroot)) < 0) {
        fprintf(stderr, "qdesk: a configured path is too long\n");
        config_free(&cfg);
        return 2;
    }

    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(rest[0], commands[i].name)) {
            int rc = commands[i].run(&cfg, n, rest);
            free(rest);
            config_free(&cfg);
            return rc;
        }
    fprintf(stderr, "qdesk: '%s' is not a command\n\n%s", rest[0], usage);
    free(rest);
    config_free(&cfg);
    return 2;
}
