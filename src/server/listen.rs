//! The accept loop: HTTP/1 (and HTTP/2 with prior knowledge) through hyper, with what a
//! server on the open internet needs and `axum::serve` does not offer: a deadline for a
//! request's headers (which also ends a kept-alive connection that idles), a cap on open
//! connections, and a graceful shutdown that lets requests in flight finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::http::limits::ConnPermit;

/// How the loop bounds its clients.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// How long a shutdown waits for requests in flight (WebSockets are not waited for).
const DRAIN_WITHIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets the
/// requests in flight finish (up to [`DRAIN_WITHIN`]) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Connections still being served as HTTP (not sockets), waited for at shutdown.
    let in_flight = Arc::new(Semaphore::new(u32::MAX as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        // At the cap, wait for a connection to close before accepting the next: the
        // others wait in the kernel's queue instead of in our memory.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, not spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Chat frames are small and latency matters more than packing them.
        let _ = tcp.set_nodelay(true);
        let permit = ConnPermit(Arc::new(permit));
        let held = permit.clone();
        let service = app.clone().map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            req.extensions_mut().insert(held.clone());
            req
        });
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        let serving = in_flight.clone().try_acquire_owned().ok();
        tokio::spawn(async move {
            let _permit = permit;
            let _serving = serving;
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(tcp),
                TowerToHyperService::new(service),
            );
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection served as HTTP holds one of these until it ends.
    let _ = tokio::time::timeout(DRAIN_WITHIN, in_flight.acquire_many(u32::MAX)).await;
    Ok(())
}
