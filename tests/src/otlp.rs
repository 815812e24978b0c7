//! A minimal OTLP/HTTP collector: answers 200 to every POST and keeps the bodies, over plain
//! TCP or over TLS with a certificate the test made (optionally requiring a client
//! certificate); a TLS handshake that fails is kept as well, for the tests that expect one.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub type Log = Arc<Mutex<Vec<Vec<u8>>>>;

pub struct Collector {
    pub port: u16,
    /// The request bodies, in arrival order.
    pub bodies: Log,
    /// Why TLS handshakes failed.
    pub refused: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    /// Listens on a free port; with `tls`, every connection is a TLS server session first.
    pub async fn start(tls: Option<rustls::ServerConfig>) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let collector = Collector {
            port: listener.local_addr().unwrap().port(),
            bodies: Log::default(),
            refused: Arc::default(),
        };
        let (sink, refused) = (collector.bodies.clone(), collector.refused.clone());
        let acceptor = tls.map(|config| TlsAcceptor::from(Arc::new(config)));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (sink, refused, acceptor) = (sink.clone(), refused.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        None => serve(socket, sink).await,
                        Some(acceptor) => match acceptor.accept(socket).await {
                            Ok(stream) => serve(stream, sink).await,
                            Err(err) => refused.lock().unwrap().push(err.to_string()),
                        },
                    }
                });
            }
        });
        collector
    }
}

/// Reads HTTP/1.1 requests off `socket`, keeping each body and answering 200.
async fn serve(mut socket: impl AsyncRead + AsyncWrite + Unpin, sink: Log) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Ok(read) = socket.read(&mut chunk).await else {
            return;
        };
        if read == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..read]);
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buffer.len() >= end + 4 + length {
            sink.lock()
                .unwrap()
                .push(buffer[end + 4..end + 4 + length].to_vec());
            buffer.drain(..end + 4 + length);
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    }
}
