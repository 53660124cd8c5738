//! A lookup's inputs, drawn from the point's seeded stream: the table's rows
//! (drawn as activations are), then the token ids.

use super::params::Params;
use crate::data::{Data, Draws};
use crate::ops::op::Inputs;

/// A lookup's inputs at full precision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lookup {
    /// Token ids `[B*S]`, each below the vocabulary.
    pub ids: Vec<u32>,
    /// The table `[vocab, dim]`.
    pub table: Vec<f32>,
}

impl Lookup {
    /// Bytes they hold on the host.
    pub fn bytes(&self) -> u64 {
        ((self.ids.len() + self.table.len()) * 4) as u64
    }

    /// Draws a `[vocab, k]` table and `m` ids from `draws`, in that order.
    pub fn draw(draws: &mut Draws, m: u64, k: u64, vocab: u32) -> Self {
        let table = draws.activations(vocab as u64 * k);
        let ids = draws.ids(m, vocab);
        Lookup { ids, table }
    }
}

/// The inputs of `p` from `seed`, drawn as `data` says.
pub fn generate(p: &Params, data: Data, seed: u64) -> Inputs {
    let k = p.dim as u64;
    let mut draws = Draws::new(seed, data, k, None);
    let lookup = Lookup::draw(&mut draws, p.tokens(), k, p.vocab);
    let bytes = lookup.bytes();
    Inputs::new(lookup, bytes)
}

#[cfg(test)]
mod tests {
    use half::f16;

    use super::*;

    #[test]
    fn inputs_are_reproducible_full_precision_and_inside_the_vocabulary() {
        let p = Params {
            batch: 2,
            seq: 3,
            dim: 4,
            vocab: 10,
        };
        let a = generate(&p, Data::default(), 7);
        let b = generate(&p, Data::default(), 7);
        let (a, b): (&Lookup, &Lookup) = (a.get(), b.get());
        assert_eq!(a, b);
        assert_eq!(
            (a.ids.len(), a.table.len(), a.bytes()),
            (6, 40, (6 + 40) * 4)
        );
        assert!(a.ids.iter().all(|&i| i < 10));
        // Not rounded to f16: the precision cost needs the originals.
        assert!(a.table.iter().any(|&v| f16::from_f32(v).to_f32() != v));
    }
}
