//! A projection's inputs, drawn from the point's seeded stream: the
//! activations `x[M, K]`, then the weight `W[K, N]` (in that order: the
//! stream's values depend on it).

use super::params::Params;
use crate::data::{Data, Draws};
use crate::ops::op::Inputs;

/// A projection's inputs at full precision (f32).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tensors {
    /// Activations `[M, K]`.
    pub x: Vec<f32>,
    /// The weight `[K, N]`.
    pub w: Vec<f32>,
}

impl Tensors {
    /// Bytes they hold on the host.
    pub fn bytes(&self) -> u64 {
        ((self.x.len() + self.w.len()) * 4) as u64
    }
}

/// The inputs of `p` from `seed`, drawn as `data` says.
pub fn generate(p: &Params, data: Data, seed: u64) -> Inputs {
    let (m, k, n) = p.mkn();
    let mut draws = Draws::new(seed, data, k, Some(n));
    let x = draws.activations(m * k);
    let w = draws.weight(k, n);
    let t = Tensors { x, w };
    let bytes = t.bytes();
    Inputs::new(t, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Scale;

    #[test]
    fn inputs_have_their_sizes_and_scale_the_activations_only() {
        let p = Params {
            batch: 2,
            seq: 3,
            dim: 4,
            out_dim: 5,
        };
        let i = generate(&p, Data::default(), 1);
        let t = i.get::<Tensors>();
        assert_eq!((t.x.len(), t.w.len()), (24, 20));
        assert_eq!(i.bytes(), (24 + 20) * 4);
        // The weight's spread is 1/sqrt(K): uniform within +-1/2 at K = 4.
        assert!(t.w.iter().all(|v| v.abs() < 0.5) && t.w.iter().any(|v| v.abs() > 0.25));
        assert!(t.x.iter().any(|v| v.abs() > 0.5));
        let data = Data {
            scale: Scale::new(100.0).unwrap(),
            ..Data::default()
        };
        let big = generate(&p, data, 1);
        assert_eq!(big.get::<Tensors>().x[0], t.x[0] * 100.0);
        assert_eq!(big.get::<Tensors>().w, t.w);
    }
}
