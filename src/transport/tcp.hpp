// transport/tcp.hpp: the TCP socket type of every connection.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

namespace duplex::transport {

/// A TCP socket typed on its io_context's own executor: Asio's operations on it
/// keep that executor as is, not in a type-erased asio::any_io_executor, so
/// each pending operation is smaller and cheaper to start and complete than
/// with asio::ip::tcp::socket. Every socket of a connection is created on (or
/// accepted into) the io_context of the loop that runs it.
using TcpSocket = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;

}  // namespace duplex::transport
