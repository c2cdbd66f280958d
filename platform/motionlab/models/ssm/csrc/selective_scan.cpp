// Mamba-1 selective scan for CPU tensors, compiled at first use by motionlab.models.ssm.cpu_extension.
//
// Semantics and argument layout follow mamba-ssm's `selective_scan_fn` (selective B and C only):
//   u, delta, z: (B, D, L); A: (D, N); Bm, Cm: (B, N, L); D_skip, delta_bias: (D,)
//   dt_t  = softplus?(delta_t + delta_bias)
//   h_t   = exp(dt_t * A) * h_{t-1} + dt_t * Bm_t * u_t          (h: (N,) per batch and channel)
//   y_t   = <Cm_t, h_t> + D_skip * u_t;   out_t = y_t * silu(z_t)  (when z is given)
//
// Why a hand-written loop: the state h never leaves the core's cache. The forward keeps O(N) state per
// (batch, channel) and writes only the outputs plus one state every kChunk steps; the backward recomputes
// each chunk's states from its checkpoint, in a small per-thread buffer, and walks it in reverse. Nothing of
// size B x L x D x N is ever allocated, which is what makes tensor-level scans slow and memory hungry.
// The per-step scalar work (softplus, the gate, their derivatives) runs in separate loops over time that the
// compiler vectorises, so the sequential loop holds nothing but the N-wide state update.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t kChunk = 64;       // steps between stored states; the backward recomputes within a chunk
constexpr double kSoftplusMax = 20;  // torch.nn.functional.softplus's threshold: above it softplus(x) = x
constexpr double kExpMax = 80;  // exp arguments are clamped here: -ffast-math assumes no infinities
constexpr int64_t kMinTaskWork = 1 << 15;  // state updates per thread below which threads cost more than they save

// Tasks per thread hand-off, so small problems (tests, short sequences) run inline without waking threads.
inline int64_t grain(int64_t work_per_task) {
  return std::max<int64_t>(1, kMinTaskWork / std::max<int64_t>(1, work_per_task));
}

struct Shape {
  int64_t batch, dim, len, nstate, nchunks;
};

template <typename T>
struct Inputs {
  const T* u;      // (B, D, L)
  const T* delta;  // (B, D, L)
  const T* A;      // (D, N)
  const T* Bt;     // (B, L, N): transposed so that one step's N values are contiguous
  const T* Ct;     // (B, L, N)
  const T* D;      // (D,) or null
  const T* z;      // (B, D, L) or null
  const T* bias;   // (D,) or null
  bool softplus_dt;
};

// Softplus'd time steps of one (batch, channel) row, t0 <= t < t1, in a loop the compiler vectorises.
template <typename T>
inline void row_dt(const Inputs<T>& in, int64_t row, int64_t d, int64_t t0, int64_t t1, int64_t len, T* dt) {
  const T bias = in.bias ? in.bias[d] : T(0);
  const T* delta = in.delta + row * len;
  if (in.softplus_dt) {
#pragma omp simd
    for (int64_t t = t0; t < t1; ++t) {
      const T v = delta[t] + bias;
      dt[t - t0] = v <= T(kSoftplusMax) ? std::log1p(std::exp(std::min(v, T(kSoftplusMax)))) : v;
    }
  } else {
#pragma omp simd
    for (int64_t t = t0; t < t1; ++t) dt[t - t0] = delta[t] + bias;
  }
}

// out: (B, D, L); ckpt: (B, D, nchunks, N) or null (no backward coming).
template <typename T>
void scan_forward(const Inputs<T>& in, const Shape& s, T* out, T* ckpt) {
  const int64_t N = s.nstate, L = s.len;
  at::parallel_for(0, s.batch * s.dim, grain(L * N), [&](int64_t begin, int64_t end) {
    std::vector<T> h(N), dts(L);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / s.dim, d = row % s.dim;
      const T* A = in.A + d * N;
      const T Dd = in.D ? in.D[d] : T(0);
      const T* u = in.u + row * L;
      T* y = out + row * L;
      std::fill(h.begin(), h.end(), T(0));
      row_dt(in, row, d, 0, L, L, dts.data());
      T* hp = h.data();
      for (int64_t t = 0; t < L; ++t) {
        if (ckpt && t % kChunk == 0) std::copy(hp, hp + N, ckpt + (row * s.nchunks + t / kChunk) * N);
        const T dt = dts[t];
        const T dtx = dt * u[t];
        const T* Bn = in.Bt + (b * L + t) * N;
        const T* Cn = in.Ct + (b * L + t) * N;
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) {
          const T hn = std::exp(dt * A[n]) * hp[n] + dtx * Bn[n];
          hp[n] = hn;
          acc += hn * Cn[n];
        }
        y[t] = acc;
      }
      if (in.z) {
        const T* z = in.z + row * L;
#pragma omp simd
        for (int64_t t = 0; t < L; ++t) {
          y[t] = (y[t] + Dd * u[t]) * z[t] / (T(1) + std::exp(std::min(-z[t], T(kExpMax))));  // y * silu(z)
        }
      } else {
#pragma omp simd
        for (int64_t t = 0; t < L; ++t) y[t] += Dd * u[t];
      }
    }
  });
}

struct Grads {
  torch::Tensor u, delta, z;  // (B, D, L)
  torch::Tensor B_part, C_part;  // (G, B, L, N): one partial sum per channel group, no two threads share one
  torch::Tensor A_part;  // (B, D, N)
  torch::Tensor D_part, bias_part;  // (B, D)
};

template <typename T>
void scan_backward(const Inputs<T>& in, const Shape& s, const T* ckpt, const T* gout, int64_t groups, Grads& g) {
  const int64_t N = s.nstate, L = s.len, K = kChunk;
  const int64_t per_group = (s.dim + groups - 1) / groups;
  T* gu = g.u.data_ptr<T>();
  T* gdelta = g.delta.data_ptr<T>();
  T* gz = in.z ? g.z.data_ptr<T>() : nullptr;
  T* gB_all = g.B_part.data_ptr<T>();
  T* gC_all = g.C_part.data_ptr<T>();
  T* gA_all = g.A_part.data_ptr<T>();
  T* gD_all = g.D_part.data_ptr<T>();
  T* gbias_all = g.bias_part.data_ptr<T>();

  at::parallel_for(0, s.batch * groups, grain(per_group * L * N), [&](int64_t begin, int64_t end) {
    std::vector<T> hs((K + 1) * N), dAs(K * N), dts(K), ys(K), gys(K), dsp(K), gh(N), gA(N);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / groups, grp = task % groups;
      T* gB = gB_all + (grp * s.batch + b) * L * N;
      T* gC = gC_all + (grp * s.batch + b) * L * N;
      const int64_t d_end = std::min(s.dim, (grp + 1) * per_group);
      for (int64_t d = grp * per_group; d < d_end; ++d) {
        const int64_t row = b * s.dim + d;
        const T* A = in.A + d * N;
        const T Dd = in.D ? in.D[d] : T(0);
        const T bias = in.bias ? in.bias[d] : T(0);
        const T* u = in.u + row * L;
        const T* go = gout + row * L;
        std::fill(gh.begin(), gh.end(), T(0));
        std::fill(gA.begin(), gA.end(), T(0));
        T gD = 0, gbias = 0;
        for (int64_t c = s.nchunks - 1; c >= 0; --c) {
          const int64_t t0 = c * K, steps = std::min(L, t0 + K) - t0;
          // Recompute this chunk's states h_{t0-1} .. h_{t0+steps-1} from its checkpoint.
          std::copy(ckpt + (row * s.nchunks + c) * N, ckpt + (row * s.nchunks + c + 1) * N, hs.data());
          row_dt(in, row, d, t0, t0 + steps, L, dts.data());
          for (int64_t j = 0; j < steps; ++j) {
            const int64_t t = t0 + j;
            const T dt = dts[j];
            const T dtx = dt * u[t];
            const T* Bn = in.Bt + (b * L + t) * N;
            const T* Cn = in.Ct + (b * L + t) * N;
            const T* hprev = hs.data() + j * N;
            T* hnext = hs.data() + (j + 1) * N;
            T* dA = dAs.data() + j * N;
            T acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t n = 0; n < N; ++n) {
              const T a = std::exp(dt * A[n]);
              dA[n] = a;
              const T hn = a * hprev[n] + dtx * Bn[n];
              hnext[n] = hn;
              acc += hn * Cn[n];
            }
            ys[j] = acc;
          }
          // Per-step scalars of the reverse pass, in loops the compiler vectorises: the gate's gradients,
          // dLoss/dy, and the softplus derivative.
          if (gz) {
            const T* z = in.z + row * L;
            T* gzr = gz + row * L;
#pragma omp simd
            for (int64_t j = 0; j < steps; ++j) {
              const T zt = z[t0 + j];
              const T sg = T(1) / (T(1) + std::exp(std::min(-zt, T(kExpMax))));
              gzr[t0 + j] = go[t0 + j] * (ys[j] + Dd * u[t0 + j]) * sg * (T(1) + zt * (T(1) - sg));
              gys[j] = go[t0 + j] * zt * sg;
            }
          } else {
            std::copy(go + t0, go + t0 + steps, gys.data());
          }
          if (in.softplus_dt) {
            const T* delta = in.delta + row * L;
#pragma omp simd
            for (int64_t j = 0; j < steps; ++j) {
              const T raw = delta[t0 + j] + bias;
              dsp[j] = raw <= T(kSoftplusMax) ? T(1) / (T(1) + std::exp(std::min(-raw, T(kExpMax)))) : T(1);
            }
          } else {
            std::fill(dsp.begin(), dsp.begin() + steps, T(1));
          }
          // Reverse pass; gh holds dLoss/dh_t's share arriving from step t + 1 (already times dA_{t+1}).
          for (int64_t j = steps - 1; j >= 0; --j) {
            const int64_t t = t0 + j;
            const T x = u[t];
            const T gy = gys[j];
            gD += gy * x;
            const T dt = dts[j];
            const T dtx = dt * x;
            const T* Bn = in.Bt + (b * L + t) * N;
            const T* Cn = in.Ct + (b * L + t) * N;
            const T* hprev = hs.data() + j * N;
            const T* hcur = hs.data() + (j + 1) * N;
            const T* dA = dAs.data() + j * N;
            T* gBn = gB + t * N;
            T* gCn = gC + t * N;
            T gdt = 0, gx = gy * Dd;
            T* ghp = gh.data();
            T* gAp = gA.data();
#pragma omp simd reduction(+ : gdt, gx)
            for (int64_t n = 0; n < N; ++n) {
              const T ghn = ghp[n] + gy * Cn[n];
              gCn[n] += gy * hcur[n];
              const T ga = ghn * hprev[n] * dA[n];  // dLoss/d(dt * A[n])
              gdt += ga * A[n] + ghn * x * Bn[n];
              gAp[n] += ga * dt;
              gBn[n] += ghn * dtx;
              gx += ghn * dt * Bn[n];
              ghp[n] = ghn * dA[n];
            }
            gdt *= dsp[j];
            gdelta[row * L + t] = gdt;
            gbias += gdt;
            gu[row * L + t] = gx;
          }
        }
        std::copy(gA.begin(), gA.end(), gA_all + row * N);
        gD_all[row] = gD;
        gbias_all[row] = gbias;
      }
    }
  });
}

void check_inputs(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& Bm,
                  const torch::Tensor& Cm) {
  TORCH_CHECK(u.device().is_cpu(), "selective_scan_cpu: tensors must be on the CPU, got ", u.device());
  TORCH_CHECK(u.scalar_type() == at::kFloat || u.scalar_type() == at::kDouble,
              "selective_scan_cpu: float32 or float64 only, got ", u.scalar_type());
  TORCH_CHECK(u.dim() == 3, "selective_scan_cpu: u must be (B, D, L), got ", u.sizes());
  TORCH_CHECK(delta.sizes() == u.sizes(), "selective_scan_cpu: delta ", delta.sizes(), " must match u ", u.sizes());
  TORCH_CHECK(A.dim() == 2 && A.size(0) == u.size(1), "selective_scan_cpu: A must be (D, N), got ", A.sizes());
  const std::vector<int64_t> bc{u.size(0), A.size(1), u.size(2)};
  TORCH_CHECK(Bm.sizes() == at::IntArrayRef(bc), "selective_scan_cpu: B must be (B, N, L) = ", bc, ", got ",
              Bm.sizes());
  TORCH_CHECK(Cm.sizes() == at::IntArrayRef(bc), "selective_scan_cpu: C must be (B, N, L) = ", bc, ", got ",
              Cm.sizes());
}

template <typename T>
Inputs<T> make_inputs(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                      const torch::Tensor& Bt, const torch::Tensor& Ct, const c10::optional<torch::Tensor>& D,
                      const c10::optional<torch::Tensor>& z, const c10::optional<torch::Tensor>& bias,
                      bool softplus_dt) {
  return Inputs<T>{u.data_ptr<T>(),
                   delta.data_ptr<T>(),
                   A.data_ptr<T>(),
                   Bt.data_ptr<T>(),
                   Ct.data_ptr<T>(),
                   D ? D->data_ptr<T>() : nullptr,
                   z ? z->data_ptr<T>() : nullptr,
                   bias ? bias->data_ptr<T>() : nullptr,
                   softplus_dt};
}

Shape make_shape(const torch::Tensor& u, const torch::Tensor& A) {
  const int64_t L = u.size(2);
  return Shape{u.size(0), u.size(1), L, A.size(1), std::max<int64_t>(1, (L + kChunk - 1) / kChunk)};
}

c10::optional<torch::Tensor> contig(const c10::optional<torch::Tensor>& t) {
  if (!t) return t;
  return t->contiguous();
}

}  // namespace

// Returns (out (B, D, L), checkpoints (B, D, nchunks, N) or an empty tensor when save_states is false).
std::vector<torch::Tensor> forward(torch::Tensor u, torch::Tensor delta, torch::Tensor A, torch::Tensor Bm,
                                   torch::Tensor Cm, c10::optional<torch::Tensor> D, c10::optional<torch::Tensor> z,
                                   c10::optional<torch::Tensor> bias, bool softplus_dt, bool save_states) {
  check_inputs(u, delta, A, Bm, Cm);
  u = u.contiguous();
  delta = delta.contiguous();
  A = A.contiguous();
  const auto Bt = Bm.transpose(1, 2).contiguous();
  const auto Ct = Cm.transpose(1, 2).contiguous();
  D = contig(D);
  z = contig(z);
  bias = contig(bias);
  const Shape s = make_shape(u, A);
  auto out = torch::empty_like(u);
  auto ckpt = save_states ? torch::empty({s.batch, s.dim, s.nchunks, s.nstate}, u.options()) : torch::empty({0});
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "selective_scan_cpu_forward", [&] {
    const auto in = make_inputs<scalar_t>(u, delta, A, Bt, Ct, D, z, bias, softplus_dt);
    scan_forward<scalar_t>(in, s, out.data_ptr<scalar_t>(), save_states ? ckpt.data_ptr<scalar_t>() : nullptr);
  });
  return {out, ckpt};
}

// Returns gradients (u, delta, A, B, C, D, z, delta_bias); those of absent optional inputs are empty tensors.
std::vector<torch::Tensor> backward(torch::Tensor u, torch::Tensor delta, torch::Tensor A, torch::Tensor Bm,
                                    torch::Tensor Cm, c10::optional<torch::Tensor> D, c10::optional<torch::Tensor> z,
                                    c10::optional<torch::Tensor> bias, bool softplus_dt, torch::Tensor ckpt,
                                    torch::Tensor gout) {
  check_inputs(u, delta, A, Bm, Cm);
  u = u.contiguous();
  delta = delta.contiguous();
  A = A.contiguous();
  const auto Bt = Bm.transpose(1, 2).contiguous();
  const auto Ct = Cm.transpose(1, 2).contiguous();
  D = contig(D);
  z = contig(z);
  bias = contig(bias);
  ckpt = ckpt.contiguous();
  gout = gout.contiguous().to(u.scalar_type());
  const Shape s = make_shape(u, A);
  TORCH_CHECK(ckpt.numel() == s.batch * s.dim * s.nchunks * s.nstate,
              "selective_scan_cpu: the forward did not save its states (save_states=false)");
  // Enough (batch, channel group) tasks to keep every thread busy; B and C gradients get one partial per group.
  const int64_t threads = at::get_num_threads();
  const int64_t groups = std::min(s.dim, std::max<int64_t>(1, (4 * threads + s.batch - 1) / s.batch));
  const auto opts = u.options();
  Grads g{torch::empty_like(u),
          torch::empty_like(u),
          z ? torch::empty_like(u) : torch::empty({0}, opts),
          torch::zeros({groups, s.batch, s.len, s.nstate}, opts),
          torch::zeros({groups, s.batch, s.len, s.nstate}, opts),
          torch::empty({s.batch, s.dim, s.nstate}, opts),
          torch::empty({s.batch, s.dim}, opts),
          torch::empty({s.batch, s.dim}, opts)};
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "selective_scan_cpu_backward", [&] {
    const auto in = make_inputs<scalar_t>(u, delta, A, Bt, Ct, D, z, bias, softplus_dt);
    scan_backward<scalar_t>(in, s, ckpt.data_ptr<scalar_t>(), gout.data_ptr<scalar_t>(), groups, g);
  });
  auto gB = g.B_part.sum(0).transpose(1, 2).contiguous();  // (B, N, L)
  auto gC = g.C_part.sum(0).transpose(1, 2).contiguous();  // (B, N, L)
  auto gA = g.A_part.sum(0);                                // (D, N)
  auto gD = D ? g.D_part.sum(0) : torch::empty({0}, opts);
  auto gbias = bias ? g.bias_part.sum(0) : torch::empty({0}, opts);
  return {g.u, g.delta, gA, gB, gC, gD, g.z, gbias};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "selective scan forward (CPU)");
  m.def("backward", &backward, "selective scan backward with chunked state recomputation (CPU)");
  m.attr("chunk") = kChunk;
}
