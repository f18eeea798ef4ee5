/* What a VMI's phase and conditions mean for a session, and Kubernetes quantities. */
#include "runner/kubevirt.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

static int state_of(const char *json, bool *unsched, char *msg, size_t msgsz)
{
    json_t *vmi = json_loads(json, 0, NULL);
    assert_non_null(vmi);
    int st = kubevirt_vmi_state(vmi, unsched, msg, msgsz);
    json_decref(vmi);
    return st;
}

static void phases(void **state)
{
    (void)state;
    bool u;
    char msg[512];
    assert_int_equal(state_of("{\"status\": {}}", &u, msg, sizeof(msg)), RUNNER_STARTING);
    assert_int_equal(state_of("{\"status\": {\"phase\": \"Scheduled\"}}", &u, msg,
                              sizeof(msg)),
                     RUNNER_STARTING);
    assert_string_equal(msg, "Scheduled on the cluster");
    assert_int_equal(state_of("{\"status\": {\"phase\": \"Running\", \"nodeName\": \"n1\"}}",
                              &u, msg, sizeof(msg)),
                     RUNNER_RUNNING);
    assert_int_equal(state_of("{\"status\": {\"phase\": \"Succeeded\"}}", &u, msg,
                              sizeof(msg)),
                     RUNNER_STOPPED);
    assert_string_equal(msg, "the guest powered off");
    assert_int_equal(state_of("{\"status\": {\"phase\": \"Unknown\"}}", &u, msg, sizeof(msg)),
                     -1);
}

static void unschedulable_carries_the_schedulers_reason(void **state)
{
    (void)state;
    bool u;
    char msg[512];
    int st = state_of("{\"status\": {\"phase\": \"Scheduling\", \"conditions\": [{\"type\": "
                      "\"PodScheduled\", \"status\": \"False\", \"reason\": "
                      "\"Unschedulable\", \"message\": \"0/3 nodes are available: 3 "
                      "Insufficient nvidia.com/TU104GL_Tesla_T4.\"}]}}",
                      &u, msg, sizeof(msg));
    assert_int_equal(st, RUNNER_STARTING);
    assert_true(u);
    assert_string_equal(
        msg, "no node can take it: 0/3 nodes are available: 3 Insufficient "
             "nvidia.com/TU104GL_Tesla_T4.");
    /* scheduled at last: no longer unschedulable */
    st = state_of("{\"status\": {\"phase\": \"Scheduling\", \"conditions\": [{\"type\": "
                  "\"PodScheduled\", \"status\": \"True\"}]}}",
                  &u, msg, sizeof(msg));
    assert_false(u);
}

static void failure_says_why(void **state)
{
    (void)state;
    bool u;
    char msg[512];
    assert_int_equal(
        state_of("{\"status\": {\"phase\": \"Failed\", \"conditions\": [{\"type\": "
                 "\"Ready\", \"status\": \"False\", \"message\": \"virt-launcher crashed\"}]}}",
                 &u, msg, sizeof(msg)),
        RUNNER_FAILED);
    assert_string_equal(msg, "the VMI failed: virt-launcher crashed");
    assert_int_equal(state_of("{\"status\": {\"phase\": \"Failed\", \"reason\": "
                              "\"NodeUnresponsive\"}}",
                              &u, msg, sizeof(msg)),
                     RUNNER_FAILED);
    assert_string_equal(msg, "the VMI failed: NodeUnresponsive");
}

static void quantities(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(kubevirt_quantity_milli("500m", &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(kubevirt_quantity_milli("4", &v), 0);
    assert_int_equal(v, 4000);
    assert_int_equal(kubevirt_quantity_milli("1.5", &v), 0);
    assert_int_equal(v, 1500);
    assert_int_equal(kubevirt_quantity_milli("4 cores", &v), -1);
    assert_int_equal(kubevirt_quantity_bytes("16Gi", &v), 0);
    assert_int_equal(v, 16ULL << 30);
    assert_int_equal(kubevirt_quantity_bytes("512Mi", &v), 0);
    assert_int_equal(v, 512ULL << 20);
    assert_int_equal(kubevirt_quantity_bytes("2G", &v), 0);
    assert_int_equal(v, 2000000000ULL);
    assert_int_equal(kubevirt_quantity_bytes("1073741824", &v), 0);
    assert_int_equal(v, 1ULL << 30);
    assert_int_equal(kubevirt_quantity_bytes("-1Gi", &v), -1);
    assert_int_equal(kubevirt_quantity_bytes("1Qi", &v), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(phases),
        cmocka_unit_test(unschedulable_carries_the_schedulers_reason),
        cmocka_unit_test(failure_says_why),
        cmocka_unit_test(quantities),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
