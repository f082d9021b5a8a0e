//! Progress of training passes: indicatif bars on a terminal, plain lines otherwise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use expanse_tools::progress::PLAIN_INTERVAL;
use expanse_trainer::metrics::EpochMetrics;
use expanse_trainer::Observer;
use indicatif::{ProgressBar, ProgressStyle};

/// Shows each training and evaluation pass.
pub struct PassProgress {
    bar: Option<ProgressBar>,
    interactive: bool,
    label: String,
    batches: usize,
    done: usize,
    samples: usize,
    started: Instant,
    last_line: Instant,
    stop: Arc<AtomicBool>,
    /// Redraw the run's `curves.png` after every epoch.
    curves: bool,
}

impl PassProgress {
    /// Draws bars when `interactive`, plain lines on stderr otherwise; asks the run to stop
    /// once `stop` is set.
    pub fn new(interactive: bool, stop: Arc<AtomicBool>) -> Self {
        PassProgress {
            bar: None,
            interactive,
            label: String::new(),
            batches: 0,
            done: 0,
            samples: 0,
            started: Instant::now(),
            last_line: Instant::now(),
            stop,
            curves: false,
        }
    }

    /// Also redraws `curves.png` in the run directory after every epoch.
    pub fn with_curves(mut self) -> Self {
        self.curves = true;
        self
    }
}

impl Observer for PassProgress {
    fn pass_started(&mut self, epoch: usize, split: &str, batches: usize, done: usize) {
        self.label = format!("epoch {epoch} {split}");
        self.batches = batches;
        self.done = done;
        self.samples = 0;
        self.started = Instant::now();
        self.last_line = Instant::now();
        if self.interactive {
            let bar = ProgressBar::new(batches as u64);
            let style = ProgressStyle::with_template(
                "{prefix:>16} [{bar:30}] {pos}/{len} {msg} {per_sec} eta {eta}",
            )
            .expect("template is valid")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(self.label.clone());
            bar.set_position(done as u64);
            self.bar = Some(bar);
        }
    }

    fn batch_finished(&mut self, samples: usize, mean_loss: f64) {
        self.done += 1;
        self.samples += samples;
        if let Some(bar) = &self.bar {
            bar.set_message(format!("loss {mean_loss:.4}"));
            bar.inc(1);
        } else if self.last_line.elapsed() >= PLAIN_INTERVAL {
            self.last_line = Instant::now();
            let rate = self.samples as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "{}: batch {}/{} loss {mean_loss:.4} {rate:.0} images/s",
                self.label, self.done, self.batches
            );
        }
    }

    fn pass_finished(&mut self, m: &EpochMetrics) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let lr = m.lr.map(|lr| format!(" lr {lr:.5}")).unwrap_or_default();
        let wait = &m.data_wait_ms;
        eprintln!(
            "epoch {} {:<5} loss {:.4} top1 {:.2}% top5 {:.2}% {:.1}s {:.0} images/s data wait \
             {:.1}s (batch p50 {:.1} p99 {:.1} max {:.1} ms) peak RSS {:.0} MiB{lr}",
            m.epoch,
            m.split,
            m.loss,
            100.0 * m.top1,
            100.0 * m.top5,
            m.seconds,
            m.images_per_second,
            m.data_wait_seconds,
            wait.p50,
            wait.p99,
            wait.max,
            m.peak_rss_mib,
        );
    }

    fn epoch_finished(&mut self, _epoch: usize, run_dir: &std::path::Path) {
        if self.curves {
            // A missing font must not stop a run; `plot` can draw the curves later.
            if let Err(error) = expanse_tools::charts::write_run_curves(run_dir) {
                log::warn!("cannot draw the run's curves: {error:#}");
            }
        }
    }

    fn stop_requested(&mut self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
