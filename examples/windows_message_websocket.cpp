// The Windows WebSockets article's MessageWebSocket sample, ported to duplex
// (docs/from-windows.md maps every name): set the message type, handle
// MessageReceived and Closed, connect, send a message written with a
// DataWriter, read the reply with a DataReader, and turn errors into a
// WebErrorStatus as WebSocketError.GetStatus does.
// Usage: example_windows_message_websocket [ws://host:port/path]
#include <duplex/data_reader.hpp>
#include <duplex/data_writer.hpp>
#include <duplex/message_websocket.hpp>

#include <chrono>
#include <future>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  // Windows: MessageWebSocket^ messageWebSocket = ref new MessageWebSocket();
  duplex::MessageWebSocket message_websocket;
  // Windows: messageWebSocket->Control->MessageType = SocketMessageType::Utf8;
  message_websocket.control().message_type(duplex::SocketMessageType::utf8);

  std::promise<std::string> reply;
  // Windows: messageWebSocket->MessageReceived += ref new TypedEventHandler<...>(...);
  message_websocket.message_received(
      [&](duplex::MessageWebSocket&, const duplex::MessageWebSocketMessageReceivedEventArgs& args) {
        // Windows: DataReader^ dataReader = args->GetDataReader();
        //          dataReader->UnicodeEncoding = UnicodeEncoding::Utf8;
        //          dataReader->ReadString(dataReader->UnconsumedBufferLength);
        auto data_reader = args.get_data_reader();
        data_reader.set_unicode_encoding(duplex::UnicodeEncoding::utf8);
        reply.set_value(data_reader.read_string(data_reader.unconsumed_buffer_length()));
      });
  // Windows: messageWebSocket->Closed += ref new TypedEventHandler<...>(...);
  message_websocket.closed(
      [](duplex::MessageWebSocket&, const duplex::WebSocketClosedEventArgs& args) {
        std::cout << "closed: code " << args.code() << ", reason \"" << args.reason() << "\"\n";
      });

  try {
    // Windows: create_task(messageWebSocket->ConnectAsync(ref new Uri(L"wss://..."))).then(...)
    message_websocket.connect_async(argc > 1 ? argv[1] : "ws://127.0.0.1:9000/").get();

    // Windows: DataWriter^ dataWriter = ref new DataWriter(messageWebSocket->OutputStream);
    //          dataWriter->WriteString(message);
    //          create_task(dataWriter->StoreAsync()).then(...) { dataWriter->DetachStream(); }
    // A duplex DataWriter is a buffer with no stream to store to or detach:
    // the send takes its bytes (one message), and the writer can be dropped.
    duplex::DataWriter data_writer;
    data_writer.write_string("Hello, World!");
    message_websocket.send_async(data_writer.data()).get();

    auto received = reply.get_future();
    if (received.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      std::cerr << "no reply within 10 s\n";
      return 1;
    }
    std::cout << "Message received from MessageWebSocket: " << received.get() << '\n';

    // Windows: messageWebSocket->Close(1000, L"Closed due to user request.");
    message_websocket.close_async(1000, "Closed due to user request.").get();
  } catch (const std::system_error& e) {
    // Windows: WebErrorStatus webErrorStatus = WebSocketError::GetStatus(e->HResult);
    const duplex::WebErrorStatus web_error_status = duplex::get_status(e.code());
    std::cerr << duplex::to_string(web_error_status) << ": " << e.what() << '\n';
    return 1;
  }
  return 0;
}
