/* USB devices on a captured tree and the resolution of what a user asks for. */
#include "host/usb.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../sysfs/fixture.h"

static char err[512];

static void lists_devices_by_bus_and_port(void **state)
{
    (void)state;
    struct usb_list l;
    assert_int_equal(usb_scan(fx_tree("usb"), &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 7);
    static const char *const order[] = {"usb1", "1-1", "1-1.1", "1-1.2",
                                        "1-2",  "1-3", "usb2"};
    for (size_t i = 0; i < 7; i++)
        assert_string_equal(l.v[i].port, order[i]);

    const struct usbdev *kb = &l.v[2];
    assert_int_equal(kb->vendor, 0x046d);
    assert_int_equal(kb->product, 0xc31c);
    assert_int_equal(kb->bus, 1);
    assert_int_equal(kb->devnum, 4);
    assert_string_equal(kb->devpath, "1.1");
    assert_string_equal(kb->speed, "1.5");
    assert_int_equal(kb->dev_class, 0x00);
    assert_int_equal(kb->cls, 0x03); /* from its interface */
    assert_string_equal(kb->name, "Logitech, Inc. Keyboard K120");
    assert_string_equal(kb->manufacturer, "Logitech");
    assert_false(kb->hub);

    const struct usbdev *cam = &l.v[4];
    assert_int_equal(cam->dev_class, 0xef); /* interface association */
    assert_int_equal(cam->cls, 0x0e);
    assert_string_equal(cam->product_str, ""); /* it has no product string */
    assert_string_equal(cam->name, "Logitech, Inc. Webcam C270");

    const struct usbdev *stick = &l.v[3];
    assert_string_equal(stick->manufacturer, "SanDisk"); /* padded on the device */
    assert_string_equal(stick->serial, "4C530001230815107432");
    assert_int_equal(stick->cls, 0x08);

    assert_true(l.v[0].root_hub);
    assert_true(l.v[0].hub);
    assert_true(l.v[1].hub);
    assert_false(l.v[1].root_hub);
    assert_string_equal(l.v[6].speed, "10000");
    char buf[16];
    assert_string_equal(usb_class_name(0x08, buf, sizeof(buf)), "Mass Storage");
    assert_string_equal(usb_class_name(0x42, buf, sizeof(buf)), "Class 42");
    usb_list_free(&l);
}

static void requests_resolve_to_one_device(void **state)
{
    (void)state;
    struct usb_list l;
    const struct usbdev *d;
    assert_int_equal(usb_scan(fx_tree("usb"), &l, err, sizeof(err)), 0);
    assert_int_equal(usb_resolve(&l, "046d:c31c", &d, err, sizeof(err)), 0);
    assert_string_equal(d->port, "1-1.1");
    assert_int_equal(usb_resolve(&l, "046D:0825", &d, err, sizeof(err)), 0);
    assert_string_equal(d->port, "1-2");
    assert_int_equal(usb_resolve(&l, "1-3", &d, err, sizeof(err)), 0);
    assert_int_equal(d->devnum, 6);
    assert_int_equal(usb_resolve(&l, "1-1.2", &d, err, sizeof(err)), 0);
    assert_string_equal(d->serial, "4C530001230815107432");

    /* two identical sticks: the user must say which */
    assert_int_equal(usb_resolve(&l, "0781:5567", &d, err, sizeof(err)), -1);
    assert_null(d);
    assert_string_equal(err,
                        "usb: 0781:5567 is ambiguous: 2 devices match (1-1.2 SanDisk "
                        "Corp. Cruzer Blade and 1-3 SanDisk Corp. Cruzer Blade); ask for "
                        "one by its port (BUS-PORT), such as 1-1.2");

    assert_int_equal(usb_resolve(&l, "1-1", &d, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "usb: 1-1 (Genesys Logic, Inc. Hub) cannot be given to a guest: "
                        "it is a hub; give the devices on it instead");
    assert_int_equal(usb_resolve(&l, "1d6b:0002", &d, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "usb: usb1 (Linux Foundation 2.0 root hub) cannot be given to a "
                        "guest: it is a root hub (the host controller's own ports)");
    assert_int_equal(usb_resolve(&l, "1234:5678", &d, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "usb: no device 1234:5678 is plugged in (qdesk host usb lists "
                        "them)");
    assert_int_equal(usb_resolve(&l, "2-4", &d, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "usb: nothing is plugged into port 2-4 (qdesk host usb lists the "
                        "devices)");
    static const char *const bad[] = {"",          "usb1",   "1-",
                                      "-1",        "1-1..2", "0781:55670",
                                      "0781-55x7", "1-1.2 ", "g781:5567"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(usb_resolve(&l, bad[i], &d, err, sizeof(err)), -1);
        if (!strstr(err, "is neither VID:PID"))
            fail_msg("%s: %s", bad[i], err);
    }
    usb_list_free(&l);
}

static void no_usb_is_an_empty_list(void **state)
{
    (void)state;
    struct usb_list l;
    assert_int_equal(usb_scan(fx_tree("gvtg"), &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 0);
    usb_list_free(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lists_devices_by_bus_and_port),
        cmocka_unit_test(requests_resolve_to_one_device),
        cmocka_unit_test(no_usb_is_an_empty_list),
    };
    return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}
