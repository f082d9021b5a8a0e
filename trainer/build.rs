//! Compiles the C++ bridge to libtorch's distributed engine (`csrc/c10d.cpp`) against the
//! libtorch that tch links, found through `LIBTORCH` as tch's own build finds it.
//!
//! Gloo's headers come from the system (Debian's `libgloo-dev`). The bridge passes Gloo types
//! to libtorch only behind pointers, so their layout need not match the Gloo inside libtorch.
//! libtorch 2.11's wheel uses the C++11 string ABI, hence `_GLIBCXX_USE_CXX11_ABI=1`.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/c10d.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let libtorch = match env::var_os("LIBTORCH") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "LIBTORCH is not set: point it at the libtorch folder tch uses \
             (`source scripts/env.sh` sets it)"
        ),
    };
    let include = libtorch.join("include");
    let gloo = PathBuf::from("/usr/include/gloo/context.h");
    if !gloo.exists() {
        panic!(
            "{} is missing: install Gloo's headers (Debian package libgloo-dev; \
             `source scripts/env.sh` installs it)",
            gloo.display()
        );
    }
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag("-DUSE_C10D_GLOO")
        .file("csrc/c10d.cpp")
        .compile("expanse_c10d");
}
