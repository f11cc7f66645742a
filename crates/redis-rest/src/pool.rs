//! The Redis side: at most `size` connections, each owned by one worker task that drains a
//! shared job queue. A worker takes every job queued at that moment, writes them in one write
//! and hands each job its replies as they arrive (server-side pipelining): at low load each
//! request goes out alone, under load Redis sees deep pipelines instead of one round trip per
//! request. One job is one HTTP request's commands, contiguous on the wire, so a
//! MULTI … EXEC block is never interleaved with anything. Broken connections are dropped and
//! re-dialled on demand, so redis-rest recovers by itself when Redis comes back; a client that
//! gives up can never leave its reply for someone else.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::command::Command;
use crate::config::RedisTarget;
use crate::connection::{encode_all, Connection};
use crate::error::BackendError;
use crate::resp::Reply;

/// Most jobs one worker puts in one write.
const MAX_BATCH_JOBS: usize = 256;
/// Stop adding jobs to a batch once it holds this many bytes.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Jobs waiting for a worker before callers wait to enqueue.
const QUEUE_DEPTH: usize = 4096;

type ReplyTx = oneshot::Sender<Result<Vec<Reply>, BackendError>>;

struct Job {
    wire: Bytes,
    replies: usize,
    done: ReplyTx,
}

#[derive(Debug)]
struct Settings {
    target: RedisTarget,
    connect_timeout: Duration,
    command_timeout: Duration,
}

/// Handle to the connection workers; cheap to clone.
#[derive(Debug, Clone)]
pub struct Pool {
    queue: mpsc::Sender<Job>,
}

impl Pool {
    /// Starts `size` workers (connections are dialled lazily). Needs a Tokio runtime.
    pub fn new(target: RedisTarget, size: usize, connect_timeout: Duration, command_timeout: Duration) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let rx = Arc::new(Mutex::new(rx));
        let settings = Arc::new(Settings { target, connect_timeout, command_timeout });
        for _ in 0..size.max(1) {
            tokio::spawn(worker(Arc::clone(&settings), Arc::clone(&rx)));
        }
        Self { queue }
    }

    /// Runs `cmds` back to back on one connection and returns one reply per command.
    pub async fn run(&self, cmds: &[Command]) -> Result<Vec<Reply>, BackendError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let (done, answer) = oneshot::channel();
        let job = Job { wire: encode_all(cmds).freeze(), replies: cmds.len(), done };
        self.queue.send(job).await.map_err(|_| BackendError::ShuttingDown)?;
        answer.await.map_err(|_| BackendError::ShuttingDown)?
    }
}

async fn worker(settings: Arc<Settings>, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut conn: Option<Connection> = None;
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH_JOBS);
    let mut wire = BytesMut::with_capacity(64 * 1024);
    loop {
        {
            let mut rx = queue.lock().await;
            match rx.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            let mut bytes = batch.iter().map(|j| j.wire.len()).sum::<usize>();
            while batch.len() < MAX_BATCH_JOBS && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(job) => {
                        bytes += job.wire.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
        }
        // A caller that already gave up never reaches Redis.
        batch.retain(|job| !job.done.is_closed());
        if batch.is_empty() {
            continue;
        }
        let mut c = match conn.take().filter(Connection::is_reusable) {
            Some(c) => c,
            None => match Connection::connect(&settings.target, settings.connect_timeout).await {
                Ok(c) => c,
                Err(e) => {
                    fail_all(&mut batch, &e);
                    continue;
                }
            },
        };
        let timeout = settings.command_timeout;
        let outcome = tokio::time::timeout(timeout, exchange(&mut c, &mut batch, &mut wire)).await;
        match outcome {
            Ok(Ok(())) => conn = Some(c),
            Ok(Err(e)) => fail_all(&mut batch, &e),
            Err(_) => fail_all(&mut batch, &BackendError::Timeout(timeout.as_millis() as u64)),
        }
        if wire.capacity() > 4 * MAX_BATCH_BYTES {
            wire = BytesMut::with_capacity(64 * 1024);
        }
    }
}

/// Writes the whole batch, then answers each job as soon as its replies are in. Jobs answered
/// are removed from `batch`; on error the rest stay for the caller to fail.
async fn exchange(conn: &mut Connection, batch: &mut Vec<Job>, wire: &mut BytesMut) -> Result<(), BackendError> {
    wire.clear();
    for job in batch.iter() {
        wire.extend_from_slice(&job.wire);
    }
    conn.write(wire).await?;
    let mut jobs = std::mem::take(batch).into_iter();
    while let Some(job) = jobs.next() {
        let mut replies = Vec::with_capacity(job.replies);
        for _ in 0..job.replies {
            match conn.read_reply().await {
                Ok(r) => replies.push(r),
                Err(e) => {
                    batch.push(job);
                    batch.extend(jobs);
                    return Err(e);
                }
            }
        }
        // The caller may have gone meanwhile; its replies are simply dropped.
        let _ = job.done.send(Ok(replies));
    }
    Ok(())
}

fn fail_all(batch: &mut Vec<Job>, error: &BackendError) {
    for job in batch.drain(..) {
        let _ = job.done.send(Err(error.clone()));
    }
}
