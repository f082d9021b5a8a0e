//! `shardify` on photo collections: class folders, a labelled validation folder, list files,
//! interruption by SIGKILL and resumption, strict mode and option errors.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Writes a `width` x `height` RGB JPEG whose pixels depend on `seed`.
fn write_jpeg(path: &Path, width: u16, height: u16, seed: u32) {
    let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..u32::from(height) {
        for x in 0..u32::from(width) {
            pixels.push((x * 3 + seed * 29) as u8);
            pixels.push((y * 2 + seed * 13) as u8);
            pixels.push(((x ^ y) + seed) as u8);
        }
    }
    let encoder = jpeg_encoder::Encoder::new_file(path, 92).expect("create jpeg");
    encoder.encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb).expect("encode jpeg");
}

/// Builds `root/<class>/<n>.jpg` for each class, `count` photos each.
fn photo_tree(root: &Path, classes: &[&str], count: u32, width: u16, height: u16) {
    let mut seed = 0;
    for class in classes {
        fs::create_dir_all(root.join(class)).expect("class folder");
        for i in 0..count {
            seed += 1;
            let w = width + (seed % 5) as u16;
            write_jpeg(&root.join(class).join(format!("{i:04}.jpg")), w, height, seed);
        }
    }
}

fn folder_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .expect("read folder")
        .map(|e| {
            let e = e.expect("entry");
            (e.file_name().into_string().expect("utf-8"), fs::read(e.path()).expect("read"))
        })
        .collect()
}

fn inspect(dir: &Path) -> Value {
    let out = shardify(&["inspect".as_ref(), dir.as_os_str(), "--json".as_ref()]);
    assert_exit(&out, 0);
    stdout_json(&out)
}

#[test]
fn class_folders_then_val_folder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let train = tmp.path().join("train");
    photo_tree(&train, &["n01", "n02", "n03"], 4, 60, 40);
    fs::write(train.join("n02").join("broken.JPEG"), b"\xff\xd8\xff\xe0 cut short").expect("bad");
    fs::write(train.join(".DS_Store"), b"hidden").expect("hidden");
    let out = tmp.path().join("set");
    let summary = tmp.path().join("summary.json");

    let run = shardify(&[
        train.as_os_str(),
        out.as_os_str(),
        "--max-side".as_ref(),
        "48".as_ref(),
        "--summary-json".as_ref(),
        summary.as_os_str(),
    ]);
    assert_exit(&run, 0);
    assert_mentions(&run.stdout, "skipped 1");
    let json: Value = serde_json::from_slice(&fs::read(&summary).expect("summary")).expect("json");
    assert_eq!(json["images_read"], 13);
    assert_eq!(json["images_written"], 12);
    assert_eq!(json["reencoded"], 12, "every 60+ px photo is scaled to 48");
    assert!(json["peak_rss_bytes"].as_u64().is_some_and(|b| b > 0));
    let skipped = fs::read_to_string(out.join("train.skipped.tsv")).expect("skipped.tsv");
    assert!(skipped.contains("n02/broken.JPEG\t"), "{skipped}");

    // ImageNet's validation layout: one flat folder and a labels file naming the classes.
    let val = tmp.path().join("val");
    fs::create_dir_all(&val).expect("val folder");
    let mut labels = String::new();
    for (i, class) in ["n03", "n01", "n02", "n01"].iter().enumerate() {
        write_jpeg(&val.join(format!("val_{i}.JPEG")), 40, 30, 100 + i as u32);
        labels.push_str(&format!("val_{i}.JPEG {class}\n"));
    }
    let labels_file = write_file(tmp.path(), "val.txt", labels.as_bytes());
    let run = shardify(&[
        val.as_os_str(),
        out.as_os_str(),
        "--labels".as_ref(),
        labels_file.as_os_str(),
        "--max-side".as_ref(),
        "48".as_ref(),
    ]);
    assert_exit(&run, 0);

    let verify = shardify(&["verify".as_ref(), out.as_os_str()]);
    assert_exit(&verify, 0);
    let info = inspect(&out);
    assert_eq!(info["classes"], serde_json::json!(["n01", "n02", "n03"]));
    let splits = info["splits"].as_array().expect("splits");
    assert_eq!(splits.len(), 2);
    assert_eq!(splits[1]["name"], "val");
    assert_eq!(splits[1]["class_counts"], serde_json::json!([2, 1, 1]));
    let eigenvalues = splits[0]["rgb_eigenvalues"].as_array().expect("eigenvalues in inspect");
    assert_eq!(eigenvalues.len(), 3);

    let text = shardify(&["inspect".as_ref(), out.as_os_str()]);
    assert_exit(&text, 0);
    assert_mentions(&text.stdout, "eigen");
}

#[test]
fn list_file_with_class_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = tmp.path().join("photos");
    fs::create_dir_all(&photos).expect("folder");
    let mut list = String::from("# path,label\n");
    for (i, class) in ["zebra", "ant", "zebra"].iter().enumerate() {
        write_jpeg(&photos.join(format!("{i}.jpg")), 30, 20, i as u32);
        list.push_str(&format!("photos/{i}.jpg,{class}\n"));
    }
    let list_file = write_file(tmp.path(), "list.csv", list.as_bytes());
    let out = tmp.path().join("set");
    let run = shardify(&[
        list_file.as_os_str(),
        out.as_os_str(),
        "--store".as_ref(),
        "raw".as_ref(),
        "--max-side".as_ref(),
        "16".as_ref(),
    ]);
    assert_exit(&run, 0);
    let info = inspect(&out);
    assert_eq!(info["classes"], serde_json::json!(["ant", "zebra"]));
    assert_eq!(info["splits"][0]["class_counts"], serde_json::json!([1, 2]));
    assert_eq!(info["sample"]["encoding"], "raw");
}

#[test]
fn sigkill_rerun_gives_same_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = tmp.path().join("photos");
    // Raw 160x120 records are 57,600 bytes: 18 to a 1 MiB shard, about 30 shards in all.
    photo_tree(&photos, &["a", "b"], 270, 200, 150);
    let args = |out: &Path| -> Vec<std::ffi::OsString> {
        vec![
            photos.clone().into_os_string(),
            out.as_os_str().to_owned(),
            "--raw".into(),
            "--max-side".into(),
            "160".into(),
            "--shard-size".into(),
            "1".into(),
            "--threads".into(),
            "1".into(),
        ]
    };

    let whole = tmp.path().join("whole");
    assert_exit(&shardify(&args(&whole)), 0);

    let out = tmp.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardify"))
        .args(args(&out))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shardify");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !out.join("train-00002.shard").exists() {
        assert!(Instant::now() < deadline, "no shard appeared within 2 minutes");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert!(
        !out.join("manifest.json").exists(),
        "the run finished before it was killed; make the input bigger"
    );

    let rerun = shardify(&args(&out));
    assert_exit(&rerun, 0);
    assert_mentions(&rerun.stderr, "resuming");
    assert_eq!(folder_bytes(&out), folder_bytes(&whole));
}

#[test]
fn strict_stops_at_bad_photo() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = tmp.path().join("photos");
    photo_tree(&photos, &["a"], 2, 20, 20);
    fs::write(photos.join("a").join("empty.jpg"), b"").expect("empty");
    let out = tmp.path().join("set");
    let run = shardify(&[photos.as_os_str(), out.as_os_str(), "--strict".as_ref()]);
    let line = assert_one_line_error(&run, 1);
    assert_mentions(&line, "empty.jpg");
    assert!(!out.join("manifest.json").exists());
}

#[test]
fn photo_options_are_checked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = tmp.path().join("photos");
    photo_tree(&photos, &["a"], 1, 20, 20);
    let out = tmp.path().join("set");

    let run = shardify(&[photos.as_os_str(), out.as_os_str(), "--raw".as_ref()]);
    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "--max-side");

    let run = shardify(&[photos.as_os_str(), out.as_os_str(), "--quality".as_ref(), "0".as_ref()]);
    assert_exit(&run, 2);

    let labels = write_file(tmp.path(), "val.txt", b"x.jpg a\n");
    let run =
        shardify(&[photos.as_os_str(), out.as_os_str(), "--labels".as_ref(), labels.as_os_str()]);
    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "holds no shard set");

    let inside = photos.join("a").join("shards");
    let run = shardify(&[photos.as_os_str(), inside.as_os_str()]);
    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "is inside the source");

    let run = shardify(&[photos.as_os_str(), out.as_os_str(), "--split".as_ref(), "a/b".as_ref()]);
    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "--split \"a/b\" is invalid");

    let image = photos.join("a").join("0000.jpg");
    let run = shardify(&[image.as_os_str(), out.as_os_str()]);
    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "is an image");
    assert!(!out.exists(), "rejected commands create nothing");

    let idx = tmp.path().join("idx");
    fs::create_dir_all(&idx).expect("idx folder");
    write_file(&idx, "train-images-idx3-ubyte", &idx_images(1, 2, 2, &[0, 1, 2, 3]));
    write_file(&idx, "train-labels-idx1-ubyte", &idx_labels(&[0]));
    let run = shardify(&[
        idx.as_os_str(),
        tmp.path().join("idx-set").as_os_str(),
        "--max-side".as_ref(),
        "8".as_ref(),
    ]);
    let line = assert_one_line_error(&run, 2);
    assert_mentions(&line, "--max-side only apply to photo collections");
}

#[test]
fn train_names_missing_eval_split() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = tmp.path().join("photos");
    photo_tree(&photos, &["a", "b"], 2, 20, 20);
    let out = tmp.path().join("set");
    assert_exit(&shardify(&[photos.as_os_str(), out.as_os_str()]), 0);

    let run_dir = tmp.path().join("run");
    let run = train(&[
        "--data".as_ref(),
        out.as_os_str(),
        "--model".as_ref(),
        "resnet8".as_ref(),
        "--epochs".as_ref(),
        "1".as_ref(),
        "--batch-size".as_ref(),
        "2".as_ref(),
        "--run-dir".as_ref(),
        run_dir.as_os_str(),
    ]);
    let line = assert_one_line_error(&run, 1);
    assert_mentions(&line, "no split \"test\"");
    assert_mentions(&line, "the set has train");
    assert!(!run_dir.exists(), "a failed start leaves no run folder");
}
