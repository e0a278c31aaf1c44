// detail/always_inline.hpp: DUPLEX_ALWAYS_INLINE, for the few small functions
// of the per-read and per-message path that GCC would otherwise call (each
// call cost more than the function's body; see docs/benchmarks.md).
#pragma once

#if defined(__GNUC__)
#define DUPLEX_ALWAYS_INLINE [[gnu::always_inline]]
#else
#define DUPLEX_ALWAYS_INLINE
#endif
