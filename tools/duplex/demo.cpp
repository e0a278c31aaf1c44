// duplex demo: the README's main job. Starts an echo server on loopback, then
// runs the Windows docs' two scenarios against it:
//  1. MessageWebSocket: UTF-8 message type, message_received and closed
//     handlers, send "Hello, world!", print the echo, close;
//  2. StreamWebSocket: send a generated multi-megabyte binary payload in
//     sections, read the echo, verify it byte for byte, report throughput;
//  3. permessage-deflate: a MessageWebSocket offering compression sends one
//     JSON-like text message, checks the echo and shows the negotiated
//     extension and the bytes on the wire;
// and shows the information objects (protocol, addresses, bytes each way).
// Exits non-zero on any failure; every wait has a deadline.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <duplex/data_reader.hpp>
#include <duplex/message_websocket.hpp>
#include <duplex/stream_websocket.hpp>

#include "common.hpp"
#include "echo_service.hpp"

namespace duplex::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct DemoOptions {
  double size_mib = 8.0;                  // "multi-megabyte", a fraction of a second on loopback
  std::size_t section_size = 256 * 1024;  // bytes per write_async
  double timeout = 30.0;                  // per step
  bool json = false;
};

// Deterministic payload (xorshift64), so a mismatch can be reproduced.
std::vector<std::byte> make_payload(std::size_t size) {
  std::vector<std::byte> out(size);
  std::uint64_t x = 0x9E3779B97F4A7C15ull;
  for (std::size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<std::byte>(x >> 56);
  }
  return out;
}

std::string endpoint(const HostEndpoint& e) {
  const bool v6 = e.host.find(':') != std::string::npos;
  return (v6 ? "[" + e.host + "]" : e.host) + ":" + std::to_string(e.port);
}

std::string info_json(const WebSocketInformation& info) {
  const auto s = info.bandwidth_statistics();
  std::ostringstream out;
  out << "{\"protocol\":" << json_string(info.protocol())
      << ",\"local\":" << json_string(endpoint(info.local_address()))
      << ",\"remote\":" << json_string(endpoint(info.remote_address()))
      << ",\"bytes_sent\":" << s.bytes_sent << ",\"bytes_received\":" << s.bytes_received
      << ",\"messages_sent\":" << s.messages_sent
      << ",\"messages_received\":" << s.messages_received << ",\"frames_sent\":" << s.frames_sent
      << ",\"frames_received\":" << s.frames_received << "}";
  return out.str();
}

std::string info_text(const WebSocketInformation& info) {
  const auto s = info.bandwidth_statistics();
  std::ostringstream out;
  out << "    information: protocol "
      << (info.protocol().empty() ? "(none)" : "'" + info.protocol() + "'") << ", "
      << endpoint(info.local_address()) << " -> " << endpoint(info.remote_address()) << "\n"
      << "    sent " << format_bytes(s.bytes_sent) << " in " << s.messages_sent << " messages / "
      << s.frames_sent << " frames, received " << format_bytes(s.bytes_received) << " in "
      << s.messages_received << " messages / " << s.frames_received << " frames";
  return out.str();
}

class Demo {
public:
  explicit Demo(const DemoOptions& o)
      : o_(o), step_timeout_(seconds_option(o.timeout, "--timeout")) {}

  int run() {
    const auto start = Clock::now();
    EchoServerOptions so;
    so.threads = 1;
    so.protocols = {"echo"};
    so.deflate.enable = true;  // only the third scenario's client offers it
    EchoServer server(so);
    say("echo server listening on " + server.url());

    int status = message_scenario(server.url());
    if (status == exit_ok) status = stream_scenario(server.url());
    if (status == exit_ok) status = deflate_scenario(server.url());
    server.stop(std::chrono::seconds(2));

    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (o_.json) {
      std::cout << "{\"event\":\"demo\",\"ok\":" << (status == exit_ok ? "true" : "false")
                << ",\"seconds\":" << seconds << ",\"message_websocket\":" << message_json_
                << ",\"stream_websocket\":" << stream_json_ << ",\"deflate\":" << deflate_json_
                << "}" << std::endl;
    } else if (status == exit_ok) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "demo passed in %.2f s", seconds);
      say(buf);
    } else {
      say("demo FAILED");
    }
    return status;
  }

private:
  void say(const std::string& line) {
    if (o_.json) return;
    std::lock_guard lock(output_mutex());
    std::cout << line << std::endl;
  }

  int fail(const std::string& context, std::error_code ec) {
    return report_error(context, ec, o_.json);
  }

  int fail(const std::string& why) {
    std::lock_guard lock(output_mutex());
    if (o_.json) {
      std::cout << "{\"event\":\"error\",\"context\":" << json_string(why) << "}" << std::endl;
    } else {
      std::cerr << "duplex demo: " << why << std::endl;
    }
    return exit_failure;
  }

  // 1. The Windows docs' MessageWebSocket echo.
  int message_scenario(const std::string& url) {
    say("1. MessageWebSocket");
    struct State {
      std::mutex mutex;
      std::condition_variable changed;
      std::optional<std::string> echo;
      std::optional<SocketMessageType> echo_type;
      bool closed = false;
      std::uint16_t code = 0;
      std::string reason;
    };
    auto state = std::make_shared<State>();

    MessageWebSocket ws;
    ws.control().message_type(SocketMessageType::utf8);
    ws.control().supported_protocols({"echo"});
    ws.message_received(
        [state](MessageWebSocket&, const MessageWebSocketMessageReceivedEventArgs& args) {
          // As in the Windows sample: read the whole message through a DataReader.
          DataReader reader = args.get_data_reader();
          reader.set_unicode_encoding(UnicodeEncoding::utf8);
          std::string text = reader.read_string(reader.unconsumed_buffer_length());
          std::lock_guard lock(state->mutex);
          state->echo = std::move(text);
          state->echo_type = args.message_type();
          state->changed.notify_all();
        });
    ws.closed([state](MessageWebSocket&, const WebSocketClosedEventArgs& args) {
      std::lock_guard lock(state->mutex);
      state->closed = true;
      state->code = args.code();
      state->reason = args.reason();
      state->changed.notify_all();
    });

    if (auto r = ws.connect_async(url).get_result(); !r) return fail("connect to " + url, r.ec);
    say("    connected to " + url);
    const std::string hello = "Hello, world!";
    if (auto r = ws.send_async(hello).get_result(); !r) return fail("send", r.ec);
    say("    sent \"" + hello + "\"");
    {
      std::unique_lock lock(state->mutex);
      if (!state->changed.wait_for(lock, step_timeout_, [&] { return state->echo.has_value(); })) {
        return fail("no echo of \"Hello, world!\" within the timeout");
      }
      if (*state->echo != hello || state->echo_type != SocketMessageType::utf8) {
        return fail("the echo differs: \"" + *state->echo + "\"");
      }
    }
    say("    received \"" + hello + "\" (utf8)");
    const auto info = ws.information();
    message_json_ = info_json(info);
    const std::string info_lines = info_text(info);

    if (auto r = ws.close_async(1000, "demo done").get_result(); !r) return fail("close", r.ec);
    {
      std::unique_lock lock(state->mutex);
      if (!state->changed.wait_for(lock, step_timeout_, [&] { return state->closed; })) {
        return fail("no closed event within the timeout");
      }
      if (state->code != 1000) {
        return fail("closed with code " + std::to_string(state->code) + ", expected 1000");
      }
    }
    say("    closed: 1000");
    say(info_lines);
    return exit_ok;
  }

  // 2. StreamWebSocket: a payload in sections, echoed and verified.
  int stream_scenario(const std::string& url) {
    say("2. StreamWebSocket");
    if (!(o_.size_mib > 0) || o_.size_mib > 4096) {
      throw std::invalid_argument("--size must be > 0 and <= 4096 (MiB)");
    }
    const auto size = static_cast<std::size_t>(o_.size_mib * 1024 * 1024);
    const std::vector<std::byte> payload = make_payload(size);

    StreamWebSocket ws;
    if (auto r = ws.connect_async(url).get_result(); !r) return fail("connect to " + url, r.ec);

    Progress progress("    echo", 2 * static_cast<std::uint64_t>(size));
    std::atomic<std::uint64_t> written{0};
    std::atomic<std::uint64_t> read_total{0};
    std::error_code read_error;
    std::optional<std::size_t> mismatch;
    const auto start = Clock::now();

    // Reads the echo while the main thread writes: the echo server answers each
    // section as it arrives, so both directions are busy at once.
    std::thread reader([&] {
      std::vector<std::byte> buffer(64 * 1024);
      auto input = ws.input_stream();
      std::size_t received = 0;
      while (received < size) {
        const auto r = input.read_async(buffer).get_result();
        if (!r) {
          read_error = r.ec;
          return;
        }
        if (r.value == 0) {
          read_error = make_error_code(error::closed);
          return;
        }
        const std::size_t n = std::min(r.value, size - received);
        if (!mismatch &&
            !std::equal(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n),
                        payload.begin() + static_cast<std::ptrdiff_t>(received))) {
          for (std::size_t i = 0; i < n; ++i) {
            if (buffer[i] != payload[received + i]) {
              mismatch = received + i;
              break;
            }
          }
        }
        received += r.value;
        read_total = received;
        progress.update(written.load() + received);
      }
    });

    auto output = ws.output_stream();
    std::size_t sections = 0;
    std::error_code write_error;
    for (std::size_t off = 0; off < size; off += o_.section_size) {
      const std::size_t n = std::min(o_.section_size, size - off);
      const auto r =
          output.write_async(std::span<const std::byte>(payload).subspan(off, n)).get_result();
      if (!r) {
        write_error = r.ec;
        break;
      }
      ++sections;
      written += n;
      progress.update(written.load() + read_total.load());
    }
    if (write_error) ws.close(1011, "demo write failed");  // unblocks the reader
    reader.join();
    progress.finish();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

    if (write_error) return fail("write", write_error);
    if (read_error) return fail("read the echo", read_error);
    if (read_total.load() != size) {
      return fail("echo length " + std::to_string(read_total.load()) +
                  " != " + std::to_string(size));
    }
    if (mismatch) return fail("the echo differs at byte " + std::to_string(*mismatch));

    const double mib = static_cast<double>(size) / (1024.0 * 1024.0);
    char line[160];
    std::snprintf(line, sizeof line,
                  "    sent %.1f MiB in %zu sections, echo verified byte for byte in %.3f s "
                  "(%.1f MiB/s each way)",
                  mib, sections, seconds, seconds > 0 ? mib / seconds : 0.0);
    say(line);
    const auto info = ws.information();
    std::ostringstream js;
    js << "{\"bytes\":" << size << ",\"sections\":" << sections << ",\"seconds\":" << seconds
       << ",\"mib_per_second\":" << (seconds > 0 ? mib / seconds : 0.0)
       << ",\"information\":" << info_json(info) << "}";
    stream_json_ = js.str();
    const std::string info_lines = info_text(info);
    if (auto r = ws.close_async(1000, {}).get_result(); !r) return fail("close", r.ec);
    say("    closed: 1000");
    say(info_lines);
    return exit_ok;
  }

  // 3. permessage-deflate: one compressed message echoed.
  int deflate_scenario(const std::string& url) {
    say("3. permessage-deflate");
    struct State {
      std::mutex mutex;
      std::condition_variable changed;
      std::optional<std::string> echo;
    };
    auto state = std::make_shared<State>();
    MessageWebSocket ws;
    ws.control().message_type(SocketMessageType::utf8);
    DeflateOptions deflate;
    deflate.enable = true;
    ws.control().deflate(deflate);
    ws.message_received(
        [state](MessageWebSocket&, const MessageWebSocketMessageReceivedEventArgs& args) {
          std::lock_guard lock(state->mutex);
          state->echo = std::string(args.text());
          state->changed.notify_all();
        });
    if (auto r = ws.connect_async(url).get_result(); !r) return fail("connect to " + url, r.ec);
    const auto extension = ws.information().extensions();
    if (extension.empty()) return fail("the server did not accept permessage-deflate");
    say("    negotiated: " + extension);
    // Telemetry-like JSON: the repetitive text compression is made for.
    std::string text = "[";
    for (int i = 0; i < 64; ++i) {
      if (i) text += ',';
      text += "{\"id\":" + std::to_string(i) + ",\"name\":\"sensor\",\"ok\":true}";
    }
    text += ']';
    if (auto r = ws.send_async(text).get_result(); !r) return fail("send", r.ec);
    {
      std::unique_lock lock(state->mutex);
      if (!state->changed.wait_for(lock, step_timeout_, [&] { return state->echo.has_value(); })) {
        return fail("no echo of the compressed message within the timeout");
      }
      if (*state->echo != text) return fail("the compressed message's echo differs");
    }
    const auto s = ws.information().bandwidth_statistics();
    say("    sent " + std::to_string(text.size()) + " B of JSON as " +
        std::to_string(s.bytes_sent) + " B on the wire (frame headers included); echo verified");
    std::ostringstream js;
    js << "{\"extensions\":" << json_string(extension) << ",\"message_bytes\":" << text.size()
       << ",\"wire_bytes_sent\":" << s.bytes_sent << ",\"wire_bytes_received\":" << s.bytes_received
       << "}";
    deflate_json_ = js.str();
    if (auto r = ws.close_async(1000, {}).get_result(); !r) return fail("close", r.ec);
    say("    closed: 1000");
    return exit_ok;
  }

  DemoOptions o_;
  std::chrono::milliseconds step_timeout_;
  std::string deflate_json_ = "null";
  std::string message_json_ = "null";
  std::string stream_json_ = "null";
};

}  // namespace

void add_demo_command(CLI::App& app, int& exit_status) {
  auto o = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo",
      "Run the Windows docs' echo scenarios (MessageWebSocket, StreamWebSocket) against an "
      "embedded echo server on loopback, and show the connection information");
  cmd->add_option("--size", o->size_mib, "StreamWebSocket payload, in MiB")->capture_default_str();
  cmd->add_option("--section", o->section_size, "Bytes per write_async")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{64} << 20));
  cmd->add_option("--timeout", o->timeout, "Deadline of each step, in seconds")
      ->capture_default_str();
  cmd->add_flag("--json", o->json, "One JSON object with the results on stdout");
  cmd->callback([o, &exit_status] { exit_status = Demo(*o).run(); });
}

}  // namespace duplex::cli
