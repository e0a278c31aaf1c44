// detail/always_inline.hpp: DUPLEX_ALWAYS_INLINE, for the few small functions
// of the per-read and per-message path that GCC would otherwise call (each
// call cost more than the function's body; see docs/benchmarks.md), and
// DUPLEX_INITIAL_EXEC for the thread-locals that path reads.
#pragma once

#if defined(__GNUC__)
#define DUPLEX_ALWAYS_INLINE [[gnu::always_inline]]
#else
#define DUPLEX_ALWAYS_INLINE
#endif

// The thread-locals of the per-message path. The library is compiled as
// position-independent code, where GCC reaches a thread-local through a call
// to __tls_get_addr (the linker relaxes it to one load in an executable, but
// the function has already kept its values in saved registers around the
// call: a frame where there would be none). Initial-exec is one load from the
// thread pointer, also in libduplex.so: a few bytes of static TLS, which
// glibc also grants a library loaded later with dlopen.
#if defined(__GNUC__) && defined(__ELF__)
#define DUPLEX_INITIAL_EXEC [[gnu::tls_model("initial-exec")]]
#else
#define DUPLEX_INITIAL_EXEC
#endif
