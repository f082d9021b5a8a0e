//! Trials, their append-only JSON Lines log, and a Markdown summary table.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::space::{Space, Value};
use crate::{Error, Result};

/// One evaluated point of a search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// Position in the search, counting from 0.
    pub index: usize,
    /// The parameter values tried.
    pub point: crate::space::Point,
    /// Score to minimise, for example the mean validation error over folds. None when the trial
    /// failed.
    pub score: Option<f64>,
    /// Per-fold scores. JSON has no NaN, so a non-finite score is written as `null` and reads
    /// back as NaN.
    #[serde(default, deserialize_with = "floats_or_null")]
    pub fold_scores: Vec<f64>,
    /// Extra figures to show in the table (e.g. "train_error", "seconds"), in key order.
    /// Non-finite values are stored like those of `fold_scores`.
    #[serde(default, deserialize_with = "figures_or_null")]
    pub figures: BTreeMap<String, f64>,
    /// Reason the trial failed (diverged, ...), empty when it did not.
    #[serde(default)]
    pub note: String,
}

fn floats_or_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<f64>, D::Error> {
    let values = Vec::<Option<f64>>::deserialize(d)?;
    Ok(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

fn figures_or_null<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, f64>, D::Error> {
    let values = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(values.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect())
}

/// An append-only log of trials, one JSON object per line (for example `search/trials.jsonl`).
///
/// Each append is a single write followed by `sync_data`, so a crash can leave at most a torn
/// last line, which [`TrialLog::load`] skips and [`TrialLog::append`] cuts off.
#[derive(Clone, Debug)]
pub struct TrialLog {
    path: PathBuf,
}

impl TrialLog {
    /// Opens the log at `path`. Nothing is created or read until [`TrialLog::load`] or
    /// [`TrialLog::append`].
    pub fn open(path: &Path) -> Result<TrialLog> {
        Ok(TrialLog { path: path.to_path_buf() })
    }

    /// Returns the log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads all trials in file order. Returns an empty list when the file does not exist.
    ///
    /// A last line without its final newline that does not parse is the remains of a crash
    /// during [`TrialLog::append`] and is skipped. Blank lines are skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when reading fails, and [`Error::Json`] with the line number when any other
    /// line is not a valid trial.
    pub fn load(&self) -> Result<Vec<Trial>> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_error(e)),
        };

        let complete = bytes.ends_with(b"\n");
        let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
        let mut trials = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Trial>(line) {
                Ok(trial) => trials.push(trial),
                Err(_) if !complete && i + 1 == lines.len() => {}
                Err(source) => {
                    return Err(Error::Json { path: self.path.clone(), line: i + 1, source })
                }
            }
        }
        Ok(trials)
    }

    /// Appends one trial as a line, then flushes and syncs the file's data to disk. Creates the
    /// file and its parent directories when missing.
    ///
    /// A torn last line left by a crash is cut off first, so that it does not join the new
    /// line. A last line that only lacks its newline but parses is kept and completed.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when creating, repairing or writing the file fails.
    pub fn append(&self, t: &Trial) -> Result<()> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| self.io_error(e))?;
        }
        let mut line = serde_json::to_string(t).map_err(|e| Error::Trial {
            index: t.index,
            reason: format!("not serialisable: {e}"),
        })?;
        line.push('\n');

        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| self.io_error(e))?;
        self.repair_tail(&mut file).map_err(|e| self.io_error(e))?;

        file.write_all(line.as_bytes()).map_err(|e| self.io_error(e))?;
        file.flush().map_err(|e| self.io_error(e))?;
        file.sync_data().map_err(|e| self.io_error(e))
    }

    /// Makes the file end with a newline: completes a last line that parses, and truncates one
    /// that does not.
    fn repair_tail(&self, file: &mut fs::File) -> std::io::Result<()> {
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(());
        }
        let mut contents = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut contents)?;
        if contents.ends_with(b"\n") {
            return Ok(());
        }

        let start = contents.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if serde_json::from_slice::<Trial>(&contents[start..]).is_ok() {
            file.write_all(b"\n")
        } else {
            file.set_len(start as u64)
        }
    }

    fn io_error(&self, source: std::io::Error) -> Error {
        Error::Io { path: self.path.clone(), source }
    }
}

/// Returns the trial with the lowest finite score, the earliest one on ties.
pub fn best(trials: &[Trial]) -> Option<&Trial> {
    trials
        .iter()
        .filter(|t| t.score.is_some_and(f64::is_finite))
        .min_by(|a, b| a.score.unwrap_or(f64::NAN).total_cmp(&b.score.unwrap_or(f64::NAN)))
}

/// Formats trials as a Markdown table with the columns trial number (index + 1), each parameter
/// in space order, score, each figure key (the union over all trials, in key order) and note.
/// The best trial's number is marked with `*`. With `percent`, scores are fractions written as
/// percentages with 2 decimals. Failed trials show `failed` as their score.
pub fn markdown_table(space: &Space, trials: &[Trial], percent: bool) -> String {
    let figure_keys: Vec<&String> = {
        let mut keys: Vec<&String> = trials.iter().flat_map(|t| t.figures.keys()).collect();
        keys.sort();
        keys.dedup();
        keys
    };
    let best_index = best(trials).map(|t| t.index);

    let mut header: Vec<String> = vec!["trial".into()];
    header.extend(space.params.iter().map(|p| escape_cell(p.name())));
    header.push("score".into());
    header.extend(figure_keys.iter().map(|k| escape_cell(k)));
    header.push("note".into());

    let mut out = String::new();
    push_row(&mut out, &header);
    push_row(&mut out, &vec!["---".to_string(); header.len()]);

    for trial in trials {
        let mut row = Vec::with_capacity(header.len());
        let marker = if Some(trial.index) == best_index { " *" } else { "" };
        row.push(format!("{}{marker}", trial.index + 1));
        for param in &space.params {
            let cell = trial.point.get(param.name()).map_or_else(|| "-".into(), format_value);
            row.push(escape_cell(&cell));
        }
        row.push(match trial.score {
            Some(s) if s.is_finite() && percent => format!("{:.2}%", 100.0 * s),
            Some(s) if s.is_finite() => format_number(s),
            _ => "failed".into(),
        });
        for key in &figure_keys {
            row.push(trial.figures.get(*key).map_or_else(|| "-".into(), |v| format_number(*v)));
        }
        row.push(escape_cell(&trial.note));
        push_row(&mut out, &row);
    }
    out
}

fn push_row(out: &mut String, cells: &[String]) {
    out.push_str("| ");
    out.push_str(&cells.join(" | "));
    out.push_str(" |\n");
}

/// Keeps a cell on one line and its pipes out of the table structure.
fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn format_value(v: &Value) -> String {
    match v {
        Value::Float(x) => format_number(*x),
        other => other.to_string(),
    }
}

/// Formats `x` with four significant digits, in scientific notation outside `1e-3..1e5`.
fn format_number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return "0".into();
    }
    let magnitude = x.abs();
    if (1e-3..1e5).contains(&magnitude) {
        let decimals = (3 - magnitude.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Point;

    fn trial(index: usize, lr: f64, score: Option<f64>) -> Trial {
        let mut point = Point::new();
        point.insert("lr".into(), Value::Float(lr));
        point.insert("model".into(), Value::Text("resnet20".into()));
        Trial {
            index,
            point,
            score,
            fold_scores: vec![0.1, f64::NAN],
            figures: BTreeMap::from([("seconds".to_string(), 12.5)]),
            note: String::new(),
        }
    }

    fn assert_same(a: &Trial, b: &Trial) {
        // NaN != NaN, so compare the JSON text, which writes NaN as null.
        assert_eq!(serde_json::to_string(a).unwrap(), serde_json::to_string(b).unwrap());
    }

    #[test]
    fn log_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let log = TrialLog::open(&dir.path().join("search/trials.jsonl")).unwrap();
        assert!(log.load().unwrap().is_empty());
        assert!(!log.path().exists(), "open or load created the file");

        let trials = [trial(0, 0.1, Some(0.25)), trial(1, 0.1 + 0.2, None)];
        for t in &trials {
            log.append(t).unwrap();
        }
        let loaded = log.load().unwrap();
        assert_eq!(loaded.len(), 2);
        for (a, b) in loaded.iter().zip(&trials) {
            assert_same(a, b);
        }
        assert_eq!(loaded[1].point["lr"], Value::Float(0.1 + 0.2));
        assert!(loaded[0].fold_scores[1].is_nan());
    }

    #[test]
    fn log_ignores_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trials.jsonl");
        let log = TrialLog::open(&path).unwrap();
        log.append(&trial(0, 0.1, Some(0.2))).unwrap();
        log.append(&trial(1, 0.2, Some(0.3))).unwrap();

        // Simulate a crash in the middle of writing trial 2.
        let full = serde_json::to_string(&trial(2, 0.3, Some(0.4))).unwrap();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&full.as_bytes()[..full.len() / 2]).unwrap();
        drop(file);

        let loaded = log.load().unwrap();
        assert_eq!(loaded.iter().map(|t| t.index).collect::<Vec<_>>(), [0, 1]);

        // The next append cuts the torn line off instead of joining it.
        log.append(&trial(2, 0.3, Some(0.4))).unwrap();
        let loaded = log.load().unwrap();
        assert_eq!(loaded.iter().map(|t| t.index).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn log_completes_unterminated_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trials.jsonl");
        let first = serde_json::to_string(&trial(0, 0.1, Some(0.2))).unwrap();
        fs::write(&path, &first).unwrap();
        let log = TrialLog::open(&path).unwrap();
        assert_eq!(log.load().unwrap().len(), 1);
        log.append(&trial(1, 0.2, Some(0.3))).unwrap();
        assert_eq!(log.load().unwrap().len(), 2);
    }

    #[test]
    fn log_corrupt_middle_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trials.jsonl");
        let good = serde_json::to_string(&trial(0, 0.1, Some(0.2))).unwrap();
        fs::write(&path, format!("{good}\n{{\"index\": 1, \"poi\n{good}\n")).unwrap();
        let message = TrialLog::open(&path).unwrap().load().unwrap_err().to_string();
        assert!(message.starts_with(&format!("{}: line 2: ", path.display())), "{message}");

        // A complete last line (newline included) that does not parse is corrupt, not torn.
        fs::write(&path, format!("{good}\nnot json\n")).unwrap();
        let message = TrialLog::open(&path).unwrap().load().unwrap_err().to_string();
        assert!(message.contains(": line 2: "), "{message}");
    }

    #[test]
    fn best_skips_failed() {
        let trials = [trial(0, 0.1, None), trial(1, 0.2, Some(0.3)), trial(2, 0.3, Some(f64::NAN))];
        assert_eq!(best(&trials).map(|t| t.index), Some(1));
        let tie = [trial(0, 0.1, Some(0.3)), trial(1, 0.2, Some(0.3))];
        assert_eq!(best(&tie).map(|t| t.index), Some(0));
        assert!(best(&[trial(0, 0.1, None)]).is_none());
    }

    #[test]
    fn table_marks_best() {
        let space = Space::parse(&[
            "lr=log:0.001..1".to_string(),
            "model=choice:resnet20,resnet32".to_string(),
        ])
        .unwrap();
        let mut failed = trial(2, 0.5, None);
        failed.note = "diverged | loss nan".into();
        let trials = [trial(0, 0.0123456, Some(0.0812)), trial(1, 0.1, Some(0.0634)), failed];
        let table = markdown_table(&space, &trials, true);
        println!("{table}");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "| trial | lr | model | score | seconds | note |");
        assert_eq!(lines[1], "| --- | --- | --- | --- | --- | --- |");
        assert_eq!(lines[2], "| 1 | 0.01235 | resnet20 | 8.12% | 12.50 |  |");
        assert_eq!(lines[3], "| 2 * | 0.1000 | resnet20 | 6.34% | 12.50 |  |");
        assert_eq!(lines[4], "| 3 | 0.5000 | resnet20 | failed | 12.50 | diverged \\| loss nan |");

        let plain = markdown_table(&space, &trials[..1], false);
        assert!(plain.contains("| 1 * | 0.01235 | resnet20 | 0.08120 |"), "{plain}");
    }
}
