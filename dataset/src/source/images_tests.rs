//! Tests of the photo-collection listings on folders built in a temporary directory.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::*;

/// Writes a small file at `root/rel`, creating its folders, and returns its path.
fn touch(root: &Path, rel: &str) -> PathBuf {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, rel.as_bytes()).unwrap();
    path
}

fn write_text(path: &Path, text: &str) -> PathBuf {
    fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// Returns (rel, label) of each item, in listing order.
fn rels(list: &ImageList) -> Vec<(&str, u32)> {
    list.items.iter().map(|item| (item.rel.as_str(), item.label)).collect()
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

fn format_message(error: Error) -> String {
    match error {
        Error::Format { message, .. } => message,
        other => panic!("expected a format error, got {other:?}"),
    }
}

// ---- class folders ----

#[test]
fn class_folders_nested_and_sorted() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    touch(root, "b/x.jpg");
    touch(root, "a/y.jpg");
    touch(root, "a/sub/z.jpg");
    touch(root, "a/sub2/deeper/w.png");

    let list = list_class_folders(root).unwrap();

    assert_eq!(list.root, root);
    assert_eq!(list.classes, names(&["a", "b"]));
    let expected = [("a/sub/z.jpg", 0), ("a/sub2/deeper/w.png", 0), ("a/y.jpg", 0), ("b/x.jpg", 1)];
    assert_eq!(rels(&list), expected);
    for item in &list.items {
        assert_eq!(item.path, root.join(&item.rel));
    }
}

#[test]
fn class_folders_sorted_by_bytes_not_walk() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    // A depth-first walk in name order lists "c/x/1.jpg" before "c/x-1.jpg" (folder "x" sorts
    // before "x-1.jpg"), but '-' is below '/' in byte order. Upper case sorts before lower case.
    touch(root, "c/x-1.jpg");
    touch(root, "c/x/1.jpg");
    touch(root, "c/x0.jpg");
    touch(root, "c/X.jpg");
    touch(root, "B/1.jpg");
    // Enough names created in reverse order that the folder's read order is not sorted.
    for i in (0..40).rev() {
        touch(root, &format!("c/many/{i:02}.jpg"));
    }

    let list = list_class_folders(root).unwrap();

    assert_eq!(list.classes, names(&["B", "c"]));
    let listed: Vec<&str> = list.items.iter().map(|item| item.rel.as_str()).collect();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    assert_eq!(listed, sorted);
    assert_eq!(&listed[..4], ["B/1.jpg", "c/X.jpg", "c/many/00.jpg", "c/many/01.jpg"]);
    assert_eq!(&listed[listed.len() - 3..], ["c/x-1.jpg", "c/x/1.jpg", "c/x0.jpg"]);
}

#[test]
fn class_folders_skip_hidden_entries() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    touch(root, "a/kept.jpg");
    touch(root, "a/.DS_Store");
    touch(root, "a/.thumbs/hidden.jpg");
    touch(root, ".git/objects/x.jpg");
    touch(root, ".hidden_class/x.jpg");

    let list = list_class_folders(root).unwrap();

    assert_eq!(list.classes, names(&["a"]));
    assert_eq!(rels(&list), [("a/kept.jpg", 0)]);
}

#[test]
fn class_folders_ignore_root_files() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    touch(root, "README.txt");
    touch(root, "stray.jpg");
    touch(root, "dog/1.jpg");

    let list = list_class_folders(root).unwrap();

    assert_eq!(list.classes, names(&["dog"]));
    assert_eq!(rels(&list), [("dog/1.jpg", 0)]);
}

#[test]
fn class_folders_keep_empty_class() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    touch(root, "a/1.jpg");
    fs::create_dir(root.join("b_empty")).unwrap();
    touch(root, "c/1.jpg");

    let list = list_class_folders(root).unwrap();

    assert_eq!(list.classes, names(&["a", "b_empty", "c"]));
    assert_eq!(rels(&list), [("a/1.jpg", 0), ("c/1.jpg", 2)]);
}

#[test]
fn class_folders_follow_symlinks() {
    let temp = tempfile::tempdir().unwrap();
    let outside = temp.path().join("outside");
    let root = temp.path().join("root");
    let real_file = touch(&outside, "real.jpg");
    touch(&outside, "linked_dir/inner.jpg");
    touch(&outside, "class_c/c1.jpg");
    touch(&root, "a/own.jpg");
    touch(&root, "b/own.jpg");
    symlink(&real_file, root.join("a/file_link.jpg")).unwrap();
    symlink(outside.join("linked_dir"), root.join("a/dir_link")).unwrap();
    symlink(outside.join("class_c"), root.join("c")).unwrap();

    let list = list_class_folders(&root).unwrap();

    assert_eq!(list.classes, names(&["a", "b", "c"]));
    let expected = [
        ("a/dir_link/inner.jpg", 0),
        ("a/file_link.jpg", 0),
        ("a/own.jpg", 0),
        ("b/own.jpg", 1),
        ("c/c1.jpg", 2),
    ];
    assert_eq!(rels(&list), expected);
    // The item keeps the link's path, so the record's source path is the one inside the tree.
    assert_eq!(list.items[1].path, root.join("a/file_link.jpg"));
}

#[test]
fn class_folders_stop_symlink_loops() {
    // One loop per tree: without loop detection each would recurse until the kernel's symlink
    // limit makes the walk fail, where two loops in one tree would branch for minutes.
    for (link, target) in [("a/sub/back_to_class", "a"), ("a/sub/to_itself", "a/sub")] {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        touch(root, "a/1.jpg");
        touch(root, "a/sub/2.jpg");
        symlink(root.join(target), root.join(link)).unwrap();

        let list = list_class_folders(root).unwrap();

        assert_eq!(rels(&list), [("a/1.jpg", 0), ("a/sub/2.jpg", 0)], "{link}");
    }
}

#[test]
fn class_folders_list_broken_symlink() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    touch(root, "a/1.jpg");
    symlink(root.join("missing.jpg"), root.join("a/broken.jpg")).unwrap();
    symlink("self_loop.jpg", root.join("a/self_loop.jpg")).unwrap();

    let list = list_class_folders(root).unwrap();

    let expected = [("a/1.jpg", 0), ("a/broken.jpg", 0), ("a/self_loop.jpg", 0)];
    assert_eq!(rels(&list), expected);
}

#[test]
fn class_folders_skip_socket() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    touch(root, "a/1.jpg");
    let _listener = std::os::unix::net::UnixListener::bind(root.join("a/socket")).unwrap();

    let list = list_class_folders(root).unwrap();

    assert_eq!(rels(&list), [("a/1.jpg", 0)]);
}

#[test]
fn class_folders_reject_non_utf8_name() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    touch(root, "a/1.jpg");
    let bad = root.join("a").join(OsStr::from_bytes(b"bad\xff.jpg"));
    fs::write(&bad, b"x").unwrap();
    // A hidden name is skipped before its encoding is looked at.
    fs::write(root.join("a").join(OsStr::from_bytes(b".hidden\xff")), b"x").unwrap();

    let list = list_class_folders(root).unwrap();

    assert_eq!(rels(&list), [("a/1.jpg", 0)]);
    assert_eq!(list.rejected.len(), 1);
    assert_eq!(list.rejected[0].0, "a/bad\u{fffd}.jpg");
    assert!(list.rejected[0].1.contains("not valid UTF-8"), "{}", list.rejected[0].1);
}

#[test]
fn class_folders_reject_non_utf8_class() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let temp = tempfile::tempdir().unwrap();
    touch(temp.path(), "a/1.jpg");
    fs::create_dir(temp.path().join(OsStr::from_bytes(b"b\xff"))).unwrap();

    let text = format_message(list_class_folders(temp.path()).unwrap_err());

    assert!(text.contains("class folder name is not valid UTF-8"), "{text}");
}

#[test]
fn class_folders_skip_escaping_links() {
    // A link to the root or an ancestor would list every class again under this one.
    // A link into another class folder would list its images under two labels.
    for (link, target) in [("b/up", "."), ("b/grand", ".."), ("b/to_a", "a")] {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("root");
        touch(&root, "a/1.jpg");
        touch(&root, "b/2.jpg");
        symlink(root.join(target), root.join(link)).unwrap();

        let list = list_class_folders(&root).unwrap();

        assert_eq!(rels(&list), [("a/1.jpg", 0), ("b/2.jpg", 1)], "{link}");
    }
}

#[test]
fn class_folders_require_a_class() {
    let temp = tempfile::tempdir().unwrap();
    touch(temp.path(), "only_a_file.jpg");

    let error = list_class_folders(temp.path()).unwrap_err();

    assert!(matches!(error, Error::UnknownSource { .. }), "{error:?}");
    assert!(error.to_string().contains("no class folders"), "{error}");
}

#[test]
fn class_folders_missing_root() {
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("nope");

    let error = list_class_folders(&missing).unwrap_err();

    match error {
        Error::Io { path, .. } => assert_eq!(path, missing),
        other => panic!("expected an io error, got {other:?}"),
    }
}

// ---- flat folder with a labels file ----

/// Returns a temp dir holding `val/` with the given files and the path of `val`.
fn val_folder(files: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("val");
    fs::create_dir(&dir).unwrap();
    for file in files {
        touch(&dir, file);
    }
    (temp, dir)
}

#[test]
fn labels_two_columns() {
    let (temp, dir) = val_folder(&["a.jpg", "b.jpg", "c.png", ".hidden.jpg"]);
    fs::create_dir(dir.join("subfolder")).unwrap();
    let text = "# file class\na.jpg   cat\n\nb.jpg\tdog\r\n  c.png cat  \n";
    let labels = write_text(&temp.path().join("labels.txt"), text);
    let classes = names(&["cat", "dog", "fox"]);

    let list = list_with_labels(&dir, &labels, &classes).unwrap();

    assert_eq!(list.root, dir);
    assert_eq!(list.classes, classes);
    assert_eq!(rels(&list), [("a.jpg", 0), ("c.png", 0), ("b.jpg", 1)]);
    assert_eq!(list.items[2].path, dir.join("b.jpg"));
}

#[test]
fn labels_file_inside_folder_ignored() {
    let (_temp, dir) = val_folder(&["a.jpg"]);
    let labels = write_text(&dir.join("labels.txt"), "a.jpg cat\n");

    let list = list_with_labels(&dir, &labels, &names(&["cat"])).unwrap();

    assert_eq!(rels(&list), [("a.jpg", 0)]);
}

#[test]
fn labels_imagenet_solution_csv() {
    let files = ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"];
    let (temp, dir) = val_folder(&files);
    let text = "\u{feff}ImageId,PredictionString\n\
        ILSVRC2012_val_00000002,n01440764 10 20 300 400 n01440764 5 6 7 8 \n\
        ILSVRC2012_val_00000001,n09999999 0 0 499 374\n";
    let labels = write_text(&temp.path().join("LOC_val_solution.csv"), text);
    let classes = names(&["n01440764", "n09999999"]);

    let list = list_with_labels(&dir, &labels, &classes).unwrap();

    assert_eq!(rels(&list), [(files[1], 0), (files[0], 1)]);
}

#[test]
fn labels_csv_without_header() {
    let (temp, dir) = val_folder(&["x.jpg", "y.jpg"]);
    // Named .txt: the comma in the first entry selects CSV.
    // A byte-order mark, as spreadsheet programs write, is not part of the first file name.
    let text = "\u{feff}x.jpg,dog\n\"y.jpg\",\"cat\"\n";
    let labels = write_text(&temp.path().join("labels.txt"), text);

    let list = list_with_labels(&dir, &labels, &names(&["cat", "dog"])).unwrap();

    assert_eq!(rels(&list), [("y.jpg", 0), ("x.jpg", 1)]);
}

#[test]
fn labels_csv_header_only_first_row() {
    let (temp, dir) = val_folder(&["x.jpg"]);
    let labels = write_text(&temp.path().join("l.csv"), "x.jpg,cat\nfile,label\n");

    let message = format_message(list_with_labels(&dir, &labels, &names(&["cat"])).unwrap_err());

    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("\"label\""), "{message}");
}

#[test]
fn labels_unknown_class() {
    let (temp, dir) = val_folder(&["a.jpg", "b.jpg"]);
    let labels = write_text(&temp.path().join("labels.txt"), "a.jpg cat\nb.jpg wolf\n");

    let error = list_with_labels(&dir, &labels, &names(&["cat", "dog"])).unwrap_err();

    let text = error.to_string();
    assert!(text.starts_with(&labels.display().to_string()), "{text}");
    let message = format_message(error);
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("\"wolf\""), "{message}");
    assert!(message.contains("2 classes"), "{message}");
}

#[test]
fn labels_missing_file() {
    let (temp, dir) = val_folder(&["a.jpg"]);
    let labels = write_text(&temp.path().join("labels.txt"), "a.jpg cat\ngone.jpg cat\n");

    let message = format_message(list_with_labels(&dir, &labels, &names(&["cat"])).unwrap_err());

    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("\"gone.jpg\" not found"), "{message}");
}

#[test]
fn labels_ambiguous_stem() {
    let (temp, dir) = val_folder(&["x.jpg", "x.png", "y.jpg"]);
    let labels = write_text(&temp.path().join("labels.txt"), "y cat\nx cat\n");

    let message = format_message(list_with_labels(&dir, &labels, &names(&["cat"])).unwrap_err());

    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("\"x.jpg\", \"x.png\""), "{message}");
}

#[test]
fn labels_exact_name_before_stem() {
    let (temp, dir) = val_folder(&["x", "x.jpg"]);
    let labels = write_text(&temp.path().join("labels.txt"), "x cat\nx.jpg dog\n");

    let list = list_with_labels(&dir, &labels, &names(&["cat", "dog"])).unwrap();

    assert_eq!(rels(&list), [("x", 0), ("x.jpg", 1)]);
}

#[test]
fn labels_duplicate_entry() {
    let (temp, dir) = val_folder(&["a.jpg", "b.jpg"]);
    // Line 4 names line 2's file by its stem.
    let labels = write_text(&temp.path().join("labels.txt"), "# x\na.jpg cat\nb.jpg cat\na dog\n");

    let error = list_with_labels(&dir, &labels, &names(&["cat", "dog"])).unwrap_err();

    let message = format_message(error);
    assert!(message.contains("lines 2 and 4"), "{message}");
    assert!(message.contains("\"a.jpg\""), "{message}");
}

#[test]
fn labels_unlabelled_files() {
    let files = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "g.jpg", "h.jpg"];
    let (temp, dir) = val_folder(&files);
    let labels = write_text(&temp.path().join("labels.txt"), "c.jpg cat\n");

    let message = format_message(list_with_labels(&dir, &labels, &names(&["cat"])).unwrap_err());

    assert!(message.starts_with("7 files"), "{message}");
    assert!(message.contains("\"a.jpg\", \"b.jpg\", \"d.jpg\", \"e.jpg\", \"f.jpg\""), "{message}");
    assert!(!message.contains("g.jpg"), "{message}");
    assert!(message.contains("(7 in all)"), "{message}");
}

#[test]
fn labels_wrong_column_count() {
    let (temp, dir) = val_folder(&["a.jpg"]);
    let labels = write_text(&temp.path().join("labels.txt"), "a.jpg cat extra\n");

    let message = format_message(list_with_labels(&dir, &labels, &names(&["cat"])).unwrap_err());

    assert!(message.contains("line 1"), "{message}");
    assert!(message.contains("`file label`"), "{message}");
}

#[test]
fn labels_empty_file() {
    let (temp, dir) = val_folder(&["a.jpg"]);
    let labels = write_text(&temp.path().join("labels.txt"), "# nothing\n\n");

    let message = format_message(list_with_labels(&dir, &labels, &names(&["cat"])).unwrap_err());

    assert!(message.contains("no entries"), "{message}");
}

#[test]
fn labels_invalid_utf8_line() {
    let (temp, dir) = val_folder(&["a.jpg"]);
    let labels = temp.path().join("labels.txt");
    fs::write(&labels, b"a.jpg cat\nb\xff.jpg cat\n").unwrap();

    let message = format_message(list_with_labels(&dir, &labels, &names(&["cat"])).unwrap_err());

    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("invalid UTF-8 at byte 11"), "{message}");
}

#[test]
fn labels_repeated_class_rejected() {
    let (temp, dir) = val_folder(&["a.jpg"]);
    let labels = write_text(&temp.path().join("labels.txt"), "a.jpg cat\n");

    let error = list_with_labels(&dir, &labels, &names(&["cat", "dog", "cat"])).unwrap_err();

    match error {
        Error::InvalidArgument(message) => {
            assert!(message.contains("class 0 and class 2"), "{message}")
        }
        other => panic!("expected an invalid-argument error, got {other:?}"),
    }
}

// ---- list file ----

#[test]
fn list_file_paths_and_derived_classes() {
    let temp = tempfile::tempdir().unwrap();
    let absolute = temp.path().join("elsewhere/abs.jpg");
    let text = format!(
        "# path,label\n\nimages/b.jpg,dog\nimages/a, comma.jpg , cat\n{},cat\n",
        absolute.display()
    );
    let list_path = write_text(&temp.path().join("list.csv"), &text);

    let list = list_file(&list_path, None).unwrap();

    assert_eq!(list.root, temp.path());
    assert_eq!(list.classes, names(&["cat", "dog"]));
    let absolute_rel = absolute.to_str().unwrap();
    assert_eq!(rels(&list), [(absolute_rel, 0), ("images/a, comma.jpg", 0), ("images/b.jpg", 1)]);
    assert_eq!(list.items[0].path, absolute);
    assert_eq!(list.items[1].path, temp.path().join("images/a, comma.jpg"));
}

#[test]
fn list_file_skips_header_row() {
    let temp = tempfile::tempdir().unwrap();
    touch(temp.path(), "x.jpg");
    for header in ["path,label", "File , Class", "filename,label"] {
        let text = format!("{header}\nx.jpg,dog\ny.jpg,cat\n");
        let list_path = write_text(&temp.path().join("list.csv"), &text);

        let list = list_file(&list_path, None).unwrap();

        assert_eq!(list.classes, names(&["cat", "dog"]), "{header}");
        assert_eq!(rels(&list), [("y.jpg", 0), ("x.jpg", 1)], "{header}");
    }
    // With known classes, a first row whose label is no class and whose file is missing is a
    // header whatever its words.
    let list_path = write_text(&temp.path().join("list.csv"), "img,cls\nx.jpg,dog\n");
    let list = list_file(&list_path, Some(&names(&["dog"]))).unwrap();
    assert_eq!(rels(&list), [("x.jpg", 0)]);
}

#[test]
fn list_file_given_classes() {
    let temp = tempfile::tempdir().unwrap();
    let list_path = write_text(&temp.path().join("list.txt"), "x.jpg,dog\ny.jpg,cat\n");
    let classes = names(&["dog", "cat", "fox"]);

    let list = list_file(&list_path, Some(&classes)).unwrap();

    assert_eq!(list.classes, classes);
    assert_eq!(rels(&list), [("x.jpg", 0), ("y.jpg", 1)]);
}

#[test]
fn list_file_unknown_class() {
    let temp = tempfile::tempdir().unwrap();
    let list_path = write_text(&temp.path().join("list.txt"), "x.jpg,dog\n\ny.jpg,wolf\n");

    let error = list_file(&list_path, Some(&names(&["dog"]))).unwrap_err();

    let message = format_message(error);
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("\"wolf\""), "{message}");
}

#[test]
fn list_file_duplicate_path() {
    let temp = tempfile::tempdir().unwrap();
    let list_path = write_text(&temp.path().join("list.txt"), "x.jpg,dog\ny.jpg,cat\nx.jpg,cat\n");

    let message = format_message(list_file(&list_path, None).unwrap_err());

    assert!(message.contains("lines 1 and 3"), "{message}");
    assert!(message.contains("\"x.jpg\""), "{message}");
}

#[test]
fn list_file_malformed_lines() {
    let temp = tempfile::tempdir().unwrap();
    let cases = [("x.jpg dog\n", "expected `path,label`"), ("ok.jpg,a\n ,dog\n", "empty path")];
    for (text, expected) in cases {
        let list_path = write_text(&temp.path().join("list.txt"), text);

        let message = format_message(list_file(&list_path, None).unwrap_err());

        assert!(message.contains(expected), "{text:?}: {message}");
    }
}

#[test]
fn list_file_empty() {
    let temp = tempfile::tempdir().unwrap();
    let list_path = write_text(&temp.path().join("list.txt"), "# only a comment\n");

    let message = format_message(list_file(&list_path, None).unwrap_err());

    assert!(message.contains("no entries"), "{message}");
}

#[test]
fn stem_drops_last_extension() {
    assert_eq!(stem("a.b.jpg"), "a.b");
    assert_eq!(stem("plain"), "plain");
    assert_eq!(stem(".jpg"), ".jpg");
}
