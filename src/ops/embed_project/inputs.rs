//! Embed-project's inputs, drawn from the point's seeded stream: the table,
//! the weight, then the token ids (in that order: the stream's values depend
//! on it).

use super::params::Params;
use crate::data::{Data, Draws};
use crate::ops::embedding::inputs::Lookup;
use crate::ops::op::Inputs;

/// A lookup's table and ids and the projection's weight, at full precision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tensors {
    /// The table and the ids.
    pub lookup: Lookup,
    /// The weight `[dim, out_dim]`.
    pub w: Vec<f32>,
}

/// The inputs of `p` from `seed`, drawn as `data` says.
pub fn generate(p: &Params, data: Data, seed: u64) -> Inputs {
    let (m, k, n) = p.projection_part().mkn();
    let mut draws = Draws::new(seed, data, k, Some(n));
    let table = draws.activations(p.vocab as u64 * k);
    let w = draws.weight(k, n);
    let ids = draws.ids(m, p.vocab);
    let t = Tensors {
        lookup: Lookup { ids, table },
        w,
    };
    let bytes = t.lookup.bytes() + t.w.len() as u64 * 4;
    Inputs::new(t, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_have_their_sizes() {
        let p = Params {
            batch: 2,
            seq: 3,
            dim: 4,
            vocab: 10,
            out_dim: 5,
        };
        let i = generate(&p, Data::default(), 1);
        let t: &Tensors = i.get();
        assert_eq!(
            (t.lookup.ids.len(), t.lookup.table.len(), t.w.len()),
            (6, 40, 20)
        );
        assert_eq!(i.bytes(), (6 + 40 + 20) * 4);
        assert!(t.lookup.ids.iter().all(|&id| id < 10));
    }
}
