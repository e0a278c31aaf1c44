// WebSocketListener with a peer we did not write: Debian's Python websockets
// (10.4, always /usr/bin/python3) as the client.
#include <duplex/websocket_listener.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <mutex>
#include <vector>

#include <duplex/message_websocket.hpp>
#include <string>

#include "listener_test_util.hpp"

namespace {

using namespace std::chrono_literals;

constexpr const char* python = "/usr/bin/python3";

// Handshake-level checks seen from websockets: the selected subprotocol, a
// header added by the hook, and a refusal reported with its status.
constexpr const char* handshake_script = R"PY(
import asyncio, sys
import websockets

port = int(sys.argv[1])

async def main():
    uri = f"ws://127.0.0.1:{port}/chat?room=1"
    async with websockets.connect(uri, subprotocols=["x", "chat"], open_timeout=5,
                                  close_timeout=2) as ws:
        print("protocol", ws.subprotocol)
        print("header", ws.response_headers.get("X-Server"))
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/forbidden", open_timeout=5):
            print("refused none")
    except websockets.exceptions.InvalidStatusCode as e:
        print("refused", e.status_code)
    sys.stdout.flush()

asyncio.run(main())
)PY";

// Echo through the listener: text with multi-byte UTF-8, binary of the frame
// length boundaries, a burst in order, and a close with 4000 whose echo comes
// back. argv: port, scheme, CA file (wss).
constexpr const char* echo_script = R"PY(
import asyncio, ssl, sys
import websockets

port, scheme = int(sys.argv[1]), sys.argv[2]

async def main():
    ctx = None
    if scheme == "wss":
        ctx = ssl.create_default_context(cafile=sys.argv[3])
    uri = f"{scheme}://127.0.0.1:{port}/echo"
    async with websockets.connect(uri, ssl=ctx, subprotocols=["chat"], max_size=None,
                                  open_timeout=5, close_timeout=5) as ws:
        print("protocol", ws.subprotocol)
        text = "héllo ✓ 😀"
        await ws.send(text)
        print("text", (await asyncio.wait_for(ws.recv(), 5)) == text)
        ok = True
        for n in (0, 125, 126, 65535, 65536, 1 << 20):
            data = bytes((i * 31) & 0xFF for i in range(n))
            await ws.send(data)
            got = await asyncio.wait_for(ws.recv(), 10)
            ok = ok and got == data and isinstance(got, bytes)
        print("binary", ok)
        for i in range(1000):
            await ws.send(f"m{i}")
        order = [await asyncio.wait_for(ws.recv(), 10) for _ in range(1000)]
        print("burst", order == [f"m{i}" for i in range(1000)])
        await ws.close(code=4000, reason="done here")
        print("close", ws.close_code, ws.close_reason)
    sys.stdout.flush()

asyncio.run(main())
)PY";

bool has_python_websockets() {
  return std::system((std::string(python) + " -c 'import websockets' 2>/dev/null").c_str()) == 0;
}

// Runs `script` with the port and `args` as arguments (at most 30 s),
// returning its output.
std::string run_python(const duplex::test::TempDir& dir, const char* script, std::uint16_t port,
                       const std::string& args = {}) {
  const auto path = dir.file("client.py");
  std::ofstream(path) << script;
  const std::string cmd = "timeout 30 " + std::string(python) + " " + path + " " +
                          std::to_string(port) + " " + args + " 2>&1";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    ::pclose(p);
  }
  return out;
}

TEST(ListenerPython, WebsocketsClientHandshake) {
  if (!has_python_websockets()) GTEST_SKIP() << "python3-websockets is not installed";
  duplex::WebSocketListenerOptions o;
  o.threads = 1;
  o.supported_protocols = {"chat"};
  duplex::WebSocketListener listener(o);
  listener.handshake_requested([](duplex::WebSocketHandshakeContext& ctx) {
    if (ctx.request().path() == "/forbidden") return ctx.reject(403, "no\n");
    ctx.add_response_header("X-Server", "duplex");
  });
  listener.listen("127.0.0.1", 0);
  duplex::test::TempDir dir;
  const auto out = run_python(dir, handshake_script, listener.local_port());
  EXPECT_NE(out.find("protocol chat\n"), std::string::npos) << out;
  EXPECT_NE(out.find("header duplex\n"), std::string::npos) << out;
  EXPECT_NE(out.find("refused 403\n"), std::string::npos) << out;
}

// An echo server whose sockets echo every message with its type.
struct PythonEchoServer {
  explicit PythonEchoServer(duplex::WebSocketListenerOptions o) : listener(std::move(o)) {
    listener.connection_received(
        [this](duplex::WebSocketListenerConnectionReceivedEventArgs& args) {
          auto ws = args.take_message_websocket();
          ws.message_received([](duplex::MessageWebSocket& s, const auto& a) {
            s.control().message_type(a.message_type());
            s.send_async(a.data(), [](std::error_code) {});
          });
          ws.closed([this](duplex::MessageWebSocket&, const duplex::WebSocketClosedEventArgs& a) {
            std::lock_guard lock(m);
            closed_code = a.code();
            closed_reason = a.reason();
          });
          std::lock_guard lock(m);
          sockets.push_back(std::move(ws));
        });
    listener.listen("127.0.0.1", 0);
  }
  ~PythonEchoServer() {
    listener.stop(1s);
    std::lock_guard lock(m);
    sockets.clear();
  }
  duplex::WebSocketListener listener;
  std::mutex m;
  std::vector<duplex::MessageWebSocket> sockets;
  int closed_code = 0;
  std::string closed_reason;
};

void check_echo_output(const std::string& out) {
  EXPECT_NE(out.find("protocol chat\n"), std::string::npos) << out;
  EXPECT_NE(out.find("text True\n"), std::string::npos) << out;
  EXPECT_NE(out.find("binary True\n"), std::string::npos) << out;
  EXPECT_NE(out.find("burst True\n"), std::string::npos) << out;
  // The server echoed the close code (RFC 6455 5.5.1; the reason is not echoed).
  EXPECT_NE(out.find("close 4000 "), std::string::npos) << out;
}

TEST(ListenerPython, WebsocketsClientEcho) {
  if (!has_python_websockets()) GTEST_SKIP() << "python3-websockets is not installed";
  duplex::WebSocketListenerOptions o;
  o.threads = 2;
  o.supported_protocols = {"chat"};
  PythonEchoServer server(o);
  duplex::test::TempDir dir;
  check_echo_output(run_python(dir, echo_script, server.listener.local_port(), "ws"));
  ASSERT_TRUE(duplex::test::wait_until(
      [&] {
        std::lock_guard lock(server.m);
        return server.closed_code != 0;
      },
      3s));
  std::lock_guard lock(server.m);
  EXPECT_EQ(server.closed_code, 4000);
  EXPECT_EQ(server.closed_reason, "done here");
}

TEST(ListenerPython, WebsocketsClientEchoOverTls) {
  if (!has_python_websockets()) GTEST_SKIP() << "python3-websockets is not installed";
  duplex::test::TestCertificates certs;
  ASSERT_TRUE(certs.ok());
  duplex::WebSocketListenerOptions o;
  o.threads = 1;
  o.supported_protocols = {"chat"};
  duplex::ListenerTlsOptions tls;
  tls.certificate_chain_file = certs.file("server.pem");
  tls.private_key_file = certs.file("server.key");
  o.tls = tls;
  PythonEchoServer server(o);
  check_echo_output(run_python(certs.dir(), echo_script, server.listener.local_port(),
                               "wss " + certs.file("ca.pem")));
}

}  // namespace
