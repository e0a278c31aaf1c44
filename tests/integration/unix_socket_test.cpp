// Unix domain sockets: ws+unix:// URIs, WebSocketListener::listen_unix, and a
// duplex client and listener talking over a socket file in a fresh temporary
// directory (removed at the end).
#include <duplex/message_websocket.hpp>
#include <duplex/websocket_listener.hpp>

#include <gtest/gtest.h>

#include <stdlib.h>
#include <sys/un.h>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

#include "listener_test_util.hpp"
#include "transport/uri.hpp"

namespace {

using namespace std::chrono_literals;
using duplex::MessageWebSocket;
using duplex::transport::parse_websocket_uri;

// A fresh directory for socket files, removed with everything in it.
class TempDir {
public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "duplex-unix-XXXXXX").string();
    if (!::mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  [[nodiscard]] std::string file(const char* name) const { return (path_ / name).string(); }

private:
  std::filesystem::path path_;
};

std::string invalid_text(const std::string& uri) {
  try {
    parse_websocket_uri(uri);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "accepted";
}

TEST(UnixUri, SocketPathAndTarget) {
  auto u = parse_websocket_uri("ws+unix:///tmp/app.sock");
  EXPECT_EQ(u.unix_path, "/tmp/app.sock");
  EXPECT_EQ(u.host, "/tmp/app.sock");
  EXPECT_EQ(u.target, "/");
  EXPECT_EQ(u.host_header, "localhost");
  EXPECT_FALSE(u.secure);
  // Node's ws form: the request target follows the first ':'.
  u = parse_websocket_uri("WS+UNIX:///run/a_b.sock:/chat/x?room=1");
  EXPECT_EQ(u.unix_path, "/run/a_b.sock");
  EXPECT_EQ(u.target, "/chat/x?room=1");
  u = parse_websocket_uri("ws+unix:///tmp/s:?q=1");
  EXPECT_EQ(u.target, "/?q=1");
  EXPECT_EQ(parse_websocket_uri("ws+unix:///tmp/s:").target, "/");
}

TEST(UnixUri, RulesAreNamed) {
  EXPECT_EQ(invalid_text("ws+unix://host/tmp/s"),
            "uri: ws+unix must be ws+unix:///absolute/socket/path[:/target] (no host)");
  EXPECT_EQ(invalid_text("ws+unix://"),
            "uri: ws+unix must be ws+unix:///absolute/socket/path[:/target] (no host)");
  EXPECT_EQ(invalid_text("ws+unix:///tmp/s?x=1"),
            "uri: a ws+unix socket path must not hold '?' (put the target after ':')");
  EXPECT_EQ(invalid_text("ws+unix:///tmp/s:chat"),
            "uri: the ws+unix target after ':' must start with '/'");
  EXPECT_EQ(invalid_text("ws+unix:///" + std::string(107, 'a')),
            "uri: a ws+unix socket path must be at most 107 bytes");
  EXPECT_EQ(invalid_text("ws+unix:///tmp/s#frag"), "uri: a fragment (#) is not allowed");
  EXPECT_EQ(invalid_text("wss+unix:///tmp/s"),
            "uri: scheme must be ws, wss or ws+unix, not 'wss+unix'");
}

TEST(UnixListener, ArgumentsAndExistingFileAreRefused) {
  TempDir dir;
  duplex::WebSocketListenerOptions o;
  o.threads = 1;
  duplex::WebSocketListener listener(o);
  try {
    listener.listen_unix("");
    FAIL() << "empty path accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "listen_unix: path must not be empty");
  }
  try {
    listener.listen_unix("/" + std::string(107, 'a'));
    FAIL() << "long path accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "listen_unix: path must be at most 107 bytes (sockaddr_un)");
  }
  const auto path = dir.file("s.sock");
  const auto bound = listener.listen_unix(path);
  EXPECT_EQ(bound.host, path);
  EXPECT_EQ(bound.port, 0);
  try {
    listener.listen_unix(path);
    FAIL() << "an existing socket file was bound again";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::address_in_use);
  }
  ASSERT_EQ(listener.local_endpoints().size(), 1u);
  EXPECT_EQ(listener.local_endpoints()[0].host, path);
}

TEST(UnixSocket, ClientAndListenerEchoOverASocketFile) {
  TempDir dir;
  const auto path = dir.file("echo.sock");
  duplex::WebSocketListenerOptions o;
  o.threads = 2;
  duplex::WebSocketListener listener(o);
  std::mutex m;
  std::condition_variable cv;
  std::optional<duplex::WebSocketRequest> seen;
  std::optional<MessageWebSocket> server_side;
  std::string echoed;
  listener.connection_received([&](duplex::WebSocketListenerConnectionReceivedEventArgs& a) {
    auto ws = a.take_message_websocket();
    ws.message_received([](MessageWebSocket& s, const auto& msg) {
      s.control().message_type(msg.message_type());
      s.send_async(msg.data(), [](std::error_code) {});
    });
    std::lock_guard lock(m);
    seen = a.request();
    server_side.emplace(std::move(ws));
    cv.notify_all();
  });
  listener.http_requested(
      [](const duplex::HttpServerRequest& req, duplex::HttpServerResponse& res) {
        res.body("unix " + std::string(req.path()) + " from '" + req.remote_address.host + "'");
      });
  listener.listen_unix(path);

  {
    MessageWebSocket ws;
    ws.message_received([&](MessageWebSocket&, const auto& msg) {
      std::lock_guard lock(m);
      echoed.assign(reinterpret_cast<const char*>(msg.data().data()), msg.data().size());
      cv.notify_all();
    });
    ws.connect_async("ws+unix://" + path + ":/chat?room=1").get();
    EXPECT_EQ(ws.information().remote_address().host, path);
    EXPECT_EQ(ws.information().remote_address().port, 0);
    ws.send_async("over a socket file").get();
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return !echoed.empty() && seen; }));
    EXPECT_EQ(echoed, "over a socket file");
    EXPECT_EQ(seen->target, "/chat?room=1");
    EXPECT_EQ(seen->host, "localhost");
    EXPECT_EQ(seen->local_address.host, path);
    EXPECT_EQ(seen->remote_address.host, "");  // an unnamed client end
  }

  // Plain HTTP on the same socket file (what a reverse proxy sends).
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string req = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
  ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<long>(req.size()));
  std::string answer;
  char buf[1024];
  for (int i = 0; i < 100; ++i) {  // bounded: until the server closes
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 3000) <= 0) break;
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  EXPECT_EQ(answer.substr(0, answer.find("\r\n")), "HTTP/1.1 200 OK");
  EXPECT_EQ(answer.substr(answer.find("\r\n\r\n") + 4), "unix /healthz from ''");

  listener.stop(1s);
  std::lock_guard lock(m);
  server_side.reset();
}

TEST(UnixSocket, ConnectToMissingSocketFails) {
  TempDir dir;
  MessageWebSocket ws;
  try {
    ws.connect_async("ws+unix://" + dir.file("nobody.sock")).get();
    FAIL() << "connected to nothing";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory) << e.code().message();
  }
}

}  // namespace
