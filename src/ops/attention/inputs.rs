//! Attention's inputs, drawn from the point's seeded stream in a fixed order:
//! Q `[B, S, H, D]`, then K and V `[B, G, L, D]`, each as activations (the
//! llm distribution's outlier channels are the same channels of Q and K, as
//! in trained models, where they make scores large).

use super::params::Params;
use crate::data::{Data, Draws};
use crate::ops::op::Inputs;

/// Q, K and V at full precision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Qkv {
    /// Queries `[B, S, H, D]`.
    pub q: Vec<f32>,
    /// Keys `[B, G, L, D]`.
    pub k: Vec<f32>,
    /// Values `[B, G, L, D]`.
    pub v: Vec<f32>,
}

impl Qkv {
    /// Bytes they hold on the host.
    pub fn bytes(&self) -> u64 {
        ((self.q.len() + self.k.len() + self.v.len()) * 4) as u64
    }
}

/// The inputs of `p` from `seed`, drawn as `data` says.
pub fn generate(p: &Params, data: Data, seed: u64) -> Inputs {
    let d = p.head_dim as u64;
    let mut draws = Draws::new(seed, data, d, None);
    let q = draws.activations(p.query_rows() * d);
    let k = draws.activations(p.cache_rows() * d);
    let v = draws.activations(p.cache_rows() * d);
    let qkv = Qkv { q, k, v };
    let bytes = qkv.bytes();
    Inputs::new(qkv, bytes)
}

/// Bytes [`generate`] holds for `p`.
pub fn host_bytes(p: &Params) -> u64 {
    (p.query_rows() + 2 * p.cache_rows()) * p.head_dim as u64 * 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::attention::kv::KvPrecision;

    #[test]
    fn inputs_are_reproducible_and_sized_by_the_layouts() {
        let p = Params {
            batch: 2,
            seq: 3,
            context: 5,
            heads: 4,
            kv_heads: 2,
            head_dim: 6,
            causal: true,
            kv_precision: KvPrecision::Same,
            materialized: false,
        };
        let a = generate(&p, Data::default(), 1);
        let b = generate(&p, Data::default(), 1);
        let (a, b): (&Qkv, &Qkv) = (a.get(), b.get());
        assert_eq!(a, b);
        assert_eq!((a.q.len(), a.k.len(), a.v.len()), (144, 120, 120));
        assert_eq!(a.bytes(), host_bytes(&p));
        assert_ne!(a.k, a.v);
    }
}
