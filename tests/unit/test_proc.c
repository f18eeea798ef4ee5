/* Spawning: clean environment, closed descriptors, passed descriptors, failures;
 * the groups a user keeps and what its permission bits let it open. */
#include "util/proc.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

static char *run_sh(const char *script, const int *fds, size_t nfds, int *rc)
{
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    struct proc_spawn s = {.argv = argv,
                           .stdout_fd = -1,
                           .stderr_fd = -1,
                           .pass_fds = fds,
                           .n_pass_fds = nfds};
    char *out = NULL, err[256];
    *rc = proc_run(&s, 5000, &out, 65536, err, sizeof(err));
    return out;
}

static void environment_is_clean(void **state)
{
    (void)state;
    setenv("QDESK_SECRET", "leak", 1);
    int rc;
    char *out = run_sh("env | sort", NULL, 0, &rc);
    assert_int_equal(rc, 0);
    assert_null(strstr(out, "QDESK_SECRET"));
    assert_non_null(strstr(out, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"));
    free(out);
}

static void only_passed_descriptors_survive(void **state)
{
    (void)state;
    int stray = dup2(open("/dev/null", O_RDONLY), 50); /* not close-on-exec on purpose */
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    int pass[] = {pipefd[1]};
    int rc;
    /* the passed pipe arrives as descriptor 3 */
    char *out = run_sh("echo through-3 >&3", pass, 1, &rc);
    assert_int_equal(rc, 0);
    free(out);
    char buf[64] = "";
    assert_true(read(pipefd[0], buf, sizeof(buf) - 1) > 0);
    assert_string_equal(buf, "through-3\n");

    /* ls lists its own descriptors: 0-2, the passed 3, and the directory it reads
     * (4); nothing of ours, such as the stray 50, came along */
    char *argv[] = {"/bin/ls", "/proc/self/fd", NULL};
    struct proc_spawn s = {.argv = argv,
                           .stdout_fd = -1,
                           .stderr_fd = -1,
                           .pass_fds = pass,
                           .n_pass_fds = 1};
    char err[256];
    out = NULL;
    assert_int_equal(proc_run(&s, 5000, &out, 4096, err, sizeof(err)), 0);
    assert_string_equal(out, "0\n1\n2\n3\n4\n");
    free(out);
    close(pipefd[0]);
    close(pipefd[1]);
    close(stray);
}

static void failures_are_reported(void **state)
{
    (void)state;
    char err[256];
    char *missing[] = {"/nonexistent/qemu", NULL};
    struct proc_spawn s = {.argv = missing, .stdout_fd = -1, .stderr_fd = -1};
    assert_int_equal(proc_spawn(&s, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/qemu: No such file or directory"));

    char *fails[] = {"/bin/sh", "-c", "echo 'it broke' >&2; exit 3", NULL};
    s.argv = fails;
    assert_int_equal(proc_run(&s, 5000, NULL, 0, err, sizeof(err)), 3);
    assert_string_equal(err, "it broke");

    char *slow[] = {"/bin/sleep", "10", NULL};
    s.argv = slow;
    assert_int_equal(proc_run(&s, 200, NULL, 0, err, sizeof(err)), -1);
    assert_string_equal(err, "/bin/sleep did not finish within 200 ms");
}

static void identity_survives_only_for_the_same_process(void **state)
{
    (void)state;
    char err[256];
    char *argv[] = {"/bin/sleep", "5", NULL};
    struct proc_spawn s = {
        .argv = argv, .stdout_fd = -1, .stderr_fd = -1, .new_session = true};
    pid_t pid = proc_spawn(&s, err, sizeof(err));
    assert_true(pid > 0);
    uint64_t t;
    assert_int_equal(proc_start_time("/proc", pid, &t), 0);
    assert_true(proc_is_same(pid, t));
    assert_false(proc_is_same(pid, t + 1)); /* a recycled pid would start later */
    assert_int_equal(getsid(pid), pid);     /* its own session */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_false(proc_is_same(pid, t));
}

/* Whether a user is listed in a group entry (its member list). */
static bool listed(const struct group *g, const char *user)
{
    for (char **m = g->gr_mem; *m; m++)
        if (!strcmp(*m, user))
            return true;
    return false;
}

static bool has_group(const gid_t *groups, int n, gid_t gid)
{
    for (int i = 0; i < n; i++)
        if (groups[i] == gid)
            return true;
    return false;
}

/* QEMU keeps its user's groups (kvm, render): for every user of this machine the
 * groups are its primary group and exactly the groups that list it. */
static void users_keep_their_groups(void **state)
{
    (void)state;
    struct passwd *pw;
    size_t users = 0;
    setpwent();
    while ((pw = getpwent())) {
        gid_t groups[PROC_GROUPS_MAX];
        int n = proc_user_groups(pw->pw_uid, pw->pw_gid, groups, PROC_GROUPS_MAX);
        if (n < 0)
            continue; /* more groups than a child keeps */
        assert_true(has_group(groups, n, pw->pw_gid));
        struct group *g;
        int listed_in = 0;
        setgrent();
        while ((g = getgrent()))
            if (listed(g, pw->pw_name) && g->gr_gid != pw->pw_gid) {
                assert_true(has_group(groups, n, g->gr_gid));
                listed_in++;
            }
        endgrent();
        assert_int_equal(n, listed_in + 1);
        users++;
    }
    endpwent();
    assert_true(users > 0);

    /* a uid nobody knows has its gid alone */
    gid_t groups[4];
    assert_int_equal(proc_user_groups(4000000000u, 4000000001u, groups, 4), 1);
    assert_int_equal(groups[0], 4000000001u);
}

/* /dev/kvm as Debian's udev makes it: root:kvm, mode 660. */
static void permission_bits_decide_who_opens(void **state)
{
    (void)state;
    const gid_t kvm = 108, render = 109;
    struct stat st = {.st_uid = 0, .st_gid = kvm, .st_mode = S_IFCHR | 0660};
    const gid_t plain[] = {64055}, in_kvm[] = {64055, render, kvm};
    assert_false(proc_may_read_write(&st, 64055, plain, 1));
    assert_true(proc_may_read_write(&st, 64055, in_kvm, 3));
    assert_true(proc_may_read_write(&st, 0, NULL, 0)); /* root */
    st.st_mode = S_IFCHR | 0640;                       /* the group may only read */
    assert_false(proc_may_read_write(&st, 64055, in_kvm, 3));
    st.st_mode = S_IFCHR | 0666;
    assert_true(proc_may_read_write(&st, 64055, plain, 1));
    /* the owner's bits decide for the owner, even where the group's would allow */
    st = (struct stat){.st_uid = 64055, .st_gid = kvm, .st_mode = S_IFCHR | 0060};
    assert_false(proc_may_read_write(&st, 64055, in_kvm, 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(environment_is_clean),
        cmocka_unit_test(only_passed_descriptors_survive),
        cmocka_unit_test(failures_are_reported),
        cmocka_unit_test(identity_survives_only_for_the_same_process),
        cmocka_unit_test(users_keep_their_groups),
        cmocka_unit_test(permission_bits_decide_who_opens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
