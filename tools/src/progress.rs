//! Progress of conversions: an indicatif bar on a terminal, plain lines otherwise.

use std::time::{Duration, Instant};

use expanse_dataset::convert::ConvertObserver;
use indicatif::{ProgressBar, ProgressStyle};

/// Interval between plain progress lines when stderr is not a terminal.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(30);

/// Shows a photo conversion: a bar with rate and ETA on a terminal, plain lines otherwise.
pub struct ConvertProgress {
    bar: Option<ProgressBar>,
    interactive: bool,
    images: u64,
    done: u64,
    bytes_in: u64,
    started: Instant,
    last_line: Instant,
}

impl ConvertProgress {
    /// Draws a bar when `interactive`, plain lines on stderr otherwise.
    pub fn new(interactive: bool) -> Self {
        ConvertProgress {
            bar: None,
            interactive,
            images: 0,
            done: 0,
            bytes_in: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    /// Removes the bar, if one is drawn.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl ConvertObserver for ConvertProgress {
    fn started(&mut self, images: u64, resumed: u64) {
        self.images = images;
        self.done = resumed;
        self.started = Instant::now();
        self.last_line = Instant::now();
        if resumed > 0 {
            eprintln!("resuming: {resumed} of {images} images were converted by an earlier run");
        }
        if self.interactive {
            let bar = ProgressBar::new(images);
            let style = ProgressStyle::with_template(
                "converting [{bar:30}] {pos}/{len} images {per_sec} {msg} eta {eta}",
            )
            .expect("template is valid")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_position(resumed);
            bar.reset_eta();
            self.bar = Some(bar);
        }
    }

    fn advanced(&mut self, bytes_in: u64) {
        self.done += 1;
        self.bytes_in += bytes_in;
        let mib_per_s = self.bytes_in as f64
            / (1 << 20) as f64
            / self.started.elapsed().as_secs_f64().max(1e-9);
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{mib_per_s:.1} MiB/s in"));
            bar.inc(1);
        } else if self.last_line.elapsed() >= PLAIN_INTERVAL {
            self.last_line = Instant::now();
            eprintln!("converting: {}/{} images, {mib_per_s:.1} MiB/s in", self.done, self.images);
        }
    }
}
