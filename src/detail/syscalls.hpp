// detail/syscalls.hpp: the socket system calls of the data path, accept and
// the plain-TCP handshake, issued as bare system calls.
//
// glibc's recv/send/accept4/close wrappers are thread-cancellation points:
// each costs two calls around the system call (the library never uses thread
// cancellation), and glibc's generic syscall() shuffles six arguments through
// a call. On x86-64 Linux the instruction is issued inline; elsewhere through
// syscall(). Both return -1 and set errno on failure, as the wrappers do.
#pragma once

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

// Under ThreadSanitizer and AddressSanitizer the calls go through libc, whose
// wrappers the sanitizers intercept: TSan takes a send on a socket and the
// peer's receive as synchronisation (as the kernel makes them) and tracks
// descriptors across close; ASan checks the buffers.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define DUPLEX_SYSCALLS_THROUGH_LIBC 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define DUPLEX_SYSCALLS_THROUGH_LIBC 1
#endif
#endif

namespace duplex::detail {

#if defined(DUPLEX_SYSCALLS_THROUGH_LIBC)
inline ssize_t sys_recv(int fd, void* buf, std::size_t len, int flags = 0) noexcept {
  return ::recv(fd, buf, len, flags);
}
inline ssize_t sys_send(int fd, const void* buf, std::size_t len, int flags = 0) noexcept {
  return ::send(fd, buf, len, flags | MSG_NOSIGNAL);
}
inline ssize_t sys_sendmsg(int fd, const msghdr* msg) noexcept {
  return ::sendmsg(fd, msg, MSG_NOSIGNAL);
}
inline int sys_accept4(int fd, sockaddr* addr, socklen_t* len, int flags) noexcept {
  return ::accept4(fd, addr, len, flags);
}
inline int sys_close(int fd) noexcept {
  return ::close(fd);
}
#else
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
inline long sys_call6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) noexcept {
  long ret = 0;
  register long r10 asm("r10") = a4;
  register long r8 asm("r8") = a5;
  register long r9 asm("r9") = a6;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  if (ret < 0 && ret > -4096) [[unlikely]] {
    errno = static_cast<int>(-ret);
    return -1;
  }
  return ret;
}
#else
inline long sys_call6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) noexcept {
  return ::syscall(nr, a1, a2, a3, a4, a5, a6);
}
#endif

inline long sys_arg(const void* p) noexcept {
  return reinterpret_cast<long>(p);
}
inline ssize_t sys_recv(int fd, void* buf, std::size_t len, int flags = 0) noexcept {
  return sys_call6(SYS_recvfrom, fd, sys_arg(buf), static_cast<long>(len), flags, 0, 0);
}
/// MSG_NOSIGNAL always: a peer gone is an error, never SIGPIPE.
inline ssize_t sys_send(int fd, const void* buf, std::size_t len, int flags = 0) noexcept {
  return sys_call6(SYS_sendto, fd, sys_arg(buf), static_cast<long>(len), flags | MSG_NOSIGNAL, 0,
                   0);
}
inline ssize_t sys_sendmsg(int fd, const msghdr* msg) noexcept {
  return sys_call6(SYS_sendmsg, fd, sys_arg(msg), MSG_NOSIGNAL, 0, 0, 0);
}
inline int sys_accept4(int fd, sockaddr* addr, socklen_t* len, int flags) noexcept {
  return static_cast<int>(sys_call6(SYS_accept4, fd, sys_arg(addr), sys_arg(len), flags, 0, 0));
}
/// close(2): the descriptor is released even when it reports an error.
inline int sys_close(int fd) noexcept {
  return static_cast<int>(sys_call6(SYS_close, fd, 0, 0, 0, 0, 0));
}
#endif  // DUPLEX_SYSCALLS_THROUGH_LIBC

}  // namespace duplex::detail
