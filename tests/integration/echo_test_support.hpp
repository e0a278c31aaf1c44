// echo_test_support.hpp: an echo server on WebSocketListener (message and
// stream sockets) and an inbox of events waited on with deadlines, shared by
// the listener and permessage-deflate integration tests.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <duplex/message_websocket.hpp>
#include <duplex/stream_websocket.hpp>
#include <duplex/websocket_listener.hpp>

namespace duplex::test {

/// What a closed event said.
struct ClosedRecord {
  std::uint16_t code = 0;
  std::string reason;
  std::error_code error;
};

/// Events collected on loop threads, waited on with deadlines.
template <class T>
class Inbox {
public:
  void push(T v) {
    std::lock_guard lock(m_);
    items_.push_back(std::move(v));
    cv_.notify_all();
  }
  bool wait_for_count(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, timeout, [&] { return items_.size() >= n; });
  }
  std::vector<T> items() {
    std::lock_guard lock(m_);
    return items_;
  }

private:
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<T> items_;
};

/// What the server saw of one connection when it opened.
struct OpenedRecord {
  std::string protocol;
  std::string extensions;
  std::optional<DeflateParameters> params;
};

/// An echo server on WebSocketListener with options `o`: every message goes
/// back with its type (message sockets) or every byte (stream sockets, with
/// `stream`). Records each connection as it opens, and the messages (a count)
/// and closed events of the server-side message sockets. Stops itself (listener.stop) when
/// destroyed.
class EchoServer {
  // Before the listener, which is made from the options it is read from.
  bool secure_ = false;

public:
  explicit EchoServer(WebSocketListenerOptions o, bool stream = false)
      : secure_(o.tls.has_value()), listener(with_type(std::move(o), stream)) {
    listener.connection_received([this, stream](WebSocketListenerConnectionReceivedEventArgs& a) {
      if (stream) return adopt_stream(a.take_stream_websocket());
      auto ws = a.take_message_websocket();
      ws.message_received([this](MessageWebSocket& s, const auto& m) {
        ++messages;
        s.control().message_type(m.message_type());
        s.send_async(m.data(), [](std::error_code) {});
      });
      ws.closed([this](MessageWebSocket&, const WebSocketClosedEventArgs& c) {
        closed.push({c.code(), c.reason(), c.error()});
      });
      opened.push(record(ws.information()));
      std::lock_guard lock(m_);
      sockets_.push_back(std::move(ws));
    });
    listener.listen("127.0.0.1", 0);
  }
  ~EchoServer() {
    listener.stop(std::chrono::seconds(1));
    std::lock_guard lock(m_);
    sockets_.clear();
    streams_.clear();
  }
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  /// ws:// (or wss:// with TLS options) on the listener's port.
  [[nodiscard]] std::string url() const {
    return std::string(secure_ ? "wss" : "ws") +
           "://127.0.0.1:" + std::to_string(listener.local_port()) + "/";
  }

  WebSocketListener listener;
  Inbox<OpenedRecord> opened;
  Inbox<ClosedRecord> closed;
  std::atomic<int> messages{0};  ///< received by the message sockets

private:
  static WebSocketListenerOptions with_type(WebSocketListenerOptions o, bool stream) {
    if (stream) o.socket_type = ListenerSocketType::stream_websocket;
    return o;
  }
  static OpenedRecord record(const WebSocketInformation& info) {
    return {info.protocol(), info.extensions(), info.deflate_parameters()};
  }
  // Stream echo: read what is there, write it back, repeat.
  struct StreamEcho : std::enable_shared_from_this<StreamEcho> {
    explicit StreamEcho(StreamWebSocket& s) : ws(&s) {}
    StreamWebSocket* ws;
    std::vector<std::byte> buf = std::vector<std::byte>(64 * 1024);
    void read() {
      ws->input_stream().read_async(
          buf, [self = shared_from_this()](std::error_code ec, std::size_t n) {
            if (ec || n == 0) return;
            self->ws->output_stream().write_async(std::span<const std::byte>(self->buf.data(), n),
                                                  [self](std::error_code wec, std::size_t) {
                                                    if (!wec) self->read();
                                                  });
          });
    }
  };
  void adopt_stream(StreamWebSocket ws) {
    opened.push(record(ws.information()));
    std::lock_guard lock(m_);
    streams_.push_back(std::make_unique<StreamWebSocket>(std::move(ws)));
    std::make_shared<StreamEcho>(*streams_.back())->read();
  }

  std::mutex m_;
  std::vector<MessageWebSocket> sockets_;
  std::vector<std::unique_ptr<StreamWebSocket>> streams_;
};

}  // namespace duplex::test
