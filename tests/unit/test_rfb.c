/* The client-to-server RFB filter: what reaches QEMU from a control viewer and from
 * a view-only one, however the stream is split, and which streams are refused. */
#include "web/rfb.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

struct bytes {
    uint8_t b[1 << 16];
    size_t n;
};

static void put(struct bytes *s, const void *p, size_t n)
{
    assert_true(s->n + n <= sizeof(s->b));
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

#define PUT(s, ...)                                                                      \
    do {                                                                                 \
        const uint8_t m_[] = {__VA_ARGS__};                                              \
        put(s, m_, sizeof(m_));                                                          \
    } while (0)

/* The RFB 3.8 handshake of a client: version, security None, ClientInit (exclusive). */
static void handshake(struct bytes *s)
{
    put(s, "RFB 003.008\n", 12);
    PUT(s, 1, 0);
}

/* Every message kind the filter knows, once; input kinds marked in *input. */
static void every_message(struct bytes *s, struct bytes *allowed)
{
    struct bytes *both[2] = {s, allowed};
    for (int i = 0; i < 2; i++) {
        struct bytes *t = both[i];
        /* SetPixelFormat: 32bpp true colour */
        PUT(t, 0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0);
        /* SetEncodings: raw, copyrect, QEMU extended key event pseudo-encoding */
        PUT(t, 2, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xfe, 0xfe);
        /* FramebufferUpdateRequest, incremental, 1920x1080 */
        PUT(t, 3, 1, 0, 0, 0, 0, 7, 128, 4, 56);
        if (i == 0) {
            PUT(t, 4, 1, 0, 0, 0, 0, 0, 'a'); /* KeyEvent down 'a' */
            PUT(t, 5, 1, 0, 10, 0, 20);       /* PointerEvent */
            PUT(t, 6, 0, 0, 0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'); /* ClientCutText */
            PUT(t, 6, 0, 0, 0, 0xff, 0xff, 0xff, 0xfc, 1, 2, 3,
                4);                             /* extended, 4 bytes */
            PUT(t, 251, 0, 0, 100, 0, 50, 1, 0, /* SetDesktopSize */
                0, 0, 0, 1, 0, 0, 0, 0, 0, 100, 0, 50, 0, 0, 0, 0);
            PUT(t, 255, 0, 0, 1, 0, 0, 0, 'a', 0, 0, 0, 30); /* QEMU ext. key */
            PUT(t, 250, 0, 1, 4);                            /* xvp reboot */
        }
        PUT(t, 150, 1, 0, 0, 0, 0, 7, 128, 4, 56);     /* EnableContinuousUpdates */
        PUT(t, 248, 0, 0, 0, 0, 0, 0, 3, 2, 'h', 'i'); /* ClientFence, 2 bytes */
        PUT(t, 255, 1, 0, 0);                          /* QEMU audio enable */
        PUT(t, 255, 1, 0, 2, 3, 2, 0, 0, 0xac, 0x44);  /* QEMU audio set format */
    }
}

/* Feeds s whole (or in pieces of size step) and collects the output. */
static int feed_all(struct rfb_filter *f, const uint8_t *in, size_t len, size_t step,
                    struct bytes *out, char *err)
{
    out->n = 0;
    for (size_t i = 0; i < len;) {
        size_t n = step && len - i > step ? step : len - i;
        uint8_t buf[sizeof(out->b) + RFB_FILTER_SLACK];
        size_t got = 0;
        int rc = rfb_filter_feed(f, in + i, n, buf, &got, err, 256);
        assert_true(got <= n + RFB_FILTER_SLACK);
        put(out, buf, got);
        if (rc < 0)
            return -1;
        i += n;
    }
    return 0;
}

static void a_control_viewers_key_event_arrives_byte_exact(void **state)
{
    (void)state;
    struct bytes in = {0}, out;
    char err[256];
    handshake(&in);
    const uint8_t key[] = {4, 1, 0, 0, 0, 0, 0xff, 0x0d}; /* Return, down */
    put(&in, key, sizeof(key));
    struct rfb_filter f;
    rfb_filter_init(&f, false);
    assert_int_equal(feed_all(&f, in.b, in.n, 0, &out, err), 0);
    assert_int_equal(out.n, in.n);
    assert_memory_equal(out.b, "RFB 003.008\n\x01\x01", 14); /* shared flag forced */
    assert_memory_equal(out.b + 14, key, sizeof(key));
    assert_int_equal(f.minor, 8);
    assert_int_equal(f.forwarded[RFB_KEY_EVENT], 1);
}

static void view_only_input_is_dropped_and_the_rest_forwarded(void **state)
{
    (void)state;
    struct bytes in = {0}, allowed = {0}, out;
    char err[256];
    handshake(&in);
    handshake(&allowed);
    allowed.b[13] = 1; /* the shared flag as forwarded */
    every_message(&in, &allowed);

    struct rfb_filter f;
    rfb_filter_init(&f, true);
    assert_int_equal(feed_all(&f, in.b, in.n, 0, &out, err), 0);
    assert_int_equal(out.n, allowed.n);
    assert_memory_equal(out.b, allowed.b, allowed.n);
    for (int k = 0; k < RFB_MSG_KINDS; k++) {
        bool input = k == RFB_KEY_EVENT || k == RFB_POINTER_EVENT || k == RFB_XVP ||
                     k == RFB_SET_DESKTOP_SIZE || k == RFB_QEMU_EXTENDED_KEY_EVENT;
        if (k == RFB_CLIENT_CUT_TEXT)
            assert_int_equal(f.dropped[k], 2); /* plain and extended */
        else
            assert_int_equal(f.dropped[k], input ? 1 : 0);
        if (k == RFB_QEMU_AUDIO)
            assert_int_equal(f.forwarded[k], 2);
        else
            assert_int_equal(f.forwarded[k], input || k == RFB_CLIENT_CUT_TEXT ? 0 : 1);
    }

    /* the same stream from a control viewer goes through whole */
    rfb_filter_init(&f, false);
    assert_int_equal(feed_all(&f, in.b, in.n, 0, &out, err), 0);
    in.b[13] = 1;
    assert_int_equal(out.n, in.n);
    assert_memory_equal(out.b, in.b, in.n);
}

/* Splitting the stream anywhere, and feeding it byte by byte, changes nothing. */
static void every_split_point_parses_identically(void **state)
{
    (void)state;
    struct bytes in = {0}, allowed = {0}, whole, a, b;
    char err[256];
    handshake(&in);
    handshake(&allowed);
    every_message(&in, &allowed);
    for (int view_only = 0; view_only < 2; view_only++) {
        struct rfb_filter ref, f;
        rfb_filter_init(&ref, view_only);
        assert_int_equal(feed_all(&ref, in.b, in.n, 0, &whole, err), 0);
        for (size_t cut = 0; cut <= in.n; cut++) {
            rfb_filter_init(&f, view_only);
            assert_int_equal(feed_all(&f, in.b, cut, 0, &a, err), 0);
            assert_int_equal(feed_all(&f, in.b + cut, in.n - cut, 0, &b, err), 0);
            put(&a, b.b, b.n);
            assert_int_equal(a.n, whole.n);
            assert_memory_equal(a.b, whole.b, whole.n);
            assert_memory_equal(f.forwarded, ref.forwarded, sizeof(ref.forwarded));
            assert_memory_equal(f.dropped, ref.dropped, sizeof(ref.dropped));
        }
        for (size_t step = 1; step <= 7; step++) {
            rfb_filter_init(&f, view_only);
            assert_int_equal(feed_all(&f, in.b, in.n, step, &a, err), 0);
            assert_int_equal(a.n, whole.n);
            assert_memory_equal(a.b, whole.b, whole.n);
        }
    }
}

static void the_shared_flag_is_forced_in_every_version(void **state)
{
    (void)state;
    struct rfb_filter f;
    struct bytes out;
    char err[256];
    /* 3.3: no security choice from the client, ClientInit follows the version */
    rfb_filter_init(&f, false);
    assert_int_equal(feed_all(&f, (const uint8_t *)"RFB 003.003\n\x00", 13, 0, &out, err),
                     0);
    assert_int_equal(out.n, 13);
    assert_int_equal(out.b[12], 1);
    assert_int_equal(f.minor, 3);
    /* 3.7 */
    rfb_filter_init(&f, true);
    assert_int_equal(
        feed_all(&f, (const uint8_t *)"RFB 003.007\n\x01\x00", 14, 0, &out, err), 0);
    assert_int_equal(out.b[13], 1);
    assert_int_equal(f.phase, RFB_PHASE_MESSAGES);
}

static void refused(const uint8_t *in, size_t len, const char *want)
{
    for (size_t step = 0; step <= 1; step++) {
        struct rfb_filter f;
        struct bytes out;
        char err[256] = "";
        rfb_filter_init(&f, false);
        assert_int_equal(feed_all(&f, in, len, step, &out, err), -1);
        if (!strstr(err, want))
            fail_msg("error \"%s\" does not mention \"%s\"", err, want);
        assert_int_equal(f.phase, RFB_PHASE_FAILED);
        /* and stays failed */
        uint8_t buf[16];
        size_t got = 99;
        assert_int_equal(
            rfb_filter_feed(&f, (const uint8_t *)"x", 1, buf, &got, err, 256), -1);
        assert_int_equal(got, 0);
    }
}

static void bad_streams_are_refused(void **state)
{
    (void)state;
    struct bytes s;
#define HS "RFB 003.008\n\x01\x01"
    refused((const uint8_t *)"RFB 004.000\n", 12, "RFB 004.000\\x0a");
    refused((const uint8_t *)"GET / HTTP/1.1\r\n", 16, "the proxy speaks RFB 3.3");
    refused((const uint8_t *)"RFB 003.008\n\x02", 13, "security type 2");
    refused((const uint8_t *)"RFB 003.008\n\x00", 13, "security type 0");
    refused((const uint8_t *)HS "\x07", 15, "unknown client message type 7");
    refused((const uint8_t *)HS "\xff\x02", 16, "unknown QEMU client message subtype 2");
    refused((const uint8_t *)HS "\xff\x01\x00\x03", 18, "unknown QEMU audio operation 3");
    refused((const uint8_t *)HS "\x02\x00\x04\x01", 18, "1025 encodings");
    refused((const uint8_t *)HS "\xf8\x00\x00\x00\x00\x00\x00\x00\x41", 23, "65 bytes");
    /* ClientCutText: 1 MiB + 1, its extended (negative) form, and INT32_MIN */
    refused((const uint8_t *)HS "\x06\x00\x00\x00\x00\x10\x00\x01", 22, "1048577 bytes");
    refused((const uint8_t *)HS "\x06\x00\x00\x00\xff\xef\xff\xff", 22, "1048577 bytes");
    refused((const uint8_t *)HS "\x06\x00\x00\x00\x80\x00\x00\x00", 22,
            "2147483648 bytes");

    /* nothing of a refused message is forwarded, but what came before is */
    struct rfb_filter f;
    struct bytes out;
    char err[256];
    memset(&s, 0, sizeof(s));
    put(&s, HS, 14);
    PUT(&s, 3, 0, 0, 0, 0, 0, 0, 10, 0, 10);
    PUT(&s, 6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff);
    rfb_filter_init(&f, false);
    assert_int_equal(feed_all(&f, s.b, s.n, 0, &out, err), -1);
    assert_int_equal(out.n, 24);
    assert_memory_equal(out.b, s.b, 24);
#undef HS
}

/* A clipboard of exactly the limit passes, streamed without being held. */
static void the_largest_clipboard_streams_through(void **state)
{
    (void)state;
    struct rfb_filter f;
    char err[256];
    uint8_t hdr[22] = "RFB 003.008\n\x01\x01\x06\x00\x00\x00\x00\x10\x00\x00";
    static uint8_t body[RFB_MAX_CUT_TEXT], out[RFB_MAX_CUT_TEXT + RFB_FILTER_SLACK];
    memset(body, 'x', sizeof(body));
    size_t got;
    rfb_filter_init(&f, false);
    assert_int_equal(rfb_filter_feed(&f, hdr, sizeof(hdr), out, &got, err, 256), 0);
    assert_int_equal(got, sizeof(hdr));
    assert_int_equal(rfb_filter_feed(&f, body, 1000, out, &got, err, 256), 0);
    assert_int_equal(got, 1000); /* the body flows as it comes */
    assert_int_equal(rfb_filter_feed(&f, body, sizeof(body) - 1000, out, &got, err, 256),
                     0);
    assert_int_equal(got, sizeof(body) - 1000);
    /* a SetEncodings header is held until its count is known */
    assert_int_equal(
        rfb_filter_feed(&f, (const uint8_t *)"\x02\x00\x00", 3, out, &got, err, 256), 0);
    assert_int_equal(got, 0);
    assert_int_equal(
        rfb_filter_feed(&f, (const uint8_t *)"\x01\x00\x00", 3, out, &got, err, 256), 0);
    assert_int_equal(got, 6);
    assert_memory_equal(out, "\x02\x00\x00\x01\x00\x00", 6);
    assert_int_equal(f.forwarded[RFB_SET_ENCODINGS], 1);
    assert_int_equal(f.forwarded[RFB_CLIENT_CUT_TEXT], 1);
}

/* Random input never makes the filter write more than allowed, and what a
 * view-only filter lets through holds no input when parsed again. */
static void random_input_respects_the_output_bound(void **state)
{
    (void)state;
    uint32_t seed = 12345;
    for (int round = 0; round < 2000; round++) {
        uint8_t in[512];
        struct bytes out = {0};
        size_t len = 14 + (seed % 400);
        memcpy(in, "RFB 003.008\n\x01\x00", 14);
        for (size_t i = 14; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            /* mostly known types so that parsing goes deep */
            uint8_t b = (uint8_t)(seed >> 16);
            in[i] =
                (seed >> 8) % 3
                    ? (uint8_t)("\x00\x02\x03\x04\x05\x06\x96\xf8\xfa\xfb\xff"[b % 11])
                    : b;
        }
        struct rfb_filter f, check;
        rfb_filter_init(&f, true);
        size_t total = 0;
        char err[256];
        for (size_t i = 0; i < len;) {
            seed = seed * 1103515245u + 12345u;
            size_t n = 1 + (seed >> 16) % 37;
            if (n > len - i)
                n = len - i;
            uint8_t buf[64];
            size_t got;
            int rc = rfb_filter_feed(&f, in + i, n, buf, &got, err, sizeof(err));
            assert_true(got <= n + RFB_FILTER_SLACK);
            put(&out, buf, got);
            total += got;
            i += n;
            if (rc < 0)
                break;
        }
        assert_true(total <= len);
        rfb_filter_init(&check, false);
        struct bytes again;
        feed_all(&check, out.b, out.n, 0, &again, err);
        assert_int_equal(check.forwarded[RFB_KEY_EVENT], 0);
        assert_int_equal(check.forwarded[RFB_POINTER_EVENT], 0);
        assert_int_equal(check.forwarded[RFB_CLIENT_CUT_TEXT], 0);
        assert_int_equal(check.forwarded[RFB_QEMU_EXTENDED_KEY_EVENT], 0);
        assert_int_equal(check.forwarded[RFB_XVP], 0);
        assert_int_equal(check.forwarded[RFB_SET_DESKTOP_SIZE], 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_control_viewers_key_event_arrives_byte_exact),
        cmocka_unit_test(view_only_input_is_dropped_and_the_rest_forwarded),
        cmocka_unit_test(every_split_point_parses_identically),
        cmocka_unit_test(the_shared_flag_is_forced_in_every_version),
        cmocka_unit_test(bad_streams_are_refused),
        cmocka_unit_test(the_largest_clipboard_streams_through),
        cmocka_unit_test(random_input_respects_the_output_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
