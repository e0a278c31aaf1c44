// pubsub_room: a chat server in one page. A client's room is its URL path;
// each message reaches every other client of that room, and, given a broker
// URL (redis://HOST:PORT or nats://HOST:PORT, in a build with the broker back
// ends), every client of that room on every other server using the broker.
//
//   pubsub_room 9000 [redis://127.0.0.1:6379]
//   (in two other shells) python3 -m websockets ws://127.0.0.1:9000/lobby
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include <duplex/message_websocket.hpp>
#include <duplex/topics.hpp>
#include <duplex/websocket_listener.hpp>
#ifdef DUPLEX_HAVE_BROKERS
#include <duplex/topic_broker.hpp>
#endif

int main(int argc, char** argv) {
  const auto port = static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 9000);
  duplex::TopicRegistry rooms;  // the default: a slow client loses messages, not its connection
#ifdef DUPLEX_HAVE_BROKERS
  std::unique_ptr<duplex::TopicBroker> broker;
  if (argc > 2) {
    broker = std::make_unique<duplex::TopicBroker>(rooms, argv[2]);
    if (!broker->wait_connected(std::chrono::seconds(5))) {
      std::cerr << "cannot reach " << argv[2] << '\n';
      return 1;
    }
  }
#endif
  // The sockets live here until they close; the registry forgets them itself.
  std::mutex mutex;
  std::unordered_map<duplex::MessageWebSocket*, std::shared_ptr<duplex::MessageWebSocket>> clients;

  duplex::WebSocketListener listener;
  listener.connection_received([&](duplex::WebSocketListenerConnectionReceivedEventArgs& args) {
    auto ws = std::make_shared<duplex::MessageWebSocket>(args.take_message_websocket());
    const std::string room(args.request().path());
    ws->message_received([&rooms, room](duplex::MessageWebSocket& self, const auto& m) {
      rooms.publish(room, m.data(), m.message_type(), self);  // everyone but the sender
    });
    ws->closed([&](duplex::MessageWebSocket& self, const duplex::WebSocketClosedEventArgs&) {
      std::shared_ptr<duplex::MessageWebSocket> last;  // destroyed after the lock
      std::lock_guard lock(mutex);
      if (auto it = clients.find(&self); it != clients.end()) {
        last = std::move(it->second);
        clients.erase(it);
      }
    });
    {
      std::lock_guard lock(mutex);
      clients.emplace(ws.get(), ws);
    }
    rooms.subscribe(*ws, room);
  });
  listener.listen("127.0.0.1", port);
  std::cout << "chat rooms on ws://127.0.0.1:" << port << "/ROOM; Ctrl-C stops" << std::endl;

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int sig = 0;
  sigwait(&set, &sig);
  listener.stop();
  const auto st = rooms.statistics();
  std::cout << st.published << " messages, " << st.deliveries << " deliveries, " << st.dropped
            << " dropped" << std::endl;
  // Destroyed outside the lock: a closed handler may be waiting for it.
  std::unordered_map<duplex::MessageWebSocket*, std::shared_ptr<duplex::MessageWebSocket>> rest;
  {
    std::lock_guard lock(mutex);
    rest.swap(clients);
  }
}
