/* PAM: the host's own accounts (pam_unix, sssd, whatever the service's PAM stack
 * says). Admins are the members of [auth] admin_group. */
#include "web/auth.h"

#include <grp.h>
#include <pwd.h>
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Answers PAM's password prompts with the attempt's password. */
static int converse(int n, const struct pam_message **msg, struct pam_response **resp,
                    void *data)
{
    const struct auth_attempt *a = data;
    struct pam_response *r = calloc((size_t)n, sizeof(*r));
    if (!r)
        return PAM_BUF_ERR;
    for (int i = 0; i < n; i++) {
        if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF ||
            msg[i]->msg_style == PAM_PROMPT_ECHO_ON) {
            r[i].resp = strdup(a->password);
            if (!r[i].resp) {
                for (int j = 0; j < i; j++)
                    free(r[j].resp);
                free(r);
                return PAM_BUF_ERR;
            }
        }
    }
    *resp = r;
    return PAM_SUCCESS;
}

/* True when user belongs to group (primary or supplementary). Runs on worker
 * threads, hence the reentrant lookups. */
static bool in_group(const char *user, const char *group)
{
    struct group g, *gp = NULL;
    struct passwd pw, *pwp = NULL;
    char gbuf[8192], pbuf[4096];
    if (getgrnam_r(group, &g, gbuf, sizeof(gbuf), &gp) != 0 || !gp ||
        getpwnam_r(user, &pw, pbuf, sizeof(pbuf), &pwp) != 0 || !pwp)
        return false;
    gid_t groups[256];
    int n = 256;
    if (getgrouplist(user, pw.pw_gid, groups, &n) < 0)
        return false;
    for (int i = 0; i < n; i++)
        if (groups[i] == g.gr_gid)
            return true;
    return false;
}

int auth_pam_authenticate(struct auth_attempt *a)
{
    struct pam_conv conv = {converse, a};
    pam_handle_t *h = NULL;
    int rc = pam_start(a->cfg->pam_service, a->user, &conv, &h);
    if (rc == PAM_SUCCESS)
        rc = pam_authenticate(h, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
    if (rc == PAM_SUCCESS)
        rc = pam_acct_mgmt(h, PAM_SILENT);
    if (rc != PAM_SUCCESS)
        snprintf(a->why, sizeof(a->why), "PAM: %s", pam_strerror(h, rc));
    pam_end(h, rc);
    if (rc != PAM_SUCCESS)
        return -1;
    a->ok = true;
    a->admin = a->cfg->admin_group[0] && in_group(a->user, a->cfg->admin_group);
    return 0;
}
