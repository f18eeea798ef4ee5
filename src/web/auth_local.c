/* Local accounts: users in the store with argon2id password hashes, and the
 * `qdesk user` command that manages them. */
#include "web/auth.h"

#include "session/store.h"
#include "util/fs.h"

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

int auth_local_hash(const char *password, char *out, size_t outsz)
{
    if (sodium_init() < 0 || outsz < crypto_pwhash_STRBYTES)
        return -1;
    return crypto_pwhash_str(out, password, strlen(password),
                             crypto_pwhash_OPSLIMIT_INTERACTIVE,
                             crypto_pwhash_MEMLIMIT_INTERACTIVE);
}

static char dummy_hash[crypto_pwhash_STRBYTES];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void make_dummy(void)
{
    auth_local_hash("qdesk: not a password anyone has", dummy_hash, sizeof(dummy_hash));
}

int auth_local_authenticate(struct auth_attempt *a)
{
    struct store_user u;
    int found = store_user_get(a->store, a->user, &u);
    if (found != 1) {
        /* Spend the same time as a real check, so timing does not tell which
         * names exist. */
        pthread_once(&dummy_once, make_dummy);
        int ignored =
            crypto_pwhash_str_verify(dummy_hash, a->password, strlen(a->password));
        (void)ignored;
        snprintf(a->why, sizeof(a->why), "no such local user");
        return -1;
    }
    if (crypto_pwhash_str_verify(u.hash, a->password, strlen(a->password)) != 0) {
        snprintf(a->why, sizeof(a->why), "wrong password");
        return -1;
    }
    a->ok = true;
    a->admin = u.admin;
    return 0;
}

/* ---- qdesk user ------------------------------------------------------------- */

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n < 64 && name[0] != '-' &&
           strspn(name,
                  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-") ==
               n;
}

/* Reads a password: twice without echo from a terminal, or one line from stdin. */
static int read_password(bool from_stdin, char *out, size_t outsz)
{
    if (from_stdin || !isatty(STDIN_FILENO)) {
        if (!fgets(out, (int)outsz, stdin))
            return -1;
        out[strcspn(out, "\r\n")] = 0;
        return 0;
    }
    struct termios old, quiet;
    if (tcgetattr(STDIN_FILENO, &old) < 0)
        return -1;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    char again[1024];
    int rc = -1;
    fputs("Password: ", stderr);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    if (fgets(out, (int)outsz, stdin)) {
        fputs("\nAgain: ", stderr);
        if (fgets(again, sizeof(again), stdin)) {
            out[strcspn(out, "\r\n")] = 0;
            again[strcspn(again, "\r\n")] = 0;
            rc = strcmp(out, again) == 0 ? 0 : -2;
        }
    }
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fputs("\n", stderr);
    sodium_memzero(again, sizeof(again));
    if (rc == -2)
        fprintf(stderr, "qdesk user: the passwords differ\n");
    return rc;
}

static void list_one(const struct store_user *u, void *arg)
{
    json_t *list = arg;
    if (list) {
        json_array_append_new(list, json_pack("{s:s, s:b, s:I}", "name", u->name, "admin",
                                              u->admin, "created_at",
                                              (json_int_t)u->created_at));
        return;
    }
    printf("%-32s %s\n", u->name, u->admin ? "admin" : "user");
}

static int usage(void)
{
    fprintf(stderr,
            "usage: qdesk user add NAME [--admin] [--password-stdin]\n"
            "       qdesk user passwd NAME [--admin|--no-admin] [--password-stdin]\n"
            "       qdesk user del NAME\n"
            "       qdesk user list [--json]\n");
    return 2;
}

int auth_local_main(const struct config *cfg, int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *verb = argv[1], *name = NULL;
    bool admin = false, no_admin = false, from_stdin = false, json = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--admin"))
            admin = true;
        else if (!strcmp(argv[i], "--no-admin"))
            no_admin = true;
        else if (!strcmp(argv[i], "--password-stdin"))
            from_stdin = true;
        else if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!name && argv[i][0] != '-')
            name = argv[i];
        else
            return usage();
    }
    bool wants_name = strcmp(verb, "list") != 0;
    if (wants_name != (name != NULL) || (admin && no_admin) ||
        (no_admin && strcmp(verb, "passwd") != 0))
        return usage();
    if (name && !name_ok(name)) {
        fprintf(stderr,
                "qdesk user: '%s' is not a user name (1 to 63 letters, digits, "
                "'.', '_', '@', '-')\n",
                name);
        return 2;
    }

    char path[PATH_MAX + 16], err[512];
    int mk = fs_mkdir_p(cfg->state, 0700);
    if (mk < 0) {
        fprintf(stderr, "qdesk user: cannot create %s: %s\n", cfg->state, strerror(-mk));
        return 1;
    }
    snprintf(path, sizeof(path), "%s/state.db", cfg->state);
    struct store *st = store_open(path, err, sizeof(err));
    if (!st) {
        fprintf(stderr, "qdesk user: %s\n", err);
        return 1;
    }
    int rc = 0;
    struct store_user u = {0};
    if (!strcmp(verb, "list")) {
        json_t *list = json ? json_array() : NULL;
        store_users_list(st, list_one, list);
        if (list) {
            json_dumpf(list, stdout, JSON_INDENT(2));
            putchar('\n');
            json_decref(list);
        }
    } else if (!strcmp(verb, "del")) {
        rc = store_user_delete(st, name) == 1 ? 0 : 1;
        if (rc)
            fprintf(stderr, "qdesk user: no user '%s'\n", name);
    } else if (!strcmp(verb, "add") || !strcmp(verb, "passwd")) {
        bool exists = store_user_get(st, name, &u) == 1;
        char password[1024];
        if (!strcmp(verb, "add") && exists) {
            fprintf(stderr, "qdesk user: '%s' exists; use qdesk user passwd\n", name);
            rc = 1;
        } else if (!strcmp(verb, "passwd") && !exists) {
            fprintf(stderr, "qdesk user: no user '%s'\n", name);
            rc = 1;
        } else if (read_password(from_stdin, password, sizeof(password)) < 0) {
            rc = 1;
        } else if (strlen(password) < 8) {
            fprintf(stderr, "qdesk user: the password must have at least 8 characters\n");
            rc = 1;
        } else {
            snprintf(u.name, sizeof(u.name), "%s", name);
            if (!exists) {
                u.admin = admin;
                u.created_at = (int64_t)time(NULL);
            } else if (admin || no_admin) {
                u.admin = admin;
            }
            /* a new password (or admin flag) ends the user's logins everywhere */
            if (auth_local_hash(password, u.hash, sizeof(u.hash)) < 0 ||
                store_user_put(st, &u) < 0 ||
                (exists && store_user_logout(st, name) < 0)) {
                fprintf(stderr, "qdesk user: cannot store the password\n");
                rc = 1;
            }
        }
        sodium_memzero(password, sizeof(password));
    } else {
        rc = usage();
    }
    store_close(st);
    return rc;
}
