/*
 * echo_server: accepts TCP connections on 127.0.0.1:P and sends every byte
 * back. The library's server loop (serve.h) runs one session per connection
 * (echo_session.h: a multishot receive into a shared buffer ring on
 * io_uring, cor_recv elsewhere); the command line is cli.h's.
 *
 *     echo_server [--port P] [--threads N] [--backend uring|epoll]
 *                 [--idle-ms MS] [--grace-ms MS]
 */
#include "cli.h"
#include "echo_session.h"

int main(int argc, char **argv)
{
    server_args a;
    server_parse_args(argc, argv, &a, NULL, NULL);
    return server_main("echo_server", &a, echo_new_session, NULL, NULL);
}
