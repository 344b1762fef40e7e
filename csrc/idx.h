/* IDX files (the MNIST format): strict header parsing, payload reading through zlib's inflate()
 * (gzip detected by the magic bytes 1f 8b, not by the file name), and atomic writing.
 * One parser serves the Python binding (files) and fuzz targets (memory buffers). It trusts no
 * header field: sizes are overflow-checked and bounded before anything is allocated, and the
 * input must end exactly after the declared payload. No Python here. */
#ifndef MC_IDX_H
#define MC_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* IDX type codes (third magic byte). Data is big-endian on disk. */
enum {
    MC_IDX_U8 = 0x08,
    MC_IDX_I8 = 0x09,
    MC_IDX_I16 = 0x0B,
    MC_IDX_I32 = 0x0C,
    MC_IDX_F32 = 0x0D,
    MC_IDX_F64 = 0x0E
};

/* Accepted ndim is 1..MC_IDX_MAX_NDIM (the format allows up to 255; 8 is plenty for data sets
 * and keeps mc_idx_header fixed-size). */
#define MC_IDX_MAX_NDIM 8

/* What the header declares, after validation. */
typedef struct {
    int type;                     /* IDX type code, one of MC_IDX_* */
    int ndim;                     /* 1..MC_IDX_MAX_NDIM */
    size_t dims[MC_IDX_MAX_NDIM]; /* each < 2^32 */
    size_t elem_size;             /* 1, 2, 4 or 8 */
    size_t count;                 /* product of dims (0 when a dim is 0) */
    size_t nbytes;                /* count * elem_size; <= PTRDIFF_MAX and <= max_bytes */
    size_t header_bytes;          /* 4 + 4 * ndim */
    int gzip;                     /* 1 if the source is gzip-compressed */
} mc_idx_header;

/* Bytes per element of an IDX type code; 0 for an unknown code. */
size_t mc_idx_type_size(int type);
/* "uint8", "int8", "int16", "int32", "float32", "float64" or "unknown". */
const char *mc_idx_type_name(int type);

typedef struct mc_idx_reader mc_idx_reader;

/* Open path, read and validate its header into *hdr, and return a reader positioned at the
 * payload in *out (caller: mc_idx_read_payload, then mc_idx_close).
 * max_bytes bounds hdr->nbytes before the caller allocates anything. expect_magic, when not 0,
 * is the required magic (e.g. 0x00000803 = uint8, 3 dims); any other is MC_ERR_FORMAT.
 * For an uncompressed regular file the file size must equal header + payload exactly.
 * Errors: MC_ERR_IO (open/read failed, errno kept; a directory gives EISDIR), MC_ERR_FORMAT
 * (bad content; the message names the file, what was expected and what was found),
 * MC_ERR_NOMEM. On error *out is NULL and nothing is left open. */
mc_status mc_idx_open_file(mc_idx_reader **out, const char *path, size_t max_bytes,
                           uint32_t expect_magic, mc_idx_header *hdr, mc_error *err);
/* Same over a memory buffer data (len bytes), which must outlive the reader; name is used in
 * messages. */
mc_status mc_idx_open_mem(mc_idx_reader **out, const void *data, size_t len, const char *name,
                          size_t max_bytes, uint32_t expect_magic, mc_idx_header *hdr,
                          mc_error *err);
/* Read the payload into dst (hdr->nbytes bytes, overwritten) in native byte order, then check
 * the input ends there: short data, trailing data, a truncated or corrupt gzip stream (CRC,
 * ISIZE) and garbage after the last gzip member are MC_ERR_FORMAT. A gzip stream is inflated
 * straight into dst and never beyond nbytes + 1 bytes. Callable once per reader. On error dst
 * holds partial data the caller must discard. */
mc_status mc_idx_read_payload(mc_idx_reader *r, void *dst, mc_error *err);
/* Close the file and free the reader; NULL is a no-op. */
void mc_idx_close(mc_idx_reader *r);

/* Whole-buffer convenience (fuzz targets, C tests): parse data and return the payload in
 * *payload (mc_malloc'd, caller mc_free's it; NULL on error). */
mc_status mc_idx_load_mem(const void *data, size_t len, size_t max_bytes, mc_idx_header *hdr,
                          void **payload, mc_error *err);

/* Write an IDX file: data holds prod(dims) native-order elements of the given type, written
 * big-endian; gzip-compressed when gzip != 0. Atomic: written to a temporary file in the same
 * directory, flushed and fsync'd, then renamed over path; the temporary file is removed on any
 * error. Errors: MC_ERR_ARG (unknown type, ndim outside 1..MC_IDX_MAX_NDIM, a dim >= 2^32,
 * size overflow), MC_ERR_IO (errno kept), MC_ERR_NOMEM. */
mc_status mc_idx_save(const char *path, int type, int ndim, const size_t *dims, const void *data,
                      int gzip, mc_error *err);

#endif
