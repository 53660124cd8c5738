//! The CPU's ceilings: a parallel copy of a buffer larger than the last-level
//! cache (memory bandwidth), the same copy within each core's cache (the
//! ceiling of work that fits there), and independent FMA chains on every
//! thread in the widest vector unit the CPU has (AVX-512, else AVX2+FMA, else
//! scalar).

use std::time::Instant;

use rayon::prelude::*;

use crate::backend::info::Ceilings;

/// Bytes copied by the bandwidth probe: far beyond any cache.
const COPY_BYTES: usize = 256 << 20;
/// Bytes each thread copies back and forth in the in-cache probe: source and
/// destination together 256 KiB, inside any current core's L2 (or, on older
/// cores, its share of L3), yet large enough to stream.
const CACHE_COPY_BYTES: usize = 128 << 10;
/// Independent accumulators per thread: enough to cover FMA latency x units.
const CHAINS: usize = 12;

/// Best copy bandwidth over `reps` runs, GB/s (read + write).
fn copy_gbps(reps: usize) -> f64 {
    let src = vec![1u8; COPY_BYTES];
    let mut dst = vec![0u8; COPY_BYTES];
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        dst.par_chunks_mut(1 << 20)
            .zip(src.par_chunks(1 << 20))
            .for_each(|(d, s)| d.copy_from_slice(s));
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    2.0 * COPY_BYTES as f64 / best / 1e9
}

/// Best in-cache copy bandwidth over `reps` runs, GB/s (read + write): each
/// thread copies its own small buffer, warm, many times.
fn cache_copy_gbps(reps: usize) -> f64 {
    let threads = rayon::current_num_threads();
    // About 50 ms per repetition at 100 GB/s: long enough that thread
    // wake-ups and a neighbour's burst do not decide it.
    let rounds = 2000;
    // One allocation per thread, the destination 17 cache lines past a 4 KiB
    // multiple from the source. With two separate 128 KiB buffers, this probe
    // read 14 GB/s inside a run (after the heap had grown) and 130-170 GB/s
    // in a fresh `devices --probe` on the same machine: buffers a multiple of
    // 4 KiB apart let loads alias earlier stores (4K aliasing), the likely
    // cause. Skewed, it reads 155-165 GB/s in both.
    const SKEW: usize = 17 * 64;
    let mut bufs: Vec<Vec<u8>> = (0..threads)
        .map(|i| vec![i as u8; 2 * CACHE_COPY_BYTES + SKEW + 4096])
        .collect();
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        bufs.par_iter_mut().for_each(|b| {
            let (s, d) = b.split_at_mut(CACHE_COPY_BYTES + SKEW);
            let (s, d) = (&mut s[..CACHE_COPY_BYTES], &mut d[..CACHE_COPY_BYTES]);
            for r in 0..rounds {
                // Alternate directions so neither half stays read-only.
                if r % 2 == 0 {
                    d.copy_from_slice(s);
                } else {
                    s.copy_from_slice(d);
                }
                std::hint::black_box(&*d);
            }
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (threads * rounds * CACHE_COPY_BYTES) as f64 / best / 1e9
}

/// Runs `iters` steps of CHAINS independent FMA chains; returns (a checksum, lanes).
fn fma_chains(iters: u64, seed: f32) -> (f32, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected at run time.
            return (unsafe { x86::chains_avx512(iters, seed) }, 16);
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the features were detected at run time.
            return (unsafe { x86::chains_avx2(iters, seed) }, 8);
        }
    }
    let mut a = [seed; CHAINS];
    for _ in 0..iters {
        for x in a.iter_mut() {
            *x = x.mul_add(0.999_999, 1e-7);
        }
    }
    (a.iter().sum(), 1)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn chains_avx512(iters: u64, seed: f32) -> f32 {
        let (m, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut a = [_mm512_set1_ps(seed); CHAINS];
        for _ in 0..iters {
            for x in a.iter_mut() {
                *x = _mm512_fmadd_ps(*x, m, c);
            }
        }
        a.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn chains_avx2(iters: u64, seed: f32) -> f32 {
        let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut a = [_mm256_set1_ps(seed); CHAINS];
        for _ in 0..iters {
            for x in a.iter_mut() {
                *x = _mm256_fmadd_ps(*x, m, c);
            }
        }
        let mut out = [0.0f32; 8];
        let mut sum = 0.0;
        for x in a {
            _mm256_storeu_ps(out.as_mut_ptr(), x);
            sum += out.iter().sum::<f32>();
        }
        sum
    }
}

/// Best FMA throughput over `reps` runs on every rayon thread, GFLOP/s.
fn fma_gflops(reps: usize) -> (f64, u64) {
    let threads = rayon::current_num_threads();
    let iters = 20_000_000 / CHAINS as u64;
    let mut best = f64::MAX;
    let mut lanes = 1;
    for _ in 0..reps {
        let t = Instant::now();
        let (sum, l) = (0..threads)
            .into_par_iter()
            .map(|i| fma_chains(iters, i as f32))
            .reduce(|| (0.0, 1), |a, b| (a.0 + b.0, b.1.max(a.1)));
        best = best.min(t.elapsed().as_secs_f64());
        lanes = l;
        std::hint::black_box(sum);
    }
    let flops = threads as f64 * iters as f64 * CHAINS as f64 * lanes as f64 * 2.0;
    (flops / best / 1e9, lanes)
}

/// Probes the host CPU.
pub fn probe() -> Ceilings {
    let copy = copy_gbps(5);
    let cache = cache_copy_gbps(5);
    let (fma, lanes) = fma_gflops(3);
    Ceilings {
        copy_gbps: copy,
        fma_gflops: fma,
        method: format!(
            "copy of {} MiB on {} threads, best of 5; in-cache copy of {} KiB per thread, best of 5; {CHAINS} independent {lanes}-lane f32 FMA chains per thread, best of 3; wall time",
            COPY_BYTES >> 20,
            rayon::current_num_threads(),
            CACHE_COPY_BYTES >> 10
        ),
        dispatch: None,
        cache_copy_gbps: Some(cache),
        coop: None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_in_cache_copy_measures_a_bandwidth() {
        let g = super::cache_copy_gbps(1);
        eprintln!("in-cache copy: {g:.1} GB/s");
        assert!(g.is_finite() && g > 0.1, "{g}");
    }
}
