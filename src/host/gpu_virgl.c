/* virgl: shared 3D. The guest gets virtio-vga-gl and QEMU renders its OpenGL through
 * virglrenderer on a host render node (-display egl-headless,rendernode=...). Nothing
 * is bound, so any number of guests share one node. A host without a render node
 * still gets a grant: plain virtio-vga, with a warning the user sees. */
#include "host/gpu.h"
#include "host/render.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int virgl_plan(const char *sysroot, const struct gpu_request *req,
                      struct gpu_grant *g, char *err, size_t errsz)
{
    struct render_node *nodes;
    size_t n;
    memset(g, 0, sizeof(*g));
    g->kind = GPU_KIND_VIRGL;
    if (render_scan(sysroot, &nodes, &n, err, errsz) < 0)
        return -1;
    const char *want = req->unit;
    if (!strncmp(want, "render:", 7))
        want += 7;
    if (!strncmp(want, "/dev/dri/", 9))
        want += 9;
    const struct render_node *chosen = NULL;
    for (size_t i = 0; i < n && !chosen; i++)
        if (!want[0] || !strcmp(nodes[i].name, want))
            chosen = &nodes[i];
    if (chosen) {
        snprintf(g->unit, sizeof(g->unit), "render:%s", chosen->name);
        snprintf(g->render_node, sizeof(g->render_node), "%s", chosen->path);
    } else if (want[0]) {
        snprintf(err, errsz, "virgl: there is no render node /dev/dri/%s", want);
        free(nodes);
        return -1;
    } else
        snprintf(g->warning, sizeof(g->warning),
                 "no 3D: this host has no GPU render node (/dev/dri/renderD*), so the "
                 "guest gets plain virtio-vga without virgl; load the GPU's DRM driver "
                 "(i915, amdgpu, nouveau) to share its 3D");
    free(nodes);
    return 0;
}

/* The render node is shared: nothing to prepare or release. */
const struct gpu_ops gpu_virgl_ops = {"virgl", virgl_plan, NULL, NULL};
