/* Fuzzes the client-to-server RFB filter: any bytes, split at fuzzer-chosen points,
 * through a view-only and a control filter. Invariants:
 *   - no call writes more than it was fed plus RFB_FILTER_SLACK, and no stream
 *     comes out longer than it went in;
 *   - a control filter forwards the stream unchanged but for the shared flag;
 *   - what a view-only filter forwards, parsed again, holds no input message, and
 *     holds exactly the messages it counted as forwarded. */
#include "web/rfb.h"

#include <stdlib.h>
#include <string.h>

static void check(int cond)
{
    if (!cond)
        abort();
}

/* Feeds data in pieces whose sizes come from seed; returns the output length and
 * whether the filter is still ok. */
static size_t run(struct rfb_filter *f, const uint8_t *data, size_t size, uint32_t seed,
                  uint8_t *out, int *ok)
{
    size_t o = 0;
    char err[256];
    *ok = 1;
    for (size_t i = 0; i < size;) {
        seed = seed * 1103515245u + 12345u;
        size_t n = 1 + (seed >> 16) % 97;
        if (n > size - i)
            n = size - i;
        size_t got = (size_t)-1;
        int rc = rfb_filter_feed(f, data + i, n, out + o, &got, err, sizeof(err));
        check(got <= n + RFB_FILTER_SLACK);
        o += got;
        check(o <= i + n);
        i += n;
        if (rc < 0) {
            check(err[0] != 0);
            *ok = 0;
            break;
        }
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint32_t seed = (uint32_t)data[0] << 8 | data[1];
    data += 2;
    size -= 2;
    uint8_t *out_view = malloc(size + RFB_FILTER_SLACK);
    uint8_t *out_ctl = malloc(size + RFB_FILTER_SLACK);
    uint8_t *again = malloc(size + RFB_FILTER_SLACK);
    check(out_view && out_ctl && again);

    struct rfb_filter view, ctl, reparse;
    int ok_view, ok_ctl, ok_again;
    rfb_filter_init(&view, true);
    rfb_filter_init(&ctl, false);
    size_t n_view = run(&view, data, size, seed, out_view, &ok_view);
    size_t n_ctl = run(&ctl, data, size, seed ^ 0x5555, out_ctl, &ok_ctl);

    /* a control viewer's stream is forwarded unchanged but for the shared flag */
    size_t init_at = ctl.minor == 3 ? 12 : 13;
    for (size_t i = 0; i < n_ctl; i++)
        check(out_ctl[i] == (i == init_at ? 1 : data[i]));
    check(ok_view == ok_ctl); /* errors depend on the bytes, not on the splits */

    /* parse the view-only output again as a control viewer would */
    rfb_filter_init(&reparse, false);
    size_t n_again = run(&reparse, out_view, n_view, seed, again, &ok_again);
    check(ok_again); /* only whole, valid messages are ever forwarded */
    check(n_again <= n_view);
    static const enum rfb_msg input[] = {
        RFB_KEY_EVENT,        RFB_POINTER_EVENT,           RFB_CLIENT_CUT_TEXT,
        RFB_SET_DESKTOP_SIZE, RFB_QEMU_EXTENDED_KEY_EVENT, RFB_XVP};
    for (size_t k = 0; k < sizeof(input) / sizeof(input[0]); k++) {
        check(reparse.forwarded[input[k]] == 0);
        check(view.forwarded[input[k]] == 0);
    }
    for (int k = 0; k < RFB_MSG_KINDS; k++)
        check(reparse.forwarded[k] == view.forwarded[k]);
    /* both saw the same messages while both were fine */
    if (ok_view && ok_ctl)
        for (int k = 0; k < RFB_MSG_KINDS; k++)
            check(ctl.forwarded[k] == view.forwarded[k] + view.dropped[k]);
    free(out_view);
    free(out_ctl);
    free(again);
    return 0;
}
