//! Clusters of similar pages: k-means over the classifier's features, so that each
//! cluster can get a dictionary of its own.
//!
//! Invariants: fitting is deterministic (k-means++ seeding from a fixed-seed generator,
//! then Lloyd iterations until no point moves or a bound is reached), so the same pages
//! give the same clusters on every run and target; `nearest` is a pure function of the
//! centroids, which are finite; an empty cluster keeps its centroid. Hand-written rather
//! than linfa-clustering: twelve dimensions, at most a few thousand points and a handful
//! of clusters need fifty lines, not ndarray and linfa in every embedder's build.

use super::features::{COUNT, Features};

/// Lloyd iterations at most (they converge in far fewer on page features).
const MAX_ITERATIONS: usize = 50;

/// Centroids of page clusters in feature space.
#[derive(Clone, Debug, PartialEq)]
pub struct Clusters {
    centroids: Vec<Features>,
}

fn distance(a: &Features, b: &Features) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

impl Clusters {
    /// Clusters from given centroids (as read from a file); `None` if there are none or
    /// one is not finite.
    pub fn from_centroids(centroids: Vec<Features>) -> Option<Clusters> {
        let finite = centroids.iter().flatten().all(|x| x.is_finite());
        (finite && !centroids.is_empty()).then_some(Clusters { centroids })
    }

    /// Fits `k` clusters (fewer if there are fewer distinct points) to `points`.
    pub fn fit(points: &[Features], k: usize) -> Clusters {
        let Some(first) = points.first() else {
            return Clusters {
                centroids: vec![[0.0; COUNT]],
            };
        };
        // k-means++: each next centroid drawn with probability proportional to the
        // squared distance to the nearest chosen one.
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut centroids = vec![*first];
        let mut nearest: Vec<f32> = points.iter().map(|p| distance(p, first)).collect();
        while centroids.len() < k {
            let total: f64 = nearest.iter().map(|&d| f64::from(d)).sum();
            if total <= 0.0 {
                break;
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let mut target = (rng >> 11) as f64 / (1u64 << 53) as f64 * total;
            let mut chosen = points.len() - 1;
            for (i, &d) in nearest.iter().enumerate() {
                target -= f64::from(d);
                if target <= 0.0 {
                    chosen = i;
                    break;
                }
            }
            let centroid = points[chosen];
            for (d, p) in nearest.iter_mut().zip(points) {
                *d = d.min(distance(p, &centroid));
            }
            centroids.push(centroid);
        }
        let mut clusters = Clusters { centroids };
        let mut assignment = vec![usize::MAX; points.len()];
        for _ in 0..MAX_ITERATIONS {
            let mut moved = false;
            for (a, p) in assignment.iter_mut().zip(points) {
                let c = clusters.nearest(p);
                moved |= *a != c;
                *a = c;
            }
            if !moved {
                break;
            }
            let k = clusters.centroids.len();
            let mut sums = vec![[0f64; COUNT]; k];
            let mut counts = vec![0usize; k];
            for (&a, p) in assignment.iter().zip(points) {
                counts[a] += 1;
                for (s, &x) in sums[a].iter_mut().zip(p) {
                    *s += f64::from(x);
                }
            }
            for ((centroid, sum), &n) in clusters.centroids.iter_mut().zip(&sums).zip(&counts) {
                if n > 0 {
                    for (c, s) in centroid.iter_mut().zip(sum) {
                        *c = (s / n as f64) as f32;
                    }
                }
            }
        }
        clusters
    }

    /// The cluster whose centroid is nearest to `x` (the first of equals).
    pub fn nearest(&self, x: &Features) -> usize {
        let mut best = (0, f32::INFINITY);
        for (i, c) in self.centroids.iter().enumerate() {
            let d = distance(x, c);
            if d < best.1 {
                best = (i, d);
            }
        }
        best.0
    }

    /// The centroids, by cluster index.
    pub fn centroids(&self) -> &[Features] {
        &self.centroids
    }

    /// How many clusters there are (at least one).
    pub fn len(&self) -> usize {
        self.centroids.len()
    }

    /// Never: there is always at least one cluster.
    pub fn is_empty(&self) -> bool {
        self.centroids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(x: f32, y: f32) -> Features {
        let mut p = [0.0; COUNT];
        p[0] = x;
        p[1] = y;
        p
    }

    #[test]
    fn separated_groups_are_found_and_fitting_repeats() {
        let mut points = Vec::new();
        for i in 0..300 {
            let jitter = (i % 7) as f32 * 0.01;
            points.push(match i % 3 {
                0 => point(0.1 + jitter, 0.1),
                1 => point(0.9, 0.1 + jitter),
                _ => point(0.5 + jitter, 0.9),
            });
        }
        let clusters = Clusters::fit(&points, 3);
        assert_eq!(clusters.len(), 3);
        let groups: Vec<usize> = (0..3).map(|g| clusters.nearest(&points[g])).collect();
        assert!(groups[0] != groups[1] && groups[1] != groups[2] && groups[0] != groups[2]);
        for (i, p) in points.iter().enumerate() {
            assert_eq!(clusters.nearest(p), groups[i % 3], "point {i}");
        }
        assert_eq!(Clusters::fit(&points, 3), clusters, "deterministic");
    }

    #[test]
    fn degenerate_inputs_give_fewer_clusters() {
        let same = vec![point(0.3, 0.3); 50];
        assert_eq!(Clusters::fit(&same, 4).len(), 1);
        assert_eq!(Clusters::fit(&[], 4).len(), 1);
        assert!(Clusters::from_centroids(vec![]).is_none());
        assert!(Clusters::from_centroids(vec![point(f32::NAN, 0.0)]).is_none());
    }
}
