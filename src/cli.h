/* cli: the subcommands that run in the foreground of a terminal. Each takes the
 * loaded config and its own arguments (argv[0] is the subcommand) and returns the
 * process exit status: 0 success, 1 failure, 2 bad usage. */
#ifndef QDESK_CLI_H
#define QDESK_CLI_H

#include "config.h"

int cli_machines(const struct config *cfg, int argc, char **argv);
int cli_args(const struct config *cfg, int argc, char **argv);
int cli_run(const struct config *cfg, int argc, char **argv);
/* start, status and stop talk to the running service over its control socket. */
int cli_start(const struct config *cfg, int argc, char **argv);
int cli_status(const struct config *cfg, int argc, char **argv);
int cli_stop(const struct config *cfg, int argc, char **argv);
int cli_usb(const struct config *cfg, int argc, char **argv);

#endif
