//! The listener: a bounded number of client connections (past the bound, new ones wait in
//! the listen backlog until a slot frees), each one hyper HTTP/1.1 connection task, and
//! graceful shutdown (stop accepting, end event streams, let in-flight requests finish,
//! close idle keep-alive connections).
//!
//! hyper's header-read timeout runs whenever a connection waits for a request head: from
//! when it opens, and again after each response. So a connection that sends nothing, sends
//! its headers slowly, or sits idle between requests gives its slot back after
//! `--header-timeout-ms`; an open event stream is not waiting for a head and stays.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::http::{handle, App, Connections};

/// How long in-flight requests get after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Binds `config.listen`, logs one line to stderr, serves until `shutdown` completes.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let listener = TcpListener::bind(config.listen).await?;
    let local = listener.local_addr()?;
    eprintln!(
        "redis-rest listening on http://{local} (redis {}, pool {}, max connections {})",
        config.redis, config.pool_size, config.max_connections
    );
    let (stop, stopped) = watch::channel(false);
    let connections = Connections::new(config.max_connections.get());
    let app = Arc::new(App::new(&config, connections.clone(), stopped.clone()));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(config.header_timeout());
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&connections.slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    eprintln!("redis-rest: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Reap finished connection tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(connection(stream, slot, Arc::clone(&app), builder.clone(), stopped.clone()));
    }
    drop(listener);
    let _ = stop.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        eprintln!("redis-rest: some connections did not finish within {SHUTDOWN_GRACE:?}");
    }
    Ok(())
}

/// Serves one client connection; its slot is held until it ends.
async fn connection(
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    app: Arc<App>,
    builder: http1::Builder,
    mut stopped: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| handle(Arc::clone(&app), req));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped.changed() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
