// duplex/message_type.hpp: the two kinds of WebSocket data message.
#pragma once

#include <cstdint>

namespace duplex {

/// The type of a data message (Windows: SocketMessageType). `utf8` messages are
/// text frames whose payload must be valid UTF-8 (checked on send and receive);
/// `binary` messages carry any bytes.
enum class SocketMessageType : std::uint8_t {
  binary = 0,
  utf8 = 1,
};

}  // namespace duplex
