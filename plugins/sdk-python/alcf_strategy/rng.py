"""A small seeded PRNG: xoshiro256++ seeded through splitmix64, the same streams as the Rust SDK.

Every 64-bit operation is masked to 64 bits, so `Rng(42).next_u64()` equals Rust's
`Rng::new(42).next_u64()`, `Rng(42).random()` equals `Rng::new(42).f64()`, and so on for every
method (plugins/sdk/src/rng.rs).
"""

import math

_MASK = (1 << 64) - 1
_U64_MAX = _MASK
_TWO_POW_MINUS_53 = 1.0 / float(1 << 53)


def splitmix64(state: int):
    """One splitmix64 step: returns ``(new_state, output)`` (Rust's `splitmix64(&mut state)`)."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return state, z ^ (z >> 31)


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & _MASK


class Rng:
    """xoshiro256++ generator; equal seeds give equal streams (`Rng(seed)`)."""

    __slots__ = ("_s",)

    def __init__(self, seed: int = 0):
        st = int(seed) & _MASK
        s = []
        for _ in range(4):
            st, z = splitmix64(st)
            s.append(z)
        self._s = s

    @classmethod
    def derive(cls, seed: int, stream: int) -> "Rng":
        """An independent generator for a named purpose, e.g. one stream per trial id
        (Rust's `Rng::derive(seed, stream)`)."""
        st = (int(seed) & _MASK) ^ ((int(stream) * 0xD1B54A32D192ED03) & _MASK)
        _, z = splitmix64(st)
        return cls(z)

    @classmethod
    def from_state(cls, state) -> "Rng":
        """A generator with the raw xoshiro256++ state `state` (four 64-bit ints; tests)."""
        r = cls.__new__(cls)
        r._s = [int(v) & _MASK for v in state]
        if len(r._s) != 4:
            raise ValueError("xoshiro256++ has four words of state")
        return r

    def state(self) -> list:
        """The raw xoshiro256++ state (four 64-bit ints)."""
        return list(self._s)

    def copy(self) -> "Rng":
        """An independent copy that continues the same stream (Rust's `clone`)."""
        return Rng.from_state(self._s)

    def next_u64(self) -> int:
        """The next 64-bit output, an int in [0, 2^64)."""
        s0, s1, s2, s3 = self._s
        result = (_rotl((s0 + s3) & _MASK, 23) + s0) & _MASK
        t = (s1 << 17) & _MASK
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = _rotl(s3, 45)
        self._s = [s0, s1, s2, s3]
        return result

    def random(self) -> float:
        """Uniform in [0, 1): ``(next_u64() >> 11) * 2**-53`` (Rust's `f64()`)."""
        return float(self.next_u64() >> 11) * _TWO_POW_MINUS_53

    def uniform(self, low: float, high: float) -> float:
        """Uniform in [low, high)."""
        return low + (high - low) * self.random()

    def below(self, n: int) -> int:
        """Uniform integer in [0, n) (n > 0), without modulo bias (rejection sampling)."""
        n = int(n)
        if n <= 0:
            raise ValueError("Rng.below(0)")
        zone = _U64_MAX - (_U64_MAX % n)
        while True:
            v = self.next_u64()
            if v < zone:
                return v % n

    def normal(self) -> float:
        """Standard normal (Box-Muller, ``u1 = 1 - random()`` in (0, 1])."""
        u1 = 1.0 - self.random()
        u2 = self.random()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(math.tau * u2)

    def bool(self, p: float) -> bool:
        """True with probability `p` (``random() < p``)."""
        return self.random() < p

    def shuffle(self, v: list) -> None:
        """Shuffles the list `v` in place (Fisher-Yates from the end, like Rust's)."""
        for i in range(len(v) - 1, 0, -1):
            j = self.below(i + 1)
            v[i], v[j] = v[j], v[i]

    def unit_point(self, d: int) -> list:
        """A point uniform in [0,1)^d (`d` successive `random()` draws)."""
        return [self.random() for _ in range(d)]
