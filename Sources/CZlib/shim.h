#include <zlib.h>

// inflateInit2 and deflateInit2 are macros that pass the header's version and struct size; Swift cannot
// call macros, so these forward to the real functions with the same checks.
static inline int authtap_inflate_init2(z_streamp strm, int windowBits) {
    return inflateInit2_(strm, windowBits, ZLIB_VERSION, (int)sizeof(z_stream));
}
static inline int authtap_deflate_init2(z_streamp strm, int level, int windowBits) {
    return deflateInit2_(strm, level, Z_DEFLATED, windowBits, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                         (int)sizeof(z_stream));
}
