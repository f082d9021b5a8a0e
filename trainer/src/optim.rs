//! SGD with momentum, and learning-rate schedules.
//!
//! The optimizer is written here rather than taken from `tch::nn::Optimizer` because a
//! checkpoint must hold the momentum buffers, which libtorch's C++ optimizer does not expose
//! through tch.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Stochastic gradient descent with momentum (PyTorch's formulation, no dampening).
///
/// For each parameter `p` with gradient `g`: `g += weight_decay * p` (unless exempt),
/// `buf = momentum * buf + g`, then `p -= lr * (g + momentum * buf)` with Nesterov or
/// `p -= lr * buf` without.
#[derive(Debug)]
pub struct Sgd {
    params: Vec<Param>,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    l1_decay: f64,
}

#[derive(Debug)]
struct Param {
    name: String,
    value: Tensor,
    buffer: Tensor,
    decay: bool,
}

impl Sgd {
    /// Tracks every trainable variable of `vs`. With `decay_bn_and_bias` false, one-dimensional
    /// parameters (batch-norm scales and shifts, biases) get no weight decay.
    pub fn new(
        vs: &nn::VarStore,
        momentum: f64,
        nesterov: bool,
        weight_decay: f64,
        decay_bn_and_bias: bool,
    ) -> Self {
        let variables = vs.variables();
        let mut names: Vec<&String> =
            variables.iter().filter(|(_, t)| t.requires_grad()).map(|(n, _)| n).collect();
        // HashMap order is random; a fixed order keeps the update sequence reproducible.
        names.sort();

        let params = names
            .into_iter()
            .map(|name| {
                let value = variables[name].shallow_clone();
                let buffer = value.zeros_like();
                let decay = decay_bn_and_bias || value.dim() > 1;
                Param { name: name.clone(), value, buffer, decay }
            })
            .collect();
        Sgd { params, momentum, nesterov, weight_decay, l1_decay: 0.0 }
    }

    /// Adds L1 decay: `l1_decay * sign(w)` joins the gradient of every decayed parameter,
    /// which drives small weights to exactly zero.
    pub fn with_l1_decay(mut self, l1_decay: f64) -> Self {
        self.l1_decay = l1_decay;
        self
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for param in &mut self.params {
            param.value.zero_grad();
        }
    }

    /// Applies one update at learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            for param in &mut self.params {
                let mut grad = param.value.grad();
                if !grad.defined() {
                    continue;
                }
                if param.decay && self.weight_decay != 0.0 {
                    let _ = grad.g_add_(&(&param.value * self.weight_decay));
                }
                if param.decay && self.l1_decay != 0.0 {
                    let _ = grad.g_add_(&(param.value.sign() * self.l1_decay));
                }
                let _ = param.buffer.g_mul_scalar_(self.momentum).g_add_(&grad);
                let update = if self.nesterov {
                    grad.g_add_(&(&param.buffer * self.momentum))
                } else {
                    param.buffer.shallow_clone()
                };
                let _ = param.value.g_add_(&(update * -lr));
            }
        });
    }

    /// Momentum buffers by parameter name, for checkpoints.
    pub fn buffers(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.params.iter().map(|p| (p.name.as_str(), &p.buffer))
    }

    /// Returns the tracked parameters in update order (sorted by name), sharing their storage.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.params.iter().map(|p| p.value.shallow_clone()).collect()
    }

    /// Returns the gradients of the tracked parameters (undefined where none was computed).
    /// They share storage with the parameters' gradients, so changing them in place changes
    /// the update.
    pub fn gradients(&self) -> Vec<Tensor> {
        self.params.iter().map(|p| p.value.grad()).collect()
    }

    /// Mutable momentum buffer of parameter `name`, to restore a checkpoint.
    pub fn buffer_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        self.params.iter_mut().find(|p| p.name == name).map(|p| &mut p.buffer)
    }
}

/// The shape of the learning rate over training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Schedule {
    /// The same rate throughout.
    Constant,
    /// Multiply by `gamma` at each listed epoch (the ResNet CIFAR recipe divides by 10 at
    /// 32k and 48k iterations, about epochs 82 and 123 of 164).
    Step {
        /// Epochs (0-based, counted from the start) at which the rate is multiplied.
        milestones: Vec<usize>,
        /// The multiplier.
        gamma: f64,
    },
    /// Half-cosine decay from the base rate to zero at the end of the last epoch, per step.
    Cosine,
    /// Multiply by `factor` when the evaluation error has not improved for more than
    /// `patience` epochs, as the ResNet paper divides by 10 "when the error plateaus".
    /// An epoch improves when its error is below `best * (1 - threshold)` (PyTorch's
    /// `ReduceLROnPlateau` in its default relative mode, without cool-down). The reductions
    /// follow from the logged evaluations alone, so a resumed run recomputes them.
    Plateau {
        /// The multiplier.
        factor: f64,
        /// Epochs without improvement tolerated before a reduction.
        patience: usize,
        /// Relative improvement that counts.
        threshold: f64,
    },
}

/// A schedule with an optional linear warm-up, evaluated per step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearningRate {
    /// The peak (base) rate.
    pub base: f64,
    /// The shape after warm-up.
    pub schedule: Schedule,
    /// Epochs of linear warm-up from `base / steps` to `base`; 0 disables it.
    pub warmup_epochs: usize,
}

impl LearningRate {
    /// Rate of step `step` (0-based) of a run of `epochs` epochs of `steps_per_epoch` steps,
    /// with no plateau reduction.
    pub fn at(&self, step: usize, steps_per_epoch: usize, epochs: usize) -> f64 {
        self.rate(step, steps_per_epoch, epochs, 0)
    }

    /// Number of plateau reductions after the evaluation errors `errors` of the epochs so
    /// far, in order; 0 for the other schedules.
    pub fn plateau_reductions(&self, errors: &[f64]) -> u32 {
        let Schedule::Plateau { patience, threshold, .. } = &self.schedule else {
            return 0;
        };
        let (mut best, mut bad, mut reductions) = (f64::INFINITY, 0usize, 0u32);
        for &error in errors {
            if error < best * (1.0 - threshold) {
                best = error;
                bad = 0;
            } else {
                bad += 1;
            }
            if bad > *patience {
                reductions += 1;
                bad = 0;
            }
        }
        reductions
    }

    /// Rate of step `step` after `reductions` plateau reductions (see [`Schedule::Plateau`]).
    pub fn rate(&self, step: usize, steps_per_epoch: usize, epochs: usize, reductions: u32) -> f64 {
        let steps_per_epoch = steps_per_epoch.max(1);
        let warmup = self.warmup_epochs * steps_per_epoch;
        if step < warmup {
            return self.base * (step + 1) as f64 / warmup as f64;
        }

        let epoch = step / steps_per_epoch;
        match &self.schedule {
            Schedule::Constant => self.base,
            Schedule::Step { milestones, gamma } => {
                let passed = milestones.iter().filter(|&&m| epoch >= m).count();
                self.base * gamma.powi(passed as i32)
            }
            Schedule::Cosine => {
                let total = (epochs * steps_per_epoch).saturating_sub(warmup).max(1);
                let t = (step - warmup) as f64 / total as f64;
                0.5 * self.base * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Plateau { factor, .. } => self.base * factor.powi(reductions as i32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn step_schedule_divides_at_milestones() {
        let lr = LearningRate {
            base: 0.1,
            schedule: Schedule::Step { milestones: vec![2, 4], gamma: 0.1 },
            warmup_epochs: 0,
        };
        assert_eq!(lr.at(0, 10, 6), 0.1);
        assert!((lr.at(20, 10, 6) - 0.01).abs() < 1e-12);
        assert!((lr.at(45, 10, 6) - 0.001).abs() < 1e-12);
    }

    #[test]
    fn cosine_with_warmup_rises_then_decays() {
        let lr = LearningRate { base: 0.2, schedule: Schedule::Cosine, warmup_epochs: 1 };
        assert!((lr.at(0, 10, 5) - 0.02).abs() < 1e-12);
        assert!((lr.at(9, 10, 5) - 0.2).abs() < 1e-12);
        assert!((lr.at(10, 10, 5) - 0.2).abs() < 1e-12);
        assert!(lr.at(30, 10, 5) < 0.2);
        assert!(lr.at(49, 10, 5) < 0.001);
    }

    #[test]
    fn plateau_divides_after_patience_epochs_without_improvement() {
        let lr = LearningRate {
            base: 0.1,
            schedule: Schedule::Plateau { factor: 0.1, patience: 2, threshold: 0.01 },
            warmup_epochs: 0,
        };
        // 0.5 is best; 0.499 is within the 1% threshold, so three epochs do not improve.
        assert_eq!(lr.plateau_reductions(&[0.6, 0.5, 0.499, 0.5]), 0);
        assert_eq!(lr.plateau_reductions(&[0.6, 0.5, 0.499, 0.5, 0.51]), 1);
        assert_eq!(lr.plateau_reductions(&[0.6, 0.5, 0.5, 0.5, 0.5, 0.4, 0.4, 0.4, 0.4]), 2);
        assert!((lr.rate(0, 10, 5, 2) - 0.001).abs() < 1e-12);
        assert_eq!(lr.at(0, 10, 5), 0.1);
        let cosine = LearningRate { base: 0.1, schedule: Schedule::Cosine, warmup_epochs: 0 };
        assert_eq!(cosine.plateau_reductions(&[0.5, 0.5, 0.5, 0.5]), 0);
    }

    #[test]
    fn sgd_matches_hand_computed_nesterov_update() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2, 2], nn::Init::Const(1.0));
        let b = vs.root().var("b", &[2], nn::Init::Const(1.0));
        let mut sgd = Sgd::new(&vs, 0.9, true, 0.5, false);

        for _ in 0..2 {
            sgd.zero_grad();
            let loss = (&w * 3.0).sum(Kind::Float) + (&b * 3.0).sum(Kind::Float);
            loss.backward();
            sgd.step(0.1);
        }
        // w: g = 3 + 0.5 w. Step 1: g = 3.5, buf = 3.5, w = 1 - 0.1 (3.5 + 3.15) = 0.335.
        // Step 2: g = 3.1675, buf = 6.3175, w = 0.335 - 0.1 (3.1675 + 5.68575) = -0.550325.
        let w00 = f64::try_from(w.get(0).get(0)).unwrap();
        assert!((w00 + 0.550325).abs() < 1e-5, "w = {w00}");
        // b is exempt from decay: g = 3 each step; b = 1 - 0.1 (3 + 2.7) - 0.1 (3 + 5.13).
        let b0 = f64::try_from(b.get(0)).unwrap();
        assert!((b0 - (1.0 - 0.57 - 0.813)).abs() < 1e-5, "b = {b0}");
    }
}
