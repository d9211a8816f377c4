// The GMM's fit for a batch of chains on a CPU, as an XLA FFI custom call (jaxcollapse/native/em.py).
//
// Each chain iterates the recurrence of jaxcollapse/families/em (loop.advance over step.em_step, on the
// per-coordinate path for d <= 3): E-step at theta; weighted moments about the current means; second
// moments about the new means (a second pass, as scikit-learn); covariances stored as mstep.stored_covs;
// empty components re-seeded from the fallback; stop when |change in mean log-likelihood| < tol or after
// max_iter M-steps. A fresh fit starts as init.init_kmeans does (k-means++ with the uniforms its picks
// draw, Lloyd steps, the hard labels' M-step) in the same call.
// Why C++: XLA steps a batch of EM lanes one operation at a time, ~15 passes over the points per
// iteration, and lanes wait for their block's slowest chain; here each chain runs to its own end in two
// passes per iteration, 8 points per instruction. The sums differ from XLA's in their rounding only.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int kBytes = 32;  // one AVX2 register; GCC splits it where the machine has narrower ones
constexpr int U = 4;        // vectors per trip of the E-step's loop (below)

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(kBytes)));
  typedef int32_t I __attribute__((vector_size(kBytes)));
};
template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(kBytes)));
  typedef int64_t I __attribute__((vector_size(kBytes)));
};

template <typename T>
constexpr int kLanes = kBytes / sizeof(T);

template <typename T>
inline typename Simd<T>::V splat(T a) {
  typename Simd<T>::V v;
  for (int j = 0; j < kLanes<T>; ++j) v[j] = a;
  return v;
}

template <typename T>
inline T hsum(typename Simd<T>::V v) {
  T s = 0;
  for (int j = 0; j < kLanes<T>; ++j) s += v[j];
  return s;
}

template <typename V>
inline V vload(const void* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V>
inline void vstore(void* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

// exp(x) for x <= 0: Cephes expf's reduction and polynomial (~1 ulp); NaN stays NaN.
inline Simd<float>::V vexp(Simd<float>::V x) {
  typedef Simd<float>::V V;
  typedef Simd<float>::I I;
  const V lo = splat<float>(-87.33654475f);  // log(FLT_MIN): below it, 0 (XLA: a denormal)
  V c = x < lo ? lo : x;
  I ni = __builtin_convertvector(c * 1.44269504088896341f - 0.5f, I);  // round to nearest for c <= 0
  V n = __builtin_convertvector(ni, V);
  V r = c - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V p = 1.9875691500e-4f * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  V scale = (V)((ni + 127) << 23);
  V out = p * scale;
  out = x < lo ? splat<float>(0.0f) : out;
  return x != x ? x : out;
}

// log(x) for positive normal x (here 1 <= x <= K): Cephes logf (~1 ulp); NaN stays NaN.
inline Simd<float>::V vlog(Simd<float>::V x) {
  typedef Simd<float>::V V;
  typedef Simd<float>::I I;
  I bits = (I)x;
  I e = ((bits >> 23) & 0xff) - 126;                    // x = m 2^e, m in [0.5, 1)
  V m = (V)((bits & 0x007fffff) | 0x3f000000);
  I small = m < 0.707106781186547524f;
  e = small ? e - 1 : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  V ef = __builtin_convertvector(e, V);
  V z = m * m;
  V y = 7.0376836292e-2f * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y = y + ef * -2.12194440e-4f;
  y = y - 0.5f * z;
  V out = m + y + ef * 0.693359375f;
  return x != x ? x : out;
}

// Double precision (tests against scikit-learn in float64): the C library, lane by lane.
inline Simd<double>::V vexp(Simd<double>::V x) {
  for (int j = 0; j < kLanes<double>; ++j) x[j] = std::exp(x[j]);
  return x;
}
inline Simd<double>::V vlog(Simd<double>::V x) {
  for (int j = 0; j < kLanes<double>; ++j) x[j] = std::log(x[j]);
  return x;
}

enum Covariance : int64_t { kFull = 0, kDiag = 1, kSpherical = 2 };

template <typename T>
inline T nan_max(T a, T b) { return (a != a || a > b) ? a : b; }  // jnp.maximum: NaN propagates
template <typename T>
inline T nan_min(T a, T b) { return (a != a || a < b) ? a : b; }

// One mixture: weights [K], means [K][D], covs [K][D][D] (row-major, as JAX's arrays).
template <typename T, int D, int K>
struct Mixture {
  T weights[K];
  T means[K][D];
  T covs[K][D][D];
};

// mstep.stored_covs for one component: second moments -> a stored covariance (with reg_covar).
template <typename T, int D>
void store_cov(const T second[D][D], int64_t covariance, T reg, T out[D][D]) {
  const T eps = std::numeric_limits<T>::epsilon();
  if (covariance == kFull) {
    for (int a = 0; a < D; ++a)
      for (int b = 0; b < D; ++b) out[a][b] = second[a][b] + (a == b ? reg : T(0));
    if (D == 2) {  // mstep.capped_correlation
      T limit = std::sqrt(out[0][0] * out[D - 1][D - 1]) * (T(1) - 8 * eps);
      T b = nan_min(nan_max(out[0][D - 1], -limit), limit);
      out[0][D - 1] = b;
      out[D - 1][0] = b;
    } else {  // mstep.rounding_floor
      T top = out[0][0];
      for (int a = 1; a < D; ++a) top = nan_max(top, out[a][a]);
      T jitter = 8 * D * eps * top;
      for (int a = 0; a < D; ++a) out[a][a] = out[a][a] + jitter;
    }
    return;
  }
  T var[D];
  for (int a = 0; a < D; ++a) var[a] = second[a][a] + reg;
  if (covariance == kSpherical) {
    T mean = 0;
    for (int a = 0; a < D; ++a) mean += var[a];
    mean = mean / D;
    for (int a = 0; a < D; ++a) var[a] = mean;
  }
  for (int a = 0; a < D; ++a)
    for (int b = 0; b < D; ++b) out[a][b] = var[a] * (a == b ? T(1) : T(0));
}

// densities.cholesky / inv_lower and the joint densities' constants for one component.
template <typename T, int D>
void factor(const T cov[D][D], T weight, T inv[D][D], T* constant) {
  T chol[D][D] = {};
  if (D == 1) {
    chol[0][0] = std::sqrt(cov[0][0]);
  } else if (D == 2) {
    T a = std::sqrt(cov[0][0]);
    T b = cov[D - 1][0] / a;
    chol[0][0] = a;
    chol[D - 1][0] = b;
    chol[D - 1][D - 1] = std::sqrt(cov[D - 1][D - 1] - b * b);
  } else {
    for (int j = 0; j < D; ++j) {
      T s = cov[j][j];
      for (int p = 0; p < j; ++p) s -= chol[j][p] * chol[j][p];
      chol[j][j] = std::sqrt(s);
      for (int i = j + 1; i < D; ++i) {
        T t = cov[i][j];
        for (int p = 0; p < j; ++p) t -= chol[i][p] * chol[j][p];
        chol[i][j] = t / chol[j][j];
      }
    }
  }
  for (int a = 0; a < D; ++a)
    for (int b = 0; b < D; ++b) inv[a][b] = 0;
  if (D == 2) {
    T a = chol[0][0], b = chol[D - 1][0], c = chol[D - 1][D - 1];
    inv[0][0] = T(1) / a;
    inv[D - 1][0] = -b / (a * c);
    inv[D - 1][D - 1] = T(1) / c;
  } else {  // forward substitution, column by column
    for (int col = 0; col < D; ++col) {
      for (int i = col; i < D; ++i) {
        T s = (i == col) ? T(1) : T(0);
        for (int p = col; p < i; ++p) s -= chol[i][p] * inv[p][col];
        inv[i][col] = s / chol[i][i];
      }
    }
  }
  T half_log_det = 0;
  for (int a = 0; a < D; ++a) half_log_det += std::log(chol[a][a]);
  *constant = std::log(weight) - half_log_det - T(0.5 * D * std::log(2.0 * M_PI));
}

// One chain's data, padded to whole vectors with zero-weight points at the origin.
template <typename T, int D, int K>
struct Chain {
  int n = 0, padded = 0;
  std::vector<T> x[D];
  std::vector<T> w;
  std::vector<T> rw[K];
  std::vector<T> badness;  // how badly each point is explained (an emptied component restarts at the worst)
  T total = 0;

  void load(const T* xt, const T* weights, int n_points) {
    n = n_points;
    padded = (n + kLanes<T> * U - 1) / (kLanes<T> * U) * (kLanes<T> * U);
    for (int a = 0; a < D; ++a) {
      x[a].assign(padded, T(0));
      std::memcpy(x[a].data(), xt + static_cast<int64_t>(a) * n, sizeof(T) * n);
    }
    w.assign(padded, T(0));
    std::memcpy(w.data(), weights, sizeof(T) * n);
    for (int k = 0; k < K; ++k) rw[k].assign(padded, T(0));
    badness.assign(padded, T(0));
    typedef typename Simd<T>::V V;
    V acc = splat<T>(0);
    for (int i = 0; i < padded; i += kLanes<T>) acc += vload<V>(&w[i]);
    total = hsum<T>(acc);
  }
};

// The M-step from the weighted responsibilities c.rw and their first sums about `shift` (first[k] = sum rw_k,
// moments[k][a] = sum rw_k (x_a - shift_ka)): second moments about the new means (a second pass), stored
// covariances, and mstep.reseed's rule for a component that lost its points (at the point of highest
// c.badness among w > 0, mstep.first_max's rule).
template <typename T, int D, int K>
void m_step(Chain<T, D, K>& c, const T shift[K][D], const T first[K], const T moments[K][D],
            const T fb_covs[K][D][D], const T fb_offsets[K][D], int64_t covariance, T reg, Mixture<T, D, K>* next) {
  typedef typename Simd<T>::V V;
  constexpr int L = kLanes<T>;
  const T eps = std::numeric_limits<T>::epsilon();
  T nk_raw[K], nk[K];
  Mixture<T, D, K>& out = *next;
  for (int k = 0; k < K; ++k) {
    nk_raw[k] = first[k];
    nk[k] = nk_raw[k] + 10 * eps;
    for (int a = 0; a < D; ++a) out.means[k][a] = shift[k][a] + moments[k][a] / nk[k];
  }

  // Pass 2: second moments about the new means (full: the upper entries; otherwise the diagonal).
  V s2[K][D][D];
  for (int k = 0; k < K; ++k)
    for (int a = 0; a < D; ++a)
      for (int b = 0; b < D; ++b) s2[k][a][b] = splat<T>(0);
  const bool full = covariance == kFull;
  for (int i = 0; i < c.padded; i += L) {
    V x[D];
    for (int a = 0; a < D; ++a) x[a] = vload<V>(&c.x[a][i]);
    for (int k = 0; k < K; ++k) {
      V r = vload<V>(&c.rw[k][i]);
      V centred[D];
      for (int a = 0; a < D; ++a) centred[a] = x[a] - out.means[k][a];
      for (int a = 0; a < D; ++a) {
        V rc = r * centred[a];
        if (full) {
          for (int b = a; b < D; ++b) s2[k][a][b] = s2[k][a][b] + rc * centred[b];
        } else {
          s2[k][a][a] = s2[k][a][a] + rc * centred[a];
        }
      }
    }
  }
  bool any_empty = false;
  bool empty[K];
  for (int k = 0; k < K; ++k) {
    T second[D][D] = {};
    for (int a = 0; a < D; ++a)
      for (int b = a; b < D; ++b) {
        T v = hsum<T>(s2[k][a][b]) / nk[k];
        second[a][b] = v;
        second[b][a] = v;
      }
    store_cov<T, D>(second, covariance, reg, out.covs[k]);
    empty[k] = nk_raw[k] <= eps * c.total;  // mstep.empty
    any_empty = any_empty || empty[k];
  }

  // mstep.reseed: an emptied component restarts at the worst-explained point (mstep.first_max's rule).
  if (any_empty) {
    int worst = -1;
    T top = -std::numeric_limits<T>::infinity();
    for (int i = 0; i < c.n; ++i) {
      T v = c.w[i] > 0 ? c.badness[i] : -std::numeric_limits<T>::infinity();
      if (v != v) {
        worst = i;
        break;
      }
      if (worst < 0 || v > top) {
        top = v;
        worst = i;
      }
    }
    if (worst < 0) worst = 0;
    for (int k = 0; k < K; ++k) {
      if (!empty[k]) continue;
      for (int a = 0; a < D; ++a) out.means[k][a] = c.x[a][worst] + fb_offsets[k][a];
      for (int a = 0; a < D; ++a)
        for (int b = 0; b < D; ++b) out.covs[k][a][b] = fb_covs[k][a][b];
      nk[k] = c.total / K;
    }
  }
  T nk_sum = 0;
  for (int k = 0; k < K; ++k) nk_sum += nk[k];
  for (int k = 0; k < K; ++k) out.weights[k] = nk[k] / nk_sum;
}

// One EM iteration (step.em_step): returns the mean log-likelihood at `theta` and writes the next theta.
template <typename T, int D, int K>
T em_step(Chain<T, D, K>& c, const Mixture<T, D, K>& theta, const T fb_covs[K][D][D], const T fb_offsets[K][D],
          int64_t covariance, T reg, Mixture<T, D, K>* next) {
  typedef typename Simd<T>::V V;
  constexpr int L = kLanes<T>;
  T inv[K][D][D], constant[K];
  for (int k = 0; k < K; ++k) factor<T, D>(theta.covs[k], theta.weights[k], inv[k], &constant[k]);

  // Pass 1: the E-step, the log-likelihood, and the first moments about the current means.
  V s_ll = splat<T>(0), s0[K], s1[K][D];
  for (int k = 0; k < K; ++k) {
    s0[k] = splat<T>(0);
    for (int a = 0; a < D; ++a) s1[k][a] = splat<T>(0);
  }
  for (int i = 0; i < c.padded; i += L * U) {
    // U independent vectors per trip: exp and log are chains of dependent multiply-adds, and with one
    // vector per trip the core waited on their latency (~4.1 against ~3.0-3.4 us per EM iteration).
    V x[U][D], diff[U][K][D], joint[U][K], e[U][K], total[U], per_point[U];
    for (int u = 0; u < U; ++u) {
      for (int a = 0; a < D; ++a) x[u][a] = vload<V>(&c.x[a][i + u * L]);
      for (int k = 0; k < K; ++k) {
        V quad = splat<T>(0);
        for (int a = 0; a < D; ++a) diff[u][k][a] = x[u][a] - theta.means[k][a];
        for (int r = 0; r < D; ++r) {
          V y = inv[k][r][0] * diff[u][k][0];
          for (int a = 1; a <= r; ++a) y = y + inv[k][r][a] * diff[u][k][a];
          quad = quad + y * y;
        }
        joint[u][k] = constant[k] - T(0.5) * quad;
      }
    }
    if (K == 2) {  // densities.normalise_rows: one exp per point
      V gap[U], small[U];
      for (int u = 0; u < U; ++u) {
        gap[u] = joint[u][K - 1] - joint[u][0];
        small[u] = vexp(gap[u] > T(0) ? -gap[u] : gap[u]);
      }
      for (int u = 0; u < U; ++u) {
        total[u] = T(1) + small[u];
        per_point[u] = (joint[u][0] > joint[u][K - 1] ? joint[u][0] : joint[u][K - 1]) + vlog(total[u]);
        e[u][0] = gap[u] > T(0) ? small[u] : splat<T>(1);
        e[u][K - 1] = gap[u] > T(0) ? splat<T>(1) : small[u];
      }
    } else {
      for (int u = 0; u < U; ++u) {
        V top = joint[u][0];
        for (int k = 1; k < K; ++k) top = joint[u][k] > top ? joint[u][k] : top;
        total[u] = splat<T>(0);
        for (int k = 0; k < K; ++k) {
          e[u][k] = vexp(joint[u][k] - top);
          total[u] = total[u] + e[u][k];
        }
        per_point[u] = top + vlog(total[u]);
      }
    }
    for (int u = 0; u < U; ++u) {
      V w = vload<V>(&c.w[i + u * L]);
      V w_over_total = w / total[u];
      s_ll = s_ll + w * per_point[u];
      vstore(&c.badness[i + u * L], -per_point[u]);
      for (int k = 0; k < K; ++k) {
        V r = e[u][k] * w_over_total;
        vstore(&c.rw[k][i + u * L], r);
        s0[k] = s0[k] + r;
        for (int a = 0; a < D; ++a) s1[k][a] = s1[k][a] + r * diff[u][k][a];
      }
    }
  }
  T first[K], moments[K][D];
  for (int k = 0; k < K; ++k) {
    first[k] = hsum<T>(s0[k]);
    for (int a = 0; a < D; ++a) moments[k][a] = hsum<T>(s1[k][a]);
  }
  m_step<T, D, K>(c, theta.means, first, moments, fb_covs, fb_offsets, covariance, reg, next);
  return hsum<T>(s_ll) / c.total;
}

// sampling.pick_by_weight with uniform u: the first index with a positive increment whose running sum
// exceeds u * total, else the last positive increment's (running sums in double; XLA's are float in blocks).
template <typename T>
int pick_by_weight(const T* increments, int n, T u) {
  double total = 0;
  for (int i = 0; i < n; ++i) total += increments[i];
  const double target = static_cast<double>(u * static_cast<T>(total));
  double running = 0;
  int last = 0;
  for (int i = 0; i < n; ++i) {
    running += increments[i];
    if (increments[i] > 0) {
      if (running > target) return i;
      last = i;
    }
  }
  return last;
}

// kmeans.kmeans_plus_plus with the uniforms u[k] that its K picks draw.
template <typename T, int D, int K>
void kmeans_plus_plus(Chain<T, D, K>& c, const T u[K], T centres[K][D]) {
  std::vector<T>& d2 = c.badness;  // scratch: the M-step overwrites it
  std::vector<T>& increments = c.rw[0];
  int chosen = pick_by_weight(c.w.data(), c.n, u[0]);
  for (int a = 0; a < D; ++a) centres[0][a] = c.x[a][chosen];
  for (int i = 0; i < c.n; ++i) {
    T s = 0;
    for (int a = 0; a < D; ++a) s += (c.x[a][i] - centres[0][a]) * (c.x[a][i] - centres[0][a]);
    d2[i] = s;
  }
  for (int k = 1; k < K; ++k) {
    T sum = 0;
    for (int i = 0; i < c.n; ++i) {
      increments[i] = c.w[i] * d2[i];
      sum += increments[i];
    }
    // all remaining distances zero (collapsed data): pick by weight alone
    chosen = pick_by_weight(sum > 0 ? increments.data() : c.w.data(), c.n, u[k]);
    for (int a = 0; a < D; ++a) centres[k][a] = c.x[a][chosen];
    for (int i = 0; i < c.n; ++i) {
      T s = 0;
      for (int a = 0; a < D; ++a) s += (c.x[a][i] - centres[k][a]) * (c.x[a][i] - centres[k][a]);
      d2[i] = s < d2[i] ? s : d2[i];
    }
  }
}

// kmeans.nearest for a vector of points: (squared distance to the nearest centre, its index; ties: lowest k).
template <typename T, int D, int K>
inline void nearest(const typename Simd<T>::V x[D], const T centres[K][D], typename Simd<T>::V* best,
                    typename Simd<T>::V* label) {
  typedef typename Simd<T>::V V;
  for (int k = 0; k < K; ++k) {
    V d2 = (x[0] - centres[k][0]) * (x[0] - centres[k][0]);
    for (int a = 1; a < D; ++a) d2 = d2 + (x[a] - centres[k][a]) * (x[a] - centres[k][a]);
    if (k == 0) {
      *best = d2;
      *label = splat<T>(0);
    } else {
      auto closer = d2 < *best;
      *best = closer ? d2 : *best;
      *label = closer ? splat<T>(T(k)) : *label;
    }
  }
}

// Sums over the points nearest each centre (ties: lowest k): their weights, and their weights times
// (x - shift). With `store`, the hard responsibilities go to c.rw and the distances to c.badness (the
// farthest point seeds an emptied component).
template <typename T, int D, int K>
void cluster_sums(Chain<T, D, K>& c, const T centres[K][D], const T shift[K][D], bool store, T counts[K],
                  T sums[K][D]) {
  typedef typename Simd<T>::V V;
  constexpr int L = kLanes<T>;
  V count[K], total[K][D];
  for (int k = 0; k < K; ++k) {
    count[k] = splat<T>(0);
    for (int a = 0; a < D; ++a) total[k][a] = splat<T>(0);
  }
  for (int i = 0; i < c.padded; i += L) {
    V x[D], best, label;
    for (int a = 0; a < D; ++a) x[a] = vload<V>(&c.x[a][i]);
    V w = vload<V>(&c.w[i]);
    nearest<T, D, K>(x, centres, &best, &label);
    if (store) vstore(&c.badness[i], best);
    for (int k = 0; k < K; ++k) {
      V member = label == T(k) ? w : splat<T>(0);
      if (store) vstore(&c.rw[k][i], member);
      count[k] = count[k] + member;
      for (int a = 0; a < D; ++a) total[k][a] = total[k][a] + member * (x[a] - shift[k][a]);
    }
  }
  for (int k = 0; k < K; ++k) {
    counts[k] = hsum<T>(count[k]);
    for (int a = 0; a < D; ++a) sums[k][a] = hsum<T>(total[k][a]);
  }
}

// kmeans.lloyd (an empty cluster keeps its centre), then init.init_kmeans's M-step from the hard labels.
template <typename T, int D, int K>
void kmeans_start(Chain<T, D, K>& c, const T u[K], int64_t kmeans_iter, const T fb_covs[K][D][D],
                  const T fb_offsets[K][D], int64_t covariance, T reg, Mixture<T, D, K>* start) {
  const T origin[K][D] = {};  // Lloyd sums the points themselves (x - 0 is x exactly)
  T centres[K][D], counts[K], sums[K][D];
  kmeans_plus_plus<T, D, K>(c, u, centres);
  for (int64_t step = 0; step < kmeans_iter; ++step) {
    cluster_sums<T, D, K>(c, centres, origin, false, counts, sums);
    for (int k = 0; k < K; ++k)
      if (counts[k] > 0)
        for (int a = 0; a < D; ++a) centres[k][a] = sums[k][a] / counts[k];
  }
  cluster_sums<T, D, K>(c, centres, centres, true, counts, sums);
  m_step<T, D, K>(c, centres, counts, sums, fb_covs, fb_offsets, covariance, reg, start);
}

// The loop (loop.advance until loop.running is false) for the lanes claimed from `next` (below B), from the
// given mixtures or, where `uniforms` [B, K] is given, from init.init_kmeans's start drawn with them.
template <typename T, int D, int K>
void em_lanes(std::atomic<int64_t>* next, int64_t B, int n, const T* weights, const T* means, const T* covs, const T* uniforms,
              int64_t kmeans_iter, const T* xt, const T* w, const T* fb_covs, const T* fb_offsets, const T* tol,
              const T* reg, int64_t max_iter, int64_t covariance, T* weights_out, T* means_out, T* covs_out,
              int32_t* n_iter_out, int32_t* converged_out) {
  typedef Mixture<T, D, K> M;
  Chain<T, D, K> chain;
  for (int64_t b = next->fetch_add(1); b < B; b = next->fetch_add(1)) {
    chain.load(xt + b * D * n, w + b * n, n);
    M theta, next;
    T fbc[K][D][D], fbo[K][D];
    std::memcpy(fbc, fb_covs + b * K * D * D, sizeof(fbc));
    std::memcpy(fbo, fb_offsets + b * K * D, sizeof(fbo));
    if (uniforms != nullptr) {
      kmeans_start<T, D, K>(chain, uniforms + b * K, kmeans_iter, fbc, fbo, covariance, reg[b], &theta);
    } else {
      std::memcpy(theta.weights, weights + b * K, sizeof(theta.weights));
      std::memcpy(theta.means, means + b * K * D, sizeof(theta.means));
      std::memcpy(theta.covs, covs + b * K * D * D, sizeof(theta.covs));
    }
    T prev = -std::numeric_limits<T>::infinity();
    int64_t it = 0;
    bool done = false;
    while (!done && it < max_iter) {
      T ll = em_step<T, D, K>(chain, theta, fbc, fbo, covariance, reg[b], &next);
      done = std::abs(ll - prev) < tol[b];
      prev = ll;
      theta = next;
      ++it;
    }
    std::memcpy(weights_out + b * K, theta.weights, sizeof(theta.weights));
    std::memcpy(means_out + b * K * D, theta.means, sizeof(theta.means));
    std::memcpy(covs_out + b * K * D * D, theta.covs, sizeof(theta.covs));
    n_iter_out[b] = static_cast<int32_t>(it);
    converged_out[b] = done ? 1 : 0;
  }
}

// Runs work(&next) on this thread and on up to threads - 1 of XLA's intra-op pool; each call claims lanes
// from `next` until none is left. A task that starts after every lane is claimed touches nothing but the
// shared counters (kept alive by the shared pointer), so this thread waits only for tasks still running.
template <typename F>
void over_lanes(ffi::ThreadPool& pool, int64_t threads, int64_t B, F work) {
  struct Shared {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> active{0};
  };
  auto shared = std::make_shared<Shared>();
  const int64_t helpers = std::min<int64_t>(threads - 1, B - 1);
  for (int64_t t = 0; t < helpers; ++t) {
    pool.Schedule([shared, work, B]() {
      shared->active.fetch_add(1);
      if (shared->next.load() < B) work(&shared->next);
      shared->active.fetch_sub(1);
    });
  }
  work(&shared->next);
  while (shared->active.load() > 0) std::this_thread::yield();
}

template <ffi::DataType DT>
ffi::Error em_loop_impl(ffi::ThreadPool pool, ffi::Buffer<DT> weights, ffi::Buffer<DT> means, ffi::Buffer<DT> covs, ffi::Buffer<DT> uniforms,
                        ffi::Buffer<DT> xt,
                        ffi::Buffer<DT> w, ffi::Buffer<DT> fb_covs, ffi::Buffer<DT> fb_offsets, ffi::Buffer<DT> tol,
                        ffi::Buffer<DT> reg, ffi::ResultBuffer<DT> weights_out, ffi::ResultBuffer<DT> means_out,
                        ffi::ResultBuffer<DT> covs_out, ffi::ResultBuffer<ffi::S32> n_iter_out,
                        ffi::ResultBuffer<ffi::S32> converged_out, int64_t max_iter, int64_t covariance,
                        int64_t kmeans_iter, int64_t threads) {
  typedef ffi::NativeType<DT> T;
  auto xd = xt.dimensions();
  auto md = means.dimensions();
  if (xd.size() < 2 || md.size() < 2) return ffi::Error::InvalidArgument("em_loop: xt [..., d, n], means [..., K, d]");
  const int64_t d = xd[xd.size() - 2], n = xd[xd.size() - 1], K = md[md.size() - 2];
  const int64_t B = static_cast<int64_t>(w.element_count()) / n;
  if (md[md.size() - 1] != d || static_cast<int64_t>(xt.element_count()) != B * d * n ||
      static_cast<int64_t>(weights.element_count()) != B * K ||
      static_cast<int64_t>(covs.element_count()) != B * K * d * d ||
      static_cast<int64_t>(uniforms.element_count()) != B * K ||
      static_cast<int64_t>(fb_covs.element_count()) != B * K * d * d ||
      static_cast<int64_t>(fb_offsets.element_count()) != B * K * d ||
      static_cast<int64_t>(tol.element_count()) != B || static_cast<int64_t>(reg.element_count()) != B)
    return ffi::Error::InvalidArgument("em_loop: inconsistent shapes");
  if (covariance < kFull || covariance > kSpherical)
    return ffi::Error::InvalidArgument("em_loop: covariance code must be 0 (full), 1 (diag) or 2 (spherical)");
  if (threads < 1) return ffi::Error::InvalidArgument("em_loop: threads must be >= 1");
  const T *weights_in = weights.typed_data(), *means_in = means.typed_data(), *covs_in = covs.typed_data();
  const T* u = kmeans_iter < 0 ? nullptr : uniforms.typed_data();
  const T *x_in = xt.typed_data(), *w_in = w.typed_data(), *fbc = fb_covs.typed_data();
  const T *fbo = fb_offsets.typed_data(), *tol_in = tol.typed_data(), *reg_in = reg.typed_data();
  T *weights_o = weights_out->typed_data(), *means_o = means_out->typed_data(), *covs_o = covs_out->typed_data();
  int32_t *n_iter_o = n_iter_out->typed_data(), *converged_o = converged_out->typed_data();
  const int n_points = static_cast<int>(n);
#define JC_EM_CASE(DD, KK)                                                                                          \
  if (d == DD && K == KK) {                                                                                        \
    over_lanes(pool, threads, B, [=](std::atomic<int64_t>* next) {                                                \
      em_lanes<T, DD, KK>(next, B, n_points, weights_in, means_in, covs_in, u, kmeans_iter, x_in, w_in, fbc, fbo, \
                          tol_in, reg_in, max_iter, covariance, weights_o, means_o, covs_o, n_iter_o,            \
                          converged_o);                                                                           \
    });                                                                                                            \
    return ffi::Error::Success();                                                                                  \
  }
  JC_EM_CASE(1, 1) JC_EM_CASE(1, 2) JC_EM_CASE(1, 3) JC_EM_CASE(1, 4)
  JC_EM_CASE(2, 1) JC_EM_CASE(2, 2) JC_EM_CASE(2, 3) JC_EM_CASE(2, 4)
  JC_EM_CASE(3, 1) JC_EM_CASE(3, 2) JC_EM_CASE(3, 3) JC_EM_CASE(3, 4)
#undef JC_EM_CASE
  return ffi::Error::InvalidArgument("em_loop: d must be 1-3 and K 1-4, got d = " + std::to_string(d) +
                                     ", K = " + std::to_string(K));
}

}  // namespace

#define JC_EM_BINDING(DT)                                                                                     \
  ffi::Ffi::Bind()                                                                                           \
      .Ctx<ffi::ThreadPool>()                                                                                \
      .Arg<ffi::Buffer<DT>>()   /* weights [..., K] */                                                       \
      .Arg<ffi::Buffer<DT>>()   /* means [..., K, d] */                                                      \
      .Arg<ffi::Buffer<DT>>()   /* covs [..., K, d, d] */                                                    \
      .Arg<ffi::Buffer<DT>>()   /* uniforms [..., K]: k-means++'s draws (with kmeans_iter >= 0) */          \
      .Arg<ffi::Buffer<DT>>()   /* xt [..., d, n] */                                                         \
      .Arg<ffi::Buffer<DT>>()   /* w [..., n] */                                                             \
      .Arg<ffi::Buffer<DT>>()   /* fallback covs [..., K, d, d] */                                           \
      .Arg<ffi::Buffer<DT>>()   /* fallback offsets [..., K, d] */                                           \
      .Arg<ffi::Buffer<DT>>()   /* tol [...] */                                                              \
      .Arg<ffi::Buffer<DT>>()   /* reg_covar [...] */                                                        \
      .Ret<ffi::Buffer<DT>>()                                                                                \
      .Ret<ffi::Buffer<DT>>()                                                                                \
      .Ret<ffi::Buffer<DT>>()                                                                                \
      .Ret<ffi::Buffer<ffi::S32>>() /* n_iter */                                                             \
      .Ret<ffi::Buffer<ffi::S32>>() /* converged */                                                          \
      .Attr<int64_t>("max_iter")                                                                             \
      .Attr<int64_t>("covariance")                                                                           \
      .Attr<int64_t>("kmeans_iter") /* < 0: EM from the given mixtures; else k-means++ and Lloyd steps first */ \
      .Attr<int64_t>("threads")     /* this thread and threads - 1 of XLA's intra-op pool */

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxcollapseEmLoopF32, em_loop_impl<ffi::F32>, JC_EM_BINDING(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxcollapseEmLoopF64, em_loop_impl<ffi::F64>, JC_EM_BINDING(ffi::F64));
#undef JC_EM_BINDING

// Tests: the vectorised exp and log against the C library (tests/test_native.py).
extern "C" void jaxcollapse_vexp_f32(const float* x, float* out, int64_t n) {
  typedef Simd<float>::V V;
  for (int64_t i = 0; i + kLanes<float> <= n; i += kLanes<float>) vstore(out + i, vexp(vload<V>(x + i)));
}
extern "C" void jaxcollapse_vlog_f32(const float* x, float* out, int64_t n) {
  typedef Simd<float>::V V;
  for (int64_t i = 0; i + kLanes<float> <= n; i += kLanes<float>) vstore(out + i, vlog(vload<V>(x + i)));
}
