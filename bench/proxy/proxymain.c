/* The standalone display proxy as its own program, for the benchmark when the
 * qdesk binary at hand does not dispatch `qdesk proxy` yet:
 *   proxybench proxy [--view-only] LISTEN_ADDR:PORT UNIX_SOCKET_PATH
 * Built by bench/proxy/run from the same sources as qdesk (src/web/wsproxy.c,
 * proxycmd.c, rfb.c and the event loop). */
#include "util/log.h"
#include "web/wsproxy.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "proxy")) {
        fprintf(stderr, "usage: proxybench proxy [--view-only] ADDR:PORT SOCKET\n");
        return 2;
    }
    log_set_level(LOG_WARN); /* as qdesk's foreground commands */
    return wsproxy_main(argc - 1, argv + 1);
}
