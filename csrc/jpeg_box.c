/* Decode only a box of a JPEG: the rows and columns a crop will read.
 *
 * libjpeg-turbo's TurboJPEG API (what FFCV's imdecode calls) decodes whole
 * images; its lossless-crop transform still entropy-decodes everything and
 * was measured slower than a full decode. The libjpeg API can do better:
 * jpeg_crop_scanline restricts IDCT, upsampling and colour conversion to the
 * box's columns, jpeg_skip_scanlines skips the IDCT of the rows above it,
 * and rows below it are never decoded at all.
 *
 * The exported functions take plain integers and pointers so numba can call
 * them (through ctypes) from compiled code without the GIL. Errors never
 * exit: libjpeg's error_exit longjmps back and a negative code is returned.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

#define ERR_DECODE -1    /* libjpeg error (corrupt / unsupported stream) */
#define ERR_BOX -2       /* box outside the (scaled) image */
#define ERR_CAPACITY -3  /* output buffer too small */
#define ERR_CHANNELS -4  /* not a 1- or 3-component image, or output channels not 3 / 4 */

struct guard {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
};

static void guard_exit(j_common_ptr cinfo) { longjmp(((struct guard *)cinfo->err)->jump, 1); }
static void guard_quiet(j_common_ptr cinfo, int level) { (void)cinfo; (void)level; }

static int open_stream(struct jpeg_decompress_struct *cinfo, const unsigned char *data, uint64_t size) {
    jpeg_create_decompress(cinfo);
    jpeg_mem_src(cinfo, data, (unsigned long)size);
    jpeg_read_header(cinfo, TRUE);
    if (cinfo->num_components != 1 && cinfo->num_components != 3) return ERR_CHANNELS;
    cinfo->out_color_space = JCS_RGB;
    return 0;
}

/* Decode rows [top, top + h) and (at least) columns [left, left + w) of the
 * image scaled by 1/denom (box in scaled coordinates) into `out`, as RGB
 * (channels 3) or RGBX (channels 4: a pixel is one aligned 32-bit word, which
 * the resize kernel transposes). The columns decoded start at region[0]
 * (<= left, aligned down to the JPEG's MCU) and are region[1] wide: pixel
 * (y, x) of the box is out[(y * region[1] + x + left - region[0]) * channels + c].
 * Fast integer IDCT (as FFCV and TurboJPEG's TJFLAG_FASTDCT) when `fast_dct`,
 * else the accurate one (as torchvision). Returns 0 or a negative ERR_* code. */
int augpipe_jpeg_decode_box(const unsigned char *data, uint64_t size, int64_t top, int64_t left, int64_t h,
                            int64_t w, int64_t denom, int64_t fast_dct, int64_t channels, unsigned char *out,
                            uint64_t capacity, int64_t *region) {
    struct jpeg_decompress_struct cinfo;
    struct guard err;
    volatile int rc = 0;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = guard_exit;
    err.pub.emit_message = guard_quiet; /* warnings (e.g. premature end) decode on, as TurboJPEG does */
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return ERR_DECODE;
    }
    rc = open_stream(&cinfo, data, size);
    if (rc == 0) {
        JDIMENSION x0, cw, row, stride;
        JSAMPROW rows[16];
        cinfo.scale_num = 1;
        cinfo.scale_denom = (unsigned int)denom;
        cinfo.dct_method = fast_dct ? JDCT_IFAST : JDCT_ISLOW;
        if (channels == 4) cinfo.out_color_space = JCS_EXT_RGBX;
        jpeg_calc_output_dimensions(&cinfo);
        if (channels != 3 && channels != 4) {
            rc = ERR_CHANNELS;
        } else if (top < 0 || left < 0 || h <= 0 || w <= 0 || top + h > (int64_t)cinfo.output_height ||
            left + w > (int64_t)cinfo.output_width) {
            rc = ERR_BOX;
        } else {
            jpeg_start_decompress(&cinfo);
            /* One extra column each side: chroma upsampling replicates the decoded
             * region's edge samples, so the box's own edge columns would differ
             * from a full decode's (measured); with the margin they are identical. */
            x0 = (JDIMENSION)(left > 0 ? left - 1 : 0);
            cw = (JDIMENSION)((left + w < (int64_t)cinfo.output_width ? left + w + 1 : left + w) - x0);
            if (cw < cinfo.output_width) jpeg_crop_scanline(&cinfo, &x0, &cw);
            stride = cw * (JDIMENSION)channels;
            if ((uint64_t)stride * (uint64_t)h > capacity) {
                rc = ERR_CAPACITY;
            } else {
                if (top > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)top);
                while (cinfo.output_scanline < (JDIMENSION)(top + h)) {
                    JDIMENSION want = (JDIMENSION)(top + h) - cinfo.output_scanline, k;
                    if (want > 16) want = 16;
                    for (k = 0; k < want; k++)
                        rows[k] = out + (uint64_t)(cinfo.output_scanline - top + k) * stride;
                    row = jpeg_read_scanlines(&cinfo, rows, want);
                    if (row == 0) break;
                }
                region[0] = x0;
                region[1] = cw;
            }
            jpeg_abort_decompress(&cinfo); /* rows below the box: never decoded */
        }
    }
    jpeg_destroy_decompress(&cinfo);
    return rc;
}

/* ------------------------------------------------------------------ headers
 * What an image folder's scan needs of each file, read without decoding:
 * height, width, components and the file size from the JPEG markers (SOFn)
 * or the PNG IHDR chunk, and whether a JPEG ends with its end-of-image marker.
 * One call scans a whole chunk of paths, so Python threads calling it through
 * ctypes run in parallel (the GIL is released for the call).
 *
 * kinds[i]: 1 JPEG with 1 or 3 components and an end-of-image marker, 3 the
 * same without it (truncated), 2 a PNG or a JPEG of another component count,
 * 0 unreadable (cannot open, empty, or a JPEG/PNG whose header is cut),
 * -1 another format: the caller asks PIL. info[i] = {height, width, bytes}. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_CHUNK 65536

static int jpeg_dims(const unsigned char *b, int64_t n, int64_t *h, int64_t *w, int *comps) {
    int64_t pos = 2;
    while (pos + 1 < n) {
        if (b[pos] != 0xFF) return 0; /* not on a marker: corrupt */
        while (pos < n && b[pos] == 0xFF) pos++;
        if (pos >= n) return -1;
        unsigned char m = b[pos++];
        if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue; /* no length */
        if (m == 0xD9 || m == 0xDA) return 0;                               /* EOI / SOS before SOF */
        if (pos + 2 > n) return -1;
        int64_t len = ((int64_t)b[pos] << 8) | b[pos + 1];
        if (len < 2) return 0;
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (pos + 8 > n) return -1;
            *h = ((int64_t)b[pos + 3] << 8) | b[pos + 4];
            *w = ((int64_t)b[pos + 5] << 8) | b[pos + 6];
            *comps = b[pos + 7];
            return (*h > 0 && *w > 0) ? 1 : 0;
        }
        pos += len;
    }
    return -1; /* ran out of bytes: the caller reads more */
}

static int8_t scan_one(const char *path, int64_t *info) {
    static const unsigned char png[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    unsigned char head[HEADER_CHUNK], tail[2];
    struct stat st;
    int8_t kind = 0;
    int fd = open(path, O_RDONLY);
    info[0] = info[1] = info[2] = 0;
    if (fd < 0) return 0;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) { close(fd); return 0; }
    info[2] = (int64_t)st.st_size;
    ssize_t got = pread(fd, head, HEADER_CHUNK, 0);
    if (got >= 4 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF) {
        int comps = 0, r = jpeg_dims(head, got, &info[0], &info[1], &comps);
        if (r < 0 && st.st_size > got) { /* SOF beyond the first chunk (large EXIF): read it all */
            unsigned char *all = (unsigned char *)malloc((size_t)st.st_size);
            if (all && pread(fd, all, (size_t)st.st_size, 0) == st.st_size)
                r = jpeg_dims(all, st.st_size, &info[0], &info[1], &comps);
            free(all);
        }
        if (r == 1) {
            if (comps == 1 || comps == 3)
                kind = (pread(fd, tail, 2, st.st_size - 2) == 2 && tail[0] == 0xFF && tail[1] == 0xD9) ? 1 : 3;
            else
                kind = 2;
        } else {
            info[0] = info[1] = 0;
        }
    } else if (got >= 24 && memcmp(head, png, 8) == 0 && memcmp(head + 12, "IHDR", 4) == 0) {
        info[1] = ((int64_t)head[16] << 24) | ((int64_t)head[17] << 16) | ((int64_t)head[18] << 8) | head[19];
        info[0] = ((int64_t)head[20] << 24) | ((int64_t)head[21] << 16) | ((int64_t)head[22] << 8) | head[23];
        kind = 2;
    } else if (got > 0) {
        kind = -1;
    }
    close(fd);
    return kind;
}

int64_t augpipe_scan_headers(const char *paths, const int64_t *offsets, int64_t n, int64_t *info,
                             int8_t *kinds) {
    for (int64_t i = 0; i < n; i++) kinds[i] = scan_one(paths + offsets[i], info + 3 * i);
    return n;
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jpegbox",
                                    "Box-restricted JPEG decoding (see augpipe.kernels.jpeg).", -1, NULL};

PyMODINIT_FUNC PyInit__jpegbox(void) { return PyModule_Create(&module); }
