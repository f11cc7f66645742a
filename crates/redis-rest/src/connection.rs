//! One RESP2 connection to redis-server: dial (with timeout, TCP_NODELAY, optional AUTH and
//! SELECT; never `HELLO 3`), write encoded commands, read replies one at a time.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::command::Command;
use crate::config::RedisTarget;
use crate::error::BackendError;
use crate::resp::{encode_command, Decoder, Reply};

const READ_CHUNK: usize = 16 * 1024;

/// A connection owned by one pool worker. After any error it must be dropped: its reply
/// stream may no longer line up with the commands written.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    rbuf: BytesMut,
    decoder: Decoder,
}

impl Connection {
    /// Dials `target` and authenticates / selects the database when the URL says so.
    pub async fn connect(target: &RedisTarget, timeout: Duration) -> Result<Self, BackendError> {
        let addr = target.addr();
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(BackendError::Connect { addr, source: Arc::new(source) }),
            Err(_) => return Err(BackendError::ConnectTimeout { addr, ms: timeout.as_millis() as u64 }),
        };
        stream.set_nodelay(true)?;
        let mut conn = Self { stream, rbuf: BytesMut::with_capacity(READ_CHUNK), decoder: Decoder::new() };
        let setup = target.setup_commands();
        if !setup.is_empty() {
            let exchange = async {
                let mut wire = BytesMut::new();
                for cmd in &setup {
                    encode_command(&mut wire, cmd);
                }
                conn.write(&wire).await?;
                let mut replies = Vec::with_capacity(setup.len());
                for _ in &setup {
                    replies.push(conn.read_reply().await?);
                }
                Ok::<_, BackendError>(replies)
            };
            let replies = tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| BackendError::Timeout(timeout.as_millis() as u64))??;
            if let Some(Reply::Error(e)) = replies.iter().find(|r| r.is_error()) {
                return Err(BackendError::Refused(String::from_utf8_lossy(e).into_owned()));
            }
        }
        Ok(conn)
    }

    /// Writes already-encoded commands.
    pub async fn write(&mut self, wire: &[u8]) -> Result<(), BackendError> {
        self.stream.write_all(wire).await?;
        Ok(())
    }

    /// Reads the next reply.
    pub async fn read_reply(&mut self) -> Result<Reply, BackendError> {
        loop {
            if let Some(reply) = self.decoder.decode(&mut self.rbuf)? {
                return Ok(reply);
            }
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(BackendError::Closed);
            }
        }
    }

    /// True when nothing is waiting to be read: no leftover bytes, no EOF (e.g. Redis restarted
    /// while the connection sat idle), no error. Costs at most one non-blocking `recv`.
    pub fn is_reusable(&self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            Ok(_) => false,
        }
    }
}

/// Encodes `cmds` back to back, as one job's contiguous bytes on the wire.
pub fn encode_all(cmds: &[Command]) -> BytesMut {
    let mut wire = BytesMut::with_capacity(cmds.len() * 32);
    for cmd in cmds {
        encode_command(&mut wire, cmd);
    }
    wire
}
