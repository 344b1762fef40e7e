/* libFuzzer targets for the IDX parser (csrc/idx.c), built standalone without Python:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *       -Icsrc csrc/idx.c csrc/common.c tests/fuzz/fuzz_idx.c -lz -o build/fuzz_idx
 *   (add -DMC_FUZZ_GZ for build/fuzz_idx_gz)
 *
 * fuzz_idx:    the input is the file content (raw IDX or gzip, sniffed as the parser does). Each
 *              input goes through both doors of the memory API (whole-buffer load, and open +
 *              read_payload with an expected magic and a max_bytes taken from the header) and
 *              the results must agree.
 * fuzz_idx_gz: the input is IDX content that the harness gzips itself (optionally split into two
 *              members, cut short, or followed by garbage, as its last byte says), so that the
 *              fuzzer spends its time on the header and the inflate loop, not on CRCs, and the
 *              raw seeds serve both targets.
 *              Differential oracle: the gzip of a content must load exactly as the raw content.
 * Invariants checked (abort() reports a finding): success means a payload of exactly
 * prod(dims) * elem_size bytes; failure means a known status code and a non-empty, terminated
 * message; nothing above max_bytes is ever allocated (-malloc_limit_mb catches a violation). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common.h"
#include "idx.h"

/* Large enough for any input up to -max_len=65536 x 1032 (deflate's ratio), small enough for
 * -malloc_limit_mb=256 to flag an allocation the header alone asked for. */
#define FUZZ_MAX_BYTES ((size_t)64 << 20)

static void check_error(mc_status st, const mc_error *err) {
    if (st != MC_ERR_FORMAT && st != MC_ERR_NOMEM && st != MC_ERR_ARG) abort();
    if (err->code != st) abort();
    if (memchr(err->msg, 0, sizeof err->msg) == NULL || err->msg[0] == 0) abort();
}

static size_t expected_bytes(const mc_idx_header *h) {
    size_t n = h->elem_size;
    for (int i = 0; i < h->ndim; i++) {
        if (h->dims[i] >= ((size_t)1 << 32)) abort();
        if (__builtin_mul_overflow(n, h->dims[i], &n)) abort();
    }
    return n;
}

/* Load data; on success *payload is mc_malloc'd (caller frees). Checks every invariant. */
static mc_status load(const uint8_t *data, size_t len, mc_idx_header *h, void **payload) {
    mc_error err = {0};
    mc_status st = mc_idx_load_mem(data, len, FUZZ_MAX_BYTES, h, payload, &err);
    if (st != MC_OK) {
        check_error(st, &err);
        if (*payload) abort();
        return st;
    }
    if (!*payload) abort();
    if (h->ndim < 1 || h->ndim > MC_IDX_MAX_NDIM) abort();
    if (h->elem_size != mc_idx_type_size(h->type) || h->elem_size == 0) abort();
    if (h->nbytes != expected_bytes(h) || h->nbytes > FUZZ_MAX_BYTES) abort();
    if (h->header_bytes != 4 + 4 * (size_t)h->ndim) abort();
    /* Raw input: the file is exactly header + payload. */
    if (!h->gzip && len != h->header_bytes + h->nbytes) abort();
    return MC_OK;
}

/* The second door: open with the exact magic and max_bytes = nbytes must give the same bytes;
 * max_bytes = nbytes - 1 must be refused before reading. */
static void second_door(const uint8_t *data, size_t len, const mc_idx_header *h,
                        const void *payload) {
    uint32_t magic = ((uint32_t)h->type << 8) | (uint32_t)h->ndim;
    mc_idx_reader *r = NULL;
    mc_idx_header h2;
    mc_error err = {0};
    mc_status st = mc_idx_open_mem(&r, data, len, "fuzz", h->nbytes, magic, &h2, &err);
    if (st != MC_OK) abort();
    if (h2.nbytes != h->nbytes || h2.ndim != h->ndim || h2.type != h->type) abort();
    void *buf = malloc(h->nbytes ? h->nbytes : 1);
    if (!buf) abort();
    st = mc_idx_read_payload(r, buf, &err);
    if (st != MC_OK) abort();
    if (memcmp(buf, payload, h->nbytes) != 0) abort();
    /* A second read of the same reader is an argument error, not a crash. */
    st = mc_idx_read_payload(r, buf, &err);
    if (st != MC_ERR_ARG) abort();
    mc_idx_close(r);
    free(buf);
    if (h->nbytes > 0) {
        st = mc_idx_open_mem(&r, data, len, "fuzz", h->nbytes - 1, 0, &h2, &err);
        if (st != MC_ERR_FORMAT || r != NULL) abort();
    }
    st = mc_idx_open_mem(&r, data, len, "fuzz", FUZZ_MAX_BYTES, magic ^ 0x100u, &h2, &err);
    if (st != MC_ERR_FORMAT || r != NULL) abort();
}

#ifndef MC_FUZZ_GZ

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mc_idx_header h;
    void *payload = NULL;
    if (load(data, size, &h, &payload) == MC_OK) {
        second_door(data, size, &h, payload);
        mc_free(payload);
    }
    return 0;
}

#else

/* gzip `len` bytes of src into out (cap bytes); returns the compressed size or 0. */
static size_t gzip_into(const uint8_t *src, size_t len, uint8_t *out, size_t cap, int level) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
    zs.next_in = (Bytef *)(uintptr_t)src;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int rc = deflate(&zs, Z_FINISH);
    size_t n = cap - zs.avail_out;
    deflateEnd(&zs);
    return rc == Z_STREAM_END ? n : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > (1u << 20)) return 0;
    const uint8_t ctl = data[size - 1];
    const uint8_t *content = data;
    const size_t n = size;
    const size_t cap = 2 * n + 256;
    uint8_t *gz = malloc(cap + 16);
    if (!gz) return 0;
    const int level = (ctl >> 5) & 1 ? 9 : 1;
    size_t glen;
    const int mode = ctl & 3;  /* 0 one member, 1 two members, 2 cut short, 3 garbage after */
    if (mode == 1) {
        size_t split = n ? ((size_t)(ctl >> 2) * 131u) % (n + 1) : 0;
        size_t a = gzip_into(content, split, gz, cap, level);
        size_t b = a ? gzip_into(content + split, n - split, gz + a, cap - a, level) : 0;
        glen = b ? a + b : 0;
    } else {
        glen = gzip_into(content, n, gz, cap, level);
    }
    if (glen == 0) {
        free(gz);
        return 0;
    }
    if (mode == 2) glen -= 1 + (ctl >> 2) % (glen < 8 ? glen : 8);
    if (mode == 3) {
        memcpy(gz + glen, "GARBAGE!", 8);
        glen += 1 + (ctl >> 2) % 8;
    }

    mc_idx_header hz, hr;
    void *pz = NULL, *pr = NULL;
    mc_status sz = load(gz, glen, &hz, &pz);
    if (sz == MC_OK) second_door(gz, glen, &hz, pz);
    if (mode == 2 || mode == 3) {
        /* A cut stream or garbage after the member is never accepted. */
        if (sz == MC_OK) abort();
    } else if (!(n >= 2 && content[0] == 0x1f && content[1] == 0x8b)) {
        /* Differential oracle: gzip(content) loads exactly as content does (content that is
         * itself gzip is excluded: its gzip is "compressed twice"). NOMEM cannot happen here. */
        mc_status sr = load(content, n, &hr, &pr);
        if ((sr == MC_OK) != (sz == MC_OK)) abort();
        if (sr == MC_OK && (hr.nbytes != hz.nbytes || hr.ndim != hz.ndim || hr.type != hz.type ||
                            memcmp(pr, pz, hr.nbytes) != 0))
            abort();
        mc_free(pr);
    }
    mc_free(pz);
    free(gz);
    return 0;
}

#endif
