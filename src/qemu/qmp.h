/* qmp: a client for QEMU's machine protocol on a unix socket.
 *
 * Messages are JSON objects, one per line. Commands carry an "id" and are matched
 * with their reply by it; events that arrive while a command waits are queued
 * for qmp_next_event(). */
#ifndef QDESK_QEMU_QMP_H
#define QDESK_QEMU_QMP_H

#include <jansson.h>
#include <stddef.h>

struct qmp;

/* Connects to path, reads the greeting and enters command mode, within
 * timeout_ms. Returns a new client (close with qmp_close()) or NULL with err. */
struct qmp *qmp_connect(const char *path, int timeout_ms, char *err, size_t errsz);

/* Wraps an already connected socket (the test suite's peer, a reattach); then
 * does what qmp_connect() does after connecting. Takes ownership of fd. */
struct qmp *qmp_attach(int fd, int timeout_ms, char *err, size_t errsz);

/* Wraps a connected socket without any I/O, for an event loop that drives the
 * handshake itself: wait for qmp_greeted(), then qmp_send("qmp_capabilities").
 * Takes ownership of fd. Returns NULL only when out of memory (fd is closed). */
struct qmp *qmp_new(int fd);

/* Returns 1 when the greeting has arrived (and consumes it), 0 when not yet, -1
 * when the peer greeted but is not QEMU. */
int qmp_greeted(struct qmp *q);

/* Sends command without waiting. With id (of size idsz) the reply is kept for
 * qmp_take_reply(id) until it is taken or qmp_forget(id) says it is not wanted any
 * more; with id NULL it is discarded when it arrives. Returns 0, or -1 when the
 * connection is broken. */
int qmp_send(struct qmp *q, const char *command, json_t *args, char *id, size_t idsz);

/* Removes and returns the reply to id (a new reference), or NULL when it has not
 * arrived yet. */
json_t *qmp_take_reply(struct qmp *q, const char *id);

/* Gives up on the reply to id (a caller's timeout): it is dropped, now or when it
 * arrives, so replies nobody will take do not pile up. */
void qmp_forget(struct qmp *q, const char *id);

/* Runs command with args (borrowed; NULL for none) and waits at most timeout_ms
 * for its reply (a reply that comes later is dropped). Returns 0 and, when ret is not
 * NULL, the "return" value in *ret (a new reference; the caller decrefs it), or -1 with
 * err holding QEMU's error class and description, or why no reply came. */
int qmp_execute(struct qmp *q, const char *command, json_t *args, int timeout_ms,
                json_t **ret, char *err, size_t errsz);

/* The socket, to wait on in an event loop. */
int qmp_fd(const struct qmp *q);

/* Reads whatever is available without blocking and queues the events in it.
 * Returns 0, or -1 when QEMU has closed the connection or sent garbage. */
int qmp_read(struct qmp *q);

/* Returns the oldest queued event (a new reference: {"event": ..., "data": ...}),
 * or NULL when none is queued. */
json_t *qmp_next_event(struct qmp *q);

/* Closes the connection and frees q. Accepts NULL. */
void qmp_close(struct qmp *q);

/* Parses one complete line of QMP output. Returns a new reference, or NULL when the
 * line is not a JSON object. Exposed for the unit tests of the framing. */
json_t *qmp_parse_line(const char *line, size_t len);

#endif
