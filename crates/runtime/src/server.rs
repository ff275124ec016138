//! A background server task that can be stopped and awaited.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::RuntimeError;

/// A server running in the background until [`RunningServer::stop`].
///
/// Servers stop only when told, not on the shutdown signal: health and
/// metrics keep answering while in-flight work drains.
#[derive(Debug)]
pub struct RunningServer {
    name: &'static str,
    local_addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<Result<(), RuntimeError>>,
}

impl RunningServer {
    pub(crate) fn new(
        name: &'static str,
        local_addr: SocketAddr,
        stop: CancellationToken,
        task: JoinHandle<Result<(), RuntimeError>>,
    ) -> Self {
        Self {
            name,
            local_addr,
            stop,
            task,
        }
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, lets open ones finish, and waits.
    pub async fn stop(self) -> Result<(), RuntimeError> {
        self.stop.cancel();
        self.task.await.map_err(|source| RuntimeError::ServerTask {
            server: self.name,
            source,
        })?
    }
}

/// Binds `addr`, naming the server in the error.
pub(crate) async fn bind(
    server: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), RuntimeError> {
    let bind_error = |source| RuntimeError::Bind {
        server,
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local_addr))
}
