"""Weighted EM for Gaussian mixtures, pure functions of one chain written for vmap.

Rooms, one job each (imports flow downwards):
  densities.py   MixtureParams, Cholesky factors, joint log densities, log p(x)
  mstep.py       M-step moments, the fallback for a component that lost its points, re-seeding
  reductions.py  sums over the points (row_sums): one matrix-vector product on a CPU, fused reductions elsewhere
  step.py        one EM iteration (E-step and M-step), for one chain and for a batch
  compaction.py  a batched while loop that steps only its running lanes, in blocks
  slots.py       the CPU's queue in front of it: a fixed block of slots, each refilled as its lane finishes
  loop.py        the EM loop to tol / max_iter (em), with its vmap rule, and em_trace
  sampling.py    exact draws from a mixture, inverse-CDF picks
  kmeans.py      k-means++ seeding and Lloyd steps
  init.py        scikit-learn's "kmeans" and "random" initialisations

The recurrence follows scikit-learn's GaussianMixture step for step, so the two agree to rounding:
  - E-step in log space via the Cholesky factor of each covariance;
  - M-step: nk = sum_n w_n r_nk + 10 eps, weights = nk / sum(nk), reg_covar added to the
    covariance diagonal (diag/spherical: to the variances);
  - iteration i: E-step at theta_{i-1} gives the mean log-likelihood L_{i-1}, M-step gives
    theta_i; stop when |L_{i-1} - L_{i-2}| < tol (L_{-1} = -inf) or i = max_iter.
Weights w [n] >= 0 replace sklearn's implicit ones: w = 0 removes a point.

Covariances are always stored as full [K, d, d] matrices (diagonal / spherical ones as
diagonal matrices), so parameter histories have one shape whatever the covariance type.
"""
