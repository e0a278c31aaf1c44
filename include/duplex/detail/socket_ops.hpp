// duplex/detail/socket_ops.hpp: the compiled operations behind the public
// initiating function templates, and the helper that builds a CompletionHandler
// from any Asio completion token. Not for applications.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <duplex/cancellation.hpp>
#include <duplex/detail/completion_handler.hpp>
#include <duplex/message_type.hpp>

namespace duplex::protocol {
class Connection;
}  // namespace duplex::protocol

namespace duplex::detail {

class Session;

/// Which part of a message a send carries.
enum class SendKind : std::uint8_t {
  whole,     ///< a complete message
  nonfinal,  ///< a piece, more follow
  final,     ///< the last piece
};

/// The executor of the session's event loop.
asio::any_io_executor session_executor(const Session& s) noexcept;

/// Throws std::invalid_argument for a bad URI or scheme, std::logic_error when
/// the socket is not in a state to connect.
void check_connect(Session& s, std::string_view uri);
/// Throws std::invalid_argument for text that is not UTF-8 when the message
/// type is utf8, and std::logic_error for a whole message while a message sent
/// in frames is unfinished (the caller's misuse); never for the connection's
/// state (state errors complete the operation with a code). Returns the type
/// to send: `type` if given, else the socket's message type control.
SocketMessageType check_send(Session& s, SendKind kind, std::span<const std::byte> data,
                             std::optional<SocketMessageType> type = std::nullopt);
/// At the call of a frame send (nonfinal or final), once per call: throws
/// std::invalid_argument when the piece makes a utf8 message invalid UTF-8
/// (or a final piece ends mid code point), and records the piece's place in
/// its message for check_send's order check.
void check_frame(Session& s, SendKind kind, std::span<const std::byte> data,
                 std::optional<SocketMessageType> type = std::nullopt);
/// Throws std::invalid_argument for a close code or reason not allowed.
void check_close(std::uint16_t code, std::string_view reason);

void start_connect(std::shared_ptr<Session> s, std::string uri, CancellationToken ct,
                   CompletionHandler h);
/// Copies `data` before returning. `compress` false: the message is sent
/// uncompressed even when permessage-deflate was negotiated.
void start_send(std::shared_ptr<Session> s, SendKind kind, SocketMessageType type,
                std::span<const std::byte> data, CancellationToken ct, CompletionHandler h,
                bool compress = true);
/// On the socket's loop thread, a send that can finish at once (see
/// Session::send_now): true, with its result in `ec` and the data already
/// copied. False (nothing done, `ec` untouched) off the loop thread or when the
/// send must wait for room. Throws as check_send for a bad argument. (A bool
/// and an out-parameter: an optional<error_code> is returned through memory.)
bool try_send_now(Session& s, SendKind kind, std::span<const std::byte> data,
                  std::optional<SocketMessageType> type, bool compress, std::error_code& ec);
/// Where plain_send() says a whole message can go at once.
struct PlainSend {
  protocol::Connection* connection;  ///< null: take the usual path (try_send_now)
  SocketMessageType type;
};
/// The whole-message send of an event handler (send_async with a Task, on the
/// loop thread), in two calls that each cost no frame of their own: this one
/// checks that the message can go straight into the connection's output with
/// nothing else to do (see Session::whole_send_is_plain; `type`, if given, is
/// binary or utf8), then send_plain() puts it there. Never throws.
PlainSend plain_send(Session& s, std::optional<SocketMessageType> type, std::size_t size) noexcept;
/// Appends the message to `to`'s output (copied, masked on a client): its
/// result, an error for text that is not UTF-8 (the caller then calls
/// check_send, which throws).
std::error_code send_plain(PlainSend to, std::span<const std::byte> data, bool compress);
/// std::error_code{}, made once: the default constructor calls the
/// out-of-line std::system_category() each time.
extern const std::error_code no_error;
void start_close(std::shared_ptr<Session> s, std::uint16_t code, std::string reason,
                 CancellationToken ct, CompletionHandler h);
/// `buffer` must stay valid until completion.
void start_read(std::shared_ptr<Session> s, std::span<std::byte> buffer, CancellationToken ct,
                CompletionHandler h);
/// `data` must stay valid until completion.
void start_write(std::shared_ptr<Session> s, std::span<const std::byte> data, CancellationToken ct,
                 CompletionHandler h);

/// Runs `start(CompletionHandler)` through Asio's async_initiate for `token`.
template <class Sig, class Token, class Start>
auto initiate(asio::any_io_executor ex, Token&& token, Start start) {
  return asio::async_initiate<Token, Sig>(
      [ex = std::move(ex)](auto handler, Start st) {
        std::move(st)(CompletionHandler::make<Sig>(std::move(handler), ex));
      },
      token, std::move(start));
}

/// initiate() for a send: `try_now(ec)` (try_send_now) runs first; when it gives
/// a result the handler is posted with it to its executor (no box, no operation
/// object), otherwise `start(CompletionHandler)` takes the usual path.
template <class Token, class TryNow, class Start>
auto initiate_send(asio::any_io_executor ex, Token&& token, TryNow try_now, Start start) {
  return asio::async_initiate<Token, void(std::error_code)>(
      [ex = std::move(ex)](auto handler, TryNow now, Start st) {
        std::error_code ec = no_error;
        if (now(ec)) {
          auto associated = asio::get_associated_executor(handler, ex);
          auto complete = [h = std::move(handler), e = ec]() mutable { std::move(h)(e); };
          // As CompletionHandler::make: executors an any_io_executor cannot
          // hold (use_future's) are not posted to; ours is used instead.
          if constexpr (std::is_constructible_v<asio::any_io_executor, decltype(associated)>)
            asio::post(associated, std::move(complete));
          else
            asio::post(ex, std::move(complete));
          return;
        }
        std::move(st)(CompletionHandler::make<void(std::error_code)>(std::move(handler), ex));
      },
      token, std::move(try_now), std::move(start));
}

}  // namespace duplex::detail
