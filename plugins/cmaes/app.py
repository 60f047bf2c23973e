"""cmaes — CMA-ES with IPOP (or BIPOP) restarts, in pure Python

A componentize-py strategy plugin for alcf-host (standard library only: no numpy).

Algorithm
---------
The standard (μ/μ_w, λ)-CMA-ES of Hansen (2016), run in the unit cube [0,1]^d of the SDK's
`Space` (so log scales are handled by the encoding):

- **Sampling**: x = m + σ·B·D·z, z ~ N(0, I), drawn from ``self.trial_rng(trial_id)`` (one
  stream per trial id). With ``"bounds": "resample"`` a point outside [0,1]^d is drawn again, up
  to 100 times (what the `cmaes` library behind Optuna's CmaEsSampler does); then, or at once with
  ``"clip"``, the point is *repaired* by clipping into [0,1]^d, and snapped (ints and choices to
  their bin centres). The repaired point is what is evaluated.
- **Update** (positive recombination weights w_i ∝ ln((λ+1)/2) − ln i, i ≤ μ = ⌊λ/2⌋, the
  default learning rates c_σ, d_σ, c_c, c_1, c_μ of the tutorial): weighted recombination of the
  mean (c_m = 1), cumulative step-size adaptation (CSA) with the h_σ stall of the rank-one path,
  rank-one + rank-μ covariance update. With ``"active": true``, active CMA (the tutorial's
  eq. 46–53): ranks μ+1…λ get negative weights, scaled so that C stays positive definite, and each
  negative weight is multiplied by d/‖C^{-1/2} y‖², so the worst members shrink the variance
  along their steps.
- **Bounds**: "Lamarckian" repair. The update uses the repaired (clipped, snapped) point, i.e.
  the point that was really evaluated, recomputed from the trial's parameters with
  ``space.encode``; no penalty term. Because every point used lies in the cube and c_m = 1, the
  mean stays in the cube. Each step y = (x − m)/σ is clipped to a Mahalanobis length
  ‖C^{-1/2} y‖ ≤ √d + 2d/(d+2) (our bound, in the spirit of Hansen 2011 on injected
  solutions): repaired points, and points sampled from an earlier distribution (see
  "Asynchrony"), are in effect injected solutions, and the clip keeps an outlier from upsetting
  the mean, the paths and the step size. An ordinary sample exceeds the bound rarely.
- **Eigendecomposition**: cyclic Jacobi in pure Python (relative-accuracy threshold), warm-started
  from the previous eigenbasis (Jacobi on BᵀCB, which is nearly diagonal) with a cold restart
  every 25 decompositions; done lazily, as in Hansen's reference code, when more than
  λ/((c_1 + c_μ)·d·10) evaluations have passed since the last one (in practice every
  generation for d ≤ 40 and the default λ).
- **Discrete coordinates** (ints and choices): a floor on the marginal standard deviation
  σ·√C_jj ≥ (w_j/2)/Φ⁻¹(1 − α/2), w_j being the width of the bin the mean lies in and
  α = 1/(d·λ) (the margin of Optuna's "CMA-ES with margin", Hamano et al. 2022, applied as a
  variance floor): from a bin centre the next sample leaves the bin with probability ≥ α, so the
  search does not collapse onto one bin. The floor rescales row and column j of C (keeping the
  correlations). Choices are treated as ordered bins of their index (as CMA-ES does with
  integers); the genetic or TPE plugins suit heavily categorical spaces better.
- **Restarts** (IPOP, Auger & Hansen 2005): a run ends when any of these hold
  (h = 10 + ⌈30d/λ⌉ generations, Hansen's history length):
  *tolfun* — the range of the best values of the last h generations and of the current
  generation's values is below 1e-12; *stagnation* — the run's best value has not improved for
  h generations; *tolx* — σ·max(|p_c,j|, √C_jj) < 1e-11·σ0 on every float coordinate;
  *conditioncov* — cond(C) > 1e14; *noeffectaxis* — adding 0.1σ·√λ_i·b_i (principal axis
  i = generation mod d) no longer changes the mean; *noeffectcoord* — adding 0.2σ·√C_jj to a
  float coordinate no longer changes it; or a numerical guard (σ or the eigenvalues of C out of
  [1e-150, 1e150], C not positive definite). The next run starts from a uniformly random mean
  with σ = σ0, C = I and the population multiplied by `inc_popsize`. After `restarts` restarts
  the population stops growing (a run that ends then restarts with the largest population: the host, not the
  plugin, decides when the study stops). With ``"bipop": true`` restarts follow BIPOP (Hansen
  2009) instead: each restart goes to the regime that has used fewer evaluations so far, either
  the large-population regime above (the first run counts as one) or a small one with
  λ_s = ⌊λ0·(λ_l/(2λ0))^(U²)⌋ and σ_s = σ0·10^(−2U), U uniform in [0, 1], λ_l the largest
  population so far.
- **Flat fitness**: when the best and the ⌈0.7λ⌉-th value of a generation are equal, σ is
  multiplied by exp(0.2 + c_σ/d_σ) (Hansen's escape); a lasting plateau ends the run (tolfun).
  σ is capped so that σ·max_j √C_jj ≤ 1 (the cube's width).

Asynchrony, failures and resume
-------------------------------
The state is a pure function of (study, seed, the sequence of observed outcomes): nothing is
remembered about suggestions. Finished trials are collected into the current generation in the
order they are observed; when λ of them have arrived the distribution is updated with their
encoded points. A trial sampled from an earlier distribution of the same run (it was pending
across an update) counts in the generation in which it finishes. A trial sampled by an earlier
*run* is left out of the new run (it would drag the restart back to the old optimum and, being
good, make the new run look stagnant): when a run starts, with M the highest trial id observed and
P the study's parallelism, the at most P − 1 trials then still running have ids ≤ M + P − 1 (the
host numbers trials consecutively), so every trial with such an id is skipped by the new run.
Under out-of-order finishing this can also skip a few of the new run's first trials, which only
costs their information. `suggest` never changes the state: the k-th point of a call is drawn
from ``self.trial_rng(self.next_trial_id(pending) + k)`` with the current distribution. On
resume the host replays every finished trial through `observe`, in the same order, so a fresh
instance reaches exactly the same state and continues the same sequence of suggestions (the
replay may batch the outcomes differently: the state only depends on their order). Changing the
study's parallelism on resume can change which trials count as stale (see above).

Failed and pruned trials (and non-finite values) count as members of their generation (so a
generation still closes after λ finished trials) but rank last and get no recombination weight;
the weights of the completed ones are renormalized (and μ_eff recomputed for the normalizations
of the evolution paths). A generation with no completed trial leaves the distribution unchanged.
Maximization needs nothing special: values are negated to "lower is better" like the SDK's
`History`.

A suggestion that duplicates a pending trial (or one chosen earlier in the same call) is redrawn
from the same stream, with σ enlarged after 10 tries, finally drawn uniformly. In spaces without
float parameters a suggestion also avoids already finished points for the first 20 tries.

Per call, `suggest` costs O(count·(d² + pending·d)) and `observe` O(d) per outcome plus one
generation update (O(λd² + d³)) every λ outcomes: nothing re-scans the history.

Options (JSON object in ``study.options``)
------------------------------------------
- ``sigma0`` (default 1/6): initial step size in unit-cube units, 0 < sigma0 ≤ 1.
- ``popsize`` (default 4 + ⌊3 ln d⌋): λ of the first run, ≥ 2. Asynchronous runs work best with
  popsize ≥ the study's parallelism.
- ``restarts`` (default 9): how many restarts may enlarge the population.
- ``inc_popsize`` (default 2): population factor per IPOP restart, ≥ 1.
- ``bipop`` (default false): BIPOP instead of IPOP restarts.
- ``bounds`` (default "resample"): "resample" draws a point outside the cube again (up to 100
  times) before clipping it; "clip" clips at once.
- ``active`` (default true): active CMA (negative recombination weights in the covariance update).

The defaults of ``sigma0``, ``bounds`` and ``active`` were chosen on the BBOB tuning instances
1–20 (docs/benchmarks.md, "Strategy quality against Optuna"): 0.3, "clip" and false before.

Unknown options, or values of the wrong type or out of range, are an ``options:`` error.

References
----------
- N. Hansen (2016). The CMA Evolution Strategy: A Tutorial. arXiv:1604.00772.
- A. Auger, N. Hansen (2005). A Restart CMA Evolution Strategy With Increasing Population Size.
  IEEE CEC 2005, 1769–1776.
- N. Hansen (2009). Benchmarking a BI-Population CMA-ES on the BBOB-2009 Function Testbed.
  GECCO 2009 workshop.
- N. Hansen (2011). Injecting External Solutions Into CMA-ES. arXiv:1110.4181.
- R. Hamano, S. Saito, M. Nomura, S. Shirakawa (2022). CMA-ES with Margin: Lower-Bounding
  Marginal Probability for Mixed-Integer Black-Box Optimization. GECCO 2022.
"""

import math
from operator import mul
from statistics import NormalDist

import alcf_strategy as hpo

# Stream of the per-restart random numbers (new mean, BIPOP's U): far from the trial-id streams.
RESTART_STREAM = 0xC3A5_0000_0000_0000
TOLFUN = 1e-12
TOLX_FACTOR = 1e-11
MAX_CONDITION = 1e14
COLD_EIGEN_EVERY = 25
KNOWN_OPTIONS = ["sigma0", "popsize", "restarts", "inc_popsize", "bipop", "bounds", "active"]
BOUNDS = ["clip", "resample"]
# Defaults chosen on the tuning instances 1-20 (docs/benchmarks.md), as Optuna's CmaEsSampler has
# them: a sixth of the cube's width, resampled bounds, active CMA.
SIGMA0 = 1.0 / 6.0
# Draws of a sample inside the cube before "resample" clips (the `cmaes` library's limit).
MAX_RESAMPLE = 100


def _dot(a, b):
    return sum(map(mul, a, b))


def jacobi_eigh(a, max_sweeps=60):
    """Eigendecomposition of the symmetric matrix `a` (list of rows) by cyclic Jacobi rotations.

    Returns ``(values, v)``: eigenvalues and the matrix (rows) whose columns are the
    eigenvectors, ``a = v·diag(values)·vᵀ``. An off-diagonal element is annihilated unless it is
    negligible relative to its diagonal pair (|a_pq| ≤ 1e-16·√|a_pp·a_qq|), which gives small
    eigenvalues good relative accuracy. `a` is not modified.
    """
    n = len(a)
    a = [list(row) for row in a]
    v = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
    for _ in range(max_sweeps):
        rotated = False
        for p in range(n - 1):
            ap = a[p]
            for q in range(p + 1, n):
                apq = ap[q]
                if apq == 0.0:
                    continue
                aq = a[q]
                app = ap[p]
                aqq = aq[q]
                if abs(apq) <= 1e-16 * math.sqrt(abs(app) * abs(aqq)):
                    ap[q] = aq[p] = 0.0
                    continue
                theta = (aqq - app) / (2.0 * apq)
                if abs(theta) > 1e150:
                    t = 0.5 / theta
                else:
                    t = 1.0 / (abs(theta) + math.sqrt(1.0 + theta * theta))
                    if theta < 0.0:
                        t = -t
                if t == 0.0:
                    ap[q] = aq[p] = 0.0
                    continue
                rotated = True
                c = 1.0 / math.sqrt(1.0 + t * t)
                s = t * c
                for k in range(n):
                    if k == p or k == q:
                        continue
                    ak = a[k]
                    akp = ak[p]
                    akq = ak[q]
                    ak[p] = ap[k] = c * akp - s * akq
                    ak[q] = aq[k] = s * akp + c * akq
                ap[p] = app - t * apq
                aq[q] = aqq + t * apq
                ap[q] = aq[p] = 0.0
                for vk in v:
                    vkp = vk[p]
                    vkq = vk[q]
                    vk[p] = c * vkp - s * vkq
                    vk[q] = s * vkp + c * vkq
        if not rotated:
            break
    return [a[i][i] for i in range(n)], v


class CmaEs(hpo.Strategy):
    name = "cmaes"
    version = "0.2.0"
    description = "active CMA-ES (rank-one + rank-mu, CSA) in the unit cube with IPOP restarts (BIPOP optional)"
    capabilities = []

    def __init__(self, study):
        # Options first, so that a configuration mistake is reported as such.
        o = hpo.Options(study.options)
        o.check_known(KNOWN_OPTIONS)
        d = len(study.space)
        self.sigma0 = o.float("sigma0", SIGMA0)
        if not (0.0 < self.sigma0 <= 1.0):
            raise hpo.Options.invalid("sigma0", "must be in (0, 1] (unit-cube units)")
        self.popsize0 = o.int("popsize", 4 + int(3.0 * math.log(max(d, 1))))
        if self.popsize0 < 2:
            raise hpo.Options.invalid("popsize", "must be at least 2")
        self.max_restarts = o.int("restarts", 9)
        self.inc_popsize = o.float("inc_popsize", 2.0)
        if not (self.inc_popsize >= 1.0):
            raise hpo.Options.invalid("inc_popsize", "must be at least 1")
        self.bipop = o.bool("bipop", False)
        self.bounds = o.str("bounds", "resample")
        if self.bounds not in BOUNDS:
            raise hpo.Options.invalid("bounds", f"must be one of {', '.join(BOUNDS)}")
        self.active = o.bool("active", True)

        super().__init__(study)
        if d == 0:
            raise hpo.PluginError("the search space has no parameters")
        self.d = d
        self.minimize = study.direction != "maximize"

        params = list(study.space)
        self.params = params
        # Float coordinates (tolx, noeffectcoord) and discrete ones with more than one value
        # (variance floor).
        self.continuous = [j for j in range(d) if params[j].kind == "float"]
        self.discrete = [
            j for j in range(d) if params[j].kind != "float" and (self.space.n_values(j) or 1) > 1
        ]
        self.discrete_only = not self.continuous
        self.finished_keys = set()

        # Restart bookkeeping.
        self.run_index = 0
        self.large_restarts = 0  # restarts that enlarged the population
        self.large_lambda = self.popsize0
        self.evals_large = 0
        self.evals_small = 0
        self.run_is_large = True
        self.run_log = []  # (run index, lambda, sigma0, evaluations, reason the run ended)
        self.total_evals = 0
        self.parallelism = max(1, int(study.parallelism or 1))
        self.max_id = -1  # highest trial id observed so far (outcome by outcome)
        self.stale_limit = -1  # trials with ids up to this were sampled by an earlier run
        self.stale_skipped = 0
        self._start_run(self.popsize0, self.sigma0, [0.5] * d)

    # ---- run set-up -------------------------------------------------------------------------

    def _start_run(self, lam, sigma, mean):
        d = self.d
        self.lam = lam
        mu = lam // 2
        self.mu = mu
        raw_all = [math.log((lam + 1) / 2.0) - math.log(i + 1) for i in range(lam)]
        raw = raw_all[:mu]
        total = sum(raw)
        self.weights = [w / total for w in raw]
        self.mueff = 1.0 / sum(w * w for w in self.weights)
        mueff = self.mueff
        self.cc = (4.0 + mueff / d) / (d + 4.0 + 2.0 * mueff / d)
        self.cs = (mueff + 2.0) / (d + mueff + 5.0)
        self.c1 = 2.0 / ((d + 1.3) ** 2 + mueff)
        self.cmu = min(1.0 - self.c1, 2.0 * (mueff - 2.0 + 1.0 / mueff) / ((d + 2.0) ** 2 + mueff))
        # Active CMA's negative weights for ranks mu+1..lambda (the tutorial's eq. 53): scaled so
        # that the covariance update keeps C positive definite.
        neg = [w for w in raw_all[mu:] if w < 0.0]
        self.neg_weights = []
        if self.active and neg and self.cmu > 0.0:
            mueff_neg = sum(neg) ** 2 / sum(w * w for w in neg)
            alpha = min(
                1.0 + self.c1 / self.cmu,
                1.0 + 2.0 * mueff_neg / (mueff + 2.0),
                (1.0 - self.c1 - self.cmu) / (d * self.cmu),
            )
            scale = alpha / -sum(neg)
            self.neg_weights = [0.0] * (lam - mu - len(neg)) + [w * scale for w in neg]
        self.damps = 1.0 + 2.0 * max(0.0, math.sqrt((mueff - 1.0) / (d + 1.0)) - 1.0) + self.cs
        self.chi_n = math.sqrt(d) * (1.0 - 1.0 / (4.0 * d) + 1.0 / (21.0 * d * d))
        self.eigen_gap = 1.0 / ((self.c1 + self.cmu) * d * 10.0)  # in generations
        self.hist_len = 10 + math.ceil(30.0 * d / lam)
        self.y_clip = math.sqrt(d) + 2.0 * d / (d + 2.0)
        # Margin of the discrete-coordinate variance floor.
        alpha = 1.0 / (d * lam)
        self.margin_z = NormalDist().inv_cdf(1.0 - alpha / 2.0)

        self.run_sigma0 = sigma
        self.mean = list(mean)
        self.sigma = sigma
        self.C = [[1.0 if i == j else 0.0 for j in range(d)] for i in range(d)]
        self.B = [[1.0 if i == j else 0.0 for j in range(d)] for i in range(d)]
        self.D = [1.0] * d
        self.BD = [[1.0 if i == j else 0.0 for j in range(d)] for i in range(d)]
        self.Bt = [[1.0 if i == j else 0.0 for j in range(d)] for i in range(d)]
        self.pc = [0.0] * d
        self.ps = [0.0] * d
        self.gen = 0
        self.eigen_gen = 0
        self.eigen_count = 0
        self.buffer = []  # (x, y or None) of the current generation, in arrival order
        self.best_hist = []  # best value of each of the last hist_len generations
        self.run_best = math.inf
        self.no_improve = 0
        self.run_evals = 0
        self._apply_floor()
        self._decompose(cold=True)

    def _restart(self, reason):
        self.run_log.append((self.run_index, self.lam, self.run_sigma0, self.run_evals, reason))
        if self.run_is_large:
            self.evals_large += self.run_evals
        else:
            self.evals_small += self.run_evals
        self.run_index += 1
        self.stale_limit = self.max_id + self.parallelism - 1
        rng = hpo.Rng.derive(self.seed, RESTART_STREAM + self.run_index)
        u = rng.random()
        mean = rng.unit_point(self.d)
        if self.bipop and self.evals_small < self.evals_large:
            lam = int(self.popsize0 * (self.large_lambda / (2.0 * self.popsize0)) ** (u * u))
            lam = max(2, lam)
            sigma = self.sigma0 * 10.0 ** (-2.0 * u)
            self.run_is_large = False
        else:
            if self.large_restarts < self.max_restarts:
                self.large_restarts += 1
                lam = max(2, int(self.popsize0 * self.inc_popsize ** self.large_restarts + 0.5))
                self.large_lambda = lam
            else:
                lam = self.large_lambda
            sigma = self.sigma0
            self.run_is_large = True
        self._start_run(lam, sigma, mean)

    # ---- linear algebra on the current distribution ----------------------------------------

    def _decompose(self, cold=False):
        """Refreshes B, D (and the products used for sampling) from C. False: C is not positive."""
        d = self.d
        C = self.C
        for i in range(d):
            for j in range(i):
                C[i][j] = C[j][i]
        cold = cold or self.eigen_count % COLD_EIGEN_EVERY == 0
        if cold:
            values, B = jacobi_eigh(C)
        else:
            Bt = self.Bt
            CB = [[_dot(C[i], bk) for bk in Bt] for i in range(d)]  # C·B, row i
            CBt = [list(col) for col in zip(*CB)]
            A = [[_dot(Bt[k], CBt[l]) for l in range(d)] for k in range(d)]  # Bᵀ·C·B
            values, V = jacobi_eigh(A)
            Vt = [list(col) for col in zip(*V)]
            B = [[_dot(self.B[i], vk) for vk in Vt] for i in range(d)]
        self.eigen_count += 1
        self.eigen_gen = self.gen
        ok = all(v > 0.0 and math.isfinite(v) for v in values)
        if not ok:
            return False
        self.B = B
        self.D = [math.sqrt(v) for v in values]
        self.Bt = [list(col) for col in zip(*B)]
        self.BD = [[B[i][k] * self.D[k] for k in range(d)] for i in range(d)]
        return True

    def _inv_sqrt_c(self, y):
        """C^{-1/2}·y = B·D⁻¹·Bᵀ·y (with the current, possibly lazy, eigendecomposition)."""
        t = [_dot(bk, y) / dk for bk, dk in zip(self.Bt, self.D)]
        return [_dot(row, t) for row in self.B]

    def _mahalanobis(self, y):
        return math.sqrt(sum((_dot(bk, y) / dk) ** 2 for bk, dk in zip(self.Bt, self.D)))

    def _bin_width(self, j):
        """Width, in cube units, of the bin of discrete coordinate j that the mean lies in."""
        p = self.params[j]
        n = self.space.n_values(j)
        if p.kind == "int" and p.log:
            v = self.space.decode_value(j, self.mean[j])
            a = math.log(float(p.low))
            b = math.log(float(p.high) + 1.0)
            return (math.log(v + 1.0) - math.log(float(v))) / (b - a)
        return 1.0 / n

    def _apply_floor(self):
        """Keeps σ·√C_jj ≥ (w_j/2)/Φ⁻¹(1 − α/2) on discrete coordinates. True: C changed."""
        changed = False
        C = self.C
        d = self.d
        for j in self.discrete:
            s_min = 0.5 * self._bin_width(j) / self.margin_z
            cjj = C[j][j]
            s = self.sigma * math.sqrt(max(cjj, 0.0))
            if s >= s_min:
                continue
            if s > 0.0:
                f = s_min / s
                row = C[j]
                for k in range(d):
                    if k != j:
                        row[k] *= f
                        C[k][j] = row[k]
                row[j] = cjj * f * f
            else:
                C[j][j] = (s_min / self.sigma) ** 2
            changed = True
        return changed

    # ---- the generation update --------------------------------------------------------------

    def _update(self):
        d = self.d
        lam = self.lam
        members = self.buffer
        self.buffer = []
        # Completed members by value (ties: arrival order), then the failed ones.
        order = sorted(
            range(len(members)),
            key=lambda i: (1, 0.0) if members[i][1] is None else (0, members[i][1]),
        )
        values = [members[i][1] for i in order if members[i][1] is not None]
        m = self.mean
        sigma = self.sigma

        # Recombination weights of the completed members among the best mu.
        sel = []
        for r in range(self.mu):
            x, y = members[order[r]]
            if y is not None:
                sel.append((self.weights[r], x))
        wsum = sum(w for w, _ in sel)
        if sel and wsum > 0.0:
            ws = [w / wsum for w, _ in sel]
            mueff = 1.0 / sum(w * w for w in ws)
            steps = []
            for _, x in sel:
                y = [(xi - mi) / sigma for xi, mi in zip(x, m)]
                n = self._mahalanobis(y)
                if n > self.y_clip:
                    f = self.y_clip / n
                    y = [yi * f for yi in y]
                steps.append(y)
            yw = [0.0] * d
            for w, y in zip(ws, steps):
                for i in range(d):
                    yw[i] += w * y[i]
            self.mean = [min(1.0, max(0.0, mi + sigma * ywi)) for mi, ywi in zip(m, yw)]

            cs, cc, c1, cmu = self.cs, self.cc, self.c1, self.cmu
            zs = self._inv_sqrt_c(yw)
            k = math.sqrt(cs * (2.0 - cs) * mueff)
            self.ps = [(1.0 - cs) * p + k * z for p, z in zip(self.ps, zs)]
            ps_norm = math.sqrt(sum(p * p for p in self.ps))
            denom = math.sqrt(1.0 - (1.0 - cs) ** (2.0 * (self.gen + 1)))
            hsig = 1.0 if ps_norm / denom / self.chi_n < 1.4 + 2.0 / (d + 1.0) else 0.0
            kc = hsig * math.sqrt(cc * (2.0 - cc) * mueff)
            self.pc = [(1.0 - cc) * p + kc * y for p, y in zip(self.pc, yw)]

            # Active CMA: the worst completed members pull variance away along their steps, each
            # weight rescaled by d/|C^-1/2 y|^2 so that a long step does not dominate.
            neg_sum = 0.0
            if self.neg_weights:
                for r in range(self.mu, len(order)):
                    x, yv = members[order[r]]
                    w = self.neg_weights[r - self.mu]
                    if yv is None or w == 0.0:
                        continue
                    y = [(xi - mi) / sigma for xi, mi in zip(x, m)]
                    n2 = self._mahalanobis(y) ** 2
                    neg_sum += w
                    ws.append(w * d / max(n2, 1e-300))
                    steps.append(y)
            a = 1.0 - c1 - cmu * (1.0 + neg_sum) + (1.0 - hsig) * c1 * cc * (2.0 - cc)
            pc = self.pc
            C = self.C
            wcm = [cmu * w for w in ws]
            for i in range(d):
                row = C[i]
                pci = c1 * pc[i]
                wyi = [w * y[i] for w, y in zip(wcm, steps)]
                for j in range(i, d):
                    v = a * row[j] + pci * pc[j]
                    for wy, y in zip(wyi, steps):
                        v += wy * y[j]
                    row[j] = v
            for i in range(d):
                for j in range(i):
                    C[i][j] = C[j][i]

            exponent = (cs / self.damps) * (ps_norm / self.chi_n - 1.0)
            self.sigma = sigma * math.exp(min(1.0, exponent))

        # Flat fitness: escape by enlarging sigma.
        if len(values) >= 2:
            kth = min(len(values), math.ceil(0.7 * lam)) - 1
            if values[0] == values[max(1, kth)]:
                self.sigma *= math.exp(0.2 + self.cs / self.damps)
        max_diag = max(self.C[i][i] for i in range(d))
        if self.sigma * math.sqrt(max_diag) > 1.0:
            self.sigma = 1.0 / math.sqrt(max_diag)
        self.gen += 1

        forced = self._apply_floor()
        eig_ok = True
        if forced or self.gen - self.eigen_gen > self.eigen_gap:
            eig_ok = self._decompose()

        # Bookkeeping for the termination criteria.
        if values:
            gbest = values[0]
            self.best_hist.append(gbest)
            if len(self.best_hist) > self.hist_len:
                del self.best_hist[0]
            if gbest < self.run_best:
                self.run_best = gbest
                self.no_improve = 0
            else:
                self.no_improve += 1
        else:
            self.no_improve += 1

        reason = self._termination(values, eig_ok)
        if reason is not None:
            self._restart(reason)

    def _termination(self, values, eig_ok):
        d = self.d
        if not eig_ok:
            return "eigen"
        sigma = self.sigma
        D = self.D
        dmax = max(D)
        dmin = min(D)
        if not (1e-150 < sigma < 1e150) or not (1e-150 < dmin and dmax < 1e150):
            return "numerics"
        if (dmax / dmin) ** 2 > MAX_CONDITION:
            return "conditioncov"
        if self.no_improve >= self.hist_len:
            return "stagnation"
        if len(self.best_hist) >= self.hist_len and values:
            hi = max(max(self.best_hist), values[-1])
            lo = min(min(self.best_hist), values[0])
            if hi - lo < TOLFUN:
                return "tolfun"
        C = self.C
        if self.continuous:
            tolx = TOLX_FACTOR * self.run_sigma0
            if all(sigma * max(abs(self.pc[j]), math.sqrt(C[j][j])) < tolx for j in self.continuous):
                return "tolx"
            m = self.mean
            for j in self.continuous:
                if m[j] == m[j] + 0.2 * sigma * math.sqrt(C[j][j]):
                    return "noeffectcoord"
        i = self.gen % d
        step = 0.1 * sigma * D[i]
        m = self.mean
        if all(mj == mj + step * self.B[j][i] for j, mj in enumerate(m)):
            return "noeffectaxis"
        return None

    # ---- the strategy interface -------------------------------------------------------------

    def _sample(self, rng, scale):
        d = self.d
        s = self.sigma * scale
        draws = MAX_RESAMPLE if self.bounds == "resample" else 1
        for _ in range(draws):
            z = [rng.normal() for _ in range(d)]
            x = [self.mean[i] + s * _dot(self.BD[i], z) for i in range(d)]
            if all(0.0 <= v <= 1.0 for v in x):
                break
        x = [1.0 if v > 1.0 else (0.0 if not v >= 0.0 else v) for v in x]
        return self.space.snap(x)

    def suggest(self, count, pending):
        space = self.space
        taken = hpo.encode_trials(space, pending)
        first = self.next_trial_id(pending)
        out = []
        for k in range(count):
            rng = self.trial_rng(first + k)
            x = None
            for attempt in range(30):
                scale = 1.0 if attempt < 10 else 2.0 ** ((attempt - 9) / 2.0)
                cand = self._sample(rng, scale)
                if any(space.same_point(t, cand, 1e-12) for t in taken):
                    continue
                if attempt < 20 and self.discrete_only and tuple(cand) in self.finished_keys:
                    continue
                x = cand
                break
            if x is None:
                # Tiny spaces: anything that is not pending.
                x = space.sample(rng)
                for _ in range(200):
                    if not any(space.same_point(t, x, 1e-12) for t in taken):
                        break
                    x = space.sample(rng)
            taken.append(x)
            out.append(space.decode(x))
        return out

    def observe(self, outcomes):
        space = self.space
        for o in outcomes:
            x = space.snap(space.encode(o.trial.params))
            tid = o.trial.id
            stale = tid <= self.stale_limit
            if tid > self.max_id:
                self.max_id = tid
            if self.discrete_only:
                self.finished_keys.add(tuple(x))
            self.total_evals += 1
            if stale:
                self.stale_skipped += 1
                continue
            y = None
            if o.status == "completed" and o.value is not None and math.isfinite(o.value):
                y = float(o.value) if self.minimize else -float(o.value)
            self.buffer.append((x, y))
            self.run_evals += 1
            if len(self.buffer) >= self.lam:
                self._update()


Strategy = hpo.export(CmaEs)
