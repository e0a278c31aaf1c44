// WebSocketListener with a peer we did not write: Debian's Python websockets
// (10.4, always /usr/bin/python3) as the client.
#include <duplex/websocket_listener.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
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

bool has_python_websockets() {
  return std::system((std::string(python) + " -c 'import websockets' 2>/dev/null").c_str()) == 0;
}

// Runs `script` with the port as argument (bounded by `timeout`), returning stdout.
std::string run_python(const duplex::test::TempDir& dir, const char* script, std::uint16_t port) {
  const auto path = dir.file("client.py");
  std::ofstream(path) << script;
  const std::string cmd =
      "timeout 30 " + std::string(python) + " " + path + " " + std::to_string(port) + " 2>&1";
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

}  // namespace
