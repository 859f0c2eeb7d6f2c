//! Choosing a backend, sans IO: nginx's smooth weighted round robin, weighted least connections,
//! and consistent hashing (a ketama ring), each over the backends the caller says are eligible.
//! The backup tier is the caller's business: it asks again with the backups when no primary is
//! eligible.

use std::hash::{Hash, Hasher};

/// Smooth weighted round robin, exactly as nginx's `ngx_http_upstream_get_peer`: every pick adds
/// each eligible peer's effective weight to its current weight, takes the largest, and subtracts
/// the total from it. Weights 5,1,1 give a,a,b,a,c,a,a — spread, not bursty.
#[derive(Clone, Debug, Default)]
pub(crate) struct SmoothRoundRobin {
    current: Vec<i64>,
    effective: Vec<i64>,
    weights: Vec<i64>,
}

impl SmoothRoundRobin {
    pub(crate) fn new(weights: &[u32]) -> Self {
        let w: Vec<i64> = weights.iter().map(|&w| i64::from(w.max(1))).collect();
        SmoothRoundRobin {
            current: vec![0; w.len()],
            effective: w.clone(),
            weights: w,
        }
    }

    /// Picks among the peers for which `eligible(i)` holds.
    pub(crate) fn pick(&mut self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut total = 0;
        for i in 0..self.weights.len() {
            if !eligible(i) {
                continue;
            }
            self.current[i] += self.effective[i];
            total += self.effective[i];
            // nginx lets a peer that failed earn its weight back one pick at a time.
            if self.effective[i] < self.weights[i] {
                self.effective[i] += 1;
            }
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }

    /// A failure lowers the peer's effective weight by weight / max_fails (nginx).
    pub(crate) fn penalise(&mut self, i: usize, max_fails: u32) {
        if let (Some(e), Some(w)) = (self.effective.get_mut(i), self.weights.get(i)) {
            let step = if max_fails == 0 {
                0
            } else {
                w / i64::from(max_fails)
            };
            *e = (*e - step).max(0);
        }
    }
}

/// Weighted least connections (nginx `least_conn`): the peer with the smallest active / weight;
/// ties are broken by smooth round robin among the tied peers, as nginx does.
pub(crate) fn least_connections(
    active: &[u64],
    weights: &[u32],
    rr: &mut SmoothRoundRobin,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut best: Option<usize> = None;
    for i in 0..active.len() {
        if !eligible(i) {
            continue;
        }
        // a/wa < b/wb  <=>  a*wb < b*wa (no division, as nginx).
        best = match best {
            Some(b)
                if u128::from(active[i]) * u128::from(weights[b].max(1))
                    >= u128::from(active[b]) * u128::from(weights[i].max(1)) =>
            {
                Some(b)
            }
            _ => Some(i),
        };
    }
    let b = best?;
    let tied = |i: usize| {
        eligible(i)
            && u128::from(active[i]) * u128::from(weights[b].max(1))
                == u128::from(active[b]) * u128::from(weights[i].max(1))
    };
    rr.pick(tied)
}

/// FNV-1a, 64 bit: stable across runs and machines (the ring must not move on restart).
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }
}

pub(crate) fn stable_hash(key: &[u8]) -> u64 {
    let mut h = Fnv(0xcbf29ce484222325);
    h.write(key);
    // Finalise (murmur3's fmix64) so that close keys spread over the ring.
    let mut x = h.finish();
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ceb9fe1a85ec53);
    x ^ (x >> 33)
}

/// A ketama ring: 160 points per unit of weight, placed by hashing the backend's identity (its
/// address), so that adding or removing a backend moves only the keys next to its points.
#[derive(Clone, Debug, Default)]
pub(crate) struct HashRing {
    points: Vec<(u64, usize)>,
}

impl HashRing {
    /// `ids` are stable backend identities (`address:port`), `weights` their weights.
    pub(crate) fn new<I: Hash + AsRef<[u8]>>(ids: &[I], weights: &[u32]) -> Self {
        let mut points = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            for p in 0..160 * weights.get(i).copied().unwrap_or(1).max(1) {
                let mut key = id.as_ref().to_vec();
                key.extend_from_slice(format!("-{p}").as_bytes());
                points.push((stable_hash(&key), i));
            }
        }
        points.sort_unstable();
        HashRing { points }
    }

    /// The first eligible backend clockwise from the key's point.
    pub(crate) fn pick(&self, key: &[u8], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = stable_hash(key);
        let start = self.points.partition_point(|(p, _)| *p < h);
        (0..self.points.len())
            .map(|k| self.points[(start + k) % self.points.len()].1)
            .find(|&i| eligible(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_round_robin_matches_nginx_sequence() {
        let mut rr = SmoothRoundRobin::new(&[5, 1, 1]);
        let seq: Vec<usize> = (0..7).map(|_| rr.pick(|_| true).unwrap()).collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_are_honoured_over_10000_picks() {
        let weights = [1, 2, 3, 4];
        let mut rr = SmoothRoundRobin::new(&weights);
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            counts[rr.pick(|_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [1000, 2000, 3000, 4000]);
        // Ineligible peers get nothing; the others keep their proportions.
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            counts[rr.pick(|i| i != 3).unwrap()] += 1;
        }
        assert_eq!(counts[3], 0);
        assert!(
            (counts[2] as f64 / counts[0] as f64 - 3.0).abs() < 0.01,
            "{counts:?}"
        );
        assert_eq!(rr.pick(|_| false), None);
    }

    #[test]
    fn penalised_peer_earns_its_weight_back() {
        let mut rr = SmoothRoundRobin::new(&[10, 10]);
        rr.penalise(0, 1);
        let first: Vec<usize> = (0..4).map(|_| rr.pick(|_| true).unwrap()).collect();
        assert!(first.iter().filter(|&&i| i == 1).count() >= 3, "{first:?}");
        let mut counts = [0i32; 2];
        for _ in 0..10_000 {
            counts[rr.pick(|_| true).unwrap()] += 1;
        }
        assert!((counts[0] - counts[1]).abs() < 50, "{counts:?}");
    }

    #[test]
    fn least_connections_weighs_active_requests() {
        let mut rr = SmoothRoundRobin::new(&[1, 1, 2]);
        assert_eq!(
            least_connections(&[3, 1, 4], &[1, 1, 2], &mut rr, |_| true),
            Some(1)
        );
        // 4/2 == 2/1: a tie between 1 and 2 is broken by round robin over the tied peers.
        let picks: Vec<usize> = (0..6)
            .map(|_| least_connections(&[5, 2, 4], &[1, 1, 2], &mut rr, |_| true).unwrap())
            .collect();
        assert!(
            picks.contains(&1) && picks.contains(&2) && !picks.contains(&0),
            "{picks:?}"
        );
        assert_eq!(
            least_connections(&[0, 0, 0], &[1, 1, 2], &mut rr, |i| i == 0),
            Some(0)
        );
    }

    #[test]
    fn consistent_hash_is_stable_when_a_backend_is_added() {
        let ids: Vec<String> = (1..=4).map(|i| format!("10.0.0.{i}:80")).collect();
        let ring = HashRing::new(&ids, &[1, 1, 1, 1]);
        let keys: Vec<String> = (0..10_000)
            .map(|i| format!("192.168.{}.{}", i / 256, i % 256))
            .collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|k| ring.pick(k.as_bytes(), |_| true).unwrap())
            .collect();
        // Spread: every backend gets a fair share.
        for b in 0..4 {
            let n = before.iter().filter(|&&x| x == b).count();
            assert!((1800..3200).contains(&n), "backend {b}: {n}");
        }
        let mut more = ids.clone();
        more.push("10.0.0.5:80".into());
        let ring5 = HashRing::new(&more, &[1, 1, 1, 1, 1]);
        let after: Vec<usize> = keys
            .iter()
            .map(|k| ring5.pick(k.as_bytes(), |_| true).unwrap())
            .collect();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        // Only keys that now belong to the new backend move (ideal: 1/5).
        assert!(before.iter().zip(&after).all(|(a, b)| a == b || *b == 4));
        assert!(moved < 2_800, "moved {moved} of 10000");
        // A down backend's keys go to the next point; the others stay.
        let without2: Vec<usize> = keys
            .iter()
            .map(|k| ring.pick(k.as_bytes(), |i| i != 2).unwrap())
            .collect();
        assert!(before.iter().zip(&without2).all(|(a, b)| a == b || *a == 2));
    }
}
