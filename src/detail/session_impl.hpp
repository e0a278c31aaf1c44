// detail/session_impl.hpp: what the files of the session's implementation
// share (src/session.cpp, session_close.cpp, session_shared_frames.cpp):
// constants, small helpers, and the write queue's referenced frames.
#pragma once

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <system_error>
#include <vector>

#include <sys/uio.h>

#include <asio/error.hpp>

#include <duplex/protocol/close.hpp>

#include "detail/session.hpp"

namespace duplex::detail {

// How long a failed connection waits for the peer to end TCP after our close
// frame (see maybe_finish_close).
inline constexpr std::chrono::milliseconds failure_drain_limit{1000};
inline constexpr auto never = Clock::time_point::max();
// Unread stream input above which the socket is not read (the peer is slowed
// by TCP flow control): bounds memory per StreamWebSocket.
inline constexpr std::size_t stream_input_limit = std::size_t{1} << 20;
// TLS records are at most 16 KiB of plaintext (RFC 8446 5.1).
inline constexpr std::size_t tls_read_size = 16 * 1024;

// The code reported in the closed event after we failed the connection.
inline std::uint16_t close_code_of(std::error_code ec) {
  if (ec.category() == error_category()) {
    auto e = static_cast<error>(ec.value());
    if (e >= error::reserved_bits && e <= error::bad_compressed_data) return close_code_for(e);
  }
  return protocol::close_code::abnormal;
}

// errno as the error Asio's socket calls report (compared with asio::error::*).
inline std::error_code last_socket_error() {
  return {errno, asio::error::get_system_category()};
}

inline bool would_block(int e) {
  return e == EAGAIN || e == EWOULDBLOCK;
}

struct Session::RefQueue {
  /// A referenced frame, to be written before output byte `at` (of the bytes
  /// begin_write() hands out next). Marks are only added at the end of the
  /// output (`at` is its size then), and while a write is in flight only to
  /// an empty output: during a write the protocol may replace a pong still
  /// last in the output (RFC 6455 5.5.3), and a pong before a mark at its end
  /// would then move under it.
  struct Mark {
    std::size_t at;
    FrameRef frame;
  };
  std::vector<Mark> queued;   ///< marks into the output, not handed to a write yet
  std::vector<Mark> sending;  ///< the marks of the gathered write in flight
  std::vector<iovec> iov;     ///< that write: output pieces and frames, in order
  std::size_t iov_at = 0;     ///< its first iovec not fully sent
  std::size_t total = 0;      ///< its bytes
  std::size_t left = 0;       ///< its bytes not sent yet
};

}  // namespace duplex::detail
