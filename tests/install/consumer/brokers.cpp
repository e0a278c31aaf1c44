// A user's program built against an installed duplex_brokers: it must find
// the broker header, link hiredis and libnats (through the CMake package or
// pkg-config) and run both back ends: a bad URL is refused, and a broker that
// does not answer is reported as not connected.
#include <duplex/topic_broker.hpp>
#include <duplex/topics.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

int main() {
  duplex::TopicRegistry topics;
  try {
    duplex::TopicBroker broker(topics, "http://127.0.0.1:6379");
    return 1;
  } catch (const std::invalid_argument&) {
  }
  // A bound port nobody listens on: connections to it are refused.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return 2;
  const std::string port = std::to_string(ntohs(addr.sin_port));
  for (const char* scheme : {"redis", "nats"}) {
    duplex::TopicBroker broker(topics, std::string(scheme) + "://127.0.0.1:" + port);
    if (broker.wait_connected(std::chrono::milliseconds(200))) return 3;
    if (broker.state() == duplex::BrokerState::connected) return 4;
  }
  ::close(fd);
  std::puts("brokers consumer ok");
  return 0;
}
