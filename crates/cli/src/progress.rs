//! A spinner on stderr while one admin call runs, drawn only when stderr is a terminal so pipes and
//! logs stay clean. The admin API answers each operation in one reply, so there is no fraction to
//! show: the spinner shows the elapsed time instead.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const TICK: Duration = Duration::from_millis(80);

/// A running spinner; [`Spinner::finish`] (or dropping it) erases it.
pub struct Spinner {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Spinner {
    /// Starts `message` with a spinner, or does nothing when stderr is not a terminal.
    pub fn start(message: &str) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Self { done, thread: None };
        }
        let message = message.to_owned();
        let flag = Arc::clone(&done);
        let thread = thread::spawn(move || {
            let started = Instant::now();
            let mut stderr = std::io::stderr();
            let mut frame = 0;
            while !flag.load(Ordering::Relaxed) {
                let elapsed = started.elapsed().as_secs_f64();
                let _ = write!(stderr, "\r\x1b[2K{} {message} ({elapsed:.1}s)", FRAMES[frame % FRAMES.len()]);
                let _ = stderr.flush();
                frame += 1;
                thread::sleep(TICK);
            }
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        });
        Self { done, thread: Some(thread) }
    }

    /// Stops and erases the spinner.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop();
    }
}
