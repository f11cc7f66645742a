//! The HTTP/1 accept loop and graceful shutdown.

use std::future::Future;
use std::io::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::origin::Origin;

/// How long shutdown waits for requests in flight before giving up on them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `origin` on `listener` until `shutdown` resolves; then stops accepting, wakes delayed
/// and held requests (they drop their connections), lets answered requests finish and closes
/// idle keep-alive connections, waiting at most [`DRAIN_TIMEOUT`].
pub async fn serve<F>(listener: TcpListener, origin: Arc<Origin>, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()>,
{
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        let _ = writeln!(io::stderr(), "demo-origin: accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let origin = Arc::clone(&origin);
                let service = service_fn(move |request| {
                    let origin = Arc::clone(&origin);
                    async move { origin.handle(request).await }
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    // Errors here are clients going away or connections dropped on purpose.
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    origin.begin_shutdown();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            let _ = writeln!(
                io::stderr(),
                "demo-origin: requests still in flight after {DRAIN_TIMEOUT:?}; leaving them"
            );
        }
    }
    Ok(())
}
