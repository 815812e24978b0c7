//! A TCP proxy the test controls, to cut broker connections without restarting the broker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// Forwards every connection on `addr()` to the target. [`cut`](Self::cut) drops all current
/// connections (both peers see the socket close); [`refuse`](Self::refuse) makes new ones close
/// at once until [`accept`](Self::accept).
pub struct TcpProxy {
    addr: SocketAddr,
    accepting: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    listener: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let accepting = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let listener = tokio::spawn({
            let accepting = accepting.clone();
            let connections = connections.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !accepting.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    let mut connections = connections.lock().await;
                    connections.retain(|task| !task.is_finished());
                    connections.push(task);
                }
            }
        });
        Self {
            addr,
            accepting,
            connections,
            listener,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection open right now.
    pub async fn cut(&self) {
        for task in self.connections.lock().await.drain(..) {
            task.abort();
        }
    }

    /// New connections are closed at once (the peer looks down).
    pub fn refuse(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    pub fn accept(&self) {
        self.accepting.store(true, Ordering::SeqCst);
    }

    /// Connections currently open through the proxy.
    pub async fn open_connections(&self) -> usize {
        let mut connections = self.connections.lock().await;
        connections.retain(|task| !task.is_finished());
        connections.len()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.listener.abort();
        if let Ok(mut connections) = self.connections.try_lock() {
            for task in connections.drain(..) {
                task.abort();
            }
        }
    }
}
