#include "common/compress.h"

#include <zstd.h>

namespace taproot {
namespace {

struct CCtx {
  ZSTD_CCtx* ctx = ZSTD_createCCtx();
  ~CCtx() { ZSTD_freeCCtx(ctx); }
};
struct DCtx {
  ZSTD_DCtx* ctx = ZSTD_createDCtx();
  ~DCtx() { ZSTD_freeDCtx(ctx); }
};

}  // namespace

std::string ZstdCompress(std::string_view data, int level) {
  thread_local CCtx cctx;
  std::string out;
  out.resize(ZSTD_compressBound(data.size()));
  size_t n = ZSTD_compressCCtx(cctx.ctx, out.data(), out.size(), data.data(), data.size(), level);
  out.resize(ZSTD_isError(n) ? 0 : n);
  return out;
}

Result<std::string> ZstdDecompress(std::string_view data) {
  thread_local DCtx dctx;
  unsigned long long size = ZSTD_getFrameContentSize(data.data(), data.size());
  if (size == ZSTD_CONTENTSIZE_ERROR) return Status::Internal("corrupt zstd frame");
  std::string out;
  if (size != ZSTD_CONTENTSIZE_UNKNOWN) {
    out.resize(size);
    size_t n = ZSTD_decompressDCtx(dctx.ctx, out.data(), out.size(), data.data(), data.size());
    if (ZSTD_isError(n)) return Status::Internal(ZSTD_getErrorName(n));
    out.resize(n);
    return out;
  }
  // Streaming frames (written by the zstd CLI with unknown size).
  ZSTD_DCtx_reset(dctx.ctx, ZSTD_reset_session_only);
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  std::string chunk(ZSTD_DStreamOutSize(), '\0');
  while (in.pos < in.size) {
    ZSTD_outBuffer o{chunk.data(), chunk.size(), 0};
    size_t r = ZSTD_decompressStream(dctx.ctx, &o, &in);
    if (ZSTD_isError(r)) return Status::Internal(ZSTD_getErrorName(r));
    out.append(chunk.data(), o.pos);
    if (r == 0 && in.pos == in.size) break;
  }
  return out;
}

}  // namespace taproot
