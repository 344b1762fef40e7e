/* IDX reader and writer. Reading: one strict parser over a byte source (a FILE* or a memory
 * buffer); gzip goes through zlib's inflate() (windowBits 15+16) rather than gzread, which
 * accepts trailing garbage and reports truncation only at close. Writing: atomic temp + rename.
 * Byte order is handled explicitly (big-endian on disk), never by casting through host order. */
#include "idx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* Input chunk for fread: big enough that inflate, not the syscalls, dominates. */
#define IN_CHUNK ((size_t)1 << 20)
/* Staging buffer for the writer (byte-swapped copies and deflate output). */
#define OUT_CHUNK ((size_t)1 << 18)
#define NAME_MAX_SHOWN 96

struct mc_idx_reader {
    FILE *fp;                      /* NULL for a memory source */
    const unsigned char *mem;      /* memory source */
    size_t mem_len, mem_pos;       /* bytes handed to zs so far: next_in + avail_in == mem + mem_pos */
    unsigned char *inbuf;          /* file source: read buffer */
    size_t inbuf_cap;
    long long src_size;            /* total input bytes, -1 if unknown (pipe, device) */
    int src_eof;                   /* the source has no more bytes beyond zs.avail_in */
    int gzip;
    int zinit;                     /* inflateInit2 succeeded: inflateEnd needed */
    int member_end;                /* inflate returned Z_STREAM_END for the current member */
    int stream_done;               /* all members consumed and nothing follows */
    int payload_done;
    z_stream zs;                   /* next_in/avail_in double as the raw-mode pending bytes */
    mc_idx_header hdr;
    char name[NAME_MAX_SHOWN + 4];
};

size_t mc_idx_type_size(int type) {
    switch (type) {
    case MC_IDX_U8: case MC_IDX_I8: return 1;
    case MC_IDX_I16: return 2;
    case MC_IDX_I32: case MC_IDX_F32: return 4;
    case MC_IDX_F64: return 8;
    default: return 0;
    }
}

const char *mc_idx_type_name(int type) {
    switch (type) {
    case MC_IDX_U8: return "uint8";
    case MC_IDX_I8: return "int8";
    case MC_IDX_I16: return "int16";
    case MC_IDX_I32: return "int32";
    case MC_IDX_F32: return "float32";
    case MC_IDX_F64: return "float64";
    default: return "unknown";
    }
}

/* zlib allocations go through mc_malloc so the fault-injection hook reaches them too. */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
    (void)opaque;
    size_t n;
    if (!mc_mul_size(items, size, &n)) return Z_NULL;
    return mc_malloc(n);
}

static void z_free(voidpf opaque, voidpf p) {
    (void)opaque;
    mc_free(p);
}

/* Long paths are shown by their tail so that the message itself fits in mc_error.msg. */
static void set_name(char *dst, const char *path) {
    size_t n = strlen(path);
    if (n <= NAME_MAX_SHOWN) {
        memcpy(dst, path, n + 1);
    } else {
        memcpy(dst, "...", 3);
        memcpy(dst + 3, path + n - (NAME_MAX_SHOWN - 3), NAME_MAX_SHOWN - 3 + 1);
    }
}

static int host_is_big_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 0;
}

/* Reverse the bytes of each elem_size-byte element of p (n bytes) in place. */
static void swap_bytes(unsigned char *p, size_t n, size_t elem_size) {
    size_t i;
    switch (elem_size) {
    case 2:
        for (i = 0; i + 2 <= n; i += 2) {
            uint16_t v;
            memcpy(&v, p + i, 2);
            v = __builtin_bswap16(v);
            memcpy(p + i, &v, 2);
        }
        break;
    case 4:
        for (i = 0; i + 4 <= n; i += 4) {
            uint32_t v;
            memcpy(&v, p + i, 4);
            v = __builtin_bswap32(v);
            memcpy(p + i, &v, 4);
        }
        break;
    case 8:
        for (i = 0; i + 8 <= n; i += 8) {
            uint64_t v;
            memcpy(&v, p + i, 8);
            v = __builtin_bswap64(v);
            memcpy(p + i, &v, 8);
        }
        break;
    default:
        break;
    }
}

/* --- byte source --- */

/* Make at least `want` bytes pending in zs.next_in/avail_in, unless the source ends first. */
static mc_status fill(mc_idx_reader *r, size_t want, mc_error *err) {
    if (r->zs.avail_in >= want || r->src_eof) return MC_OK;
    if (r->fp) {
        size_t have = r->zs.avail_in;
        if (have && r->zs.next_in != r->inbuf) memmove(r->inbuf, r->zs.next_in, have);
        size_t room = r->inbuf_cap - have;
        errno = 0;
        size_t k = fread(r->inbuf + have, 1, room, r->fp);
        if (k < room) {
            if (ferror(r->fp)) {
                int e = errno ? errno : EIO;
                return mc_set_io_error(err, e, "%s: read failed", r->name);
            }
            r->src_eof = 1;
        }
        r->zs.next_in = r->inbuf;
        r->zs.avail_in = (uInt)(have + k);
    } else {
        size_t rest = r->mem_len - r->mem_pos;
        size_t room = (size_t)UINT_MAX - r->zs.avail_in;
        size_t k = rest < room ? rest : room;
        if (r->zs.avail_in == 0) r->zs.next_in = (unsigned char *)(uintptr_t)(r->mem + r->mem_pos);
        r->zs.avail_in += (uInt)k;
        r->mem_pos += k;
        if (r->mem_pos == r->mem_len) r->src_eof = 1;
    }
    return MC_OK;
}

/* Uncompressed: up to n bytes into dst; *got < n only at the end of the input. Large reads go
 * from the file straight into dst. */
static mc_status raw_read(mc_idx_reader *r, unsigned char *dst, size_t n, size_t *got,
                          mc_error *err) {
    size_t done = 0;
    while (done < n) {
        if (r->zs.avail_in > 0) {
            size_t k = n - done < r->zs.avail_in ? n - done : r->zs.avail_in;
            memcpy(dst + done, r->zs.next_in, k);
            r->zs.next_in += k;
            r->zs.avail_in -= (uInt)k;
            done += k;
            continue;
        }
        if (r->src_eof) break;
        if (r->fp && n - done >= r->inbuf_cap) {
            size_t want = n - done;
            errno = 0;
            size_t k = fread(dst + done, 1, want, r->fp);
            done += k;
            if (k < want) {
                if (ferror(r->fp)) {
                    int e = errno ? errno : EIO;
                    *got = done;
                    return mc_set_io_error(err, e, "%s: read failed", r->name);
                }
                r->src_eof = 1;
            }
            continue;
        }
        mc_status st = fill(r, 1, err);
        if (st != MC_OK) {
            *got = done;
            return st;
        }
    }
    *got = done;
    return MC_OK;
}

/* gzip: inflate up to n bytes into dst, across concatenated members (RFC 1952 2.2); *got < n
 * only when the last member ended cleanly. Anything but a new member after a member is an
 * error, as is input that ends inside a member. */
static mc_status gz_read(mc_idx_reader *r, unsigned char *dst, size_t n, size_t *got,
                         mc_error *err) {
    size_t done = 0;
    mc_status st = MC_OK;
    while (done < n && !r->stream_done) {
        if (r->member_end) {
            if ((st = fill(r, 2, err)) != MC_OK) break;
            if (r->zs.avail_in == 0) {
                r->stream_done = 1;
                break;
            }
            if (r->zs.avail_in < 2 || r->zs.next_in[0] != 0x1f || r->zs.next_in[1] != 0x8b) {
                st = mc_set_error(err, MC_ERR_FORMAT,
                                  "%s: trailing garbage after gzip member: byte 0x%02x at "
                                  "compressed offset %lu, expected end of file or a new member "
                                  "(1f 8b)",
                                  r->name, r->zs.next_in[0], (unsigned long)r->zs.total_in);
                break;
            }
            if (inflateReset(&r->zs) != Z_OK) {
                st = mc_set_error(err, MC_ERR_FORMAT, "%s: inflateReset failed", r->name);
                break;
            }
            r->member_end = 0;
        }
        if ((st = fill(r, 1, err)) != MC_OK) break;
        size_t want = n - done;
        uInt chunk = want > (size_t)UINT_MAX ? UINT_MAX : (uInt)want;
        r->zs.next_out = dst + done;
        r->zs.avail_out = chunk;
        int ret = inflate(&r->zs, Z_NO_FLUSH);
        done += chunk - r->zs.avail_out;
        if (ret == Z_OK) continue;
        if (ret == Z_STREAM_END) {
            r->member_end = 1;
            continue;
        }
        if (ret == Z_BUF_ERROR && r->zs.avail_in == 0 && !r->src_eof) continue;
        if (ret == Z_BUF_ERROR && r->zs.avail_in == 0) {
            st = mc_set_error(err, MC_ERR_FORMAT,
                              "%s: gzip stream truncated: input ends inside a member after %lu "
                              "compressed bytes (expected the rest of the data and the 8-byte "
                              "CRC32/ISIZE trailer)",
                              r->name, (unsigned long)r->zs.total_in);
        } else if (ret == Z_MEM_ERROR) {
            st = mc_set_error(err, MC_ERR_NOMEM, "%s: out of memory in inflate", r->name);
        } else {
            st = mc_set_error(err, MC_ERR_FORMAT, "%s: corrupt gzip data: %s (zlib code %d)",
                              r->name, r->zs.msg ? r->zs.msg : "no message", ret);
        }
        break;
    }
    *got = done;
    return st;
}

static mc_status src_read(mc_idx_reader *r, void *dst, size_t n, size_t *got, mc_error *err) {
    return r->gzip ? gz_read(r, dst, n, got, err) : raw_read(r, dst, n, got, err);
}

/* --- header --- */

static uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void dims_str(char *buf, size_t cap, const size_t *dims, int ndim) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < cap; i++) {
        int k = snprintf(buf + used, cap - used, i ? " x %zu" : "%zu", dims[i]);
        if (k < 0) break;
        used += (size_t)k;
    }
}

static mc_status parse_header(mc_idx_reader *r, size_t max_bytes, uint32_t expect_magic,
                              mc_error *err) {
    mc_idx_header *h = &r->hdr;
    unsigned char m[4];
    unsigned char d[4 * MC_IDX_MAX_NDIM];
    size_t got = 0;
    mc_status st;

    memset(h, 0, sizeof *h);
    h->gzip = r->gzip;
    if ((st = src_read(r, m, 4, &got, err)) != MC_OK) return st;
    if (got < 4)
        return mc_set_error(err, MC_ERR_FORMAT, "%s: truncated header (%zu of 4 bytes)%s",
                            r->name, got, r->gzip ? " after gzip decompression" : "");
    if (m[0] != 0 || m[1] != 0) {
        if (m[0] == 0x1f && m[1] == 0x8b)
            return mc_set_error(err, MC_ERR_FORMAT,
                                "%s: not an IDX file: starts with 1f 8b (compressed twice?) "
                                "after gzip decompression",
                                r->name);
        return mc_set_error(err, MC_ERR_FORMAT,
                            "%s: not an IDX file: starts with %02x %02x %02x %02x, expected "
                            "00 00 <type> <ndim>",
                            r->name, m[0], m[1], m[2], m[3]);
    }
    h->type = m[2];
    h->elem_size = mc_idx_type_size(h->type);
    if (h->elem_size == 0)
        return mc_set_error(err, MC_ERR_FORMAT,
                            "%s: unknown IDX type code 0x%02x, expected one of 0x08 (uint8), "
                            "0x09 (int8), 0x0b (int16), 0x0c (int32), 0x0d (float32), 0x0e "
                            "(float64)",
                            r->name, m[2]);
    if (m[3] < 1 || m[3] > MC_IDX_MAX_NDIM)
        return mc_set_error(err, MC_ERR_FORMAT, "%s: IDX ndim %u outside 1..%d", r->name, m[3],
                            MC_IDX_MAX_NDIM);
    h->ndim = m[3];
    uint32_t magic = be32(m);
    if (expect_magic != 0 && magic != expect_magic)
        return mc_set_error(err, MC_ERR_FORMAT,
                            "%s: bad magic 0x%08x (%s, %d dims), expected 0x%08x (%s, %u dims)",
                            r->name, magic, mc_idx_type_name(h->type), h->ndim, expect_magic,
                            mc_idx_type_name((int)((expect_magic >> 8) & 0xff)),
                            expect_magic & 0xff);

    size_t need = 4 * (size_t)h->ndim;
    if ((st = src_read(r, d, need, &got, err)) != MC_OK) return st;
    if (got < need)
        return mc_set_error(err, MC_ERR_FORMAT,
                            "%s: truncated header: %d dims need %zu bytes, got %zu", r->name,
                            h->ndim, need, got);
    h->header_bytes = 4 + need;

    /* A 0 dim still has the others checked, as NumPy does: the product of max(dim, 1) and the
     * element size must fit, and stay below PTRDIFF_MAX so that NumPy can index it. */
    size_t prod = h->elem_size;
    int overflow = 0, any_zero = 0;
    for (int i = 0; i < h->ndim; i++) {
        h->dims[i] = be32(d + 4 * i);
        if (h->dims[i] == 0) any_zero = 1;
        if (!mc_mul_size(prod, h->dims[i] ? h->dims[i] : 1, &prod)) overflow = 1;
    }
    char ds[12 * MC_IDX_MAX_NDIM];
    dims_str(ds, sizeof ds, h->dims, h->ndim);
    if (overflow || prod > (size_t)PTRDIFF_MAX)
        return mc_set_error(err, MC_ERR_FORMAT,
                            "%s: declared size overflows: %s elements of %zu bytes", r->name, ds,
                            h->elem_size);
    h->nbytes = any_zero ? 0 : prod;
    h->count = h->nbytes / h->elem_size;
    if (h->nbytes > max_bytes)
        return mc_set_error(err, MC_ERR_FORMAT,
                            "%s: header declares %s %s = %zu bytes > max_bytes %zu (pass a "
                            "larger max_bytes if the file is genuine)",
                            r->name, ds, mc_idx_type_name(h->type), h->nbytes, max_bytes);

    /* Uncompressed with a known size: the payload must be exactly what is left, checked here
     * so that a short file never causes the allocation its header asks for. */
    if (!r->gzip && r->src_size >= 0) {
        size_t size = (size_t)r->src_size;
        size_t left = size >= h->header_bytes ? size - h->header_bytes : 0;
        if (left < h->nbytes)
            return mc_set_error(err, MC_ERR_FORMAT,
                                "%s: truncated data: expected %zu bytes, got %zu (header "
                                "declares %s %s)",
                                r->name, h->nbytes, left, ds, mc_idx_type_name(h->type));
        if (left > h->nbytes)
            return mc_set_error(err, MC_ERR_FORMAT,
                                "%s: trailing data: %zu extra bytes after the %zu-byte header "
                                "and %zu-byte payload (file has %zu bytes, expected %zu)",
                                r->name, left - h->nbytes, h->header_bytes, h->nbytes, size,
                                h->header_bytes + h->nbytes);
    }
    /* Compressed with a known size: deflate expands at most 1032:1 (a 258-byte match in 2 bits),
     * so a header declaring more than that is a lie we can catch before allocating. */
    if (r->gzip && r->src_size >= 0) {
        size_t cap;
        if (!mc_mul_size((size_t)r->src_size, 1032, &cap)) cap = SIZE_MAX;
        if (h->nbytes > cap - h->header_bytes)
            return mc_set_error(err, MC_ERR_FORMAT,
                                "%s: truncated data: a %lld-byte gzip file cannot hold the "
                                "declared %zu-byte payload (deflate expands at most 1032:1)",
                                r->name, r->src_size, h->nbytes);
    }
    return MC_OK;
}

/* Sniff gzip, then parse the header. r has its source set up. */
static mc_status start(mc_idx_reader *r, size_t max_bytes, uint32_t expect_magic,
                       mc_idx_header *hdr, mc_error *err) {
    mc_status st = fill(r, 2, err);
    if (st != MC_OK) return st;
    if (r->zs.avail_in >= 2 && r->zs.next_in[0] == 0x1f && r->zs.next_in[1] == 0x8b) {
        r->gzip = 1;
        r->zs.zalloc = z_alloc;
        r->zs.zfree = z_free;
        r->zs.opaque = Z_NULL;
        int ret = inflateInit2(&r->zs, 15 + 16);
        if (ret == Z_MEM_ERROR)
            return mc_set_error(err, MC_ERR_NOMEM, "%s: out of memory in inflateInit2", r->name);
        if (ret != Z_OK)
            return mc_set_error(err, MC_ERR_FORMAT, "%s: inflateInit2 failed (zlib code %d)",
                                r->name, ret);
        r->zinit = 1;
    }
    if ((st = parse_header(r, max_bytes, expect_magic, err)) != MC_OK) return st;
    if (hdr) *hdr = r->hdr;
    return MC_OK;
}

mc_status mc_idx_open_file(mc_idx_reader **out, const char *path, size_t max_bytes,
                           uint32_t expect_magic, mc_idx_header *hdr, mc_error *err) {
    *out = NULL;
    mc_idx_reader *r = mc_calloc(1, sizeof *r);
    if (!r) return mc_set_error(err, MC_ERR_NOMEM, "out of memory opening an IDX file");
    mc_status st;
    set_name(r->name, path);
    r->src_size = -1;
    errno = 0;
    r->fp = fopen(path, "rb");
    if (!r->fp) {
        st = mc_set_io_error(err, errno ? errno : EIO, "%s: cannot open", r->name);
        goto fail;
    }
    struct stat sb;
    if (fstat(fileno(r->fp), &sb) != 0) {
        st = mc_set_io_error(err, errno, "%s: cannot stat", r->name);
        goto fail;
    }
    if (S_ISDIR(sb.st_mode)) {
        st = mc_set_io_error(err, EISDIR, "%s: is a directory", r->name);
        goto fail;
    }
    if (S_ISREG(sb.st_mode)) r->src_size = (long long)sb.st_size;
    /* Our own buffer does the chunking; stdio's would add a copy. */
    setvbuf(r->fp, NULL, _IONBF, 0);
    r->inbuf_cap = IN_CHUNK;
    if (r->src_size >= 0 && (unsigned long long)r->src_size + 1 < IN_CHUNK)
        r->inbuf_cap = (size_t)r->src_size + 1 < 64 ? 64 : (size_t)r->src_size + 1;
    r->inbuf = mc_malloc(r->inbuf_cap);
    if (!r->inbuf) {
        st = mc_set_error(err, MC_ERR_NOMEM, "%s: out of memory for the read buffer", r->name);
        goto fail;
    }
    r->zs.next_in = r->inbuf;
    if ((st = start(r, max_bytes, expect_magic, hdr, err)) != MC_OK) goto fail;
    *out = r;
    return MC_OK;
fail:
    mc_idx_close(r);
    return st;
}

mc_status mc_idx_open_mem(mc_idx_reader **out, const void *data, size_t len, const char *name,
                          size_t max_bytes, uint32_t expect_magic, mc_idx_header *hdr,
                          mc_error *err) {
    *out = NULL;
    mc_idx_reader *r = mc_calloc(1, sizeof *r);
    if (!r) return mc_set_error(err, MC_ERR_NOMEM, "out of memory opening an IDX buffer");
    set_name(r->name, name ? name : "<memory>");
    r->mem = data;
    r->mem_len = data ? len : 0;
    r->src_size = (long long)r->mem_len;
    r->src_eof = r->mem_len == 0;
    r->zs.next_in = (unsigned char *)(uintptr_t)r->mem;
    mc_status st = start(r, max_bytes, expect_magic, hdr, err);
    if (st != MC_OK) {
        mc_idx_close(r);
        return st;
    }
    *out = r;
    return MC_OK;
}

mc_status mc_idx_read_payload(mc_idx_reader *r, void *dst, mc_error *err) {
    if (r->payload_done)
        return mc_set_error(err, MC_ERR_ARG, "%s: payload already read", r->name);
    r->payload_done = 1;
    const mc_idx_header *h = &r->hdr;
    size_t got = 0;
    mc_status st = src_read(r, dst, h->nbytes, &got, err);
    if (st != MC_OK) return st;
    if (got < h->nbytes)
        return mc_set_error(err, MC_ERR_FORMAT,
                            "%s: truncated data: expected %zu bytes, got %zu%s", r->name,
                            h->nbytes, got, r->gzip ? " (gzip stream ended early)" : "");
    /* One more byte must not exist. For gzip this also runs inflate over the member trailer
     * (CRC32 and ISIZE checks) and looks past it for garbage or further members; a bomb stops
     * here after nbytes + 1 inflated bytes. */
    unsigned char probe;
    if ((st = src_read(r, &probe, 1, &got, err)) != MC_OK) return st;
    if (got != 0) {
        if (r->gzip)
            return mc_set_error(err, MC_ERR_FORMAT,
                                "%s: trailing data: the gzip stream holds more than the "
                                "declared %zu-byte header + %zu-byte payload",
                                r->name, h->header_bytes, h->nbytes);
        return mc_set_error(err, MC_ERR_FORMAT,
                            "%s: trailing data after the %zu-byte header + %zu-byte payload",
                            r->name, h->header_bytes, h->nbytes);
    }
    if (h->elem_size > 1 && !host_is_big_endian()) swap_bytes(dst, h->nbytes, h->elem_size);
    return MC_OK;
}

void mc_idx_close(mc_idx_reader *r) {
    if (!r) return;
    if (r->zinit) inflateEnd(&r->zs);
    if (r->fp) fclose(r->fp);
    mc_free(r->inbuf);
    mc_free(r);
}

mc_status mc_idx_load_mem(const void *data, size_t len, size_t max_bytes, mc_idx_header *hdr,
                          void **payload, mc_error *err) {
    *payload = NULL;
    mc_idx_reader *r = NULL;
    mc_idx_header h;
    mc_status st = mc_idx_open_mem(&r, data, len, "<memory>", max_bytes, 0, &h, err);
    if (st != MC_OK) return st;
    void *p = mc_malloc(h.nbytes);
    if (!p) {
        mc_idx_close(r);
        return mc_set_error(err, MC_ERR_NOMEM, "<memory>: out of memory for %zu bytes", h.nbytes);
    }
    st = mc_idx_read_payload(r, p, err);
    mc_idx_close(r);
    if (st != MC_OK) {
        mc_free(p);
        return st;
    }
    if (hdr) *hdr = h;
    *payload = p;
    return MC_OK;
}

/* --- writer --- */

typedef struct {
    FILE *fp;
    int gzip;
    int zinit;
    z_stream zs;
    unsigned char *zout;           /* deflate output, OUT_CHUNK bytes */
    const char *name;
} writer;

static mc_status w_raw(writer *w, const void *p, size_t n, mc_error *err) {
    if (n == 0) return MC_OK;
    errno = 0;
    if (fwrite(p, 1, n, w->fp) != n)
        return mc_set_io_error(err, errno ? errno : EIO, "%s: write failed", w->name);
    return MC_OK;
}

/* Feed n bytes to the output (deflated when gzip); finish != 0 flushes the gzip trailer. */
static mc_status w_put(writer *w, const void *p, size_t n, int finish, mc_error *err) {
    if (!w->gzip) return w_raw(w, p, n, err);
    const unsigned char *src = p;
    for (;;) {
        uInt chunk = n > (size_t)UINT_MAX ? UINT_MAX : (uInt)n;
        w->zs.next_in = (unsigned char *)(uintptr_t)src;
        w->zs.avail_in = chunk;
        int last = finish && chunk == n;
        int ret;
        do {
            w->zs.next_out = w->zout;
            w->zs.avail_out = (uInt)OUT_CHUNK;
            ret = deflate(&w->zs, last ? Z_FINISH : Z_NO_FLUSH);
            if (ret == Z_STREAM_ERROR)
                return mc_set_error(err, MC_ERR_ARG, "%s: deflate failed", w->name);
            mc_status st = w_raw(w, w->zout, OUT_CHUNK - w->zs.avail_out, err);
            if (st != MC_OK) return st;
        } while (w->zs.avail_out == 0 || (last && ret != Z_STREAM_END));
        src += chunk;
        n -= chunk;
        if (n == 0) return MC_OK;
    }
}

/* Best effort: make the rename durable. Failure here does not undo a completed write. */
static void fsync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        dir[0] = '.';
        dir[1] = '\0';
    } else {
        size_t n = (size_t)(slash - path);
        if (n == 0) n = 1;
        if (n >= sizeof dir) return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

mc_status mc_idx_save(const char *path, int type, int ndim, const size_t *dims, const void *data,
                      int gzip, mc_error *err) {
    size_t esize = mc_idx_type_size(type);
    if (esize == 0)
        return mc_set_error(err, MC_ERR_ARG, "%s: unknown IDX type code 0x%02x", path, type);
    if (ndim < 1 || ndim > MC_IDX_MAX_NDIM)
        return mc_set_error(err, MC_ERR_ARG, "%s: IDX ndim %d outside 1..%d", path, ndim,
                            MC_IDX_MAX_NDIM);
    unsigned char hdr[4 + 4 * MC_IDX_MAX_NDIM];
    size_t nbytes = esize;
    hdr[0] = 0;
    hdr[1] = 0;
    hdr[2] = (unsigned char)type;
    hdr[3] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] > 0xFFFFFFFFu)
            return mc_set_error(err, MC_ERR_ARG, "%s: dim %d is %zu, IDX dims must be < 2^32",
                                path, i, dims[i]);
        if (!mc_mul_size(nbytes, dims[i], &nbytes))
            return mc_set_error(err, MC_ERR_ARG, "%s: array size overflows", path);
        uint32_t v = (uint32_t)dims[i];
        hdr[4 + 4 * i] = (unsigned char)(v >> 24);
        hdr[5 + 4 * i] = (unsigned char)(v >> 16);
        hdr[6 + 4 * i] = (unsigned char)(v >> 8);
        hdr[7 + 4 * i] = (unsigned char)v;
    }

    mc_status st = MC_OK;
    writer w;
    memset(&w, 0, sizeof w);
    w.name = path;
    w.gzip = gzip;
    unsigned char *stage = NULL;
    int fd = -1;
    size_t plen = strlen(path);
    char *tmp = mc_malloc(plen + 48);
    if (!tmp) return mc_set_error(err, MC_ERR_NOMEM, "%s: out of memory", path);

    /* O_EXCL on a fresh name: never clobbers anything, and umask applies as for a normal file. */
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(tmp, plen + 48, "%s.tmp-%ld-%lx", path, (long)getpid(),
                 (unsigned long)ts.tv_nsec ^ ((unsigned long)attempt << 20));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) {
            int e = errno;
            mc_free(tmp);
            return mc_set_io_error(err, e, "%s: cannot create a temporary file beside it", path);
        }
    }
    if (fd < 0) {
        mc_free(tmp);
        return mc_set_io_error(err, EEXIST, "%s: no free temporary file name", path);
    }
    w.fp = fdopen(fd, "wb");
    if (!w.fp) {
        st = mc_set_io_error(err, errno, "%s: fdopen failed", path);
        close(fd);
        goto fail;
    }
    if (gzip) {
        w.zs.zalloc = z_alloc;
        w.zs.zfree = z_free;
        w.zs.opaque = Z_NULL;
        int ret = deflateInit2(&w.zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                               Z_DEFAULT_STRATEGY);
        if (ret != Z_OK) {
            st = mc_set_error(err, MC_ERR_NOMEM, "%s: deflateInit2 failed (zlib code %d)", path,
                              ret);
            goto fail;
        }
        w.zinit = 1;
        w.zout = mc_malloc(OUT_CHUNK);
        if (!w.zout) {
            st = mc_set_error(err, MC_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
    }
    if ((st = w_put(&w, hdr, 4 + 4 * (size_t)ndim, nbytes == 0, err)) != MC_OK) goto fail;
    if (esize == 1 || host_is_big_endian()) {
        if (nbytes && (st = w_put(&w, data, nbytes, 1, err)) != MC_OK) goto fail;
    } else {
        stage = mc_malloc(OUT_CHUNK);
        if (!stage) {
            st = mc_set_error(err, MC_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        const unsigned char *src = data;
        for (size_t off = 0; off < nbytes; off += OUT_CHUNK) {
            size_t k = nbytes - off < OUT_CHUNK ? nbytes - off : OUT_CHUNK;
            memcpy(stage, src + off, k);
            swap_bytes(stage, k, esize);
            if ((st = w_put(&w, stage, k, off + k == nbytes, err)) != MC_OK) goto fail;
        }
    }
    errno = 0;
    if (fflush(w.fp) != 0 || fsync(fileno(w.fp)) != 0) {
        st = mc_set_io_error(err, errno ? errno : EIO, "%s: flush failed", path);
        goto fail;
    }
    FILE *fp = w.fp;
    w.fp = NULL;
    if (fclose(fp) != 0) {
        st = mc_set_io_error(err, errno ? errno : EIO, "%s: close failed", path);
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        st = mc_set_io_error(err, errno, "%s: cannot replace", path);
        goto fail;
    }
    fsync_parent(path);
    goto done;
fail:
    if (w.fp) fclose(w.fp);
    unlink(tmp);
done:
    if (w.zinit) deflateEnd(&w.zs);
    mc_free(w.zout);
    mc_free(stage);
    mc_free(tmp);
    return st;
}
