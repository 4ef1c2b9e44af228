// asio_echo: a TCP echo server on Boost.Asio with C++20 coroutines, a peer the
// echo benchmark compares coring against. Built twice from this file: with
// ASIO_ECHO_IO_URING its sockets run on Asio's io_uring backend
// (BOOST_ASIO_HAS_IO_URING with epoll disabled), otherwise on epoll.
// One io_context per thread (concurrency hint 1), each with its own
// SO_REUSEPORT listener on 127.0.0.1:port; one coroutine per connection reads
// into a 64 KiB buffer and writes back what it read.
//
//   asio_echo_uring --port 7000 [--threads N] [--duration S]
// Runs until SIGINT or SIGTERM, or for S seconds.
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/version.hpp>

#include "peer_args.h"

namespace asio = boost::asio;
using asio::ip::tcp;

#ifdef ASIO_ECHO_IO_URING
static const char *const engine = "io_uring";
#else
static const char *const engine = "epoll";
#endif

static constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

static asio::awaitable<void> session(tcp::socket s)
{
    boost::system::error_code ignored;
    s.set_option(tcp::no_delay(true), ignored);
    std::unique_ptr<char[]> buf(new char[65536]);
    for (;;) {
        auto [rerr, n] = co_await s.async_read_some(asio::buffer(buf.get(), 65536), nothrow);
        if (rerr)
            co_return;
        auto [werr, m] = co_await asio::async_write(s, asio::buffer(buf.get(), n), nothrow);
        if (werr)
            co_return;
    }
}

static asio::awaitable<void> listener(tcp::acceptor acceptor)
{
    for (;;) {
        auto [err, s] = co_await acceptor.async_accept(nothrow);
        if (err == asio::error::operation_aborted)
            co_return;
        if (!err)
            asio::co_spawn(acceptor.get_executor(), session(std::move(s)), asio::detached);
    }
}

int main(int argc, char **argv)
{
    peer_args a;
    peer_parse_args(argc, argv, "asio_echo", &a);
    sigset_t set;
    peer_block_signals(&set);

    std::vector<std::unique_ptr<asio::io_context>> contexts;
    std::vector<std::thread> threads;
    for (int i = 0; i < a.threads; i++) {
        int fd = peer_listen_socket(a.port);
        if (fd < 0)
            return 1;
        auto ctx = std::make_unique<asio::io_context>(1);
        tcp::acceptor acceptor(*ctx);
        boost::system::error_code err;
        acceptor.assign(tcp::v4(), fd, err);
        if (err) {
            fprintf(stderr, "asio_echo: %s\n", err.message().c_str());
            return 1;
        }
        asio::co_spawn(*ctx, listener(std::move(acceptor)), asio::detached);
        contexts.push_back(std::move(ctx));
    }
    for (auto &ctx : contexts)
        threads.emplace_back([c = ctx.get()] { c->run(); });
    fprintf(stderr, "asio_echo: Boost %d.%d, %s, port %d, %d thread(s)\n", BOOST_VERSION / 100000,
            BOOST_VERSION / 100 % 1000, engine, a.port, a.threads);
    peer_wait_for_stop(&set, a.duration_s);
    for (auto &ctx : contexts)
        ctx->stop();
    for (auto &t : threads)
        t.join();
    return 0;
}
