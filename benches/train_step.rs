//! Training-step time of the CIFAR ResNet-20 through tch, to set beside PyTorch eager.
//!
//! Run: `cargo bench --bench train_step` (after `source scripts/env.sh`).
//! The PyTorch figure for the same work comes from `train_step.py` of the Python peer
//! baselines, run in the same session; `EXPANSE_BENCH_THREADS` sets libtorch's thread count
//! (default 2, matching the peer's first configuration).
//!
//! A step is what `train` does per batch: forward, cross-entropy, zero the gradients,
//! backward, SGD update with momentum 0.9 and weight decay 1e-4, and reading the loss back.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use expanse::trainer::model::{CifarResNet, CifarResNetSpec};
use expanse::trainer::optim::Sgd;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Reduction, Tensor};

fn threads() -> i32 {
    std::env::var("EXPANSE_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2)
}

fn bench_resnet20(c: &mut Criterion, name: &str, shape: [i64; 4]) {
    let vs = nn::VarStore::new(Device::Cpu);
    let spec = CifarResNetSpec::from_name("resnet20", shape[1] as usize, 10).expect("valid name");
    let model = CifarResNet::new(&vs.root(), spec);
    let mut sgd = Sgd::new(&vs, 0.9, false, 1e-4, true);
    let images = Tensor::randn(shape, (Kind::Float, Device::Cpu));
    let labels = Tensor::randint(10, [shape[0]], (Kind::Int64, Device::Cpu));

    c.bench_function(name, |b| {
        b.iter(|| {
            let logits = model.forward_t(&images, true);
            let loss =
                logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0);
            sgd.zero_grad();
            loss.backward();
            sgd.step(0.01);
            f64::try_from(&loss).expect("scalar loss")
        })
    });
}

fn train_step(c: &mut Criterion) {
    tch::set_num_threads(threads());
    tch::manual_seed(0);
    let t = threads();
    bench_resnet20(c, &format!("resnet20 3x32x32 batch 128, {t} threads"), [128, 3, 32, 32]);
    bench_resnet20(c, &format!("resnet20 1x28x28 batch 128, {t} threads"), [128, 1, 28, 28]);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(8));
    targets = train_step
}
criterion_main!(benches);
