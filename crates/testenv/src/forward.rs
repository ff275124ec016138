//! A TCP forwarder: what lets a Pod on a [`Node`](crate::Node)'s bridge
//! reach the API server, which listens on loopback only.
//!
//! Observes connections to its listening address; writes nothing but the
//! bytes it copies. It runs on a thread of its own with its own runtime, so
//! it outlives the test (or demo) runtime that started it, and dropping it
//! closes the listener and every connection it carries.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::error::{Error, Result, io};

/// Forwards every connection accepted on [`Forwarder::addr`] to a target.
#[derive(Debug)]
pub struct Forwarder {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Listens on `listen` (port 0 picks one) and forwards each connection
    /// to `target`.
    pub fn start(listen: SocketAddr, target: SocketAddr) -> Result<Self> {
        let listener = std::net::TcpListener::bind(listen)
            .map_err(io(format!("listening on {listen} to forward to {target}")))?;
        listener
            .set_nonblocking(true)
            .map_err(io("a non-blocking forwarder socket"))?;
        let addr = listener
            .local_addr()
            .map_err(io("the forwarder's address"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|err| Error::Other(format!("the forwarder's runtime: {err}")))?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("forward-{addr}"))
            .spawn(move || runtime.block_on(serve(listener, target, stopped)))
            .map_err(io("starting the forwarder's thread"))?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn serve(
    listener: std::net::TcpListener,
    target: SocketAddr,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(%err, "the forwarder cannot listen");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((mut inbound, peer)) => {
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(target).await else {
                            tracing::warn!(%peer, %target, "the forwarder's target refused a connection");
                            return;
                        };
                        // Either side closing ends both.
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    });
                }
                Err(err) => tracing::warn!(%err, "the forwarder failed to accept"),
            },
        }
    }
}

impl Drop for Forwarder {
    /// Stops accepting and closes every forwarded connection: the runtime,
    /// and the tasks copying them, end with the thread.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_reach_the_target_and_back_and_drop_closes_the_connection() {
        let target = TcpListener::bind("127.0.0.1:0").await.expect("target");
        let target_addr = target.local_addr().expect("addr");
        let echo = tokio::spawn(async move {
            let (mut stream, _) = target.accept().await.expect("accept");
            let mut buffer = [0u8; 5];
            stream.read_exact(&mut buffer).await.expect("read");
            stream.write_all(&buffer).await.expect("write");
            // Wait for the forwarder to close the connection.
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.expect("read to end");
            rest
        });
        let forwarder =
            Forwarder::start("127.0.0.1:0".parse().expect("addr"), target_addr).expect("start");
        let mut client = TcpStream::connect(forwarder.addr()).await.expect("connect");
        client.write_all(b"hello").await.expect("write");
        let mut reply = [0u8; 5];
        client.read_exact(&mut reply).await.expect("reply");
        assert_eq!(&reply, b"hello");

        let addr = forwarder.addr();
        drop(forwarder);
        assert_eq!(
            echo.await.expect("echo"),
            Vec::<u8>::new(),
            "closed on drop"
        );
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "nothing listens after drop"
        );
    }
}
