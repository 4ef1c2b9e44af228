//! tokio_echo: a TCP echo server on tokio, a peer the echo benchmark compares
//! coring against. One current-thread runtime per --threads thread, each with
//! its own SO_REUSEPORT listener on 127.0.0.1:port (made with socket2 by the
//! main thread, so a bind error is reported before anything starts, then
//! handed to the runtime with TcpListener::from_std). One task per connection
//! reads into a fixed 64 KiB buffer allocated with the task and writes back
//! what it read with write_all: steady state allocates nothing.
//!
//!   tokio_echo --port 7000 [--threads N] [--duration S]
//! Runs until SIGINT or SIGTERM (tokio's signal streams, on a small runtime of
//! the main thread), or for S seconds, then exits with status 0.
//! Built offline from Debian's crates: see Cargo.toml and .cargo/config.toml.

use std::io;
use std::net::SocketAddr;
use std::process::exit;
use std::thread;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

const BUF_SIZE: usize = 65536;
const BACKLOG: i32 = 4096;

struct Args {
    port: u16,
    threads: usize,
    duration_s: f64, // 0: until a signal
}

fn usage() -> ! {
    eprintln!("usage: tokio_echo --port P [--threads N] [--duration S]");
    exit(2);
}

/// The command line the C peers take (bench/peers/peer_args.h), with the same checks.
fn parse_args() -> Args {
    let (mut port, mut threads, mut duration_s) = (0f64, 1f64, 0f64);
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let value = argv.next().unwrap_or_else(|| usage());
        let v: f64 = value.parse().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--port" => port = v,
            "--threads" => threads = v,
            "--duration" => duration_s = v,
            _ => usage(),
        }
    }
    let (port, threads) = (port as i64, threads as i64);
    if port <= 0
        || port > 65535
        || !(1..=256).contains(&threads)
        || duration_s.is_nan()
        || duration_s < 0.0
    {
        usage();
    }
    Args {
        port: port as u16,
        threads: threads as usize,
        duration_s,
    }
}

/// A thousand connections need more descriptors than the usual soft limit of 1024.
fn raise_fd_limit() {
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

/// A non-blocking socket listening on 127.0.0.1:port with SO_REUSEPORT.
fn listen_socket(port: u16) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    s.listen(BACKLOG)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

async fn serve(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; BUF_SIZE].into_boxed_slice();
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if s.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn accept_loop(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                tokio::spawn(serve(s));
            }
            Err(e) => {
                eprintln!("tokio_echo: accept: {}", e);
                // Out of descriptors: give the connections a moment to close.
                if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE)
                {
                    thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

/// One serving thread: its runtime runs the listener until stop fires; dropping
/// the runtime then drops (and so closes) every connection's task.
fn serve_thread(listener: std::net::TcpListener, stop: oneshot::Receiver<()>) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        tokio::select! {
            _ = accept_loop(listener) => {}
            _ = stop => {}
        }
        Ok(())
    })
}

/// Waits for SIGINT or SIGTERM or, if duration_s > 0, for that long. The signal
/// streams are registered here, before the serving threads start, so a signal
/// never meets the default action.
struct StopWaiter {
    rt: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopWaiter {
    fn new() -> io::Result<StopWaiter> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (term, int) = {
            let _in_rt = rt.enter();
            (
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            )
        };
        Ok(StopWaiter { rt, term, int })
    }

    fn wait(mut self, duration_s: f64) {
        let (term, int) = (&mut self.term, &mut self.int);
        self.rt.block_on(async {
            let timer = async {
                if duration_s > 0.0 {
                    tokio::time::sleep(Duration::from_secs_f64(duration_s)).await
                } else {
                    std::future::pending::<()>().await
                }
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = timer => {}
            }
        });
    }
}

fn main() {
    let args = parse_args();
    raise_fd_limit();
    let stop = StopWaiter::new().unwrap_or_else(|e| {
        eprintln!("tokio_echo: signals: {}", e);
        exit(1);
    });
    let mut listeners = Vec::with_capacity(args.threads);
    for _ in 0..args.threads {
        match listen_socket(args.port) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("tokio_echo: listen on 127.0.0.1:{}: {}", args.port, e);
                exit(1);
            }
        }
    }
    let mut workers = Vec::with_capacity(args.threads);
    for (i, listener) in listeners.into_iter().enumerate() {
        let (tx, rx) = oneshot::channel();
        let t = thread::Builder::new()
            .name(format!("tokio_echo-{}", i))
            .spawn(move || serve_thread(listener, rx))
            .unwrap_or_else(|e| {
                eprintln!("tokio_echo: thread: {}", e);
                exit(1);
            });
        workers.push((tx, t));
    }
    eprintln!(
        "tokio_echo: tokio current-thread runtimes, port {}, {} thread(s)",
        args.port, args.threads
    );
    stop.wait(args.duration_s);
    let mut rc = 0;
    for (tx, t) in workers {
        let _ = tx.send(());
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("tokio_echo: {}", e);
                rc = 1;
            }
            Err(_) => rc = 1,
        }
    }
    exit(rc);
}
