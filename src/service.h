/* service: `qdesk serve [-c FILE]`, the portal, the API and the display proxy. */
#ifndef QDESK_SERVICE_H
#define QDESK_SERVICE_H

#include "config.h"

int service_main(const struct config *cfg, int argc, char **argv);

#endif
