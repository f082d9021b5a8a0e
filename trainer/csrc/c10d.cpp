// A C interface to libtorch's distributed engine (c10d) for expanse's trainer.
//
// tch binds ATen but not c10d, so this file reaches the engine's C++ classes and gives Rust a
// handful of `extern "C"` functions over an opaque group handle:
//
//   expanse_c10d_group_new        TCP store rendezvous, then a Gloo process group
//   expanse_c10d_group_free       leaves the group
//   expanse_c10d_all_reduce       sums or averages tensors in place on every rank
//   expanse_c10d_broadcast        copies tensors from one rank to all
//   expanse_c10d_barrier          waits for every rank
//   expanse_c10d_sync_batch_norm  batch normalisation with statistics over all ranks
//   expanse_c10d_reducer_new      PyTorch DDP's gradient reducer over a list of parameters
//   expanse_c10d_reducer_free     removes the reducer's autograd hooks
//   expanse_c10d_reducer_prepare  readies the next backward pass to average or accumulate
//
// A tensor crosses the boundary as tch's `C_tensor`, which is an `at::Tensor*`. Every function
// catches C++ exceptions and copies their message into the caller's buffer, returning a null
// handle or a non-zero status, so no exception unwinds into Rust.
//
// The group is a c10d Backend (ProcessGroupGloo), also wrapped as a ProcessGroup for the
// reducer. Gloo reduces CPU tensors. ProcessGroupNCCL lives in libtorch_cuda.so, which the
// lean CPU libtorch leaves out, so this bridge has no GPU backend.

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <c10/util/Logging.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#include <torch/torch.h>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  // The backend wrapped as a ProcessGroup, which the DDP reducer takes.
  c10::intrusive_ptr<c10d::ProcessGroup> process_group;
  int rank;
  int size;
};

// The first bucket is kept small so its reduction starts early in the backward pass, as
// PyTorch DDP does (its _DEFAULT_FIRST_BUCKET_BYTES).
constexpr int64_t kFirstBucketBytes = 1 << 20;

// Copies the message of the current exception into `err` (always NUL-terminated).
void store_error(char* err, size_t len, const std::exception& e) {
  if (err == nullptr || len == 0) {
    return;
  }
  const char* what = e.what();
  if (auto* c10_error = dynamic_cast<const c10::Error*>(&e)) {
    what = c10_error->what_without_backtrace();
  }
  std::strncpy(err, what, len - 1);
  err[len - 1] = '\0';
}

std::vector<at::Tensor> gather_tensors(at::Tensor** tensors, size_t count) {
  std::vector<at::Tensor> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    out.push_back(*tensors[i]);
  }
  return out;
}

// Sums `tensors` over all ranks, launching one operation per tensor before waiting on any,
// so that Gloo's worker threads reduce several buckets at once.
void all_reduce_sum(Group* group, std::vector<at::Tensor>& tensors) {
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  works.reserve(tensors.size());
  for (auto& tensor : tensors) {
    std::vector<at::Tensor> one{tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    works.push_back(group->backend->allreduce(one, options));
  }
  for (auto& work : works) {
    work->wait();
  }
}

// Batch normalisation over the union of all ranks' batches, as PyTorch's SyncBatchNorm.
// Forward gathers each rank's (mean, variance, count). Backward sums (dy, dy * (x - mean))
// over the ranks for the input gradient, and leaves the weight and bias gradients local,
// because the gradient all-reduce averages them afterwards.
struct SyncBatchNorm : public torch::autograd::Function<SyncBatchNorm> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor input,
                            at::Tensor weight, at::Tensor bias, at::Tensor running_mean,
                            at::Tensor running_var, double momentum, double eps,
                            int64_t group_address) {
    auto* group = reinterpret_cast<Group*>(group_address);
    const int64_t channels = input.size(1);
    const std::vector<int64_t> dims{0, 2, 3};
    const int64_t local = input.numel() / std::max<int64_t>(channels, 1);

    // Each rank's mean and variance come from two passes in the input's type, as libtorch's
    // own CPU batch norm computes them (at::var_mean's single pass was less accurate). Ranks
    // combine them in double with the parallel variance formula, because sums of x and x^2
    // would cancel catastrophically when the mean is large against the spread.
    auto local_mean = input.mean(dims);
    auto local_var = (input - local_mean.view({1, channels, 1, 1})).square().mean(dims);
    // An all-gather through a sum: each rank fills its own row of a zero matrix.
    auto rows = at::zeros({group->size, 2 * channels + 1}, input.options().dtype(at::kDouble));
    auto own = rows[group->rank];
    own.slice(0, 0, channels).copy_(local_mean);
    own.slice(0, channels, 2 * channels).copy_(local_var);
    own[2 * channels].fill_(static_cast<double>(local));
    std::vector<at::Tensor> reduce{rows};
    all_reduce_sum(group, reduce);

    auto counts = rows.select(1, 2 * channels).unsqueeze(1);
    const double count = counts.sum().item<double>();
    TORCH_CHECK(count > 1, "synchronised batch norm needs more than one value per channel over ",
                "all ranks, got ", count);
    auto means = rows.slice(1, 0, channels);
    auto mean = (means * counts).sum(0) / count;
    auto spread = rows.slice(1, channels, 2 * channels) + (means - mean).pow(2);
    auto var = (spread * counts).sum(0) / count;
    auto invstd = (var + eps).rsqrt();

    {
      torch::NoGradGuard no_grad;
      running_mean.mul_(1 - momentum).add_(mean.to(running_mean.scalar_type()), momentum);
      running_var.mul_(1 - momentum)
          .add_((var * (count / (count - 1))).to(running_var.scalar_type()), momentum);
    }

    // (x - mean) * (invstd * weight) + bias. Not at::batch_norm's inference kernel: it folds
    // the mean into the shift, x * a + (bias - mean * a), which cancels digits when the mean
    // is large against the spread.
    auto mean_f = mean.to(input.scalar_type()).view({1, channels, 1, 1});
    auto invstd_f = invstd.to(input.scalar_type()).view({1, channels, 1, 1});
    auto out = at::addcmul(bias.view({1, channels, 1, 1}), input - mean_f,
                           invstd_f * weight.view({1, channels, 1, 1}));
    ctx->save_for_backward({input, weight, mean_f, invstd_f});
    ctx->saved_data["group"] = group_address;
    ctx->saved_data["count"] = count;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto input = saved[0];
    auto weight = saved[1];
    auto mean = saved[2];
    auto invstd = saved[3];
    auto* group = reinterpret_cast<Group*>(ctx->saved_data["group"].toInt());
    const double count = ctx->saved_data["count"].toDouble();
    const int64_t channels = input.size(1);
    const std::vector<int64_t> dims{0, 2, 3};

    auto dy = grads[0];
    auto xmu = input - mean;
    auto sum_dy = dy.sum(dims);
    auto sum_dy_xmu = (dy * xmu).sum(dims);
    auto grad_weight = sum_dy_xmu * invstd.view({channels});
    auto grad_bias = sum_dy.clone();

    auto sums = at::cat({sum_dy, sum_dy_xmu});
    std::vector<at::Tensor> reduce{sums};
    all_reduce_sum(group, reduce);
    auto mean_dy = (sums.slice(0, 0, channels) / count).view({1, channels, 1, 1});
    auto mean_dy_xmu = (sums.slice(0, channels, 2 * channels) / count).view({1, channels, 1, 1});
    // Per-channel factors first, so that the full-size tensors take few passes.
    auto scale = invstd * weight.view({1, channels, 1, 1});
    auto slope = invstd * invstd * mean_dy_xmu;
    auto grad_input = (dy - mean_dy - xmu * slope) * scale;
    return {grad_input, grad_weight, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

}  // namespace

extern "C" {

// Joins the group `rank` of `size` whose TCP store is served at `host`:`port`: by rank 0,
// which waits up to `timeout_ms` for the others, or with `agent_store` by torchrun's agent, to
// which every rank connects. Keys go under `prefix`, apart from the agent's own.
// Gloo binds to `interface` when it is not empty, to the loopback address when `host` is a
// loopback address, else to the address this machine's hostname resolves to.
void* expanse_c10d_group_new(const char* host, uint16_t port, int rank, int size,
                             int64_t timeout_ms, int agent_store, const char* prefix,
                             const char* interface, char* err, size_t len) {
  try {
    // c10d logs every failed connection attempt with a C++ stack trace, while the error
    // returned here names what failed. TORCH_CPP_LOG_LEVEL still sets c10's log level.
    if (std::getenv("TORCH_CPP_LOG_LEVEL") == nullptr) {
      FLAGS_caffe2_log_level = 3;
    }
    const std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions store_options;
    store_options.port = port;
    store_options.isServer = rank == 0 && agent_store == 0;
    store_options.numWorkers = static_cast<size_t>(size);
    store_options.waitWorkers = true;
    store_options.timeout = timeout;
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::PrefixStore>(
        std::string(prefix), c10::make_intrusive<c10d::TCPStore>(std::string(host), store_options));

    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    const std::string iface(interface == nullptr ? "" : interface);
    if (!iface.empty()) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
    } else if (is_loopback(host)) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    c10::intrusive_ptr<c10d::Backend> backend =
        c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
    auto process_group = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
    process_group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO,
                              backend);
    process_group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    return new Group{store, backend, process_group, rank, size};
  } catch (const std::exception& e) {
    store_error(err, len, e);
    return nullptr;
  }
}

void expanse_c10d_group_free(void* group) { delete static_cast<Group*>(group); }

// Sums `count` tensors over all ranks in place; divides them by the group size when `average`.
int expanse_c10d_all_reduce(void* handle, at::Tensor** tensors, size_t count, int average,
                            char* err, size_t len) {
  try {
    auto* group = static_cast<Group*>(handle);
    auto list = gather_tensors(tensors, count);
    all_reduce_sum(group, list);
    if (average != 0) {
      torch::NoGradGuard no_grad;
      for (auto& tensor : list) {
        tensor.div_(group->size);
      }
    }
    return 0;
  } catch (const std::exception& e) {
    store_error(err, len, e);
    return 1;
  }
}

// Overwrites `count` tensors on every rank with those of rank `root`.
int expanse_c10d_broadcast(void* handle, at::Tensor** tensors, size_t count, int root, char* err,
                           size_t len) {
  try {
    auto* group = static_cast<Group*>(handle);
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (size_t i = 0; i < count; ++i) {
      std::vector<at::Tensor> one{*tensors[i]};
      c10d::BroadcastOptions options;
      options.rootRank = root;
      works.push_back(group->backend->broadcast(one, options));
    }
    for (auto& work : works) {
      work->wait();
    }
    return 0;
  } catch (const std::exception& e) {
    store_error(err, len, e);
    return 1;
  }
}

int expanse_c10d_barrier(void* handle, char* err, size_t len) {
  try {
    auto* group = static_cast<Group*>(handle);
    group->backend->barrier()->wait();
    return 0;
  } catch (const std::exception& e) {
    store_error(err, len, e);
    return 1;
  }
}

// Writes a new tensor: the batch-normalised `input` (N x C x H x W) with statistics over all
// ranks, and updates the running statistics. Differentiable in input, weight and bias.
at::Tensor* expanse_c10d_sync_batch_norm(void* handle, at::Tensor* input, at::Tensor* weight,
                                         at::Tensor* bias, at::Tensor* running_mean,
                                         at::Tensor* running_var, double momentum, double eps,
                                         char* err, size_t len) {
  try {
    TORCH_CHECK(input->dim() == 4, "synchronised batch norm expects N x C x H x W, got ",
                input->sizes());
    auto out = SyncBatchNorm::apply(*input, *weight, *bias, *running_mean, *running_var,
                                    momentum, eps, reinterpret_cast<int64_t>(handle));
    return new at::Tensor(out);
  } catch (const std::exception& e) {
    store_error(err, len, e);
    return nullptr;
  }
}

// Builds PyTorch DDP's reducer over `params`, which every rank passes in the same order.
// Its autograd hooks copy each gradient into a bucket as backward produces it. A full
// bucket's average over all ranks starts at once, while backward goes on. Buckets hold about
// `bucket_bytes`, except a first one of 1 MiB.
void* expanse_c10d_reducer_new(void* handle, at::Tensor** params, size_t count,
                               int64_t bucket_bytes, char* err, size_t len) {
  try {
    auto* group = static_cast<Group*>(handle);
    auto tensors = gather_tensors(params, count);
    std::vector<bool> sparse(count, false);
    auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(
        tensors, {static_cast<size_t>(kFirstBucketBytes), static_cast<size_t>(bucket_bytes)},
        sparse);
    // Backward reaches the last parameters first, so their buckets go first.
    std::reverse(buckets.begin(), buckets.end());
    std::reverse(limits.begin(), limits.end());
    std::vector<int64_t> caps(limits.begin(), limits.end());
    return new c10d::Reducer(tensors, buckets, group->process_group, sparse, bucket_bytes,
                             /*find_unused_parameters=*/false,
                             /*gradient_as_bucket_view=*/false, {}, kFirstBucketBytes,
                             /*skip_all_reduce_unused_params=*/false,
                             /*use_python_reducer=*/false, caps);
  } catch (const std::exception& e) {
    store_error(err, len, e);
    return nullptr;
  }
}

void expanse_c10d_reducer_free(void* reducer) { delete static_cast<c10d::Reducer*>(reducer); }

// Readies the reducer for one forward and backward pass. With `sync` the next backward pass
// averages the gradients over all ranks; without it, it only accumulates them locally, as
// under DDP's no_sync(). The first call with `sync` also reorders the buckets into the order
// that the gradients arrived in (a collective, like the rest).
int expanse_c10d_reducer_prepare(void* handle, int sync, char* err, size_t len) {
  try {
    auto* reducer = static_cast<c10d::Reducer*>(handle);
    if (sync == 0) {
      return 0;
    }
    reducer->rebuild_buckets();
    reducer->prepare_for_forward();
    reducer->prepare_for_backward({});
    return 0;
  } catch (const std::exception& e) {
    store_error(err, len, e);
    return 1;
  }
}

}  // extern "C"
