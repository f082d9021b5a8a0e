//! Embeds libtorch's library folder as the binaries' run path, so `shardify` and `train` start
//! without `LD_LIBRARY_PATH` when `LIBTORCH` pointed at a libtorch folder at build time.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{libtorch}/lib");
    }
}
