//! Listings of photo collections: which files to convert, and the class of each.
//!
//! Three layouts are read:
//! - [`list_class_folders`]: `ROOT/<class>/<file>`, the layout of ImageNet's train set;
//! - [`list_with_labels`]: a flat folder plus a labels file, the layout of ImageNet's
//!   validation set;
//! - [`list_file`]: a text file of `path,label` lines.
//!
//! Only names are read here, never file contents. A file that is not an image, or that cannot
//! be read (a broken symlink, say), is listed and left to the converter, which decides from the
//! bytes and reports it. Items come sorted by label, then by [`ImageItem::rel`] in byte order,
//! whatever order the file system returns folder entries in. Names starting with '.' are hidden
//! and skipped at every level.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Largest labels file or list file that is read: 1 GiB, about 20 million lines of 50 bytes.
const MAX_LIST_FILE_BYTES: u64 = 1 << 30;

/// Longest [`ImageItem::rel`] in bytes: a shard record stores its path length as a u16.
const MAX_REL_BYTES: usize = u16::MAX as usize;

/// First-column names that mark the first row of a list file as a header.
const HEADER_PATH_NAMES: [&str; 6] = ["path", "file", "filename", "file_name", "image", "filepath"];

/// Names quoted in an error or warning that lists files or classes; the rest are counted.
const NAMES_SHOWN: usize = 5;

/// The files of a photo collection with their class labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageList {
    /// The folder that [`ImageItem::rel`] paths are relative to.
    pub root: PathBuf,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// The files, sorted by label and then by `rel` in byte order.
    pub items: Vec<ImageItem>,
    /// Files found but not listed, with the reason: names that are not valid UTF-8 (shard
    /// records store UTF-8 paths). The path is shown with replacement characters.
    pub rejected: Vec<(String, String)>,
}

impl ImageList {
    /// Returns the number of files listed.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Returns whether no file is listed.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// One file of an [`ImageList`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageItem {
    /// The path to open: the root joined with `rel`, or for a list file an absolute path as
    /// written there. Symlinks in it are not resolved.
    pub path: PathBuf,
    /// The path relative to the root, '/' separated and at most 65535 bytes of UTF-8, as shard
    /// records store it. For a list file it is the path as written in the file.
    pub rel: String,
    /// Index into [`ImageList::classes`].
    pub label: u32,
}

/// Lists a class-folder tree `ROOT/<class>/<file>`: one class per folder under `root`.
///
/// Classes are the folder names sorted in byte order, so label 0 is the first. Files are found
/// recursively below each class folder; `rel` starts with the class folder name. Symlinks to
/// files and folders are followed. A folder whose canonical path was already listed for the same
/// class is skipped with a warning, which ends symlink loops. A symlink whose target cannot be
/// read is listed as a file, so that the converter reports it with its reason. Files directly
/// in `root` are ignored with a warning. A class folder without files is kept as a class with
/// no items and a warning. Sockets, FIFOs and devices are skipped with a warning.
///
/// # Errors
///
/// Returns [`Error::UnknownSource`] when `root` contains no class folder, [`Error::Io`] for a
/// folder that cannot be read, and [`Error::Format`] for a name that is not valid UTF-8 or a
/// path longer than 65535 bytes.
pub fn list_class_folders(root: &Path) -> Result<ImageList> {
    let mut classes = Vec::new();
    let mut ignored_files = Vec::new();
    for entry in sorted_entries(root)? {
        match entry.kind {
            EntryKind::Folder => classes.push(entry.name),
            EntryKind::File | EntryKind::Unreadable => ignored_files.push(entry.name),
            EntryKind::Special => warn_special(&entry.path),
            EntryKind::NotUtf8 => {
                return Err(Error::format(
                    entry.path,
                    "class folder name is not valid UTF-8, and class names must be; rename it",
                ));
            }
        }
    }
    if classes.is_empty() {
        return Err(Error::UnknownSource {
            path: root.to_path_buf(),
            message: format!(
                "no dataset files found: no IDX or CIFAR files and no class folders (expected \
                 ROOT/<class>/<image file>), only {} files: {}",
                ignored_files.len(),
                quote_some(&ignored_files)
            ),
        });
    }
    if !ignored_files.is_empty() {
        log::warn!(
            "ignoring {} files in {} that are not in a class folder: {}",
            ignored_files.len(),
            root.display(),
            quote_some(&ignored_files)
        );
    }

    let root_canonical = fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
    let mut items = Vec::new();
    let mut rejected = Vec::new();
    let mut empty_classes = Vec::new();
    for (label, class) in (0u32..).zip(&classes) {
        let before = items.len();
        let folder = root.join(class);
        let class_canonical = fs::canonicalize(&folder).map_err(|e| Error::io(&folder, e))?;
        let mut walk = ClassWalk {
            label,
            root: &root_canonical,
            class: &class_canonical,
            visited: HashSet::new(),
            items: &mut items,
            rejected: &mut rejected,
        };
        walk.folder(&folder, class)?;
        if items.len() == before {
            empty_classes.push(class.clone());
        }
    }
    if !empty_classes.is_empty() {
        log::warn!(
            "{} class folders in {} contain no files: {}",
            empty_classes.len(),
            root.display(),
            quote_some(&empty_classes)
        );
    }

    sort_items(&mut items);
    Ok(ImageList { root: root.to_path_buf(), classes, items, rejected })
}

/// Lists the files of the flat folder `dir` with the labels that `labels_file` gives them.
///
/// The labels file is UTF-8 text with one entry per line; blank lines and lines starting with
/// '#' are skipped. Two formats are read:
/// - two columns separated by whitespace: `file label`;
/// - CSV, chosen when the file name ends in `.csv` or the first entry contains a comma. The
///   file is the first field and the label is the first whitespace-separated word of the second
///   field. The first row is a header when its label is not a class name. ImageNet's
///   `LOC_val_solution.csv` (`ImageId,PredictionString`, then `ILSVRC2012_val_00008726,n02119789
///   255 142 454 329 ...`) has this shape. Quoted fields containing commas are not supported.
///
/// Labels are class names, looked up in `classes`; a label's index there is the item's label.
/// An entry names a file of `dir` by its exact name or, failing that, by its stem (the name
/// without its last extension), as `LOC_val_solution.csv` does. Subfolders of `dir`, hidden
/// files and the labels file itself are ignored. `rel` is the file name.
///
/// # Errors
///
/// Returns [`Error::InvalidArgument`] when `classes` repeats a name. Returns [`Error::Format`],
/// naming the labels file and the line, for an entry that is malformed, names a class not in
/// `classes`, matches no file or several files by stem, or labels a file that an earlier line
/// labelled. Also returns it when files in `dir` have no entry, listing some of them and
/// their count. Returns [`Error::Io`] when the folder or the labels file cannot be read.
pub fn list_with_labels(dir: &Path, labels_file: &Path, classes: &[String]) -> Result<ImageList> {
    let class_index = index_classes(classes)?;
    let text = read_list_text(labels_file)?;
    let entries = parse_labels(labels_file, &text, &class_index)?;
    if entries.is_empty() {
        return Err(Error::format(labels_file, "no entries found (expected `file label` lines)"));
    }
    let mut rejected = Vec::new();
    let files = flat_folder_files(dir, labels_file, &mut rejected)?;

    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let mut by_stem: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, file) in files.iter().enumerate() {
        by_name.insert(&file.name, index);
        by_stem.entry(stem(&file.name)).or_default().push(index);
    }

    // The line that labelled each file, to report duplicates with both line numbers.
    let mut labelled_by: Vec<Option<usize>> = vec![None; files.len()];
    let mut items = Vec::with_capacity(entries.len());
    for entry in &entries {
        let index = match (by_name.get(entry.file), by_stem.get(entry.file)) {
            (Some(&index), _) => index,
            (None, Some(matches)) if matches.len() == 1 => matches[0],
            (None, Some(matches)) => {
                let names: Vec<String> = matches.iter().map(|&i| files[i].name.clone()).collect();
                return Err(Error::format(
                    labels_file,
                    format!(
                        "line {}: file {:?} matches {} files of {} by stem: {}",
                        entry.line,
                        entry.file,
                        names.len(),
                        dir.display(),
                        quote_some(&names)
                    ),
                ));
            }
            (None, None) => {
                return Err(Error::format(
                    labels_file,
                    format!(
                        "line {}: file {:?} not found in {}",
                        entry.line,
                        entry.file,
                        dir.display()
                    ),
                ));
            }
        };

        let file = &files[index];
        if let Some(first_line) = labelled_by[index] {
            return Err(Error::format(
                labels_file,
                format!("lines {} and {} both label file {:?}", first_line, entry.line, file.name),
            ));
        }
        labelled_by[index] = Some(entry.line);
        items.push(ImageItem {
            path: file.path.clone(),
            rel: file.name.clone(),
            label: entry.label,
        });
    }

    let unlabelled: Vec<String> = (files.iter().zip(&labelled_by))
        .filter(|(_, line)| line.is_none())
        .map(|(file, _)| file.name.clone())
        .collect();
    if !unlabelled.is_empty() {
        return Err(Error::format(
            labels_file,
            format!(
                "{} files in {} have no label: {}",
                unlabelled.len(),
                dir.display(),
                quote_some(&unlabelled)
            ),
        ));
    }

    sort_items(&mut items);
    Ok(ImageList { root: dir.to_path_buf(), classes: classes.to_vec(), items, rejected })
}

/// Lists the files named in `list`, a UTF-8 text file of `path,label` lines.
///
/// Blank lines and lines starting with '#' are skipped, and so is a header row: a first row
/// whose path is a column name such as `path`, or whose label is no given class and whose path
/// is no file. The label is the text after the last comma, so paths may contain commas and
/// class names may not. A relative path is taken
/// relative to the folder of `list`; `rel` is the path as written. With `classes` given, labels
/// are looked up there; otherwise the classes are the distinct labels sorted in byte order.
/// Files are not opened here: one that is missing is reported by the converter.
///
/// # Errors
///
/// Returns [`Error::InvalidArgument`] when `classes` repeats a name. Returns [`Error::Format`],
/// naming the line, for a line without a comma, an empty path or label, a label not in
/// `classes`, a path listed twice, a path longer than 65535 bytes, or a file without entries.
/// Returns [`Error::Io`] when `list` cannot be read.
pub fn list_file(list: &Path, classes: Option<&[String]>) -> Result<ImageList> {
    let text = read_list_text(list)?;
    let mut entries = Vec::new();
    let mut first_line_of: HashMap<&str, usize> = HashMap::new();
    for (line, content) in data_lines(&text) {
        let Some((path, label)) = content.rsplit_once(',') else {
            return Err(Error::format(
                list,
                format!("line {line}: expected `path,label`, found {content:?}"),
            ));
        };
        let (path, label) = (path.trim(), label.trim());
        if path.is_empty() || label.is_empty() {
            return Err(Error::format(
                list,
                format!("line {line}: empty path or label in {content:?}"),
            ));
        }
        check_rel_length(list, path)?;
        if let Some(first) = first_line_of.insert(path, line) {
            return Err(Error::format(
                list,
                format!("lines {first} and {line} both list path {path:?}"),
            ));
        }
        entries.push(ListEntry { line, file: path, label_name: label });
    }
    let base = match list.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // A first row such as `path,label` is a header: its path names a column, or (with known
    // classes) its label is no class and its path no file.
    if let Some(first) = entries.first() {
        let column_name = HEADER_PATH_NAMES.iter().any(|n| first.file.eq_ignore_ascii_case(n));
        let unknown = classes.is_some_and(|given| given.iter().all(|c| c != first.label_name))
            && !base.join(first.file).is_file();
        if column_name || unknown {
            log::info!("{}: line {} is taken as a header row", list.display(), first.line);
            entries.remove(0);
        }
    }
    if entries.is_empty() {
        return Err(Error::format(list, "no entries found (expected `path,label` lines)"));
    }

    let classes: Vec<String> = match classes {
        Some(given) => given.to_vec(),
        None => {
            let names: BTreeSet<&str> = entries.iter().map(|entry| entry.label_name).collect();
            names.into_iter().map(str::to_owned).collect()
        }
    };
    let class_index = index_classes(&classes)?;

    let mut items = Vec::with_capacity(entries.len());
    for entry in &entries {
        let label = lookup_class(list, entry.line, entry.label_name, &class_index)?;
        items.push(ImageItem { path: base.join(entry.file), rel: entry.file.to_owned(), label });
    }

    sort_items(&mut items);
    Ok(ImageList { root: base, classes, items, rejected: Vec::new() })
}

/// The kind of a folder entry, with symlinks followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryKind {
    Folder,
    File,
    /// A symlink whose target cannot be read: broken, looping or not permitted.
    Unreadable,
    /// A socket, FIFO or device, which the converter must not open.
    Special,
    /// A name that is not valid UTF-8; `Entry::name` shows it with replacement characters.
    NotUtf8,
}

/// The reason given for a file whose name is not valid UTF-8.
const NOT_UTF8_REASON: &str =
    "invalid file name: not valid UTF-8, and shard records store UTF-8 source paths; rename it";

/// A visible entry of a folder.
struct Entry {
    name: String,
    path: PathBuf,
    kind: EntryKind,
}

/// Returns the entries of `folder` that are not hidden, sorted by name in byte order.
fn sorted_entries(folder: &Path) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for dir_entry in fs::read_dir(folder).map_err(|e| Error::io(folder, e))? {
        let dir_entry = dir_entry.map_err(|e| Error::io(folder, e))?;
        let path = dir_entry.path();
        let os_name = dir_entry.file_name();
        if os_name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let Some(name) = os_name.to_str() else {
            let name = os_name.to_string_lossy().into_owned();
            entries.push(Entry { name, path, kind: EntryKind::NotUtf8 });
            continue;
        };

        let file_type = dir_entry.file_type().map_err(|e| Error::io(&path, e))?;
        let kind = if file_type.is_symlink() {
            match fs::metadata(&path) {
                Ok(target) => kind_of(target.file_type()),
                Err(e) => {
                    log::debug!(
                        "listing {} although its target is unreadable: {e}",
                        path.display()
                    );
                    EntryKind::Unreadable
                }
            }
        } else {
            kind_of(file_type)
        };
        entries.push(Entry { name: name.to_owned(), path, kind });
    }

    entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

fn kind_of(file_type: fs::FileType) -> EntryKind {
    if file_type.is_dir() {
        EntryKind::Folder
    } else if file_type.is_file() {
        EntryKind::File
    } else {
        EntryKind::Special
    }
}

fn warn_special(path: &Path) {
    log::warn!("skipping {}: not a regular file or folder", path.display());
}

/// The state of listing one class folder.
struct ClassWalk<'a> {
    label: u32,
    /// Canonical path of the collection's root.
    root: &'a Path,
    /// Canonical path of the class folder.
    class: &'a Path,
    /// Canonical paths of the folders listed so far for this class.
    visited: HashSet<PathBuf>,
    items: &'a mut Vec<ImageItem>,
    rejected: &'a mut Vec<(String, String)>,
}

impl ClassWalk<'_> {
    /// Appends the files below `folder` to the items, each with `rel` = `rel_prefix/...`.
    ///
    /// A folder reached through a symlink is skipped with a warning when it was listed before,
    /// when it is the root or one of its ancestors, or when it lies in another class folder.
    /// Following it would list images twice or under the wrong class.
    fn folder(&mut self, folder: &Path, rel_prefix: &str) -> Result<()> {
        let canonical = fs::canonicalize(folder).map_err(|e| Error::io(folder, e))?;
        let other_class = canonical.starts_with(self.root) && !canonical.starts_with(self.class);
        if self.root.starts_with(&canonical) || other_class {
            log::warn!(
                "skipping {}: a symlink to {}, which would list images twice or under another class",
                folder.display(),
                canonical.display()
            );
            return Ok(());
        }
        if !self.visited.insert(canonical) {
            log::warn!(
                "skipping {}: its folder was already listed through another path (a symlink)",
                folder.display()
            );
            return Ok(());
        }

        for entry in sorted_entries(folder)? {
            let rel = format!("{rel_prefix}/{}", entry.name);
            match entry.kind {
                EntryKind::NotUtf8 => self.rejected.push((rel, NOT_UTF8_REASON.to_owned())),
                EntryKind::Folder => {
                    check_rel_length(&entry.path, &rel)?;
                    self.folder(&entry.path, &rel)?;
                }
                EntryKind::File | EntryKind::Unreadable => {
                    check_rel_length(&entry.path, &rel)?;
                    self.items.push(ImageItem { path: entry.path, rel, label: self.label });
                }
                EntryKind::Special => warn_special(&entry.path),
            }
        }
        Ok(())
    }
}

/// Returns the files of the flat folder `dir`, leaving out `labels_file` if it lies there.
fn flat_folder_files(
    dir: &Path,
    labels_file: &Path,
    rejected: &mut Vec<(String, String)>,
) -> Result<Vec<Entry>> {
    // Only an entry with the labels file's name is resolved, to spare a canonicalize per file.
    let labels_name = labels_file.file_name();
    let labels_canonical = fs::canonicalize(labels_file).ok();
    let mut files = Vec::new();
    let mut subfolders = 0usize;
    for entry in sorted_entries(dir)? {
        match entry.kind {
            EntryKind::Folder => subfolders += 1,
            EntryKind::Special => warn_special(&entry.path),
            EntryKind::NotUtf8 => rejected.push((entry.name, NOT_UTF8_REASON.to_owned())),
            EntryKind::File | EntryKind::Unreadable => {
                let is_labels_file = entry.path.file_name() == labels_name
                    && labels_canonical.is_some()
                    && fs::canonicalize(&entry.path).ok() == labels_canonical;
                if !is_labels_file {
                    files.push(entry);
                }
            }
        }
    }
    if subfolders > 0 {
        log::warn!(
            "ignoring {subfolders} subfolders of {}: only its files are labelled",
            dir.display()
        );
    }
    Ok(files)
}

/// One line of a labels file or list file.
struct ListEntry<'a> {
    line: usize,
    file: &'a str,
    label_name: &'a str,
}

/// A labels-file entry whose class was found.
struct LabelEntry<'a> {
    line: usize,
    file: &'a str,
    label: u32,
}

/// Parses a labels file (see [`list_with_labels`] for the two formats).
fn parse_labels<'a>(
    path: &Path,
    text: &'a str,
    class_index: &HashMap<&str, u32>,
) -> Result<Vec<LabelEntry<'a>>> {
    let has_csv_extension =
        path.extension().is_some_and(|extension| extension.eq_ignore_ascii_case("csv"));
    let is_csv =
        has_csv_extension || data_lines(text).next().is_some_and(|(_, first)| first.contains(','));

    let first_line = data_lines(text).next().map(|(line, _)| line);
    let mut entries = Vec::new();
    for (line, content) in data_lines(text) {
        let columns = if is_csv { split_csv_entry(content) } else { split_two_columns(content) };
        let Some((file, label_name)) = columns else {
            let expected = if is_csv { "`file,label ...` (CSV)" } else { "`file label`" };
            return Err(Error::format(
                path,
                format!("line {line}: expected {expected}, found {content:?}"),
            ));
        };

        // A CSV header names its columns, and a column name is not a class name.
        if is_csv && Some(line) == first_line && !class_index.contains_key(label_name) {
            log::debug!("{}: line {line} taken as the CSV header: {content:?}", path.display());
            continue;
        }

        let label = lookup_class(path, line, label_name, class_index)?;
        entries.push(LabelEntry { line, file, label });
    }
    Ok(entries)
}

/// Splits `file label` at whitespace; `None` unless there are exactly two words.
fn split_two_columns(content: &str) -> Option<(&str, &str)> {
    let mut words = content.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(file), Some(label), None) => Some((file, label)),
        _ => None,
    }
}

/// Splits a CSV row into its first field and the first word of its second field.
fn split_csv_entry(content: &str) -> Option<(&str, &str)> {
    let mut fields = content.split(',');
    let file = unquote(fields.next()?.trim());
    let label = unquote(fields.next()?.trim()).split_whitespace().next()?;
    if file.is_empty() {
        return None;
    }
    Some((file, label))
}

fn unquote(field: &str) -> &str {
    field.strip_prefix('"').and_then(|inner| inner.strip_suffix('"')).unwrap_or(field)
}

/// Returns (1-based line number, trimmed content) of each line that is neither blank nor a
/// '#' comment.
fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    (1..)
        .zip(text.lines())
        .map(|(line, content)| (line, content.trim()))
        .filter(|(_, content)| !content.is_empty() && !content.starts_with('#'))
}

/// Reads a labels or list file as UTF-8, without a leading byte-order mark.
fn read_list_text(path: &Path) -> Result<String> {
    let size = fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if size > MAX_LIST_FILE_BYTES {
        return Err(Error::format(
            path,
            format!("size {size} bytes exceeds the {MAX_LIST_FILE_BYTES}-byte limit for a list"),
        ));
    }

    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count();
        Error::format(path, format!("line {line}: invalid UTF-8 at byte {offset}"))
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    })
}

/// Maps each class name to its index, rejecting a repeated name.
fn index_classes(classes: &[String]) -> Result<HashMap<&str, u32>> {
    let mut index = HashMap::with_capacity(classes.len());
    for (label, name) in (0u32..).zip(classes) {
        if let Some(first) = index.insert(name.as_str(), label) {
            return Err(Error::InvalidArgument(format!(
                "class {name:?} is given twice, as class {first} and class {label}"
            )));
        }
    }
    Ok(index)
}

fn lookup_class(
    path: &Path,
    line: usize,
    name: &str,
    class_index: &HashMap<&str, u32>,
) -> Result<u32> {
    match class_index.get(name) {
        Some(&label) => Ok(label),
        None => {
            let mut by_label: Vec<(u32, &str)> =
                class_index.iter().map(|(&known, &label)| (label, known)).collect();
            by_label.sort_unstable();
            let known_names: Vec<String> =
                by_label.iter().map(|&(_, known)| known.to_owned()).collect();
            Err(Error::format(
                path,
                format!(
                    "line {line}: class {name:?} is not one of the {} classes given: {}",
                    class_index.len(),
                    quote_some(&known_names)
                ),
            ))
        }
    }
}

fn check_rel_length(path: &Path, rel: &str) -> Result<()> {
    if rel.len() > MAX_REL_BYTES {
        return Err(Error::format(
            path,
            format!(
                "relative path is {} bytes long, more than the {MAX_REL_BYTES} a shard record \
                 can store",
                rel.len()
            ),
        ));
    }
    Ok(())
}

/// Sorts by label, then by `rel` in byte order (the order `str` compares in).
fn sort_items(items: &mut [ImageItem]) {
    items.sort_unstable_by(|a, b| (a.label, a.rel.as_str()).cmp(&(b.label, b.rel.as_str())));
}

/// Returns the name without its last extension; a name without a dot is its own stem.
fn stem(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    }
}

/// Quotes the first few `names` and counts the rest: `"a", "b", ... (7 in all)`.
fn quote_some(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".to_owned();
    }
    let mut text: Vec<String> =
        names.iter().take(NAMES_SHOWN).map(|name| format!("{name:?}")).collect();
    if names.len() > NAMES_SHOWN {
        text.push(format!("... ({} in all)", names.len()));
    }
    text.join(", ")
}

#[cfg(test)]
#[path = "images_tests.rs"]
mod tests;
